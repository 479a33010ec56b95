"""The golden-model mutation tier: curated mutants of ``src/pascal_ref``, each run against the tests that must kill it.

    python mutation/golden.py [--only NAME,...] [--json OUT] [--timeout S]

Why a curated list and not mutmut: mutmut 3 rewrites every function of the
mutated files into a trampoline (which Numba cannot compile: ``fast/kernels.py``
is all ``@numba.njit``), generates every operator mutation of every line
(thousands for ``src/pascal_ref``) and runs the tests per mutant; on two shared
cores that is days, and most of those mutants land in error messages. The list
below is the bugs a developer makes in the places the contract depends on
(comparisons, roundings, clips, off-by-one widths and stage lengths, the
``.pth`` allow-list), in the style of the gateware list
(``pascal_hdl.formal.mutants``): one exact source snippet (it must occur exactly
once, so an edit of the source that moves it is an error, never a silent
no-op), its replacement, why it matters, and the test files that should kill it.

Each mutant is applied to a fresh copy of ``src/pascal_ref`` in a temporary
folder, and pytest runs the named tests with that copy first on ``PYTHONPATH``
(the plugin :mod:`mutation.golden_plugin` checks that ``pascal_ref`` is imported
from the copy and names the mutant in the header). Killed: the run reports a
failing test (or hits ``--timeout``). Before the first mutant, all named tests
run once on the unmutated copy and must pass.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO / "src" / "pascal_ref"
T = "tests/pascal_ref"
ENV = "PASCAL_REF_MUTANT"


class MutationError(Exception):
    """A golden mutation does not apply to the current source."""


@dataclass(frozen=True)
class GoldenMutation:
    name: str
    file: str          # relative to src/pascal_ref
    find: str
    replace: str
    why: str
    tests: tuple[str, ...]

    @property
    def package(self) -> str:
        """The sub-package of ``pascal_ref`` (``golden``, ``fast``, ``io``, ... or ``core`` for top-level files)."""
        return self.file.split("/")[0] if "/" in self.file else "core"

    def apply(self, source: str) -> str:
        found = source.count(self.find)
        if found != 1:
            raise MutationError(f"golden mutation '{self.name}': the snippet {self.find!r} occurs {found} times in "
                                f"src/pascal_ref/{self.file} (expected exactly once): update the mutant list")
        return source.replace(self.find, self.replace)


def _m(name, file, find, replace, why, *tests):
    return GoldenMutation(name, file, find, replace, why, tuple(tests))


NEURON_TESTS = (f"{T}/golden/test_neuron.py",)
QUANT_TESTS = (f"{T}/golden/test_edges_rounding.py", f"{T}/golden/test_quantize.py")
FAST_TESTS = (f"{T}/fast/test_edges_float_division.py", f"{T}/fast/test_engines.py")
PICKLE_TESTS = (f"{T}/io/test_edges_pickle_allowlist.py", f"{T}/io/test_torch_pickle.py")

GOLDEN_MUTATIONS = (
    # ------------------------------------------------------------------ the PASC-IF neuron (golden/neuron.py)
    _m("fire_gt", "golden/neuron.py", "        fire = v >= theta\n", "        fire = v > theta\n",
       "stage 1 fires on v > theta instead of v >= theta", *NEURON_TESTS),
    _m("excite_gt", "golden/neuron.py", "excite = v >= theta", "excite = v > theta",
       "stage 2 excitatory spike on v > theta", *NEURON_TESTS),
    _m("inhibit_le", "golden/neuron.py", "inhibit = ~excite & (v < 0)", "inhibit = ~excite & (v <= 0)",
       "stage 2 inhibitory spike on v <= 0 (takes back a spike at v = 0)", *NEURON_TESTS),
    _m("settle_min", "golden/neuron.py", "settle_steps = max(t_in, t_out) - 1", "settle_steps = min(t_in, t_out) - 1",
       "stage 2 lasts min(T1,T2)-1 steps", *NEURON_TESTS),
    _m("burst_ge", "golden/neuron.py", "spikes = c > steps", "spikes = c >= steps",
       "stage 3 transmits c + 1 spikes", *NEURON_TESTS),
    _m("count_clip_high", "golden/neuron.py", "counts = np.clip(c, 0, t_out)", "counts = np.clip(c, 0, t_out + 1)",
       "the count is clipped at T2 + 1", *NEURON_TESTS),
    _m("closed_form_rint", "golden/neuron.py", "np.clip(np.floor((v0 + total_current) / theta), 0, t_out)",
       "np.clip(np.rint((v0 + total_current) / theta), 0, t_out)",
       "the float closed form rounds instead of flooring", f"{T}/golden/test_edges_neuron_closed_form.py",
       *NEURON_TESTS),
    # ------------------------------------------------------------------ the QCFS ANN and the input coding (golden/ann.py)
    _m("input_coding_rint", "golden/ann.py", "np.floor(x * levels + 0.5)", "np.rint(x * levels)",
       "the input coding floor(x*L_in + 1/2) becomes rint (differs only at exact ties)",
       f"{T}/golden/test_edges_rounding.py"),
    _m("input_coding_floor", "golden/ann.py", "np.floor(x * levels + 0.5)", "np.floor(x * levels)",
       "the input coding truncates", f"{T}/golden/test_edges_rounding.py"),
    _m("qcfs_rint", "golden/ann.py", "q = np.clip(np.floor(scaled), 0, act.levels)",
       "q = np.clip(np.rint(scaled), 0, act.levels)", "the QCFS level rounds instead of flooring",
       f"{T}/golden/test_engines.py", f"{T}/golden/test_quantize.py"),
    _m("qcfs_no_phi", "golden/ann.py", "scaled = z / dtype(act.lam) * dtype(act.levels) + dtype(act.phi)",
       "scaled = z / dtype(act.lam) * dtype(act.levels)", "the QCFS shift phi forgotten",
       f"{T}/golden/test_engines.py", f"{T}/golden/test_quantize.py"),
    # ------------------------------------------------------------------ the quantizer (golden/quantize.py)
    _m("v0_floor", "golden/quantize.py", "np.rint(act.phi * theta_int)", "np.floor(act.phi * theta_int)",
       "v0 = floor(phi*theta) instead of round", *QUANT_TESTS),
    _m("v0_half_up", "golden/quantize.py", "np.rint(act.phi * theta_int)", "np.floor(act.phi * theta_int + 0.5)",
       "v0 rounds half up instead of half to even", *QUANT_TESTS),
    _m("theta_floor", "golden/quantize.py", "np.rint(act.theta * scale)", "np.floor(act.theta * scale)", "theta_int = floor(theta*s)", *QUANT_TESTS),
    _m("theta_half_up", "golden/quantize.py", "np.rint(act.theta * scale)", "np.floor(act.theta * scale + 0.5)", "theta_int rounds half up", *QUANT_TESTS),
    _m("bias_floor", "golden/quantize.py", "np.rint(layer.bias * scale)", "np.floor(layer.bias * scale)",
       "b_int = floor(b*s)", *QUANT_TESTS),
    _m("weight_floor", "golden/quantize.py", "np.rint(w_eff * scale", "np.floor(w_eff * scale",
       "W_int = floor(W_eff*s)", *QUANT_TESTS),
    _m("max_bits_one_short", "golden/quantize.py", "if bits > max_bits:", "if bits >= max_bits:",
       "the max_bits check one bit too small (refuses a model of exactly max_bits)", *QUANT_TESTS),
    _m("max_bits_one_over", "golden/quantize.py", "if bits > max_bits:", "if bits > max_bits + 1:",
       "the max_bits check accepts one bit more", *QUANT_TESTS),
    _m("membrane_without_theta", "golden/quantize.py", "max(int(v0.max()), int(theta_int.max()) - 1)", "int(v0.max())",
       "the membrane bound forgets theta - 1 (the largest v left after a spike)", *QUANT_TESTS),
    _m("readout_per_channel", "golden/quantize.py", "if layer.is_readout or not per_channel:", "if not per_channel:",
       "the readout gets one scale per class (its integer argmax is no longer the prediction)", *QUANT_TESTS,
       f"{T}/golden/test_engines.py"),
    # ------------------------------------------------------------------ the SNN engines and timesteps (golden/snn.py)
    _m("burst_train_ge", "golden/snn.py", "(counts[None] > steps)", "(counts[None] >= steps)",
       "a burst of c spikes becomes c + 1 spikes on the next layer's input", f"{T}/golden/test_engines.py"),
    _m("timesteps_settle_max", "golden/snn.py", "settle = max(t1, t2) - 1", "settle = max(t1, t2)",
       "stage 2 reported one step too long", f"{T}/golden/test_engines.py", f"{T}/analysis/test_cost.py"),
    # ------------------------------------------------------------------ the fast engines (fast/)
    _m("fast_upward_lt", "fast/kernels.py", "((q + 1.0) * thetaf[c] <= a)", "((q + 1.0) * thetaf[c] < a)",
       "the float division's upward correction misses exact multiples of theta (49 * fl(1/49) < 1)", *FAST_TESTS),
    _m("fast_downward_ge", "fast/kernels.py", "(q * thetaf[c] > a)", "(q * thetaf[c] >= a)",
       "the float division's downward correction also fires at exact multiples", *FAST_TESTS),
    _m("fast_int_clip", "fast/kernels.py", "out[r, c] = min(max(q, 0), levels)", "out[r, c] = min(max(q, 0), levels + 1)",
       "the int64 QCFS kernel clips at L + 1", *FAST_TESTS),
    _m("fast_fire_gt", "fast/kernels.py", "fire = value >= th", "fire = value > th",
       "the timestep kernel fires on v > theta in stage 1", *FAST_TESTS),
    _m("fast_inhibit_le", "fast/kernels.py", "elif value < 0:", "elif value <= 0:",
       "the timestep kernel's inhibitory spike on v <= 0", *FAST_TESTS),
    _m("float32_ann_phi", "fast/kernels.py", "/ lam * levels + phi\n", "/ lam * levels + phi * 0.5 + 0.25\n",
       "the float32 ANN's QCFS uses another phi (same as the true one at phi = 1/2 only)",
       f"{T}/fast/test_edges_float32_exact.py", *FAST_TESTS),
    _m("fast_precision_limit", "fast/plan.py", "if bound < limits[name]:", "if bound <= limits[name]:",
       "a partial-sum bound equal to the float32 exact limit is accepted in float32", *FAST_TESTS),
    _m("readout_per_channel_scale", "golden/quantize.py", "        if layer.is_readout or not per_channel:\n",
       "        if not per_channel:\n",
       "the readout gets one scale per class, so the argmax of the integer logits is no longer the class",
       f"{T}/golden/test_edges_readout_scale.py", *QUANT_TESTS),
    # ------------------------------------------------------------------ the .pth reader (io/torch_pickle.py)
    _m("allow_getattr", "io/torch_pickle.py", '    ("collections", "OrderedDict"): _OrderedDict,\n}',
       '    ("collections", "OrderedDict"): _OrderedDict,\n    ("builtins", "getattr"): getattr,\n}',
       "one more global admitted: with getattr a checkpoint of allowed globals reaches os", *PICKLE_TESTS),
    _m("memo_bomb_allowed", "io/torch_pickle.py", "if index > count:", "if index > count + 2 ** 40:",
       "the memo-bomb check never fires", *PICKLE_TESTS),
    _m("tensor_bounds_off_by_one", "io/torch_pickle.py", "if last >= available:", "if last > available:",
       "a tensor may end one element past its storage", *PICKLE_TESTS),
    # ------------------------------------------------------------------ numeric, analysis
    _m("signed_width_negative", "numeric.py", "(v if v >= 0 else ~v)", "(v if v >= 0 else -v)",
       "signed_width(-128, 127) becomes 9 (a width one bit too large at -2^(n-1))",
       f"{T}/golden/test_quantize.py", f"{T}/golden/test_edges_rounding.py", f"{T}/ir/test_network.py"),
    _m("verify_float_mismatch_blind", "analysis/verify.py", "wrong = fa.levels[name] != fs.counts[name]",
       "wrong = fa.levels[name] != fa.levels[name]",
       "verify never reports a float SNN/ANN mismatch", f"{T}/analysis/test_edges_float_verify.py",
       f"{T}/golden/test_engines.py", f"{T}/analysis/test_verify.py"),
    _m("al_agreement_gt", "analysis/al.py", "spread = int(np.count_nonzero(f >= mean))",
       "spread = int(np.count_nonzero(f > mean))", "AL agreement counts bins above the mean only",
       f"{T}/analysis/test_al.py"),
    _m("al_k_n_minus_1", "analysis/al.py", "big_k = k + 3.0 * n ** 2 / ((n - 2) * (n - 3))",
       "big_k = k + 3.0 * (n - 1) ** 2 / ((n - 2) * (n - 3))",
       "K with (n-1)**2 (the textbook formula, not the official code's n**2)", f"{T}/analysis/test_al.py"),
    _m("t_eff_constant", "analysis/cost.py", "return t * (1.0 + (5.0 * t - 2.0) * r) / (1.0 + t * r)",
       "return t * (1.0 + (5.0 * t - 1.0) * r) / (1.0 + t * r)", "T_eff with 5T - 1", f"{T}/analysis/test_cost.py"),
)

_BY_NAME = {m.name: m for m in GOLDEN_MUTATIONS}
assert len(_BY_NAME) == len(GOLDEN_MUTATIONS), "golden mutation names must be unique"

# Mutants that the tests are known not to kill, with the reason (equivalent or accepted).
ACCEPTED_SURVIVORS: dict[str, str] = {
    "fast_downward_ge": "equivalent: the downward correction firing at q*theta == a makes q one too small, and the "
                        "upward correction on the next line ((q + 1)*theta <= a, exact integers) always restores it; "
                        "test_edges_float_division checks every multiple of every theta up to 600 and passes on it",
}


def mutation_named(name: str) -> GoldenMutation:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise MutationError(f"no golden mutation named {name!r}; known: {', '.join(_BY_NAME)}") from None


@dataclass
class GoldenResult:
    name: str
    package: str
    why: str
    status: str                  # killed / survived / timeout / error / passed
    seconds: float
    failing: list[str] = field(default_factory=list)
    detail: str = ""
    reason: str | None = None


def _copy_tree(workdir: Path, mutation: GoldenMutation | None) -> Path:
    """A fresh copy of src/pascal_ref under ``workdir/src`` with ``mutation`` applied; returns ``workdir/src``.

    copy2 keeps the mtimes, so Numba's on-disk cache (``NUMBA_CACHE_DIR``, kept in ``workdir``) stays valid
    for every unmutated file."""
    root = workdir / "src"
    if root.exists():
        shutil.rmtree(root)
    shutil.copytree(SOURCE, root / "pascal_ref", copy_function=shutil.copy2,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    if mutation is not None:
        path = root / "pascal_ref" / mutation.file
        path.write_text(mutation.apply(path.read_text()))
    return root


def pytest_command(tests, stop_first: bool = True, deselect=()) -> list[str]:
    return [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "mutation.golden_plugin",
            "-rfE", "--tb=line", "-m", "not slow", *(["-x"] if stop_first else []),
            *(f"--deselect={node}" for node in deselect), *tests]


def run_tests(mutation: GoldenMutation | None, tests, workdir: Path, timeout: float, deselect=()) -> GoldenResult:
    began = time.monotonic()
    try:
        root = _copy_tree(workdir, mutation)
    except MutationError as error:
        return GoldenResult(mutation.name, mutation.package, mutation.why, "error", 0.0, detail=str(error))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(root), str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["NUMBA_CACHE_DIR"] = str(workdir / "numba_cache")
    name = mutation.name if mutation else "(unmutated)"
    env[ENV] = f"{name}@{root}"
    try:
        proc = subprocess.run(pytest_command(tests, mutation is not None, deselect), cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return GoldenResult(name, mutation.package if mutation else "-", mutation.why if mutation else "", "timeout",
                            time.monotonic() - began, detail=f"no end within {timeout:.0f} s")
    out = proc.stdout + proc.stderr
    seconds = time.monotonic() - began
    failing = re.findall(r"^(?:FAILED|ERROR) (\S+)", out, re.M)
    tail = "\n".join(out.splitlines()[-12:])
    package, why = (mutation.package, mutation.why) if mutation else ("-", "")
    if f"golden mutant installed: {name} from {root}" not in out:
        return GoldenResult(name, package, why, "error", seconds, failing, "the plugin did not report the copy\n" + tail)
    if proc.returncode == 0:
        return GoldenResult(name, package, why, "survived" if mutation else "passed", seconds)
    if proc.returncode == 1 and failing:
        return GoldenResult(name, package, why, "killed" if mutation else "failed", seconds, failing, tail)
    return GoldenResult(name, package, why, "error", seconds, failing, tail)


PRE_EDGE_FALLBACK = (f"{T}/golden/test_quantize.py", f"{T}/golden/test_engines.py", f"{T}/golden/test_neuron.py")


def tests_of(mutation: GoldenMutation, without_edges: bool = False) -> tuple[str, ...]:
    """The test files of ``mutation``; ``without_edges``: without the ``test_edges_*`` files of issue 17 (the suite
    before it), falling back to the golden model's main test files when nothing else is named."""
    if not without_edges:
        return mutation.tests
    return tuple(t for t in mutation.tests if "test_edges_" not in t) or PRE_EDGE_FALLBACK


def run_golden(mutations=GOLDEN_MUTATIONS, timeout: float = 900, baseline: bool = True, log=print,
               without_edges: bool = False) -> list[GoldenResult]:
    mutations = list(mutations)
    with tempfile.TemporaryDirectory(prefix="pascal_golden_mutant_") as tmp:
        workdir = Path(tmp)
        broken: list[str] = []   # tests failing on the unmutated copy: left out (a kill by them means nothing)
        if baseline:
            tests = sorted({t for m in mutations for t in tests_of(m, without_edges)})
            base = run_tests(None, tests, workdir, timeout)
            log(f"baseline ({len(tests)} test files, unmutated copy): {base.status} in {base.seconds:.0f} s")
            if base.status == "failed":
                broken = list(base.failing)
                log("failing on the unmutated copy, deselected for every mutant: " + ", ".join(broken))
            elif base.status != "passed":
                raise RuntimeError(f"the tests do not run on the unmutated copy; fix that first:\n{base.detail}")
        results = []
        for index, mutation in enumerate(mutations):
            result = run_tests(mutation, tests_of(mutation, without_edges), workdir, timeout, broken)
            if result.status == "timeout":
                result.status = "killed"
                result.failing = ["(timeout)"]
            if result.status == "survived":
                result.reason = ACCEPTED_SURVIVORS.get(mutation.name)
            results.append(result)
            log(f"[{index + 1:2d}/{len(mutations)}] {result.name:28s} {result.status:8s} {result.seconds:6.1f} s  "
                f"{result.failing[0] if result.failing else ''}")
        return results


def score(results) -> dict:
    def count(rs):
        valid = [r for r in rs if r.status != "error"]
        killed = sum(r.status == "killed" for r in valid)
        equivalent = sum(r.status == "survived" and (r.reason or "").startswith("equivalent") for r in valid)
        scored = len(valid) - equivalent
        return {"killed": killed, "total": len(valid), "percent": round(100 * killed / len(valid), 1) if valid else None,
                "equivalent": equivalent,
                "percent_of_non_equivalent": round(100 * killed / scored, 1) if scored else None}

    packages = sorted({r.package for r in results})
    return {"all": count(results), **{p: count([r for r in results if r.package == p]) for p in packages},
            "errors": [r.name for r in results if r.status == "error"]}


def report(results) -> str:
    lines = [f"{'mutant':28s} {'package':9s} {'status':8s}  first failing test"]
    for r in results:
        lines.append(f"{r.name:28s} {r.package:9s} {r.status:8s}  {r.failing[0] if r.failing else r.detail[:60]}")
    s = score(results)
    lines.append("")
    lines.append(f"score pascal_ref: {s['all']['killed']} / {s['all']['total']} killed ({s['all']['percent']} %); "
                 f"{s['all']['equivalent']} equivalent, {s['all']['percent_of_non_equivalent']} % of the others")
    for key, value in s.items():
        if key not in ("all", "errors") and value["total"]:
            lines.append(f"  {key}: {value['killed']} / {value['total']}")
    if s["errors"]:
        lines.append("could not run: " + ", ".join(s["errors"]))
    for r in results:
        if r.status == "survived":
            lines.append(f"survivor {r.name} ({r.why}): {r.reason or 'UNEXPLAINED'}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python mutation/golden.py", description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated mutant names")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per mutant (default 900)")
    parser.add_argument("--min-score", type=float, default=98.0,
                        help="percent of the non-equivalent mutants killed for exit code 0 (default 98)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the run on the unmutated copy")
    parser.add_argument("--without-edges", action="store_true",
                        help="leave out the test_edges_* files of issue 17 (the score before it)")
    args = parser.parse_args(argv)
    mutations = [mutation_named(n.strip()) for n in args.only.split(",")] if args.only else list(GOLDEN_MUTATIONS)
    began = time.monotonic()
    try:
        results = run_golden(mutations, args.timeout, baseline=not args.no_baseline,
                             without_edges=args.without_edges)
    except (RuntimeError, MutationError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print()
    print(report(results))
    print(f"wall time {time.monotonic() - began:.0f} s ({len(results)} golden mutants)")
    s = score(results)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"score": s, "mutants": [asdict(r) for r in results]}, indent=2) + "\n")
    unexplained = [r.name for r in results if r.status == "survived" and not r.reason]
    percent = s["all"]["percent_of_non_equivalent"]    # an equivalent mutant cannot be killed
    return 1 if unexplained or s["errors"] or percent is None or percent < args.min_score else 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main())
