"""Sharding a data set over dask.distributed gives the single-process results, sample by sample.

Needs the ``dist`` extra (dask.distributed) in the test environment: without
it these tests fail at import rather than being skipped.
"""
from __future__ import annotations

import numpy as np
import pytest

from pascal_ref.fast import count_engine, count_plan, timestep_engine
from pascal_ref.golden.quantize import quantize
from pascal_ref.golden.snn import SnnResult
from pascal_ref.parallel import DistributedError, map_samples
from pascal_ref.testing import random_network


@pytest.fixture(scope="module")
def model():
    network = random_network(np.random.default_rng(5), "conv", levels=[4, 2], input_levels=None, classes=3)
    return quantize(network, input_bound=1.0)


@pytest.fixture(scope="module")
def cluster_address():
    """A 2-worker local cluster shared by the tests that pass ``scheduler=`` (the ``--scheduler`` path)."""
    from distributed import LocalCluster
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        yield cluster.scheduler_address


@pytest.fixture(scope="module")
def samples(model):
    return np.random.default_rng(9).uniform(0, 1, (37,) + model.network.input_shape)


def _assert_results_equal(a: SnnResult, b: SnnResult):
    np.testing.assert_array_equal(a.integer_logits, b.integer_logits)
    np.testing.assert_array_equal(a.logits, b.logits)
    assert set(a.counts) == set(b.counts)
    for name in a.counts:
        np.testing.assert_array_equal(a.counts[name], b.counts[name])


def test_two_worker_cluster_equals_single_process(model, samples):
    plan = count_plan(model)
    single = count_engine(plan, samples)                       # one batch, one process
    local = map_samples(count_engine, samples, shared=(plan,), chunk_size=8, progress=False)
    sharded = map_samples(count_engine, samples, shared=(plan,), workers=2, chunk_size=8, progress=False)
    assert isinstance(sharded, SnnResult) and sharded.integer_logits.shape == (37, 3)
    _assert_results_equal(single, local)
    _assert_results_equal(single, sharded)


def test_cluster_keeps_sample_order_with_labels_and_small_window(model, samples, cluster_address):
    labels = np.arange(len(samples))

    def predict(m, x, y):
        return {"index": y, "prediction": timestep_engine(m, x).predictions}

    expected = timestep_engine(model, samples).predictions
    out = map_samples(predict, (samples, labels), shared=(model,), scheduler=cluster_address, workers=2,
                      chunk_size=5, max_in_flight=1, progress=False)
    np.testing.assert_array_equal(out["index"], labels)
    np.testing.assert_array_equal(out["prediction"], expected)


def test_worker_errors_reach_the_caller(model, samples, cluster_address):
    def broken(m, x):
        raise ValueError("layer 'c1': broken on purpose")

    with pytest.raises(ValueError, match="broken on purpose"):
        map_samples(broken, samples, shared=(model,), scheduler=cluster_address, chunk_size=16, progress=False)


def test_results_must_have_one_row_per_sample(samples):
    with pytest.raises(DistributedError, match="one row per sample"):
        map_samples(lambda x: x.sum(), samples, chunk_size=10, progress=False)


@pytest.mark.parametrize("kwargs", [{"chunk_size": 0}, {"workers": 0}, {"chunk_size": 2.5}])
def test_bad_arguments(samples, kwargs):
    with pytest.raises(ValueError):
        map_samples(lambda x: x, samples, progress=False, **kwargs)


def test_mismatched_sample_arrays(samples):
    with pytest.raises(ValueError, match="array #1 has 3 rows"):
        map_samples(lambda x, y: x, (samples, np.zeros(3)), progress=False)


def test_sharded_evaluation_equals_evaluate(model, samples, cluster_address):
    from pascal_ref.analysis.verify import evaluate
    from pascal_ref.parallel import evaluate_sharded
    network = model.network
    labels = np.random.default_rng(2).integers(0, 3, len(samples))
    single = evaluate(network, samples, model, "count", batch_size=10)
    sharded = evaluate_sharded(network, samples, model, "count", batch_size=10, scheduler=cluster_address)
    assert set(single.logits) == set(sharded.logits)
    for path in single.logits:
        np.testing.assert_array_equal(sharded.logits[path], single.logits[path])
    for path in single.integer_logits:
        np.testing.assert_array_equal(sharded.integer_logits[path], single.integer_logits[path])
    assert sharded.layers == single.layers
    assert sum(row["integer_spikes"] for row in single.layers.values()) > 0
    from pascal_ref.analysis.verify import verify
    report = verify(network, samples, labels, model, "count", evaluation=sharded)
    assert report["ok"] and report["samples"] == len(samples)


def test_workers_with_another_version_are_refused():
    from pascal_ref.parallel import _check_versions, _package_version

    class FakeClient:
        def __init__(self, versions):
            self.versions = versions

        def run(self, fn):
            return self.versions

    _check_versions(FakeClient({"tcp://a:1": _package_version()}))
    with pytest.raises(DistributedError, match="tcp://b:2: 0.0.0-other"):
        _check_versions(FakeClient({"tcp://a:1": _package_version(), "tcp://b:2": "0.0.0-other"}))


def test_more_workers_than_the_cluster_has_is_a_timeout_not_a_hang(model, samples, cluster_address):
    import time
    plan = count_plan(model)
    start = time.monotonic()
    with pytest.raises(DistributedError, match=r"has 2 worker\(s\); waited 2 s for 5 \(--workers\)"):
        map_samples(count_engine, samples, shared=(plan,), workers=5, scheduler=cluster_address, timeout=2,
                    progress=False)
    assert time.monotonic() - start < 30


def test_no_scheduler_at_the_address_is_a_timeout(model, samples):
    with pytest.raises(DistributedError, match="no scheduler answered at tcp://127.0.0.1:9 within 2 s"):
        map_samples(count_engine, samples, shared=(count_plan(model),), scheduler="tcp://127.0.0.1:9", timeout=2,
                    progress=False)
    with pytest.raises(DistributedError, match="timeout must be a positive number"):
        map_samples(count_engine, samples, shared=(count_plan(model),), workers=1, timeout=0)


def test_sharded_verify_checks_the_reference_here(model, samples, cluster_address):
    from pascal_ref.analysis.verify import evaluate, verify
    from pascal_ref.parallel import evaluate_sharded
    network = model.network
    sharded = evaluate_sharded(network, samples, model, "timestep", batch_size=8, scheduler=cluster_address,
                               reference_samples=5)
    local = evaluate(network, samples, model, "timestep", batch_size=8, reference_samples=5)
    assert sharded.reference == local.reference and sharded.reference["samples"] == 5
    assert verify(network, samples, model=model, evaluation=sharded) == verify(network, samples, model=model,
                                                                            evaluation=local)
