"""Shard a data set over a ``dask.distributed`` cluster, in order, sample by sample.

:func:`map_samples` cuts the samples into fixed chunks, runs ``fn`` on every
chunk (locally, on a local cluster of worker processes, or on an existing
cluster given by its scheduler address) and concatenates the per-sample
results in the original order.  The chunks are the same whichever way the
work runs, so a result depends only on its sample and its chunk, never on
the number of workers or the order in which chunks finish: with an exact
(integer) engine the results are identical to a single process, and with a
float engine they are identical to an in-process run with the same
``chunk_size`` on the same kind of CPU (BLAS picks its kernels per CPU).

This is what ``pascal-ref run/verify ... --workers N [--scheduler ADDRESS]``
calls; ``docs/distributed.md`` shows how to point it at a cluster of several
machines.  dask is imported only when a cluster is used (the ``dist``
extra).

Connecting to a scheduler means trusting it: dask moves tasks and results
as pickles, so a hostile scheduler or worker can run code in this process
(``docs/threat-model.md``).  Waiting is bounded: connecting and waiting for
``workers`` give up after ``timeout`` seconds with a
:class:`DistributedError` saying how many workers there are.
"""
from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from pascal_ref.errors import PascalError

__all__ = ["map_samples", "evaluate_sharded", "DistributedError", "DEFAULT_TIMEOUT"]

DEFAULT_TIMEOUT = 60.0
"""Seconds to wait for a scheduler to answer and for the requested number of workers."""


class DistributedError(PascalError):
    """The cluster cannot run the job (missing dask, version mismatch, bad result)."""


def _slice(samples: tuple, start: int, stop: int) -> tuple:
    return tuple(s[start:stop] for s in samples)


def _check_chunk(result, size: int, start: int):
    """Every array in a chunk's result must have one row per sample of the chunk."""
    for leaf in _leaves(result):
        if np.ndim(leaf) == 0 or len(leaf) != size:
            raise DistributedError(
                f"map_samples: fn returned an array of shape {np.shape(leaf)} for the chunk of samples "
                f"{start}..{start + size - 1}; every result must have one row per sample ({size} rows)")
    return result


def _leaves(result):
    if result is None:
        return
    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        for item in dataclasses.fields(result):
            yield from _leaves(getattr(result, item.name))
    elif isinstance(result, dict):
        for value in result.values():
            yield from _leaves(value)
    elif isinstance(result, (tuple, list)):
        for value in result:
            yield from _leaves(value)
    else:
        yield result


def _concatenate(parts: list):
    """Join per-chunk results of the same structure (array, tuple, list, dict or dataclass of them)."""
    first = parts[0]
    if first is None:
        return None
    if dataclasses.is_dataclass(first) and not isinstance(first, type):
        return type(first)(**{item.name: _concatenate([getattr(p, item.name) for p in parts])
                              for item in dataclasses.fields(first) if item.init})
    if isinstance(first, dict):
        return {key: _concatenate([p[key] for p in parts]) for key in first}
    if isinstance(first, (tuple, list)):
        return type(first)(_concatenate([p[i] for p in parts]) for i in range(len(first)))
    return np.concatenate([np.asarray(p) for p in parts], axis=0)


def _run_chunk(fn, shared, chunk, start, check=True):
    result = fn(*shared, *chunk)
    return _check_chunk(result, len(chunk[0]), start) if check else result


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("pascal-ref")
    except PackageNotFoundError:  # pragma: no cover - source tree without install
        return "not installed"


def _progress_bar(total: int, enabled: bool, description: str):
    from tqdm import tqdm
    return tqdm(total=total, disable=not enabled, unit="sample", desc=description, file=sys.stderr, leave=False)


def map_samples(fn: Callable, samples, *, shared: Sequence[Any] = (), workers: int | None = None,
                scheduler: str | None = None, chunk_size: int = 32, progress: bool = True,
                description: str = "samples", max_in_flight: int | None = None,
                combine: Callable[[list], Any] | None = None, timeout: float = DEFAULT_TIMEOUT):
    """Apply ``fn`` to a data set in chunks, possibly on a dask cluster; results in sample order.

    Parameters
    ----------
    fn : callable
        ``fn(*shared, *chunk) -> result`` where ``chunk`` holds consecutive
        rows of every array in ``samples``.  The result is an array, or a
        tuple/list/dict of arrays, with one row per sample of the chunk.  It
        must be picklable (a module-level function or ``functools.partial``;
        cloudpickle also ships closures).
    samples : array or tuple of arrays
        Anything sliceable along its first axis (numpy arrays, memmaps);
        several arrays (images, labels) are sliced together.
    shared : sequence
        Arguments common to every chunk (the network, the engine options);
        sent to every worker once, not once per chunk.
    workers : int or None
        Without ``scheduler``: ``None`` runs in this process; ``N >= 1``
        starts a local cluster of ``N`` single-threaded worker processes for
        this call.  With ``scheduler``: wait until the cluster has at least
        ``N`` workers.
    scheduler : str or None
        Address of an existing scheduler (``tcp://host:8786``).
    chunk_size : int
        Samples per task.  Fixed, so results never depend on the cluster.
    progress : bool
        Show a progress bar (samples done) on stderr.
    max_in_flight : int or None
        Chunks submitted but not yet collected (bounds the memory of the
        client and the scheduler); default four per worker thread.
    combine : callable or None
        Called with the list of chunk results in sample order instead of
        concatenating them (per-chunk results need not have one row per
        sample then: statistics, counters).
    timeout : float
        Seconds to wait for the scheduler to answer and, with ``scheduler``
        and ``workers``, for that many workers to join (then an error saying
        how many there are, never an endless wait).

    Returns
    -------
    The chunk results concatenated along the first axis, with the structure
    ``fn`` returns (or ``combine(chunk_results)``).
    """
    if not isinstance(samples, tuple):
        samples = (samples,)
    if not samples:
        raise DistributedError("map_samples: no sample arrays given")
    count = len(samples[0])
    for index, s in enumerate(samples):
        if len(s) != count:
            raise DistributedError(f"map_samples: sample array #{index} has {len(s)} rows, array #0 has {count}")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise DistributedError(f"map_samples: chunk_size must be an integer >= 1, got {chunk_size!r}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1):
        raise DistributedError(f"map_samples: workers must be None or an integer >= 1, got {workers!r}")
    if count == 0:
        raise DistributedError("map_samples: the data set is empty")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout < float("inf"):
        raise DistributedError(f"map_samples: timeout must be a positive number of seconds, got {timeout!r}")
    starts = list(range(0, count, chunk_size))
    shared = tuple(shared)
    check = combine is None
    finish = _concatenate if combine is None else combine

    if workers is None and scheduler is None:
        parts = []
        with _progress_bar(count, progress, description) as bar:
            for start in starts:
                chunk = _slice(samples, start, min(start + chunk_size, count))
                parts.append(_run_chunk(fn, shared, chunk, start, check))
                bar.update(len(chunk[0]))
        return finish(parts)

    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError:  # pragma: no cover - depends on the environment
        raise DistributedError("map_samples: --workers/--scheduler need dask.distributed "
                               "(pip install 'pascal-ref[dist]')") from None

    cluster = None
    if scheduler is None:
        cluster = LocalCluster(n_workers=int(workers), threads_per_worker=1, processes=True,
                               dashboard_address=None)
        client = Client(cluster, timeout=timeout)
    else:
        try:
            client = Client(scheduler, timeout=timeout)
        except (OSError, TimeoutError) as error:
            raise DistributedError(f"map_samples: no scheduler answered at {scheduler} within {timeout:g} s "
                                   f"({type(error).__name__})") from None
    try:
        if scheduler is not None and workers is not None:
            try:
                client.wait_for_workers(int(workers), timeout=timeout)
            except TimeoutError:
                have = len(client.scheduler_info().get("workers", {}))
                raise DistributedError(f"map_samples: the cluster at {scheduler} has {have} worker(s); waited "
                                       f"{timeout:g} s for {int(workers)} (--workers); start more workers or ask "
                                       "for fewer") from None
        _check_versions(client)
        threads = max(1, sum(client.nthreads().values()))
        window = max_in_flight or 4 * threads
        shared_futures = client.scatter(list(shared), broadcast=True) if shared else []
        results: dict[int, Any] = {}
        pending = iter(starts)
        futures = as_completed()

        def submit_next():
            start = next(pending, None)
            if start is None:
                return False
            chunk = _slice(samples, start, min(start + chunk_size, count))
            future = client.submit(_run_chunk, fn, tuple(shared_futures), chunk, start, check, pure=False)
            future.start = start  # read back when it completes
            futures.add(future)
            return True

        for _ in range(window):
            if not submit_next():
                break
        with _progress_bar(count, progress, description) as bar:
            for future in futures:
                result = future.result()  # re-raises the worker's exception
                results[future.start] = result
                bar.update(min(chunk_size, count - future.start))
                submit_next()
        return finish([results[start] for start in starts])
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _check_versions(client) -> None:
    """Refuse a cluster whose workers run another pascal-ref than this client."""
    mine = _package_version()
    theirs = client.run(_package_version)
    wrong = {worker: v for worker, v in theirs.items() if v != mine}
    if wrong:
        raise DistributedError(f"map_samples: pascal-ref {mine} here, but workers run " +
                               ", ".join(f"{w}: {v}" for w, v in sorted(wrong.items())))


def _evaluate_chunk(network, model, engine, x):
    from pascal_ref.analysis.verify import evaluate
    return evaluate(network, x, model, engine, batch_size=len(x), reference_samples=0)


def _merge_evaluations(parts):
    """Join per-chunk :class:`~pascal_ref.analysis.verify.Evaluation` objects in sample order.

    Logits are concatenated; the layer statistics are sums of integers and a
    maximum, so the result equals one ``evaluate`` over the whole data set
    with ``batch_size`` equal to the chunk size.
    """
    from pascal_ref.analysis.verify import Evaluation
    merged = Evaluation()
    merged.logits = {path: np.concatenate([p.logits[path] for p in parts]) for path in parts[0].logits}
    merged.integer_logits = {path: np.concatenate([p.integer_logits[path] for p in parts])
                             for path in parts[0].integer_logits}
    layers = {}
    for name, first in parts[0].layers.items():
        row = dict(first)
        for part in parts[1:]:
            other = part.layers[name]
            for key, value in other.items():
                if key in ("layer", "levels"):
                    continue
                row[key] = max(row[key], value) if key == "float_max_boundary_distance" else row[key] + value
        layers[name] = row
    merged.layers = layers
    merged.reference = {"engines": [], "samples": 0, "mismatched_neurons": 0, "logits_identical": True,
                        "other_engine_samples": 0}
    return merged


def evaluate_sharded(network, x, model=None, engine: str = "timestep", batch_size: int = 64,
                     workers: int | None = None, scheduler: str | None = None, progress: bool = False, *,
                     reference_samples: int | None = None, timeout: float = DEFAULT_TIMEOUT):
    """:func:`pascal_ref.analysis.verify.evaluate` with the data set sharded by :func:`map_samples`.

    Each chunk of ``batch_size`` samples is one ``evaluate`` call on a
    worker (fast engines, no reference check); the result equals
    ``evaluate(network, x, model, engine, batch_size)`` in one process (same
    batches, integer statistics summed).  The reference check runs here, in
    this process, on the first ``reference_samples`` samples (default
    :data:`~pascal_ref.analysis.verify.REFERENCE_SAMPLES`), and the
    cluster's integer logits of those samples must equal this process's.
    Pass the result to ``verify(..., evaluation=...)`` for the report.
    """
    from pascal_ref.analysis.verify import REFERENCE_SAMPLES, check_arguments, default_input_bound, evaluate
    from pascal_ref.errors import printable
    from pascal_ref.golden.quantize import quantize
    from pascal_ref.io.data import check_data
    check_arguments(network, model, engine, batch_size)
    x, _ = check_data(network, x, None, "input")
    reference_samples = REFERENCE_SAMPLES if reference_samples is None else reference_samples
    if model is None:
        model = quantize(network, input_bound=default_input_bound(network, x))
    merged = map_samples(_evaluate_chunk, x, shared=(network, model, engine), workers=workers, scheduler=scheduler,
                         chunk_size=batch_size, progress=progress, description=f"evaluate {printable(network.name)}",
                         combine=_merge_evaluations, timeout=timeout)
    if reference_samples:
        local = evaluate(network, x[:reference_samples], model, engine, batch_size, reference_samples=reference_samples)
        reference = dict(local.reference)
        for path, logits in local.integer_logits.items():
            if not np.array_equal(logits, merged.integer_logits[path][:len(logits)]):
                reference["logits_identical"] = False   # the cluster computed something else
        merged.reference = reference
    return merged
