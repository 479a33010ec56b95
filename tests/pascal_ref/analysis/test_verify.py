"""verify on the fast engines: the same report as the readable engines, the reference re-checked on a sample."""
from __future__ import annotations

import numpy as np
import pytest

from pascal_ref.analysis import verify as verify_module
from pascal_ref.analysis.verify import (
    MAX_LEVELS,
    batch_footprint,
    check_network,
    check_run_size,
    evaluate,
    format_report,
    verify,
)
from pascal_ref.errors import PascalError, ResourceLimitError
from pascal_ref.golden.quantize import quantize
from pascal_ref.io.data import DataError
from pascal_ref.ir.network import QCFS, Conv2d, Flatten, GlobalAvgPool, Linear, Network
from pascal_ref.testing import random_inputs, random_network


def _report_without_reference(report):
    return {key: value for key, value in report.items() if key not in ("reference", "layers")}, \
        [{k: v for k, v in row.items() if k not in ("integer_engine_neurons", "reference_mismatches")}
         for row in report["layers"]]


@pytest.mark.parametrize("family, input_levels", [("dense", 4), ("conv", 4), ("conv", None), ("residual", None),
                                                  ("residual", 3)])
@pytest.mark.parametrize("engine", ["timestep", "count"])
def test_fast_report_equals_reference_report(family, input_levels, engine):
    rng = np.random.default_rng(hash((family, input_levels)) % 2 ** 32)
    network = random_network(rng, family, input_levels=input_levels)
    x = random_inputs(network, rng, 13)
    y = rng.integers(0, 5, 13)
    model = quantize(network, input_bound=3.0 if input_levels is None else None)
    fast = verify(network, x, y, model, engine, batch_size=5, reference_samples=7)
    reference = verify(network, x, y, model, engine, batch_size=5, engines="reference")
    assert fast["ok"] and reference["ok"]
    assert fast["reference"]["samples"] == 7 and fast["reference"]["mismatched_neurons"] == 0
    expected = ["integer_ann", "simulate timestep" if engine == "timestep" else "fast timestep_engine"]
    assert fast["reference"]["engines"] == expected
    if engine == "timestep":   # the other engine ran on every sample, as with the readable engines
        assert _report_without_reference(fast) == _report_without_reference(reference)
        assert format_report(fast) == format_report(reference)
    else:
        assert fast["accuracy"] == reference["accuracy"] and fast["float"] == reference["float"]


def test_a_wrong_fast_engine_fails_the_verdict_without_a_traceback(monkeypatch):
    rng = np.random.default_rng(3)
    network = random_network(rng, "dense", levels=[2, 2, 2], input_levels=4)
    x = random_inputs(network, rng, 9)
    real = verify_module._FastEngines.count

    def off_by_one(self, xb):
        result = real(self, xb)
        name = next(iter(result.counts))
        result.counts[name][0].flat[0] += 1
        return result

    monkeypatch.setattr(verify_module._FastEngines, "count", off_by_one)
    report = verify(network, x, engine="count", reference_samples=4)
    assert not report["ok"] and report["reference"]["mismatched_neurons"] > 0
    assert "FAIL: the fast engines differ from the readable reference on 4 samples" in format_report(report)


def test_api_arguments_are_checked():
    rng = np.random.default_rng(4)
    network = random_network(rng, "dense", levels=[2, 2, 2], input_levels=4, classes=3)
    other = random_network(np.random.default_rng(40), "dense", levels=[2, 2, 2], input_levels=4, classes=3)
    x = random_inputs(network, rng, 6)
    with pytest.raises(DataError, match=r"'y' has shape \(\), expected \(6,\)"):
        verify(network, x, 1)
    with pytest.raises(DataError, match=r"'y' has shape \(6, 1\), expected \(6,\)"):
        verify(network, x, np.zeros((6, 1), int))
    with pytest.raises(DataError, match="labels in \\[0, 3\\]; the model has 3 classes"):
        verify(network, x, np.array([0, 1, 2, 3, 0, 0]))
    with pytest.raises(DataError, match="must hold integer labels, got dtype float64"):
        verify(network, x, np.zeros(6))
    with pytest.raises(DataError, match=r"values in \[0\.\d+, 1\.\d+\]; model 'random-dense' count-codes"):
        verify(network, x * 2)
    with pytest.raises(PascalError, match="does not belong to network"):
        verify(network, x, model=quantize(other))
    with pytest.raises(TypeError, match="expected the IntegerNetwork"):
        verify(network, x, model=network)
    with pytest.raises(PascalError, match="batch_size must be an integer >= 1, got 0"):
        verify(network, x, batch_size=0)
    with pytest.raises(PascalError, match="engine must be one of timestep, count"):
        evaluate(network, x, engine="fast")
    with pytest.raises(PascalError, match="reference_samples must be an integer >= 0"):
        evaluate(network, x, reference_samples=-1)


def _conv_network(padding=1, levels=2, channels=2, input_levels=4):
    rng = np.random.default_rng(0)
    conv = Conv2d("conv", rng.normal(size=(channels, 1, 3, 3)), np.zeros(channels), padding=padding)
    layers = [conv, QCFS("act", 1.0, levels), GlobalAvgPool("gap"), Flatten("flat"),
              Linear("out", rng.normal(size=(2, channels)), np.zeros(2))]
    return Network((1, 8, 8), layers, input_levels, "conv-net")


def test_run_size_is_refused_with_the_figure_it_needs():
    huge_padding = _conv_network(padding=20_000)   # 2 x 40006 x 40006 neurons: 3.2e9
    with pytest.raises(ResourceLimitError, match=r"layer 'act': a batch of 64 would need about .* TiB in the "
                                                 r"count engine .*even one sample needs"):
        check_run_size(huge_padding, 64, "count")
    wide = _conv_network(padding=300)   # fits one sample, not 256
    with pytest.raises(ResourceLimitError, match="lower --batch-size \\(one sample needs"):
        check_run_size(wide, 256, "timestep")
    check_run_size(wide, 1, "timestep")
    long = _conv_network(levels=40_000)
    with pytest.raises(ResourceLimitError, match=r"80003 stage steps \(T1=4, T2=40000\) exceed the limit of 65536"):
        check_run_size(long, 1, "timestep")
    with pytest.raises(ResourceLimitError, match=f"L=70000 exceeds the limit of {MAX_LEVELS}"):
        check_network(_conv_network(levels=70_000))
    with pytest.raises(ResourceLimitError, match="input_levels=1.00e20 exceeds the limit"):
        check_network(_conv_network(input_levels=10 ** 20))
    rows = batch_footprint(_conv_network(), 2, "timestep")
    assert [row["layer"] for row in rows] == ["act", "out"] and rows[0]["neurons"] == 2 * 8 * 8


def test_zero_width_layer_is_one_clear_error():
    """Refused where the layer is made (the network description), so no run ever sees one."""
    with pytest.raises(PascalError, match=r"layer 'fc1': weight has shape \(0, 4\): a zero-width layer"):
        Linear("fc1", np.zeros((0, 4)), np.zeros(0))
    with pytest.raises(PascalError, match=r"layer 'fc2': weight has shape \(3, 0\): a zero-width layer"):
        Linear("fc2", np.zeros((3, 0)), np.zeros(3))
    with pytest.raises(PascalError, match=r"layer 'conv': weight has shape \(2, 1, 0, 3\): a zero-width layer"):
        Conv2d("conv", np.zeros((2, 1, 0, 3)))
