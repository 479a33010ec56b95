"""The fuzzing tier: one memory-capped loader process per test process, and a summary of the outcomes.

Run it alone with ``pytest -p no:cacheprovider tests/fuzz`` (``-n 2`` works);
``PASCAL_FUZZ_SCALE=N`` multiplies the number of generated cases.  The
terminal summary adds up the outcomes of every test process: cases
generated, ``ok`` (a correct result), ``error`` (a one-line domain error),
the known failures of code outside this tier (``tests/fuzz/known.py``), and
tracebacks, hangs and unbounded allocations, which must be zero.

``PASCAL_FUZZ_COLLECT=FILE`` is a discovery mode: every unknown failure is
appended to FILE (one JSON line) instead of failing its test, so one run
lists all of them (the strict-xfail reproducers then report XPASS: ignore
them in that mode).
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import sandbox as _sandbox  # noqa: E402

_SECONDS = {"tests": 0.0}


def pytest_configure(config):
    if "PASCAL_FUZZ_STATS" not in os.environ and not hasattr(config, "workerinput"):
        os.environ["PASCAL_FUZZ_STATS"] = tempfile.mkdtemp(prefix="pascal-fuzz-")
        _sandbox.STATS_DIR = Path(os.environ["PASCAL_FUZZ_STATS"])
        config._pascal_fuzz_owner = True


@pytest.fixture(scope="session")
def box():
    instance = _sandbox.sandbox()
    yield instance
    instance.close()


def pytest_runtest_logreport(report):
    if "tests/fuzz/" in report.nodeid.replace("\\", "/"):
        _SECONDS["tests"] += report.duration


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not getattr(config, "_pascal_fuzz_owner", False):
        return
    stats_dir = Path(os.environ["PASCAL_FUZZ_STATS"])
    counts, processes = Counter(), 0
    for path in stats_dir.glob("*.json"):
        record = json.loads(path.read_text())
        processes += 1
        for kind, outcome, n in record["counts"]:
            if kind != "selftest":
                counts[(kind, outcome)] += n
    shutil.rmtree(stats_dir, ignore_errors=True)
    if not counts:
        return
    kinds = sorted({kind for kind, _ in counts})
    outcomes = sorted({outcome for _, outcome in counts})
    write = terminalreporter.write_line
    terminalreporter.section("fuzzing tier")
    write(f"{'loader':<12}" + "".join(f"{o:>11}" for o in outcomes) + f"{'cases':>9}")
    for kind in kinds:
        row = [counts[(kind, o)] for o in outcomes]
        write(f"{kind:<12}" + "".join(f"{n:>11}" for n in row) + f"{sum(row):>9}")
    total = sum(counts.values())
    bad = sum(n for (_, o), n in counts.items() if o in ("traceback", "hang", "memory", "crash"))
    write(f"{total} cases in {processes} sandbox process(es), {_SECONDS['tests']:.1f} s of fuzz tests "
          f"(summed over test processes); "
          f"tracebacks/hangs/unbounded allocations/crashes: {bad}; 'known': failures of modules outside this "
          "tier, each pinned by a strict xfail in test_known_failures.py")
