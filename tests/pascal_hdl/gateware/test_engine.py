"""Amaranth-simulator tests of the layer engine: cycle by cycle against :class:`EngineModel`,
outputs against the contract (``pasc_if`` on the per-step currents of the bursts)."""
from __future__ import annotations

import numpy as np
import pytest

from pascal_hdl.config import HardwareError, LayerConfig
from pascal_hdl.gateware.engine import LayerEngine, times_constant
from pascal_hdl.model.contract import layer_contract
from pascal_hdl.model.engine import EngineModel, sample_events
from pascal_hdl.testing import events_to_counts, lockstep, random_layer, simulate


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


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}x{c[1]}_T{c[2]}-{c[3]}_lanes{c[4]}" for c in CASES])
def test_engine_matches_model_and_contract(case):
    out_features, in_features, t_in, t_out, lanes, density, p_valid, p_ready = case
    rng = np.random.default_rng(sum(x for x in case if isinstance(x, int)))
    config = random_layer(rng, out_features, in_features, t_in, t_out, lanes)
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
    else:
        np.testing.assert_array_equal(events_to_counts(outputs, config.out_features), expected)
        # Event-driven output: zero counts are not sent, except the flagged last neuron.
        assert all(o["count"] != 0 or o["last"] for o in outputs)


def test_ideal_stream_cycles_follow_the_formula():
    rng = np.random.default_rng(3)
    config = random_layer(rng, 12, 10, 4, 3, 4)     # 3 groups
    counts = np.array([[0, 2, 0, 0, 4, 1, 0, 0, 0, 3]])
    _, _, cycles = run_engine(config, sample_events(counts[0]), 1, 0, 1.0, 1.0)
    accumulate = (2 + 4 + 1 + 3) * config.groups
    neurons = config.groups * (1 + 1 + config.t_out + config.lanes)
    assert cycles == 1 + accumulate + neurons   # 1: the input register


def test_bad_events_are_rejected_and_dropped():
    rng = np.random.default_rng(5)
    config = random_layer(rng, 6, 10, 4, 2, 3)
    events = [{"index": 3, "count": 2, "last": False},
              {"index": 3, "count": 1, "last": False},   # not increasing
              {"index": 12, "count": 1, "last": False},  # index out of range
              {"index": 5, "count": 6, "last": False},   # count above T1 (the port holds up to 7)
              {"index": 7, "count": 4, "last": True}]
    outputs, rejected, _ = run_engine(config, events, 1, 2, 1.0, 1.0)
    assert rejected == [False, True, True, True, False]
    counts = np.zeros((1, 10), np.int64)
    counts[0, 3], counts[0, 7] = 2, 4
    np.testing.assert_array_equal(events_to_counts(outputs, config.out_features), config.forward(counts))


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
