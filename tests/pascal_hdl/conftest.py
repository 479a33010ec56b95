"""pytest setup of the hardware tests: ``--runslow`` opts in to the tests marked ``slow``.

Without it they are deselected (not skipped), as in ``cosim/conftest.py``,
which defines the same option; whichever conftest loads first adds it.
"""
from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent


def pytest_addoption(parser):
    try:
        parser.addoption("--runslow", action="store_true", default=False, help="also run tests marked slow")
    except ValueError:  # already added by cosim/conftest.py
        pass


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    keep, drop = [], []
    for item in items:
        mine = Path(str(item.fspath)).resolve().is_relative_to(HERE)
        (drop if mine and item.get_closest_marker("slow") else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
