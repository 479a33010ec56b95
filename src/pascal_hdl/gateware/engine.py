"""The layer engine: event-driven synaptic accumulation and PASC-IF neurons (or the readout).

Data flow of one sample through a :class:`LayerEngine`::

    i: (index j, count c_j, last) events   -- a burst of c_j spikes of input j
      -> ACCUMULATE: for each of the c_j spikes, for each group g of `lanes` neurons:
                     acc[g][k] += W[g*lanes + k, j]            (lanes adders, no multiplier)
      -> hidden:  NEURONS: per group, `lanes` PascIfNeuron units run with
                     v0, theta, I[0] = acc (T1 = 1), T2 = L; then the counts are
                     sent as o: (index n, count, last) events (zero counts skipped)
      -> readout: COLLECT: logits[n] = acc[n] + bias[n], running argmax;
                     o: {logits, cls}

Why the whole input current in one stage-1 step. A spike train with count
``c_j`` is a burst, so ``s_j[t] = [c_j > t]`` and the per-step currents are
``I[t] = W @ s[t]``. The neuron depends only on ``S = sum_t I[t] = W @ c``
(the equivalence theorem of ``docs/semantics.md`` §2 holds for any
order of the currents over the T1 steps, and ``T1 = 1`` with ``I[0] = S`` is one
such order followed by ``max(1, T2) - 1`` settle steps, enough to reach any
count in ``0..T2``). Accumulating ``S`` spike by spike costs exactly one
addition per input spike per synapse -- the same work as per-step currents --
but needs no per-step neuron updates, no storage of input trains and only
``T2`` neuron cycles per group. The transmitted burst and the count of every
neuron are those of the contract; ``pasc_if(S[None], theta, v0, T2, trace=True)``
gives every stage step of the units inside the engine.

Event-driven: a silent input is simply not sent (one handshake cycle if it is
sent with count 0); a spike costs ``groups`` cycles. Events of one sample must
have strictly increasing indices, counts in ``[0, T1]`` and indices below
``in_features``; others are dropped and flagged on ``rejected`` (this also keeps
the accumulators within their derived widths). The engine processes the next
sample's events once it has sent the last output of the current one (the
first of them may wait in the one-event input register meanwhile).

Reset. The phase register's reset value is CLEAR: after ``rst`` (at any cycle,
also in the middle of a sample) and at power-up the engine writes zero to every
accumulator word, one word (group) per cycle, ``groups`` cycles
(:attr:`LayerConfig.clear_cycles`) with ``i.ready`` low, then takes events.
Every other register returns to its initial value with ``rst``; the weight and
parameter memories are read-only. So the next sample after a reset starts from
the same state as the first one after power-up.
"""
from __future__ import annotations

from amaranth import Array, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from pascal_hdl.config import HardwareError, LayerConfig
from pascal_hdl.gateware.neuron import PascIfNeuron
from pascal_hdl.model.engine import Phase
from pascal_hdl.widths import check_type

__all__ = ["LayerEngine", "breaks_stream_rule", "event_layout", "result_layout", "times_constant", "times_count"]


def event_layout(features: int, levels: int, minimum: int = 0) -> data.StructLayout:
    """Payload of a spike-train event: neuron ``index``, burst ``count`` (``minimum..levels``; a negative
    ``minimum`` makes it signed: the integer pixels of an analog input), ``last`` of the sample."""
    return data.StructLayout({"index": range(max(features, 2)), "count": range(minimum, levels + 1), "last": 1})


def result_layout(classes: int, logit_width: int) -> data.StructLayout:
    """Payload of the readout: integer ``logits`` and the argmax ``cls`` (first maximum)."""
    return data.StructLayout({"logits": data.ArrayLayout(signed(logit_width), classes), "cls": range(max(classes, 2))})


def breaks_stream_rule(index, count, in_features: int, t_in: int, seen, prev_index, t_min: int = 0):
    """The stream rule of a stage's input as a combinational expression, one home for every block that
    judges input events (the layer and conv engines, the core's gate): high if the event's index is not
    below ``in_features``, its count is above ``t_in`` (or below a negative ``t_min``: signed analog
    input), or ``seen`` (an event of the sample was kept before) and its index is not above
    ``prev_index`` (the last kept one). The cycle models use
    :func:`pascal_hdl.model.engine.breaks_stream_rule`."""
    bad = (index >= in_features) | (count > t_in) | (seen & (index <= prev_index))
    return bad | (count < t_min) if t_min < 0 else bad


def _sum(terms):
    """The sum of ``terms`` (values), 0 if there are none."""
    if not terms:
        return 0
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return total


def times_constant(value, constant: int):
    """``value * constant`` from shifts and adders (a constant, so no multiplier is inferred)."""
    return _sum([value << bit for bit in range(constant.bit_length()) if constant >> bit & 1])


def times_count(value, count):
    """``value * count`` for a signal ``count`` from shifts, masks and adders (one ``value << j`` per bit of
    ``count``; a signed ``count``'s top bit weighs ``-2**(n-1)``, so it subtracts), so no multiplier (and no
    DSP block) is inferred: ``count`` is a few bits wide."""
    bits = len(count)
    top = bits - 1 if count.shape().signed else bits
    terms = [Mux(count[bit], value << bit, 0) for bit in range(top)]
    if top < bits:
        terms.append(Mux(count[top], -(value << top), 0))
    return _sum(terms)


class _BankPort:
    """The accumulate or the drain side's view of an accumulator port of a double-buffered engine:
    ``addr``, ``en`` and ``data`` (read data, or the word to write), routed to a bank by :func:`_route_banks`."""

    def __init__(self, depth: int, width: int, name: str):
        self.addr = Signal(range(depth), name=f"{name}_addr")
        self.en = Signal(name=f"{name}_en")
        self.data = Signal(width, name=f"{name}_data")


def _route_banks(m, bank_memories, bank, clearing, fill, drain):
    """Connect the two sides' ports to the two bank memories: bank ``bank`` to the accumulate side
    (``fill``: read, write), the other to the drain side; in CLEAR both banks follow the accumulate
    side's write port (zero, word by word). Each bank's read port is transparent for its write port
    (a word written back in the cycle it is read again, groups == 1). Read data is selected by the
    bank register, which changes only at a hand-over, when neither side has a read in flight."""
    (fill_rd, fill_wr), (drain_rd, drain_wr) = fill, drain
    read_data = []
    for number, bank_memory in enumerate(bank_memories):
        wr = bank_memory.write_port()
        rd = bank_memory.read_port(transparent_for=(wr,))
        fills = (bank == number) | clearing
        owned = bank == number
        m.d.comb += [
            rd.addr.eq(Mux(owned, fill_rd.addr, drain_rd.addr)),
            rd.en.eq(Mux(owned, fill_rd.en, drain_rd.en)),
            wr.addr.eq(Mux(fills, fill_wr.addr, drain_wr.addr)),
            wr.en.eq(Mux(fills, fill_wr.en, drain_wr.en)),
            wr.data.eq(Mux(fills, fill_wr.data, drain_wr.data)),
        ]
        read_data.append(rd.data)
    m.d.comb += [fill_rd.data.eq(Mux(bank, read_data[1], read_data[0])),
                 drain_rd.data.eq(Mux(bank, read_data[0], read_data[1]))]


class LayerEngine(wiring.Component):
    """One layer of the network core (see the module docstring for the data flow).

    Parameters
    ----------
    config : LayerConfig
        Weights (on-chip memory initialized from them), thresholds, ``v0``
        or readout bias, ``T1``, ``T2``, lanes; all widths derive from it.

    Members
    -------
    i : In(stream.Signature(event_layout(in_features, t_in)))
        Input events, through a one-event input register (``ready`` while it is
        empty or being emptied; it depends on the engine state only).
    o : Out(stream.Signature(...))
        Hidden layer: events ``event_layout(out_features, t_out)`` in increasing
        index order, only nonzero counts plus always the last neuron (with
        ``last`` set). Readout: one ``result_layout(out_features, logit_width)``
        per sample. ``valid`` depends on the engine state only.
    rejected : Out(1)
        An input event is taken from the input register and dropped in this
        cycle (index out of range or not increasing, count above ``t_in`` or below ``t_min``).

    Timing (with ``i`` always valid and ``o`` always ready; :class:`EngineModel`
    reproduces it cycle by cycle): after a reset, CLEAR for ``groups`` cycles
    (``i.ready`` low, see the module docstring); an event enters the input register in the
    cycle it is accepted and is processed from the next cycle on, taking
    ``max(1, count * groups)`` cycles (with ``config.mac``: ``max(1, groups)``, the write-back adding
    ``count * weight`` per lane; the register refills meanwhile, so
    back-to-back events leave no gap); after the last one, per group: READ 1,
    START 1, RUN ``T2``, then one EMIT cycle per neuron up to the last one
    (hidden), or READ 1 and one COLLECT cycle per neuron, then FINISH 1 and
    RESULT (readout).
    """

    def __init__(self, config: LayerConfig):
        self._MustUse__silence = True  # no "never used" warning if validation fails
        self.config = check_type("LayerEngine", "config", config, LayerConfig)
        if config.t_min < 0 and not config.mac:
            raise HardwareError(f"layer '{config.name}': signed input counts (t_min={config.t_min}, an analog input) "
                                "need mac (each event adds pixel * weight once); an engine without it repeats counts")
        members = {
            "i": In(stream.Signature(event_layout(config.in_features, config.t_in, config.t_min))),
            "rejected": Out(1),
        }
        if config.is_readout:
            members["o"] = Out(stream.Signature(result_layout(config.out_features, config.logit_width)))
        else:
            members["o"] = Out(stream.Signature(event_layout(config.out_features, config.t_out)))
        super().__init__(members)
        self._MustUse__silence = False

    def elaborate(self, platform):
        cfg = self.config
        m = Module()
        groups, lanes = cfg.groups, cfg.lanes
        wb, aw = cfg.weight_width, cfg.acc_width

        m.submodules.weights = weights = memory.Memory(
            shape=unsigned(lanes * wb), depth=cfg.weight_depth, init=cfg.weight_words())
        banked = cfg.banks == 2
        if banked:
            bank_memories = [memory.Memory(shape=unsigned(lanes * aw), depth=groups, init=[]) for _ in range(2)]
            m.submodules.acc0, m.submodules.acc1 = bank_memories
        else:
            m.submodules.acc = acc = memory.Memory(shape=unsigned(lanes * aw), depth=groups, init=[])
        param_width = cfg.logit_width if cfg.is_readout else cfg.v0_width + cfg.theta_width
        m.submodules.params = params = memory.Memory(
            shape=unsigned(lanes * param_width), depth=groups, init=cfg.param_words())
        w_rd = weights.read_port()
        if banked:
            # The accumulate side's ports (a_rd, a_wr) and the drain side's (drain_rd, drain_wr), each
            # routed to the bank that side owns (see _route_banks).
            bank = Signal()                          # the bank the accumulate side fills
            a_rd, a_wr = _BankPort(groups, lanes * aw, "fill_rd"), _BankPort(groups, lanes * aw, "fill_wr")
            drain_rd, drain_wr = _BankPort(groups, lanes * aw, "drain_rd"), _BankPort(groups, lanes * aw, "drain_wr")
        else:
            a_wr = acc.write_port()
            # Transparent: an accumulator written back in the cycle it is read again (groups == 1).
            a_rd = acc.read_port(transparent_for=(a_wr,))
            drain_rd, drain_wr = a_rd, a_wr
        p_rd = params.read_port()

        phase = Signal(Phase, init=Phase.CLEAR)      # reset and power-up: clear the accumulators first
        busy = Signal()                              # issuing the remaining spikes of an event
        base = Signal(range(cfg.weight_depth))       # j * groups of that event
        group = Signal(range(groups))                # also the word being cleared in CLEAR
        # The group being issued: the same counter as the neurons' with one bank; its own with two.
        fill_group = Signal(range(groups), name="fill_group") if banked else group
        held = Signal(name="held") if banked else None   # two banks: a full bank waits for the drain side
        repeats = Signal(range(cfg.t_in + 1))        # spikes left after the current one
        last_seen = Signal()
        first = Signal(init=1)                       # no event of this sample yet
        prev_index = Signal.like(self.i.payload.index)
        lane = Signal(range(lanes))
        neuron = Signal(range(cfg.out_features))     # output neuron index n = group*lanes + lane
        run_steps = Signal(range(max(cfg.t_out or 1, 2)))

        # ---------------------------------------------------------------- accumulate
        # Input register (`buffered`, `payload`): no combinational path runs from the
        # producer (another engine's output multiplexer) into the address logic.
        buffered = Signal()
        payload = Signal.like(self.i.payload)
        if banked:
            can_take = (phase != Phase.CLEAR) & ~held & ~busy
        else:
            can_take = (phase == Phase.ACCUMULATE) & ~busy
        clearing = phase == Phase.CLEAR
        m.d.comb += self.i.ready.eq(~clearing & (~buffered | can_take))
        accept = buffered & can_take
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [buffered.eq(1), payload.eq(self.i.payload)]
        with m.Elif(accept):
            m.d.sync += buffered.eq(0)
        bad = breaks_stream_rule(payload.index, payload.count, cfg.in_features, cfg.t_in, ~first, prev_index,
                                 cfg.t_min)
        count = Signal.like(payload.count)
        m.d.comb += [count.eq(Mux(bad, 0, payload.count)), self.rejected.eq(accept & bad)]

        issue = Signal()
        issue_addr = Signal(range(cfg.weight_depth))
        issue_group = Signal(range(groups))
        start_addr = times_constant(payload.index, groups)

        def finish_sample_input():
            if banked:   # the bank is full: hand it to the drain side (next cycle or once it is free)
                m.d.sync += [held.eq(1), first.eq(1), last_seen.eq(0)]
            else:
                m.d.sync += [phase.eq(Phase.READ), group.eq(0), lane.eq(0), neuron.eq(0)]

        # mac: one pass over the groups per event; the write-back multiplies by the event's count, kept in
        # `scale` (without mac it does not exist: the Verilog is as before).
        scale = Signal.like(count, name="scale") if cfg.mac else None
        issue_scale = Signal.like(count, name="issue_scale") if cfg.mac else None
        if cfg.mac:
            m.d.comb += issue_scale.eq(Mux(accept, count, scale))
        with m.If(accept):
            m.d.sync += last_seen.eq(payload.last)
            with m.If(~bad):
                m.d.sync += [first.eq(0), prev_index.eq(payload.index)]
            with m.If(count != 0):
                m.d.comb += [issue.eq(1), issue_addr.eq(start_addr), issue_group.eq(0)]
                m.d.sync += base.eq(start_addr)
                if cfg.mac:
                    m.d.sync += scale.eq(count)
                    if groups == 1:
                        with m.If(payload.last):
                            finish_sample_input()
                    else:
                        m.d.sync += [busy.eq(1), repeats.eq(0), fill_group.eq(1)]
                elif groups == 1:
                    m.d.sync += [busy.eq(count > 1), repeats.eq(count - 2), fill_group.eq(0)]
                    with m.If((count == 1) & payload.last):
                        finish_sample_input()
                else:
                    m.d.sync += [busy.eq(1), repeats.eq(count - 1), fill_group.eq(1)]
            with m.Elif(payload.last):
                finish_sample_input()
        with m.Elif(busy):
            m.d.comb += [issue.eq(1), issue_addr.eq(base + fill_group), issue_group.eq(fill_group)]
            with m.If(fill_group == groups - 1):
                with m.If(repeats == 0):
                    m.d.sync += busy.eq(0)
                    with m.If(last_seen):
                        finish_sample_input()
                with m.Else():
                    m.d.sync += [repeats.eq(repeats - 1), fill_group.eq(0)]
            with m.Else():
                m.d.sync += fill_group.eq(fill_group + 1)

        # Read in the issue cycle, add and write back in the next one.
        writeback = Signal()
        writeback_group = Signal(range(groups))
        m.d.sync += [writeback.eq(issue), writeback_group.eq(issue_group)]
        if cfg.mac:
            writeback_scale = Signal.like(count, name="writeback_scale")
            m.d.sync += writeback_scale.eq(issue_scale)
        if banked:
            m.d.comb += [
                w_rd.addr.eq(issue_addr),
                a_rd.addr.eq(issue_group),
                a_rd.en.eq(issue),
                drain_rd.addr.eq(group),
                drain_rd.en.eq(phase == Phase.READ),
                p_rd.addr.eq(drain_rd.addr),     # the parameters of the group being drained
                p_rd.en.eq(drain_rd.en),
            ]
        else:
            m.d.comb += [
                w_rd.addr.eq(issue_addr),
                a_rd.addr.eq(Mux(issue, issue_group, group)),
                a_rd.en.eq(issue | (phase == Phase.READ)),
                p_rd.addr.eq(group),
                p_rd.en.eq(phase == Phase.READ),
            ]
        acc_lanes = [a_rd.data.word_select(k, aw).as_signed() for k in range(lanes)]
        drain_lanes = [drain_rd.data.word_select(k, aw).as_signed() for k in range(lanes)] if banked else acc_lanes
        with m.If(writeback):
            m.d.comb += [a_wr.en.eq(1), a_wr.addr.eq(writeback_group)]
            for k in range(lanes):
                weight = w_rd.data.word_select(k, wb).as_signed()
                if cfg.mac and cfg.multiplier == "dsp":     # a product yosys maps onto a DSP block
                    weight = weight * writeback_scale
                elif cfg.mac:
                    weight = times_count(weight, writeback_scale)
                m.d.comb += a_wr.data.word_select(k, aw).eq(acc_lanes[k] + weight)

        # ---------------------------------------------------------------- clear
        # After reset: zero accumulator word `group`, one per cycle (no event is taken, so the
        # write port is free; with two banks both follow it), then accumulate.
        with m.If(clearing):
            m.d.comb += [a_wr.en.eq(1), a_wr.addr.eq(group), a_wr.data.eq(0)]
            with m.If(group == groups - 1):
                m.d.sync += [phase.eq(Phase.ACCUMULATE), group.eq(0)]
            with m.Else():
                m.d.sync += group.eq(group + 1)

        def end_sample():
            if banked:   # the drain side is free again (ACCUMULATE: no bank to drain)
                m.d.sync += [phase.eq(Phase.ACCUMULATE), group.eq(0)]
            else:
                m.d.sync += [phase.eq(Phase.ACCUMULATE), first.eq(1), last_seen.eq(0), group.eq(0)]

        if banked:
            # Hand-over: a full bank and a free drain side; the accumulate side takes the other bank.
            with m.If(held & (phase == Phase.ACCUMULATE)):
                m.d.sync += [held.eq(0), bank.eq(~bank), phase.eq(Phase.READ), group.eq(0), lane.eq(0), neuron.eq(0)]
            _route_banks(m, bank_memories, bank, clearing, (a_rd, a_wr), (drain_rd, drain_wr))

        def next_lane(done):
            m.d.sync += neuron.eq(neuron + 1)
            with m.If(neuron == cfg.out_features - 1):
                done()
            with m.Elif(lane == lanes - 1):
                m.d.sync += [lane.eq(0), group.eq(group + 1), phase.eq(Phase.READ)]
            with m.Else():
                m.d.sync += lane.eq(lane + 1)

        if cfg.is_readout:
            self._readout(m, phase, lane, neuron, group, drain_lanes, p_rd, drain_wr, next_lane, end_sample)
        else:
            self._neurons(m, phase, lane, neuron, group, run_steps, drain_lanes, p_rd, drain_wr, next_lane, end_sample)
        return m

    def _neurons(self, m, phase, lane, neuron, group, run_steps, acc_lanes, p_rd, a_wr, next_lane, end_sample):
        cfg = self.config
        units = []
        for k in range(cfg.lanes):
            unit = PascIfNeuron(current_width=cfg.acc_width, v0_width=cfg.v0_width, theta_width=cfg.theta_width,
                                max_t_in=1, max_t_out=cfg.t_out, held_theta=True)
            m.submodules[f"neuron{k}"] = unit
            word = p_rd.data.word_select(k, cfg.v0_width + cfg.theta_width)
            # S registered in START, used in INTEGRATE: no memory bypass logic before the adder.
            current = Signal(signed(cfg.acc_width), name=f"current{k}")
            with m.If(phase == Phase.START):
                m.d.sync += current.eq(acc_lanes[k])
            m.d.comb += [
                unit.start.eq(phase == Phase.START),
                unit.v0.eq(word[:cfg.v0_width].as_signed()),
                unit.theta.eq(word[cfg.v0_width:]),
                unit.t_in.eq(1),
                unit.t_out.eq(cfg.t_out),
                unit.current.eq(current),
            ]
            units.append(unit)
        counts = Array(unit.count for unit in units)

        with m.Switch(phase):
            with m.Case(Phase.READ):
                m.d.sync += phase.eq(Phase.START)
            with m.Case(Phase.START):
                m.d.comb += [a_wr.en.eq(1), a_wr.addr.eq(group), a_wr.data.eq(0)]
                m.d.sync += [phase.eq(Phase.RUN), run_steps.eq(0)]
            with m.Case(Phase.RUN):
                m.d.sync += run_steps.eq(run_steps + 1)
                with m.If(run_steps == cfg.t_out - 1):
                    m.d.sync += phase.eq(Phase.EMIT)
            with m.Case(Phase.EMIT):
                count = counts[lane]
                is_last = neuron == cfg.out_features - 1
                wanted = (count != 0) | is_last
                m.d.comb += [
                    self.o.valid.eq(wanted),
                    self.o.payload.index.eq(neuron),
                    self.o.payload.count.eq(count),
                    self.o.payload.last.eq(is_last),
                ]
                with m.If(~wanted | self.o.ready):
                    next_lane(end_sample)

    def _readout(self, m, phase, lane, neuron, group, acc_lanes, p_rd, a_wr, next_lane, end_sample):
        cfg = self.config
        lw = cfg.logit_width
        logits = Signal(data.ArrayLayout(signed(lw), cfg.out_features))
        best = Signal(signed(lw))
        cls = Signal(range(max(cfg.out_features, 2)))
        # Two-stage pipeline (Fmax): COLLECT registers lane mux + bias addition,
        # the next cycle compares and stores; FINISH drains the last logit.
        logit = Signal(signed(lw))
        logit_index = Signal.like(neuron)
        logit_valid = Signal()
        m.d.sync += [
            logit.eq(Array(acc_lanes)[lane] + p_rd.data.word_select(lane, lw).as_signed()),
            logit_index.eq(neuron),
            logit_valid.eq(phase == Phase.COLLECT),
        ]
        with m.If(logit_valid):
            m.d.sync += logits[logit_index].eq(logit)
            with m.If((logit_index == 0) | (logit > best)):
                m.d.sync += [best.eq(logit), cls.eq(logit_index)]
        m.d.comb += [self.o.payload.logits.eq(logits), self.o.payload.cls.eq(cls)]

        def finish():
            m.d.sync += phase.eq(Phase.FINISH)

        with m.Switch(phase):
            with m.Case(Phase.READ):
                m.d.sync += phase.eq(Phase.COLLECT)
            with m.Case(Phase.COLLECT):
                with m.If(lane == 0):
                    m.d.comb += [a_wr.en.eq(1), a_wr.addr.eq(group), a_wr.data.eq(0)]
                next_lane(finish)
            with m.Case(Phase.FINISH):
                m.d.sync += phase.eq(Phase.RESULT)
            with m.Case(Phase.RESULT):
                m.d.comb += self.o.valid.eq(1)
                with m.If(self.o.ready):
                    end_sample()


