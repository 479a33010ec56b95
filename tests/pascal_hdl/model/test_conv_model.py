"""The Conv2d engine's configuration and cycle model against the golden integer model
(``pascal_ref.golden.quantize.integer_ann``): per neuron counts, exact equality."""
from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

from pascal_hdl.config import HardwareError, LayerConfig
from pascal_hdl.model.contract import layer_contract
from pascal_hdl.model.conv import (
    ConvConfig,
    ConvEngineModel,
    axis_taps,
    from_layout,
    hwc_permutation,
    magic_divider,
    run_conv_model,
    to_layout,
)
from pascal_hdl.model.engine import sample_events
from pascal_hdl.testing import conv_network, random_levels
from pascal_ref.golden.ops import conv2d
from pascal_ref.golden.quantize import integer_ann

# kernel, stride, padding, L_in, L, lanes, input shape (C, H, W), output channels
GEOMETRIES = [(k, s, p) for k, s, p in itertools.product((1, 3), (1, 2), (0, 1))]
CASES = [g + extra for g, extra in zip(GEOMETRIES, [
    (4, 2, 3, (2, 6, 6), 3),
    (1, 1, 1, (1, 5, 7), 2),      # L = 1 in and out, one lane
    (4, 4, 2, (2, 6, 5), 5),      # padded last group
    (2, 8, 4, (3, 7, 6), 4),      # T1 < T2, one group
    (8, 1, 3, (2, 6, 6), 3),      # T1 > T2 = 1
    (4, 3, 2, (2, 7, 7), 4),
    (4, 2, 1, (2, 6, 6), 3),
    (3, 4, 3, (1, 8, 8), 6),
])] + [(3, 1, 1, 4, 1, 5, (2, 5, 5), 5)]   # 5 lanes, T2 = 1: LATCH waits for the emitter


def case_id(case):
    k, s, p, t_in, t_out, lanes, shape, out = case
    return f"k{k}s{s}p{p}_T{t_in}-{t_out}_lanes{lanes}_{'x'.join(map(str, shape))}to{out}"


def golden_case(case, seed):
    k, s, p, t_in, t_out, lanes, shape, out = case
    rng = np.random.default_rng(seed)
    _, model = conv_network(rng, k, s, p, [t_out], input_levels=t_in, input_shape=shape, channels=(out,))
    config = ConvConfig.from_int_layer(model.layers[0], lanes=lanes)
    levels = random_levels(rng, 12, shape, t_in, density=0.6)
    return model, config, levels


@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_cycle_model_equals_golden_integer_conv_layer(case):
    """Every neuron's count from the cycle model (event scatter, neuron phase, emitted events) equals the
    golden integer ANN's level, on random layers and inputs (an all-zero and an all-maximum sample)."""
    model, config, levels = golden_case(case, seed=sum(case[:6]))
    golden = integer_ann(model, x_int=levels).levels["act1"]
    assert golden.shape[1:] == config.output_shape
    assert 0 < golden.mean() < config.t_out or config.t_out == 1    # the layer is neither silent nor saturated
    flat = to_layout(levels, "chw")
    run = run_conv_model(config, flat)
    np.testing.assert_array_equal(from_layout(run.counts, config.output_shape, "hwc"), golden)
    np.testing.assert_array_equal(from_layout(config.forward(flat), config.output_shape, "hwc"), golden)
    # The accumulated totals are the golden convolution, neuron by neuron.
    totals = config.totals(flat).reshape(len(flat), config.out_height, config.out_width, -1).transpose(0, 3, 1, 2)
    np.testing.assert_array_equal(totals, conv2d(levels, config.weight, config.stride, config.padding))
    np.testing.assert_array_equal(run.cycles, config.expected_cycles(flat))
    stream = config.stream_cycles(flat)
    if config.reaches_everything and config.emitter_keeps_up:
        np.testing.assert_array_equal(run.cycles, stream)
    else:
        assert np.all(run.cycles >= stream) and np.all(run.cycles - stream <= len(flat[0]))
    assert run.cycles.max() <= config.worst_case_cycles()
    everything = np.full((1, config.in_features), config.t_in)
    assert config.expected_cycles(everything)[0] <= config.worst_case_cycles()


@pytest.mark.parametrize("layout", ["chw", "hwc"])
def test_two_conv_layers_chain_through_hwc_events(layout):
    """conv1 (reading ``layout``) emits ``hwc`` events; conv2 reads them: both layers' counts equal the golden
    model's, and a readout Linear with its columns permuted by ``hwc_permutation`` gives the golden logits."""
    rng = np.random.default_rng(21 if layout == "chw" else 22)
    shape = (2, 7, 7)
    _, model = conv_network(rng, 3, 1, 1, [2, 3], input_levels=4, input_shape=shape, channels=(3, 4),
                            second=(3, 2, 1))
    conv1 = ConvConfig.from_int_layer(model.layers[0], lanes=2, input_layout=layout)
    conv2 = ConvConfig.from_int_layer(model.layers[1], lanes=3, input_layout="hwc")
    readout = model.layers[2]
    weight = np.empty_like(readout.synapses[0].weight)
    weight[:, hwc_permutation(conv2.output_shape)] = readout.synapses[0].weight
    linear = LayerConfig("readout", weight, conv2.t_out, None, None, readout.bias, 3)
    levels = random_levels(rng, 10, shape, 4, density=0.6)
    golden = integer_ann(model, x_int=levels)
    first = run_conv_model(conv1, to_layout(levels, layout)).counts
    np.testing.assert_array_equal(from_layout(first, conv1.output_shape, "hwc"), golden.levels["act1"])
    second = run_conv_model(conv2, first).counts
    np.testing.assert_array_equal(from_layout(second, conv2.output_shape, "hwc"), golden.levels["act2"])
    np.testing.assert_array_equal(linear.forward(second), golden.integer_logits)


def test_counts_equal_the_contract_per_neuron():
    """Independently of the golden ANN: the per-position dense view fed the true per-step currents
    of the bursts (``layer_contract``, ``pasc_if`` over the three stages) gives the same counts."""
    _, config, levels = golden_case(CASES[0], seed=5)
    flat = to_layout(levels, "chw")
    counts = from_layout(config.forward(flat), config.output_shape, "hwc")
    (kh, kw), (sh, sw), (ph, pw) = config.kernel_size, config.stride, config.padding
    padded = np.pad(levels, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    for oy, ox in itertools.product(range(config.out_height), range(config.out_width)):
        field = padded[:, :, oy * sh:oy * sh + kh, ox * sw:ox * sw + kw].reshape(len(levels), -1)
        np.testing.assert_array_equal(layer_contract(config.kernel, field).counts, counts[:, :, oy, ox])


@pytest.mark.parametrize("size, kernel, stride, padding", [
    (s, k, st, p) for s in (1, 2, 5, 8) for k in (1, 2, 3, 5) for st in (1, 2, 3) for p in (0, 1, 2)
    if (s + 2 * p - k) // st + 1 >= 1 and s + 2 * p >= k])
def test_taps_reach_exactly_the_receptive_fields(size, kernel, stride, padding):
    """For every input coordinate, the tabulated taps (``k0 + i*stride``, outputs ``o0 - i``) are exactly the
    pairs (output o, tap k) with ``o*stride - padding + k`` equal to it: borders and stride included."""
    out = (size + 2 * padding - kernel) // stride + 1
    taps = axis_taps(size, kernel, stride, padding, out)
    for i, t in enumerate(taps):
        listed = {(t.o0 - n, t.k0 + n * stride) for n in range(t.n)}
        expected = {(o, k) for o in range(out) for k in range(kernel) if o * stride - padding + k == i}
        assert listed == expected, (i, t)


def test_synaptic_events_and_ideal_cycles_match_the_golden_cost_model():
    model, config, levels = golden_case(CASES[2], seed=8)
    op = model.layers[0].synapses[0].op
    flat = to_layout(levels, "chw")
    np.testing.assert_array_equal(config.synaptic_events(flat), op.synaptic_events(levels))
    np.testing.assert_allclose(config.ideal_cycles(flat), op.synaptic_events(levels) / config.lanes)
    assert np.all(config.accumulate_cycles(flat) * config.lanes >= config.synaptic_events(flat))


def test_with_mac_the_ideal_counts_each_nonzero_input_once():
    """``--mac`` adds ``count * weight`` once per nonzero input: the ideal bound is those additions over the
    lanes (the synaptic events of the 0/1 pattern), still a lower bound of the issue cycles, and below the
    count-repeating engine's wherever a count exceeds 1."""
    model, config, levels = golden_case(CASES[2], seed=8)
    mac = dataclasses.replace(config, mac=True)
    flat = to_layout(levels, "chw")
    nonzero = (flat != 0).astype(np.int64)
    np.testing.assert_array_equal(mac.additions(flat), config.synaptic_events(nonzero))
    np.testing.assert_allclose(mac.ideal_cycles(flat), config.synaptic_events(nonzero) / config.lanes)
    assert np.all(mac.accumulate_cycles(flat) * mac.lanes >= mac.additions(flat))
    assert (flat > 1).any() and np.all(mac.ideal_cycles(flat) <= config.ideal_cycles(flat))
    assert np.any(mac.ideal_cycles(flat) < config.ideal_cycles(flat))


@pytest.mark.parametrize("divisor, limit", [(1, 10), (3, 100), (7, 1000), (25, 625), (49, 2 * 49), (64, 4096),
                                            (100, 65536), (255, 65536)])
def test_magic_dividers_are_exact(divisor, limit):
    magic = magic_divider(divisor, limit)
    values = np.arange(limit)
    np.testing.assert_array_equal((values * magic.multiplier) >> magic.shift, values // divisor)


def test_layouts_round_trip_and_permutation():
    rng = np.random.default_rng(1)
    maps = rng.integers(0, 9, (3, 4, 5, 6))
    for layout in ("chw", "hwc"):
        np.testing.assert_array_equal(from_layout(to_layout(maps, layout), (4, 5, 6), layout), maps)
    perm = hwc_permutation((4, 5, 6))
    np.testing.assert_array_equal(to_layout(maps, "hwc")[:, perm], to_layout(maps, "chw"))


def test_bad_configs_are_rejected():
    rng = np.random.default_rng(2)
    w = rng.integers(-3, 4, (2, 1, 3, 3))
    good = {"name": "c", "weight": w, "input_shape": (1, 5, 5), "t_in": 2, "t_out": 2, "theta": np.ones(2, int),
            "v0": np.zeros(2, int), "lanes": 2}
    ConvConfig(**good)
    for change, message in [({"input_shape": (2, 5, 5)}, "does not match"),
                            ({"input_shape": (1, 2, 2)}, "does not fit"),
                            ({"t_out": None}, "readout"),
                            ({"input_layout": "whc"}, "input_layout"),
                            ({"stride": (0, 1)}, "stride"),
                            ({"lanes": 3}, "lanes"),
                            ({"weight": w.astype(float)}, "integer"),
                            ({"banks": 3}, r"layer 'c': banks must be 1 or 2, got 3"),
                            ({"banks": True}, "banks must be 1 or 2, got True"),
                            ({"banks": 2.0}, "banks must be 1 or 2"),
                            ({"name": "1c"}, "identifier")]:
        with pytest.raises(HardwareError, match=message):
            ConvConfig(**{**good, **change})


def test_two_banks_double_the_accumulator_and_keep_the_clear():
    """``dataclasses.replace(stage, banks=2)``: the same layer (weights, memory images, outputs), twice the
    accumulator bits, the same CLEAR (both banks at once)."""
    rng = np.random.default_rng(3)
    one = ConvConfig("c", rng.integers(-3, 4, (3, 2, 3, 3)), (2, 5, 5), 1, 1, 2, 2, np.full(3, 4), np.zeros(3, int), 2)
    two = dataclasses.replace(one, banks=2)
    assert (one.banks, two.banks) == (1, 2)
    assert two.acc_bits_total == 2 * one.acc_bits_total and two.clear_cycles == one.clear_cycles == one.acc_depth
    assert two.weight_words() == one.weight_words() and two.param_words() == one.param_words()
    counts = rng.integers(0, 3, (4, one.in_features))
    np.testing.assert_array_equal(run_conv_model(two, counts).counts, one.forward(counts))


def test_two_banks_overlap_back_to_back_samples_in_the_model():
    """Cycle model, samples back to back, sink always ready: with one bank sample n+1's first event is
    decoded only after sample n's last output; with two, the input side of n+1 runs while n is emitted,
    so the stream ends earlier and each sample's outputs are the same."""
    rng = np.random.default_rng(4)
    one = ConvConfig("c", rng.integers(-3, 4, (4, 2, 3, 3)), (2, 5, 5), 1, 1, 2, 3, np.full(4, 4), np.zeros(4, int), 2)
    counts = rng.integers(0, 3, (5, one.in_features))
    ends = {}
    for config in (one, dataclasses.replace(one, banks=2)):
        model, queue, outputs, cycle = ConvEngineModel(config), [e for s in counts for e in sample_events(s)], [], 0
        while sum(o["last"] for o in outputs) < len(counts):
            payload = model.out_payload if model.out_valid() else None
            accepted, taken = model.step(bool(queue), queue[0] if queue else None, True)
            if accepted:
                queue.pop(0)
            if taken:
                outputs.append(payload)
            cycle += 1
        ends[config.banks] = cycle
        flat = np.zeros((len(counts), config.out_features), np.int64)
        sample = 0
        for o in outputs:
            flat[sample, o["index"]] = o["count"]
            sample += o["last"]
        np.testing.assert_array_equal(flat, one.forward(counts))
    single = one.expected_cycles(counts)
    # one bank: the samples one after the other (each one's first event is taken in the cycle that
    # counts as the previous one's "cycle after its last output")
    assert ends[1] == one.clear_cycles + single.sum() - (len(counts) - 1)
    assert ends[2] < ends[1]


def test_memory_images_follow_the_weight_address():
    """Word ``((c*kh + ky)*kw + kx)*groups + g``, lane ``k`` of the weight image holds ``W[g*lanes + k, c, ky, kx]``
    (zero in the padding lanes of the last group); the per-lane parameters are ``v0`` and ``theta``."""
    rng = np.random.default_rng(9)
    config = ConvConfig("c", rng.integers(-9, 10, (5, 2, 3, 2)), (2, 4, 4), 1, 0, 2, 2, rng.integers(1, 40, 5),
                        rng.integers(-20, 20, 5), 2)
    words, width = config.weight_words(), config.weight_width
    (kh, kw), groups, lanes = config.kernel_size, config.groups, config.lanes
    assert len(words) == config.weight_depth == 2 * kh * kw * groups
    for c, ky, kx, g, k in itertools.product(range(2), range(kh), range(kw), range(groups), range(lanes)):
        raw = words[((c * kh + ky) * kw + kx) * groups + g] >> (k * width) & ((1 << width) - 1)
        value = raw - (1 << width) if raw >> (width - 1) else raw
        o = g * lanes + k
        assert value == (config.weight[o, c, ky, kx] if o < config.out_channels else 0)
    params, pw = config.param_words(), config.v0_width + config.theta_width
    for o in range(config.out_channels):
        raw = params[o // lanes] >> (o % lanes * pw) & ((1 << pw) - 1)
        v0 = raw & ((1 << config.v0_width) - 1)
        assert v0 - ((v0 >> (config.v0_width - 1)) << config.v0_width) == config.v0[o]
        assert raw >> config.v0_width == config.theta[o]
