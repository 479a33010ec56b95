"""pytest setup shared by every test folder (``tests/`` and ``cosim/``).

``--runslow`` opts in to the tests marked ``slow``; without it they are deselected (not skipped, so a
default run reports no skip for them and ``scripts/check_skips.py`` stays strict). The ``runslow``
fixture tells a test whether the option was given.

Every test of ``cosim/`` is put in one ``xdist_group`` ("cosim"): ``make test`` runs pytest on two
workers with ``--dist loadgroup``, so the co-simulation suite stays on one worker, where its own pool of
two simulation threads (``cosim/conftest.py``) plans the long Icarus runs against the Verilator builds,
while the other worker runs the rest. The group is collected first, so that it starts at once.
"""
from __future__ import annotations

from pathlib import Path

import pytest

COSIM_DIR = Path(__file__).resolve().parent / "cosim"


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="also run tests marked slow")


def _in_cosim(item) -> bool:
    return Path(str(item.fspath)).resolve().is_relative_to(COSIM_DIR)


@pytest.hookimpl(tryfirst=True)   # before xdist's own hook, which reads the xdist_group marks
def pytest_collection_modifyitems(config, items):
    for item in items:
        if _in_cosim(item):
            item.add_marker(pytest.mark.xdist_group("cosim"))
    # The co-simulation group first (stable sort): xdist hands out work in collection order, so one worker
    # starts the longest unit at once and the other takes the rest, instead of the group starting last.
    items.sort(key=lambda item: not _in_cosim(item))
    if config.getoption("--runslow"):
        return
    keep, drop = [], []
    for item in items:
        (drop if item.get_closest_marker("slow") else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(scope="session")
def runslow(request) -> bool:
    return bool(request.config.getoption("--runslow"))
