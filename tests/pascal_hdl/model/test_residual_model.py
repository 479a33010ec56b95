"""ResNet basic blocks: configuration and cycle models against the golden integer model (``integer_ann``)
and the golden timestep engine (the timing rule: both trains fed step by step from step 0)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from pascal_hdl.config import HardwareError
from pascal_hdl.model.chain import (
    chain_forward,
    ideal_cycles,
    run_chain_model,
    stage_configs,
    stage_kind,
)
from pascal_hdl.model.conv import ConvConfig, from_layout, to_layout
from pascal_hdl.model.engine import sample_events
from pascal_hdl.model.residual import (
    ResidualBlockConfig,
    ResidualBlockModel,
    ResidualConfig,
    ResidualEngineModel,
    run_block_model,
)
from pascal_hdl.testing import random_levels, residual_network
from pascal_ref.golden.quantize import integer_ann
from pascal_ref.golden.snn import simulate
from pascal_ref.ir.network import MaxPool2d
from pascal_ref.testing import random_inputs

# blocks (shortcut, channels, stride), L of every activation (stem first), stem channels, input shape, lanes
CASES = {
    "equal_L": ([("identity", 3, 1), ("conv", 4, 2)], [4, 4, 4, 4, 4], 3, (2, 6, 6), 2),
    "unequal_L": ([("identity", 3, 1), ("conv", 4, 2)], [2, 8, 3, 1, 4], 3, (2, 6, 6), 3),
    "unequal_L_other_way": ([("identity", 3, 1), ("conv", 5, 2)], [8, 2, 4, 8, 1], 3, (2, 7, 7), 2),
    "L1_everywhere": ([("identity", 3, 1), ("conv", 4, 2)], [1, 1, 1, 1, 1], 3, (2, 6, 6), 1),
    "conv_then_identity": ([("conv", 3, 1), ("identity", 3, 1)], [3, 2, 4, 4, 1], 2, (2, 5, 5), 2),
    "conv_shortcut_stride1_padded_group": ([("conv", 5, 1), ("conv", 3, 2)], [2, 4, 2, 3, 2], 2, (1, 6, 5), 2),
    "identity_many_groups": ([("identity", 6, 1)], [4, 2, 4], 6, (2, 5, 5), 4),
}


def build(name: str, seed: int = 0):
    blocks, levels, stem, shape, lanes = CASES[name]
    rng = np.random.default_rng(seed + 1000 * list(CASES).index(name))
    network, model = residual_network(rng, blocks, levels, input_levels=4, input_shape=shape, stem=stem)
    return rng, network, model, stage_configs(model, lanes=lanes)


def golden_names(model, stages):
    """Per stage: the golden layer names of its outputs (a block: act1 and act2)."""
    names, layers = [], iter(layer.name for layer in model.layers)
    for stage in stages:
        kind = stage_kind(stage)
        if kind == "pool":
            names.append(None)
        elif kind == "residual":
            names.append((next(layers), next(layers)))
        else:
            names.append(next(layers))
    return names


@pytest.mark.parametrize("case", list(CASES))
def test_stages_equal_golden_integer_model_on_many_inputs(case):
    """Every neuron of every layer (conv1 and act2 of each block included) and the logits, on 64 random
    inputs, equal ``integer_ann``; the stage plan groups each block into one stage of the right kind."""
    rng, network, model, stages = build(case)
    blocks = CASES[case][0]
    residual = [s for s in stages if isinstance(s, ResidualBlockConfig)]
    assert [s.merge.shortcut.diagonal for s in residual] == [kind == "identity" for kind, _, _ in blocks]
    assert stage_kind(stages[-2]) == "pool" and stages[-2].reduce == "sum"      # global average pooling
    levels = model.encode_input(random_inputs(network, rng, 64))
    golden = integer_ann(model, x_int=levels)
    values = to_layout(levels, "chw")
    for stage, names in zip(stages, golden_names(model, stages)):
        if isinstance(stage, ResidualBlockConfig):
            inner, values = stage.forward_both(values)
            np.testing.assert_array_equal(from_layout(inner, stage.conv1.output_shape, "hwc"), golden.levels[names[0]])
            np.testing.assert_array_equal(from_layout(values, stage.output_shape, "hwc"), golden.levels[names[1]])
            assert 0 < golden.levels[names[1]].mean() < stage.t_out or stage.t_out == 1
        else:
            values = stage.forward(values)
            if isinstance(stage, ConvConfig):
                np.testing.assert_array_equal(from_layout(values, stage.output_shape, "hwc"), golden.levels[names])
    np.testing.assert_array_equal(values, golden.integer_logits)
    np.testing.assert_array_equal(chain_forward(stages, to_layout(levels, "chw"))[-1], golden.integer_logits)


@pytest.mark.parametrize("case", ["equal_L", "unequal_L", "unequal_L_other_way", "conv_then_identity"])
def test_counts_and_transmitted_spikes_follow_the_golden_timing_rule(case):
    """The golden timestep engine feeds both trains of a block's act2 step by step from step 0
    (T1 = max of the two lengths) through ``pasc_if``; the hardware lumps ``S`` into one step. Per
    neuron the counts are equal, and the transmitted trains (bursts of the counts) equal the traced
    stage-3 spikes."""
    rng, network, model, stages = build(case, seed=3)
    x = random_inputs(network, rng, 16)
    levels = model.encode_input(x)
    snn = simulate(model, x, engine="timestep", trace=True)
    values = to_layout(levels, "chw")
    for stage, names in zip(stages, golden_names(model, stages)):
        if not isinstance(stage, ResidualBlockConfig):
            values = stage.forward(values)
            continue
        layer = model.by_name[names[1]]
        short, main = layer.synapses
        assert layer.input_steps == max(model.source_levels(short.source), model.source_levels(main.source))
        inner, values = stage.forward_both(values)
        for flat, name, config in ((inner, names[0], stage.conv1), (values, names[1], stage.merge)):
            counts = from_layout(flat, config.output_shape, "hwc")
            np.testing.assert_array_equal(counts, snn.counts[name])
            trains = np.arange(config.t_out).reshape((-1,) + (1,) * counts.ndim) < counts[None]   # (T2, B, C, H, W)
            np.testing.assert_array_equal(snn.traces[name].spikes, trains)


@pytest.mark.parametrize("case", list(CASES))
def test_block_and_chain_cycle_models_equal_golden(case):
    """The cycle models (fork, conv1 engine, two-port act2 engine; the whole chain) give the golden
    counts and logits; cycles per sample lie between the ideal (synaptic events / lanes) and the
    sum of the stages' worst cases, and the chain's cycles are reported against the ideal."""
    rng, network, model, stages = build(case, seed=5)
    levels = model.encode_input(random_inputs(network, rng, 6))
    golden = integer_ann(model, x_int=levels)
    flat = to_layout(levels, "chw")
    results, cycles = run_chain_model(stages, flat)
    np.testing.assert_array_equal([r["logits"] for r in results], golden.integer_logits)
    np.testing.assert_array_equal([r["cls"] for r in results], np.argmax(golden.integer_logits, axis=1))
    ideal = sum(ideal_cycles(stages, flat).values())
    assert np.all(cycles >= ideal)
    values = flat
    for stage in stages:
        if isinstance(stage, ResidualBlockConfig):
            counts, block_cycles = run_block_model(stage, values)
            np.testing.assert_array_equal(counts, stage.forward(values))
            np.testing.assert_array_equal(stage.expected_cycles(values), block_cycles)
            assert np.all(block_cycles >= stage.ideal_cycles(values))
        if not (hasattr(stage, "is_readout") and stage.is_readout):
            values = stage.forward(values)


def test_the_shortcut_is_accumulated_while_conv1_accumulates():
    """The fork hands each block input event to conv1 and the shortcut port in the same cycle: by the time
    conv1 sends its first act1 event, every shortcut event has been taken, so the act2 engine never
    stores a spike train; the identity shortcut costs one issue cycle per spike (a diagonal input)."""
    _, _, _, stages = build("equal_L")
    block = next(s for s in stages if isinstance(s, ResidualBlockConfig))
    assert block.merge.shortcut.diagonal and block.merge.shortcut.issue_groups == 1 < block.merge.groups
    rng = np.random.default_rng(2)
    sample = random_levels(rng, 1, block.input_shape, block.t_in, 0.6)[0]
    flat = to_layout(sample[None], block.input_layout)[0]
    model, queue, cycle = ResidualBlockModel(block), sample_events(flat), 0
    taken_by_shortcut, first_inner = None, None
    while not (model.out_valid() and model.out_payload["last"]):
        accepted, _ = model.step(bool(queue), queue[0] if queue else None, True)
        if accepted:
            queue.pop(0)
            if not queue:
                taken_by_shortcut = cycle
        if model.inner and first_inner is None:
            first_inner = cycle
        cycle += 1
    assert taken_by_shortcut is not None and first_inner is not None and taken_by_shortcut < first_inner
    assert block.merge.shortcut.event_work(int(np.flatnonzero(flat)[0]), 3) == 3


def test_weight_image_holds_both_inputs():
    """Main's words first (the conv layout), then the shortcut's: a 1x1 conv ``c*groups + g``, the identity
    one word per channel with the gain of channel c in lane c % lanes."""
    for case in ("unequal_L", "identity_many_groups"):
        _, _, _, stages = build(case)
        for block in (s for s in stages if isinstance(s, ResidualBlockConfig)):
            merge = block.merge
            width, lanes = merge.weight_width, merge.lanes
            words = merge.weight_words()
            assert len(words) == merge.weight_depth == merge.weight_base(0) + len(words) - merge.weight_base(0)

            def lane(word, k, width=width):
                value = (word >> (k * width)) & ((1 << width) - 1)
                return value - (1 << width) if value >> (width - 1) else value

            main = merge.main
            kh, kw = main.kernel_size
            for (o, c, ky, kx), value in np.ndenumerate(main.weight):
                word = words[((c * kh + ky) * kw + kx) * merge.groups + o // lanes]
                assert lane(word, o % lanes) == value
            short = merge.shortcut
            for (o, c), value in np.ndenumerate(short.weight[:, :, 0, 0]):
                if short.diagonal:
                    if o == c:
                        assert lane(words[merge.weight_base(0) + c], c % lanes) == value
                else:
                    assert lane(words[merge.weight_base(0) + c * merge.groups + o // lanes], o % lanes) == value
            assert merge.weight_depth - merge.weight_base(0) == (short.in_channels if short.diagonal
                                                                 else short.in_channels * merge.groups)


def test_accumulator_width_covers_both_inputs_at_their_own_lengths():
    """``acc_width`` is the signed width of the sum of each input's worst case at its own T1 (not one T1 for
    both): checked against the brute bounds of the golden weights."""
    _, _, _, stages = build("unequal_L")
    for block in (s for s in stages if isinstance(s, ResidualBlockConfig)):
        merge = block.merge
        per_channel_low, per_channel_high = [], []
        for o in range(merge.out_channels):
            lo = sum(int(np.minimum(p.kernel.weight[o], 0).sum()) * p.t_in for p in merge.inputs)
            hi = sum(int(np.maximum(p.kernel.weight[o], 0).sum()) * p.t_in for p in merge.inputs)
            per_channel_low.append(lo)
            per_channel_high.append(hi)
        low, high = min(min(per_channel_low), 0), max(max(per_channel_high), 0)
        assert merge.current_range == (low, high)
        assert merge.main.t_in != merge.shortcut.t_in


def test_invalid_configurations_are_refused():
    rng = np.random.default_rng(0)
    theta, v0 = np.full(3, 5), np.zeros(3, np.int64)
    main = ConvConfig("m", rng.integers(-3, 4, (3, 3, 3, 3)), (3, 4, 4), 1, 1, 2, 2, theta, v0, 2, "hwc")
    with pytest.raises(HardwareError, match="diagonal input needs"):
        ConvConfig("s", rng.integers(1, 4, (3, 3, 1, 1)), (3, 4, 4), 1, 0, 2, 2, theta, v0, 2, "hwc", True)
    with pytest.raises(HardwareError, match="1x1 convolution"):
        ResidualConfig("r", main, main)
    wide = ConvConfig("s", rng.integers(-3, 4, (3, 3, 1, 1)), (3, 8, 8), 2, 0, 2, 2, theta, v0, 2, "hwc")
    assert wide.output_shape == main.output_shape
    other = ConvConfig("s", rng.integers(-3, 4, (3, 3, 1, 1)), (3, 4, 4), 1, 0, 2, 3, theta, v0, 2, "hwc")
    with pytest.raises(HardwareError, match="same neurons"):
        ResidualConfig("r", main, other)
    strided = ConvConfig("s", rng.integers(-3, 4, (3, 3, 1, 1)), (3, 4, 4), 2, 0, 2, 2, theta, v0, 2, "hwc")
    with pytest.raises(HardwareError, match="residual branch gives"):
        ResidualConfig("r", main, strided)
    merge = ResidualConfig("r", main, wide)
    conv1 = ConvConfig("c", rng.integers(-3, 4, (3, 3, 3, 3)), (3, 8, 8), 2, 1, 2, 3, theta, v0, 2, "hwc")
    with pytest.raises(HardwareError, match="conv2 reads"):
        ResidualBlockConfig("b", conv1, merge)
    with pytest.raises(HardwareError, match="layer 'r': banks must be 1 or 2, got 4"):
        ResidualConfig("r", main, wide, banks=4)
    block = ResidualBlockConfig("b", ConvConfig("c", rng.integers(-3, 4, (3, 3, 3, 3)), (3, 8, 8), 2, 1, 2, 2, theta,
                                                v0, 2, "hwc"), merge)
    with pytest.raises(HardwareError, match="block 'b': banks must be 1 or 2, got -1"):
        dataclasses.replace(block, banks=-1)
    double = dataclasses.replace(block, banks=2)      # a block's banks apply to both engines
    assert (double.conv1.banks, double.merge.banks, block.conv1.banks, block.merge.banks) == (2, 2, 1, 1)
    assert double.merge.acc_bits_total == 2 * merge.acc_bits_total
    assert dataclasses.replace(double, banks=1).conv1.banks == 1
    with pytest.raises(TypeError, match="ResidualConfig: main must be a ConvConfig"):
        ResidualConfig("r", "conv", wide)
    with pytest.raises(TypeError, match="ResidualEngineModel: config must be a ResidualConfig"):
        ResidualEngineModel(main)
    with pytest.raises(TypeError, match="ResidualBlockModel: config must be a ResidualBlockConfig"):
        ResidualBlockModel(merge)


def test_a_pre_op_on_a_residual_synapse_is_refused_by_name():
    """The golden compiler gives a block's synapses no pre-ops; one put there by hand is refused with the
    layer's name (not silently ignored)."""
    _, _, model, _ = build("equal_L")
    layer = model.by_name["block0.act2"]
    broken = dataclasses.replace(layer, synapses=(dataclasses.replace(layer.synapses[0], pre_ops=(MaxPool2d("p", 2),)),
                                                  layer.synapses[1]))
    with pytest.raises(HardwareError, match="block0.act2.*pre-ops on a residual synapse"):
        ResidualConfig.from_int_layer(broken, 2)
