"""Amaranth-simulator tests of the layer engine: cycle by cycle against :class:`EngineModel`,
outputs against the contract (``pasc_if`` on the per-step currents of the bursts)."""
from __future__ import annotations

import numpy as np
import pytest
from amaranth.sim import Simulator

from pascal_hdl.config import HardwareError, LayerConfig
from pascal_hdl.gateware.engine import LayerEngine, times_constant
from pascal_hdl.model.contract import layer_contract
from pascal_hdl.model.engine import EngineModel, sample_events


def run_engine(config: LayerConfig, events: list[dict], samples: int, seed: int, p_valid: float, p_ready: float):
    """Drive ``events`` with random idle cycles and back-pressure; compare with the model every cycle.

    Returns the output transactions and the number of cycles.
    """
    rng = np.random.default_rng(seed)
    dut, model = LayerEngine(config), EngineModel(config)
    queue = list(events)
    outputs, rejected = [], []
    cycles = 0

    async def testbench(ctx):
        nonlocal cycles
        done = 0
        while done < samples:
            offer = bool(queue) and rng.random() < p_valid
            ready = bool(rng.random() < p_ready)
            ctx.set(dut.i.valid, offer)
            if offer:
                ctx.set(dut.i.payload, queue[0])
            ctx.set(dut.o.ready, ready)
            assert ctx.get(dut.i.ready) == model.in_ready(), f"cycle {cycles}: i.ready"
            assert ctx.get(dut.o.valid) == model.out_valid(), f"cycle {cycles}: o.valid in {model.phase}"
            assert ctx.get(dut.rejected) == model.rejecting(), f"cycle {cycles}: rejected"
            if model.buffer is not None and model.can_take():
                rejected.append(model.rejecting())
            if model.out_valid() and ready:
                got, expected = ctx.get(dut.o.payload), model.out_payload
                if config.is_readout:
                    got = {"logits": [int(got.logits[k]) for k in range(config.out_features)], "cls": int(got.cls)}
                    expected = {"logits": [int(v) for v in expected["logits"]], "cls": expected["cls"]}
                    done += 1
                else:
                    got = {"index": int(got.index), "count": int(got.count), "last": bool(got.last)}
                    done += got["last"]
                assert got == expected, f"cycle {cycles}"
                outputs.append(got)
            accepted, _ = model.step(offer, queue[0] if offer else None, ready)
            await ctx.tick()
            if accepted:
                queue.pop(0)
            cycles += 1
            assert cycles < 100_000, "engine hangs"

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
    return outputs, rejected, cycles


def contract_outputs(config: LayerConfig, counts: np.ndarray):
    """Per sample: hidden counts or readout logits, as the contract defines them."""
    ref = layer_contract(config, counts)
    return ref.logits if config.is_readout else ref.counts


def to_counts(config: LayerConfig, outputs) -> np.ndarray:
    samples, current = [], np.zeros(config.out_features, np.int64)
    for event in outputs:
        current[event["index"]] = event["count"]
        if event["last"]:
            samples.append(current)
            current = np.zeros(config.out_features, np.int64)
    return np.array(samples)


def random_layer(rng, out_features, in_features, t_in, t_out, lanes, weight_bits=8):
    high = 1 << (weight_bits - 1)
    weight = rng.integers(-high + 1, high, (out_features, in_features))
    theta = None if t_out is None else rng.integers(1, 4 * high, out_features)
    v0 = rng.integers(-2 * high, 2 * high, out_features)
    return LayerConfig("layer", weight, t_in, t_out, theta, v0, lanes)


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
        np.testing.assert_array_equal(to_counts(config, outputs), expected)
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
    np.testing.assert_array_equal(to_counts(config, outputs), config.forward(counts))


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

    sim = Simulator(m)
    sim.add_testbench(testbench)
    sim.run()


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
    got = [o["logits"] for o in outputs] if readout else to_counts(config, outputs)
    np.testing.assert_array_equal(got, expected)
