"""``SharedProducts``: the float SNN's count engine takes the float ANN's synapse products only where its
input is bit for bit the ANN's, so every result equals the engine run alone (verify uses it)."""
from __future__ import annotations

import numpy as np
import pytest

from pascal_ref.golden.ann import float_ann
from pascal_ref.golden.ops import SharedProducts
from pascal_ref.golden.snn import simulate_count
from pascal_ref.testing import FAMILIES, random_inputs, random_network


def _same(a, b) -> bool:
    return a.dtype == b.dtype and np.array_equal(a, b) and np.array_equal(np.signbit(a), np.signbit(b))


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("input_levels", [None, 4])
def test_shared_products_change_no_result(family, input_levels):
    rng = np.random.default_rng(7)
    network = random_network(rng, family, input_levels=input_levels)
    x = random_inputs(network, rng, 24)
    shared = SharedProducts()
    ann, snn = float_ann(network, x, shared=shared), simulate_count(network, x, shared=shared)
    alone_ann, alone_snn = float_ann(network, x), simulate_count(network, x)
    assert _same(ann.logits, alone_ann.logits) and _same(snn.logits, alone_snn.logits)
    assert all(np.array_equal(ann.levels[k], alone_ann.levels[k]) for k in alone_ann.levels)
    assert all(np.array_equal(snn.counts[k], alone_snn.counts[k]) for k in alone_snn.counts)
    assert shared.hits >= 1


def test_a_different_input_is_computed_afresh():
    rng = np.random.default_rng(8)
    network = random_network(rng, "dense", input_levels=None)
    layer = network.neuron_layers[0]
    synapse, weight = layer.synapses[0], layer.synapses[0].op.weight
    shared = SharedProducts()
    x = rng.normal(size=(3,) + network.input_shape)
    first = shared.product(("a", 0), x, synapse, weight)
    again = shared.product(("a", 0), x.copy(), synapse, weight)
    assert again is first and shared.hits == 1
    changed = x.copy()
    changed[0, 0] = np.nextafter(changed[0, 0], np.inf)      # one ulp
    assert shared.product(("a", 0), changed, synapse, weight) is not first and shared.hits == 1
    zeros, negative_zeros = np.zeros_like(x), -np.zeros_like(x)
    shared.product(("b", 0), zeros, synapse, weight)
    shared.product(("b", 0), negative_zeros, synapse, weight)   # equal values, other bits: not reused
    assert shared.hits == 1
