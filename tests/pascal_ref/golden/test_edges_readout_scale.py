"""The readout's integer scale, pinned exactly (issue 17: before, only an 80 % agreement threshold guarded it).

The readout has one scale ``s = (2^(b-1)-1) / max|W * theta_src|`` for all its
channels, so that the argmax of the integer logits is the class; its logits
are ``(W_int q + b_int) / s`` with ``W_int = round(W theta_src s)`` and
``b_int = round(b s)``, so they differ from the float readout of the same
source levels ``W (theta_src q) + b`` by at most ``(sum(q) + 1) / (2 s)``.
"""
from __future__ import annotations

import numpy as np
import pytest

from pascal_ref import integer_ann, quantize
from pascal_ref.testing import random_inputs, random_network


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("weight_bits", [4, 8])
def test_readout_scale_is_one_exact_scale(seed, weight_bits):
    rng = np.random.default_rng(seed)
    network = random_network(rng, "dense", input_levels=16)
    x = random_inputs(network, rng, 48)
    model = quantize(network, weight_bits=weight_bits)
    readout_float = network.neuron_layers[-1]
    readout = model.layers[-1]
    assert readout_float.is_readout and readout.levels is None
    (synapse,) = readout.synapses
    source = next(layer for layer in network.neuron_layers if layer.name == synapse.source)
    theta = source.activation.theta
    weight = readout_float.synapses[0].op.weight
    expected_scale = ((1 << (weight_bits - 1)) - 1) / np.abs(weight * theta).max()
    np.testing.assert_array_equal(readout.scale, np.full(readout.scale.shape, expected_scale))
    np.testing.assert_array_equal(synapse.weight, np.rint(weight * theta * expected_scale))
    np.testing.assert_array_equal(readout.bias, np.rint(readout_float.bias * expected_scale))

    result = integer_ann(model, x)
    q = result.levels[synapse.source].reshape(len(x), -1)
    np.testing.assert_array_equal(result.integer_logits, q @ synapse.weight.T + readout.bias)
    np.testing.assert_array_equal(result.logits, result.integer_logits / expected_scale)
    float_logits = (theta * q) @ weight.T + readout_float.bias
    bound = (q.sum(axis=1, keepdims=True) + 1) / (2 * expected_scale)
    assert np.all(np.abs(result.logits - float_logits) <= bound * (1 + 1e-12))
    np.testing.assert_array_equal(result.predictions, np.argmax(result.integer_logits, axis=1))
