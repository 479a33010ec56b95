"""The PASC-IF neuron of the contract as a formal reference, in Amaranth.

``docs/semantics.md`` §2, restated as a step machine that a
property harness runs in lock step beside the hardware neuron unit::

    start:                 v = v0 ; c = 0 ; stage = INTEGRATE
    INTEGRATE, t < T1:     v += I ; if v >= theta: v -= theta ; c += 1
    SETTLE,    t < max(T1,T2)-1:
                           if   v >= theta: v -= theta ; c += 1   (excitatory)
                           elif v <  0:     v += theta ; c -= 1   (inhibitory)
    TRANSMIT,  t < T2:     spike = c > t

One ``step`` pulse is one step of the contract; the reference never decides
when a step happens (the harness drives ``step`` from the design's own step
strobe), so it fits any design timing.  Its registers are one bit wider than
any value reachable in the declared ranges (:attr:`NeuronRanges.membrane`,
:attr:`NeuronRanges.counter`, plus one step), so they never wrap, and a proof
that the design's narrower registers equal them also proves that the design
never overflows.

This module is the spec, not a design: it is simulated only by the solver.
"""
from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import Elaboratable, Module, Mux, Signal, signed, unsigned

from pascal_hdl.widths import Stage
from pascal_ref.numeric import signed_width

__all__ = ["NeuronRanges", "FormalPascIf"]


@dataclass(frozen=True)
class NeuronRanges:
    """The input space a proof covers: every value in these closed ranges.

    ``current``: one stage-1 step's input current ``I[t]``; ``theta``: the
    threshold (``>= 1``); ``v0``: the initial potential; ``max_t_in``,
    ``max_t_out``: the largest ``T1`` and ``T2`` (they range over
    ``1..max_t_in`` and ``1..max_t_out``).
    """

    current: tuple[int, int]
    theta: tuple[int, int]
    v0: tuple[int, int]
    max_t_in: int
    max_t_out: int

    def __post_init__(self):
        for name in ("current", "theta", "v0"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ValueError(f"NeuronRanges: {name} range ({lo}, {hi}) is empty")
        if self.theta[0] < 1:
            raise ValueError(f"NeuronRanges: theta must be >= 1, got range {self.theta}")
        if self.max_t_in < 1 or self.max_t_out < 1:
            raise ValueError(f"NeuronRanges: max_t_in, max_t_out must be >= 1, got {self.max_t_in}, {self.max_t_out}")

    @property
    def max_settle(self) -> int:
        return max(self.max_t_in, self.max_t_out) - 1

    @property
    def membrane(self) -> tuple[int, int]:
        """Every value ``v`` takes after a step, in any stage.

        Stage 1 step ``t`` keeps ``v`` in ``[min(v0, 0) + t*min(I_min, 0),
        max(v0, 0) + t*max(I_max, 0)]`` (a reset fires only on ``v >= theta``
        and leaves ``v >= 0``); stage 2 moves ``v`` towards ``[0, theta)`` and
        never past it.
        """
        return (min(self.v0[0], 0) + self.max_t_in * min(self.current[0], 0),
                max(max(self.v0[1], 0) + self.max_t_in * max(self.current[1], 0), self.theta[1] - 1))

    @property
    def counter(self) -> tuple[int, int]:
        """Range of the signed spike counter ``c``."""
        return (-self.max_settle, self.max_t_in + self.max_settle)

    def describe(self) -> str:
        return (f"I in {list(self.current)}, theta in {list(self.theta)}, v0 in {list(self.v0)}, "
                f"T1 in [1, {self.max_t_in}], T2 in [1, {self.max_t_out}]")


class FormalPascIf(Elaboratable):
    """Step-level reference PASC-IF neuron (one neuron, runtime T1, T2).

    Inputs: ``start`` (load ``theta``, ``v0``, ``t_in``, ``t_out``; ``v = v0``,
    ``c = 0``), ``step`` (do one step of the current stage), ``current``
    (read on INTEGRATE steps).  Outputs, combinational for the step of this
    cycle: ``excitatory``, ``inhibitory`` (stage 1 and 2 spikes), ``spike``
    (the transmitted stage-3 spike), ``last`` (the step ends its stage).
    State: ``stage`` (the unit's :class:`~pascal_hdl.widths.Stage` codes, so the
    harness compares the two directly), ``t`` (steps done in this stage), ``v``, ``c`` and the
    latched parameters ``theta_q``, ``v0_q``, ``t_in_q``, ``t_out_q``.
    ``start`` wins over ``step`` and may come at any time.
    """

    def __init__(self, ranges: NeuronRanges):
        self.ranges = ranges
        r = ranges
        # Wider than any reachable value by one bit: the spec itself never wraps.
        wide_v = signed_width(r.membrane[0] - r.current[1] - r.theta[1],
                              r.membrane[1] + abs(r.current[0]) + r.theta[1]) + 1
        self.v_shape = signed(wide_v)
        self.c_shape = signed(signed_width(-2 * r.max_settle - 2, 2 * r.max_settle + r.max_t_in + 2) + 1)
        level_bits = max(r.max_t_in, r.max_t_out).bit_length()
        self.level_shape = unsigned(level_bits + 1)

        self.start = Signal()
        self.step = Signal()
        self.current = Signal(signed(signed_width(*r.current)))
        self.theta = Signal(unsigned(max(1, r.theta[1].bit_length())))
        self.v0 = Signal(signed(signed_width(*r.v0)))
        self.t_in = Signal(self.level_shape)
        self.t_out = Signal(self.level_shape)

        self.stage = Signal(Stage)
        self.t = Signal(self.level_shape)
        self.v = Signal(self.v_shape)
        self.c = Signal(self.c_shape)
        self.theta_q = Signal.like(self.theta)
        self.v0_q = Signal.like(self.v0)
        self.t_in_q = Signal(self.level_shape)
        self.t_out_q = Signal(self.level_shape)

        self.excitatory = Signal()
        self.inhibitory = Signal()
        self.spike = Signal()
        self.last = Signal()
        self.settle_steps = Signal(self.level_shape)
        self.v_integrated = Signal(self.v_shape)

    def elaborate(self, platform):
        m = Module()
        theta = self.theta_q
        m.d.comb += [
            self.settle_steps.eq(Mux(self.t_in_q > self.t_out_q, self.t_in_q, self.t_out_q) - 1),
            self.v_integrated.eq(self.v + self.current),
        ]
        with m.Switch(self.stage):
            with m.Case(Stage.INTEGRATE):
                m.d.comb += [
                    self.excitatory.eq(self.step & (self.v_integrated >= theta)),
                    self.last.eq(self.step & (self.t == self.t_in_q - 1)),
                ]
            with m.Case(Stage.SETTLE):
                m.d.comb += [
                    self.excitatory.eq(self.step & (self.v >= theta)),
                    self.inhibitory.eq(self.step & (self.v < 0)),
                    self.last.eq(self.step & (self.t == self.settle_steps - 1)),
                ]
            with m.Case(Stage.TRANSMIT):
                m.d.comb += [
                    self.spike.eq(self.step & (self.c > self.t)),
                    self.last.eq(self.step & (self.t == self.t_out_q - 1)),
                ]

        with m.If(self.start):
            m.d.sync += [
                self.stage.eq(Stage.INTEGRATE), self.t.eq(0), self.v.eq(self.v0), self.c.eq(0),
                self.theta_q.eq(self.theta), self.v0_q.eq(self.v0),
                self.t_in_q.eq(self.t_in), self.t_out_q.eq(self.t_out),
            ]
        with m.Elif(self.step & (self.stage != Stage.IDLE)):
            m.d.sync += self.t.eq(Mux(self.last, 0, self.t + 1))
            with m.Switch(self.stage):
                with m.Case(Stage.INTEGRATE):
                    m.d.sync += [
                        self.v.eq(Mux(self.excitatory, self.v_integrated - theta, self.v_integrated)),
                        self.c.eq(self.c + self.excitatory),
                    ]
                    with m.If(self.last):
                        m.d.sync += self.stage.eq(Mux(self.settle_steps == 0, Stage.TRANSMIT, Stage.SETTLE))
                with m.Case(Stage.SETTLE):
                    with m.If(self.excitatory):
                        m.d.sync += [self.v.eq(self.v - theta), self.c.eq(self.c + 1)]
                    with m.Elif(self.inhibitory):
                        m.d.sync += [self.v.eq(self.v + theta), self.c.eq(self.c - 1)]
                    with m.If(self.last):
                        m.d.sync += self.stage.eq(Stage.TRANSMIT)
                with m.Case(Stage.TRANSMIT):
                    with m.If(self.last):
                        m.d.sync += self.stage.eq(Stage.IDLE)
        return m
