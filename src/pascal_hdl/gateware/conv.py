"""The Conv2d layer engine: event-driven scatter of kernel weights, then the Linear engine's neurons.

Data flow of one sample through a :class:`ConvEngine` (the arithmetic and the
reasons are in :mod:`pascal_hdl.model.conv`)::

    i: (index, count, last)  -- a burst of `count` spikes of input (c, y, x)
      -> input register B
      -> DECODE: (c, y, x) from the index by two exact constant divisions
                 (shift-add multiplication by a reciprocal, `MagicDivider`),
                 row/column tap tables (ny, ky0, oy0), (nx, kx0, ox0) read from ROMs,
                 weight and accumulator base addresses; rules checked -> register D
      -> ISSUE:  for each spike, for each valid tap (ky0 + iy*sh, kx0 + ix*sw),
                 for each group g of `lanes` output channels:
                    acc[(oy0 - iy, ox0 - ix)][g][k] += W[g*lanes + k, c, ky, kx]
                 one accumulator word per cycle, addresses stepped by constants
      -> NEURONS: per accumulator word (position p, group g): START (units
                 started, word cleared), RUN T2, LATCH (counts handed to the
                 emitter, next word read): T2 + 2 cycles per word
      -> EMIT:   meanwhile, the handed-over word's nonzero counts (and the layer's
                 last neuron), lowest lane first, one per cycle:
                 index = p*O + g*lanes + k ("hwc" order)

No multiplier: the address arithmetic is adders and constant shift-add
products (:func:`~pascal_hdl.gateware.engine.times_constant`); counts are
repeated spikes, as in the Linear engine. With
:attr:`~pascal_hdl.model.conv.ConvConfig.mac` each tap is issued once per
event and the write-back adds ``count * weight``, built per lane from one
shifted, masked weight per count bit and adders
(:func:`~pascal_hdl.gateware.engine.times_count`: no DSP block is used, so
the number of lanes is not limited by the part's multipliers); with
:attr:`~pascal_hdl.model.conv.ConvConfig.multiplier` ``"dsp"`` the product is
an Amaranth ``*`` that yosys maps onto a DSP block per lane (iCE40 SB_MAC16,
ECP5 MULT18X18D), with the same cycles and sums. Decode, issue
and input register form a pipeline, so back-to-back events that do work
leave no gap.

Reset: as the Linear engine's, the phase register resets to CLEAR, which
writes zero to every accumulator word, one per cycle: ``acc_depth`` cycles
(:attr:`~pascal_hdl.model.conv.ConvConfig.clear_cycles`) after ``rst`` at any
cycle and at power-up, with every input port's ``ready`` low.
"""
from __future__ import annotations

from dataclasses import dataclass

from amaranth import Array, Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from pascal_hdl.gateware.engine import breaks_stream_rule, event_layout, times_constant, times_count
from pascal_hdl.gateware.neuron import PascIfNeuron
from pascal_hdl.model.conv import ConvConfig, ConvPhase, index_dividers, magic_divider
from pascal_hdl.widths import check_type

__all__ = ["ConvEngine", "SidePort", "decode_index_signals", "double_buffer", "issue_signature"]


def _pack(fields: list[tuple[int, int]]) -> int:
    """Unsigned fields ``(value, width)`` packed low first."""
    word, offset = 0, 0
    for value, width in fields:
        assert 0 <= value < (1 << width)
        word |= value << offset
        offset += width
    return word


def decode_index_signals(m: Module, index, shape, layout: str):
    """Signals ``(c, y, x)`` of a flat ``index`` into a ``(C, H, W)`` map in ``layout`` (combinational):
    two constant divisions as shift-add products by a reciprocal (:func:`~pascal_hdl.model.conv.index_dividers`,
    exact for every index of the map), then constant products and subtractions. No multiplier."""
    in_c, in_h, in_w = shape
    outer, inner = index_dividers(shape, layout)
    size = max(in_c * in_h * in_w, 2)
    q_outer, q_inner = Signal(range(size)), Signal(range(size))
    m.d.comb += [q_outer.eq(times_constant(index, outer.multiplier) >> outer.shift),
                 q_inner.eq(times_constant(index, inner.multiplier) >> inner.shift)]
    chan, row, col = Signal(range(in_c)), Signal(range(in_h)), Signal(range(in_w))
    if layout == "chw":      # q_outer = c, q_inner = c*H + y
        m.d.comb += [chan.eq(q_outer), row.eq(q_inner - times_constant(q_outer, in_h)),
                     col.eq(index - times_constant(q_inner, in_w))]
    else:                    # q_outer = y, q_inner = y*W + x
        m.d.comb += [row.eq(q_outer), col.eq(q_inner - times_constant(q_outer, in_w)),
                     chan.eq(index - times_constant(q_inner, in_c))]
    return chan, row, col


class SidePort:
    """One side's view of a memory port of a :func:`double_buffer` (signals ``{name}_addr``,
    ``{name}_en``, ``{name}_data``; the side drives ``addr``, ``en`` and a write port's ``data``)."""

    def __init__(self, name: str, depth: int, width: int):
        self.addr = Signal(range(depth), name=f"{name}_addr")
        self.en = Signal(name=f"{name}_en")
        self.data = Signal(width, name=f"{name}_data")


@dataclass(frozen=True)
class DoubleBuffer:
    """What :func:`double_buffer` returns: the four side ports and the hand-over state."""

    input_wr: SidePort
    input_rd: SidePort
    output_wr: SidePort
    output_rd: SidePort
    bank: Signal
    """The bank the input side owns (the block flips it when it hands a complete sample over)."""
    full: Signal
    """A complete sample waits in ``bank`` for the output side to be idle (set and cleared by the block)."""
    input_side: Signal
    """The input side may update: not ``clearing`` and not ``full``."""


def double_buffer(m: Module, name: str, width: int, depth: int, clearing) -> DoubleBuffer:
    """Two memory banks ``{name}_bank0``, ``{name}_bank1`` (``depth`` words of ``width`` bits, each with
    one write port and one read port transparent for it, as one EBR) and the routing of two sides.

    The *input* side (read in an update cycle, write-back in the next one) owns bank ``bank``; the
    *output* side (read, clear, emit) owns the other one, and in ``clearing`` writes both banks (the
    CLEAR after reset zeroes one word of each per cycle). A write-back goes to the bank that was read
    one cycle before (``bank`` of the previous cycle), so the banks may swap between a sample's last
    update and its write-back. Returns the side ports (:class:`SidePort`) and the hand-over state
    (:class:`DoubleBuffer`); read data arrive one cycle after ``en``, from the bank each side owned then
    (the output side's bank does not change while it works: the swap happens when it is idle)."""
    bank = Signal()     # the bank the input side updates; the output side works on the other
    full = Signal()     # a complete sample waits in `bank` for the output side to be idle
    banks = []
    for number in range(2):
        m.submodules[f"{name}_bank{number}"] = bank_memory = memory.Memory(shape=unsigned(width), depth=depth,
                                                                          init=[])
        write = bank_memory.write_port()
        banks.append((write, bank_memory.read_port(transparent_for=(write,))))
    input_wr, input_rd, output_wr, output_rd = (SidePort(f"{name}_{side}", depth, width)
                                                for side in ("input_wr", "input_rd", "output_wr", "output_rd"))
    written_bank = Signal(name=f"{name}_written_bank")    # the bank read in the previous cycle
    m.d.sync += written_bank.eq(bank)
    for number, (write, read) in enumerate(banks):
        input_writes = input_wr.en & (written_bank == number)
        input_reads = bank == number
        m.d.comb += [
            write.en.eq(Mux(input_writes, 1, output_wr.en & (clearing | ~input_reads))),
            write.addr.eq(Mux(input_writes, input_wr.addr, output_wr.addr)),
            write.data.eq(Mux(input_writes, input_wr.data, output_wr.data)),
            read.addr.eq(Mux(input_reads, input_rd.addr, output_rd.addr)),
            read.en.eq(Mux(input_reads, input_rd.en, output_rd.en)),
        ]
    m.d.comb += [input_rd.data.eq(Mux(written_bank, banks[1][1].data, banks[0][1].data)),
                 output_rd.data.eq(Mux(bank, banks[0][1].data, banks[1][1].data))]
    input_side = Signal()
    m.d.comb += input_side.eq(~clearing & ~full)
    return DoubleBuffer(input_wr, input_rd, output_wr, output_rd, bank, full, input_side)


def issue_signature(config) -> wiring.Signature:
    """The ``issue`` observation port: ``valid``, weight memory address, accumulator word."""
    return wiring.Signature({"valid": Out(1), "weight": Out(range(max(config.weight_depth, 2))),
                             "word": Out(range(max(config.acc_depth, 2)))})


class ConvEngine(wiring.Component):
    """One hidden Conv2d layer (see the module docstring for the data flow).

    Parameters
    ----------
    config : ConvConfig
        Kernel (weight memory initialized from it), geometry, thresholds,
        ``v0``, ``T1``, ``T2``, lanes over output channels, input layout.

    Members
    -------
    i : In(stream.Signature(event_layout(in_features, t_in, t_min)))
        Input events in increasing index order (``config.input_layout``),
        through a one-event input register.
    o : Out(stream.Signature(event_layout(out_features, t_out)))
        Output events in increasing ``"hwc"`` index order, nonzero counts and
        always the last neuron (with ``last``), as the Linear engine's.
    rejected : Out(1)
        An input event is dropped in this cycle (index out of range or not
        increasing, count above ``t_in``).
    issue : Out(issue_signature(config))
        Observation of the scatter (the formal proofs read it): ``valid`` in an
        issue cycle, with the ``weight`` word read and the accumulator ``word``
        it is added to (in the next cycle).

    Timing: :class:`~pascal_hdl.model.conv.ConvEngineModel`, cycle by cycle
    (after a reset: CLEAR, ``acc_depth`` cycles with ``i.ready`` low).
    ``i.ready`` and ``o.valid`` depend on the engine state only.
    """

    def __init__(self, config: ConvConfig):
        self._MustUse__silence = True  # no "never used" warning if validation fails
        self.config = check_type("ConvEngine", "config", config, ConvConfig)
        super().__init__({
            "i": In(stream.Signature(event_layout(config.in_features, config.t_in, config.t_min))),
            "o": Out(stream.Signature(event_layout(config.out_features, config.t_out))),
            "rejected": Out(1),
            "issue": Out(issue_signature(config)),
        })
        self._MustUse__silence = False

    def elaborate(self, platform):
        cfg = self.config
        m = Module()
        groups, lanes = cfg.groups, cfg.lanes
        wb, aw = cfg.weight_width, cfg.acc_width
        (kh, kw), (sh, sw) = cfg.kernel_size, cfg.stride   # of the last port (the only one wider than 1x1)
        wo = cfg.out_width

        m.submodules.weights = weights = memory.Memory(
            shape=unsigned(lanes * wb), depth=cfg.weight_depth, init=cfg.weight_words())
        banked = cfg.banks == 2
        if not banked:
            m.submodules.acc = acc = memory.Memory(shape=unsigned(lanes * aw), depth=cfg.acc_depth, init=[])
        param_width = cfg.v0_width + cfg.theta_width
        m.submodules.params = params = memory.Memory(
            shape=unsigned(lanes * param_width), depth=groups, init=cfg.param_words())
        w_rd = weights.read_port()
        if not banked:
            a_wr = acc.write_port()
            a_rd = acc.read_port(transparent_for=(a_wr,))
            i_wr = n_wr = a_wr      # one memory: both sides use its ports
            i_rd = n_rd = a_rd
        p_rd = params.read_port()

        phase = Signal(ConvPhase, init=ConvPhase.CLEAR)   # reset and power-up: clear the accumulators first
        clearing = phase == ConvPhase.CLEAR
        if banked:
            # i_*: the issue side's ports (scatter, write-back), n_*: the neuron side's (read, clear).
            buffer = double_buffer(m, "acc", lanes * aw, cfg.acc_depth, clearing)
            i_wr, i_rd, n_wr, n_rd = buffer.input_wr, buffer.input_rd, buffer.output_wr, buffer.output_rd
            bank, full = buffer.bank, buffer.full

            def accumulating():
                return buffer.input_side
        else:
            def accumulating():
                return phase == ConvPhase.ACCUMULATE
        ports = cfg.inputs
        w_range, a_range = range(cfg.weight_depth + 1), range(cfg.acc_depth + 1)
        # The issue loop steps through the taps of the last port, the only one that may be larger than
        # 1x1 (the others reach at most one output position per input: no tap steps).
        n_y = Signal(range(kh + 1))
        n_x = Signal(range(kw + 1))
        # Signed when an input takes the signed pixels of an analog input (t_min < 0, always with mac).
        count_shape = range(min(geometry.t_min for geometry in ports), max(geometry.t_in for geometry in ports) + 1)

        # ---------------------------------------------------------------- decoded register D
        d_valid = Signal()
        d_count = Signal(count_shape)
        d_last = Signal()
        d_ny = Signal.like(n_y)
        d_nx = Signal.like(n_x)
        d_w = Signal(w_range)
        d_a = Signal(a_range)
        d_glast = Signal(range(groups), init=groups - 1)   # last group an event updates (0: diagonal port)

        # ---------------------------------------------------------------- issue state
        busy = Signal()
        launch = d_valid & accumulating() & ~busy
        # The port being decoded; len(ports): every port has seen its last event (until the sample is emitted).
        port = Signal(range(len(ports) + 1))
        rejected = 0
        firsts = []
        with m.If(launch):       # a decoding port below overrides this
            m.d.sync += d_valid.eq(0)

        # ---------------------------------------------------------------- per port: input register B, decode
        for number, (geometry, port_name) in enumerate(zip(ports, cfg.port_names)):
            stream_in = getattr(self, port_name)
            prefix = "" if port_name == "i" else f"{port_name}_"
            p_kh, p_kw = geometry.kernel_size
            _, in_h, in_w = geometry.input_shape
            assert number == len(ports) - 1 or (p_kh, p_kw) == (1, 1) or len(ports) == 1
            p_ny = Signal(range(p_kh + 1), name=f"{prefix}n_y")
            p_nx = Signal(range(p_kw + 1), name=f"{prefix}n_x")
            wy, wx = Signal(w_range, name=f"{prefix}wy"), Signal(w_range, name=f"{prefix}wx")
            ay, ax = Signal(a_range, name=f"{prefix}ay"), Signal(a_range, name=f"{prefix}ax")
            wbits, abits = len(wy), len(ay)
            # Tap tables (ROMs, combinational read): per input row (ny, ky0*kw*G, oy0*Wo*G),
            # per input column (nx, kx0*G, ox0*G); the products are constants here.
            p_groups = geometry.issue_groups
            row_words = [_pack([(t.n, len(p_ny)), (t.k0 * p_kw * p_groups, wbits), (t.o0 * wo * groups, abits)])
                         for t in geometry.row_taps]
            col_words = [_pack([(t.n, len(p_nx)), (t.k0 * p_groups, wbits), (t.o0 * groups, abits)])
                         for t in geometry.col_taps]
            m.submodules[f"{prefix}row_taps"] = row_rom = memory.Memory(
                shape=unsigned(len(p_ny) + wbits + abits), depth=in_h, init=row_words)
            m.submodules[f"{prefix}col_taps"] = col_rom = memory.Memory(
                shape=unsigned(len(p_nx) + wbits + abits), depth=in_w, init=col_words)
            row_rd = row_rom.read_port(domain="comb")
            col_rd = col_rom.read_port(domain="comb")
            m.d.comb += [
                p_ny.eq(row_rd.data[:len(p_ny)]), wy.eq(row_rd.data[len(p_ny):len(p_ny) + wbits]),
                ay.eq(row_rd.data[len(p_ny) + wbits:]),
                p_nx.eq(col_rd.data[:len(p_nx)]), wx.eq(col_rd.data[len(p_nx) + 0:len(p_nx) + wbits]),
                ax.eq(col_rd.data[len(p_nx) + wbits:]),
            ]

            buffered = Signal(name=f"{prefix}buffered")
            payload = Signal.like(stream_in.payload, name=f"{prefix}payload")
            first = Signal(init=1, name=f"{prefix}first")
            firsts.append(first)
            prev_index = Signal.like(payload.index, name=f"{prefix}prev_index")
            decode = Signal(name=f"{prefix}decode")
            m.d.comb += [decode.eq(buffered & accumulating() & (port == number) & (~d_valid | launch)),
                         stream_in.ready.eq(~clearing & (~buffered | decode))]
            with m.If(stream_in.valid & stream_in.ready):
                m.d.sync += [buffered.eq(1), payload.eq(stream_in.payload)]
            with m.Elif(decode):
                m.d.sync += buffered.eq(0)

            # Decode: (c, y, x) by exact constant division (dividers checked over every valid index).
            index = payload.index
            chan, row, col = decode_index_signals(m, index, geometry.input_shape, geometry.input_layout)
            m.d.comb += [row_rd.addr.eq(row), col_rd.addr.eq(col)]
            bad = breaks_stream_rule(index, payload.count, geometry.in_features, geometry.t_in, ~first, prev_index,
                                     geometry.t_min)
            count = Signal.like(payload.count, name=f"{prefix}count")
            m.d.comb += count.eq(Mux(bad, 0, payload.count))
            rejected = rejected | (decode & bad)
            works = (count != 0) & (p_ny != 0) & (p_nx != 0)
            final = payload.last if number == len(ports) - 1 else 0
            base = cfg.weight_base(number)
            if geometry.diagonal:
                # One word per channel; the group holding output channel c: c // lanes.
                group_of = magic_divider(lanes, geometry.in_channels)
                chan_group = Signal(range(groups), name=f"{prefix}chan_group")
                m.d.comb += chan_group.eq(times_constant(chan, group_of.multiplier) >> group_of.shift)
                w_base, a_base, glast = base + chan, ay + ax + chan_group, 0
            else:
                w_base = base + times_constant(chan, p_kh * p_kw * groups) + wy + wx
                a_base, glast = ay + ax, groups - 1
            with m.If(decode):
                with m.If(payload.last):
                    m.d.sync += port.eq(number + 1)
                with m.If(~bad):
                    m.d.sync += [first.eq(0), prev_index.eq(index)]
                with m.If(works | final):
                    m.d.sync += [d_valid.eq(1), d_count.eq(Mux(works, count, 0)), d_last.eq(final),
                                 d_ny.eq(p_ny), d_nx.eq(p_nx), d_w.eq(w_base), d_a.eq(a_base), d_glast.eq(glast)]
                with m.Else():
                    m.d.sync += d_valid.eq(0)
            if not banked:        # two banks: at the hand-over
                with m.If(phase == ConvPhase.DRAIN):
                    m.d.sync += first.eq(1)
        m.d.comb += self.rejected.eq(rejected)
        # ---------------------------------------------------------------- issue
        pending_last = Signal()
        g = Signal(range(groups))
        ix = Signal(range(kw))
        iy = Signal(range(kh))
        rep = Signal(range(max(geometry.t_in for geometry in ports)))
        it_nx = Signal.like(n_x)
        it_ny = Signal.like(n_y)
        it_count = Signal(count_shape)
        # mac: the iterator makes one pass per event (its count is 1; an event of count 0 is not issued)
        # and the write-back multiplies by the event's count, kept in it_scale (without mac it does not
        # exist: the Verilog is as before)
        d_reps = 1 if cfg.mac else d_count
        it_scale = Signal(count_shape) if cfg.mac else None
        it_glast = Signal.like(d_glast)
        w_tap, w_row, w_ev = Signal(w_range), Signal(w_range), Signal(w_range)
        a_tap, a_row, a_ev = Signal(a_range), Signal(a_range), Signal(a_range)

        def hand_over():
            m.d.sync += [phase.eq(ConvPhase.READ), word.eq(0), group.eq(0), neuron.eq(0)]
            if banked:
                m.d.sync += [bank.eq(~bank), full.eq(0), port.eq(0)] + [first.eq(1) for first in firsts]

        def finish_sample_input():
            if banked:     # the neuron side idle in this cycle: hand over at once, else wait full
                with m.If(phase == ConvPhase.ACCUMULATE):
                    hand_over()
                with m.Else():
                    m.d.sync += full.eq(1)
            else:
                hand_over()

        word = Signal(range(cfg.acc_depth))          # also the word being cleared in CLEAR
        group = Signal(range(groups))
        neuron = Signal(range(cfg.out_features))
        run_steps = Signal(range(max(cfg.t_out, 2)))

        # The iterator state of this cycle: D's values when launching, else the registers.
        cur = {name: Signal.like(reg, name=f"cur_{name}") for name, reg in (
            ("g", g), ("ix", ix), ("iy", iy), ("rep", rep), ("nx", it_nx), ("ny", it_ny), ("count", it_count),
            ("w_tap", w_tap), ("w_row", w_row), ("w_ev", w_ev), ("a_tap", a_tap), ("a_row", a_row),
            ("a_ev", a_ev), ("last", pending_last), ("glast", it_glast))}
        if cfg.mac:
            cur["scale"] = Signal.like(it_scale, name="cur_scale")
        with m.If(launch):
            m.d.comb += [cur["g"].eq(0), cur["ix"].eq(0), cur["iy"].eq(0), cur["rep"].eq(0),
                         cur["nx"].eq(d_nx), cur["ny"].eq(d_ny), cur["count"].eq(d_reps), cur["last"].eq(d_last),
                         cur["glast"].eq(d_glast)]
            if cfg.mac:
                m.d.comb += cur["scale"].eq(d_count)
            m.d.comb += [cur[k].eq(d_w) for k in ("w_tap", "w_row", "w_ev")]
            m.d.comb += [cur[k].eq(d_a) for k in ("a_tap", "a_row", "a_ev")]
        with m.Else():
            m.d.comb += [cur["g"].eq(g), cur["ix"].eq(ix), cur["iy"].eq(iy), cur["rep"].eq(rep),
                         cur["nx"].eq(it_nx), cur["ny"].eq(it_ny), cur["count"].eq(it_count),
                         cur["last"].eq(pending_last), cur["glast"].eq(it_glast)]
            if cfg.mac:
                m.d.comb += cur["scale"].eq(it_scale)
            m.d.comb += [cur["w_tap"].eq(w_tap), cur["w_row"].eq(w_row), cur["w_ev"].eq(w_ev),
                         cur["a_tap"].eq(a_tap), cur["a_row"].eq(a_row), cur["a_ev"].eq(a_ev)]

        issue = Signal()
        issue_addr = Signal(range(cfg.weight_depth))
        issue_word = Signal(range(cfg.acc_depth))
        active = (launch & (d_count != 0)) | busy
        with m.If(launch):
            m.d.sync += [it_nx.eq(d_nx), it_ny.eq(d_ny), it_count.eq(d_reps), pending_last.eq(d_last),
                         it_glast.eq(d_glast)]
            if cfg.mac:
                m.d.sync += it_scale.eq(d_count)
        with m.If(active):
            m.d.comb += [issue.eq(1), issue_addr.eq(cur["w_tap"] + cur["g"]), issue_word.eq(cur["a_tap"] + cur["g"])]
            m.d.sync += busy.eq(1)
            with m.If(cur["g"] != cur["glast"]):
                m.d.sync += [g.eq(cur["g"] + 1), ix.eq(cur["ix"]), iy.eq(cur["iy"]), rep.eq(cur["rep"]),
                             w_tap.eq(cur["w_tap"]), w_row.eq(cur["w_row"]), w_ev.eq(cur["w_ev"]),
                             a_tap.eq(cur["a_tap"]), a_row.eq(cur["a_row"]), a_ev.eq(cur["a_ev"])]
            with m.Elif(cur["ix"] != cur["nx"] - 1):
                m.d.sync += [g.eq(0), ix.eq(cur["ix"] + 1), iy.eq(cur["iy"]), rep.eq(cur["rep"]),
                             w_tap.eq(cur["w_tap"] + sw * groups), w_row.eq(cur["w_row"]), w_ev.eq(cur["w_ev"]),
                             a_tap.eq(cur["a_tap"] - groups), a_row.eq(cur["a_row"]), a_ev.eq(cur["a_ev"])]
            with m.Elif(cur["iy"] != cur["ny"] - 1):
                step_w, step_a = sh * kw * groups, wo * groups
                m.d.sync += [g.eq(0), ix.eq(0), iy.eq(cur["iy"] + 1), rep.eq(cur["rep"]),
                             w_tap.eq(cur["w_row"] + step_w), w_row.eq(cur["w_row"] + step_w), w_ev.eq(cur["w_ev"]),
                             a_tap.eq(cur["a_row"] - step_a), a_row.eq(cur["a_row"] - step_a), a_ev.eq(cur["a_ev"])]
            with m.Elif(cur["rep"] != cur["count"] - 1):
                m.d.sync += [g.eq(0), ix.eq(0), iy.eq(0), rep.eq(cur["rep"] + 1),
                             w_tap.eq(cur["w_ev"]), w_row.eq(cur["w_ev"]), w_ev.eq(cur["w_ev"]),
                             a_tap.eq(cur["a_ev"]), a_row.eq(cur["a_ev"]), a_ev.eq(cur["a_ev"])]
            with m.Else():
                m.d.sync += busy.eq(0)
                with m.If(cur["last"]):
                    finish_sample_input()
        with m.Elif(launch & d_last):     # a last event that does no work
            finish_sample_input()

        if banked:
            with m.If(full & (phase == ConvPhase.ACCUMULATE)):
                hand_over()

        # Read in the issue cycle, add and write back in the next one (transparent for back-to-back words).
        writeback = Signal()
        writeback_word = Signal(range(cfg.acc_depth))
        m.d.sync += [writeback.eq(issue), writeback_word.eq(issue_word)]
        if cfg.mac:       # each tap issued once per event: the weight times the event's count
            writeback_count = Signal(count_shape)
            m.d.sync += writeback_count.eq(cur["scale"])
        m.d.comb += [self.issue.valid.eq(issue), self.issue.weight.eq(issue_addr), self.issue.word.eq(issue_word)]
        m.d.comb += w_rd.addr.eq(issue_addr)
        acc_lanes = [i_rd.data.word_select(k, aw).as_signed() for k in range(lanes)]
        with m.If(writeback):
            m.d.comb += [i_wr.en.eq(1), i_wr.addr.eq(writeback_word)]
            for k in range(lanes):
                weight = w_rd.data.word_select(k, wb).as_signed()
                if cfg.mac and cfg.multiplier == "dsp":     # a product yosys maps onto a DSP block
                    weight = weight * writeback_count
                elif cfg.mac:
                    weight = times_count(weight, writeback_count)
                m.d.comb += i_wr.data.word_select(k, aw).eq(acc_lanes[k] + weight)
        if banked:
            neuron_lanes = [n_rd.data.word_select(k, aw).as_signed() for k in range(lanes)]
        else:
            neuron_lanes = acc_lanes

        # ---------------------------------------------------------------- neurons and emission
        last_lanes = cfg.out_channels - (groups - 1) * lanes
        last_group = group == groups - 1
        next_group = Mux(last_group, 0, group + 1)
        units = []
        for k in range(lanes):
            unit = PascIfNeuron(current_width=aw, v0_width=cfg.v0_width, theta_width=cfg.theta_width,
                                max_t_in=1, max_t_out=cfg.t_out, held_theta=True)
            m.submodules[f"neuron{k}"] = unit
            param = p_rd.data.word_select(k, param_width)
            current = Signal(signed(aw), name=f"current{k}")
            with m.If(phase == ConvPhase.START):
                m.d.sync += current.eq(neuron_lanes[k])
            m.d.comb += [
                unit.start.eq(phase == ConvPhase.START),
                unit.v0.eq(param[:cfg.v0_width].as_signed()),
                unit.theta.eq(param[cfg.v0_width:]),
                unit.t_in.eq(1),
                unit.t_out.eq(cfg.t_out),
                unit.current.eq(current),
            ]
            units.append(unit)

        # Emitter: the counts of the word handed over at LATCH; sends the lanes of `emit_mask`
        # (nonzero counts, and the layer's last neuron), lowest first, while the units run on.
        emit_counts = [Signal(range(cfg.t_out + 1), name=f"emit_count{k}") for k in range(lanes)]
        emit_mask = Signal(lanes)
        emit_base = Signal(range(cfg.out_features))
        emit_lane = Signal(range(lanes))
        for k in reversed(range(lanes)):
            with m.If(emit_mask[k]):
                m.d.comb += emit_lane.eq(k)
        out_index = Signal(range(cfg.out_features))
        m.d.comb += [
            out_index.eq(emit_base + emit_lane),
            self.o.valid.eq(emit_mask != 0),
            self.o.payload.index.eq(out_index),
            self.o.payload.count.eq(Array(emit_counts)[emit_lane]),
            self.o.payload.last.eq(out_index == cfg.out_features - 1),
        ]
        taken = self.o.valid & self.o.ready
        lowest = Signal(lanes)
        m.d.comb += lowest.eq(emit_mask & -emit_mask)
        with m.If(taken):
            m.d.sync += emit_mask.eq(emit_mask & ~lowest)
        free = Signal()
        m.d.comb += free.eq((emit_mask == 0) | (taken & (emit_mask == lowest)))

        if banked:
            m.d.comb += [
                i_rd.addr.eq(issue_word), i_rd.en.eq(issue),
                n_rd.addr.eq(Mux(phase == ConvPhase.LATCH, word + 1, word)),
                n_rd.en.eq((phase == ConvPhase.READ) | (phase == ConvPhase.LATCH)),
            ]
        else:
            m.d.comb += [
                a_rd.addr.eq(Mux(issue, issue_word, Mux(phase == ConvPhase.LATCH, word + 1, word))),
                a_rd.en.eq(issue | (phase == ConvPhase.READ) | (phase == ConvPhase.LATCH)),
            ]
        m.d.comb += [
            p_rd.addr.eq(Mux(phase == ConvPhase.LATCH, next_group, group)),
            p_rd.en.eq((phase == ConvPhase.READ) | (phase == ConvPhase.LATCH)),
        ]
        with m.Switch(phase):
            with m.Case(ConvPhase.READ):
                m.d.sync += phase.eq(ConvPhase.START)
            with m.Case(ConvPhase.START):
                m.d.comb += [n_wr.en.eq(1), n_wr.addr.eq(word), n_wr.data.eq(0)]
                m.d.sync += [phase.eq(ConvPhase.RUN), run_steps.eq(0)]
            with m.Case(ConvPhase.RUN):
                m.d.sync += run_steps.eq(run_steps + 1)
                with m.If(run_steps == cfg.t_out - 1):
                    m.d.sync += phase.eq(ConvPhase.LATCH)
            with m.Case(ConvPhase.LATCH), m.If(free):
                lanes_here = Mux(last_group, last_lanes, lanes)
                mask = []
                for k, unit in enumerate(units):
                    m.d.sync += emit_counts[k].eq(unit.count)
                    mask.append((k < lanes_here) & ((unit.count != 0) | (neuron + k == cfg.out_features - 1)))
                m.d.sync += [emit_mask.eq(Cat(*mask)), emit_base.eq(neuron), neuron.eq(neuron + lanes_here)]
                with m.If(word == cfg.acc_depth - 1):
                    m.d.sync += phase.eq(ConvPhase.DRAIN)
                with m.Else():
                    m.d.sync += [word.eq(word + 1), group.eq(next_group), phase.eq(ConvPhase.START)]
            with m.Case(ConvPhase.DRAIN), m.If(free):
                m.d.sync += phase.eq(ConvPhase.ACCUMULATE)
                if not banked:    # two banks: the ports were reset at the hand-over
                    m.d.sync += port.eq(0)
            with m.Case(ConvPhase.CLEAR):     # after reset: no event is taken, the write port is free
                # (two banks: the neuron side's port writes word `word` of both banks, see the routing)
                m.d.comb += [n_wr.en.eq(1), n_wr.addr.eq(word), n_wr.data.eq(0)]
                with m.If(word == cfg.acc_depth - 1):
                    m.d.sync += [phase.eq(ConvPhase.ACCUMULATE), word.eq(0)]
                with m.Else():
                    m.d.sync += word.eq(word + 1)
        return m
