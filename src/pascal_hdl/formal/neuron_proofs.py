"""Property harnesses for the hardware PASC-IF neuron unit (``pascal_hdl.gateware.neuron``).

Two independent proofs per configuration, both k-induction (unbounded) with
k = 1, or bounded from reset (``mode="bmc"``, used for the mutants):

``contract``
    The design alone against the closed form of the contract's theorem.
    The solver picks every input every cycle: ``start`` at any time (taken
    when ``ready``), ``v0``, ``theta``, ``T1``, ``T2`` (any value the ports
    carry, in every cycle of a run too: the unit latches them at ``start``;
    in the cycle a ``start`` is taken, ``theta >= 1`` and ``T1``, ``T2`` in
    range, as the unit's documentation requires), any ``current`` within the
    port width in each INTEGRATE cycle, and ``rst``.
    Proved properties:

    * ``count``: at the last TRANSMIT step the number of transmitted spikes
      ``n`` equals ``clip(floor((v0 + S) / theta), 0, T2)``, ``S`` the sum of
      the currents of the run; stated without division as
      ``(n == 0 or v0 + S >= n*theta) and (n == T2 or v0 + S < (n+1)*theta)``;
    * ``burst``: a spike at TRANSMIT step ``t`` follows ``t`` spikes of the
      same run (bursts only), and ``count`` port == spikes transmitted;
    * ``settled``: at the first TRANSMIT step ``0 <= v < theta``, or the
      count is clipped (``v >= theta`` and ``c >= T2``, or ``v < 0`` and ``c <= 0``);
    * ``no overflow``: ``v + released == v0 + S`` in wide arithmetic in every
      cycle of a run, ``released`` adding ``theta`` per excitatory and
      subtracting it per inhibitory spike seen on the ports, and ``c`` == the
      net number of those spikes (a wrap of ``v`` or ``c`` breaks one of
      them); ``v``, ``c`` within the ranges the unit declares (``widths``);
    * the step schedule: each stage lasts ``T1``, ``max(T1,T2)-1``, ``T2`` steps.

    The inductive strengthening is the contract's proof sketch written as
    assertions: after INTEGRATE step ``t``, ``v >= theta`` implies ``c >= 1``
    (the last step fired) and ``v < 0`` implies ``c <= t-1``; after ``k``
    SETTLE steps ``v >= theta`` implies ``c >= 1+k`` and ``v < 0`` implies
    ``c <= T1-1-k``; plus ``t``-dependent bounds of ``v``, ``c`` and ``S``,
    and ``released == k*theta`` when the net spike count is ``k``, and the
    unit's latched parameters (``theta_q``, ``t_in_q``, ``t_out_q``) equal
    the inputs the harness saw at ``start``.
    Products with ``theta`` are written as ``multiple[k]``: ``k*theta`` by
    repeated addition, latched at start (see ``elaborate``), so the solver
    never meets a product of two unknowns.

    The ``count`` port is checked in every TRANSMIT cycle, the one accepting
    the next run's ``start`` included (it reads the ``T2`` latched at start,
    not the port; mutant ``count_live_t_out`` reads the port and fails).

``equivalence``
    The design and :class:`~pascal_hdl.formal.reference.FormalPascIf` (the
    contract as a step machine, wide registers) fed the same free inputs:
    in every cycle equal stage, step index, ``ready``, excitatory and
    inhibitory spikes, transmitted spike, ``count``, ``v`` and ``c``; the
    inputs change freely during a run, as for ``contract``.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from amaranth.hdl import Assert, Assume, Cover, Elaboratable, Module, Mux, Signal, signed

from pascal_hdl.widths import Stage
from pascal_ref.numeric import signed_width

from .reference import FormalPascIf, NeuronRanges
from .sby import ProofResult, format_trace, run_proof

__all__ = ["NeuronProofConfig", "NeuronContractHarness", "NeuronEquivalenceHarness", "prove_neuron",
           "NEURON_PROOFS", "design_module", "bundled_neuron_configs", "neuron_trace_summary", "SMALL", "MEDIUM", "LARGE", "WIDE"]

NEURON_PROOFS = ("contract", "equivalence")


def design_module():
    """The neuron design module under proof (``pascal_hdl.gateware.neuron``)."""
    return importlib.import_module("pascal_hdl.gateware.neuron")


@dataclass(frozen=True)
class NeuronProofConfig:
    """One width configuration of :class:`pascal_hdl.gateware.neuron.PascIfNeuron`.

    ``origin`` says where it comes from (a bundled model's layer, or
    "small"/"large"); the other fields are the unit's constructor arguments.
    """

    name: str
    current_width: int
    v0_width: int
    theta_width: int
    max_t_in: int
    max_t_out: int
    origin: str = ""

    def build(self, module=None):
        module = module or design_module()
        return module.PascIfNeuron(current_width=self.current_width, v0_width=self.v0_width,
                                   theta_width=self.theta_width, max_t_in=self.max_t_in, max_t_out=self.max_t_out)

    def widths(self, module=None):
        """The unit's derived ``NeuronWidths`` (the unit is built and discarded)."""
        unit = self.build(module)
        unit._MustUse__silence = True  # built only to read its widths
        return unit.widths

    @property
    def ranges(self) -> NeuronRanges:
        return NeuronRanges(current=(-(1 << (self.current_width - 1)), (1 << (self.current_width - 1)) - 1),
                            theta=(1, (1 << self.theta_width) - 1),
                            v0=(-(1 << (self.v0_width - 1)), (1 << (self.v0_width - 1)) - 1),
                            max_t_in=self.max_t_in, max_t_out=self.max_t_out)

    def schedule_depth(self) -> int:
        """Cycles of the longest run (start, T1 + max(T1,T2) - 1 + T2 steps) plus one."""
        return 1 + self.max_t_in + max(self.max_t_in, self.max_t_out) - 1 + self.max_t_out + 1

    def describe(self) -> str:
        return (f"{self.name}: current {self.current_width} b, v0 {self.v0_width} b, theta {self.theta_width} b, "
                f"T1 <= {self.max_t_in}, T2 <= {self.max_t_out}" + (f" ({self.origin})" if self.origin else ""))


SMALL = NeuronProofConfig("small", current_width=4, v0_width=4, theta_width=3, max_t_in=4, max_t_out=4,
                          origin="small: every T1, T2 <= 4 (stage 1 with several steps)")
LARGE = NeuronProofConfig("large", current_width=24, v0_width=20, theta_width=16, max_t_in=1, max_t_out=16,
                          origin="large: 24-bit currents, 16-bit theta, T2 <= 16, T1 = 1 as the engine runs it")
WIDE = NeuronProofConfig("wide", current_width=24, v0_width=20, theta_width=16, max_t_in=1, max_t_out=4,
                         origin="large widths: 24-bit currents, 20-bit v0, 16-bit theta, T2 <= 4, T1 = 1")
MEDIUM = NeuronProofConfig("medium", current_width=8, v0_width=8, theta_width=6, max_t_in=8, max_t_out=8,
                           origin="medium: every T1, T2 <= 8")


def bundled_neuron_configs(max_t_out: int | None = None) -> list[NeuronProofConfig]:
    """The neuron units the generator emits for the bundled models.

    Each bundled model is quantized (``pascal_ref.golden.quantize``, defaults) and
    laid out by ``CoreConfig.from_integer_network``; every hidden layer gives
    ``PascIfNeuron(current_width=acc_width, v0_width, theta_width, max_t_in=1,
    max_t_out=L)``.  Models the core rejects (the CNN) emit no unit.
    ``max_t_out`` overrides L (the same widths with a longer output train).
    """
    from pascal_ref.golden.quantize import quantize
    from pascal_ref.io.fileformat import load
    config = importlib.import_module("pascal_hdl.config")
    models = Path(importlib.import_module("pascal_ref").__file__).parent / "models"
    found = {}
    for path in sorted(models.glob("*.npz")):
        try:
            core = config.CoreConfig.from_integer_network(quantize(load(path)))
        except config.HardwareError:
            continue
        for layer in core.hidden:
            t_out = max_t_out or layer.t_out
            key = (layer.acc_width, layer.v0_width, layer.theta_width, t_out)
            name = f"{path.stem}_{layer.name}" + (f"_T2_{t_out}" if max_t_out else "")
            found.setdefault(key, NeuronProofConfig(name, *key[:3], max_t_in=1, max_t_out=t_out,
                                                    origin=f"{path.name} layer {layer.name}, L = {layer.t_out}"
                                                    + (f", T2 up to {t_out}" if max_t_out else "")))
    return list(found.values())


def _clip(value, low, high):
    return Mux(value < low, low, Mux(value > high, high, value))


class _Inputs:
    """Free inputs of a neuron harness and the parameters latched at ``start``.

    ``accepted``: a run starts in this cycle. Only then are ``theta``, ``T1``
    and ``T2`` assumed in the supported ranges; in every other cycle they are
    free (the unit reads them only at ``start``).
    """

    def __init__(self, m: Module, dut, ranges: NeuronRanges, accepted):
        self.ranges = ranges
        r = ranges
        # Initial values in range, as if a run with theta = T1 = T2 = 1 had been started.
        self.theta = Signal.like(dut.theta, name="theta_q", init=r.theta[0])
        self.v0 = Signal.like(dut.v0, name="v0_q")
        self.t_in = Signal.like(dut.t_in, name="t_in_q", init=1)
        self.t_out = Signal.like(dut.t_out, name="t_out_q", init=1)
        with m.If(accepted):
            m.d.sync += [self.theta.eq(dut.theta), self.v0.eq(dut.v0), self.t_in.eq(dut.t_in),
                         self.t_out.eq(dut.t_out)]
            # Input ranges the unit supports (its documentation) where it samples them: theta >= 1, 1 <= T <= max.
            m.d.comb += [
                Assume(dut.theta >= r.theta[0]),
                Assume((dut.t_in >= 1) & (dut.t_in <= r.max_t_in)),
                Assume((dut.t_out >= 1) & (dut.t_out <= r.max_t_out)),
            ]
        # Latched parameters stay in range (inductive: they are copies of assumed inputs).
        m.d.comb += [
            Assert(self.theta >= r.theta[0], "theta_q in range"),
            Assert((self.t_in >= 1) & (self.t_in <= r.max_t_in), "t_in_q in range"),
            Assert((self.t_out >= 1) & (self.t_out <= r.max_t_out), "t_out_q in range"),
        ]

    def latched_by(self, unit):
        """The unit's own run parameters equal these (an inductive strengthening while a run is under way)."""
        return (unit.theta_q == self.theta) & (unit.t_in_q == self.t_in) & (unit.t_out_q == self.t_out)


def _stage_invariants(m: Module, *, stage, step, v, c, inputs: _Inputs, integrate, settle, transmit, prefix: str):
    """The contract's proof sketch as assertions on one step machine's state.

    ``stage``/``step``/``v``/``c`` are the registered state before this
    cycle's step; ``integrate``/``settle``/``transmit`` the stage tests.
    """
    r = inputs.ranges
    theta, t_in, t_out = inputs.theta, inputs.t_in, inputs.t_out
    i_lo, i_hi = min(r.current[0], 0), max(r.current[1], 0)
    settle_steps = Mux(t_in > t_out, t_in, t_out) - 1
    v_floor = Mux(inputs.v0 < 0, inputs.v0, 0)
    v_ceil = Mux(inputs.v0 > 0, inputs.v0, 0)
    # Steps done in stage 1 so far (T1 once it is over).
    done_1 = Mux(integrate, step, t_in)
    lower = v_floor + done_1 * i_lo
    upper = v_ceil + done_1 * i_hi
    upper_settled = Mux(upper > theta - 1, upper, theta - 1)
    with m.If(integrate):
        m.d.comb += [
            Assert(step < t_in, f"{prefix}: INTEGRATE step < T1"),
            Assert((c >= 0) & (c <= step), f"{prefix}: INTEGRATE 0 <= c <= t"),
            Assert((v >= lower) & (v <= upper), f"{prefix}: INTEGRATE v within its t-step bounds"),
            Assert((step != 0) | ((v == inputs.v0) & (c == 0)), f"{prefix}: INTEGRATE step 0 starts at v0"),
            Assert((step == 0) | (v < theta) | (c >= 1), f"{prefix}: INTEGRATE v >= theta only after a spike"),
            Assert((step == 0) | (v >= 0) | (c <= step - 1), f"{prefix}: INTEGRATE v < 0 only after no spike"),
        ]
    # Steps done in stage 2 so far (max(T1,T2)-1 once it is over): TRANSMIT holds what the last one left.
    done_2 = Mux(settle, step, settle_steps)
    with m.If(settle):
        m.d.comb += Assert(step < settle_steps, f"{prefix}: SETTLE step < max(T1,T2)-1")
    with m.If(transmit):
        m.d.comb += Assert(step < t_out, f"{prefix}: TRANSMIT step < T2")
    with m.If(settle | transmit):
        m.d.comb += [
            Assert((c >= -done_2) & (c <= t_in + done_2), f"{prefix}: after k settle steps -k <= c <= T1+k"),
            Assert((v >= lower) & (v <= upper_settled), f"{prefix}: SETTLE/TRANSMIT v bounds"),
            Assert((v < theta) | (c >= done_2 + 1), f"{prefix}: after k settle steps v >= theta implies c >= 1+k"),
            Assert((v >= 0) | (c <= t_in - 1 - done_2), f"{prefix}: after k settle steps v < 0 implies c <= T1-1-k"),
        ]


class _NeuronHarness(Elaboratable):
    """A property harness around one design instance (``module``: the design, or a mutant of it);
    every input port of the unit is free (:attr:`ports`)."""

    def __init__(self, config: NeuronProofConfig, module=None):
        self.config = config
        self.module = module or design_module()
        self.dut = config.build(self.module)

    @property
    def ports(self):
        d = self.dut
        return [d.start, d.v0, d.theta, d.t_in, d.t_out, d.current]


class NeuronContractHarness(_NeuronHarness):
    """The ``contract`` proof (see the module docstring) around one design instance."""

    def __init__(self, config: NeuronProofConfig, module=None, strengthen: bool = True):
        super().__init__(config, module)
        # False: only the headline properties (for bounded runs, where the
        # inductive strengthening is not needed; a mutant then fails on them).
        self.strengthen = strengthen

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = dut = self.dut
        strengthen = self.strengthen
        cfg = self.config
        r = cfg.ranges
        accepted = dut.start & dut.ready
        integrate = dut.stage == Stage.INTEGRATE
        settle = dut.stage == Stage.SETTLE
        transmit = dut.stage == Stage.TRANSMIT
        running = integrate | settle | transmit
        inputs = _Inputs(m, dut, r, accepted)

        # Monitors: S = sum of the run's currents, n = spikes transmitted so far.
        s_bits = signed_width(r.max_t_in * r.current[0], r.max_t_in * r.current[1]) + 1
        total = Signal(signed(s_bits), name="S")
        sent = Signal(range(r.max_t_out + 2), name="sent")
        # released: theta per excitatory spike, minus theta per inhibitory spike
        # of stages 1 and 2, as observed on the spike ports (so v + released
        # must stay v0 + S: a linear invariant, no multiplier for the solver).
        r_bits = signed_width(r.counter[0] * r.theta[1], (max(r.counter[1], r.max_t_out) + 1) * r.theta[1]) + 1
        released = Signal(signed(r_bits), name="released")
        # net: the net number of stage-1/2 spikes seen on the ports (the design's
        # c must equal it); released moves with it by theta.
        net = Signal(signed(signed_width(r.counter[0] - 1, r.counter[1] + 1)), name="net")
        with m.If(accepted):
            m.d.sync += [total.eq(0), sent.eq(0), released.eq(0), net.eq(0)]
        with m.Else():
            with m.If(integrate):
                m.d.sync += total.eq(total + dut.current)
            with m.If((integrate | settle) & dut.excitatory):
                m.d.sync += [released.eq(released + inputs.theta), net.eq(net + 1)]
            with m.If(settle & dut.inhibitory):
                m.d.sync += [released.eq(released - inputs.theta), net.eq(net - 1)]
            with m.If(transmit & dut.spike):
                m.d.sync += sent.eq(sent + 1)

        theta, t_in, t_out, v0 = inputs.theta, inputs.t_in, inputs.t_out, inputs.v0
        v, c, step = dut.v, dut.c, dut.step
        charge = Signal(signed(signed_width(r.v0[0] + r.max_t_in * r.current[0],
                                            r.v0[1] + r.max_t_in * r.current[1]) + 1), name="charge")
        m.d.comb += charge.eq(v0 + total)
        done_1 = Mux(integrate, step, t_in)

        with m.If(running):
            m.d.comb += [
                Assert(v + released == charge, "no overflow: v + (theta per net spike) == v0 + S"),
                Assert((v >= dut.widths.v_min) & (v <= dut.widths.v_max), "no overflow: v within widths"),
                Assert((c >= dut.widths.c_min) & (c <= dut.widths.c_max), "no overflow: c within widths"),
                Assert((total >= done_1 * r.current[0]) & (total <= done_1 * r.current[1]), "S bounds"),
                Assert(~dut.ready | transmit, "ready only in IDLE or TRANSMIT"),
            ]
        # multiple[k] = k*theta by repeated addition, latched at start and held;
        # the chain is re-asserted every cycle.  The solver then sees released
        # + theta and multiple[k] as the same adder (a product c*theta of two
        # unknowns is out of its reach at these widths).
        multiple = {}
        chain = {0: 0}
        for k in range(1, max(r.counter[1], r.max_t_out) + 2):
            chain[k] = chain[k - 1] + dut.theta
        for k in range(-1, r.counter[0] - 1, -1):
            chain[k] = chain[k + 1] - dut.theta
        for k in sorted(chain):
            multiple[k] = Signal(signed(r_bits), name=f"multiple_{k}" if k >= 0 else f"multiple_m{-k}",
                                 init=k * r.theta[0])  # theta_q starts at theta_min
        for k in sorted(chain):
            with m.If(accepted):
                m.d.sync += multiple[k].eq(chain[k])
            if not strengthen:
                continue
            if k == 0:
                m.d.comb += Assert(multiple[k] == 0, "multiple[0] == 0")
            elif k > 0:
                m.d.comb += Assert(multiple[k] == multiple[k - 1] + theta, f"multiple[{k}] == multiple[{k - 1}] + theta")
            else:
                m.d.comb += Assert(multiple[k] == multiple[k + 1] - theta, f"multiple[{k}] == multiple[{k + 1}] - theta")
        # c counts the net spikes; released == net*theta, split on the value of net
        # (a fact of the harness alone, kept apart from the design's logic).
        with m.If(running):
            m.d.comb += Assert(c == net, "c == net spikes seen on the ports")
            for k in range(r.counter[0], r.counter[1] + 1) if strengthen else ():
                m.d.comb += Assert((net != k) | (released == multiple[k]), f"released == {k}*theta when net == {k}")
        if strengthen:
            with m.If(running):
                m.d.comb += Assert(inputs.latched_by(dut), "design: run parameters == the inputs at start")
            _stage_invariants(m, stage=dut.stage, step=step, v=v, c=c, inputs=inputs,
                              integrate=integrate, settle=settle, transmit=transmit, prefix="design")
        with m.If(~running):
            m.d.comb += Assert(dut.ready & ~dut.spike & ~dut.excitatory & ~dut.inhibitory, "IDLE is quiet")
        with m.If(integrate | settle):
            m.d.comb += Assert(~dut.spike & ~dut.ready & (sent == 0), "no transmitted spike before TRANSMIT")
        with m.If(integrate):
            m.d.comb += Assert(~dut.inhibitory, "no inhibitory spike in INTEGRATE")

        with m.If(transmit):
            now = sent + dut.spike
            if strengthen:
                m.d.comb += Assert(sent == _clip(c, 0, step), "burst: spikes so far == clip(c, 0, t)")
            m.d.comb += [
                Assert(~dut.spike | (sent == step), "burst: a spike follows a spike at every earlier step"),
                Assert(dut.excitatory == dut.spike, "TRANSMIT: excitatory is the transmitted spike"),
                Assert(~dut.inhibitory, "TRANSMIT: no inhibitory spike"),
            ]
            # Every TRANSMIT cycle, the one accepting the next run's start included:
            # the T2 ports may already carry the next run's value by then.
            m.d.comb += Assert(dut.count == _clip(c, 0, t_out), "count port == clip(c, 0, T2)")
            with m.If(step == 0):
                m.d.comb += Assert(((v >= 0) & (v < theta)) | ((v >= theta) & (c >= t_out)) | ((v < 0) & (c <= 0)),
                                   "settled: 0 <= v < theta unless clipped")
            with m.If(step == t_out - 1):
                # n == clip(floor((v0 + S) / theta), 0, T2), split on the value of n.
                for n in range(r.max_t_out + 1):
                    m.d.comb += Assert((now != n) | (((n == 0) | (charge >= multiple[n]))
                                                     & ((t_out == n) | (charge < multiple[n + 1]))),
                                       f"count: n == clip(floor((v0 + S)/theta), 0, T2) when n == {n}")
                m.d.comb += Assert(dut.count == now, "count port == spikes transmitted")
                # Non-vacuity (cover mode): runs end clipped low after inhibitory
                # spikes, clipped high at the longest T2, and in between.
                m.d.comb += [
                    Cover((now == 0) & (c < 0)),
                    Cover((now == t_out) & (t_out == r.max_t_out) & (v >= theta)),
                    Cover((now > 0) & (now < t_out)),
                ]
        return m


class NeuronEquivalenceHarness(_NeuronHarness):
    """The ``equivalence`` proof: the design beside :class:`FormalPascIf`."""

    def __init__(self, config: NeuronProofConfig, module=None):
        super().__init__(config, module)
        self.ref = FormalPascIf(config.ranges)

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = dut = self.dut
        m.submodules.ref = ref = self.ref
        r = self.config.ranges
        ref_ready = (ref.stage == Stage.IDLE) | (ref.stage == Stage.TRANSMIT)
        accepted = dut.start & ref_ready
        m.d.comb += [
            ref.start.eq(accepted), ref.step.eq(1), ref.current.eq(dut.current),
            ref.theta.eq(dut.theta), ref.v0.eq(dut.v0), ref.t_in.eq(dut.t_in), ref.t_out.eq(dut.t_out),
        ]
        running = ref.stage != Stage.IDLE
        inputs = _Inputs(m, dut, r, accepted)
        # The reference's latched parameters are the harness's, and so are the design's.
        with m.If(running):
            m.d.comb += Assert((ref.theta_q == inputs.theta) & (ref.v0_q == inputs.v0) & (ref.t_in_q == inputs.t_in)
                               & (ref.t_out_q == inputs.t_out), "reference parameters == latched inputs")
            m.d.comb += Assert(inputs.latched_by(dut), "design parameters == latched inputs")
        _stage_invariants(m, stage=ref.stage, step=ref.t, v=ref.v, c=ref.c, inputs=inputs,
                          integrate=ref.stage == Stage.INTEGRATE, settle=ref.stage == Stage.SETTLE,
                          transmit=ref.stage == Stage.TRANSMIT, prefix="reference")
        with m.If(~running):
            m.d.comb += Assert(ref.t == 0, "reference: IDLE step 0")

        spiking = ref.stage == Stage.TRANSMIT
        m.d.comb += [
            Assert(dut.stage == ref.stage, "equal stage"),
            Assert(dut.step == ref.t, "equal step index"),
            Assert(dut.ready == ref_ready, "equal ready"),
            Assert(dut.v == ref.v, "equal v (and no overflow)"),
            Assert(dut.c == ref.c, "equal c (and no overflow)"),
            Assert(dut.spike == ref.spike, "equal transmitted spike"),
            Assert(dut.inhibitory == ref.inhibitory, "equal inhibitory spike"),
            Assert(dut.excitatory == Mux(spiking, ref.spike, ref.excitatory), "equal excitatory spike"),
        ]
        with m.If(spiking):
            m.d.comb += Assert(dut.count == _clip(ref.c, 0, ref.t_out_q), "equal count")
        return m


def prove_neuron(config: NeuronProofConfig, proof: str, workdir, module=None, depth: int = 1,
                 mode: str = "prove", name: str | None = None, engine: str | None = None) -> ProofResult:
    """Run one neuron proof (``contract`` or ``equivalence``) for ``config``.

    ``mode="prove"``: k-induction with ``depth`` k (1 closes with the
    strengthening above); ``mode="bmc"``: a bounded check from reset of
    ``depth`` cycles (use :meth:`NeuronProofConfig.schedule_depth`), the
    contract then without its strengthening (headline properties only).
    """
    if proof == "contract":
        harness = NeuronContractHarness(config, module, strengthen=(mode == "prove"))
    elif proof == "cover":
        harness = NeuronContractHarness(config, module, strengthen=False)
    elif proof == "equivalence":
        harness = NeuronEquivalenceHarness(config, module)
    else:
        raise ValueError(f"proof must be one of {NEURON_PROOFS} or 'cover', got {proof!r}")
    name = name or f"neuron_{proof}_{config.name}"
    return run_proof(harness, harness.ports, name, Path(workdir), mode=mode, depth=depth, engine=engine)


def neuron_trace_summary(result: ProofResult, config: NeuronProofConfig) -> str:
    """The counterexample of a neuron proof as a per-cycle table (design ports, signed ones decoded
    at the widths the trace declares, so a mutant with a narrower register reads right too)."""
    columns = {
        "start": ("dut.start", None), "T1": ("dut.t_in", None), "T2": ("dut.t_out", None),
        "theta": ("dut.theta", None), "v0": ("dut.v0", True),
        "I": ("dut.current", True), "stage": ("dut.stage", None), "step": ("dut.step", None),
        "v": ("dut.v", True), "c": ("dut.c", True),
        "exc": ("dut.excitatory", None), "inh": ("dut.inhibitory", None), "spike": ("dut.spike", None),
        "count": ("dut.count", None),
    }
    return format_trace(result.trace, columns)
