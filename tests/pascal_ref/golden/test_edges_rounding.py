"""The quantizer and the input coding at the values where the rounding rules differ (issue 17).

Before, every rounding of the quantizer (``W_int = round(W_eff*s)``,
``theta_int = max(1, round(theta*s))``, ``b_int = round(b*s)``,
``v0 = round(phi*theta_int) + b_int``) could be turned into a floor without a
test noticing: the only hand case had thresholds where floor and round agree.
Here every product is an exact binary fraction chosen at a tie (``x.5``) or
above one (``x.75``), so floor, round-half-up (``floor(x + 1/2)``) and the
documented ``round`` (``np.rint``: half to even, as Python's ``round``) give
three different integer models, and the expected integers are written by hand.
The input coding ``clip(floor(x*L_in + 1/2), 0, L_in)`` is checked at exact ties,
where it differs from ``rint``; the ``max_bits`` check at its exact boundary.
"""
from __future__ import annotations

import numpy as np
import pytest

from pascal_ref import Linear, Network, QCFS
from pascal_ref.golden.ann import float_ann
from pascal_ref.golden.quantize import QuantizationError, integer_ann, quantize
from pascal_ref.golden.snn import simulate

R = 127 / 128
# Channel c has max |W| = R / 2**c, so its scale is exactly 128 * 2**c (8-bit weights, input_levels = 1:
# W_eff = W). The second column lands on W*s = 2.5, -2.5, 1.5, 0.75.
WEIGHT = np.array([[R, 2.5 / 128], [R / 2, -2.5 / 256], [R / 4, 1.5 / 512], [R / 8, 0.75 / 1024]])
READOUT = np.array([[1.0, -0.5, 0.25, 2.5 / 8]])


def network(theta_times_128: float, bias_times_128: float) -> Network:
    theta = theta_times_128 / 128
    return Network((2,), [Linear("fc", WEIGHT, np.full(4, bias_times_128 / 128)), QCFS("act", theta * 4, 4),
                          Linear("out", READOUT, np.array([0.0]))], input_levels=1, name="rounding")


def test_scales_are_the_exact_powers_of_two():
    model = quantize(network(2.75, 1.75))
    np.testing.assert_array_equal(model.layers[0].scale, [128, 256, 512, 1024])
    theta = model.network.neuron_layers[0].activation.theta
    np.testing.assert_array_equal(theta * model.layers[0].scale, [2.75, 5.5, 11, 22])   # the products are exact


def test_theta_v0_bias_above_and_at_ties():
    """theta*s = 2.75, 5.5 (floor 2, 5); phi*theta_int = 1.5, 5.5 (floor 1, 5); b*s = 1.75, 3.5 (floor 1, 3)."""
    layer = quantize(network(2.75, 1.75)).layers[0]
    np.testing.assert_array_equal(layer.theta, [3, 6, 11, 22])       # floor: 2 5 11 22
    np.testing.assert_array_equal(layer.bias, [2, 4, 7, 14])         # floor: 1 3 7 14
    np.testing.assert_array_equal(layer.v0, [2 + 2, 3 + 4, 6 + 7, 11 + 14])   # rint(1.5, 3, 5.5, 11) + b_int


def test_theta_v0_bias_at_ties_to_even():
    """theta*s = 2.5 (half-up 3); phi*theta_int = 2.5 (half-up 3); b*s = 2.5 (half-up 3): all round to even."""
    layer = quantize(network(2.5, 2.5)).layers[0]
    np.testing.assert_array_equal(layer.theta, [2, 5, 10, 20])       # half-up: 3 5 10 20
    np.testing.assert_array_equal(layer.bias, [2, 5, 10, 20])        # half-up: 3 5 10 20
    np.testing.assert_array_equal(layer.v0, [1 + 2, 2 + 5, 5 + 10, 10 + 20])   # rint(1, 2.5, 5, 10) + b_int


def test_weights_at_ties_and_above():
    model = quantize(network(2.75, 1.75))
    # W*s = 2.5, -2.5, 1.5, 0.75: rint 2, -2, 2, 1 (floor 2, -3, 1, 0; half-up 3, -2, 2, 1).
    np.testing.assert_array_equal(model.layers[0].synapses[0].weight, [[127, 2], [127, -2], [127, 2], [127, 1]])
    # Readout: one scale, 127 / (theta_src * max|W|); W*theta_src*s = 127, -63.5, 31.75, 39.6875.
    readout = model.layers[1]
    exact = READOUT * model.network.neuron_layers[0].activation.theta * readout.scale[0]
    np.testing.assert_array_equal(exact, [[127, -63.5, 31.75, 39.6875]])
    np.testing.assert_array_equal(readout.synapses[0].weight, [[127, -64, 32, 40]])   # floor(x+1/2): -63


def test_the_integer_paths_agree_on_the_tie_model():
    """The integers above are a consistent model: the integer ANN and SNN agree on every input."""
    model = quantize(network(2.75, 1.75))
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], float)
    ann = integer_ann(model, x)
    snn = simulate(model, x, engine="timestep")
    np.testing.assert_array_equal(ann.levels["act"], snn.counts["act"])
    np.testing.assert_array_equal(ann.integer_logits, snn.integer_logits)
    # By hand, x = (1, 1): S = 129, 125, 129, 128; q = clip(floor((S + v0) / theta), 0, 4).
    np.testing.assert_array_equal(ann.levels["act"][3], [4, 4, 4, 4])
    np.testing.assert_array_equal(ann.levels["act"][1], [(2 + 4) // 3, max(0, (-2 + 7) // 6), (2 + 13) // 11, (1 + 25) // 22])


def test_widths_are_the_hand_computed_ranges_and_max_bits_is_exact():
    """Hidden: S in [-2, 129], v0 up to 25, theta - 1 = 21: membrane [-2, 154], 9 bits. Readout: levels 0..4 on
    (127, -64, 32, 40): accumulator [-256, 796], 11 bits. max_bits = 11 is accepted, 10 refused naming the layer."""
    model = quantize(network(2.75, 1.75), max_bits=11)
    hidden, readout = model.layers
    assert (hidden.current_range, hidden.membrane_range, hidden.membrane_bits) == ((-2, 129), (-2, 154), 9)
    assert (readout.current_range, readout.membrane_range, readout.membrane_bits) == ((-256, 796), (-256, 796), 11)
    assert hidden.counter_range == (-3, 1 + 3)   # settle max(T1, T2) - 1 = 3 steps, T1 = 1
    with pytest.raises(QuantizationError, match=r"layer 'out': membrane needs 11 bits .*max_bits=10"):
        quantize(network(2.75, 1.75), max_bits=10)


def test_max_bits_boundary_on_the_hidden_layer():
    """A network whose widest register is a hidden membrane: accepted at exactly its width, refused one below."""
    net = Network((2,), [Linear("fc", np.array([[R, R], [R, -R]]), np.zeros(2)), QCFS("act", 8.0, 4),
                         Linear("out", np.array([[1.0, 0.0]]))], input_levels=255)
    widest = quantize(net, max_bits=62)
    bits = widest.layers[0].membrane_bits
    assert bits > widest.layers[1].membrane_bits and bits >= 9
    assert quantize(net, max_bits=bits).layers[0].membrane_bits == bits
    with pytest.raises(QuantizationError, match=f"layer 'act': membrane needs {bits} bits"):
        quantize(net, max_bits=bits - 1)


L_IN = 16
TIES = (np.arange(L_IN) + 0.5) / L_IN      # x*L_in = k + 1/2 exactly: floor(x*L_in + 1/2) = k + 1, rint: even


def identity_network() -> Network:
    """Each input straight to its own neuron (lam = 1, L = L_in, phi = 0): the levels are the input levels."""
    return Network((L_IN,), [Linear("fc", np.eye(L_IN), np.zeros(L_IN)), QCFS("act", 1.0, L_IN, phi=0.0),
                             Linear("out", np.ones((1, L_IN)))], input_levels=L_IN, name="identity")


def test_input_coding_rounds_ties_up():
    model = quantize(identity_network())
    x = np.stack([TIES, TIES - 0.01 / L_IN, np.arange(L_IN) / L_IN, np.minimum(1, TIES + 0.49 / L_IN)])
    expected = np.stack([np.arange(L_IN) + 1, np.arange(L_IN), np.arange(L_IN), np.minimum(L_IN, np.arange(L_IN) + 1)])
    np.testing.assert_array_equal(model.encode_input(x), expected)
    # rint would give 0, 2, 2, 4, 4, ... on the ties: half of them differ.
    assert (np.rint(TIES * L_IN) != expected[0]).sum() == L_IN // 2


def test_every_path_uses_the_same_input_coding():
    """Float ANN, float SNN, integer ANN and integer SNN all see floor(x*L_in + 1/2) on the ties."""
    net = identity_network()
    model = quantize(net)
    x = TIES[None]
    expected = np.arange(L_IN)[None] + 1
    np.testing.assert_array_equal(float_ann(net, x).levels["act"], expected)
    np.testing.assert_array_equal(simulate(net, x, engine="timestep").counts["act"], expected)
    np.testing.assert_array_equal(integer_ann(model, x).levels["act"], expected)
    np.testing.assert_array_equal(simulate(model, x, engine="count").counts["act"], expected)


def test_membrane_bound_covers_theta_minus_one():
    """With phi = 0 and no bias, v0 = 0 is below theta - 1 = 21: after a spike v can be up to theta - 1 plus the
    rest of the current, so the upper membrane bound is max(v0, theta - 1) + S_max = 21 + 129, not v0 + S_max."""
    net = Network((2,), [Linear("fc", WEIGHT, np.zeros(4)), QCFS("act", 2.75 / 128 * 4, 4, phi=0.0),
                         Linear("out", READOUT, np.array([0.0]))], input_levels=1)
    hidden = quantize(net).layers[0]
    np.testing.assert_array_equal(hidden.v0, [0, 0, 0, 0])
    assert hidden.membrane_range == (-2, 21 + 129)
