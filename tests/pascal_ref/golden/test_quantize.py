"""The integer model: quantizer formulas, derived widths, errors."""
import numpy as np
import pytest

from pascal_ref import QCFS, Linear, Network, QuantizationError, integer_ann, quantize
from pascal_ref.numeric import signed_width
from pascal_ref.testing import random_inputs, random_network


def tiny():
    w1 = np.array([[0.5, -0.25], [1.0, 0.125]])
    return Network((2,), [Linear("fc", w1, np.array([0.1, -0.2])), QCFS("act", 2.0, 4),
                          Linear("out", np.array([[1.0, -1.0]]), np.array([0.5]))], input_levels=4)


def test_quantizer_formulas_by_hand():
    model = quantize(tiny(), weight_bits=8)
    layer = model.by_name["act"]
    # spike of the input worth 1/4: W_eff = W/4, per-channel max |W_eff| = 0.125 and 0.25
    scale = np.array([127 / 0.125, 127 / 0.25])
    np.testing.assert_array_equal(layer.scale, scale)
    np.testing.assert_array_equal(layer.synapses[0].weight, [[127, -64], [127, 16]])  # round(-63.5) = -64 (half to even)
    np.testing.assert_array_equal(layer.theta, np.rint(0.5 * scale))  # theta = lam/L = 0.5
    np.testing.assert_array_equal(layer.bias, np.rint(np.array([0.1, -0.2]) * scale))
    np.testing.assert_array_equal(layer.v0, np.rint(0.5 * layer.theta) + layer.bias)
    # input levels 0..4: per channel 4 * (sum of negative, of positive weights); the range spans channels
    assert layer.current_range == (4 * -64, 4 * (127 + 16))


def test_per_layer_threshold_is_one_value():
    model = quantize(tiny(), per_channel=False)
    assert len(set(model.by_name["act"].theta.tolist())) == 1


def test_widths_bound_every_value_seen():
    rng = np.random.default_rng(4)
    for family in ("dense", "conv", "residual"):
        network = random_network(rng, family, input_levels=8)
        model = quantize(network, weight_bits=6)
        x = random_inputs(network, rng, 16)
        result = integer_ann(model, x)
        lo, hi = model.readout.membrane_range
        assert lo <= result.integer_logits.min() and result.integer_logits.max() <= hi
        for layer in model.layers:
            assert layer.membrane_bits <= 48 and signed_width(*layer.membrane_range) == layer.membrane_bits


def test_signed_width():
    assert [signed_width(0, 0), signed_width(-1, 0), signed_width(0, 1), signed_width(-128, 127), signed_width(0, 128)] == [1, 1, 2, 8, 9]


def test_too_wide_is_an_error_not_a_wrap():
    with pytest.raises(QuantizationError, match=r"layer 'act': membrane needs \d+ bits.*max_bits=8"):
        quantize(tiny(), weight_bits=16, max_bits=8)


@pytest.mark.parametrize("kwargs, message", [
    (dict(weight_bits=1), "weight_bits must be an integer in 2..24"),
    (dict(weight_bits=8.0), "weight_bits"),
    (dict(max_bits=100), "max_bits"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(QuantizationError, match=message):
        quantize(tiny(), **kwargs)


def test_analog_input_needs_a_bound_and_checks_integer_input():
    network = random_network(np.random.default_rng(0), "dense", input_levels=None)
    with pytest.raises(QuantizationError, match="analog input: give input_bound"):
        quantize(network)
    model = quantize(network, input_bound=3.0, input_bits=4)
    assert model.input_range == (-7, 7)
    with pytest.raises(ValueError, match=r"values must lie in \[-7, 7\]"):
        integer_ann(model, x_int=np.full((1, 6), 9))
    with pytest.raises(TypeError, match="integer array"):
        integer_ann(model, x_int=np.zeros((1, 6)))
    with pytest.raises(ValueError, match="exactly one of"):
        integer_ann(model)
    with pytest.raises(TypeError, match="expected a Network"):
        quantize("model.npz")


def test_quantizer_accuracy_cost_on_random_models_is_small():
    """Logit agreement of the float and the integer ANN on random models (8-bit)."""
    rng = np.random.default_rng(9)
    agreements = []
    for family in ("dense", "conv", "residual"):
        network = random_network(rng, family, input_levels=16)
        x = random_inputs(network, rng, 64)
        from pascal_ref import float_ann
        agreements.append(np.mean(float_ann(network, x).predictions == integer_ann(quantize(network), x).predictions))
    assert min(agreements) >= 0.8, agreements
