"""The PASC-IF neuron unit: the three stages of the contract in hardware.

One :class:`PascIfNeuron` runs one neuron through the stages of
``../shared/PASCAL-SEMANTICS.md`` §2, one stage step per clock cycle::

    v = v0 ; c = 0
    stage 1 (INTEGRATE), t = 0 .. T1-1:  v += I[t]; if v >= theta: v -= theta; c += 1
    stage 2 (SETTLE),    t = 0 .. max(T1,T2)-2:
                                          if   v >= theta: v -= theta; c += 1   (excitatory)
                                          elif v <  0:     v += theta; c -= 1   (inhibitory)
    stage 3 (TRANSMIT),  t = 0 .. T2-1:  spike[t] = c > t

Soft reset only (subtract / add ``theta``), exact integer arithmetic, no
tolerance. Every step's excitatory and inhibitory spikes are visible on ports,
so a testbench compares them with ``pascal_ref.neuron.pasc_if(..., trace=True)``
step by step. :func:`neuron_widths` derives the register widths from the
declared input ranges such that no register can overflow.
"""
from __future__ import annotations

from dataclasses import dataclass

from amaranth import Module, Mux, Signal, signed, unsigned
from amaranth.lib import enum, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Stage", "PascIfNeuron", "NeuronWidths", "neuron_widths", "signed_width", "neuron_cycles"]


class Stage(enum.Enum, shape=2):
    """Stage of the step a :class:`PascIfNeuron` executes in the current cycle."""

    IDLE = 0
    INTEGRATE = 1
    SETTLE = 2
    TRANSMIT = 3


def signed_width(low: int, high: int) -> int:
    """Fewest bits of a two's-complement signal holding every integer in ``[low, high]``."""
    if low > high:
        raise ValueError(f"signed_width: empty range [{low}, {high}]")
    width = 1
    while not (-(1 << (width - 1)) <= low and high <= (1 << (width - 1)) - 1):
        width += 1
    return width


def _check_int(owner: str, name: str, value, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{owner}: {name} must be an int, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise ValueError(f"{owner}: {name} must be {bound}, got {value}")
    return value


@dataclass(frozen=True)
class NeuronWidths:
    """Worst-case ranges and register widths of a PASC-IF neuron.

    ``v`` stays in ``[v_min, v_max]`` and ``c`` in ``[c_min, c_max]`` after
    every step, for every current sequence in the declared input range; the
    intermediate sums are computed one bit wider by Amaranth's arithmetic.
    """

    current_min: int
    current_max: int
    v0_min: int
    v0_max: int
    theta_max: int
    max_t_in: int
    max_t_out: int
    v_min: int
    v_max: int
    c_min: int
    c_max: int
    v_width: int
    c_width: int
    settle_max: int


def neuron_widths(current_min: int, current_max: int, v0_min: int, v0_max: int, theta_max: int,
                  max_t_in: int, max_t_out: int) -> NeuronWidths:
    """Derive the membrane and counter ranges from the input ranges.

    Stage 1: a step adds ``I`` and subtracts ``theta`` only from ``v >= theta``
    (the result is then >= 0), so ``v`` stays in
    ``[min(0, v0_min) + T1*min(0, I_min), max(0, v0_max) + T1*max(0, I_max)]``.
    Stage 2 moves ``v`` towards ``[0, theta)`` without leaving that range or
    ``[0, theta_max - 1]``. The counter moves by at most one per step:
    ``c`` in ``[-(max(T1,T2)-1), T1 + max(T1,T2)-1]``.
    """
    owner = "neuron_widths"
    for name, value in (("current_min", current_min), ("current_max", current_max), ("v0_min", v0_min),
                        ("v0_max", v0_max)):
        _check_int(owner, name, value, -(1 << 62))
    _check_int(owner, "theta_max", theta_max, 1)
    _check_int(owner, "max_t_in", max_t_in, 1)
    _check_int(owner, "max_t_out", max_t_out, 1)
    if current_min > current_max:
        raise ValueError(f"{owner}: current_min {current_min} > current_max {current_max}")
    if v0_min > v0_max:
        raise ValueError(f"{owner}: v0_min {v0_min} > v0_max {v0_max}")
    settle_max = max(max_t_in, max_t_out) - 1
    v_min = min(0, v0_min) + max_t_in * min(0, current_min)
    v_max = max(max(0, v0_max) + max_t_in * max(0, current_max), theta_max - 1)
    c_min, c_max = -settle_max, max_t_in + settle_max
    return NeuronWidths(current_min, current_max, v0_min, v0_max, theta_max, max_t_in, max_t_out,
                        v_min, v_max, c_min, c_max, signed_width(v_min, v_max), signed_width(c_min, c_max),
                        settle_max)


def neuron_cycles(t_in: int, t_out: int) -> int:
    """Cycles of one run: ``T1 + max(T1, T2) - 1 + T2`` (one stage step per cycle)."""
    return t_in + max(t_in, t_out) - 1 + t_out


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

    Members
    -------
    start : In(1)
        Begin a run. Accepted in a cycle where ``ready`` is high (stage IDLE or
        TRANSMIT; a start during TRANSMIT ends the burst early). At that clock
        edge ``v <= v0`` and ``c <= 0``; the next cycle is INTEGRATE step 0.
        Ignored in other cycles.
    v0 : In(signed(v0_width))
        Sampled only in the cycle ``start`` is accepted.
    theta : In(unsigned(theta_width))
        Threshold, >= 1; read in every INTEGRATE and SETTLE cycle, so it must
        stay constant for the whole run.
    t_in, t_out : In(range(1, max_t_in + 1)), In(range(1, max_t_out + 1))
        ``T1`` and ``T2``, >= 1; read in every cycle of a run: keep them
        constant from ``start`` until the run ends. Values outside
        ``[1, max_t_*]`` are not supported (the formal proof assumes them).
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
        ``clip(c, 0, T2)``: the number of transmitted spikes, valid from the
        first TRANSMIT cycle until the next accepted ``start``.

    Timing: a run with ``start`` accepted in cycle 0 executes INTEGRATE in
    cycles ``1 .. T1``, SETTLE in the next ``max(T1, T2) - 1`` cycles and
    TRANSMIT in the ``T2`` cycles after them (see :func:`neuron_cycles`),
    then returns to IDLE. No multiplier: one adder for ``v + I``, one for
    ``+/- theta``, comparators.
    """

    def __init__(self, *, current_width: int, v0_width: int, theta_width: int, max_t_in: int, max_t_out: int):
        owner = "PascIfNeuron"
        self._MustUse__silence = True  # no "never used" warning if validation fails
        _check_int(owner, "current_width", current_width, 1, 62)
        _check_int(owner, "v0_width", v0_width, 1, 62)
        _check_int(owner, "theta_width", theta_width, 1, 62)
        _check_int(owner, "max_t_in", max_t_in, 1, 1 << 16)
        _check_int(owner, "max_t_out", max_t_out, 1, 1 << 16)
        self.current_width = current_width
        self.v0_width = v0_width
        self.theta_width = theta_width
        self.max_t_in = max_t_in
        self.max_t_out = max_t_out
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
        self._MustUse__silence = False

    def elaborate(self, platform):
        m = Module()
        stage, step, v, c = self.stage, self.step, self.v, self.c

        # Membrane before the comparison: stage 1 adds the current, stage 2 has none.
        charged = Signal(signed(self.widths.v_width + 1))
        m.d.comb += charged.eq(Mux(stage == Stage.INTEGRATE, v + self.current, v))
        active = (stage == Stage.INTEGRATE) | (stage == Stage.SETTLE)
        m.d.comb += [
            self.excitatory.eq(Mux(stage == Stage.TRANSMIT, self.spike, active & (charged >= self.theta))),
            self.inhibitory.eq((stage == Stage.SETTLE) & (charged < 0)),
            self.spike.eq((stage == Stage.TRANSMIT) & (c > step)),
            self.ready.eq((stage == Stage.IDLE) | (stage == Stage.TRANSMIT)),
            self.count.eq(Mux(c < 0, 0, Mux(c > self.t_out, self.t_out, c))),
        ]
        fire = active & (charged >= self.theta)
        settle_steps = Signal(range(max(self.max_t_in, self.max_t_out)))
        m.d.comb += settle_steps.eq(Mux(self.t_in > self.t_out, self.t_in, self.t_out) - 1)

        with m.If(active):
            m.d.sync += [
                v.eq(Mux(fire, charged - self.theta, Mux(self.inhibitory, charged + self.theta, charged))),
                c.eq(c + fire - self.inhibitory),
            ]

        with m.Switch(stage):
            with m.Case(Stage.INTEGRATE):
                with m.If(step == self.t_in - 1):
                    m.d.sync += [step.eq(0), stage.eq(Mux(settle_steps == 0, Stage.TRANSMIT, Stage.SETTLE))]
                with m.Else():
                    m.d.sync += step.eq(step + 1)
            with m.Case(Stage.SETTLE):
                with m.If(step == settle_steps - 1):
                    m.d.sync += [step.eq(0), stage.eq(Stage.TRANSMIT)]
                with m.Else():
                    m.d.sync += step.eq(step + 1)
            with m.Case(Stage.TRANSMIT):
                with m.If(step == self.t_out - 1):
                    m.d.sync += [step.eq(0), stage.eq(Stage.IDLE)]
                with m.Else():
                    m.d.sync += step.eq(step + 1)

        # Listed last so that it overrides the stage progression above.
        with m.If(self.start & self.ready):
            m.d.sync += [v.eq(self.v0), c.eq(0), stage.eq(Stage.INTEGRATE), step.eq(0)]
        return m
