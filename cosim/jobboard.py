"""The session's simulations as jobs on a thread pool (used by ``conftest.py`` and the test modules).

A test module defines ``cosim_job(item, root) -> CosimJob | None`` for its test
items; several items may share a job (same ``key``). :class:`JobBoard` submits
the jobs of the selected items, the longest first, and hands each test its
job's result. The work of a job is in simulator subprocesses, so the threads
run in parallel.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CosimJob", "JobBoard"]


@dataclass(frozen=True)
class CosimJob:
    """A simulation some test items wait for: ``run()`` is called once, on a worker thread."""

    key: tuple
    cost: float            # rough seconds: the longest jobs start first
    run: Callable[[], object]


class JobBoard:
    """The session's jobs and their futures."""

    def __init__(self, pool: ThreadPoolExecutor, root: Path):
        self.pool, self.root = pool, root
        self.futures: dict[tuple, Future] = {}
        self.keys: dict[str, tuple] = {}
        self.times: dict[tuple, tuple[float, float]] = {}   # job key: (start, end) wall clock

    def _timed(self, job: CosimJob):
        start = time.monotonic()
        try:
            return job.run()
        finally:
            self.times[job.key] = (start, time.monotonic())

    def submit_items(self, items) -> None:
        jobs = {}
        for item in items:
            factory = getattr(item.module, "cosim_job", None)
            job = factory(item, self.root) if factory is not None else None
            if job is not None:
                self.keys[item.nodeid] = job.key
                jobs.setdefault(job.key, job)
        for job in sorted(jobs.values(), key=lambda j: -j.cost):
            if job.key not in self.futures:
                self.futures[job.key] = self.pool.submit(self._timed, job)

    def result(self, item):
        """The result of the job of test item ``item`` (its exception if it failed)."""
        if item.nodeid not in self.keys:
            self.submit_items([item])
        return self.futures[self.keys[item.nodeid]].result()
