"""Run loaders on generated files in a separate, memory-capped process; classify and count the outcomes.

One :class:`Sandbox` (a ``worker.py`` process) per test process, reused by
every case: the worker caps its own address space (``RLIMIT_AS``, imports
plus :data:`MEMORY_BUDGET`) and answers each case within :data:`CASE_SECONDS`
(its own alarm) or is killed by this side after :data:`HARD_SECONDS` and
restarted.  So a case that would allocate without bound ends as ``memory``
(or kills the worker), one that would run forever as ``hang``, and neither
can hurt the machine the tests run on.

Budget: ``PASCAL_FUZZ_SCALE`` (default 1) multiplies every test's number of
examples (``PASCAL_FUZZ_SCALE=20`` for a long run); the generation is
deterministic (``derandomize=True``), so a failure is reproduced by
re-running the test.
"""
from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

MEMORY_BUDGET = 768 * 2 ** 20
"""Bytes the worker may allocate beyond what its imports use."""

CASE_SECONDS = 10.0
"""Wall-clock bound of one case inside the worker (its alarm)."""

HARD_SECONDS = 40.0
"""Wall-clock bound seen from here: the worker is killed and restarted after it."""

SCALE = max(1, int(os.environ.get("PASCAL_FUZZ_SCALE", "1")))
COLLECT = os.environ.get("PASCAL_FUZZ_COLLECT")
"""Discovery mode: a file to which every failure is appended instead of failing the test."""

WORKER = Path(__file__).with_name("worker.py")
STATS_DIR = Path(os.environ.get("PASCAL_FUZZ_STATS", Path(os.environ.get("TMPDIR", "/tmp")) /
                                f"pascal-fuzz-{os.getuid()}"))


def examples(count: int) -> int:
    """The number of hypothesis examples of a test: ``count`` times ``PASCAL_FUZZ_SCALE``."""
    return count * SCALE


class Sandbox:
    def __init__(self):
        self.process = None
        self.counts = Counter()
        self.started = time.monotonic()

    def _start(self):
        env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
                   NUMBA_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
        self.process = subprocess.Popen([sys.executable, str(WORKER), str(MEMORY_BUDGET)], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
        ready = self._read(120.0)
        if not ready or not ready.get("ready"):
            raise RuntimeError(f"the fuzz worker did not start: {ready}")

    def _read(self, seconds: float):
        readable, _, _ = select.select([self.process.stdout], [], [], seconds)
        if not readable:
            return None
        line = self.process.stdout.readline()
        return json.loads(line) if line else None

    def _kill(self):
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def run(self, kind: str, path) -> dict:
        """The outcome of loading ``path`` with the loader ``kind`` (see ``worker.py``)."""
        if self.process is None or self.process.poll() is not None:
            self._start()
        self.process.stdin.write(json.dumps({"kind": kind, "path": str(path), "seconds": CASE_SECONDS}) + "\n")
        self.process.stdin.flush()
        answer = self._read(HARD_SECONDS)
        if answer is None:
            died = self.process.poll() is not None
            self._kill()
            answer = {"kind": kind, "outcome": "crash" if died else "hang"}
        self.counts[(kind, answer["outcome"])] += 1
        return answer

    def check(self, answer: dict, known=()) -> str:
        """:func:`check`, counting a known failure as ``known`` instead of its raw outcome."""
        verdict = check(answer, known)
        if verdict not in ("ok", "error", "collected"):
            self.counts[(answer["kind"], answer["outcome"])] -= 1
            self.counts[(answer["kind"], "known")] += 1
        return verdict

    def reproduce(self, kind: str, path) -> str:
        """A known failure's reproducer: :meth:`run` and :func:`check`, counting a failure as ``known``."""
        answer = self.run(kind, path)
        try:
            return check(answer)
        except AssertionError:
            self.counts[(kind, answer["outcome"])] -= 1
            self.counts[(kind, "known")] += 1
            raise

    def close(self):
        if self.process is not None:
            self.process.stdin.close()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self._kill()
        self.process = None
        if self.counts:
            STATS_DIR.mkdir(parents=True, exist_ok=True)
            record = {"pid": os.getpid(), "seconds": time.monotonic() - self.started,
                      "counts": [[kind, outcome, n] for (kind, outcome), n in sorted(self.counts.items())]}
            (STATS_DIR / f"{os.getpid()}.json").write_text(json.dumps(record))


_SANDBOX = None


def sandbox() -> Sandbox:
    """The sandbox of this test process (the ``box`` fixture closes it at the end of the session)."""
    global _SANDBOX
    if _SANDBOX is None:
        _SANDBOX = Sandbox()
    return _SANDBOX


def check(answer: dict, known=()) -> str:
    """Assert that an outcome is a correct result or a one-line domain error; the name of a known bug it matches.

    ``known``: ``(name, predicate)`` pairs for failures of code this tier
    may not fix (``tests/fuzz/known.py``); such an outcome is returned by
    name instead of failing the test (each has its own strict-xfail reproducer).
    """
    for name, predicate in known:
        if predicate(answer):
            return name
    outcome = answer["outcome"]
    if COLLECT and not (outcome == "ok" and not answer["invariant"]) and not (outcome == "error" and answer["one_line"]):
        with open(COLLECT, "a") as log:   # discovery mode: record every failure, fail none
            log.write(json.dumps(answer) + "\n")
        return "collected"
    if outcome == "ok":
        assert not answer["invariant"], f"loaded, but the result is wrong: {answer}"
    elif outcome == "error":
        assert answer["one_line"], f"an error that is not one line: {answer}"
    else:
        raise AssertionError(f"{outcome}: {json.dumps(answer, indent=1)[:4000]}")
    return outcome
