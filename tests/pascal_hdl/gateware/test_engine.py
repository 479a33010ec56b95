"""Amaranth-simulator tests of the layer engine: cycle by cycle against :class:`EngineModel`,
outputs against the contract (``pasc_if`` on the per-step currents of the bursts)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from pascal_hdl.config import HardwareError, LayerConfig
from pascal_hdl.gateware.engine import LayerEngine, times_constant
from pascal_hdl.model.contract import layer_contract
from pascal_hdl.model.engine import EngineModel, sample_events
from pascal_hdl.testing import (
    clear_cycles_seen,
    events_to_counts,
    handshakes_seen,
    kept_events,
    lockstep,
    random_layer,
    simulate,
)


def run_engine(config: LayerConfig, events: list[dict], samples: int, seed: int, p_valid: float, p_ready: float):
    """Drive ``events`` with random idle cycles and back-pressure beside :class:`EngineModel` (:func:`lockstep`).

    Returns the output transactions, whether each event taken from the input
    register was rejected, and the number of cycles.
    """
    dut, model = LayerEngine(config), EngineModel(config)
    rejected = []

    def note_rejections(ctx, cycle):
        if model.buffer is not None and model.can_take():
            rejected.append(model.rejecting())

    def until(outputs):  # a sample ends with the readout's result or the hidden layer's last neuron
        return sum(config.is_readout or bool(o["last"]) for o in outputs) == samples

    run = lockstep(dut, model, events, until=until, seed=seed, p_valid=p_valid, p_ready=p_ready,
                   probes={"rejected": (dut.rejected, model.rejecting)}, observe=note_rejections)
    return run.outputs, rejected, run.cycles


def with_tied_classes(config: LayerConfig) -> LayerConfig:
    """The readout with its last class made a copy of the class with the largest bias (weights and
    bias): the two tie on every sample, at the maximum on the silent one (cls: the earlier class)."""
    weight, bias = config.weight.copy(), config.v0.copy()
    top = int(np.argmax(bias[:-1]))
    weight[-1], bias[-1] = weight[top], bias[top]
    return LayerConfig(config.name, weight, config.t_in, None, None, bias, config.lanes, banks=config.banks)


def contract_outputs(config: LayerConfig, counts: np.ndarray):
    """Per sample: hidden counts or readout logits, as the contract defines them."""
    ref = layer_contract(config, counts)
    return ref.logits if config.is_readout else ref.counts


CASES = [  # out, in, T1, T2 (None: readout), lanes, input density, p_valid, p_ready
    (13, 9, 4, 3, 4, 0.5, 0.7, 0.6),
    (8, 6, 1, 1, 8, 0.8, 1.0, 1.0),     # L=1 in and out, one group
    (10, 7, 16, 4, 3, 0.3, 0.5, 0.4),   # T1 > T2, padded last group
    (6, 5, 2, 8, 1, 0.9, 0.9, 0.3),     # T1 < T2, one lane
    (12, 20, 4, 4, 6, 0.1, 1.0, 1.0),   # sparse
    (10, 9, 4, None, 10, 0.5, 0.6, 0.5),  # readout, one group
    (10, 9, 4, None, 3, 0.7, 0.8, 0.3),   # readout, padded groups
    (1, 1, 2, 3, 1, 0.9, 0.7, 0.7),       # one neuron, one input
    (1, 3, 1, None, 1, 0.9, 0.7, 0.7),    # one-class readout
]


CASE_IDS = [f"{c[0]}x{c[1]}_T{c[2]}-{c[3]}_lanes{c[4]}" for c in CASES]


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_engine_matches_model_and_contract(case):
    """Cycle by cycle beside the model, random idle and back-pressure; outputs the contract's."""
    check_engine_case(case, banks=1)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_double_buffered_engine_matches_model_and_contract(case):
    """Two accumulator banks: the engine accumulates the next sample while it drains the last; cycle by
    cycle beside the model (which follows both sides), random idle and back-pressure; results in order."""
    check_engine_case(case, banks=2)


@pytest.mark.parametrize("banks, multiplier", [(1, "logic"), (2, "logic"), (2, "dsp")])
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_mac_engine_matches_model_and_contract(case, banks, multiplier):
    """``mac``: each event goes once through the groups and adds ``count * weight`` (shift-and-add, or a
    ``*`` per lane with ``multiplier="dsp"``); cycle by cycle beside the model, random idle and
    back-pressure, outputs the contract's; an event's issue cycles no longer grow with its count."""
    check_engine_case(case, banks=banks, mac=True, multiplier=multiplier)


def check_engine_case(case, banks: int, mac: bool = False, multiplier: str = "logic"):
    out_features, in_features, t_in, t_out, lanes, density, p_valid, p_ready = case
    rng = np.random.default_rng(sum(x for x in case if isinstance(x, int)))
    config = dataclasses.replace(random_layer(rng, out_features, in_features, t_in, t_out, lanes), banks=banks)
    if config.is_readout and out_features > 1:
        config = with_tied_classes(config)
    config = dataclasses.replace(config, mac=mac, multiplier=multiplier)
    if mac:
        assert int(config.issues(t_in)) == 1 and int(config.issues(0)) == 0
    counts = rng.integers(0, t_in + 1, (8, in_features)) * (rng.random((8, in_features)) < density)
    counts[1] = 0                       # an all-silent sample
    counts[2] = t_in                    # every input at its maximum
    events = [e for sample in counts for e in sample_events(sample)]
    outputs, rejected, cycles = run_engine(config, events, len(counts), 1, p_valid, p_ready)
    assert not any(rejected)
    expected = contract_outputs(config, counts)
    np.testing.assert_array_equal(expected, config.forward(counts))
    if config.is_readout:
        np.testing.assert_array_equal([o["logits"] for o in outputs], expected)
        np.testing.assert_array_equal([o["cls"] for o in outputs], np.argmax(expected, axis=1))
        if out_features > 1:   # the silent sample's logits are the biases: a tie at the maximum
            assert (expected[1] == expected[1].max()).sum() >= 2
    else:
        np.testing.assert_array_equal(events_to_counts(outputs, config.out_features), expected)
        # Event-driven output: zero counts are not sent, except the flagged last neuron.
        assert all(o["count"] != 0 or o["last"] for o in outputs)


@pytest.mark.parametrize("t_out", [3, None], ids=["hidden", "readout"])
def test_double_buffer_overlaps_accumulate_and_drain(t_out):
    """Back-to-back samples, ideal source and sink: one bank takes the next sample's events only after
    the last output, so the period is accumulate + drain; two banks overlap them: the period is
    max(accumulate, drain) + 1 (the hand-over cycle) for every sample after the first, results equal."""
    rng = np.random.default_rng(11)
    single = random_layer(rng, 12, 6, 2, t_out, 3)      # 4 groups
    double = dataclasses.replace(single, banks=2)
    counts = np.full((6, 6), 1)                          # 6 spikes * 4 groups = 24 accumulate cycles a sample
    events = [e for sample in counts for e in sample_events(sample)]
    out1, _, cycles1 = run_engine(single, events, len(counts), 0, 1.0, 1.0)
    out2, _, cycles2 = run_engine(double, events, len(counts), 0, 1.0, 1.0)
    assert out1 == out2
    accumulate = 6 * single.groups
    drain = single.groups + 12 + 2 if single.is_readout else single.groups * (2 + single.t_out) + 12
    first = single.clear_cycles + 1 + accumulate + drain   # the first sample: CLEAR, input register, both sides
    assert cycles1 - first == 5 * (accumulate + drain)
    assert cycles2 - first == 5 * (max(accumulate, drain) + 1) + 1


def test_ideal_stream_cycles_follow_the_formula():
    rng = np.random.default_rng(3)
    config = random_layer(rng, 12, 10, 4, 3, 4)     # 3 groups
    counts = np.array([[0, 2, 0, 0, 4, 1, 0, 0, 0, 3]])
    _, _, cycles = run_engine(config, sample_events(counts[0]), 1, 0, 1.0, 1.0)
    accumulate = (2 + 4 + 1 + 3) * config.groups
    neurons = config.groups * (1 + 1 + config.t_out + config.lanes)
    assert cycles == config.clear_cycles + 1 + accumulate + neurons   # CLEAR from reset, 1: the input register


def test_bad_events_are_rejected_and_dropped():
    """Each rule at its exact boundary: index == in_features rejected, in_features - 1 accepted;
    count T1 + 1 rejected, T1 accepted; a repeated index rejected."""
    rng = np.random.default_rng(5)
    config = random_layer(rng, 6, 10, 4, 2, 3)
    assert (1 << 4) > config.in_features and (1 << 3) > config.t_in + 1   # the port carries both
    events = [{"index": 3, "count": 2, "last": False},
              {"index": 3, "count": 1, "last": False},   # not increasing
              {"index": 10, "count": 1, "last": False},  # index == in_features
              {"index": 12, "count": 1, "last": False},  # index beyond it
              {"index": 5, "count": 5, "last": False},   # count T1 + 1
              {"index": 5, "count": 7, "last": False},   # the largest count the port holds
              {"index": 6, "count": 4, "last": False},   # count == T1: accepted
              {"index": 9, "count": 1, "last": True}]    # index in_features - 1: accepted
    outputs, rejected, _ = run_engine(config, events, 1, 2, 1.0, 1.0)
    assert rejected == [False, True, True, True, True, True, False, False]
    counts = np.zeros((1, 10), np.int64)
    counts[0, 3], counts[0, 6], counts[0, 9] = 2, 4, 1
    np.testing.assert_array_equal(events_to_counts(outputs, config.out_features), config.forward(counts))




@pytest.mark.parametrize("in_features, t_in, t_out, lanes", [(3, 2, 2, 2), (3, 2, None, 3), (5, 4, 3, 1),
                                                              (5, 4, None, 2)],
                         ids=["hidden_3in_T2", "readout_3in_T2", "hidden_5in_T4", "readout_5in_T4"])
def test_hostile_event_streams(in_features, t_in, t_out, lanes):
    """Whatever the port can carry (index == in_features and count == T1 + 1 included), in any order,
    with any `last`: exactly the events of the rule are kept, every other one is flagged, and the
    outputs are the contract's on the kept ones; random idle and back-pressure."""
    rng = np.random.default_rng(in_features * 10 + t_in + lanes + (t_out or 0))
    config = random_layer(rng, 4, in_features, t_in, t_out, lanes)
    index_max = (1 << (in_features - 1).bit_length()) - 1
    count_max = (1 << t_in.bit_length()) - 1
    events = [{"index": int(rng.integers(0, index_max + 1)), "count": int(rng.integers(0, count_max + 1)),
               "last": bool(rng.random() < 0.2)} for _ in range(150)]
    events[-1]["last"] = True
    assert {in_features, index_max} <= {e["index"] for e in events}
    assert {t_in, t_in + 1} <= {e["count"] for e in events}
    counts, kept = kept_events(config, events)
    outputs, rejected, _ = run_engine(config, events, len(counts), 9, 0.7, 0.6)
    assert rejected == [not k for k in kept]
    assert any(kept) and not all(kept)
    expected = contract_outputs(config, counts)
    if config.is_readout:
        np.testing.assert_array_equal([o["logits"] for o in outputs], expected)
        np.testing.assert_array_equal([o["cls"] for o in outputs], np.argmax(expected, axis=1))
    else:
        np.testing.assert_array_equal(events_to_counts(outputs, config.out_features), expected)


@pytest.mark.parametrize("t_out", [2, None], ids=["hidden", "readout"])
def test_handshakes_depend_on_state_only(t_out):
    """No combinational path from the input side to i.ready/o.valid: in every cycle, flipping i.valid,
    the input payload and o.ready leaves i.ready and o.valid as they were."""
    rng = np.random.default_rng(12)
    config = random_layer(rng, 5, 4, 2, t_out, 2)
    counts = rng.integers(0, 3, (6, 4))
    events = [e for sample in counts for e in sample_events(sample)]
    dut, model = LayerEngine(config), EngineModel(config)
    probed = handshakes_seen(
        dut, model, events, until=lambda outputs: sum(config.is_readout or o["last"] for o in outputs) == 6,
        random_payload=lambda: {"index": int(rng.integers(0, 4)), "count": int(rng.integers(0, 3)), "last": 1})
    assert {(1, 0), (0, 1), (0, 0)} <= probed


@pytest.mark.parametrize("t_out", [3, None], ids=["hidden", "readout"])
@pytest.mark.parametrize("seed", range(8))
def test_reset_in_the_middle_of_samples_leaves_no_partial_sum(seed, t_out):
    """``rst`` asserted in random cycles while a sample is in flight (its events arriving, its spikes being
    accumulated, its neurons running or its outputs leaving), the model reset with it: every cycle equal,
    the CLEAR phase after each reset included, and every sample sent after a reset exact (the contract's
    counts or logits of its own events: no partial sum of an interrupted sample survives)."""
    rng = np.random.default_rng(40 + seed)
    config = random_layer(rng, 7, 6, 3, t_out, 2)             # 4 groups: CLEAR takes 4 cycles
    counts = rng.integers(1, 4, (10, 6)) * (rng.random((10, 6)) < 0.7)
    events = [e for sample in counts for e in sample_events(sample)]
    dut, model = LayerEngine(config), EngineModel(config)
    run = lockstep(dut, model, events, seed=seed, p_valid=0.8, p_ready=0.7, p_reset=0.04, max_resets=3,
                   probes={"rejected": (dut.rejected, model.rejecting)})
    kept = [s for s in range(len(counts)) if s not in run.lost]
    assert run.resets and run.lost and max(kept) > max(run.lost)   # samples after the last reset
    expected = contract_outputs(config, counts[kept])
    if config.is_readout:
        np.testing.assert_array_equal([o["logits"] for o in run.outputs], expected)
    else:
        np.testing.assert_array_equal(events_to_counts(run.outputs, config.out_features), expected)


@pytest.mark.parametrize("t_out", [3, None], ids=["hidden", "readout"])
@pytest.mark.parametrize("seed", range(4))
def test_reset_in_the_middle_of_double_buffered_samples(seed, t_out):
    """Two banks: ``rst`` at random cycles, while one sample drains and the next accumulates (or a full
    bank waits): both banks are cleared, every sample sent after a reset exact, every cycle equal."""
    rng = np.random.default_rng(60 + seed)
    config = dataclasses.replace(random_layer(rng, 7, 6, 3, t_out, 2), banks=2)
    counts = rng.integers(1, 4, (10, 6)) * (rng.random((10, 6)) < 0.7)
    events = [e for sample in counts for e in sample_events(sample)]
    dut, model = LayerEngine(config), EngineModel(config)
    run = lockstep(dut, model, events, seed=seed, p_valid=0.9, p_ready=0.7, p_reset=0.03, max_resets=3,
                   probes={"rejected": (dut.rejected, model.rejecting)})
    kept = [s for s in range(len(counts)) if s not in run.lost]
    assert run.resets and run.lost and max(kept) > max(run.lost)
    expected = contract_outputs(config, counts[kept])
    if config.is_readout:
        np.testing.assert_array_equal([o["logits"] for o in run.outputs], expected)
    else:
        np.testing.assert_array_equal(events_to_counts(run.outputs, config.out_features), expected)


@pytest.mark.parametrize("banks", [1, 2])
@pytest.mark.parametrize("t_out", [2, None], ids=["hidden", "readout"])
def test_hostile_streams_with_a_sample_waiting(t_out, banks):
    """Hostile events (as in test_hostile_event_streams) with one and two banks: with two, a sample's bad
    events are judged while the previous sample drains; every flag on its event, outputs exact."""
    rng = np.random.default_rng(21 + banks)
    config = dataclasses.replace(random_layer(rng, 4, 3, 2, t_out, 2), banks=banks)
    events = [{"index": int(rng.integers(0, 4)), "count": int(rng.integers(0, 4)),
               "last": bool(rng.random() < 0.25)} for _ in range(120)]
    events[-1]["last"] = True
    counts, kept = kept_events(config, events)
    outputs, rejected, _ = run_engine(config, events, len(counts), 5, 0.9, 0.6)
    assert rejected == [not k for k in kept]
    expected = contract_outputs(config, counts)
    if config.is_readout:
        np.testing.assert_array_equal([o["logits"] for o in outputs], expected)
    else:
        np.testing.assert_array_equal(events_to_counts(outputs, config.out_features), expected)


@pytest.mark.parametrize("banks", [1, 2])
@pytest.mark.parametrize("t_out", [3, None], ids=["hidden", "readout"])
def test_bank_count_is_validated_and_costs_memory(t_out, banks):
    rng = np.random.default_rng(2)
    config = dataclasses.replace(random_layer(rng, 7, 6, 3, t_out, 2), banks=banks)
    assert config.accumulator_bits == banks * config.groups * config.lanes * config.acc_width
    for bad in (0, 3, True, 2.0):
        with pytest.raises(HardwareError, match="banks must be 1 or 2"):
            dataclasses.replace(config, banks=bad)


@pytest.mark.parametrize("t_out", [3, None], ids=["hidden", "readout"])
def test_clear_takes_one_cycle_per_group(t_out):
    """After power-up and after a reset in any phase of a sample (accumulating, running the neurons,
    sending), ``i.ready`` stays low for exactly ``clear_cycles == groups`` cycles."""
    rng = np.random.default_rng(7)
    config = random_layer(rng, 7, 6, 3, t_out, 2)
    assert config.clear_cycles == config.groups == 4
    events = sample_events(np.array([3, 0, 2, 1, 0, 3]))
    for reset_after in (1, 6, 20, 30, 38):
        assert clear_cycles_seen(LayerEngine(config), events, reset_after) == (4, 4), reset_after
    double = dataclasses.replace(config, banks=2)    # both banks cleared at once: the same cycles
    for reset_after in (1, 20, 38):
        assert clear_cycles_seen(LayerEngine(double), events, reset_after) == (4, 4), reset_after


def test_times_constant_is_exact():
    from amaranth import Module, Signal
    value, products = Signal(8), {c: Signal(16, name=f"p{c}") for c in range(1, 11)}
    m = Module()
    m.d.comb += [products[c].eq(times_constant(value, c)) for c in products]

    async def testbench(ctx):
        for v in (0, 1, 37, 255):
            ctx.set(value, v)
            for c, signal in products.items():
                assert ctx.get(signal) == v * c

    simulate(m, testbench, clock=False)


@pytest.mark.parametrize("kwargs, message", [
    (dict(lanes=0), "lanes"),
    (dict(lanes=9), "exceeds"),
    (dict(weight=np.ones((4, 3))), "integer"),
    (dict(weight=np.full((4, 3), 40000)), "bits"),
    (dict(theta=np.array([1, 2, 0, 1])), "theta must be >= 1"),
    (dict(v0=np.zeros(5, np.int64)), "v0 shape"),
    (dict(t_in=0), "t_in"),
    (dict(t_out=300), "t_out"),
])
def test_bad_layer_configs_are_rejected(kwargs, message):
    args = dict(name="fc1", weight=np.ones((4, 3), np.int64), t_in=4, t_out=2,
                theta=np.ones(4, np.int64), v0=np.zeros(4, np.int64), lanes=2) | kwargs
    with pytest.raises(HardwareError, match=message):
        LayerConfig(**args)


def _neurons(n: int, inputs: int = 3, value: int = 1) -> dict:
    return dict(weight=np.full((n, inputs), value, np.int64), theta=np.ones(n, np.int64), v0=np.zeros(n, np.int64))


# Each limit of pascal_hdl.config (docs/hardware.md, "Supported models"): the largest accepted value, and one
# more, refused with the message naming it.
LIMITS = [
    ("weights 16 bits", dict(weight=np.full((4, 3), 32767)), dict(weight=np.full((4, 3), 32768)), "weights need 17 bits"),
    ("weights 16 bits, negative", dict(weight=np.full((4, 3), -32768)), dict(weight=np.full((4, 3), -32769)),
     "weights need 17 bits"),
    ("L 256", dict(t_out=256), dict(t_out=257), r"t_out \(L\) must be an integer in \[1, 256\]"),
    ("T1 256", dict(t_in=256), dict(t_in=257), r"t_in \(input train length\) must be an integer in \[1, 256\]"),
    ("64 lanes", dict(lanes=64, **_neurons(64)), dict(lanes=65, **_neurons(65)), r"lanes must be an integer in \[1, 64\]"),
    ("65536 inputs", dict(lanes=1, **_neurons(1, 65536)), dict(lanes=1, **_neurons(1, 65537)), r"both sizes must be in \[1, 65536\]"),
    # v0 on 39 bits plus the 5-bit current: a 40-bit membrane; v0 = 2**38 needs 40 bits, the membrane 41.
    ("membrane 40 bits", dict(v0=np.full(4, 2 ** 38 - 1)), dict(v0=np.full(4, 2 ** 38)), "membrane needs 41 bits"),
    ("membrane 40 bits, negative", dict(v0=np.full(4, -2 ** 38)), dict(v0=np.full(4, -2 ** 38 - 1)), "membrane needs 41 bits"),
    # Readout logits: bias + S with S in [0, 12]: bias 2**39 - 13 is the largest on 40 bits.
    ("logits 40 bits", dict(t_out=None, theta=None, v0=np.full(4, 2 ** 39 - 13)),
     dict(t_out=None, theta=None, v0=np.full(4, 2 ** 39 - 12)), "logits need 41 bits"),
]


@pytest.mark.parametrize("ok, bad, message", [pytest.param(*case[1:], id=case[0]) for case in LIMITS])
def test_layer_limits_at_their_exact_boundaries(ok, bad, message):
    base = dict(name="fc1", weight=np.ones((4, 3), np.int64), t_in=4, t_out=2, theta=np.ones(4, np.int64),
                v0=np.zeros(4, np.int64), lanes=2)
    LayerConfig(**(base | ok))
    with pytest.raises(HardwareError, match=message):
        LayerConfig(**(base | bad))


def test_the_accumulator_limit_is_reached_exactly_by_the_other_limits():
    """With every other limit at its maximum (65536 inputs, T1 = 256, weights -32768 or 32767) the accumulator
    needs exactly 40 bits: the accumulator check of LayerConfig cannot fire on its own (its mutants are
    equivalent; the logit and membrane checks above can)."""
    for value in (-32768, 32767):
        layer = LayerConfig("r", np.full((1, 65536), value, np.int64), 256, None, None, np.zeros(1, np.int64), 1)
        assert layer.acc_width == 40


def test_readout_ties_go_to_the_first_maximum():
    weight = np.zeros((6, 4), np.int64)
    weight[[1, 4]] = [3, -1, 2, 0]                   # rows 1 and 4 tie for every input
    config = LayerConfig("readout", weight, 3, None, None, np.array([0, 2, 1, 0, 2, -5]), lanes=4)
    counts = np.array([[1, 0, 2, 3], [0, 0, 0, 0], [0, 3, 0, 0]])
    events = [e for sample in counts for e in sample_events(sample)]
    outputs, _, _ = run_engine(config, events, len(counts), 0, 1.0, 1.0)
    logits = config.forward(counts)
    assert (logits[:2, 1] == logits[:2, 4]).all() and (logits[:2, 1] == logits[:2].max(axis=1)).all()
    assert [o["cls"] for o in outputs] == [1, 1, 2] == list(np.argmax(logits, axis=1))


@pytest.mark.parametrize("readout", [False, True])
def test_accumulators_reach_their_worst_case_without_overflow(readout):
    weight = np.array([[127] * 9, [-128] * 9, [127, -128] * 4 + [0]])
    theta = None if readout else np.array([1, 1, 1000])
    v0 = np.array([3, -3, 0])
    config = LayerConfig("extreme", weight, 5, None if readout else 6, theta, v0, lanes=2)
    lo, hi = config.current_range
    assert (lo, hi) == (-128 * 9 * 5, 127 * 9 * 5)
    assert config.acc_width == 14 and lo < -(1 << 12) and hi > (1 << 12)   # one bit fewer would overflow
    counts = np.array([[5] * 9, [0] * 9, [5, 0] * 4 + [5]])
    events = [e for sample in counts for e in sample_events(sample)]
    outputs, _, _ = run_engine(config, events, len(counts), 4, 1.0, 1.0)
    expected = contract_outputs(config, counts)
    got = [o["logits"] for o in outputs] if readout else events_to_counts(outputs, config.out_features)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("banks, multiplier", [(1, "logic"), (2, "dsp")])
@pytest.mark.parametrize("t_out", [3, None], ids=["hidden", "readout"])
def test_analog_input_engine(t_out, banks, multiplier):
    """An analog first Linear layer (``t_min = -7``, T1 = 7: a 4-bit signed count, ``mac``): every index and
    count the port carries (-8..7: -8 outside the range) in any order, any ``last``: the events of the
    rule are kept (and flagged otherwise), the outputs equal the integer layer on them (``W x`` in one
    stage-1 step), cycle by cycle beside the model with idle and back-pressure."""
    rng = np.random.default_rng(7 + banks)
    config = dataclasses.replace(random_layer(rng, 7, 5, 7, t_out, 3), banks=banks, mac=True, t_min=-7,
                                 multiplier=multiplier)
    assert config.count_in_width == 4
    events = [{"index": int(rng.integers(0, 8)), "count": int(rng.integers(-8, 8)), "last": bool(rng.random() < 0.25)}
              for _ in range(120)]
    events[-1]["last"] = True
    assert {-8, -7, 7} <= {e["count"] for e in events}
    samples, kept = kept_events(config, events)
    outputs, rejected, _ = run_engine(config, events, len(samples), 3, 0.7, 0.6)
    assert rejected == [not k for k in kept] and any(kept) and not all(kept)
    expected = config.forward(samples)
    if config.is_readout:
        np.testing.assert_array_equal([o["logits"] for o in outputs], expected)
    else:
        np.testing.assert_array_equal(events_to_counts(outputs, config.out_features), expected)


def test_signed_input_needs_mac():
    rng = np.random.default_rng(1)
    with pytest.raises(HardwareError, match=r"signed input counts \(t_min=-2, an analog input\) need mac"):
        LayerEngine(dataclasses.replace(random_layer(rng, 4, 3, 2, 2, 2), t_min=-2))
