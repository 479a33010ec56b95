"""Samples in flight (``CoreConfig.in_flight``): the Amaranth core beside :class:`CoreModel`, cycle by
cycle, with back-to-back samples, random idle and back-pressure; results in order, each tagged with
its sample number, its latency and the cycle it finished; data equal to the integer golden model."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from pascal_hdl.config import MAX_IN_FLIGHT, CoreConfig, HardwareError
from pascal_hdl.gateware.core import NetworkCore
from pascal_hdl.model.chain import (
    COUPLED_GAIN,
    COUPLED_SAMPLES,
    _linear_period,
    balance_lanes,
    calibration_levels,
    chain_forward,
    core_config,
    stage_cycles,
    with_double_buffer,
)
from pascal_hdl.model.core import CoreModel, expected_cycles, run_stream, stream_figures
from pascal_hdl.model.engine import sample_events
from pascal_hdl.testing import lockstep, plain, random_levels, residual_network
from pascal_ref.golden.quantize import integer_ann, quantize
from pascal_ref.testing import random_mlp


def run(config, queue, samples, seed, p_valid, p_ready):
    dut, model = NetworkCore(config), CoreModel(config)
    outcome = lockstep(dut, model, queue, until=lambda results: len(results) == samples, seed=seed,
                       p_valid=p_valid, p_ready=p_ready, max_cycles=400_000)
    return outcome.outputs


def mlp(rng, in_flight, double_buffer=None):
    model = quantize(random_mlp(rng, [12, 9, 7, 4], levels=[3, 2]))
    config = CoreConfig.from_integer_network(model, lanes=[4, 7, 2])
    return model, dataclasses.replace(config, in_flight=in_flight,
                                      layers=with_double_buffer(config.layers, double_buffer))


@pytest.mark.parametrize("in_flight", [1, 2, 3])
@pytest.mark.parametrize("p_valid, p_ready", [(1.0, 1.0), (0.7, 0.5), (1.0, 0.2)])
def test_mlp_samples_in_flight(in_flight, p_valid, p_ready):
    rng = np.random.default_rng(7)
    model, config = mlp(rng, in_flight)
    levels = rng.integers(0, 5, (12, 12)) * (rng.random((12, 12)) < 0.6)
    levels[5] = 0
    results = run(config, [e for s in levels for e in sample_events(s)], len(levels), 4, p_valid, p_ready)
    golden = integer_ann(model, x_int=levels)
    np.testing.assert_array_equal([r["logits"] for r in results], golden.integer_logits)
    assert [r["sample"] for r in results] == list(range(len(levels)))
    assert not any(r["rejected"] for r in results)
    finished = [r["finished"] for r in results]
    assert finished == sorted(finished) and len(set(finished)) == len(finished)
    if (p_valid, p_ready) == (1.0, 1.0):
        assert results == [{k: r[k] for k in results[0]} for r in plain(run_stream(config, levels))]
        if in_flight == 1:   # one sample at a time: the latency of each is that of the sample alone
            np.testing.assert_array_equal([r["cycles"] for r in results], expected_cycles(config, levels))


@pytest.mark.parametrize("in_flight, p_valid, p_ready", [(2, 1.0, 1.0), (3, 0.6, 0.4)])
def test_residual_network_samples_in_flight(in_flight, p_valid, p_ready):
    """A random ResNet (conv stem, identity and 1x1-conv shortcut blocks, global average pooling)."""
    rng = np.random.default_rng(5)
    _, model = residual_network(rng, [("identity", 3, 1), ("conv", 4, 2)], [2, 3, 2, 2, 3], input_shape=(2, 5, 5))
    config = core_config(model, lanes=2, in_flight=in_flight)
    levels = random_levels(rng, 5, (50,), 4)
    results = run(config, [e for s in levels for e in sample_events(s)], len(levels), 9, p_valid, p_ready)
    golden = integer_ann(model, x_int=levels.reshape((len(levels),) + tuple(model.network.input_shape)))
    np.testing.assert_array_equal([r["logits"] for r in results], golden.integer_logits)
    assert [r["sample"] for r in results] == list(range(len(levels)))


def test_rejection_belongs_to_its_sample_with_others_in_flight():
    """A bad event as the last of one sample, the next sample's first event right behind it, and a
    sample whose first event is bad: each flag is on exactly the sample that carried the bad event."""
    rng = np.random.default_rng(3)
    model, config = mlp(rng, 3)
    levels = rng.integers(1, 4, (4, 12))
    streams = [sample_events(s) for s in levels]
    streams[0][-1] = dict(streams[0][-1], count=config.input_levels + 1)     # bad last event (count)
    streams[2][0] = dict(streams[2][0], index=config.input_features)          # bad first event (index)
    streams[3].insert(2, dict(streams[3][1], last=False))                     # repeated index
    queue = [e for s in streams for e in s]
    results = run(config, queue, 4, 2, 1.0, 1.0)
    assert [r["rejected"] for r in results] == [1, 0, 1, 1]
    assert [r["sample"] for r in results] == [0, 1, 2, 3]


def test_in_flight_overlaps_samples_and_keeps_the_first_latency():
    """The cycle model of the same design on the same samples: with two samples in flight the results
    come closer together (each stage works on its own sample); the first result's latency is unchanged."""
    rng = np.random.default_rng(5)
    _, model = residual_network(rng, [("identity", 3, 1), ("conv", 4, 2)], [2, 3, 2, 2, 3], input_shape=(2, 5, 5))
    levels = random_levels(rng, 10, (50,), 4)
    one = run_stream(core_config(model, lanes=2), levels)
    two = run_stream(core_config(model, lanes=2, in_flight=2), levels)
    assert plain([r["logits"] for r in one]) == plain([r["logits"] for r in two])
    assert one[0]["cycles"] == two[0]["cycles"]
    assert stream_figures(two)["cycles_per_image"] < stream_figures(one)["cycles_per_image"]
    np.testing.assert_array_equal([r["cycles"] for r in one], expected_cycles(core_config(model, lanes=2), levels))


@pytest.mark.parametrize("value", [0, MAX_IN_FLIGHT + 1, 1.5, True, "2"])
def test_bad_in_flight_is_refused(value):
    rng = np.random.default_rng(1)
    _, config = mlp(rng, 1)
    with pytest.raises(HardwareError, match="in_flight must be an integer in 1..16"):
        dataclasses.replace(config, in_flight=value)


@pytest.mark.parametrize("in_flight, double_buffer, p_valid, p_ready", [
    (2, True, 1.0, 1.0), (2, True, 0.7, 0.5), (3, True, 1.0, 0.3), (2, ("act1",), 0.8, 0.8), (4, ("fc3",), 1.0, 1.0)])
def test_double_buffered_mlp_samples_in_flight(in_flight, double_buffer, p_valid, p_ready):
    """Double-buffered Linear engines in the core, beside :class:`CoreModel` cycle by cycle: results in
    order with their tags, logits equal to the integer golden model, every field equal to
    :func:`run_stream` with an ideal source and sink; idle and back-pressure change nothing but timing."""
    rng = np.random.default_rng(7)
    model, config = mlp(rng, in_flight, double_buffer)
    assert any(layer.banks == 2 for layer in config.layers)
    levels = rng.integers(0, 5, (12, 12)) * (rng.random((12, 12)) < 0.6)
    levels[5] = 0
    results = run(config, [e for s in levels for e in sample_events(s)], len(levels), 4, p_valid, p_ready)
    np.testing.assert_array_equal([r["logits"] for r in results], integer_ann(model, x_int=levels).integer_logits)
    assert [r["sample"] for r in results] == list(range(len(levels)))
    if (p_valid, p_ready) == (1.0, 1.0):
        assert results == [{k: r[k] for k in results[0]} for r in plain(run_stream(config, levels))]


@pytest.mark.parametrize("seed", range(3))
def test_reset_with_double_buffered_engines(seed):
    """``rst`` at random cycles with both engines double-buffered and three samples in flight (a bank
    draining, the other filling): every cycle equal to the model, the samples after a reset exact."""
    rng = np.random.default_rng(30 + seed)
    model, config = mlp(rng, 3, True)
    levels = rng.integers(1, 5, (10, 12)) * (rng.random((10, 12)) < 0.6)
    run_ = lockstep(NetworkCore(config), (core_model := CoreModel(config)), [e for s in levels for e in sample_events(s)],
                    seed=seed, p_valid=0.9, p_ready=0.7, p_reset=0.03, max_resets=3, reset_model=core_model.reset,
                    max_cycles=400_000)
    kept = [s for s in range(len(levels)) if s not in run_.lost]
    assert run_.resets and run_.lost and max(kept) > min(run_.lost)
    np.testing.assert_array_equal([r["logits"] for r in run_.outputs], integer_ann(model, x_int=levels[kept]).integer_logits)


def test_double_buffer_needs_two_in_flight():
    rng = np.random.default_rng(1)
    _, config = mlp(rng, 2, True)
    with pytest.raises(HardwareError, match="double-buffered \\(banks=2\\), which needs in_flight >= 2"):
        dataclasses.replace(config, in_flight=1)
    with pytest.raises(HardwareError, match="no stage named nope"):
        with_double_buffer(config.layers, ["nope"])


def test_linear_period_formula_is_each_engine_alone():
    """The period balance_lanes uses for a Linear engine equals its cycle model run alone on back-to-back
    samples (after the first), one bank and two."""
    rng = np.random.default_rng(4)
    model, config = mlp(rng, 2)
    levels = rng.integers(0, 5, (9, 12)) * (rng.random((9, 12)) < 0.6)
    levels[3] = 0
    inputs = [levels] + chain_forward(config.layers, levels)[:-1]
    for double in (False, True):
        for stage, counts in zip(with_double_buffer(config.layers, double), inputs):
            alone = stage_cycles(stage, counts)
            first = stage_cycles(stage, counts[:1])["total"]
            assert alone["total"] - first == pytest.approx(_linear_period(stage, counts[1:]) * 8), (stage.name, double)


def test_balanced_double_buffered_digits_mlp_meets_the_targets():
    """The digits MLP on the balanced lanes of docs/hardware.md (act1 16, fc2 1: the stages alone balanced) on
    40 test images in the cycle model: two in flight with act1 double-buffered give >= 1.8x the images per
    cycle of one in flight (the same design), and the mean latency stays within 10 %. ``balance_lanes``
    finds those lanes alone, then its coupled phase adds the readout's second lane from the budget, which
    shortens the two-in-flight core's period and latency further."""
    from pascal_hdl.flow.generate import core_config_from_network
    from pascal_ref.io.bundled import bundled_path
    from pascal_ref.io.fileformat import load

    _, model = core_config_from_network(load(bundled_path("digits-mlp")))
    levels = calibration_levels(model, 40)
    alone = {"act1": 16, "fc2": 1}
    one = stream_figures(run_stream(core_config(model, layer_lanes=alone), levels))
    two = stream_figures(run_stream(core_config(model, layer_lanes=alone, in_flight=2, double_buffer=["act1"]), levels))
    assert one["cycles_per_image"] / two["cycles_per_image"] >= 1.8
    assert two["latency_mean"] <= 1.1 * one["latency_mean"]

    balanced = balance_lanes(model, levels, double_buffer=True, in_flight=2)
    assert balanced["layer_lanes"] == {"act1": 16, "fc2": 2} and balanced["budget"] == 18
    alone_period = stream_figures(run_stream(core_config(model, layer_lanes=alone, in_flight=2, double_buffer=True),
                                             levels[:COUPLED_SAMPLES]))["cycles_per_image"]
    assert balanced["coupled_period"] <= (1 - COUPLED_GAIN) * alone_period
    coupled = stream_figures(run_stream(core_config(model, layer_lanes=balanced["layer_lanes"], in_flight=2,
                                                    double_buffer=["act1"]), levels))
    assert coupled["cycles_per_image"] < two["cycles_per_image"] and coupled["latency_mean"] < two["latency_mean"]
