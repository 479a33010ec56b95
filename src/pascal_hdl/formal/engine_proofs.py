"""Property harness for the layer engine's accumulation (``pascal_hdl.gateware.engine``).

(Readout engines: the logits; hidden engines: the output counts, see
:meth:`EngineAccumulationHarness._hidden_checks`.)

The engine's accumulators are observable on the ports of a readout engine:
its result is ``logits[n] = bias[n] + S[n]``, ``S[n]`` the synaptic current
of neuron ``n`` accumulated spike by spike (the hidden engines share that
accumulation path and hand ``S`` to their neuron units).  The harness feeds
the engine free input events (any index, any count, any ``last``, any
``valid``; any ``ready`` on the output) and keeps its own sum, straight
from the definition::

    S[n] = sum over the sample's valid events (j, c_j) of c_j * W[n, j]

where an event is valid as the engine documents it: ``j < in_features``,
``c_j <= T1`` and ``j`` greater than the previous valid index of the sample
(others are dropped).  A sample ends with the event flagged ``last``.
Property ``accumulation``: whenever a result is offered, every logit equals
``bias[n] + S[n]`` of the sample, and ``cls`` is the first maximum.
Property ``stream``: once the output is valid it stays valid, with the same
payload, until it is taken. Property ``rejected``: the flag never rises
without a dropped event, and when a result is offered every dropped event
of the sample has raised it exactly once.

The configurations are chosen so that the boundaries are reachable: the
input port of :data:`BOUNDARY_ENGINE` can carry an index equal to
``in_features`` and a count of ``T1 + 1`` (both must be dropped), and on every
readout configuration whose weights allow equal maximal logits a cover
statement shows such a tie reaching the result (so "``cls`` is the first
maximum" is checked on a tie, not only vacuously).

Reset at any cycle: ``rst`` is a free input like the others (the solver may
assert it in any cycle, in the middle of a sample too); the harness's own
state resets with it, so after every reset the properties are about the
samples that follow, which must not see anything of the interrupted one. The
engine's CLEAR phase (``groups`` cycles after each reset, the accumulators
zeroed) is what makes them hold; mutants ``clear_never_writes`` and
``clear_one_word_short`` fail. A cover statement shows a result after a reset
that interrupted a sample with nonzero partial sums (so the case is not
vacuous within the bound).

Double-buffered engines (``banks == 2``, :data:`SMALL_ENGINE_BANKED`, :data:`HIDDEN_ENGINE_BANKED`):
the harness keeps one sum per sample it may hold (the one draining, the next one accumulating in
the other bank, one event of the one after in the input register), the same properties hold, with
rst free; mutants ``drain_reads_fill_bank`` and ``bank_not_cleared_after_drain`` fail.

Proof mode: bounded (the accumulators live in a memory that the harness
cannot name, so no inductive invariant can speak about them); the depth
covers the CLEAR phase after power-up and the longest sample without stalls
(every input at count ``T1``) plus the result, with every idle/back-pressure
and reset pattern that fits.
"""
from __future__ import annotations

import dataclasses
import importlib
import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from amaranth.hdl import Assert, Cover, Elaboratable, Module, Mux, ResetSignal, Signal, signed

from pascal_hdl.config import LayerConfig
from pascal_ref.numeric import signed_width

from .sby import ProofResult, format_trace, run_proof

__all__ = ["EngineProofConfig", "EngineAccumulationHarness", "prove_engine", "engine_trace_summary", "SMALL_ENGINE",
           "GROUPED_ENGINE", "HIDDEN_ENGINE", "BOUNDARY_ENGINE", "SMALL_ENGINE_BANKED", "HIDDEN_ENGINE_BANKED",
           "ENGINE_CONFIGS", "MUTANT_CONFIGS",
           "filling_slot", "reset_interrupted", "shift_slots"]


def engine_module():
    return importlib.import_module("pascal_hdl.gateware.engine")


@dataclass(frozen=True, eq=False)
class EngineProofConfig:
    """A small layer under proof: a :class:`~pascal_hdl.config.LayerConfig` (validated there), whose
    name names the proof; a readout (``t_out`` None, ``v0`` the bias) or a hidden layer."""

    layer: LayerConfig

    @property
    def name(self) -> str:
        return self.layer.name

    def samples_depth(self) -> int:
        """Cycles of the CLEAR phase after power-up and of the longest sample without stalls, plus the
        result and margin; double-buffered, two short samples more (so a bank is reused)."""
        layer = self.layer
        tail = (layer.groups * (2 + layer.t_out) + layer.out_features if not layer.is_readout
                else layer.groups + layer.out_features)
        depth = layer.clear_cycles + 1 + layer.in_features * max(1, layer.t_in * layer.groups) + 2 + tail + 3
        if layer.banks == 2:   # two more one-event samples: the first bank drained, refilled and drained again
            depth += 2 * (1 + 1 + tail + 1)
        return depth

    def tie_counts(self) -> tuple[int, ...] | None:
        """Input counts (each in ``0..T1``) whose logits have a maximum shared by two classes,
        or None (hidden layers, or readouts whose weights allow no tie)."""
        layer = self.layer
        if not layer.is_readout:
            return None
        for counts in itertools.product(range(layer.t_in + 1), repeat=layer.in_features):
            logits = layer.weight @ np.array(counts) + layer.v0
            if (logits == logits.max()).sum() >= 2:
                return counts
        return None

    def carries_boundary_events(self) -> bool:
        """The input port can carry ``index == in_features`` and ``count == T1 + 1`` (both invalid)."""
        from pascal_hdl.gateware.engine import event_layout

        layout = event_layout(self.layer.in_features, self.layer.t_in)
        index_bits, count_bits = layout["index"].width, layout["count"].width
        return self.layer.in_features < (1 << index_bits) and self.layer.t_in + 1 < (1 << count_bits)

    def describe(self) -> str:
        layer = self.layer
        return (f"{self.name}: {layer.in_features} inputs, {layer.out_features} outputs, {layer.lanes} lanes "
                f"({layer.groups} groups), T1 = {layer.t_in}, weights {layer.weight_width} b, "
                f"accumulator {layer.acc_width} b, logits {layer.logit_width} b")


# Weights at the 8-bit extremes, a zero, mixed signs; two lanes in one group so
# that a burst hits the same accumulator word in back-to-back cycles.
SMALL_ENGINE = EngineProofConfig(LayerConfig("small_engine", weight=np.array([[127, -128], [-1, -128]]), t_in=2,
                                             t_out=None, theta=None, v0=np.array([-5, 100]), lanes=2))
# A hidden layer: accumulation, then the engine's neuron units and the sparse output.
# Neuron 0 reaches every count 0..2 (and clips low), neuron 1 clips high.
HIDDEN_ENGINE = EngineProofConfig(LayerConfig("hidden_engine", weight=np.array([[30, -128], [127, -7]]), t_in=2,
                                              t_out=2, theta=np.array([50, 30]), v0=np.array([40, -5]), lanes=2))
# One lane, two groups: a spike visits both accumulator words.
GROUPED_ENGINE = EngineProofConfig(LayerConfig("grouped_engine", weight=np.array([[127, -77], [-128, 1]]), t_in=2,
                                               t_out=None, theta=None, v0=np.array([3, -9]), lanes=1))
# Three inputs on a 2-bit index and T1 = 2 on a 2-bit count: the port carries the
# invalid index 3 == in_features and the invalid count 3 == T1 + 1. Classes 0 and 1
# tie whenever c_0 == c_1 (the empty sample among them): cls must be 0 then.
BOUNDARY_ENGINE = EngineProofConfig(LayerConfig("boundary_engine",
                                                weight=np.array([[2, 1, -128], [1, 2, -128], [127, -3, 5]]), t_in=2,
                                                t_out=None, theta=None, v0=np.array([0, 0, -1]), lanes=3))

# Double-buffered (banks == 2): the next sample accumulates into one bank while the other drains; the
# properties are the same, with two samples (and an event of a third) ahead of the result.
SMALL_ENGINE_BANKED = EngineProofConfig(dataclasses.replace(SMALL_ENGINE.layer, name="small_engine_banked", banks=2))
HIDDEN_ENGINE_BANKED = EngineProofConfig(dataclasses.replace(HIDDEN_ENGINE.layer, name="hidden_engine_banked",
                                                             banks=2))

ENGINE_CONFIGS = (SMALL_ENGINE, GROUPED_ENGINE, HIDDEN_ENGINE, BOUNDARY_ENGINE, SMALL_ENGINE_BANKED,
                  HIDDEN_ENGINE_BANKED)

# The configuration on which each mutant of ``mutants.ENGINE_MUTATIONS`` is refuted
# (where the bug is reachable), and the failed assertions that may show it (the
# solver reports the properties broken at the first failing step).
MUTANT_CONFIGS = {
    "subtract_weight": (SMALL_ENGINE, ("accumulation",)),
    "stale_accumulator": (SMALL_ENGINE, ("accumulation",)),
    "accept_equal_index": (SMALL_ENGINE, ("accumulation", "rejected")),
    "emit_zero_skipped_wrong": (HIDDEN_ENGINE, ("count 0",)),
    "accept_index_in_features": (BOUNDARY_ENGINE, ("accumulation", "rejected")),
    "accept_count_above_t1": (BOUNDARY_ENGINE, ("accumulation", "rejected")),
    "reject_count_t1": (BOUNDARY_ENGINE, ("accumulation", "rejected")),
    "readout_last_maximum": (BOUNDARY_ENGINE, ("first maximum",)),
    "result_ignores_ready": (SMALL_ENGINE, ("valid held",)),
    "rejected_without_accept": (BOUNDARY_ENGINE, ("rejected: no flag without a dropped event",)),
    "clear_never_writes": (SMALL_ENGINE, ("accumulation",)),
    "clear_one_word_short": (GROUPED_ENGINE, ("accumulation",)),
    "drain_reads_fill_bank": (SMALL_ENGINE_BANKED, ("accumulation",)),
    "bank_not_cleared_after_drain": (SMALL_ENGINE_BANKED, ("accumulation",)),
}


class EngineAccumulationHarness(Elaboratable):
    """The ``accumulation`` property around one readout :class:`LayerEngine`."""

    def __init__(self, config: EngineProofConfig, module=None):
        self.config = config
        self.module = module or engine_module()
        self.layer = config.layer
        self.dut = self.module.LayerEngine(self.layer)

    @property
    def ports(self):
        d = self.dut
        return [d.i.valid, d.i.payload.as_value(), d.o.ready]

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = dut = self.dut
        layer = self.layer
        weight = layer.weight
        n_out, n_in = weight.shape
        bound = int(np.abs(weight).sum(axis=1).max()) * layer.t_in + int(np.abs(layer.v0).max())
        wide = signed(signed_width(-bound, bound) + 2)

        # rst is free (any cycle): the harness's registers reset with the engine's.
        take = dut.i.valid & dut.i.ready
        index, count, last = dut.i.payload.index, dut.i.payload.count, dut.i.payload.last
        if layer.is_readout:
            result_taken = dut.o.valid & dut.o.ready
        else:
            result_taken = dut.o.valid & dut.o.ready & dut.o.payload.last

        # Per sample: first valid event seen?, previous valid index, `last` taken (closed); samples are
        # delimited by `last` at the input. Slot 0 is the sample whose result comes next; later samples
        # may have begun: with one bank at most one event of the next one (the engine's input register),
        # with two a whole next sample (its bank) and one event of the one after.
        slots = layer.banks + 1
        sums = [[Signal(wide, name=f"S_{n}" if k == 0 else f"S{k}_{n}") for n in range(n_out)] for k in range(slots)]
        firsts = [Signal(init=1, name=f"first_{k}") for k in range(slots)]
        prevs = [Signal.like(index, name=f"prev_{k}") for k in range(slots)]
        closeds = [Signal(name=f"closed_{k}") for k in range(slots)]
        bads = [Signal(name=f"dropped_{k}") for k in range(slots)]   # an invalid event of the sample was taken
        cur, closed = sums[0], closeds[0]

        def valid_event(first_, prev_):
            return (index < n_in) & (count <= layer.t_in) & (first_ | (index > prev_))

        # c_j * W[n, j] for the event's (j, c_j), chosen from a table of constants:
        # no multiplier, and nothing but constants for the solver to add up.
        add = [Signal(wide, name=f"add_{n}") for n in range(n_out)]
        for n in range(n_out):
            term = 0
            for j in range(n_in):
                for spikes in range(1, layer.t_in + 1):
                    term = Mux((index == j) & (count == spikes), spikes * int(weight[n, j]), term)
            m.d.comb += add[n].eq(term)

        # The event taken goes to the oldest sample whose `last` has not been taken; then, if a result
        # is taken in the same cycle, every sample moves down one slot.
        m.d.comb += Assert(~take | ~closeds[-1], "no event taken beyond the samples the engine can hold")
        after = []
        for k, target in enumerate(filling_slot(take, closeds)):
            ok = target & valid_event(firsts[k], prevs[k])
            invalid = target & ~valid_event(firsts[k], prevs[k])
            state = ([Mux(ok, t + a, t) for t, a in zip(sums[k], add)], firsts[k] & ~ok, Mux(ok, index, prevs[k]),
                     closeds[k] | (target & last), bads[k] | invalid, invalid)
            after.append(state)
        def registers(k):
            return sums[k] + [firsts[k], prevs[k], closeds[k], bads[k]]

        def values(state):
            return list(state[0]) + list(state[1:5])

        shift_slots(m, [registers(k) for k in range(slots)], [values(state) for state in after],
                    [0] * n_out + [1, 0, 0, 0], result_taken)

        # The `rejected` flag: one pulse per dropped event, none for a kept one. `owed`: invalid events
        # taken and not yet flagged; at most the one in the input register (an event is judged, and
        # flagged, in the cycle it leaves the register). When a result is offered, every dropped event
        # of its sample has been flagged: what is owed belongs to later samples (with one bank exactly
        # those, as the engine takes no event while it drains).
        owed = Signal(range(8), name="rejections_owed")
        bad_now = Signal(name="taken_invalid")
        dropped = 0
        for state in after:
            dropped = dropped | state[5]
        m.d.comb += bad_now.eq(dropped)
        m.d.sync += owed.eq(owed + bad_now - dut.rejected)
        later = 0
        for k in range(1, slots):
            later = later | bads[k]
        m.d.comb += Assert(owed <= 1, "rejected: a dropped event is flagged when it leaves the input register")
        with m.If(dut.rejected):
            m.d.comb += Assert(owed != 0, "rejected: no flag without a dropped event")
        with m.If(dut.o.valid):
            if layer.banks == 1:
                m.d.comb += Assert(owed == later, "rejected: every dropped event of the sample flagged once")
            else:
                m.d.comb += Assert(owed <= later, "rejected: every dropped event of the sample flagged once")

        # Reachability of the longest sample within the bounded depth: every
        # input of the sample at count T1 (checked in cover mode).
        full = Signal(range(n_in + 1), name="full_inputs")
        with m.If(result_taken):
            m.d.sync += full.eq(0)
        with m.Elif(take & ~closed & valid_event(firsts[0], prevs[0]) & (count == layer.t_in)):
            m.d.sync += full.eq(full + 1)
        m.d.comb += Cover(result_taken & (full == n_in))
        # Non-vacuity of reset at any cycle: a result after a reset that hit nonzero partial sums.
        dirty = 0
        for total in cur:
            dirty = dirty | (total != 0)
        m.d.comb += Cover(result_taken & reset_interrupted(m, dirty))

        # Stream rule on the output: valid held, payload stable, until taken.
        stalled = Signal(name="o_stalled")
        held = Signal(dut.o.payload.shape(), name="o_held")
        m.d.sync += [stalled.eq(dut.o.valid & ~dut.o.ready), held.eq(dut.o.payload)]
        with m.If(stalled):
            m.d.comb += Assert(dut.o.valid, "stream: o.valid held until taken")
            m.d.comb += Assert(dut.o.payload.as_value() == held.as_value(), "stream: o.payload stable while valid")

        if layer.is_readout:
            self._readout_checks(m, dut, layer, cur, closed)
        else:
            self._hidden_checks(m, dut, layer, cur, closed, result_taken)
        return m

    def _hidden_checks(self, m, dut, layer, cur, closed, result_taken):
        """Each output event's count == clip(floor((v0 + S) / theta), 0, T2);
        neurons not sent have count 0; the last neuron is always sent, flagged."""
        n_out = layer.out_features
        expected = []
        for n in range(n_out):
            charge = cur[n] + int(layer.v0[n])
            theta = int(layer.theta[n])
            count = 0
            for k in range(1, layer.t_out + 1):   # theta is a constant: compare with k*theta
                count = Mux(charge >= k * theta, k, count)
            expected.append(count)
        next_index = Signal(range(n_out + 1), name="next_index")
        index, count, last = dut.o.payload.index, dut.o.payload.count, dut.o.payload.last
        with m.If(dut.o.valid):
            m.d.comb += Assert(closed, "an output only after the sample's last input event")
            m.d.comb += Assert(index >= next_index, "outputs in increasing index order")
            m.d.comb += Assert(last == (index == n_out - 1), "last flags the last neuron")
            for n in range(n_out):
                with m.If(index == n):
                    m.d.comb += Assert(count == expected[n],
                                       f"neuron {n}: count == clip(floor((v0 + S)/theta), 0, T2)")
                    for k in range(n):
                        with m.If(next_index <= k):
                            m.d.comb += Assert(expected[k] == 0, f"neuron {k} skipped only with count 0")
        with m.If(result_taken):
            m.d.sync += next_index.eq(0)
        with m.Elif(dut.o.valid & dut.o.ready):
            m.d.sync += next_index.eq(index + 1)

    def _readout_checks(self, m, dut, layer, cur, closed):
        n_out = layer.out_features
        logits = dut.o.payload.logits
        with m.If(dut.o.valid):
            m.d.comb += Assert(closed, "a result only after the sample's last event")
            for n in range(n_out):
                m.d.comb += Assert(logits[n] == cur[n] + int(layer.v0[n]),
                                   f"accumulation: logit[{n}] == bias[{n}] + sum of the weights of the spikes")
            cls = dut.o.payload.cls
            for n in range(n_out):
                for k in range(n_out):
                    if k != n:
                        beaten = (logits[k] > logits[n]) | ((k < n) & (logits[k] == logits[n]))
                        m.d.comb += Assert((cls != n) | ~beaten, f"cls == {n} only if it is the first maximum")
            m.d.comb += Assert(cls < n_out, "cls < classes")
        if self.config.tie_counts() is not None:
            # Non-vacuity of the first-maximum rule: a result with a shared maximum.
            logits_ = dut.o.payload.logits
            tie = 0
            for n in range(n_out):
                for k in range(n + 1, n_out):
                    top = logits_[n] == logits_[k]
                    for j in range(n_out):
                        top = top & (logits_[j] <= logits_[n])
                    tie = tie | top
            m.d.comb += Cover(dut.o.valid & tie)


def filling_slot(take, closeds) -> list:
    """Per reference slot (slot 0: the oldest sample held): whether the event taken in this cycle belongs to
    it, i.e. it is the oldest slot whose sample's ``last`` has not been taken (``closeds``)."""
    targets = []
    for k, closed in enumerate(closeds):
        target = take & ~closed
        for j in range(k):
            target = target & closeds[j]
        targets.append(target)
    return targets


def shift_slots(m: Module, registers, updated, empty, result_taken) -> None:
    """The reference slots' registers (``registers[k]``: slot k's signals) take this cycle's values
    (``updated[k]``), or, in a cycle whose result is taken, the next slot's (the last one: ``empty``):
    every sample moves down one slot."""
    for k, signals in enumerate(registers):
        shifted = updated[k + 1] if k + 1 < len(registers) else empty
        for signal, stay, shift in zip(signals, updated[k], shifted, strict=True):
            m.d.sync += signal.eq(Mux(result_taken, shift, stay))


def reset_interrupted(m: Module, in_flight) -> Signal:
    """A flag, kept through resets (``reset_less``), set by a cycle with ``rst`` high while ``in_flight``
    holds: a reset has interrupted the work of a sample (for cover statements)."""
    seen = Signal(name="reset_interrupted", reset_less=True)
    with m.If(ResetSignal() & in_flight):
        m.d.sync += seen.eq(1)
    return seen


def prove_engine(config: EngineProofConfig, workdir, module=None, depth: int | None = None,
                 name: str | None = None, mode: str = "bmc") -> ProofResult:
    """Bounded proof of the accumulation property (see the module docstring).

    ``mode="cover"`` instead shows that a result for a sample with every
    input at count ``T1`` (the longest) is reachable within ``depth``, that a
    result after a reset with nonzero partial sums is, and on a readout whose
    weights allow it (:meth:`EngineProofConfig.tie_counts`) a result with two
    equal maximal logits.
    """
    harness = EngineAccumulationHarness(config, module)
    depth = depth or config.samples_depth()
    name = name or f"engine_{'accumulation' if mode == 'bmc' else 'cover'}_{config.name}"
    return run_proof(harness, harness.ports, name, Path(workdir), mode=mode, depth=depth, flatten_memories=True)


def engine_trace_summary(result: ProofResult, config: EngineProofConfig) -> str:
    """The counterexample of the accumulation proof as a per-cycle table."""
    layer = config.layer
    columns = {"rst": ("rst", None), "i.valid": ("i__valid", None), "i.ready": ("i__ready", None),
               "index": ("i__payload.index", None),
               "count": ("i__payload.count", None), "last": ("i__payload.last", None),
               "rejected": ("rejected", None), "owed": ("rejections_owed", None),
               "o.valid": ("o__valid", None), "o.ready": ("o__ready", None)}
    if layer.is_readout:
        for n in range(layer.out_features):
            columns[f"logit{n}"] = (f"o__payload.logits<{n}>", layer.logit_width)
    else:
        columns.update({"o.index": ("o__payload.index", None), "o.count": ("o__payload.count", None),
                        "o.last": ("o__payload.last", None)})
    for n in range(layer.out_features):
        columns[f"S{n}"] = (f"S_{n}", True)
    return format_trace(result.trace, columns)
