"""Amaranth-simulator tests of the Conv2d engine: cycle by cycle against :class:`ConvEngineModel`
under random idle and back-pressure, outputs against the golden integer model (``integer_ann``)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from pascal_hdl.config import HardwareError
from pascal_hdl.gateware.conv import ConvEngine
from pascal_hdl.gateware.pool import PoolUnit
from pascal_hdl.model.chain import run_chain_model, stage_configs
from pascal_hdl.model.conv import (
    ConvConfig,
    ConvEngineModel,
    ConvPhase,
    from_layout,
    to_layout,
)
from pascal_hdl.model.engine import sample_events
from pascal_hdl.model.pool import PoolConfig
from pascal_hdl.testing import (
    clear_cycles_seen,
    conv_network,
    events_to_counts,
    handshakes_seen,
    kept_events,
    lockstep,
    lockstep_chain,
    random_levels,
    random_pixels,
)
from pascal_ref.golden.quantize import integer_ann, quantize
from pascal_ref.io.bundled import bundled_path
from pascal_ref.io.data import load_digits_split
from pascal_ref.io.fileformat import load
from pascal_ref.testing import random_inputs, random_network


def run_conv(config: ConvConfig, events: list[dict], samples: int, seed: int, p_valid: float, p_ready: float):
    """:func:`lockstep` of the engine beside its model; the outputs, per event taken from the input
    register whether it was rejected, and the cycles."""
    dut, model = ConvEngine(config), ConvEngineModel(config)
    rejected = []

    def note_rejections(ctx, cycle):
        if model._decoding():
            rejected.append(model.rejecting())

    run = lockstep(dut, model, events, until=lambda outputs: sum(bool(o["last"]) for o in outputs) == samples,
                   seed=seed, p_valid=p_valid, p_ready=p_ready, probes={"rejected": (dut.rejected, model.rejecting)},
                   observe=note_rejections, max_cycles=200_000)
    return run.outputs, rejected, run.cycles


# kernel, stride, padding, L_in, L, lanes, input shape, output channels, p_valid, p_ready
CASES = [
    (1, 1, 0, 4, 2, 3, (2, 5, 5), 3, 0.7, 0.6),
    (1, 2, 0, 1, 1, 1, (1, 5, 6), 2, 1.0, 1.0),     # L = 1, one lane, inputs that reach nothing
    (1, 2, 1, 4, 4, 2, (2, 5, 4), 5, 0.5, 0.4),     # padded last group
    (1, 1, 1, 2, 8, 4, (3, 4, 5), 4, 0.9, 0.3),     # T1 < T2, one group, border outputs without input
    (3, 1, 0, 8, 1, 3, (2, 6, 5), 3, 0.6, 0.7),     # T1 > T2 = 1
    (3, 1, 1, 4, 3, 2, (2, 5, 5), 4, 0.7, 0.5),
    (3, 2, 0, 4, 2, 1, (2, 6, 6), 3, 1.0, 0.5),
    (3, 2, 1, 3, 4, 3, (1, 7, 6), 6, 0.8, 0.8),
    (3, 1, 1, 2, 1, 6, (2, 4, 4), 6, 1.0, 1.0),     # 6 lanes, T2 = 1
]


def case_id(c):
    return f"k{c[0]}s{c[1]}p{c[2]}_T{c[3]}-{c[4]}_lanes{c[5]}_{'x'.join(map(str, c[6]))}to{c[7]}"


@pytest.mark.parametrize("banks, mac", [(1, False), (2, False), (1, True), (2, True)],
                         ids=["banks1", "banks2", "banks1_mac", "banks2_mac"])
@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_conv_engine_matches_model_and_golden(case, banks, mac):
    """Cycle by cycle against the cycle model (every handshake and payload), outputs equal to the
    golden model's; ``mac``: each tap issued once per event, ``count * weight`` added."""
    kernel, stride, padding, t_in, t_out, lanes, shape, out, p_valid, p_ready = case
    rng = np.random.default_rng(sum(case[:6]) + 100)
    _, model = conv_network(rng, kernel, stride, padding, [t_out], input_levels=t_in, input_shape=shape,
                            channels=(out,))
    config = dataclasses.replace(ConvConfig.from_int_layer(model.layers[0], lanes=lanes), banks=banks, mac=mac)
    levels = random_levels(rng, 6, shape, t_in, density=0.5)
    flat = to_layout(levels, "chw")
    events = [e for sample in flat for e in sample_events(sample)]
    outputs, rejected, _ = run_conv(config, events, len(levels), 1, p_valid, p_ready)
    assert not any(rejected) and len(rejected) == len(events)
    counts = from_layout(events_to_counts(outputs, config.out_features), config.output_shape, "hwc")
    np.testing.assert_array_equal(counts, integer_ann(model, x_int=levels).levels["act1"])
    assert all(o["count"] != 0 or o["last"] for o in outputs)


@pytest.mark.parametrize("p_valid, p_ready", [(1.0, 1.0), (0.7, 0.5)])
def test_two_banks_accumulate_the_next_sample_while_the_neurons_emit(p_valid, p_ready):
    """Double-buffered: cycle by cycle as the model, the issue stage scatters sample n+1 while the
    neuron side works on sample n (never with one bank), a complete sample waits (``full``) when the
    neuron side is still busy, and a back-to-back stream takes fewer cycles than with one bank; the
    counts equal the golden model's."""
    rng = np.random.default_rng(23)
    _, model = conv_network(rng, 3, 1, 1, [3], input_levels=3, input_shape=(2, 5, 5), channels=(4,))
    levels = random_levels(rng, 6, (2, 5, 5), 3, density=0.4)
    levels[2] = 0                                  # a silent sample: its input ends at once
    events = [e for sample in to_layout(levels, "chw") for e in sample_events(sample)]
    seen, cycles = {}, {}
    for banks in (1, 2):
        config = dataclasses.replace(ConvConfig.from_int_layer(model.layers[0], lanes=2), banks=banks)
        dut, engine = ConvEngine(config), ConvEngineModel(config)
        overlap, waits = [], []

        def note(ctx, cycle):
            overlap.append(engine.phase not in (ConvPhase.ACCUMULATE, ConvPhase.CLEAR) and engine.busy_cycles > 0)
            waits.append(engine.full)

        run = lockstep(dut, engine, events, until=lambda outputs: sum(o["last"] for o in outputs) == len(levels),
                       seed=3, p_valid=p_valid, p_ready=p_ready, probes={"rejected": (dut.rejected, engine.rejecting)},
                       observe=note, max_cycles=200_000)
        counts = from_layout(events_to_counts(run.outputs, config.out_features), config.output_shape, "hwc")
        np.testing.assert_array_equal(counts, integer_ann(model, x_int=levels).levels["act1"])
        seen[banks], cycles[banks] = (sum(overlap), sum(waits)), run.cycles
    assert seen[1] == (0, 0) and min(seen[2]) > 0
    assert cycles[2] < cycles[1]


@pytest.mark.parametrize("p_ready", [1.0, 0.5])
def test_latch_waits_for_a_busy_emitter(p_ready):
    """Every neuron fires (positive weights, v0 at theta): each word has 7 events to send, more than the
    T2 + 2 = 3 cycles the units need for the next word, so LATCH waits for the emitter (seen in the
    model); cycle by cycle equal, every count T2."""
    rng = np.random.default_rng(17)
    config = ConvConfig("conv", rng.integers(0, 4, (7, 2, 3, 3)), (2, 4, 4), 1, 1, 2, 1, np.full(7, 5),
                        np.full(7, 5), 7)
    assert not config.emitter_keeps_up
    flat = rng.integers(0, 3, (3, config.in_features))
    events = [e for sample in flat for e in sample_events(sample)]
    waits = []
    dut, model = ConvEngine(config), ConvEngineModel(config)

    def note_waits(ctx, cycle):
        waits.append(model.phase == ConvPhase.LATCH and model.out_valid())

    run = lockstep(dut, model, events, until=lambda outputs: sum(o["last"] for o in outputs) == len(flat), seed=4,
                   p_valid=1.0, p_ready=p_ready, observe=note_waits)
    assert sum(waits) > len(flat) * config.acc_depth
    np.testing.assert_array_equal(events_to_counts(run.outputs, config.out_features), config.forward(flat))
    assert np.all(config.forward(flat) == config.t_out)


def test_cycles_equal_the_model_with_an_ideal_source_and_sink():
    """With no idle and no back-pressure, the hardware's cycles per sample equal ``expected_cycles``
    and, where every input reaches an output, the formula ``stream_cycles``."""
    rng = np.random.default_rng(4)
    for kernel, stride, padding in [(3, 1, 1), (1, 2, 0)]:
        _, model = conv_network(rng, kernel, stride, padding, [2], input_levels=3, input_shape=(2, 5, 5),
                                channels=(3,))
        config = ConvConfig.from_int_layer(model.layers[0], lanes=2)
        flat = to_layout(random_levels(rng, 3, (2, 5, 5), 3, density=0.5), "chw")
        expected = config.expected_cycles(flat)
        for sample, cycles in zip(flat, expected):
            _, _, measured = run_conv(config, sample_events(sample), 1, 0, 1.0, 1.0)
            assert measured == config.clear_cycles + cycles    # the run starts with the CLEAR after reset
        assert config.reaches_everything == (stride == 1) and config.emitter_keeps_up
        if config.reaches_everything:
            np.testing.assert_array_equal(expected, config.stream_cycles(flat))


def both_banks_busy(engine: ConvEngineModel) -> bool:
    """A double-buffered engine (model) holds two samples: the neuron side works on one while the
    other bank holds a partial (or complete) sum of the next."""
    working = engine.phase not in (ConvPhase.ACCUMULATE, ConvPhase.CLEAR)
    return working and (engine.full or bool(np.any(engine.total)))


@pytest.mark.parametrize("banks", [1, 2])
@pytest.mark.parametrize("seed", range(5))
def test_reset_in_the_middle_of_samples_leaves_no_partial_sum(seed, banks):
    """``rst`` in random cycles while a sample is in flight (events arriving or decoded, spikes being
    scattered, words in the neuron units, events leaving), the model reset with it: every cycle equal,
    the CLEAR phase after each reset included, and the act1 counts of every sample sent after a reset
    equal the golden model's (nothing of an interrupted sample survives in the accumulators). Two
    banks: over the seeds, resets hit cycles in which both banks hold a sample's sums (the CLEAR
    zeroes both)."""
    rng = np.random.default_rng(60 + seed)
    _, model = conv_network(rng, 3, 1, 1, [2], input_levels=3, input_shape=(2, 4, 4), channels=(3,))
    config = ConvConfig.from_int_layer(model.layers[0], lanes=2)      # 16 positions x 2 groups
    config = dataclasses.replace(config, banks=banks)
    levels = random_levels(rng, 7, (2, 4, 4), 3)
    events = [e for sample in to_layout(levels, "chw") for e in sample_events(sample)]
    dut, engine = ConvEngine(config), ConvEngineModel(config)
    busy = []
    run = lockstep(dut, engine, events, seed=seed, p_valid=0.8, p_ready=0.7, p_reset=0.004 * banks, max_resets=3,
                   probes={"rejected": (dut.rejected, engine.rejecting)}, max_cycles=200_000,
                   observe=lambda ctx, cycle: busy.append(both_banks_busy(engine)))
    kept = [s for s in range(len(levels)) if s not in run.lost]
    assert run.resets and run.lost and max(kept) > max(run.lost)
    counts = from_layout(events_to_counts(run.outputs, config.out_features), config.output_shape, "hwc")
    np.testing.assert_array_equal(counts, integer_ann(model, x_int=levels[kept]).levels["act1"])
    # two banks: a reset came while both banks held sums; one bank never holds two samples
    assert any(busy[cycle] for cycle in run.resets) if banks == 2 else not any(busy)


@pytest.mark.parametrize("banks", [1, 2])
def test_clear_takes_one_cycle_per_accumulator_word(banks):
    """After power-up and after a reset in any phase of a sample, ``i.ready`` stays low for exactly
    ``clear_cycles == acc_depth`` cycles (one word per position and group; with two banks one word of
    each per cycle)."""
    rng = np.random.default_rng(8)
    config = dataclasses.replace(small_config(rng), banks=banks)   # 4x4 outputs (padding 1, 2x2 kernel), 3 ch / 2 lanes
    assert config.clear_cycles == config.acc_depth == 16 * 2
    events = sample_events(np.array([3, 0, 2, 1, 0, 3, 0, 0, 1]))
    for reset_after in (1, 10, 40, 80, 120):
        assert clear_cycles_seen(ConvEngine(config), events, reset_after) == (32, 32), reset_after


def check_chain_against_golden(model, stages, levels, run, seen):
    """Every hidden neuron layer's counts (at the conv engines' outputs), logits and class equal the
    golden integer model's."""
    golden = integer_ann(model, x_int=levels)
    hidden = iter(layer.name for layer in model.layers[:-1])
    for stage, events in zip(stages, seen):
        counts = events_to_counts(events, stage.out_features)
        assert len(counts) == len(levels)
        if isinstance(stage, ConvConfig):
            np.testing.assert_array_equal(from_layout(counts, stage.output_shape, "hwc"), golden.levels[next(hidden)])
    np.testing.assert_array_equal([o["logits"] for o in run.outputs], golden.integer_logits)
    np.testing.assert_array_equal([o["cls"] for o in run.outputs], np.argmax(golden.integer_logits, axis=1))


def test_conv_conv_linear_chain_equals_golden_logits():
    """conv (chw in) -> conv (stride 2, hwc in) -> the existing Linear readout engine (columns permuted
    to hwc), chained by their streams: per-link events and every payload cycle by cycle as the chained
    models, per-layer counts, logits and class equal the golden integer model's, with idle and back-pressure."""
    rng = np.random.default_rng(31)
    shape = (2, 6, 6)
    _, model = conv_network(rng, 3, 1, 1, [2, 3], input_levels=4, input_shape=shape, channels=(3, 4),
                            second=(3, 2, 1))
    stages = stage_configs(model, lanes=3)
    assert [type(s).__name__ for s in stages] == ["ConvConfig", "ConvConfig", "LayerConfig"]
    assert stages[1].input_layout == "hwc"
    levels = random_levels(rng, 5, shape, 4, density=0.6)
    run, seen = lockstep_chain(stages, levels, 7, 0.7, 0.5)
    check_chain_against_golden(model, stages, levels, run, seen)


@pytest.mark.parametrize("seed", [0, 3])
def test_random_cnn_with_max_and_average_pooling_equals_golden(seed):
    """The random conv family of the golden model's tests (conv, MaxPool2d, conv with stride 1 or 2,
    overlapping AvgPool2d, Flatten, Linear readout; random L including 1) as conv engines, pooling units
    and the Linear readout: cycle by cycle as the chained models, counts, logits, class as the golden model."""
    rng = np.random.default_rng(seed)
    network = random_network(rng, "conv", input_levels=4)
    model = quantize(network)
    stages = stage_configs(model, lanes=2)
    assert [type(s).__name__ for s in stages] == ["ConvConfig", "PoolConfig", "ConvConfig", "PoolConfig", "LayerConfig"]
    assert [s.reduce for s in stages if isinstance(s, PoolConfig)] == ["max", "sum"]
    levels = model.encode_input(random_inputs(network, rng, 3))
    run, seen = lockstep_chain(stages, levels, seed, 0.8, 0.6)
    check_chain_against_golden(model, stages, levels, run, seen)


def test_digits_cnn_first_test_image_equals_golden():
    """The bundled digits CNN as stages (conv, max pool, conv, average pool, Linear readout; 8 lanes) in
    the Amaranth simulator on the first digits test image: every payload cycle by cycle as the chained
    models, both conv layers' counts, logits and class equal the golden integer model; the cycles equal
    ``run_chain_model``'s."""
    model = quantize(load(bundled_path("digits-cnn")), weight_bits=8)
    stages = stage_configs(model, lanes=8)
    levels = model.encode_input(load_digits_split()[2][:1].reshape((-1,) + model.network.input_shape))
    run, seen = lockstep_chain(stages, levels, 0, 1.0, 1.0)
    check_chain_against_golden(model, stages, levels, run, seen)
    _, cycles = run_chain_model(stages, to_layout(levels, "chw"))
    # lockstep also counts the first stage's CLEAR after reset and the cycle the result is taken
    assert run.cycles == stages[0].clear_cycles + cycles[0] + 1


@pytest.mark.parametrize("block", ["conv", "pool_max", "pool_sum"])
def test_no_multiplier_or_divider_is_built(block):
    """The address decode divides by constants through shift-add products: the netlist has no
    $mul, $div or $mod cell (the weights are added, counts repeated)."""
    from amaranth.back import rtlil

    rng = np.random.default_rng(1)
    if block == "conv":
        config = ConvConfig("conv", rng.integers(-7, 8, (5, 3, 3, 3)), (3, 7, 6), (2, 1), (1, 0), 5, 3,
                            rng.integers(1, 30, 5), rng.integers(-9, 9, 5), 2)
        dut = ConvEngine(config)
    else:
        dut = PoolUnit(PoolConfig("pool", (3, 7, 6), 3, 2, block[5:], 5, "chw"))
    text = rtlil.convert(dut, name="top")
    for cell in ("$mul", "$div", "$mod", "$divfloor", "$modfloor"):
        assert f"cell {cell} " not in text, cell


def test_mac_builds_no_multiplier():
    """With ``mac`` the write-back's ``count * weight`` is shifts, masks and adders (``times_count``): still no
    $mul, $div or $mod cell (so no DSP block); the issue cycles of an event no longer grow with its count."""
    from amaranth.back import rtlil

    rng = np.random.default_rng(1)
    config = ConvConfig("conv", rng.integers(-7, 8, (5, 3, 3, 3)), (3, 7, 6), (2, 1), (1, 0), 5, 3,
                        rng.integers(1, 30, 5), rng.integers(-9, 9, 5), 2, mac=True)
    text = rtlil.convert(ConvEngine(config), name="top")
    for cell in ("$mul", "$div", "$mod", "$divfloor", "$modfloor"):
        assert f"cell {cell} " not in text, cell
    plain = dataclasses.replace(config, mac=False)
    index = config.in_features // 2
    assert plain.event_work(index, 5) == 5 * config.event_work(index, 5) > 0
    assert config.event_work(index, 5) == config.event_work(index, 1) and config.event_work(index, 0) == 0


@pytest.mark.parametrize("case", [CASES[4], CASES[-1]], ids=[case_id(CASES[4]), case_id(CASES[-1])])
def test_dsp_multiplier_matches_the_model(case):
    """``multiplier="dsp"``: the write-back's product is one ``$mul`` per lane (for yosys to map onto a DSP
    block, none without it); cycle by cycle as the cycle model (the same one as shift-and-add) and the
    golden model, double-buffered."""
    from amaranth.back import rtlil

    kernel, stride, padding, t_in, t_out, lanes, shape, out, p_valid, p_ready = case
    rng = np.random.default_rng(sum(case[:6]) + 200)
    _, model = conv_network(rng, kernel, stride, padding, [t_out], input_levels=t_in, input_shape=shape,
                            channels=(out,))
    logic = dataclasses.replace(ConvConfig.from_int_layer(model.layers[0], lanes=lanes), banks=2, mac=True)
    config = dataclasses.replace(logic, multiplier="dsp")
    assert rtlil.convert(ConvEngine(config), name="top").count("cell $mul ") == config.lanes
    assert "cell $mul " not in rtlil.convert(ConvEngine(logic), name="top")
    levels = random_levels(rng, 6, shape, t_in, density=0.5)
    events = [e for sample in to_layout(levels, "chw") for e in sample_events(sample)]
    outputs, rejected, _ = run_conv(config, events, len(levels), 1, p_valid, p_ready)
    assert not any(rejected)
    counts = from_layout(events_to_counts(outputs, config.out_features), config.output_shape, "hwc")
    np.testing.assert_array_equal(counts, integer_ann(model, x_int=levels).levels["act1"])


def test_multiplier_is_checked():
    """A multiplier other than logic or dsp is refused in one line naming the layer."""
    rng = np.random.default_rng(2)
    with pytest.raises(HardwareError, match=r"layer 'conv': multiplier must be one of logic, dsp, got 'DSP'"):
        dataclasses.replace(small_config(rng), mac=True, multiplier="DSP")


def small_config(rng, t_in=3, shape=(1, 3, 3), lanes=2) -> ConvConfig:
    weight = rng.integers(-7, 8, (3, shape[0], 2, 2))
    return ConvConfig("conv", weight, shape, 1, 1, t_in, 2, rng.integers(1, 20, 3), rng.integers(-8, 8, 3), lanes)




def test_bad_events_are_rejected_and_dropped():
    """Each rule at its boundary: index == in_features rejected, in_features - 1 kept; count T1 + 1
    rejected, T1 kept; a repeated index rejected; a rejected last event still ends the sample."""
    rng = np.random.default_rng(5)
    config = small_config(rng, t_in=4)                        # 9 inputs, T1 = 4: the port holds 15 and 7
    events = [{"index": 2, "count": 2, "last": False},
              {"index": 2, "count": 1, "last": False},        # not increasing
              {"index": 9, "count": 1, "last": False},        # index == in_features
              {"index": 4, "count": 5, "last": False},        # count T1 + 1
              {"index": 4, "count": 4, "last": False},        # count T1
              {"index": 8, "count": 1, "last": True},         # in_features - 1, last
              {"index": 15, "count": 1, "last": True},        # out of range and last: ends the (silent) sample
              {"index": 0, "count": 3, "last": True}]
    outputs, rejected, _ = run_conv(config, events, 3, 2, 1.0, 1.0)
    assert rejected == [False, True, True, True, False, False, True, False]
    counts, kept = kept_events(config, events)
    assert rejected == [not k for k in kept]
    np.testing.assert_array_equal(events_to_counts(outputs, config.out_features), config.forward(counts))


@pytest.mark.parametrize("t_in, shape, lanes, banks", [(2, (1, 3, 3), 3, 1), (4, (2, 2, 3), 2, 1),
                                                       (2, (1, 3, 3), 3, 2), (4, (2, 2, 3), 2, 2)])
def test_hostile_event_streams(t_in, shape, lanes, banks):
    """Every index and count the port can carry (index == in_features and count == T1 + 1 included), in
    any order, any ``last``: exactly the events of the rule are kept, the outputs are the golden
    convolution's on them; random idle and back-pressure (two banks: the rule restarts with each
    sample at its hand-over)."""
    rng = np.random.default_rng(t_in * 7 + lanes)
    config = dataclasses.replace(small_config(rng, t_in, shape, lanes), banks=banks)
    index_max = (1 << (config.in_features - 1).bit_length()) - 1
    count_max = (1 << t_in.bit_length()) - 1
    events = [{"index": int(rng.integers(0, index_max + 1)), "count": int(rng.integers(0, count_max + 1)),
               "last": bool(rng.random() < 0.2)} for _ in range(120)]
    events[-1]["last"] = True
    assert {config.in_features, index_max} <= {e["index"] for e in events}
    assert {t_in, t_in + 1} <= {e["count"] for e in events}
    counts, kept = kept_events(config, events)
    outputs, rejected, _ = run_conv(config, events, len(counts), 9, 0.7, 0.6)
    assert rejected == [not k for k in kept] and any(kept) and not all(kept)
    np.testing.assert_array_equal(events_to_counts(outputs, config.out_features), config.forward(counts))


@pytest.mark.parametrize("banks, multiplier", [(1, "logic"), (2, "dsp")])
def test_hostile_signed_pixel_streams(banks, multiplier):
    """An analog first layer (``t_min = -5``, T1 = 5: a 4-bit signed count): every index and count the port
    can carry (-8..7: both -6 and 6 outside the range) in any order, any ``last``: exactly the events of
    the rule are kept and the outputs are the golden convolution's on them, with idle and back-pressure."""
    rng = np.random.default_rng(41 + banks)
    config = dataclasses.replace(small_config(rng, 5, (2, 2, 3), 2), banks=banks, mac=True, t_min=-5,
                                 multiplier=multiplier)
    index_max = (1 << (config.in_features - 1).bit_length()) - 1
    events = [{"index": int(rng.integers(0, index_max + 1)), "count": int(rng.integers(-8, 8)),
               "last": bool(rng.random() < 0.2)} for _ in range(150)]
    events[-1]["last"] = True
    assert {-6, -5, 5, 6} <= {e["count"] for e in events}
    counts, kept = kept_events(config, events)
    outputs, rejected, _ = run_conv(config, events, len(counts), 9, 0.7, 0.6)
    assert rejected == [not k for k in kept] and any(kept) and not all(kept)
    np.testing.assert_array_equal(events_to_counts(outputs, config.out_features), config.forward(counts))


def test_signed_pixels_need_mac():
    """A conv engine that repeats counts cannot take signed pixels: refused in one line naming the layer."""
    rng = np.random.default_rng(3)
    with pytest.raises(HardwareError, match=r"layer 'conv': signed input counts \(t_min=-3, an analog input\) need mac"):
        dataclasses.replace(small_config(rng), t_min=-3)


@pytest.mark.parametrize("banks, multiplier", [(1, "logic"), (2, "logic"), (2, "dsp")])
@pytest.mark.parametrize("case", [CASES[0], CASES[4], CASES[5], CASES[-1]],
                         ids=[case_id(c) for c in (CASES[0], CASES[4], CASES[5], CASES[-1])])
def test_analog_first_layer_matches_model_and_golden(case, banks, multiplier):
    """An analog first layer: the golden model quantizes a float input to signed 6-bit pixels
    (-31..31), each nonzero pixel is one event whose count is the pixel, and the engine adds
    ``pixel * weight`` per tap (one stage-1 step carrying ``W x``). Cycle by cycle as the cycle model,
    counts equal the golden model's (samples all zero, all -31 and all 31 included)."""
    kernel, stride, padding, _, t_out, lanes, shape, out, p_valid, p_ready = case
    rng = np.random.default_rng(sum(case[:6]) + 300)
    _, model = conv_network(rng, kernel, stride, padding, [t_out], input_levels=None, input_shape=shape,
                            channels=(out,))
    layer_config = ConvConfig.from_int_layer(model.layers[0], lanes=lanes, analog=True)
    assert (layer_config.t_min, layer_config.t_in, layer_config.mac) == (-31, 31, True)
    config = dataclasses.replace(layer_config, banks=banks, multiplier=multiplier)
    pixels = random_pixels(rng, 6, shape, 31)
    events = [e for sample in to_layout(pixels, "chw") for e in sample_events(sample)]
    outputs, rejected, _ = run_conv(config, events, len(pixels), 1, p_valid, p_ready)
    assert not any(rejected)
    counts = from_layout(events_to_counts(outputs, config.out_features), config.output_shape, "hwc")
    np.testing.assert_array_equal(counts, integer_ann(model, x_int=pixels).levels["act1"])


@pytest.mark.parametrize("banks", [1, 2])
def test_handshakes_depend_on_state_only(banks):
    """Flipping i.valid, the input payload and o.ready within any cycle leaves i.ready and o.valid unchanged."""
    rng = np.random.default_rng(12)
    config = dataclasses.replace(small_config(rng), banks=banks)
    flat = rng.integers(0, 4, (5, config.in_features))
    events = [e for sample in flat for e in sample_events(sample)]
    dut, model = ConvEngine(config), ConvEngineModel(config)
    probed = handshakes_seen(
        dut, model, events, until=lambda outputs: sum(o["last"] for o in outputs) == len(flat),
        random_payload=lambda: {"index": int(rng.integers(0, 9)), "count": int(rng.integers(0, 4)), "last": 1})
    assert {(1, 0), (0, 1), (0, 0)} <= probed


def test_engine_refuses_a_wrong_config():
    with pytest.raises(TypeError, match="ConvEngine: config must be a ConvConfig"):
        ConvEngine("conv")
    with pytest.raises(TypeError, match="ConvEngineModel: config must be a ConvConfig"):
        ConvEngineModel(None)
