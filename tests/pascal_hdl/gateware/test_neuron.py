"""Amaranth-simulator tests of the PASC-IF neuron unit against ``pasc_if`` traces."""
from __future__ import annotations

import numpy as np
import pytest

from pascal_hdl.gateware.neuron import PascIfNeuron
from pascal_hdl.testing import random_neuron_cases, simulate
from pascal_hdl.widths import Stage, neuron_cycles, neuron_widths, signed_width
from pascal_ref.golden.neuron import pasc_if

STAGES = (Stage.INTEGRATE, Stage.SETTLE, Stage.TRANSMIT)


def run_cases(dut: PascIfNeuron, cases, restart_in_transmit: bool = False, start_when_busy: bool = False) -> int:
    """Drive every case through ``dut`` and compare each step with ``pasc_if``; return steps checked.

    ``start_when_busy``: hold ``start`` high, with another ``v0``, in every INTEGRATE and SETTLE
    cycle (``ready`` low: the unit must ignore it)."""
    checked = 0

    async def testbench(ctx):
        nonlocal checked
        for currents, theta, v0, t_out in cases:
            ref = pasc_if(np.asarray(currents, np.int64)[:, None], theta, v0, t_out, trace=True)
            ctx.set(dut.v0, v0)
            ctx.set(dut.theta, theta)
            ctx.set(dut.t_in, len(currents))
            ctx.set(dut.t_out, t_out)
            assert ctx.get(dut.ready)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            ctx.set(dut.v0, 0)  # v0 is sampled at start only
            for stage, trace in zip(STAGES, ref.trace):
                for t in range(trace.v.shape[0]):
                    if stage == Stage.INTEGRATE:
                        ctx.set(dut.current, int(currents[t]))
                    if start_when_busy:
                        assert ctx.get(dut.ready) == (stage == Stage.TRANSMIT)
                        ctx.set(dut.start, stage != Stage.TRANSMIT)
                        ctx.set(dut.v0, v0 + 1 if v0 + 1 < 1 << (dut.v0_width - 1) else v0 - 1)
                    assert (ctx.get(dut.stage), ctx.get(dut.step)) == (stage, t)
                    assert ctx.get(dut.excitatory) == trace.excitatory[t, 0], (stage, t)
                    assert ctx.get(dut.inhibitory) == trace.inhibitory[t, 0], (stage, t)
                    if stage == Stage.TRANSMIT:
                        assert ctx.get(dut.spike) == ref.spikes[t, 0]
                        assert ctx.get(dut.count) == ref.counts[0]
                        if restart_in_transmit and t == trace.v.shape[0] - 1:
                            break
                    await ctx.tick()
                    if stage != Stage.TRANSMIT:
                        assert (ctx.get(dut.v), ctx.get(dut.c)) == (trace.v[t, 0], trace.c[t, 0]), (stage, t)
                    checked += 1
            if not restart_in_transmit:
                assert ctx.get(dut.stage) == Stage.IDLE
                assert ctx.get(dut.count) == ref.counts[0]

    simulate(dut, testbench)
    return checked


@pytest.mark.parametrize("widths", [(6, 6, 4, 5, 6), (8, 7, 6, 4, 4), (3, 2, 2, 8, 3), (10, 10, 8, 1, 4)])
def test_random_traces_match_pasc_if(widths):
    rng = np.random.default_rng(sum(widths))
    dut = PascIfNeuron(current_width=widths[0], v0_width=widths[1], theta_width=widths[2],
                       max_t_in=widths[3], max_t_out=widths[4])
    cases = random_neuron_cases(rng, 250, *widths)
    assert run_cases(dut, cases) > 250


def test_hand_cases_l1_and_unequal_lengths():
    dut = PascIfNeuron(current_width=8, v0_width=8, theta_width=5, max_t_in=4, max_t_out=4)
    cases = [
        ([5], 4, 2, 1),            # L=1 everywhere: one step per stage, no settle
        ([-9], 4, 2, 1),
        ([9, 9, 9, 9], 4, 2, 1),   # T1=4 > T2=1: clip at T2
        ([20], 4, 2, 4),           # T1=1 < T2=4: settle fires the rest
        ([12, -12, 12, -12], 3, 1, 2),
        ([-40, 40, 0, 0], 3, 1, 3),  # early spikes taken back by inhibitory ones
        ([0, 0, 0, 0], 1, 0, 4),
    ]
    assert run_cases(dut, cases) > 20


def test_inhibitory_spikes_happen_and_restart_in_transmit():
    rng = np.random.default_rng(7)
    dut = PascIfNeuron(current_width=7, v0_width=5, theta_width=4, max_t_in=4, max_t_out=4)
    cases = [([30, 30, -60, -30], 7, 3, 4)] + random_neuron_cases(rng, 60, 7, 5, 4, 4, 4)
    ref = pasc_if(np.array(cases[0][0])[:, None], 7, 3, 4, trace=True)
    assert ref.trace[1].inhibitory.any()
    run_cases(dut, cases, restart_in_transmit=True)


def test_start_is_ignored_unless_ready():
    """``start`` held high through stages 1 and 2 (with another v0) changes nothing."""
    rng = np.random.default_rng(8)
    dut = PascIfNeuron(current_width=6, v0_width=5, theta_width=4, max_t_in=4, max_t_out=3)
    cases = [([20, -3, 9, 1], 5, 3, 3), ([4], 6, -2, 2)] + random_neuron_cases(rng, 80, 6, 5, 4, 4, 3)
    assert run_cases(dut, cases, start_when_busy=True) > 80


def test_widths_are_worst_case_and_tight():
    w = neuron_widths(-8, 7, -4, 3, 15, 4, 2)
    assert (w.v_min, w.v_max) == (-4 - 32, 3 + 28)
    assert (w.c_min, w.c_max) == (-3, 7)
    assert w.v_width == signed_width(-36, 31) == 7
    assert signed_width(-1, 0) == 1 and signed_width(0, 1) == 2 and signed_width(-129, 0) == 9
    assert neuron_cycles(4, 4) == 11 and neuron_cycles(16, 4) == 35 and neuron_cycles(1, 1) == 2


@pytest.mark.parametrize("kwargs, message", [
    (dict(current_width=0), "current_width"),
    (dict(theta_width=True), "theta_width"),
    (dict(max_t_out=0), "max_t_out"),
    (dict(max_t_in=2.0), "max_t_in"),
])
def test_bad_parameters_are_rejected(kwargs, message):
    args = dict(current_width=4, v0_width=4, theta_width=3, max_t_in=2, max_t_out=2) | kwargs
    with pytest.raises((ValueError, TypeError), match=message):
        PascIfNeuron(**args)
