"""Amaranth-simulator tests of the ResNet basic block (fork, conv1 engine, two-port act2 engine): cycle by
cycle against :class:`ResidualBlockModel` under random idle and back-pressure, counts against the golden
integer model; a random small ResNet as a :class:`StageChain` against ``integer_ann``."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from pascal_hdl.gateware.residual import ResidualBlock, ResidualEngine
from pascal_hdl.model.chain import (
    run_chain_model,
    stage_configs,
    stage_kind,
)
from pascal_hdl.model.conv import ConvConfig, ConvPhase, from_layout, to_layout
from pascal_hdl.model.engine import sample_events
from pascal_hdl.model.residual import ResidualBlockConfig, ResidualBlockModel
from pascal_hdl.testing import (
    clear_cycles_seen,
    events_to_counts,
    handshakes_seen,
    lockstep,
    lockstep_chain,
    plain,
    random_levels,
    residual_network,
    to_python,
)
from pascal_ref.golden.quantize import integer_ann
from pascal_ref.testing import random_inputs

# blocks (shortcut, channels, stride), L of every activation (stem first), stem channels, input shape, lanes
NETWORKS = {
    "equal_L": ([("identity", 3, 1), ("conv", 4, 2)], [2, 2, 2, 2, 2], 3, (2, 5, 5), 2),
    "unequal_L": ([("identity", 3, 1), ("conv", 4, 2)], [3, 8, 1, 2, 4], 3, (2, 5, 5), 3),
    "unequal_L_other_way": ([("conv", 4, 1), ("identity", 4, 1)], [8, 2, 4, 1, 3], 2, (1, 5, 4), 2),
    "identity_many_groups": ([("identity", 5, 1)], [4, 1, 3], 5, (2, 4, 4), 2),
}


def build(name: str, seed: int = 0):
    blocks, levels, stem, shape, lanes = NETWORKS[name]
    rng = np.random.default_rng(seed + 100 * list(NETWORKS).index(name))
    network, model = residual_network(rng, blocks, levels, input_levels=4, input_shape=shape, stem=stem)
    return rng, network, model, stage_configs(model, lanes=lanes)


def block_inputs(model, stages, levels):
    """Per residual stage: the block, the golden names of its two layers and its input counts (its layout)."""
    values, names, out = to_layout(levels, "chw"), iter(layer.name for layer in model.layers), []
    for stage in stages:
        kind = stage_kind(stage)
        if kind == "residual":
            out.append((stage, (next(names), next(names)), values))
        elif kind != "pool":
            next(names)
        if kind != "readout":
            values = stage.forward(values)
    return out


def run_block(block: ResidualBlockConfig, flat, seed: int, p_valid: float, p_ready: float):
    events = [e for sample in flat for e in sample_events(sample)]
    dut, model = ResidualBlock(block), ResidualBlockModel(block)
    inner = []

    def note_inner(ctx, cycle):
        if ctx.get(dut.inner.valid):
            inner.append(to_python(ctx.get(dut.inner.payload)))

    run = lockstep(dut, model, events, until=lambda outputs: sum(bool(o["last"]) for o in outputs) == len(flat),
                   seed=seed, p_valid=p_valid, p_ready=p_ready, probes={"rejected": (dut.rejected, model.rejecting)},
                   observe=note_inner, max_cycles=300_000)
    assert inner == [plain(e) for e in model.inner]
    return run, inner


@pytest.mark.parametrize("banks, mac, multiplier", [(1, False, "logic"), (2, False, "logic"), (2, True, "logic"),
                                                    (2, True, "dsp")],
                         ids=["banks1", "banks2", "banks2_mac", "banks2_mac_dsp"])
@pytest.mark.parametrize("network, p_valid, p_ready", [("equal_L", 0.7, 0.5), ("unequal_L", 1.0, 1.0),
                                                       ("unequal_L_other_way", 0.6, 0.7),
                                                       ("identity_many_groups", 0.8, 0.4)])
def test_block_matches_model_and_golden(network, p_valid, p_ready, banks, mac, multiplier):
    """Each block of the network (identity and 1x1-conv shortcuts, equal and unequal L on the two paths)
    alone in the simulator, beside its cycle model with random idle and back-pressure: every handshake,
    payload and ``rejected`` each cycle; the inner act1 events and the act2 counts equal the golden model's.
    ``banks`` 2: both engines double-buffered (the block's ``banks`` applies to them); ``mac``: every
    input of both engines issues each tap once per event and adds ``count * weight`` (``multiplier`` dsp:
    a ``*`` per lane, set on both engines and both inputs)."""
    rng, network_, model, stages = build(network)
    levels = model.encode_input(random_inputs(network_, rng, 3))
    golden = integer_ann(model, x_int=levels)
    for block, (first, second), flat in block_inputs(model, stages, levels):
        block = dataclasses.replace(block, banks=banks, mac=mac, multiplier=multiplier)
        assert block.conv1.banks == block.merge.banks == banks
        assert block.conv1.mac == block.merge.main.mac == block.merge.shortcut.mac == mac
        assert (block.conv1.multiplier == block.merge.multiplier == block.merge.main.multiplier
                == block.merge.shortcut.multiplier == multiplier)
        run, inner = run_block(block, flat, 5, p_valid, p_ready)
        act1 = events_to_counts(inner, block.conv1.out_features)
        np.testing.assert_array_equal(from_layout(act1, block.conv1.output_shape, "hwc"), golden.levels[first])
        act2 = events_to_counts(run.outputs, block.out_features)
        np.testing.assert_array_equal(from_layout(act2, block.output_shape, "hwc"), golden.levels[second])


@pytest.mark.parametrize("network, seed, p_valid, p_ready", [("unequal_L", 0, 0.8, 0.6), ("equal_L", 1, 1.0, 1.0)])
def test_random_resnet_chain_equals_golden(network, seed, p_valid, p_ready):
    """conv stem, an identity block, a 1x1-conv-shortcut block (stride 2), global average pooling and the
    Linear readout as one StageChain: every payload cycle by cycle as the chained models (random idle and
    back-pressure, or none: then the cycles equal ``run_chain_model``'s), every block's act2 counts at its
    monitor, the logits and the class equal the golden integer model's."""
    rng, network_, model, stages = build(network, seed)
    assert [stage_kind(s) for s in stages] == ["conv", "residual", "residual", "pool", "readout"]
    levels = model.encode_input(random_inputs(network_, rng, 2))
    golden = integer_ann(model, x_int=levels)
    run, seen = lockstep_chain(stages, levels, seed, p_valid, p_ready)
    names = iter(layer.name for layer in model.layers)
    for stage, events in zip(stages, seen):
        counts = events_to_counts(events, stage.out_features)
        if isinstance(stage, ResidualBlockConfig):
            next(names)
            np.testing.assert_array_equal(from_layout(counts, stage.output_shape, "hwc"), golden.levels[next(names)])
        elif isinstance(stage, ConvConfig):
            np.testing.assert_array_equal(from_layout(counts, stage.output_shape, "hwc"), golden.levels[next(names)])
    np.testing.assert_array_equal([o["logits"] for o in run.outputs], golden.integer_logits)
    np.testing.assert_array_equal([o["cls"] for o in run.outputs], np.argmax(golden.integer_logits, axis=1))
    if p_valid == p_ready == 1.0:
        _, cycles = run_chain_model(stages, to_layout(levels[:1], "chw"))
        first, _ = lockstep_chain(stages, levels[:1], seed, 1.0, 1.0)
        # lockstep also counts the first stage's CLEAR after reset and the cycle the result is taken
        assert first.cycles == stages[0].clear_cycles + cycles[0] + 1


@pytest.mark.parametrize("banks, mac", [(1, False), (2, False), (2, True)], ids=["banks1", "banks2", "banks2_mac"])
@pytest.mark.parametrize("network, seed", [("unequal_L", 0), ("unequal_L", 1), ("identity_many_groups", 2),
                                           ("identity_many_groups", 3), ("unequal_L_other_way", 4)])
def test_reset_in_the_middle_of_samples_leaves_no_partial_sum(network, seed, banks, mac):
    """``rst`` of the block in random cycles while a sample is in flight (both engines accumulating, act1
    events crossing to the act2 engine, act2 events leaving), its model reset with it: every cycle equal,
    both engines' CLEAR phases included, and the act2 counts of every sample sent after a reset equal the
    golden model's (two banks: each engine's CLEAR zeroes both of its banks)."""
    rng, network_, model, stages = build(network, seed)
    levels = model.encode_input(random_inputs(network_, rng, 12 if mac else 6))   # mac: shorter samples
    golden = integer_ann(model, x_int=levels)
    block, (_, second), flat = block_inputs(model, stages, levels)[0]
    block = dataclasses.replace(block, banks=banks, mac=mac)
    dut, block_model = ResidualBlock(block), ResidualBlockModel(block)
    run = lockstep(dut, block_model, [e for sample in flat for e in sample_events(sample)], seed=seed,
                   p_valid=0.8, p_ready=0.7, p_reset=0.004, max_resets=3,
                   probes={"rejected": (dut.rejected, block_model.rejecting)}, max_cycles=300_000)
    kept = [s for s in range(len(flat)) if s not in run.lost]
    assert run.resets and run.lost and max(kept) > max(run.lost)
    act2 = events_to_counts(run.outputs, block.out_features)
    np.testing.assert_array_equal(from_layout(act2, block.output_shape, "hwc"), golden.levels[second][kept])


@pytest.mark.parametrize("banks", [1, 2])
def test_clear_takes_the_longer_engine_clear(banks):
    """After power-up and after a reset in any phase of a sample, the block's ``i.ready`` stays low for
    exactly ``clear_cycles``: the longer of the two engines' CLEAR phases (one word per cycle each; two
    banks: one word of each bank per cycle)."""
    _, _, _, stages = build("identity_many_groups")
    block = dataclasses.replace(next(s for s in stages if isinstance(s, ResidualBlockConfig)), banks=banks)
    expected = max(block.conv1.acc_depth, block.merge.acc_depth)
    assert block.clear_cycles == expected == 16 * 3
    events = sample_events(np.arange(block.in_features) % (block.t_in + 1))
    for reset_after in (1, 30, 200, 400):
        assert clear_cycles_seen(ResidualBlock(block), events, reset_after) == (expected, expected), reset_after


@pytest.mark.parametrize("banks", [1, 2])
def test_hostile_events_are_rejected_and_dropped(banks):
    """Every index and count the block's port can carry (index == in_features, count == T1 + 1, repeats,
    random ``last``): conv1 and the shortcut drop exactly the events of the rule (the same ones), the
    act2 counts are the block's ``forward`` on the kept counts; random idle and back-pressure."""
    rng, _, _, stages = build("identity_many_groups")
    block = dataclasses.replace(next(s for s in stages if isinstance(s, ResidualBlockConfig)), banks=banks)
    index_max = (1 << (block.in_features - 1).bit_length()) - 1
    count_max = (1 << block.t_in.bit_length()) - 1
    events = [{"index": int(rng.integers(0, index_max + 1)), "count": int(rng.integers(0, count_max + 1)),
               "last": bool(rng.random() < 0.1)} for _ in range(60)]
    events[-1]["last"] = True
    samples, counts, previous = [], np.zeros(block.in_features, np.int64), -1
    for event in events:
        if event["index"] < block.in_features and event["count"] <= block.t_in and event["index"] > previous:
            counts[event["index"]], previous = event["count"], event["index"]
        if event["last"]:
            samples.append(counts)
            counts, previous = np.zeros(block.in_features, np.int64), -1
    dut, model = ResidualBlock(block), ResidualBlockModel(block)
    flags = []
    run = lockstep(dut, model, events, until=lambda outputs: sum(o["last"] for o in outputs) == len(samples), seed=2,
                   p_valid=0.7, p_ready=0.6, probes={"rejected": (dut.rejected, model.rejecting)},
                   observe=lambda ctx, cycle: flags.append(ctx.get(dut.rejected)))
    assert sum(flags) > 0 and model.conv1.rejected == model.merge.rejected > 0
    np.testing.assert_array_equal(events_to_counts(run.outputs, block.out_features), block.forward(np.array(samples)))


@pytest.mark.parametrize("banks", [1, 2])
def test_handshakes_depend_on_state_only(banks):
    """Flipping i.valid, the input payload and o.ready within any cycle leaves i.ready and o.valid unchanged
    (the fork's ready is the AND of two state-only readies)."""
    rng, _, _, stages = build("equal_L")
    block = dataclasses.replace(next(s for s in stages if isinstance(s, ResidualBlockConfig)), banks=banks)
    flat = random_levels(rng, 2, block.input_shape, block.t_in, 0.5).reshape(2, -1)
    events = [e for sample in flat for e in sample_events(sample)]
    dut, model = ResidualBlock(block), ResidualBlockModel(block)
    probed = handshakes_seen(
        dut, model, events, until=lambda outputs: sum(o["last"] for o in outputs) == len(flat),
        random_payload=lambda: {"index": int(rng.integers(0, block.in_features)), "count": 1, "last": 1})
    assert {ready for ready, _ in probed} == {valid for _, valid in probed} == {0, 1}


def test_two_banks_overlap_samples_inside_the_block():
    """Both engines double-buffered, back to back: cycle by cycle as the model; the act2 engine's neurons
    emit sample n while its input side accumulates sample n+1's shortcut (never with one bank), and the
    stream takes fewer cycles than with one bank. What limits it (see ``docs``): the fork hands a block
    input to conv1 and the shortcut port at once, so conv1's accumulation of n+1 waits until the act2
    engine has accumulated all of n (its shortcut and conv2 inputs share one bank per sample)."""
    rng, network_, model, stages = build("unequal_L")
    levels = model.encode_input(random_inputs(network_, rng, 5))
    golden = integer_ann(model, x_int=levels)
    block, (_, second), flat = block_inputs(model, stages, levels)[0]
    cycles, overlap = {}, {}
    for banks in (1, 2):
        config = dataclasses.replace(block, banks=banks)
        dut, block_model = ResidualBlock(config), ResidualBlockModel(config)
        seen = []

        def note(ctx, cycle):
            merge = block_model.merge
            seen.append(merge.phase not in (ConvPhase.ACCUMULATE, ConvPhase.CLEAR) and merge.busy_cycles > 0)

        run = lockstep(dut, block_model, [e for sample in flat for e in sample_events(sample)], seed=1,
                       probes={"rejected": (dut.rejected, block_model.rejecting)}, observe=note, max_cycles=300_000)
        act2 = events_to_counts(run.outputs, config.out_features)
        np.testing.assert_array_equal(from_layout(act2, config.output_shape, "hwc"), golden.levels[second])
        cycles[banks], overlap[banks] = run.cycles, sum(seen)
    assert overlap[1] == 0 and overlap[2] > 0 and cycles[2] < cycles[1]


def test_no_multiplier_or_divider_is_built():
    """The identity shortcut's group (c // lanes) and every address come from shift-add products."""
    from amaranth.back import rtlil

    _, _, _, stages = build("identity_many_groups")
    block = next(s for s in stages if isinstance(s, ResidualBlockConfig))
    text = rtlil.convert(ResidualBlock(block), name="top")
    for cell in ("$mul", "$div", "$mod", "$divfloor", "$modfloor"):
        assert f"cell {cell} " not in text, cell


def test_blocks_refuse_a_wrong_config():
    with pytest.raises(TypeError, match="ResidualEngine: config must be a ResidualConfig"):
        ResidualEngine("merge")
    with pytest.raises(TypeError, match="ResidualBlock: config must be a ResidualBlockConfig"):
        ResidualBlock(None)
