"""pytest setup of the co-simulation suite (the library: ``src/pascal_cosim``).

* ``simulator``: every test taking it runs once per simulator; choose with
  ``--sim icarus`` / ``--sim verilator`` (repeatable; default both).
* ``--runslow`` (the repository's ``conftest.py``): also run tests marked
  ``slow`` (otherwise they are deselected, not skipped).
* ``build_root``: ``$COSIM_BUILD_DIR`` or ``cosim/sim_build`` (git ignored):
  every build folder (one per design, simulator and source digest, shared by
  the tests and kept between sessions) and run folder (one per test id).
* ``cosim_jobs``: the session's simulations on a pool of two workers (the
  machine's cores). A test module maps each of its test items to a
  ``jobboard.CosimJob`` (``cosim_job(item, root)``; items may share one); at the
  first test, every job of the selected items is submitted, the longest first,
  so the long Icarus runs overlap the Verilator builds; each test waits for
  its own job's result.
* At the end of a session that ran the network test, a benchmark line gives
  the simulators' speed (``sim_build/bench/``).
"""
from __future__ import annotations

import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from pascal_cosim import runner
from pascal_cosim.runner import SIMULATORS, setup_tools

COSIM_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(COSIM_DIR))  # jobboard

from jobboard import JobBoard

setup_tools()
# Every design this suite builds for Icarus must go through the rewrite (pascal_cosim.icarus); a refusal
# fails the test that built it instead of quietly building the slower Verilog as generated.
runner.ICARUS_REWRITE_FALLBACK = False

BUILD_ROOT = Path(os.environ.get("COSIM_BUILD_DIR") or COSIM_DIR / "sim_build").resolve()


def _add(parser, *args, **kwargs):
    try:
        parser.addoption(*args, **kwargs)
    except ValueError:  # already added by another conftest
        pass


def pytest_addoption(parser):
    _add(parser, "--sim", action="append", choices=SIMULATORS, default=None,
         help="cosim simulator(s) to run (repeatable; default: icarus and verilator)")


def chosen_simulators(config) -> list[str]:
    return config.getoption("--sim") or list(SIMULATORS)


def pytest_generate_tests(metafunc):
    if "simulator" in metafunc.fixturenames:
        metafunc.parametrize("simulator", chosen_simulators(metafunc.config))


@pytest.fixture(scope="session")
def build_root() -> Path:
    BUILD_ROOT.mkdir(parents=True, exist_ok=True)
    return BUILD_ROOT


@pytest.fixture(scope="session")
def simulators(request) -> list[str]:
    return chosen_simulators(request.config)


_BOARDS: list[JobBoard] = []


@pytest.fixture(scope="session")
def cosim_jobs(request, build_root):
    # Under `--dist loadgroup` every cosim test must carry xdist's group suffix: without it the tests are
    # spread over the workers and each worker's board runs the whole suite's simulations (pytest 9.2 with
    # pytest-xdist 3.8 did that quietly; the pin in pyproject.toml).
    if getattr(request.config.option, "loadgroup", False):
        stray = [item.nodeid for item in request.session.items
                 if item.get_closest_marker("xdist_group") and "@" not in item.nodeid]
        if stray:
            pytest.fail(f"pytest-xdist ignored the xdist_group mark of {stray[0]} (and {len(stray) - 1} more): "
                        "every worker would run the whole co-simulation suite", pytrace=False)
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="cosim") as pool:
        board = JobBoard(pool, build_root)
        _BOARDS.append(board)
        board.submit_items(request.session.items)
        yield board
        for future in board.futures.values():
            future.cancel()


_SESSION_START = time.time()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    for board in _BOARDS:
        if board.times:
            first = min(start for start, _ in board.times.values())
            rows = sorted(board.times.items(), key=lambda kv: kv[1][0])
            terminalreporter.write_line("cosim jobs (start..end s): " + "; ".join(
                f"{'-'.join(map(str, key))} {start - first:.0f}..{end - first:.0f}" for key, (start, end) in rows))
    bench = BUILD_ROOT / "bench"
    runs = {}
    for path in sorted(bench.glob("network-*.json")) if bench.is_dir() else []:
        if path.stat().st_mtime >= _SESSION_START:
            data = json.loads(path.read_text())
            runs[data["simulator"]] = data
    if not runs:
        return
    parts = [f"{sim} {d['simulated_cycles'] / max(d['sim_wall_s'], 1e-9):,.0f} cycles/s ({d['images']} images, "
             f"{d['simulated_cycles']:,} cycles in {d['sim_wall_s']:.1f} s; run {d['run_s']:.1f} s, "
             f"build {d['build_s']:.1f} s)" for sim, d in sorted(runs.items())]
    terminalreporter.write_line("benchmark network cosim: " + "; ".join(parts))
