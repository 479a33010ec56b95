"""Amaranth-simulator tests of the PASC-IF neuron unit against ``pasc_if`` traces."""
from __future__ import annotations

import numpy as np
import pytest

from pascal_hdl.gateware.neuron import PascIfNeuron
from pascal_hdl.testing import random_neuron_cases, simulate
from pascal_hdl.widths import Stage, neuron_cycles, neuron_widths, signed_width
from pascal_ref.golden.neuron import pasc_if

STAGES = (Stage.INTEGRATE, Stage.SETTLE, Stage.TRANSMIT)


def run_cases(dut: PascIfNeuron, cases, restart_in_transmit: bool = False, start_when_busy: bool = False,
              change_parameters: np.random.Generator | None = None) -> int:
    """Drive every case through ``dut`` and compare each step with ``pasc_if``; return steps checked.
    In the cycle that accepts each run's ``start`` (with the new run's parameters on the ports),
    ``count`` must still be the previous run's.

    ``start_when_busy``: hold ``start`` high, with another ``v0``, in every INTEGRATE and SETTLE
    cycle (``ready`` low: the unit must ignore it). ``change_parameters``: a generator drawing, in
    every cycle after ``start``, any value the ports carry for ``theta``, ``t_in`` and ``t_out`` (0 and
    values above the maxima included): the unit must keep the values of the start."""
    checked = 0

    def scramble(ctx):
        if change_parameters is not None:
            for port in (dut.theta, dut.t_in, dut.t_out):
                ctx.set(port, int(change_parameters.integers(0, 1 << len(port))))

    async def testbench(ctx):
        nonlocal checked
        previous_count = None
        for currents, theta, v0, t_out in cases:
            ref = pasc_if(np.asarray(currents, np.int64)[:, None], theta, v0, t_out, trace=True)
            ctx.set(dut.v0, v0)
            ctx.set(dut.theta, theta)
            ctx.set(dut.t_in, len(currents))
            ctx.set(dut.t_out, t_out)
            assert ctx.get(dut.ready)
            ctx.set(dut.start, 1)
            if previous_count is not None:   # the previous run's count, whatever the new T2
                assert ctx.get(dut.count) == previous_count
            previous_count = int(ref.counts[0])
            await ctx.tick()
            ctx.set(dut.start, 0)
            ctx.set(dut.v0, 0)  # v0 is sampled at start only
            for stage, trace in zip(STAGES, ref.trace):
                for t in range(trace.v.shape[0]):
                    scramble(ctx)
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


def test_parameters_changed_during_a_run_are_ignored():
    """``theta``, ``t_in`` and ``t_out`` are latched at start: random values on those ports in every cycle of
    a run (0 and values above the maxima among them) change nothing; every step of every run equals
    ``pasc_if`` with the values at start, and ``count`` (clipped at the T2 of the start) keeps its value
    in the cycle that accepts the next start, also when that start ends a burst early."""
    rng = np.random.default_rng(21)
    cases = random_neuron_cases(rng, 150, 6, 5, 4, 4, 4)
    assert any(len(currents) != t_out for currents, _, _, t_out in cases)
    for restart in (False, True):
        dut = PascIfNeuron(current_width=6, v0_width=5, theta_width=4, max_t_in=4, max_t_out=4)
        assert (len(dut.theta), len(dut.t_in), len(dut.t_out)) == (4, 3, 3)   # the ports carry 0 and 5..7
        assert run_cases(dut, cases, restart_in_transmit=restart, change_parameters=rng) > 150


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
