"""Run the formal proofs and print one line per proof: ``python -m pascal_hdl.formal``.

``--slow`` adds the k-induction contract proofs of the wider counter ranges
(T2 up to 8 or 16, T1 up to 8) with z3: minutes each, not in CI; ``--workdir`` keeps the sby folders (and any
counterexample VCD) for reading, default ``build/formal``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .engine_proofs import ENGINE_CONFIGS, prove_engine
from .neuron_proofs import LARGE, MEDIUM, SMALL, bundled_neuron_configs, prove_neuron


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pascal_hdl.formal", description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("build/formal"))
    parser.add_argument("--slow", action="store_true", help="also the contract k-induction of wide counter ranges")
    args = parser.parse_args(argv)
    bundled = bundled_neuron_configs()
    bundled_t2_8 = bundled_neuron_configs(max_t_out=8)
    jobs = []
    for config in [SMALL, *bundled]:
        jobs += [(config, "contract", "prove"), (config, "equivalence", "prove")]
    for config in [SMALL, *bundled]:
        jobs.append((config, "cover", "cover"))
    for config in [LARGE, *bundled_t2_8]:
        jobs.append((config, "equivalence", "prove"))
    if args.slow:
        # Minutes each; z3 closes these where Yices stalls (docs/formal.md).
        for config in [*bundled_t2_8, MEDIUM, LARGE]:
            jobs.append((config, "contract", "slow"))
    failures = 0
    for config, proof, mode in jobs:
        depth = config.schedule_depth() if mode in ("bmc", "cover") else 1
        engine = "smtbmc z3" if mode == "slow" else None
        mode = "prove" if mode == "slow" else mode
        result = prove_neuron(config, proof, args.workdir, mode=mode, depth=depth, engine=engine,
                              name=f"neuron_{proof}_{mode}_{config.name}")
        failures += not result.passed
        print(f"{result.summary():100s} {config.describe()}", flush=True)
    for config in ENGINE_CONFIGS:
        for mode in ("bmc", "cover"):
            result = prove_engine(config, args.workdir, mode=mode)
            failures += not result.passed
            extra = f" (reached at step {max(result.cover_steps)})" if result.cover_steps else ""
            print(f"{result.summary() + extra:100s} {config.describe()}", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
