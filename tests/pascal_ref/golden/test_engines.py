"""Whole-network equivalence on random networks, every neuron of every layer.

Integer: SNN (timestep and count engines) == integer QCFS ANN exactly.
Float: the count engine equals the float ANN on these small networks up to
ties; the timestep engine's mismatches are counted and must sit on rounding
boundaries (float accumulation order), never far from one.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pascal_ref import float_ann, integer_ann, quantize, simulate
from pascal_ref.analysis.verify import default_input_bound, verify
from pascal_ref.golden.snn import simulate_count, simulate_timestep
from pascal_ref.testing import (
    FAMILIES,
    mnist_like_images,
    mnist_shape_network,
    random_inputs,
    random_mlp,
    random_network,
)


def check_integer_equivalence(network, x, trace=False):
    model = quantize(network, input_bound=default_input_bound(network, x))
    ann = integer_ann(model, x)
    steps = simulate(model, x, engine="timestep", trace=trace)
    counts = simulate(model, x, engine="count")
    for layer in network.hidden_layers:
        np.testing.assert_array_equal(steps.counts[layer.name], ann.levels[layer.name], err_msg=layer.name)
        np.testing.assert_array_equal(counts.counts[layer.name], ann.levels[layer.name], err_msg=layer.name)
    np.testing.assert_array_equal(steps.integer_logits, ann.integer_logits)
    np.testing.assert_array_equal(counts.integer_logits, ann.integer_logits)
    return model, steps


@settings(max_examples=60, deadline=None)
@given(family=st.sampled_from(FAMILIES), seed=st.integers(0, 2**32 - 1),
       input_levels=st.sampled_from([None, 1, 4, 16]))
def test_random_networks_integer_snn_equals_integer_ann(family, seed, input_levels):
    rng = np.random.default_rng(seed)
    network = random_network(rng, family, input_levels=input_levels)
    x = random_inputs(network, rng, 6)
    model, steps = check_integer_equivalence(network, x, trace=True)
    # every membrane value stays inside the derived worst-case range
    for layer in model.layers[:-1]:
        lo, hi = layer.membrane_range
        for stage in steps.traces[layer.name].trace:
            if stage.v.size:
                assert lo <= stage.v.min() and stage.v.max() <= hi, layer.name


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("levels_kind", ["uniform", "mixed-with-1"])
def test_named_configurations(family, levels_kind):
    rng = np.random.default_rng(7)
    count = {"dense": 2, "conv": 2, "residual": 5}[family]
    levels = [4] * count if levels_kind == "uniform" else ([1, 8, 2, 1, 4][:count])
    if family == "dense":
        # dense networks draw their depth at random; fix it through the generator
        while True:
            network = random_network(rng, family, levels=levels + [4] * 3, input_levels=8)
            if len(network.levels) == 2:
                break
    else:
        network = random_network(rng, family, levels=levels, input_levels=8)
    x = random_inputs(network, rng, 8)
    check_integer_equivalence(network, x)


def test_residual_block_with_unequal_train_lengths():
    rng = np.random.default_rng(3)
    network = random_network(rng, "residual", levels=[8, 1, 4, 2, 8], input_levels=4)
    layer = network.by_name["layer1.0.act2"]
    assert sorted(network.source_levels(s.source) for s in layer.synapses) == [1, 8]
    assert network.input_steps(layer) == 8
    check_integer_equivalence(network, random_inputs(network, rng, 8))


@pytest.mark.parametrize("family", FAMILIES)
def test_float_paths_report_mismatches_on_boundaries_only(family):
    rng = np.random.default_rng(11)
    network = random_network(rng, family, input_levels=None)
    x = random_inputs(network, rng, 32)
    ann = float_ann(network, x)
    for engine in ("timestep", "count"):
        snn = simulate(network, x, engine=engine)
        np.testing.assert_allclose(snn.logits, ann.logits, rtol=0, atol=1e-9 * max(1, np.abs(ann.logits).max()))
    report = verify(network, x)
    assert report["ok"] and report["integer"]["mismatched_neurons"] == 0
    first = report["layers"][0]
    # The first layer sees identical inputs: any mismatch is a float tie within 1e-9 of a boundary.
    assert first["float_mismatches"] == 0 or first["float_max_boundary_distance"] < 1e-9


def test_trace_shapes_follow_the_stages():
    rng = np.random.default_rng(5)
    network = random_network(rng, "dense", levels=[3, 1, 2], input_levels=4)
    model = quantize(network)
    x = random_inputs(network, rng, 3)
    result = simulate(model, x, engine="timestep", trace=True)
    for layer in model.layers[:-1]:
        t1, t2 = layer.input_steps, layer.levels
        s1, s2, s3 = result.traces[layer.name].trace
        assert s1.v.shape[0] == t1 and s2.v.shape[0] == max(t1, t2) - 1 and s3.v.shape[0] == t2


def test_engine_arguments_are_checked():
    rng = np.random.default_rng(0)
    network = random_network(rng, "dense", input_levels=4)
    x = random_inputs(network, rng, 2)
    with pytest.raises(ValueError, match="unknown engine"):
        simulate(network, x, engine="fast")
    with pytest.raises(ValueError, match="trace=True needs"):
        simulate(network, x, engine="count", trace=True)
    with pytest.raises(TypeError, match="Network or IntegerNetwork"):
        simulate("model.npz", x)
    with pytest.raises(ValueError, match="does not match the network input"):
        simulate(network, np.zeros((2, 7)))
    with pytest.raises(ValueError, match="NaN"):
        float_ann(network, np.full((1, 6), np.nan))
    with pytest.raises(TypeError, match="dtype"):
        float_ann(network, np.array([["a"] * 6]))


@pytest.mark.parametrize("integer", [False, True])
def test_simulate_dispatches_to_one_function_per_engine(integer):
    rng = np.random.default_rng(9)
    network = random_network(rng, "residual", input_levels=4)
    x = random_inputs(network, rng, 3)
    model = quantize(network) if integer else network
    for via_simulate, direct in ((simulate(model, x, engine="count"), simulate_count(model, x)),
                                 (simulate(model, x, engine="timestep", trace=True), simulate_timestep(model, x, trace=True))):
        np.testing.assert_array_equal(via_simulate.logits, direct.logits)
        assert via_simulate.counts.keys() == direct.counts.keys()
        for name in direct.counts:
            np.testing.assert_array_equal(via_simulate.counts[name], direct.counts[name])
    assert simulate_count(model, x).traces is None and simulate_timestep(model, x).traces is None


def test_random_mlp_and_the_mnist_shape_model():
    network = random_mlp(np.random.default_rng(3), [12, 9, 7, 4], levels=[3, 2])
    assert [layer.name for layer in network.layers] == ["fc1", "act1", "fc2", "act2", "fc3"]
    assert network.levels == [3, 2] and network.input_levels == 4
    check_integer_equivalence(network, random_inputs(network, np.random.default_rng(4), 5))
    mnist = mnist_shape_network()
    assert mnist.input_shape == (784,) and mnist.levels == [4] and not mnist.readout.bias.any()
    np.testing.assert_array_equal(mnist.layers[0].weight, mnist_shape_network().layers[0].weight)
    images = mnist_like_images(50)
    assert images.shape == (50, 784) and 0.15 < np.mean(images > 0) < 0.23 and images.max() <= 1.0
