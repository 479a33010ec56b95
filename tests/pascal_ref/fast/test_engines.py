"""The fast engines (:mod:`pascal_ref.fast`) equal the readable reference bit for bit.

Random integer networks of every shape the network description allows
(dense, conv, average and max pooling, overlapping windows, residual blocks
with identity and 1x1 shortcuts, equal and unequal L, L = 1, analog and
count-coded input) are run through

* the reference count and timestep engines (:func:`pascal_ref.golden.snn.simulate`)
  and the integer QCFS ANN (:func:`pascal_ref.golden.quantize.integer_ann`);
* :func:`pascal_ref.fast.count_engine` in every accumulation precision;
* :func:`pascal_ref.fast.timestep_engine`, including the final ``v`` and
  ``c`` of every neuron against the reference's traces;

and compared with exact equality.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pascal_ref.fast import (
    FLOAT32_EXACT_LIMIT,
    FLOAT64_EXACT_LIMIT,
    TimestepResult,
    count_engine,
    count_plan,
    float_ann_fast,
    gemm_precision,
    timestep_engine,
)
from pascal_ref.golden.ann import float_ann
from pascal_ref.golden.quantize import integer_ann, quantize
from pascal_ref.golden.snn import simulate
from pascal_ref.ir.network import (
    QCFS,
    AvgPool2d,
    BasicBlock,
    Conv2d,
    Flatten,
    GlobalAvgPool,
    Linear,
    MaxPool2d,
    Network,
)

LEVEL_CHOICES = (1, 2, 4, 8)


def _conv(rng, name, cin, cout, k=3, stride=1, padding=1, bias=True):
    weight = rng.normal(0, np.sqrt(2.0 / (cin * k * k)), (cout, cin, k, k))
    return Conv2d(name, weight, rng.normal(0, 0.1, cout) if bias else None, stride, padding)


def _linear(rng, name, fin, fout):
    return Linear(name, rng.normal(0, np.sqrt(2.0 / fin), (fout, fin)), rng.normal(0, 0.1, fout))


def _act(rng, name, levels):
    return QCFS(name, rng.uniform(0.4, 1.2), levels)


def _levels(rng, count, fixed=None):
    return [fixed] * count if fixed is not None else [int(rng.choice(LEVEL_CHOICES)) for _ in range(count)]


def build(kind: str, seed: int, input_levels: int | None, fixed_level: int | None = None) -> Network:
    """A small random network of one of the shapes under test."""
    rng = np.random.default_rng(seed)
    if kind == "dense":
        L = _levels(rng, 2, fixed_level)
        layers = [_linear(rng, "fc1", 12, 16), _act(rng, "a1", L[0]), _linear(rng, "fc2", 16, 10),
                  _act(rng, "a2", L[1]), _linear(rng, "out", 10, 3)]
        return Network((12,), layers, input_levels, name=kind)
    if kind == "conv_avg":
        L = _levels(rng, 2, fixed_level)
        layers = [_conv(rng, "c1", 3, 4), _act(rng, "a1", L[0]), AvgPool2d("p1", 2),
                  _conv(rng, "c2", 4, 5, stride=2), _act(rng, "a2", L[1]), Flatten("f"), _linear(rng, "out", 5 * 2 * 2, 4)]
        return Network((3, 8, 8), layers, input_levels, name=kind)
    if kind == "conv_max":
        L = _levels(rng, 3, fixed_level)
        layers = [_conv(rng, "c1", 3, 4), _act(rng, "a1", L[0]), MaxPool2d("p1", 2),
                  _conv(rng, "c2", 4, 6, padding=0, k=2), _act(rng, "a2", L[1]), MaxPool2d("p2", 2, 1),
                  AvgPool2d("p3", 2), Flatten("f"), _linear(rng, "fc", 6, 7), _act(rng, "a3", L[2]),
                  _linear(rng, "out", 7, 3)]
        return Network((3, 8, 8), layers, input_levels, name=kind)
    if kind == "overlap":
        L = _levels(rng, 2, fixed_level)
        layers = [_conv(rng, "c1", 2, 3, k=3, stride=2, padding=1), _act(rng, "a1", L[0]),
                  AvgPool2d("p1", 3, 1), _conv(rng, "c2", 3, 4, k=1, padding=0), _act(rng, "a2", L[1]),
                  GlobalAvgPool("g"), Flatten("f"), _linear(rng, "out", 4, 3)]
        return Network((2, 9, 9), layers, input_levels, name=kind)
    if kind == "resnet":
        L = _levels(rng, 5, fixed_level)
        block1 = BasicBlock("b1", _conv(rng, "b1.c1", 4, 4, bias=False), _act(rng, "b1.a1", L[1]),
                            _conv(rng, "b1.c2", 4, 4, bias=False), _act(rng, "b1.a2", L[2]))
        block2 = BasicBlock("b2", _conv(rng, "b2.c1", 4, 6, stride=2, bias=False), _act(rng, "b2.a1", L[3]),
                            _conv(rng, "b2.c2", 6, 6, bias=False), _act(rng, "b2.a2", L[4]),
                            shortcut=_conv(rng, "b2.sc", 4, 6, k=1, stride=2, padding=0, bias=False))
        layers = [_conv(rng, "stem", 3, 4), _act(rng, "a0", L[0]), block1, block2, GlobalAvgPool("g"), Flatten("f"),
                  _linear(rng, "fc", 6, 3)]
        return Network((3, 6, 6), layers, input_levels, name=kind)
    raise ValueError(kind)


KINDS = ("dense", "conv_avg", "conv_max", "overlap", "resnet")


def _data(network: Network, seed: int, batch: int = 5) -> np.ndarray:
    return np.random.default_rng(seed + 1000).uniform(0, 1, (batch,) + network.input_shape)


def _model(network, weight_bits=8):
    return quantize(network, weight_bits=weight_bits, input_bound=1.0 if network.input_levels is None else None)


def _assert_same(reference, fast, hidden):
    np.testing.assert_array_equal(fast.integer_logits, reference.integer_logits)
    assert fast.integer_logits.dtype.kind == "i"
    assert set(fast.counts) == set(hidden)
    for name in hidden:
        np.testing.assert_array_equal(fast.counts[name], reference.counts[name], err_msg=f"layer {name}")


CASES = [(kind, seed, input_levels, fixed)
         for kind in KINDS
         for seed, input_levels, fixed in ((0, None, None), (1, 4, None), (2, None, 1), (3, 2, 4), (4, None, None))]


@pytest.mark.parametrize("kind, seed, input_levels, fixed", CASES)
def test_fast_engines_equal_reference(kind, seed, input_levels, fixed):
    network = build(kind, seed, input_levels, fixed)
    x = _data(network, seed)
    model = _model(network)
    hidden = [layer.name for layer in network.hidden_layers]

    ann = integer_ann(model, x)
    reference_count = simulate(model, x, engine="count")
    reference_steps = simulate(model, x, engine="timestep", trace=True)

    fast_count = count_engine(model, x)
    _assert_same(reference_count, fast_count, hidden)
    np.testing.assert_array_equal(fast_count.logits, reference_count.logits)
    for name in hidden:
        np.testing.assert_array_equal(fast_count.counts[name], ann.levels[name])

    fast_steps = timestep_engine(model, x, state=True)
    _assert_same(reference_steps, fast_steps, hidden)
    for name in hidden:
        np.testing.assert_array_equal(fast_steps.traces[name]["v"], reference_steps.traces[name].v, err_msg=f"v of {name}")
        np.testing.assert_array_equal(fast_steps.traces[name]["c"], reference_steps.traces[name].c, err_msg=f"c of {name}")

    # The random networks must exercise the neurons: spikes, and not only saturated ones.
    total = sum(int(fast_count.counts[name].sum()) for name in hidden)
    saturated = sum(int((fast_count.counts[name] == network.by_name[name].levels).sum()) for name in hidden)
    neurons = sum(fast_count.counts[name].size for name in hidden)
    assert 0 < total and saturated < neurons


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("precision", ["float32", "float64", "int64"])
def test_count_engine_every_precision(kind, precision):
    network = build(kind, 7, None)
    x = _data(network, 7)
    model = _model(network)
    plan = count_plan(model, precision)
    assert set(plan.precisions().values()) == {precision}
    _assert_same(simulate(model, x, engine="count"), count_engine(plan, x),
                 [layer.name for layer in network.hidden_layers])


@settings(max_examples=25, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2 ** 16), kind=st.sampled_from(KINDS), weight_bits=st.sampled_from([3, 8, 12]),
       input_levels=st.sampled_from([None, 1, 3]), batch=st.integers(1, 4))
def test_fast_engines_property(seed, kind, weight_bits, input_levels, batch):
    network = build(kind, seed, input_levels)
    x = _data(network, seed, batch)
    model = _model(network, weight_bits)
    reference = integer_ann(model, x)
    hidden = [layer.name for layer in network.hidden_layers]
    for result in (count_engine(model, x), timestep_engine(model, x)):
        np.testing.assert_array_equal(result.integer_logits, reference.integer_logits)
        for name in hidden:
            np.testing.assert_array_equal(result.counts[name], reference.levels[name])


def test_integer_input_levels_path():
    network = build("conv_avg", 11, 4)
    model = _model(network)
    x_int = np.random.default_rng(3).integers(0, 5, (3,) + network.input_shape)
    reference = simulate(model, x_int / 4.0, engine="count")
    np.testing.assert_array_equal(count_engine(model, x_int=x_int).integer_logits, reference.integer_logits)
    np.testing.assert_array_equal(timestep_engine(model, x_int=x_int).integer_logits, reference.integer_logits)


# ------------------------------------------------- the exactness bound


def test_gemm_precision_thresholds():
    assert gemm_precision(FLOAT32_EXACT_LIMIT - 1) == "float32"
    assert gemm_precision(FLOAT32_EXACT_LIMIT) == "float64"
    assert gemm_precision(FLOAT64_EXACT_LIMIT - 1) == "float64"
    assert gemm_precision(FLOAT64_EXACT_LIMIT) == "int64"
    with pytest.raises(OverflowError):
        gemm_precision(FLOAT32_EXACT_LIMIT, "float32")
    with pytest.raises(OverflowError):
        gemm_precision(2 ** 63)
    with pytest.raises(ValueError):
        gemm_precision(5, "float16")


def _worst_case_network(fan_in: int) -> Network:
    """One readout layer, every weight at +max and every input at its top level."""
    weight = np.ones((2, fan_in))
    weight[1] = -1.0
    return Network((fan_in,), [Linear("out", weight, np.zeros(2))], input_levels=8, name="worst")


@pytest.mark.parametrize("fan_in, expected", [(16513, "float32"), (16514, "float64")])
def test_bound_at_the_float32_limit(fan_in, expected):
    # 127 * 8 * 16513 = 2**24 - 8: the largest worst-case sum float32 still holds exactly.
    model = quantize(_worst_case_network(fan_in))
    plan = count_plan(model)
    assert plan.bounds()["out"] == 127 * 8 * fan_in
    assert plan.precisions()["out"] == expected
    x = np.ones((2, fan_in))
    x[1, ::2] = 7 / 8   # odd sums next to the limit
    result = count_engine(plan, x)
    np.testing.assert_array_equal(result.integer_logits, integer_ann(model, x).integer_logits)
    assert result.integer_logits[0, 0] == 127 * 8 * fan_in
    if expected == "float64":
        with pytest.raises(OverflowError, match="layer 'out'"):
            count_plan(model, "float32")


def test_wide_weights_fall_back_to_float64():
    network = build("conv_avg", 5, 8)
    model = _model(network, weight_bits=20)
    plan = count_plan(model)
    assert "float64" in plan.precisions().values()
    x = _data(network, 5)
    _assert_same(simulate(model, x, engine="count"), count_engine(plan, x), [l.name for l in network.hidden_layers])


# ---------------------------------------------- timestep statistics


def test_timestep_events_count_each_spike_per_synapse():
    network = build("dense", 21, 4)
    model = _model(network)
    x = _data(network, 21)
    result = timestep_engine(model, x)
    stats = result.stats
    input_counts = model.encode_input(x)
    assert stats.events["a1"] == int(input_counts.sum()) * 16
    assert stats.events["a2"] == int(result.counts["a1"].sum()) * 10
    assert stats.events["out"] == int(result.counts["a2"].sum()) * 3
    assert stats.spikes["a1"] == int(result.counts["a1"].sum())
    assert stats.total_events == sum(stats.events.values()) > 0


def test_analog_input_counts_macs_not_events():
    network = build("conv_avg", 22, None)
    model = _model(network)
    stats = timestep_engine(model, _data(network, 22)).stats
    assert stats.events["a1"] == 0 and stats.macs["a1"] > 0


def test_timestep_result_is_one_type():
    network = build("conv_max", 23, 4)
    model = _model(network)
    x = _data(network, 23)
    result = timestep_engine(model, x)
    assert isinstance(result, TimestepResult) and result.traces is None and result.stats.total_events > 0
    again = timestep_engine(model, x)
    np.testing.assert_array_equal(again.integer_logits, result.integer_logits)
    assert again.stats.events == result.stats.events and again.stats.spikes == result.stats.spikes


def test_engines_reject_float_networks_and_bad_arguments():
    network = build("dense", 1, None)
    with pytest.raises(TypeError):
        count_engine(network, np.zeros((1, 12)))
    with pytest.raises(TypeError):
        timestep_engine(network, np.zeros((1, 12)))
    model = _model(network)
    with pytest.raises(ValueError):
        count_engine(model)
    with pytest.raises(ValueError):
        timestep_engine(model, np.zeros((1, 12)), x_int=np.zeros((1, 12), int))


# ---------------------------------------------- float32 ANN (benchmarks)


@pytest.mark.parametrize("kind", KINDS)
def test_float_ann_fast_matches_reference_float_ann(kind):
    network = build(kind, 31, None)
    x = _data(network, 31, 8)
    reference = float_ann(network, x)
    fast64 = float_ann_fast(network, x, dtype=np.float64)
    np.testing.assert_allclose(fast64, reference.logits, rtol=1e-9, atol=1e-9)
    fast32 = float_ann_fast(network, x)
    assert fast32.dtype == np.float32
    # float32 may flip a level next to a rounding boundary; the predictions agree.
    assert np.mean(np.argmax(fast32, 1) == reference.predictions) >= 0.75
