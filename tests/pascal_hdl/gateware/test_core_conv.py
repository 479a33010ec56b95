"""The network core on convolutional networks (Conv2d engines, pooling units, residual blocks, a Linear
readout): Amaranth simulation cycle by cycle against :class:`CoreModel`, every monitor against the integer
golden model in the stage's ``"hwc"`` order, the logits against ``integer_ann``."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from pascal_hdl.config import HardwareError
from pascal_hdl.gateware.core import NetworkCore
from pascal_hdl.model.chain import core_config, golden_stage_levels
from pascal_hdl.model.conv import ConvConfig
from pascal_hdl.model.core import CoreModel, expected_cycles, run_stream, stream_figures
from pascal_hdl.model.pool import PoolConfig
from pascal_hdl.model.residual import ResidualBlockConfig
from pascal_hdl.model.engine import sample_events
from pascal_hdl.testing import (
    conv_network,
    events_to_counts,
    lockstep,
    plain,
    random_levels,
    random_pixels,
    residual_network,
    to_python,
)
from pascal_ref.golden.quantize import integer_ann, quantize
from pascal_ref.ir.network import Network
from pascal_ref.testing import random_inputs, random_network


def run_core(config, levels, seed: int, p_valid: float, p_ready: float):
    """The samples through the core beside :class:`CoreModel`; results and the events of every monitor."""
    dut, model = NetworkCore(config), CoreModel(config)
    queue = [e for sample in levels for e in sample_events(sample)]
    events = {stage.name: [] for stage in config.hidden}

    def note_monitors(ctx, cycle):
        for stage in config.hidden:
            monitor = dut.monitor(stage.name)
            if ctx.get(monitor.valid):
                events[stage.name].append(to_python(ctx.get(monitor.payload)))

    run = lockstep(dut, model, queue, until=lambda results: len(results) == len(levels), seed=seed,
                   p_valid=p_valid, p_ready=p_ready, observe=note_monitors, max_cycles=400_000)
    for stage in config.hidden:
        assert events[stage.name] == plain(model.events[stage.name]), stage.name
    return run.outputs, events


def check_against_golden(model, config, levels, results, events):
    golden = integer_ann(model, x_int=levels.reshape((len(levels),) + tuple(model.network.input_shape)))
    np.testing.assert_array_equal([r["logits"] for r in results], golden.integer_logits)
    assert [r["cls"] for r in results] == np.argmax(golden.integer_logits, axis=1).tolist()
    assert not any(r["rejected"] for r in results)
    hidden, _, _ = config.forward(levels)
    golden_levels = golden_stage_levels(config, golden, len(levels))
    checked = 0
    for stage, counts in zip(config.hidden, hidden):
        np.testing.assert_array_equal(events_to_counts(events[stage.name], stage.out_features), counts, stage.name)
        if stage.name in golden_levels:   # a neuron layer of the golden model: its levels in "hwc" order
            np.testing.assert_array_equal(counts, golden_levels[stage.name], stage.name)
            checked += 1
    return checked


def test_digits_cnn_core_matches_the_golden_model():
    """The bundled digits CNN (conv, max-pool, conv, max-pool, Linear): two test images through the
    Amaranth core, every cycle equal to the cycle model, every stage's counts and the logits exact."""
    import pascal_ref
    from pascal_ref.io.data import load_digits_split
    from pascal_ref.io.fileformat import load

    model = quantize(load(Path(pascal_ref.__file__).parent / "models" / "digits_cnn.npz"))
    config = core_config(model)
    assert [(type(s).__name__, s.name) for s in config.layers] == [
        ("ConvConfig", "act1"), ("PoolConfig", "pool1"), ("ConvConfig", "act2"), ("PoolConfig", "pool2"),
        ("LayerConfig", "fc")]
    _, _, x_test, _ = load_digits_split()
    levels = model.encode_input(x_test[:2]).reshape(2, -1)
    results, events = run_core(config, levels, seed=1, p_valid=1.0, p_ready=1.0)
    assert check_against_golden(model, config, levels, results, events) == 2
    cycles = [r["cycles"] for r in results]
    assert cycles == expected_cycles(config, levels).tolist()
    assert all(config.ideal_cycles(levels) < cycles) and max(cycles) <= config.worst_case_cycles()


def test_digits_resnet_core_matches_the_golden_model():
    """The bundled digits ResNet (conv stem, a block with an identity and one with a 1x1-conv shortcut,
    global average pooling, Linear): one test image through the Amaranth core under idle and
    back-pressure, every stage's counts and the logits exact, and one back to back whose cycles equal
    the cycle model's."""
    from pascal_ref.io.bundled import bundled_path
    from pascal_ref.io.data import load_digits_split
    from pascal_ref.io.fileformat import load

    model = quantize(load(bundled_path("digits-resnet")))
    config = core_config(model)
    assert [(type(s).__name__, s.name) for s in config.layers] == [
        ("ConvConfig", "act1"), ("ResidualBlockConfig", "block1"), ("ResidualBlockConfig", "block2"),
        ("PoolConfig", "pool"), ("LayerConfig", "fc")]
    _, _, x_test, _ = load_digits_split()
    levels = model.encode_input(x_test[3:5]).reshape(2, -1)
    results, events = run_core(config, levels[:1], seed=4, p_valid=0.7, p_ready=0.5)
    assert check_against_golden(model, config, levels[:1], results, events) == 3
    results, events = run_core(config, levels[1:], seed=1, p_valid=1.0, p_ready=1.0)
    assert check_against_golden(model, config, levels[1:], results, events) == 3
    cycles = [r["cycles"] for r in results]
    assert cycles == expected_cycles(config, levels[1:]).tolist()
    assert all(config.ideal_cycles(levels[1:]) < cycles) and max(cycles) <= config.worst_case_cycles()


@pytest.mark.parametrize("p_valid, p_ready", [(1.0, 1.0), (0.6, 0.4)])
def test_random_residual_network_core(p_valid, p_ready):
    """A random ResNet (conv stem, a block with an identity and one with a 1x1-conv shortcut, global
    average pooling, Linear readout) with idle input and back-pressure."""
    rng = np.random.default_rng(5)
    _, model = residual_network(rng, [("identity", 3, 1), ("conv", 4, 2)], [2, 3, 2, 2, 3], input_shape=(2, 5, 5))
    config = core_config(model, lanes=2)
    kinds = [type(s).__name__ for s in config.layers]
    assert kinds == ["ConvConfig", "ResidualBlockConfig", "ResidualBlockConfig", "PoolConfig", "LayerConfig"]
    levels = random_levels(rng, 4, (50,), 4)
    results, events = run_core(config, levels, seed=3, p_valid=p_valid, p_ready=p_ready)
    assert check_against_golden(model, config, levels, results, events) == 3
    if p_valid == 1.0 and p_ready == 1.0:
        assert [r["cycles"] for r in results] == expected_cycles(config, levels).tolist()
    assert max(r["cycles"] for r in results) <= config.worst_case_cycles()


def test_conv_network_with_avg_pool_and_layer_lanes():
    """Two conv layers, lanes per layer name; an unknown layer name and per-layer lists are refused."""
    rng = np.random.default_rng(2)
    _, model = conv_network(rng, 3, 1, 1, [2, 3], channels=(3, 2), second=(3, 2, 1))
    config = core_config(model, layer_lanes={"act1": 2, "act2": 1})
    assert [getattr(s, "lanes", None) for s in config.layers] == [2, 1, 3]
    levels = random_levels(rng, 3, (72,), 4)
    results, events = run_core(config, levels, seed=4, p_valid=0.7, p_ready=0.6)
    check_against_golden(model, config, levels, results, events)
    with pytest.raises(HardwareError, match="layer_lanes: no layer named nope"):
        core_config(model, layer_lanes={"nope": 2})
    with pytest.raises(HardwareError, match="given by layer name"):
        core_config(model, lanes=[2, 2, 2])


def test_conv_networks_out_of_reach_name_the_layer():
    rng = np.random.default_rng(0)
    network, _ = conv_network(rng, 3, 1, 1, [2])
    wide = quantize(network, weight_bits=20)
    with pytest.raises(HardwareError, match="'act1'.*20 bits, more than the limit 16"):
        core_config(wide)


def small_conv_model(kind: str, rng):
    """``(integer model, 5 samples of flat input levels)``: a random conv network (``"cnn"``) or a ResNet
    with an identity and a 1x1-conv shortcut block (``"resnet"``)."""
    if kind == "cnn":
        network = random_network(rng, "conv", input_levels=4)
        model = quantize(network)
        return model, model.encode_input(random_inputs(network, rng, 5)).reshape(5, -1)
    _, model = residual_network(rng, [("identity", 3, 1), ("conv", 4, 2)], [2, 3, 2, 2, 3], input_shape=(2, 5, 5))
    return model, random_levels(rng, 5, (50,), 4)


def double_buffered(config, in_flight: int):
    """``config`` with every conv engine, pooling unit and residual block at two banks, ``in_flight`` samples."""
    banked = (ConvConfig, PoolConfig, ResidualBlockConfig)
    layers = tuple(dataclasses.replace(s, banks=2) if isinstance(s, banked) else s for s in config.layers)
    return dataclasses.replace(config, layers=layers, in_flight=in_flight)


@pytest.mark.parametrize("kind, in_flight, p_valid, p_ready", [("cnn", 2, 1.0, 1.0), ("cnn", 3, 0.7, 0.5),
                                                                ("resnet", 2, 0.8, 0.6), ("resnet", 3, 1.0, 1.0)])
def test_double_buffered_stages_in_the_core(kind, in_flight, p_valid, p_ready):
    """Every conv engine, pooling unit and residual block double-buffered, two or three samples in flight,
    random idle and back-pressure: the core cycle by cycle as :class:`CoreModel` (results with their
    sample number, latency and finish cycle; every monitor), the logits and every neuron layer as the
    golden model; with an ideal source and sink the results equal ``run_stream``'s and the steady-state
    cycles per image are fewer than with one bank per stage."""
    model, levels = small_conv_model(kind, np.random.default_rng(11 if kind == "cnn" else 12))
    single = dataclasses.replace(core_config(model, lanes=2), in_flight=in_flight)
    config = double_buffered(single, in_flight)
    assert {getattr(s, "banks", 2) for s in config.layers[:-1]} == {2}
    results, events = run_core(config, levels, seed=6, p_valid=p_valid, p_ready=p_ready)
    assert check_against_golden(model, config, levels, results, events) >= 2
    assert [r["sample"] for r in results] == list(range(len(levels)))
    if p_valid == p_ready == 1.0:
        stream = run_stream(config, levels)
        assert [r["cycles"] for r in results] == [r["cycles"] for r in stream]
        finished = [r["finished"] for r in results]
        assert [f - finished[0] for f in finished] == [r["finished"] - stream[0]["finished"] for r in stream]
        banked_period = stream_figures(stream)["cycles_per_image"]
        assert banked_period < stream_figures(run_stream(single, levels))["cycles_per_image"]


@pytest.mark.parametrize("kind, in_flight, banks", [("cnn", 1, 1), ("cnn", 3, 2), ("resnet", 2, 2)])
def test_mac_stages_in_the_core(kind, in_flight, banks):
    """Every conv engine and residual block with ``mac`` (each tap once per event, ``count * weight``
    added), random idle and back-pressure: the core cycle by cycle as :class:`CoreModel`, the logits and
    every neuron layer as the golden model, results in order; with an ideal source and sink fewer
    cycles per image than the same core repeating counts."""
    model, levels = small_conv_model(kind, np.random.default_rng(21 if kind == "cnn" else 22))
    plain = dataclasses.replace(core_config(model, lanes=2), in_flight=in_flight)
    if banks == 2:
        plain = double_buffered(plain, in_flight)
    config = core_config(model, lanes=2, in_flight=in_flight, double_buffer=banks == 2 or None, mac=True)
    convs = [s for s in config.layers if isinstance(s, (ConvConfig, ResidualBlockConfig))]
    assert convs and all(s.mac for s in convs)
    assert not any(getattr(s, "mac", False) for s in plain.layers)
    results, events = run_core(config, levels, seed=7, p_valid=0.8, p_ready=0.6)
    assert check_against_golden(model, config, levels, results, events) >= 2
    assert [r["sample"] for r in results] == list(range(len(levels)))
    mac_stream = run_stream(config, levels)
    mac_period = stream_figures(mac_stream)["cycles_per_image"]
    assert mac_period < stream_figures(run_stream(plain, levels))["cycles_per_image"]
    # The ideal bound counts each nonzero input of a mac stage once: below every sample's latency, and
    # below the count-repeating core's bound.
    latency = np.array([r["cycles"] for r in mac_stream])
    assert np.all(config.ideal_cycles(levels) < latency)
    assert np.all(config.ideal_cycles(levels) <= plain.ideal_cycles(levels))


@pytest.mark.parametrize("in_flight, banks, multiplier", [(1, 1, "logic"), (2, 2, "dsp")])
def test_analog_first_layer_in_the_core(in_flight, banks, multiplier):
    """An analog input (signed 6-bit pixels): the core takes one signed event per nonzero pixel, its first
    conv engine multiplies (mac, set by the chain), the second repeats counts; random idle and
    back-pressure, cycle by cycle as :class:`CoreModel`, the logits and every neuron layer as the golden
    model, results in order; an input below ``input_min`` is rejected and flagged."""
    rng = np.random.default_rng(31)
    _, model = conv_network(rng, 3, 1, 1, [3, 2], input_levels=None, input_shape=(2, 5, 5), channels=(3, 4),
                            second=(3, 2, 1))
    config = core_config(model, lanes=2, in_flight=in_flight, double_buffer=banks == 2 or None, multiplier=multiplier)
    assert (config.input_min, config.input_levels, config.is_analog) == (-31, 31, True)
    first, second = config.layers[0], config.layers[1]
    assert (first.mac, first.t_min, first.multiplier, second.mac, second.t_min) == (True, -31, multiplier, False, 0)
    pixels = random_pixels(rng, 6, (50,), 31)
    results, events = run_core(config, pixels, seed=8, p_valid=0.8, p_ready=0.6)
    assert check_against_golden(model, config, pixels, results, events) == 2
    assert [r["sample"] for r in results] == list(range(len(pixels)))
    queue = [e for sample in pixels[:3] for e in sample_events(sample)]
    queue[1] = dict(queue[1], count=-32)          # one below input_min: the signed field can carry it
    run = lockstep(NetworkCore(config), CoreModel(config), queue, until=lambda r: len(r) == 3, seed=9,
                   p_valid=0.9, p_ready=0.7, max_cycles=100_000)
    assert [r["rejected"] for r in run.outputs] == [True, False, False]


@pytest.mark.parametrize("in_flight, banks, multiplier", [(1, 1, "logic"), (2, 2, "dsp")])
def test_analog_mlp_in_the_core(in_flight, banks, multiplier):
    """An analog input to a Linear first layer (a random MLP, signed 8-bit pixels): act1 multiplies (mac, set
    by the chain), the readout repeats counts; cycle by cycle as :class:`CoreModel` with idle and
    back-pressure, the logits and act1 as the golden model, results in order."""
    rng = np.random.default_rng(32)
    network = random_network(rng, "dense", input_levels=None)
    model = quantize(network, input_bound=3.0)
    config = core_config(model, lanes=3, in_flight=in_flight, double_buffer=banks == 2 or None,
                         mac=None if multiplier == "logic" else (model.layers[0].name,), multiplier=multiplier)
    first = config.layers[0]
    assert (config.input_min, first.mac, first.t_min, first.multiplier) == (-127, True, -127, multiplier)
    assert not any(layer.mac for layer in config.layers[1:])
    pixels = model.encode_input(random_inputs(network, rng, 6)).reshape(6, -1)
    pixels[1] = 0
    results, events = run_core(config, pixels, seed=10, p_valid=0.8, p_ready=0.6)
    assert check_against_golden(model, config, pixels, results, events) == len(config.hidden)
    assert [r["sample"] for r in results] == list(range(len(pixels)))


def test_analog_input_needs_no_pooling_before_the_first_layer():
    """Pooling in front of the first layer cannot take signed pixels (the pooling unit takes counts):
    refused in one line naming the layer."""
    from pascal_ref.ir.network import QCFS, AvgPool2d, Conv2d, Flatten, Linear

    rng = np.random.default_rng(0)
    net = Network((1, 4, 4), [AvgPool2d("pool", 2, 2), Conv2d("conv1", rng.normal(0, 1, (2, 1, 1, 1))),
                              QCFS("act1", 1.0, 2), Flatten("flat"), Linear("fc", rng.normal(0, 1, (3, 8)))],
                  input_levels=None, name="analog_pooled")
    with pytest.raises(HardwareError, match=r"layer 'act1': an analog input \(signed pixels\) needs a Conv2d or "
                                            r"Linear first layer without pooling before it .* after AvgPool2d"):
        core_config(quantize(net, input_bound=1.0))
