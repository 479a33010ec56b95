"""Amaranth-simulator tests of the pooling unit: cycle by cycle against :class:`PoolUnitModel` under
random idle and back-pressure, outputs against the golden pre-ops (``MaxPool2d``, ``AvgPool2d``,
``GlobalAvgPool`` of the integer model)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from pascal_hdl.gateware.pool import PoolUnit
from pascal_hdl.model.conv import to_layout
from pascal_hdl.model.engine import Phase, sample_events
from pascal_hdl.model.pool import PoolConfig, PoolUnitModel
from pascal_hdl.testing import (
    clear_cycles_seen,
    events_to_counts,
    handshakes_seen,
    kept_events,
    lockstep,
    plain,
    simulate,
    to_python,
    with_reset,
)
from pascal_ref.ir.layers import AvgPool2d, GlobalAvgPool, MaxPool2d


def run_pool(config: PoolConfig, events, samples: int, seed: int, p_valid: float, p_ready: float):
    dut, model = PoolUnit(config), PoolUnitModel(config)
    rejected = []

    def note_rejections(ctx, cycle):
        if model._decoding():
            rejected.append(model.rejecting())

    run = lockstep(dut, model, events, until=lambda outputs: sum(bool(o["last"]) for o in outputs) == samples,
                   seed=seed, p_valid=p_valid, p_ready=p_ready, probes={"rejected": (dut.rejected, model.rejecting)},
                   observe=note_rejections)
    return run.outputs, rejected, run.cycles


CASES = [  # pre-op, input shape, T1, layout, p_valid, p_ready
    (MaxPool2d("pool", 2), (3, 4, 4), 4, "hwc", 0.7, 0.6),
    (MaxPool2d("pool", 2), (2, 5, 5), 1, "chw", 1.0, 1.0),       # cropped row and column, L = 1
    (MaxPool2d("pool", 3, 2), (2, 5, 6), 3, "hwc", 0.6, 0.4),    # overlapping windows
    (AvgPool2d("pool", 2, 1), (2, 4, 4), 3, "hwc", 0.8, 0.5),    # overlapping sums
    (AvgPool2d("pool", 2), (2, 4, 6), 2, "chw", 0.5, 0.8),
    (GlobalAvgPool("gap"), (3, 3, 3), 4, "hwc", 0.9, 0.3),
]


def case_id(c):
    op, shape, t_in, layout = c[:4]
    return f"{type(op).__name__}_{'x'.join(map(str, shape))}_T{t_in}_{layout}"


@pytest.mark.parametrize("banks", [1, 2])
@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_pool_unit_matches_model_and_golden(case, banks):
    op, shape, t_in, layout, p_valid, p_ready = case
    rng = np.random.default_rng(len(case_id(case)) + t_in)
    config = dataclasses.replace(PoolConfig.from_pre_op(op, shape, t_in, layout), banks=banks)
    maps = rng.integers(1, t_in + 1, (6,) + shape) * (rng.random((6,) + shape) < 0.5)
    maps[1], maps[2] = 0, t_in
    flat = to_layout(maps, layout)
    events = [e for sample in flat for e in sample_events(sample)]
    outputs, rejected, _ = run_pool(config, events, len(maps), 2, p_valid, p_ready)
    assert not any(rejected) and len(rejected) == len(events)
    golden = to_layout(op.apply(maps, integer=True), "hwc")
    np.testing.assert_array_equal(events_to_counts(outputs, config.out_features), golden)
    assert all(o["count"] != 0 or o["last"] for o in outputs)


def test_cycles_equal_the_model_with_an_ideal_source_and_sink():
    rng = np.random.default_rng(6)
    config = PoolConfig.from_pre_op(AvgPool2d("pool", 2, 1), (2, 4, 4), 2)
    flat = to_layout(rng.integers(0, 3, (3, 2, 4, 4)), "hwc")
    for sample, cycles in zip(flat, config.expected_cycles(flat)):
        _, _, measured = run_pool(config, sample_events(sample), 1, 0, 1.0, 1.0)
        assert measured == config.clear_cycles + cycles    # the run starts with the CLEAR after reset


def both_banks_busy(unit: PoolUnitModel) -> bool:
    """A double-buffered unit (model) holds two samples: one swept while the other bank holds cells of the next."""
    return unit.phase in (Phase.READ, Phase.EMIT) and (unit.full or bool(np.any(unit.cells)))


@pytest.mark.parametrize("banks", [1, 2])
@pytest.mark.parametrize("op", [MaxPool2d("pool", 2), AvgPool2d("pool", 2, 1)], ids=["max", "sum_overlapping"])
@pytest.mark.parametrize("seed", range(5))
def test_reset_in_the_middle_of_samples_leaves_no_cell_value(seed, op, banks):
    """``rst`` in random cycles while a sample is in flight (events arriving, cells being updated or sent),
    the unit's model reset with it: every cycle equal, the CLEAR phase included, and every sample sent
    after a reset pooled exactly as the golden pre-op pools it (no cell keeps an interrupted sample's value).
    Two banks: resets over the seeds hit cycles with both banks holding cells (the CLEAR zeroes both)."""
    rng = np.random.default_rng(80 + seed)
    shape = (2, 4, 4)
    config = dataclasses.replace(PoolConfig.from_pre_op(op, shape, 3, "hwc"), banks=banks)
    maps = rng.integers(1, 4, (8,) + shape) * (rng.random((8,) + shape) < 0.6)
    events = [e for sample in to_layout(maps, "hwc") for e in sample_events(sample)]
    dut, model = PoolUnit(config), PoolUnitModel(config)
    busy = []
    run = lockstep(dut, model, events, seed=seed, p_valid=0.8, p_ready=0.7, p_reset=0.02 * banks ** 2, max_resets=3,
                   probes={"rejected": (dut.rejected, model.rejecting)},
                   observe=lambda ctx, cycle: busy.append(both_banks_busy(model)))
    kept = [s for s in range(len(maps)) if s not in run.lost]
    assert run.resets and run.lost and max(kept) > max(run.lost)
    golden = to_layout(op.apply(maps[kept], integer=True), "hwc")
    np.testing.assert_array_equal(events_to_counts(run.outputs, config.out_features), golden)
    assert not any(busy) if banks == 1 else sum(busy) > 0


@pytest.mark.parametrize("op", [MaxPool2d("pool", 2), AvgPool2d("pool", 2, 1)], ids=["max", "sum_overlapping"])
@pytest.mark.parametrize("busy_cycle", [0, 5])
def test_reset_while_both_banks_hold_cells(op, busy_cycle):
    """Two banks: ``rst`` in the ``busy_cycle``-th cycle in which one bank is being swept and the other
    holds cells of the next sample; every cycle before and after equal to the model (reset with it),
    and the samples sent after the reset pooled exactly as the golden pre-op pools them (the CLEAR
    zeroed both banks)."""
    rng = np.random.default_rng(90 + busy_cycle)
    shape = (2, 4, 4)
    config = dataclasses.replace(PoolConfig.from_pre_op(op, shape, 3, "hwc"), banks=2)
    maps = rng.integers(1, 4, (7,) + shape) * (rng.random((7,) + shape) < 0.7)
    before, after = to_layout(maps[:3], "hwc"), to_layout(maps[3:], "hwc")
    dut, model = PoolUnit(config), PoolUnitModel(config)
    top, rst = with_reset(dut)
    outputs = []

    async def testbench(ctx):
        queue = [e for sample in before for e in sample_events(sample)]
        busy_seen, cycle, reset_done = 0, 0, False
        while not (reset_done and sum(o["last"] for o in outputs) == len(after)):
            assert cycle < 20_000, "no end"
            if not reset_done and both_banks_busy(model):
                busy_seen += 1
            resetting = not reset_done and busy_seen > busy_cycle
            ctx.set(rst, resetting)
            offer = bool(queue) and not resetting
            ctx.set(dut.i.valid, offer)
            if offer:
                ctx.set(dut.i.payload, queue[0])
            ctx.set(dut.o.ready, 1)
            assert (ctx.get(dut.i.ready), ctx.get(dut.o.valid)) == (model.in_ready(), model.out_valid()), cycle
            if model.out_valid():
                assert to_python(ctx.get(dut.o.payload)) == plain(model.out_payload), cycle
                if reset_done:
                    outputs.append(plain(model.out_payload))
            if resetting:
                model.reset()
                queue, reset_done, accepted = [e for sample in after for e in sample_events(sample)], True, False
            else:
                accepted, _ = model.step(offer, queue[0] if offer else None, True)
            await ctx.tick()
            cycle += 1
            if accepted:
                queue.pop(0)

    simulate(top, testbench)
    golden = to_layout(op.apply(maps[3:], integer=True), "hwc")
    np.testing.assert_array_equal(events_to_counts(outputs, config.out_features), golden)


@pytest.mark.parametrize("p_valid, p_ready", [(1.0, 1.0), (0.7, 0.5)])
def test_two_banks_pool_the_next_sample_while_the_cells_are_swept(p_valid, p_ready):
    """Double-buffered: cycle by cycle as the model, cells of sample n+1 are updated while sample n is
    swept (never with one bank), a complete sample waits (``full``) for the sweep, and a back-to-back
    stream takes fewer cycles than with one bank; the outputs equal the golden pre-op's."""
    rng = np.random.default_rng(29)
    op, shape = MaxPool2d("pool", 2), (3, 4, 4)
    maps = rng.integers(1, 4, (6,) + shape) * (rng.random((6,) + shape) < 0.5)
    maps[1] = 0
    events = [e for sample in to_layout(maps, "hwc") for e in sample_events(sample)]
    seen, cycles = {}, {}
    for banks in (1, 2):
        config = dataclasses.replace(PoolConfig.from_pre_op(op, shape, 3, "hwc"), banks=banks)
        dut, model = PoolUnit(config), PoolUnitModel(config)
        overlap, waits = [], []

        def note(ctx, cycle):
            overlap.append(model.phase in (Phase.READ, Phase.EMIT) and (model.busy_cycles > 0 or model._launching()))
            waits.append(model.full)

        run = lockstep(dut, model, events, until=lambda outputs: sum(o["last"] for o in outputs) == len(maps),
                       seed=5, p_valid=p_valid, p_ready=p_ready, probes={"rejected": (dut.rejected, model.rejecting)},
                       observe=note)
        golden = to_layout(op.apply(maps, integer=True), "hwc")
        np.testing.assert_array_equal(events_to_counts(run.outputs, config.out_features), golden)
        seen[banks], cycles[banks] = (sum(overlap), sum(waits)), run.cycles
    assert seen[1] == (0, 0) and min(seen[2]) > 0
    assert cycles[2] < cycles[1]


@pytest.mark.parametrize("banks", [1, 2])
def test_clear_takes_one_cycle_per_cell(banks):
    """After power-up and after a reset in any phase of a sample, ``i.ready`` stays low for exactly
    ``clear_cycles == out_features`` cycles (two banks: one cell of each per cycle)."""
    config = dataclasses.replace(PoolConfig.from_pre_op(AvgPool2d("pool", 2, 1), (2, 4, 4), 2), banks=banks)
    assert config.clear_cycles == config.out_features == 2 * 3 * 3
    events = sample_events(np.arange(32) % 3)
    for reset_after in (1, 15, 40, 70):
        assert clear_cycles_seen(PoolUnit(config), events, reset_after) == (18, 18), reset_after


@pytest.mark.parametrize("banks", [1, 2])
@pytest.mark.parametrize("reduce", ["max", "sum"])
def test_hostile_event_streams(reduce, banks):
    """Any index and count the port carries (index == in_features, count == T1 + 1 included), in any order,
    any ``last``: exactly the events of the rule are kept and pooled, the rest flagged."""
    rng = np.random.default_rng(11 if reduce == "max" else 12)
    config = PoolConfig("pool", (1, 3, 4), 2, 1, reduce, 2, banks=banks)   # 12 inputs: the port holds 15; T1 = 2: 3
    index_max, count_max = 15, 3
    events = [{"index": int(rng.integers(0, index_max + 1)), "count": int(rng.integers(0, count_max + 1)),
               "last": bool(rng.random() < 0.2)} for _ in range(120)]
    events[-1]["last"] = True
    samples, kept = kept_events(config, events)
    outputs, rejected, _ = run_pool(config, events, len(samples), 9, 0.7, 0.6)
    assert rejected == [not k for k in kept] and any(kept) and not all(kept)
    np.testing.assert_array_equal(events_to_counts(outputs, config.out_features), config.forward(samples))


@pytest.mark.parametrize("banks", [1, 2])
def test_handshakes_depend_on_state_only(banks):
    rng = np.random.default_rng(13)
    config = PoolConfig("pool", (2, 4, 4), 2, None, "max", 3, banks=banks)
    flat = rng.integers(0, 4, (5, config.in_features))
    events = [e for sample in flat for e in sample_events(sample)]
    dut, model = PoolUnit(config), PoolUnitModel(config)
    probed = handshakes_seen(
        dut, model, events, until=lambda outputs: sum(o["last"] for o in outputs) == len(flat),
        random_payload=lambda: {"index": int(rng.integers(0, 32)), "count": int(rng.integers(0, 4)), "last": 1})
    assert {ready for ready, _ in probed} == {valid for _, valid in probed} == {0, 1}


def test_unit_refuses_a_wrong_config():
    with pytest.raises(TypeError, match="PoolUnit: config must be a PoolConfig"):
        PoolUnit(None)
