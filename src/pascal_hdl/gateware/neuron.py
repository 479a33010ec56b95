"""The PASC-IF neuron unit: the three stages of the contract in hardware.

One :class:`PascIfNeuron` runs one neuron through the stages of
``docs/semantics.md`` §2, one stage step per clock cycle::

    v = v0 ; c = 0
    stage 1 (INTEGRATE), t = 0 .. T1-1:  v += I[t]; if v >= theta: v -= theta; c += 1
    stage 2 (SETTLE),    t = 0 .. max(T1,T2)-2:
                                          if   v >= theta: v -= theta; c += 1   (excitatory)
                                          elif v <  0:     v += theta; c -= 1   (inhibitory)
    stage 3 (TRANSMIT),  t = 0 .. T2-1:  spike[t] = c > t

Soft reset only (subtract / add ``theta``), exact integer arithmetic, no
tolerance. Every step's excitatory and inhibitory spikes are visible on ports,
so a testbench compares them with ``pascal_ref.golden.neuron.pasc_if(..., trace=True)``
step by step. :func:`neuron_widths` derives the register widths from the
declared input ranges such that no register can overflow.
"""
from __future__ import annotations

from amaranth import Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from pascal_hdl.widths import Stage, check_int, neuron_widths

__all__ = ["PascIfNeuron"]


class PascIfNeuron(wiring.Component):
    """One PASC-IF neuron, one stage step per clock cycle.

    Parameters
    ----------
    current_width : int
        Signed width of the stage-1 input current ``I[t]`` (>= 1).
    v0_width : int
        Signed width of the initial membrane potential ``v0`` (>= 1).
    theta_width : int
        Unsigned width of the threshold; ``theta`` must be in ``[1, 2**theta_width - 1]``.
    max_t_in, max_t_out : int
        Largest ``T1`` and ``T2`` the unit supports (>= 1). The register
        widths are derived from these and the port widths (:attr:`widths`),
        so no register can overflow for any input within the ports' ranges.

    Attributes
    ----------
    widths : NeuronWidths
        The derived ranges; ``v`` is ``signed(widths.v_width)``, ``c`` is
        ``signed(widths.c_width)``.
    theta_q, t_in_q, t_out_q : Signal
        The run's ``theta``, ``T1`` and ``T2``, registered when ``start`` is
        accepted (as ``v0`` is loaded into ``v``); every step of the run and
        ``count`` read these, never the live ports. Internal registers, named
        for the formal harnesses (:mod:`pascal_hdl.formal.neuron_proofs`).

    Members
    -------
    start : In(1)
        Begin a run. Accepted in a cycle where ``ready`` is high (stage IDLE or
        TRANSMIT; a start during TRANSMIT ends the burst early). At that clock
        edge ``v <= v0``, ``c <= 0`` and ``theta``, ``t_in``, ``t_out`` are
        registered for the run; the next cycle is INTEGRATE step 0.
        Ignored in other cycles.
    v0 : In(signed(v0_width))
        Sampled only in the cycle ``start`` is accepted.
    theta : In(unsigned(theta_width))
        Threshold, >= 1; sampled only in the cycle ``start`` is accepted
        (into :attr:`theta_q`), so it may change at any time during a run.
    t_in, t_out : In(range(1, max_t_in + 1)), In(range(1, max_t_out + 1))
        ``T1`` and ``T2``, >= 1; sampled only in the cycle ``start`` is
        accepted (into :attr:`t_in_q`, :attr:`t_out_q`), so they may change at
        any time during a run. Values outside ``[1, max_t_*]`` are not
        supported (the formal proof assumes them in the cycle of ``start``).
    current : In(signed(current_width))
        ``I[t]``, read in the cycle where ``stage == INTEGRATE`` and ``step == t``.
    ready : Out(1)
        ``stage`` is IDLE or TRANSMIT: ``start`` is accepted.
    stage : Out(Stage)
        Stage of the step executed in this cycle (IDLE: none).
    step : Out(range(max(max_t_in, max_t_out)))
        Index ``t`` of that step within its stage.
    excitatory, inhibitory : Out(1)
        Combinational: the spikes of this cycle's step. In INTEGRATE only
        ``excitatory`` (the internal spike of stage 1); in SETTLE either sign;
        in TRANSMIT ``excitatory`` equals ``spike``.
    spike : Out(1)
        Combinational: the transmitted spike ``c > t`` in TRANSMIT, else 0.
    v, c : Out(signed(v_width)), Out(signed(c_width))
        Registered state *before* this cycle's step; the value after step
        ``t`` (``trace.v[t]``, ``trace.c[t]`` of ``pasc_if``) is on these ports
        one cycle later.
    count : Out(range(max_t_out + 1))
        ``clip(c, 0, T2)`` with the run's ``T2`` (:attr:`t_out_q`): the number
        of transmitted spikes, valid from the first TRANSMIT cycle up to and
        including the cycle that accepts the next ``start``.

    Timing: a run with ``start`` accepted in cycle 0 executes INTEGRATE in
    cycles ``1 .. T1``, SETTLE in the next ``max(T1, T2) - 1`` cycles and
    TRANSMIT in the ``T2`` cycles after them (see :func:`neuron_cycles`),
    then returns to IDLE. No multiplier: one adder for ``v + I``, one for
    ``+/- theta``, comparators. The run's parameters cost ``theta_width + bits(T1) +
    bits(T2)`` flip-flops; ``t_in_q`` and ``t_out_q`` start at ``max_t_in``
    and ``max_t_out``, so a port tied to that constant (the engines tie
    ``t_in`` to 1 and ``t_out`` to ``T2``) leaves a register that never
    changes, which synthesis can drop. ``held_theta=True`` is for a caller that
    holds ``theta`` itself from the start to the end of every run (the engines:
    a parameter word whose read address changes only between groups of neurons,
    as the engine proofs check): the unit then reads ``theta`` live and saves
    the ``theta_width`` flip-flops of the copy; ``count`` and ``T1``/``T2`` stay
    latched.
    """

    def __init__(self, *, current_width: int, v0_width: int, theta_width: int, max_t_in: int, max_t_out: int,
                 held_theta: bool = False):
        owner = "PascIfNeuron"
        self._MustUse__silence = True  # no "never used" warning if validation fails
        check_int(owner, "current_width", current_width, 1, 62)
        check_int(owner, "v0_width", v0_width, 1, 62)
        check_int(owner, "theta_width", theta_width, 1, 62)
        check_int(owner, "max_t_in", max_t_in, 1, 1 << 16)
        check_int(owner, "max_t_out", max_t_out, 1, 1 << 16)
        self.current_width = current_width
        self.v0_width = v0_width
        self.theta_width = theta_width
        self.max_t_in = max_t_in
        self.max_t_out = max_t_out
        if not isinstance(held_theta, bool):
            raise TypeError(f"{owner}: held_theta must be a bool, got {held_theta!r}")
        self.held_theta = held_theta
        self.widths = neuron_widths(-(1 << (current_width - 1)), (1 << (current_width - 1)) - 1,
                                    -(1 << (v0_width - 1)), (1 << (v0_width - 1)) - 1,
                                    (1 << theta_width) - 1, max_t_in, max_t_out)
        super().__init__({
            "start": In(1),
            "v0": In(signed(v0_width)),
            "theta": In(unsigned(theta_width)),
            "t_in": In(range(1, max_t_in + 1)),
            "t_out": In(range(1, max_t_out + 1)),
            "current": In(signed(current_width)),
            "ready": Out(1),
            "stage": Out(Stage),
            "step": Out(range(max(max_t_in, max_t_out))),
            "excitatory": Out(1),
            "inhibitory": Out(1),
            "spike": Out(1),
            "v": Out(signed(self.widths.v_width)),
            "c": Out(signed(self.widths.c_width)),
            "count": Out(range(max_t_out + 1)),
        })
        self.theta_q = Signal(unsigned(theta_width), init=1)
        self.t_in_q = Signal(range(1, max_t_in + 1), init=max_t_in)
        self.t_out_q = Signal(range(1, max_t_out + 1), init=max_t_out)
        self._MustUse__silence = False

    def elaborate(self, platform):
        m = Module()
        stage, step, v, c = self.stage, self.step, self.v, self.c

        # Membrane before the comparison: stage 1 adds the current, stage 2 has none.
        charged = Signal(signed(self.widths.v_width + 1))
        m.d.comb += charged.eq(Mux(stage == Stage.INTEGRATE, v + self.current, v))
        active = (stage == Stage.INTEGRATE) | (stage == Stage.SETTLE)
        m.d.comb += [
            self.excitatory.eq(Mux(stage == Stage.TRANSMIT, self.spike, active & (charged >= self.theta_q))),
            self.inhibitory.eq((stage == Stage.SETTLE) & (charged < 0)),
            self.spike.eq((stage == Stage.TRANSMIT) & (c > step)),
            self.ready.eq((stage == Stage.IDLE) | (stage == Stage.TRANSMIT)),
            self.count.eq(Mux(c < 0, 0, Mux(c > self.t_out_q, self.t_out_q, c))),
        ]
        fire = active & (charged >= self.theta_q)
        settle_steps = Signal(range(max(self.max_t_in, self.max_t_out)))
        m.d.comb += settle_steps.eq(Mux(self.t_in_q > self.t_out_q, self.t_in_q, self.t_out_q) - 1)

        with m.If(active):
            m.d.sync += [
                v.eq(Mux(fire, charged - self.theta_q, Mux(self.inhibitory, charged + self.theta_q, charged))),
                c.eq(c + fire - self.inhibitory),
            ]

        with m.Switch(stage):
            with m.Case(Stage.INTEGRATE):
                with m.If(step == self.t_in_q - 1):
                    m.d.sync += [step.eq(0), stage.eq(Mux(settle_steps == 0, Stage.TRANSMIT, Stage.SETTLE))]
                with m.Else():
                    m.d.sync += step.eq(step + 1)
            with m.Case(Stage.SETTLE):
                with m.If(step == settle_steps - 1):
                    m.d.sync += [step.eq(0), stage.eq(Stage.TRANSMIT)]
                with m.Else():
                    m.d.sync += step.eq(step + 1)
            with m.Case(Stage.TRANSMIT):
                with m.If(step == self.t_out_q - 1):
                    m.d.sync += [step.eq(0), stage.eq(Stage.IDLE)]
                with m.Else():
                    m.d.sync += step.eq(step + 1)

        # Listed last so that it overrides the stage progression above.
        with m.If(self.start & self.ready):
            m.d.sync += [v.eq(self.v0), c.eq(0), stage.eq(Stage.INTEGRATE), step.eq(0)]
            m.d.sync += [self.t_in_q.eq(self.t_in), self.t_out_q.eq(self.t_out)]
            if not self.held_theta:
                m.d.sync += self.theta_q.eq(self.theta)
        if self.held_theta:   # the caller holds theta through the run: no copy
            m.d.comb += self.theta_q.eq(self.theta)
        return m
