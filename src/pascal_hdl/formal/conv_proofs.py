"""Bounded proofs of the Conv2d engine's address generation and scatter, and of the pooling unit.

Scatter (:class:`ConvScatterHarness`, around :class:`pascal_hdl.gateware.conv.ConvEngine`). The
solver drives the input port freely (any index, count, ``last``, ``valid`` every cycle; any
``o.ready``). The harness keeps, straight from the definition of a convolution and independently of
the engine's tap tables, for every input index ``j = (c, y, x)`` the synapses of its receptive
field: every kernel tap ``(ky, kx)`` and output ``(oy, ox)`` with ``oy*sh - ph + ky == y`` and
``ox*sw - pw + kx == x`` inside the output map, times every group ``g``: the pair (weight word
``((c*kh + ky)*kw + kx)*G + g``, accumulator word ``(oy*Wo + ox)*G + g``). A pair names its input
uniquely. It queues the valid events it hands in (the engine's rule: ``index < in_features``,
``count <= T1``, increasing within a sample) that reach anything, and checks, on the engine's
``issue`` observation port:

* ``no stray issue``: an issue cycle only while a queued event is pending;
* ``receptive field``: every issued pair is a synapse of the head event's receptive field;
* ``once per spike``: no synapse is issued more than ``count`` times for an event; since an
  event's issues are exactly the next ``count * |field|`` issue cycles (the harness counts them
  off), every synapse of the field is issued exactly ``count`` times: every spike reaches exactly
  the output neurons of its receptive field, borders, padding and stride included;
* ``complete``: when the engine offers an output of a sample, no event of that sample is still
  pending (the neuron phase reads the accumulators only after every spike was scattered), and the
  sample's ``last`` event has been taken;
* ``bank reuse``: a spike is scattered only into a bank whose previous sample has been read out (one
  bank: the sample being scattered is the one whose neurons are read next; two banks: at most one
  sample ahead of it, in the other bank);
* outputs: increasing indices within a sample, ``last`` exactly on the last neuron (a sample's neurons
  are read out once, from start to end, not cut short by the next sample's hand-over).

Samples are numbered from the last reset (``in_sample``: ``last`` events taken, ``out_sample``: last
outputs taken) and the harness queues every event with its sample's number, so with two banks (the
neurons read sample n while sample n+1 fills the other bank and an event of n+2 waits in the input
register) every property speaks of the right sample.

Pooling (:class:`PoolHarness`, around :class:`pascal_hdl.gateware.pool.PoolUnit`). Free input as
above; the harness sums or takes the maximum, per pooled cell, of the valid events whose window
contains it (the windows from the definition ``oy*sh <= y < oy*sh + kh``), and checks that every
output event's count equals its cell's value, cells not sent are 0, indices increase, ``last``
flags the last cell, and the stream rule. It keeps one set of cells per sample the unit may hold
(``banks + 1``: the one swept, with two banks the next one pooled into the other bank, and one
event of the one after), as the engine harness does.

Double-buffered (``banks == 2``, :data:`CONV_BANKED_PROOFS`, :data:`POOL_BANKED_PROOFS`): the same
properties, with a bound that holds three samples (the third one scattered or pooled into the first
one's bank after that was read out, :attr:`ProofCase.reuse_depth`); covers show, within the bound, an
output while the next sample is complete in the other bank and the third sample in the first one's bank
(conv: a spike of it scattered; pool: its result). Mutants of
the bank logic (``conv_hand_over_mid_drain``, ``conv_hand_over_keeps_first``, ``pool_hand_over_mid_sweep``,
``pool_banks_never_swap``, and ``bank_not_cleared_after_sweep`` in the shared ``double_buffer``, through the
pooling unit) are refuted there.

Reset at any cycle: ``rst`` is free (the solver may assert it in any cycle, in the middle of a sample
too) and the harnesses' own state resets with the design's, so every property speaks about the samples
after the last reset; a cover shows an output after a reset that hit a sample in flight (conv: spikes
still to scatter; pool: nonzero cells). For the pooling unit this checks the CLEAR phase after reset (every
cell zeroed, ``out_features`` cycles; mutant ``pool_clear_never_writes`` fails); the scatter proof
checks addresses, not accumulator values, so the conv engine's CLEAR is checked by the simulator tests.

Each proof has a mutant (one source edit of the design, :data:`CONV_MUTATIONS`) that it must refute.
Bounded (bmc) from power-up, every reset pattern within the bound: the state lives in memories the
harness cannot name. The bound of a case is its CLEAR phase plus one sample (:attr:`ProofCase.depth`);
the cover run goes twice as deep, where a sample after a reset in the middle of another reaches its
output (:attr:`ProofCase.cover_depth`).
"""
from __future__ import annotations

import importlib
import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from amaranth.hdl import (
    Assert,
    Cat,
    Cover,
    Elaboratable,
    Module,
    Mux,
    Signal,
)

from pascal_hdl.formal.engine_proofs import filling_slot, reset_interrupted, shift_slots
from pascal_hdl.formal.mutants import Mutation, MutationError, all_mutation_names, load_mutant
from pascal_hdl.model.conv import ConvConfig
from pascal_hdl.model.pool import PoolConfig

from .sby import ProofResult, check_messages, run_proof

__all__ = ["CONV_BANKED_PROOFS", "CONV_MUTATIONS", "CONV_PROOFS", "OVERLAP_COVER", "POOL_BANKED_PROOFS", "POOL_PROOFS",
           "RESET_COVER", "REUSE_COVER", "ConvScatterHarness", "PoolHarness", "ProofCase", "covers_reached",
           "load_case_mutant", "prove", "receptive_field"]


# The cover statements the tests look up by message (:func:`covers_reached`).
RESET_COVER = "output after a reset that hit a sample in flight"
OVERLAP_COVER = "double buffer: output while the next sample is complete in the other bank"
REUSE_COVER = "double buffer: the third sample after reset in the first one's bank (a bank reused)"


def covers_reached(result: ProofResult) -> dict[str, int]:
    """The step at which a cover run reached each cover statement, by the statement's message."""
    messages = check_messages((result.workdir.parent / f"{result.name}.il").read_text())
    return {messages.get(check.rsplit("_", 1)[-1], check): step for check, step in result.covers.items()}


def receptive_field(conv: ConvConfig, index: int) -> list[tuple[int, int]]:
    """(weight word, accumulator word) of every synapse input ``index`` reaches, from the definition."""
    c, y, x = conv.decode(index)
    (kh, kw), (sh, sw), (ph, pw) = conv.kernel_size, conv.stride, conv.padding
    groups, ho, wo = conv.groups, conv.out_height, conv.out_width
    pairs = []
    for ky, kx in itertools.product(range(kh), range(kw)):
        for oy, ox in itertools.product(range(ho), range(wo)):
            if oy * sh - ph + ky == y and ox * sw - pw + kx == x:
                pairs += [(((c * kh + ky) * kw + kx) * groups + g, (oy * wo + ox) * groups + g) for g in range(groups)]
    return pairs


def _table(m: Module, key, values: dict[int, int], shape, name: str) -> Signal:
    """A constant table ``values[key]`` (0 elsewhere) as a Mux chain."""
    out = Signal(shape, name=name)
    expr = 0
    for k, v in values.items():
        expr = Mux(key == k, v, expr)
    m.d.comb += out.eq(expr)
    return out


def _input_rules(m: Module, dut, in_features: int, t_in: int):
    """The engine's rule for the taken event: ``(take, valid, first, prev)``; per sample, delimited by ``last``."""
    take = dut.i.valid & dut.i.ready
    index, count, last = dut.i.payload.index, dut.i.payload.count, dut.i.payload.last
    first = Signal(init=1, name="h_first")
    prev = Signal.like(index, name="h_prev")
    valid = Signal(name="h_valid_event")
    m.d.comb += valid.eq(take & (index < in_features) & (count <= t_in) & (first | (index > prev)))
    with m.If(take):
        with m.If(last):
            m.d.sync += first.eq(1)
        with m.Elif(valid):
            m.d.sync += [first.eq(0), prev.eq(index)]
    return take, valid


class ConvScatterHarness(Elaboratable):
    """The scatter properties (module docstring) around one :class:`ConvEngine`."""

    QUEUE = 3    # events in flight: input register, decode register, issue

    def __init__(self, conv: ConvConfig, module=None):
        self.conv = conv
        self.module = module or importlib.import_module("pascal_hdl.gateware.conv")
        self.dut = self.module.ConvEngine(conv)

    @property
    def ports(self):
        d = self.dut
        return [d.i.valid, d.i.payload.as_value(), d.o.ready]

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = dut = self.dut
        conv = self.conv
        fields = [receptive_field(conv, j) for j in range(conv.in_features)]
        slots = max(len(f) for f in fields)
        index, count, last = dut.i.payload.index, dut.i.payload.count, dut.i.payload.last
        take, valid = _input_rules(m, dut, conv.in_features, conv.t_in)
        total_max = conv.t_in * slots
        size_now = _table(m, index, {j: len(f) for j, f in enumerate(fields)}, range(slots + 1), "field_size")

        # Sample numbers (since the last reset, modulo 2**bits): `in_sample` counts the `last` events taken
        # (the sample the next event belongs to), `out_sample` the last outputs taken (the sample whose
        # neurons are read next). Samples in flight: with one bank the one read and one event of the next,
        # with two the one read, the next (its own bank) and one event of the one after.
        banks = conv.banks
        bits = 2 if banks == 1 else 3
        in_sample, out_sample = Signal(bits, name="in_sample"), Signal(bits, name="out_sample")
        o_taken = dut.o.valid & dut.o.ready
        with m.If(take & last):
            m.d.sync += in_sample.eq(in_sample + 1)
        with m.If(o_taken & dut.o.payload.last):
            m.d.sync += out_sample.eq(out_sample + 1)
        ahead = Signal(bits, name="samples_ahead")    # samples whose `last` was taken and not yet read out
        m.d.comb += ahead.eq(in_sample - out_sample)
        with m.If(take):
            m.d.comb += Assert(ahead <= banks, "no event taken beyond the samples the engine can hold")

        q_index = [Signal.like(index, name=f"q{k}_index") for k in range(self.QUEUE)]
        q_count = [Signal.like(count, name=f"q{k}_count") for k in range(self.QUEUE)]
        q_total = [Signal(range(total_max + 1), name=f"q{k}_total") for k in range(self.QUEUE)]
        q_sample = [Signal(bits, name=f"q{k}_sample") for k in range(self.QUEUE)]
        size = Signal(range(self.QUEUE + 2), name="queue_size")
        done = Signal(range(total_max + 1), name="head_issued")
        hits = [Signal(range(conv.t_in + 2), name=f"hits{s}") for s in range(slots)]

        issue = dut.issue
        head = q_index[0]
        hit_any = 0
        hit = []
        for s in range(slots):
            w_s = _table(m, head, {j: f[s][0] for j, f in enumerate(fields) if s < len(f)}, range(conv.weight_depth + 1),
                         f"field_weight{s}")
            a_s = _table(m, head, {j: f[s][1] for j, f in enumerate(fields) if s < len(f)}, range(conv.acc_depth + 1),
                          f"field_word{s}")
            ok_s = _table(m, head, {j: 1 for j, f in enumerate(fields) if s < len(f)}, 1, f"field_ok{s}")
            h = Signal(name=f"hit{s}")
            m.d.comb += h.eq(ok_s & (issue.weight == w_s) & (issue.word == a_s))
            hit.append(h)
            hit_any = hit_any | h

        pop = Signal(name="pop")
        m.d.comb += pop.eq(issue.valid & (size != 0) & (done + 1 == q_total[0]))
        push = Signal(name="push")
        m.d.comb += push.eq(valid & (count != 0) & (size_now != 0))
        with m.If(issue.valid):
            m.d.comb += Assert(size != 0, "no stray issue: an issue cycle only while a spike is pending")
            with m.If(size != 0):
                m.d.comb += Assert(hit_any, "receptive field: the issued synapse belongs to the pending input")
                for s in range(slots):
                    m.d.comb += Assert(hits[s] + hit[s] <= q_count[0], "once per spike: a synapse at most count times")
                # The bank a spike goes to holds no sample still to be read: with one bank the neurons have
                # read the previous sample, with two the sample before the previous one (the same bank).
                m.d.comb += Assert(((q_sample[0] - out_sample)[:bits]) <= banks - 1,
                                   "bank reuse: a spike scattered only into a bank whose sample has been read out")
        with m.If(pop):
            m.d.sync += [done.eq(0)] + [h.eq(0) for h in hits]
        with m.Elif(issue.valid):
            m.d.sync += [done.eq(done + 1)] + [h.eq(h + x) for h, x in zip(hits, hit)]
        # The queue: shift on pop, append on push.
        entries = list(zip(q_index, q_count, q_total, q_sample))
        # Issue cycles of the event: count * |field|, a table over (index, count) (no multiplier).
        totals = {(j << len(count)) | spikes: spikes * len(fields[j])
                  for j in range(conv.in_features) for spikes in range(1, conv.t_in + 1)}
        total_in = _table(m, Cat(count, index), totals, range(total_max + 1), "push_total")
        incoming = (index, count, total_in, in_sample)
        m.d.comb += Assert(size <= self.QUEUE, "at most three events in flight")
        for k in range(self.QUEUE):
            stay = entries[k]
            shifted = entries[k + 1] if k + 1 < self.QUEUE else None
            with m.If(pop):
                with m.If(push & (size - 1 == k)):
                    m.d.sync += [r.eq(v) for r, v in zip(stay, incoming)]
                if shifted is not None:
                    with m.Elif(k + 1 < size):
                        m.d.sync += [r.eq(v) for r, v in zip(stay, shifted)]
            with m.Elif(push & (size == k)):
                m.d.sync += [r.eq(v) for r, v in zip(stay, incoming)]
        m.d.sync += size.eq(size + push - pop)

        with m.If(dut.o.valid):
            for k in range(self.QUEUE):
                m.d.comb += Assert((size <= k) | (q_sample[k] != out_sample),
                                   "complete: every spike of a sample scattered before its neurons are read")
            m.d.comb += Assert(ahead != 0, "an output only after the sample's last input event")
        # The outputs of a sample: increasing indices, `last` on the last neuron (a sample's neurons are read
        # out once, from one bank, and not cut short by the next sample's hand-over).
        next_out = Signal(range(conv.out_features + 1), name="next_out")
        o_index = dut.o.payload.index
        with m.If(dut.o.valid):
            m.d.comb += Assert(o_index >= next_out, "outputs in increasing index order")
            m.d.comb += Assert(dut.o.payload.last == (o_index == conv.out_features - 1), "last flags the last neuron")
        with m.If(o_taken & dut.o.payload.last):
            m.d.sync += next_out.eq(0)
        with m.Elif(o_taken):
            m.d.sync += next_out.eq(o_index + 1)
        # Non-vacuity: a full-count event at the map's border (a field smaller than the largest) is
        # scattered completely, and a sample reaches its output within the bound.
        border = Signal(name="border_scattered")
        small = {j for j, f in enumerate(fields) if 0 < len(f) < slots} or {j for j, f in enumerate(fields) if f}
        border_head = _table(m, head, {j: 1 for j in small}, 1, "border_head")
        with m.If(pop & border_head & (q_count[0] == conv.t_in)):
            m.d.sync += border.eq(1)
        m.d.comb += [Cover(border, "border event scattered"),
                     Cover(border & dut.o.valid, "output after a border event")]
        # Non-vacuity of reset at any cycle: an output after a reset that hit spikes still to scatter.
        m.d.comb += Cover(dut.o.valid & reset_interrupted(m, size != 0), RESET_COVER)
        if banks == 2:
            # Within the bound, the double buffer at work: an output while the next sample is complete in the
            # other bank, and a spike of the third sample after a reset scattered, into the first one's bank
            # after that was read out (a bank reused).
            m.d.comb += [Cover(dut.o.valid & (ahead == 2), OVERLAP_COVER),
                         Cover(issue.valid & (size != 0) & (q_sample[0] == 2), REUSE_COVER)]
        return m


class PoolHarness(Elaboratable):
    """The pooling properties (module docstring) around one :class:`PoolUnit`."""

    def __init__(self, pool: PoolConfig, module=None):
        self.pool = pool
        self.module = module or importlib.import_module("pascal_hdl.gateware.pool")
        self.dut = self.module.PoolUnit(pool)

    @property
    def ports(self):
        d = self.dut
        return [d.i.valid, d.i.payload.as_value(), d.o.ready]

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = dut = self.dut
        pool = self.pool
        index, count, last = dut.i.payload.index, dut.i.payload.count, dut.i.payload.last
        take, valid = _input_rules(m, dut, pool.in_features, pool.t_in)
        cells = pool.out_features
        (kh, kw), (sh, sw) = pool.kernel, pool.stride
        channels, wo = pool.input_shape[0], pool.out_width
        members = {n: [] for n in range(cells)}    # cell -> inputs whose window contains it (definition)
        for j in range(pool.in_features):
            c, y, x = pool.decode(j)
            for oy, ox in itertools.product(range(pool.out_height), range(wo)):
                if oy * sh <= y < oy * sh + kh and ox * sw <= x < ox * sw + kw:
                    members[(oy * wo + ox) * channels + c].append(j)
        value = range(pool.t_out + 1)
        # One slot per sample the unit may hold (slot 0: the one swept next): with one bank that sample and
        # one event of the next, with two the next sample (its own bank) and one event of the one after.
        n_slots = pool.banks + 1
        slot_cells = [[Signal(value, name=f"cell{n}" if k == 0 else f"s{k}_cell{n}") for n in range(cells)]
                      for k in range(n_slots)]
        slot_closed = [Signal(name="closed" if k == 0 else f"s{k}_closed") for k in range(n_slots)]
        cur, closed = slot_cells[0], slot_closed[0]
        result_taken = dut.o.valid & dut.o.ready & dut.o.payload.last

        def combine(old, n):
            inside = 0
            for j in members[n]:
                inside = inside | (index == j)
            new = Mux(old > count, old, count) if pool.reduce == "max" else old + count
            return Mux(valid & inside, new, old)

        # The event taken goes to the oldest sample whose `last` has not been taken; when a result is taken
        # in the same cycle, every sample moves down one slot.
        m.d.comb += Assert(~take | ~slot_closed[-1], "no event taken beyond the samples the unit can hold")
        updated = [[Mux(target, combine(c, n), c) for n, c in enumerate(slot_cells[k])]
                   + [slot_closed[k] | (target & last)]
                   for k, target in enumerate(filling_slot(take, slot_closed))]
        shift_slots(m, [slot_cells[k] + [slot_closed[k]] for k in range(n_slots)], updated, [0] * (cells + 1),
                    result_taken)

        next_index = Signal(range(cells + 1), name="next_index")
        o_index, o_count, o_last = dut.o.payload.index, dut.o.payload.count, dut.o.payload.last
        with m.If(dut.o.valid):
            m.d.comb += Assert(closed, "an output only after the sample's last input event")
            m.d.comb += Assert(o_index >= next_index, "outputs in increasing index order")
            m.d.comb += Assert(o_last == (o_index == cells - 1), "last flags the last cell")
            for n in range(cells):
                with m.If(o_index == n):
                    m.d.comb += Assert(o_count == cur[n], f"cell {n}: {pool.reduce} of its window's counts")
                    for k in range(n):
                        with m.If(next_index <= k):
                            m.d.comb += Assert(cur[k] == 0, f"cell {k} skipped only with value 0")
        with m.If(result_taken):
            m.d.sync += next_index.eq(0)
        with m.Elif(dut.o.valid & dut.o.ready):
            m.d.sync += next_index.eq(o_index + 1)

        stalled = Signal(name="o_stalled")
        held = Signal(dut.o.payload.shape(), name="o_held")
        m.d.sync += [stalled.eq(dut.o.valid & ~dut.o.ready), held.eq(dut.o.payload)]
        with m.If(stalled):
            m.d.comb += Assert(dut.o.valid, "stream: o.valid held until taken")
            m.d.comb += Assert(dut.o.payload.as_value() == held.as_value(), "stream: o.payload stable while valid")
        # Non-vacuity: a result whose cells all have windows combining two nonzero inputs.
        m.d.comb += Cover(dut.o.valid & o_last & (cur[0] != 0) & (cur[cells - 1] != 0), "result with nonzero cells")
        # Non-vacuity of reset at any cycle: an output after a reset that hit nonzero cells.
        dirty = 0
        for cell in cur:
            dirty = dirty | (cell != 0)
        m.d.comb += Cover(dut.o.valid & reset_interrupted(m, dirty), RESET_COVER)
        if pool.banks == 2:
            # Within the bound, the double buffer at work: an output while the next sample is complete in the
            # other bank, and the result of the third sample after a reset, pooled into the first one's bank
            # after that was swept (a bank reused) and with a nonzero cell.
            results = Signal(range(4), name="results_taken")
            with m.If(result_taken & (results != 3)):
                m.d.sync += results.eq(results + 1)
            m.d.comb += [Cover(dut.o.valid & slot_closed[1], OVERLAP_COVER),
                         Cover(dut.o.valid & o_last & (results == 2) & (cur[0] != 0), REUSE_COVER)]
        return m


@dataclass(frozen=True)
class ProofCase:
    """One proof: the configuration (a :class:`ConvConfig` or :class:`PoolConfig`) and the cycles a
    sample needs after the CLEAR phase (``sample_depth``)."""

    name: str
    config: object
    sample_depth: int
    reuse_depth: int = 0
    """Double-buffered (``config.banks == 2``): the cycles of two more short samples after the first one,
    so that the first sample's bank is read out and filled again within the bound (the covers show it)."""

    @property
    def banks(self) -> int:
        return self.config.banks

    @property
    def depth(self) -> int:
        """The bound of the proof: the CLEAR phase after power-up (``config.clear_cycles``) and a sample
        (double-buffered: and two more, :attr:`reuse_depth`), with a reset allowed in any of these cycles."""
        return self.config.clear_cycles + self.sample_depth + self.reuse_depth

    @property
    def cover_depth(self) -> int:
        """The bound of the cover run: twice :attr:`depth`, room for a sample interrupted by a reset, the
        CLEAR after it and the next sample's output (a bounded proof that deep does not finish in
        reasonable time for the larger conv case)."""
        return 2 * self.depth

    @property
    def harness_class(self):
        return ConvScatterHarness if isinstance(self.config, ConvConfig) else PoolHarness


def _conv(name, weight_shape, input_shape, stride, padding, lanes, layout, t_in=2, banks=1):
    rng = np.random.default_rng(sum(weight_shape) + stride + padding)
    out = weight_shape[0]
    return ConvConfig(name, rng.integers(-3, 4, weight_shape), input_shape, stride, padding, t_in, 1,
                      np.ones(out, np.int64), np.zeros(out, np.int64), lanes, layout, banks=banks)


CONV_PROOFS = (
    # 3x3, stride 2, padding 1 on a 3x3 map (2x2 outputs): the corner, edge and centre inputs reach 1, 2
    # and 4 outputs through different taps; 2 output channels on 1 lane (2 groups); 9 inputs on a
    # 4-bit index: the port carries the invalid indices 9..15.
    ProofCase("conv_scatter_stride2_pad1", _conv("conv_scatter_stride2_pad1", (2, 1, 3, 3), (1, 3, 3), 2, 1, 1,
                                                 "chw", t_in=1), 12),
    # 2x2, stride 3, no padding, "hwc" input with 2 channels on a 1x4 map: the columns x = 2 reach nothing
    # (stride gap), x = 3 reaches the second output; T1 = 2 (the 2-bit count carries the invalid 3).
    ProofCase("conv_scatter_stride3_hwc", _conv("conv_scatter_stride3_hwc", (2, 2, 1, 2), (2, 1, 5), 3, 0, 2,
                                                "hwc"), 12),
)
# Double-buffered (banks == 2): a 1x2 kernel, stride 1, on a 1x3 map (2 outputs, 2 accumulator words per
# bank, so a read-out is short): the ends reach one output, the middle input two through different taps;
# 3 inputs on a 2-bit index (carries the invalid 3). Its bound holds three samples, a spike of the third
# scattered into the first one's bank after that was read out (covered at step 15). (The stride-3 case with
# two banks needs a bound of 30 for that: no answer in 5 min, step 17 reached after 4.)
CONV_BANKED_PROOFS = (
    ProofCase("conv_scatter_tiny_banked", _conv("conv_scatter_tiny_banked", (1, 1, 1, 2), (1, 1, 3), 1, 0, 1, "chw",
                                                t_in=1, banks=2), 10, 5),
)

POOL_PROOFS = (
    # Overlapping 1x2 windows, stride 1, on a 1x3 map: 2 cells, the middle input in both windows;
    # 3 inputs on a 2-bit index (carries the invalid 3), T1 = 2 on a 2-bit count (carries 3).
    ProofCase("pool_max_overlap", PoolConfig("pool_max_overlap", (1, 1, 3), (1, 2), 1, "max", 2, "chw"), 12),
    ProofCase("pool_sum_overlap", PoolConfig("pool_sum_overlap", (1, 1, 3), (1, 2), 1, "sum", 2, "chw"), 12),
)
# Double-buffered (banks == 2): the max case with two cell banks; its bound holds three samples, the third
# pooled into the first one's bank after that was swept.
POOL_BANKED_PROOFS = (
    ProofCase("pool_max_overlap_banked",
              PoolConfig("pool_max_overlap_banked", (1, 1, 3), (1, 2), 1, "max", 2, "chw", banks=2), 12, 4),
)

# One edit each; the proof named beside it must refute it (the failed properties listed).
CONV_MUTATIONS = {
    "row_step_ignores_stride": (Mutation(
        "row_step_ignores_stride", "pascal_hdl.gateware.conv",
        "step_w, step_a = sh * kw * groups, wo * groups", "step_w, step_a = kw * groups, wo * groups",
        "the weight address of the next row tap ignores the row stride"),
        "conv_scatter_stride2_pad1", ("receptive field",)),
    "column_word_steps_up": (Mutation(
        "column_word_steps_up", "pascal_hdl.gateware.conv",
        'a_tap.eq(cur["a_tap"] - groups)', 'a_tap.eq(cur["a_tap"] + groups)',
        "the next column tap writes the output to the right instead of the left"),
        "conv_scatter_stride2_pad1", ("receptive field",)),
    "unreached_column_issued": (Mutation(
        "unreached_column_issued", "pascal_hdl.gateware.conv",
        "works = (count != 0) & (p_ny != 0) & (p_nx != 0)", "works = (count != 0) & (p_ny != 0)",
        "an input whose column reaches no output (stride gap) is scattered anyway"),
        "conv_scatter_stride3_hwc", ("no stray issue", "receptive field", "once per spike")),
    "extra_spike": (Mutation(
        "extra_spike", "pascal_hdl.gateware.conv",
        'with m.Elif(cur["rep"] != cur["count"] - 1):', 'with m.Elif(cur["rep"] != cur["count"]):',
        "an event of count c is scattered c + 1 times"),
        "conv_scatter_stride3_hwc", ("no stray issue", "once per spike", "receptive field")),
    "pool_max_takes_min": (Mutation(
        "pool_max_takes_min", "pascal_hdl.gateware.pool",
        "combined = Mux(old > writeback_count, old, writeback_count)",
        "combined = Mux(old > writeback_count, writeback_count, old)",
        "max pooling keeps the smaller count"),
        "pool_max_overlap", ("max of its window", "skipped only with value 0")),
    "pool_sum_overwrites": (Mutation(
        "pool_sum_overwrites", "pascal_hdl.gateware.pool",
        "combined = old + writeback_count", "combined = writeback_count",
        "sum pooling keeps only the last count of a window"),
        "pool_sum_overlap", ("sum of its window",)),
    "pool_clear_never_writes": (Mutation(
        "pool_clear_never_writes", "pascal_hdl.gateware.pool",
        "m.d.comb += [s_wr.en.eq(1), s_wr.addr.eq(neuron), s_wr.data.eq(0)]\n                with m.If(is_last):",
        "m.d.comb += [s_wr.addr.eq(neuron), s_wr.data.eq(0)]\n                with m.If(is_last):",
        "reset: the CLEAR phase never writes (a reset leaves the interrupted sample's cell values)"),
        "pool_sum_overlap", ("sum of its window", "skipped only with value 0")),
    # The bank logic (banks == 2), refuted by the banked proofs.
    "conv_hand_over_mid_drain": (Mutation(
        "conv_hand_over_mid_drain", "pascal_hdl.gateware.conv",
        "with m.If(full & (phase == ConvPhase.ACCUMULATE)):", "with m.If(full):",
        "double buffer: a complete sample waiting in its bank is handed over while the neurons still read "
        "the other bank (their read-out cut short, the next sample scattered into the bank being read)"),
        "conv_scatter_tiny_banked", ("no event taken beyond the samples the engine can hold", "bank reuse",
                                     "outputs in increasing index order")),
    "conv_hand_over_keeps_first": (Mutation(
        "conv_hand_over_keeps_first", "pascal_hdl.gateware.conv",
        "[bank.eq(~bank), full.eq(0), port.eq(0)] + [first.eq(1) for first in firsts]",
        "[bank.eq(~bank), full.eq(0), port.eq(0)]",
        "double buffer: the hand-over does not restart the input rules (the next sample's first event is "
        "checked against the previous sample's last index and dropped)"),
        "conv_scatter_tiny_banked", ("complete", "receptive field", "no stray issue", "once per spike")),
    "pool_hand_over_mid_sweep": (Mutation(
        "pool_hand_over_mid_sweep", "pascal_hdl.gateware.pool",
        "with m.If(full & (phase == Phase.ACCUMULATE)):", "with m.If(full):",
        "double buffer: a complete sample waiting in its bank is handed over while the sweep still emits the "
        "other bank (the sweep restarts on the new bank, the old sample's last cells are lost)"),
        "pool_max_overlap_banked", ("stream: o.payload stable while valid", "stream: o.valid held until taken",
                                    "increasing index order", "max of its window")),
    "pool_banks_never_swap": (Mutation(
        "pool_banks_never_swap", "pascal_hdl.gateware.pool",
        "m.d.sync += [bank.eq(~bank), full.eq(0), first.eq(1), last_seen.eq(0)]",
        "m.d.sync += [full.eq(0), first.eq(1), last_seen.eq(0)]",
        "double buffer: the banks never swap at the hand-over (the sweep reads the bank that was not pooled into)"),
        "pool_max_overlap_banked", ("max of its window", "skipped only with value 0")),
    # In double_buffer (conv.py, shared with the pooling unit): refuted through the pooling unit, whose proof
    # checks values (:func:`load_case_mutant`), only where a bank is reused.
    "bank_not_cleared_after_sweep": (Mutation(
        "bank_not_cleared_after_sweep", "pascal_hdl.gateware.conv",
        "write.en.eq(Mux(input_writes, 1, output_wr.en & (clearing | ~input_reads))),",
        "write.en.eq(Mux(input_writes, 1, output_wr.en & clearing)),",
        "double buffer: the output side's writes (the sweep's and the neurons' clear) are dropped outside "
        "CLEAR (a read-out bank keeps its values into the sample filled into it next)"),
        "pool_max_overlap_banked", ("max of its window", "skipped only with value 0")),
}

# Names unique across every table of designs broken on purpose (mutants.py checks its own tables).
_CLASHES = set(CONV_MUTATIONS) & set(all_mutation_names())
if _CLASHES or any(name != mutation.name for name, (mutation, _, _) in CONV_MUTATIONS.items()):  # pragma: no cover
    raise MutationError(f"conv/pool mutation names must be unique across the mutation tables and match their "
                        f"keys: {sorted(_CLASHES)}")

CASES = {case.name: case for case in CONV_PROOFS + POOL_PROOFS + CONV_BANKED_PROOFS + POOL_BANKED_PROOFS}


_POOL_IMPORT = "from pascal_hdl.gateware.conv import decode_index_signals, double_buffer"


def load_case_mutant(mutation: Mutation, case: ProofCase, workdir):
    """The design module a case's harness builds for ``mutation`` (:func:`load_mutant`); a mutant of
    ``conv.py`` on a pooling case: a copy of ``pool.py`` whose ``double_buffer`` is the mutant's."""
    module = load_mutant(mutation, workdir)
    if case.harness_class is PoolHarness and mutation.target == "pascal_hdl.gateware.conv":
        pool = load_mutant(Mutation(f"{mutation.name}_pool", "pascal_hdl.gateware.pool", _POOL_IMPORT, _POOL_IMPORT,
                                    "the pooling unit, with the mutant's double_buffer"), workdir)
        pool.double_buffer = module.double_buffer
        return pool
    return module


def prove(case: ProofCase, workdir, module=None, mode: str = "bmc", name: str | None = None,
          depth: int | None = None, timeout: int | None = None) -> ProofResult:
    """Bounded proof (``mode="bmc"``, bound :attr:`ProofCase.depth`) or the cover run (``"cover"``, bound
    :attr:`ProofCase.cover_depth`) of one case; ``depth`` overrides the bound, ``timeout`` (seconds) stops
    SymbiYosys (status ``TIMEOUT``)."""
    harness = case.harness_class(case.config, module)
    name = name or f"{case.name}_{mode}"
    depth = depth or (case.cover_depth if mode == "cover" else case.depth)
    return run_proof(harness, harness.ports, name, Path(workdir), mode=mode, depth=depth, timeout=timeout,
                     flatten_memories=True)
