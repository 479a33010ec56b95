"""No silent wraps (issue 16, deliverable 2): every integer the quantizer makes, every bound and width it
derives, is either exact or a ``QuantizationError`` naming the layer and the array; the engines' inputs
and the cost model refuse what would wrap or clip without a word.

Each bound is driven to its edge: the largest value that still fits and the first that does not.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pascal_ref.analysis.cost import network_cost, spike_counts
from pascal_ref.analysis.verify import verify
from pascal_ref.errors import PascalError
from pascal_ref.golden.ann import check_input, float_ann
from pascal_ref.golden.quantize import INTEGER_BITS, QuantizationError, _to_integers, integer_ann, quantize
from pascal_ref.golden.snn import simulate
from pascal_ref.ir.layers import MAX_LEVELS, LevelLimitError
from pascal_ref.ir.network import QCFS, Linear, Network


def _network(readout_bias=0.0, lam=1.0, levels=4, hidden_bias=0.0, input_levels=4, seed=0):
    rng = np.random.default_rng(seed)
    return Network((4,), [
        Linear("fc1", rng.normal(size=(3, 4)), np.full(3, hidden_bias)), QCFS("act1", lam, levels),
        Linear("fc2", rng.normal(size=(2, 3)), np.array([readout_bias, 0.0]))], input_levels=input_levels, name="wrap")


# ------------------------------------------------------------------ the quantizer


@pytest.mark.parametrize("bias", [1e17, 1e30, -1e300], ids=["1e17", "1e30", "-1e300"])
def test_a_huge_readout_bias_is_an_error_naming_the_layer_and_the_array(bias):
    """Before: ``astype(int64)`` turned the integer bias into INT64_MIN and the accumulator range into
    one whose low end was above its high end."""
    with pytest.raises(QuantizationError, match=r"layer 'fc2': the integer bias needs \d+ bits .*more than the 62 "
                                                r"bits of the exact int64 model: the bias is too large"):
        quantize(_network(readout_bias=bias))


@pytest.mark.parametrize("lam", [1e-30, 1e-200], ids=["1e-30", "1e-200"])
def test_a_tiny_lam_is_an_error_naming_the_layer_and_the_array(lam):
    """A tiny ``lam`` makes the next layer's effective weights tiny and its scale huge: its bias wrapped."""
    with pytest.raises(QuantizationError, match=r"layer 'fc2': the integer bias needs \d+ bits.*the weights or the "
                                                r"source's theta \(lam/L\) are small"):
        quantize(_network(readout_bias=0.5, lam=lam))


def test_verify_never_says_ok_for_a_model_that_would_wrap():
    with pytest.raises(QuantizationError, match="layer 'fc2': the integer bias"):
        verify(_network(readout_bias=1e17), np.full((2, 4), 0.5))


def test_the_integer_bound_at_its_edge():
    edge = 2.0 ** INTEGER_BITS
    below = np.nextafter(edge, 0)
    assert int(_to_integers("l", "bias", [below, -below])[0]) == int(below)
    for value, message in ((edge, r"needs 64 bits"), (-edge, r"needs 64 bits"), (np.inf, "is not finite"),
                           (np.nan, "is not finite")):
        with pytest.raises(QuantizationError, match=rf"layer 'l': the integer bias {message}"):
            _to_integers("l", "bias", [0.0, value])


def test_the_membrane_width_at_its_edge():
    """The width check in Python ints: a model needing exactly ``max_bits`` passes, one bit fewer is an error."""
    network = _network(readout_bias=3e9)
    bits = max(layer.membrane_bits for layer in quantize(network, max_bits=62).layers)
    assert bits > 32
    quantize(network, max_bits=bits)
    with pytest.raises(QuantizationError, match=rf"membrane needs {bits} bits .*more than max_bits={bits - 1}"):
        quantize(network, max_bits=bits - 1)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(bias_exponent=st.floats(-3, 40), sign=st.sampled_from([-1.0, 1.0]), lam_exponent=st.floats(-40, 3),
       layer=st.sampled_from(["fc1", "fc2"]))
def test_bounds_are_exact_or_an_error(bias_exponent, sign, lam_exponent, layer):
    """Over twenty orders of magnitude of bias and lam: a QuantizationError, or integers equal to the
    rounded floats computed in Python ints, ordered ranges, and the integer SNN equal to the integer ANN."""
    bias = sign * 10.0 ** bias_exponent
    network = _network(readout_bias=bias if layer == "fc2" else 0.0, hidden_bias=bias if layer == "fc1" else 0.0,
                       lam=10.0 ** lam_exponent)
    try:
        model = quantize(network)
    except QuantizationError as error:
        assert str(error).startswith(("layer 'act1'", "layer 'fc2'")), error   # the neuron layers
        return
    for float_layer, int_layer in zip(network.neuron_layers, model.layers):
        exact = [round(float(b) * float(s)) for b, s in zip(float_layer.bias, int_layer.scale)]
        assert [int(b) for b in int_layer.bias] == exact
        low, high = int_layer.membrane_range
        assert low <= min(0, int(int_layer.v0.min())) and high >= int(int_layer.v0.max())
        assert int_layer.membrane_bits <= 48
    x = np.random.default_rng(1).uniform(0, 1, (8, 4))
    ann, snn = integer_ann(model, x), simulate(model, x, engine="timestep")
    assert np.array_equal(ann.integer_logits, snn.integer_logits)


# ------------------------------------------------------------------ levels, inputs and dtypes


def test_levels_are_bounded_where_the_network_is_made():
    _network(levels=MAX_LEVELS)
    with pytest.raises(LevelLimitError, match=rf"layer 'act1': L={MAX_LEVELS + 1} exceeds the limit of {MAX_LEVELS}"):
        _network(levels=MAX_LEVELS + 1)
    with pytest.raises(LevelLimitError, match=r"input_levels=1.00e30 exceeds the limit"):
        _network(input_levels=10 ** 30)


def test_count_coded_input_outside_zero_one_is_refused_not_clipped():
    network = _network()
    raw = np.arange(8.0).reshape(2, 4)   # raw digits-like pixels 0..7
    for run in (lambda: float_ann(network, raw), lambda: simulate(network, raw, engine="count"),
                lambda: quantize(network).encode_input(raw), lambda: check_input(network, raw)):
        with pytest.raises(PascalError, match=r"values in \[0, 7\]; network 'wrap' count-codes its input"):
            run()
    check_input(network, raw / 7)


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.bool_, "int8", np.complex128])
def test_float_ann_refuses_a_non_float_dtype(dtype):
    with pytest.raises(TypeError, match="float_ann: dtype must be np.float32 or np.float64"):
        float_ann(_network(), np.zeros((1, 4)), dtype=dtype)
    assert float_ann(_network(), np.zeros((1, 4)), dtype=np.float32).logits.dtype == np.float32


# ------------------------------------------------------------------ the cost model


def test_cost_at_the_largest_levels_has_no_negative_count():
    network = _network(levels=MAX_LEVELS, lam=1.0)
    x = np.random.default_rng(2).uniform(0, 1, (3, 4))
    cost = network_cost(network, x)
    assert all(row.spikes_out >= 0 and row.acs >= 0 and row.neuron_updates >= 0 for row in cost.layers)
    assert cost.layers[0].neuron_updates == 3 * (4 + MAX_LEVELS - 1)


@pytest.mark.parametrize("counts, message", [
    (lambda c: c | {"act1": c["act1"] - 10}, r"counts of 'act1' lie in \[-\d+, -?\d+\], outside 0..4"),
    (lambda c: c | {"act1": np.full_like(c["act1"], 2 ** 62)}, r"outside 0..4"),
    (lambda c: c | {"act1": c["act1"].astype(np.float64)}, r"counts of 'act1' must be an integer array"),
    (lambda c: c | {"input": c["input"] + 5}, r"counts of 'input' lie in .*outside 0..4"),
], ids=["negative", "huge", "float", "input"])
def test_cost_refuses_counts_that_could_wrap(counts, message):
    network = _network()
    given_counts = spike_counts(network, np.random.default_rng(3).uniform(0, 1, (3, 4)))
    with pytest.raises(PascalError, match=message):
        network_cost(network, counts=counts(given_counts))
