"""The gateware mutation tier: apply each mutant alone, run the checks, report the score.

    python -m pascal_hdl.formal.mutation [--tier quick|full] [--json OUT] [--only NAME,...] [--cosim]

Each mutant of :data:`~pascal_hdl.formal.mutants.GATEWARE_MUTATIONS` is
installed in a pytest process of its own (the plugin
:mod:`pascal_hdl.formal.mutant_plugin`, selected by ``PASCAL_HDL_MUTANT``),
which runs the checks that can see the broken block, tier after tier:

``sim``
    the default suite's hardware tests: Amaranth simulator tests of the
    block and of every block built on it (``tests/pascal_hdl/gateware``) and
    the generator tests (``tests/pascal_hdl/flow``, without synthesis);
``formal``
    the SymbiYosys proofs that build the block (``tests/pascal_hdl/formal``:
    neuron proofs for the neuron, the engine proofs for the neuron and the
    engine; there is no core harness);
``cosim``
    (``--cosim`` only) the cocotb co-simulation of the generated Verilog
    (``cosim/``, being rewritten; ``--cosim-sim`` picks the simulator).

A mutant is killed when a tier's pytest run reports a failure (exit code 1;
a run that hits the per-tier ``--timeout`` counts as killed by timeout, as a
hang is what a test of a finite run reports too). ``--tier quick`` stops at
the first killing tier and at the first failing test (``-x``); ``--tier full``
runs every tier for every mutant and lists the failing simulator tests (up to
ten), so a kill that rests on one test shows. Before the first mutant, each tier runs
once on the real design and must pass (otherwise a kill means nothing).

Survivors are reported with the reason from
:data:`~pascal_hdl.formal.mutants.ACCEPTED_SURVIVORS`; the exit code is 1 when
a survivor has no reason or the score is below ``--min-score`` percent.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .mutant_plugin import ENV
from .mutants import ACCEPTED_SURVIVORS, GATEWARE_MUTATIONS, Mutation, mutation_named

__all__ = [
    "REPO",
    "TIERS",
    "MutantResult",
    "TierRun",
    "main",
    "report",
    "run_mutant",
    "run_mutation",
    "run_tier",
    "score",
    "tier_command",
]

REPO = Path(__file__).resolve().parents[3]
_RUNNING: set = set()   # pytest processes under way (killed if the runner is stopped)
TESTS = "tests/pascal_hdl"

# Test files per tier and per mutated block, most likely killers first (for -x).
_SIM_FILES = {
    "neuron": ["gateware/test_neuron.py", "gateware/test_engine.py", "gateware/test_core.py", "flow/test_generate.py"],
    "engine": ["gateware/test_engine.py", "gateware/test_core.py", "flow/test_generate.py"],
    "core": ["gateware/test_core.py", "flow/test_generate.py"],
}
_FORMAL_FILES = {
    "neuron": ["formal/test_neuron.py", "formal/test_engine.py"],
    "engine": ["formal/test_engine.py"],
    "core": [],
}
TIERS = ("sim", "formal", "cosim")
_MARKERS = {"sim": "not synth and not formal and not slow and not cosim", "formal": "formal",
            "cosim": "cosim and not slow"}


@dataclass
class TierRun:
    """One pytest run of one tier (on one mutant, or on the real design)."""

    tier: str
    status: str                  # killed / survived / timeout / error / passed / not run
    seconds: float
    failing: list[str] = field(default_factory=list)
    exit_code: int | None = None
    detail: str = ""


@dataclass
class MutantResult:
    name: str
    block: str
    description: str
    status: str                  # killed / survived / error
    killed_by: str | None
    tiers: list[TierRun]
    reason: str | None = None    # for a survivor: why it is equivalent or accepted

    @property
    def seconds(self) -> float:
        return sum(t.seconds for t in self.tiers)


def tier_command(tier: str, block: str, stop_first: bool, cosim_sim: str | None = None) -> list[str] | None:
    """The pytest command line of ``tier`` for a mutant of ``block`` (None: nothing in that tier sees it)."""
    if tier == "sim":
        paths = [f"{TESTS}/{f}" for f in _SIM_FILES[block]]
    elif tier == "formal":
        paths = [f"{TESTS}/{f}" for f in _FORMAL_FILES[block]]
    elif tier == "cosim":
        paths = ["cosim"]
    else:
        raise ValueError(f"unknown tier {tier!r}; tiers: {TIERS}")
    if not paths:
        return None
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "pascal_hdl.formal.mutant_plugin",
               "-rfE", "--tb=line", "-m", _MARKERS[tier], "-k", "not mutant", *paths]
    # -x: stop at the first failure; else at the tenth (enough to show whether a kill rests on one
    # test; a mutant that hangs the design costs each test its lockstep cycle limit).
    command.append("-x" if stop_first else "--maxfail=10")
    if tier == "cosim" and cosim_sim:
        command += ["--sim", cosim_sim]
    return command


def run_tier(tier: str, command: list[str], mutation: Mutation | None, timeout: float) -> TierRun:
    """Run one tier's pytest ``command`` with ``mutation`` installed (None: the real design)."""
    env = dict(os.environ)
    env.pop(ENV, None)
    if mutation is not None:
        env[ENV] = mutation.name
    began = time.monotonic()
    with subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True) as proc:
        _RUNNING.add(proc)
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            return TierRun(tier, "timeout", time.monotonic() - began, detail=f"no end within {timeout:.0f} s")
        except BaseException:  # interrupted: do not leave the pytest run behind
            proc.kill()
            raise
        finally:
            _RUNNING.discard(proc)
    seconds = time.monotonic() - began
    failing = re.findall(r"^(?:FAILED|ERROR) (\S+)", out, re.MULTILINE)
    tail = "\n".join(out.splitlines()[-15:])
    if mutation is not None and f"gateware mutant installed: {mutation.name} " not in out:
        return TierRun(tier, "error", seconds, failing, proc.returncode, "the plugin did not install the mutant\n" + tail)
    if proc.returncode == 0:
        return TierRun(tier, "survived" if mutation else "passed", seconds, [], 0)
    if proc.returncode == 1 and failing:
        return TierRun(tier, "killed" if mutation else "failed", seconds, failing, 1, tail)
    return TierRun(tier, "error", seconds, failing, proc.returncode, tail)


def run_mutant(mutation: Mutation, tiers: list[str], full: bool, timeout: float, cosim_sim: str | None = None,
               baseline=None) -> MutantResult:
    """Run ``tiers`` on one mutant; quick (``full`` False): stop at the first kill."""
    runs = []
    killed_by = None
    for tier in tiers:
        command = tier_command(tier, mutation.block, stop_first=not full or tier != "sim", cosim_sim=cosim_sim)
        if command is None:
            runs.append(TierRun(tier, "not run", 0.0, detail="no check of this tier builds the block"))
            continue
        if baseline is not None:
            baseline(tier, mutation.block)
        run = run_tier(tier, command, mutation, timeout)
        runs.append(run)
        if run.status in ("killed", "timeout") and killed_by is None:
            killed_by = tier
            if not full:
                break
    errors = [r for r in runs if r.status == "error"]
    status = "killed" if killed_by else ("error" if errors else "survived")
    reason = ACCEPTED_SURVIVORS.get(mutation.name) if status == "survived" else None
    return MutantResult(mutation.name, mutation.block, mutation.description, status, killed_by, runs, reason)


class _Baseline:
    """Each (tier, block) command once on the real design, on first use; a failure stops the run."""

    def __init__(self, timeout: float, cosim_sim: str | None, log):
        self.timeout, self.cosim_sim, self.log = timeout, cosim_sim, log
        self.done: dict[tuple, TierRun] = {}
        self.lock = threading.Lock()

    def __call__(self, tier: str, block: str):
        command = tier_command(tier, block, stop_first=True, cosim_sim=self.cosim_sim)
        key = (tier, block)
        with self.lock:
            if key not in self.done:
                run = run_tier(tier, command, None, self.timeout)
                self.done[key] = run
                self.log(f"baseline {tier} ({block}): {run.status} in {run.seconds:.0f} s")
                if run.status != "passed":
                    raise RuntimeError(f"the {tier} tier fails on the real design; fix that first:\n{run.detail}")


def run_mutation(mutations, tiers, full: bool = False, jobs: int = 1, timeout: float = 1800,
                 cosim_sim: str | None = None, check_baseline: bool = True, log=print) -> list[MutantResult]:
    """Run every mutation (``jobs`` at a time); returns one :class:`MutantResult` each, in order."""
    baseline = _Baseline(timeout, cosim_sim, log) if check_baseline else None
    mutations = list(mutations)
    results: list[MutantResult | None] = [None] * len(mutations)

    def one(index):
        result = run_mutant(mutations[index], tiers, full, timeout, cosim_sim, baseline)
        results[index] = result
        failing = next((r.failing[0] for r in result.tiers if r.failing), "")
        log(f"[{index + 1:2d}/{len(mutations)}] {result.name:28s} {result.status:8s} "
            f"{(result.killed_by or ''):6s} {result.seconds:6.1f} s  {failing}")

    pool = ThreadPoolExecutor(max_workers=max(1, jobs))
    try:
        list(pool.map(one, range(len(mutations))))
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        for proc in list(_RUNNING):
            proc.kill()
        raise
    pool.shutdown()
    return results


def score(results: list[MutantResult]) -> dict:
    """Killed / total, overall and per block (mutants that could not run are left out and listed)."""
    def count(rs):
        valid = [r for r in rs if r.status != "error"]
        killed = sum(r.status == "killed" for r in valid)
        return {"killed": killed, "total": len(valid), "percent": round(100 * killed / len(valid), 1) if valid else None}

    blocks = sorted({r.block for r in results})
    return {"all": count(results), **{b: count([r for r in results if r.block == b]) for b in blocks},
            "errors": [r.name for r in results if r.status == "error"]}


def report(results: list[MutantResult], tiers) -> str:
    """A text report: one line per mutant, the score, the survivors with their reasons."""
    lines = [f"{'mutant':28s} {'block':7s} " + " ".join(f"{t:8s}" for t in tiers) + "  first failing check"]
    for r in results:
        by_tier = {t.tier: t for t in r.tiers}
        cells = []
        for tier in tiers:
            run = by_tier.get(tier)
            cells.append(f"{(run.status if run else '-'):8s}")
        failing = next((t.failing[0] for t in r.tiers if t.failing), "")
        lines.append(f"{r.name:28s} {r.block:7s} " + " ".join(cells) + f"  {failing}")
    s = score(results)
    lines.append("")
    for key in ("all", "neuron", "engine", "core"):
        if key in s and s[key]["total"]:
            lines.append(f"score {key}: {s[key]['killed']} / {s[key]['total']} killed ({s[key]['percent']} %)")
    if s["errors"]:
        lines.append("could not run: " + ", ".join(s["errors"]))
    survivors = [r for r in results if r.status == "survived"]
    for r in survivors:
        lines.append(f"survivor {r.name} ({r.description}): {r.reason or 'UNEXPLAINED'}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pascal_hdl.formal.mutation", description=__doc__.splitlines()[0])
    parser.add_argument("--tier", choices=("quick", "full"), default="quick",
                        help="quick: stop at the first kill; full: every tier, up to ten failing simulator tests")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--only", help="comma-separated mutant names")
    parser.add_argument("--block", choices=("neuron", "engine", "core"), help="only the mutants of this block")
    parser.add_argument("--no-formal", action="store_true", help="leave out the formal tier")
    parser.add_argument("--cosim", action="store_true", help="add the cocotb co-simulation tier (cosim/)")
    parser.add_argument("--cosim-sim", default="icarus", help="simulator of the cosim tier (default icarus)")
    parser.add_argument("--jobs", type=int, default=1, help="mutants run at the same time (default 1)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per tier run (default 1800)")
    parser.add_argument("--min-score", type=float, default=95.0, help="percent killed for exit code 0 (default 95)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the check that each tier passes unmutated")
    args = parser.parse_args(argv)
    mutations = list(GATEWARE_MUTATIONS)
    if args.only:
        mutations = [mutation_named(name.strip()) for name in args.only.split(",") if name.strip()]
    if args.block:
        mutations = [m for m in mutations if m.block == args.block]
    tiers = ["sim"] + ([] if args.no_formal else ["formal"]) + (["cosim"] if args.cosim else [])
    began = time.monotonic()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        results = run_mutation(mutations, tiers, full=args.tier == "full", jobs=args.jobs, timeout=args.timeout,
                               cosim_sim=args.cosim_sim, check_baseline=not args.no_baseline)
    except RuntimeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        for proc in list(_RUNNING):
            proc.kill()
    elapsed = time.monotonic() - began
    print()
    print(report(results, tiers))
    print(f"wall time {elapsed:.0f} s ({args.tier} tier, {len(results)} mutants, tiers {', '.join(tiers)})")
    s = score(results)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"tier": args.tier, "tiers": tiers, "seconds": round(elapsed, 1), "score": s,
                                         "mutants": [asdict(r) for r in results]}, indent=2) + "\n")
    unexplained = [r.name for r in results if r.status == "survived" and not r.reason]
    percent = s["all"]["percent"]
    return 1 if unexplained or s["errors"] or percent is None or percent < args.min_score else 0


if __name__ == "__main__":
    sys.exit(main())
