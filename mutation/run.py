"""The mutation tier of pascal-ref, both packages, one command (issue 17; docs/mutation.md):

    python mutation/run.py [--package golden|gateware|all] [--out build/mutation] [--cosim]

* ``pascal_ref`` (the golden model): the curated mutants of
  :mod:`mutation.golden`, each on a copy of ``src/pascal_ref``, against the
  tests named with it (target: >= 98 % killed);
* ``pascal_hdl`` (the gateware): the curated mutants of
  :mod:`pascal_hdl.formal.mutants` through ``python -m pascal_hdl.formal.mutation``
  (Amaranth simulator tests, then the formal proofs; ``--cosim`` adds the
  cocotb tier; target: >= 95 % killed).

Prints one line per mutant, then the score per package and every survivor
with its reason; writes ``golden.json`` and ``gateware.json`` into ``--out``.
Exit code 0 only if both packages reach their target and every survivor is
explained. Costs (2 shared cores): golden ~10-20 min, gateware ~30-60 min.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from mutation import golden  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python mutation/run.py", description=__doc__.splitlines()[0])
    parser.add_argument("--package", choices=("golden", "gateware", "all"), default="all")
    parser.add_argument("--out", type=Path, default=REPO / "build" / "mutation", help="JSON results folder")
    parser.add_argument("--cosim", action="store_true", help="gateware: add the cocotb co-simulation tier")
    parser.add_argument("--jobs", type=int, default=1, help="gateware: mutants at the same time (default 1)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    codes, summary = [], []
    if args.package in ("golden", "all"):
        code = golden.main(["--json", str(args.out / "golden.json")])
        codes.append(code)
        if (args.out / "golden.json").exists():
            s = json.loads((args.out / "golden.json").read_text())["score"]["all"]
            summary.append(f"pascal_ref (golden): {s['killed']} / {s['total']} killed ({s['percent']} %; "
                           f"{s['percent_of_non_equivalent']} % of the non-equivalent), target 98 %")
    if args.package in ("gateware", "all"):
        command = [sys.executable, "-m", "pascal_hdl.formal.mutation", "--json", str(args.out / "gateware.json"),
                   "--jobs", str(args.jobs)] + (["--cosim"] if args.cosim else [])
        code = subprocess.run(command, cwd=REPO).returncode
        codes.append(code)
        if (args.out / "gateware.json").exists():
            s = json.loads((args.out / "gateware.json").read_text())["score"]["all"]
            summary.append(f"pascal_hdl (gateware): {s['killed']} / {s['total']} killed ({s['percent']} %), target 95 %")
    print()
    print("\n".join(summary))
    return max(codes) if codes else 0


if __name__ == "__main__":
    sys.exit(main())
