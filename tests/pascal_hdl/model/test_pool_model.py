"""The pooling unit's configuration and cycle model against the golden pre-ops (``MaxPool2d``,
``AvgPool2d``, ``GlobalAvgPool`` in the integer model), and the stage chain of a convolutional
network against ``integer_ann``."""
from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

from pascal_hdl.config import HardwareError, LayerConfig
from pascal_hdl.model.chain import ChainModel, chain_forward, stage_configs
from pascal_hdl.model.conv import ConvConfig, from_layout, run_conv_model, to_layout
from pascal_hdl.model.engine import sample_events
from pascal_hdl.model.pool import PoolConfig, pool_chain, run_pool_model
from pascal_ref.golden.quantize import IntegerNetwork, integer_ann, quantize
from pascal_ref.io.bundled import bundled_path
from pascal_ref.io.data import load_digits_split
from pascal_ref.io.fileformat import load
from pascal_ref.ir.layers import AvgPool2d, GlobalAvgPool, MaxPool2d
from pascal_ref.testing import random_inputs, random_network

POOLS = [  # pre-op, input shape, T1, input layout
    (MaxPool2d("pool", 2), (3, 6, 6), 4, "hwc"),
    (MaxPool2d("pool", 2), (2, 5, 7), 1, "chw"),        # cropped last row/column, L = 1
    (MaxPool2d("pool", 3, 2), (2, 7, 6), 3, "hwc"),     # overlapping windows, cropped column
    (MaxPool2d("pool", (2, 3), (1, 2)), (1, 5, 7), 2, "hwc"),
    (AvgPool2d("pool", 2), (3, 6, 6), 4, "hwc"),
    (AvgPool2d("pool", 2, 1), (2, 5, 5), 3, "chw"),     # overlapping sums (the random conv family)
    (AvgPool2d("pool", 3, 2), (2, 8, 7), 2, "hwc"),
    (GlobalAvgPool("gap"), (4, 3, 3), 4, "hwc"),
]


def pool_id(case):
    op, shape, t_in, layout = case
    return f"{type(op).__name__}_{op.window(shape).kernel}_{op.window(shape).stride}_{'x'.join(map(str, shape))}_T{t_in}_{layout}"


@pytest.mark.parametrize("case", POOLS, ids=[pool_id(c) for c in POOLS])
def test_pool_model_equals_golden_pre_op(case):
    """Per pooled neuron, exactly: the burst maximum (max) or the integer sum (average pooling) of the
    golden pre-op, from the cycle model and from the event-scatter ``forward``; cycles as predicted."""
    op, shape, t_in, layout = case
    rng = np.random.default_rng(len(pool_id(case)))
    config = PoolConfig.from_pre_op(op, shape, t_in, layout)
    maps = rng.integers(1, t_in + 1, (10,) + shape) * (rng.random((10,) + shape) < 0.5)
    maps[1], maps[2] = 0, t_in
    golden = to_layout(op.apply(maps, integer=True), "hwc")
    assert config.output_shape == op.output_shape(shape)
    assert golden.max() <= config.t_out
    flat = to_layout(maps, layout)
    np.testing.assert_array_equal(config.forward(flat), golden)
    run = run_pool_model(config, flat)
    np.testing.assert_array_equal(run.counts, golden)
    stream = config.stream_cycles(flat)
    covered = all(t.n for t in config.row_taps) and all(t.n for t in config.col_taps)
    assert np.all(run.cycles >= stream)
    if covered and min(config.event_work(j) for j in range(config.in_features)) >= 2:
        np.testing.assert_array_equal(run.cycles, stream)
    assert run.cycles.max() <= config.worst_case_cycles()


@pytest.mark.parametrize("case", POOLS, ids=[pool_id(c) for c in POOLS])
def test_each_input_reaches_exactly_its_windows(case):
    op, shape, t_in, layout = case
    config = PoolConfig.from_pre_op(op, shape, t_in, layout)
    (kh, kw), (sh, sw) = config.kernel, config.stride
    c_in = shape[0]
    for index in range(config.in_features):
        c, y, x = config.decode(index)
        expected = {((py * config.out_width) + px) * c_in + c
                    for py, px in itertools.product(range(config.out_height), range(config.out_width))
                    if py * sh <= y < py * sh + kh and px * sw <= x < px * sw + kw}
        assert sorted(config.cells(index)) == sorted(expected), index


def test_pool_chain_follows_the_synapse():
    rng = np.random.default_rng(3)
    model = quantize(random_network(rng, "conv", input_levels=4))
    for layer in model.layers[1:]:
        synapse = layer.synapses[0]
        source_levels = model.by_name[synapse.source].levels
        units, shape = pool_chain(synapse, source_levels)
        assert len(units) == 1
        assert units[0].t_out == synapse.input_max
        assert shape == (synapse.op_input_shape if len(synapse.op_input_shape) == 3 else units[0].output_shape)


def test_bad_pool_configs_are_rejected():
    good = {"name": "p", "input_shape": (2, 4, 4), "kernel": 2, "stride": None, "reduce": "max", "t_in": 2}
    PoolConfig(**good)
    for change, message in [({"kernel": 5}, "larger than input"), ({"reduce": "mean"}, "reduce"),
                            ({"stride": (0, 1)}, "stride"), ({"t_in": 0}, "t_in"), ({"name": "a b"}, "identifier"),
                            ({"input_shape": (4, 4)}, "input shape"), ({"input_layout": "cwh"}, "input_layout"),
                            ({"banks": 0}, r"pooling 'p': banks must be 1 or 2, got 0"),
                            ({"banks": "2"}, "banks must be 1 or 2")]:
        with pytest.raises(HardwareError, match=message):
            PoolConfig(**{**good, **change})


@pytest.mark.parametrize("seed", range(4))
def test_stage_chain_equals_golden_on_random_cnns(seed):
    """conv -> max pool -> conv -> sum pool -> Linear readout: every stage's integer behaviour, and the chained
    cycle models, equal the golden integer ANN (levels per layer, logits)."""
    rng = np.random.default_rng(seed)
    network = random_network(rng, "conv", input_levels=4)
    model = quantize(network)
    stages = stage_configs(model, lanes=3)
    levels = model.encode_input(random_inputs(network, rng, 6))
    golden = integer_ann(model, x_int=levels)
    outputs = chain_forward(stages, to_layout(levels, "chw"))
    convs = [(stage, out) for stage, out in zip(stages, outputs) if isinstance(stage, ConvConfig)]
    for (stage, out), layer in zip(convs, model.layers[:-1]):
        np.testing.assert_array_equal(from_layout(out, stage.output_shape, "hwc"), golden.levels[layer.name])
    np.testing.assert_array_equal(outputs[-1], golden.integer_logits)
    chain = ChainModel(stages)
    queue = [e for sample in to_layout(levels[:2], "chw") for e in sample_events(sample)]
    results = []
    for _ in range(200_000):
        if chain.out_valid():
            results.append(chain.out_payload["logits"])
        accepted, _ = chain.step(bool(queue), queue[0] if queue else None, True)
        if accepted:
            queue.pop(0)
        if len(results) == 2:
            break
    np.testing.assert_array_equal(results, golden.integer_logits[:2])


def test_digits_cnn_stages_equal_golden_on_test_images():
    """The bundled digits CNN (conv 1->16, max pool, conv 16->32, average pool, Linear) as hardware stages:
    counts of both conv layers and the logits equal the golden integer model on 40 test images, and the
    cycle models of the conv engines give the same counts on 5 of them."""
    model = quantize(load(bundled_path("digits-cnn")), weight_bits=8)
    stages = stage_configs(model, lanes=8)
    assert [type(s).__name__ for s in stages] == ["ConvConfig", "PoolConfig", "ConvConfig", "PoolConfig", "LayerConfig"]
    x = load_digits_split()[2][:40]
    levels = model.encode_input(x.reshape((-1,) + model.network.input_shape))
    golden = integer_ann(model, x_int=levels)
    outputs = chain_forward(stages, to_layout(levels, "chw"))
    np.testing.assert_array_equal(from_layout(outputs[0], stages[0].output_shape, "hwc"), golden.levels["act1"])
    np.testing.assert_array_equal(from_layout(outputs[2], stages[2].output_shape, "hwc"), golden.levels["act2"])
    np.testing.assert_array_equal(outputs[-1], golden.integer_logits)
    first = run_conv_model(stages[0], to_layout(levels[:5], "chw"))
    np.testing.assert_array_equal(first.counts, outputs[0][:5])
    pooled = run_pool_model(stages[1], first.counts)
    np.testing.assert_array_equal(run_conv_model(stages[2], pooled.counts).counts, outputs[2][:5])


def test_unsupported_networks_are_refused_by_name():
    rng = np.random.default_rng(4)
    # Residual blocks are stages now (tests/pascal_hdl/model/test_residual_model.py); a layer with two
    # synapses that is not the second layer of a block (its shortcut reads another layer) is refused.
    model = quantize(random_network(rng, "residual", input_levels=4))
    assert [type(s).__name__ for s in stage_configs(model)] == ["ConvConfig", "ResidualBlockConfig",
                                                                "ResidualBlockConfig", "PoolConfig", "LayerConfig"]
    layers = list(model.layers)
    second = layers[2]
    layers[2] = dataclasses.replace(second, synapses=(second.synapses[0],
                                                      dataclasses.replace(second.synapses[1], source=layers[1].name)))
    with pytest.raises(HardwareError, match="layer1.0.act2.*shortcut must read the block input"):
        stage_configs(IntegerNetwork(model.network, layers, model.weight_bits, model.per_channel, model.input_step,
                                     model.input_range))
    # An analog input goes to a conv first layer that multiplies its signed pixels (mac, t_min < 0).
    analog = stage_configs(quantize(random_network(rng, "conv", input_levels=None), input_bound=3.0))
    assert isinstance(analog[0], ConvConfig) and analog[0].mac and analog[0].t_min == -127 == -analog[0].t_in
    assert isinstance(stage_configs(quantize(random_network(rng, "dense", input_levels=4)))[-1], LayerConfig)


def test_layer_lanes_override_per_layer_and_keep_the_golden_outputs():
    """``layer_lanes`` sets one layer's lanes (the UP5K layout of the digits CNN: conv1 on 4 lanes, its
    accumulators 256 words of 4 x 15 bits instead of 128 of 8 x 15; the readout on 5 lanes, still 2
    groups); the outputs stay the golden model's;
    a name that is no layer is refused by name."""
    from pascal_hdl.model.chain import UP5K_DIGITS_CNN_LANES

    model = quantize(load(bundled_path("digits-cnn")), weight_bits=8)
    wide, narrow = stage_configs(model, lanes=8), stage_configs(model, lanes=8, layer_lanes=UP5K_DIGITS_CNN_LANES)
    assert [s.lanes for s in wide if not isinstance(s, PoolConfig)] == [8, 8, 8]
    assert [s.lanes for s in narrow if not isinstance(s, PoolConfig)] == [4, 6, 5]
    assert narrow[-1].groups == wide[-1].groups == 2
    assert (wide[0].acc_depth, wide[0].lanes * wide[0].acc_width) == (128, 120)
    assert (narrow[0].acc_depth, narrow[0].lanes * narrow[0].acc_width) == (256, 60)
    levels = model.encode_input(load_digits_split()[2][:8].reshape((-1,) + model.network.input_shape))
    np.testing.assert_array_equal(chain_forward(narrow, levels.reshape(len(levels), -1))[-1],
                                  integer_ann(model, x_int=levels).integer_logits)
    with pytest.raises(HardwareError, match="layer_lanes: no layer named conv9"):
        stage_configs(model, layer_lanes={"conv9": 2})
