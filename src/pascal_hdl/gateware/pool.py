"""The pooling unit: max pooling of burst trains (the burst of the maximum count) or sum pooling.

Data flow of one sample through a :class:`PoolUnit` (arithmetic and reasons:
:mod:`pascal_hdl.model.pool`)::

    i: (index, count, last)       -- one input neuron's burst
      -> input register B -> DECODE (c, y, x), window tap tables -> register D
      -> UPDATE: for each pooled cell whose window contains (y, x):
                 cell = max(cell, count)  or  cell + count       (read, then write back)
      -> READ, EMIT: cells in "hwc" order, nonzero ones sent (and the last), each cleared

The front end (input register, decode, the tap iteration) is the Conv2d
engine's with one lane and a one-cell "kernel"; the cells live in one memory
of ``C * Ho * Wo`` words of ``bits(t_out)`` bits.

Reset: the phase register resets to CLEAR, which writes zero to every cell, one
per cycle: ``C * Ho * Wo`` cycles (:attr:`~pascal_hdl.model.pool.PoolConfig.clear_cycles`)
after ``rst`` at any cycle and at power-up, with ``i.ready`` low.
"""
from __future__ import annotations

from amaranth import Module, Mux, Signal, unsigned
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from pascal_hdl.gateware.conv import decode_index_signals, double_buffer
from pascal_hdl.gateware.engine import event_layout
from pascal_hdl.model.engine import Phase
from pascal_hdl.model.pool import PoolConfig
from pascal_hdl.widths import check_type

__all__ = ["PoolUnit"]


class PoolUnit(wiring.Component):
    """One pooling unit (see the module docstring).

    Parameters
    ----------
    config : PoolConfig
        Input shape and layout, window, stride, ``"max"`` or ``"sum"``, ``t_in``.

    Members
    -------
    i : In(stream.Signature(event_layout(in_features, t_in)))
        Input events in increasing index order (``config.input_layout``).
    o : Out(stream.Signature(event_layout(out_features, t_out)))
        Pooled events in increasing ``"hwc"`` order, nonzero counts and always
        the last cell (with ``last``).
    rejected : Out(1)
        An input event is dropped in this cycle (index out of range or not
        increasing, count above ``t_in``).

    Timing: :class:`~pascal_hdl.model.pool.PoolUnitModel`, cycle by cycle
    (after a reset: CLEAR, ``out_features`` cycles with ``i.ready`` low).
    ``i.ready`` and ``o.valid`` depend on the unit's state only.
    """

    def __init__(self, config: PoolConfig):
        self._MustUse__silence = True  # no "never used" warning if validation fails
        self.config = check_type("PoolUnit", "config", config, PoolConfig)
        super().__init__({
            "i": In(stream.Signature(event_layout(config.in_features, config.t_in))),
            "o": Out(stream.Signature(event_layout(config.out_features, config.t_out))),
            "rejected": Out(1),
        })
        self._MustUse__silence = False

    def elaborate(self, platform):
        cfg = self.config
        m = Module()
        (kh, kw), channels, wo = cfg.kernel, cfg.input_shape[0], cfg.out_width
        _, in_h, in_w = cfg.input_shape
        cells = cfg.out_features
        value_width = max(1, cfg.t_out.bit_length())

        banked = cfg.banks == 2
        if not banked:
            m.submodules.cells = store = memory.Memory(shape=unsigned(value_width), depth=cells, init=[])
            c_wr = store.write_port()
            c_rd = store.read_port(transparent_for=(c_wr,))
            i_wr = s_wr = c_wr      # one memory: both sides use its ports
            i_rd = s_rd = c_rd

        # Tap tables (combinational ROMs): per input row (ny, oy0*Wo*C), per column (nx, ox0*C).
        a_range = range(cells + 1)
        n_y, n_x = Signal(range(kh + 1)), Signal(range(kw + 1))
        ay, ax = Signal(a_range), Signal(a_range)
        abits = len(ay)
        row_words = [t.n | (t.o0 * wo * channels) << len(n_y) for t in cfg.row_taps]
        col_words = [t.n | (t.o0 * channels) << len(n_x) for t in cfg.col_taps]
        m.submodules.row_taps = row_rom = memory.Memory(shape=unsigned(len(n_y) + abits), depth=in_h, init=row_words)
        m.submodules.col_taps = col_rom = memory.Memory(shape=unsigned(len(n_x) + abits), depth=in_w, init=col_words)
        row_rd, col_rd = row_rom.read_port(domain="comb"), col_rom.read_port(domain="comb")
        m.d.comb += [n_y.eq(row_rd.data[:len(n_y)]), ay.eq(row_rd.data[len(n_y):]),
                     n_x.eq(col_rd.data[:len(n_x)]), ax.eq(col_rd.data[len(n_x):])]

        phase = Signal(Phase, init=Phase.CLEAR)   # reset and power-up: clear the cells first
        clearing = phase == Phase.CLEAR
        if banked:
            # i_*: the update side's ports, s_*: the sweep side's (read, emit, clear).
            buffer = double_buffer(m, "cells", value_width, cells, clearing)
            i_wr, i_rd, s_wr, s_rd = buffer.input_wr, buffer.input_rd, buffer.output_wr, buffer.output_rd
            bank, full = buffer.bank, buffer.full

            def accumulating():
                return buffer.input_side
        else:
            def accumulating():
                return phase == Phase.ACCUMULATE
        buffered = Signal()
        payload = Signal.like(self.i.payload)
        d_valid, d_last = Signal(), Signal()
        d_count = Signal.like(payload.count)
        d_ny, d_nx = Signal.like(n_y), Signal.like(n_x)
        d_a = Signal(a_range)
        busy, pending_last = Signal(), Signal()
        ix, iy = Signal(range(kw)), Signal(range(kh))
        it_nx, it_ny = Signal.like(n_x), Signal.like(n_y)
        it_count = Signal.like(payload.count)
        a_tap, a_row = Signal(a_range), Signal(a_range)
        last_seen = Signal()
        first = Signal(init=1)
        prev_index = Signal.like(payload.index)
        neuron = Signal(range(cells))                # also the cell being cleared in CLEAR

        launch = d_valid & accumulating() & ~busy
        decode = buffered & accumulating() & ~last_seen & (~d_valid | launch)
        m.d.comb += self.i.ready.eq(~clearing & (~buffered | decode))
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [buffered.eq(1), payload.eq(self.i.payload)]
        with m.Elif(decode):
            m.d.sync += buffered.eq(0)

        index = payload.index
        chan, row, col = decode_index_signals(m, index, cfg.input_shape, cfg.input_layout)
        m.d.comb += [row_rd.addr.eq(row), col_rd.addr.eq(col)]
        bad = (index >= cfg.in_features) | (payload.count > cfg.t_in) | (~first & (index <= prev_index))
        count = Signal.like(payload.count)
        m.d.comb += [count.eq(Mux(bad, 0, payload.count)), self.rejected.eq(decode & bad)]
        works = (count != 0) & (n_y != 0) & (n_x != 0)
        with m.If(decode):
            m.d.sync += last_seen.eq(payload.last)
            with m.If(~bad):
                m.d.sync += [first.eq(0), prev_index.eq(index)]
            with m.If(works | payload.last):
                m.d.sync += [d_valid.eq(1), d_count.eq(Mux(works, count, 0)), d_last.eq(payload.last),
                             d_ny.eq(n_y), d_nx.eq(n_x), d_a.eq(ay + ax + chan)]
            with m.Else():
                m.d.sync += d_valid.eq(0)
        with m.Elif(launch):
            m.d.sync += d_valid.eq(0)

        def hand_over():
            m.d.sync += [phase.eq(Phase.READ), neuron.eq(0)]
            if banked:
                m.d.sync += [bank.eq(~bank), full.eq(0), first.eq(1), last_seen.eq(0)]

        def finish_sample_input():
            if banked:     # the sweep side idle in this cycle: hand over at once, else wait full
                with m.If(phase == Phase.ACCUMULATE):
                    hand_over()
                with m.Else():
                    m.d.sync += full.eq(1)
            else:
                hand_over()

        cur_ix, cur_iy = Signal.like(ix), Signal.like(iy)
        cur_nx, cur_ny = Signal.like(it_nx), Signal.like(it_ny)
        cur_count = Signal.like(it_count)
        cur_tap, cur_row = Signal(a_range), Signal(a_range)
        cur_last = Signal()
        with m.If(launch):
            m.d.comb += [cur_ix.eq(0), cur_iy.eq(0), cur_nx.eq(d_nx), cur_ny.eq(d_ny), cur_count.eq(d_count),
                         cur_tap.eq(d_a), cur_row.eq(d_a), cur_last.eq(d_last)]
            m.d.sync += [it_nx.eq(d_nx), it_ny.eq(d_ny), it_count.eq(d_count), pending_last.eq(d_last)]
        with m.Else():
            m.d.comb += [cur_ix.eq(ix), cur_iy.eq(iy), cur_nx.eq(it_nx), cur_ny.eq(it_ny), cur_count.eq(it_count),
                         cur_tap.eq(a_tap), cur_row.eq(a_row), cur_last.eq(pending_last)]

        issue = Signal()
        issue_cell = Signal(range(cells))
        issue_count = Signal.like(payload.count)
        with m.If((launch & (d_count != 0)) | busy):
            m.d.comb += [issue.eq(1), issue_cell.eq(cur_tap), issue_count.eq(cur_count)]
            m.d.sync += busy.eq(1)
            with m.If(cur_ix != cur_nx - 1):
                m.d.sync += [ix.eq(cur_ix + 1), iy.eq(cur_iy), a_tap.eq(cur_tap - channels), a_row.eq(cur_row)]
            with m.Elif(cur_iy != cur_ny - 1):
                step = wo * channels
                m.d.sync += [ix.eq(0), iy.eq(cur_iy + 1), a_tap.eq(cur_row - step), a_row.eq(cur_row - step)]
            with m.Else():
                m.d.sync += busy.eq(0)
                with m.If(cur_last):
                    finish_sample_input()
        with m.Elif(launch & d_last):
            finish_sample_input()

        if banked:
            with m.If(full & (phase == Phase.ACCUMULATE)):
                hand_over()

        # Read in the update cycle, combine and write back in the next one.
        writeback = Signal()
        writeback_cell = Signal.like(issue_cell)
        writeback_count = Signal.like(issue_count)
        m.d.sync += [writeback.eq(issue), writeback_cell.eq(issue_cell), writeback_count.eq(issue_count)]
        old = i_rd.data
        if cfg.reduce == "max":
            combined = Mux(old > writeback_count, old, writeback_count)
        else:
            combined = old + writeback_count
        with m.If(writeback):
            m.d.comb += [i_wr.en.eq(1), i_wr.addr.eq(writeback_cell), i_wr.data.eq(combined)]
        swept = s_rd.data if banked else old

        is_last = neuron == cells - 1
        wanted = (swept != 0) | is_last
        advance = (phase == Phase.EMIT) & (~wanted | self.o.ready)
        if banked:
            m.d.comb += [
                i_rd.addr.eq(issue_cell), i_rd.en.eq(issue),
                s_rd.addr.eq(Mux(phase == Phase.READ, 0, neuron + 1)),
                s_rd.en.eq((phase == Phase.READ) | advance),
            ]
        else:
            m.d.comb += [
                c_rd.addr.eq(Mux(issue, issue_cell, Mux(phase == Phase.READ, 0, neuron + 1))),
                c_rd.en.eq(issue | (phase == Phase.READ) | advance),
            ]
        with m.Switch(phase):
            with m.Case(Phase.READ):
                m.d.sync += phase.eq(Phase.EMIT)
            with m.Case(Phase.EMIT):
                m.d.comb += [self.o.valid.eq(wanted), self.o.payload.index.eq(neuron),
                             self.o.payload.count.eq(swept), self.o.payload.last.eq(is_last)]
                with m.If(advance):
                    m.d.comb += [s_wr.en.eq(1), s_wr.addr.eq(neuron), s_wr.data.eq(0)]
                    m.d.sync += neuron.eq(neuron + 1)
                    with m.If(is_last):
                        if banked:    # the input side was reset at the hand-over
                            m.d.sync += phase.eq(Phase.ACCUMULATE)
                        else:
                            m.d.sync += [phase.eq(Phase.ACCUMULATE), first.eq(1), last_seen.eq(0)]
            with m.Case(Phase.CLEAR):     # after reset: no event is taken, the write port is free
                # (two banks: the sweep side's port writes cell `neuron` of both banks, see the routing)
                m.d.comb += [s_wr.en.eq(1), s_wr.addr.eq(neuron), s_wr.data.eq(0)]
                with m.If(is_last):
                    m.d.sync += [phase.eq(Phase.ACCUMULATE), neuron.eq(0)]
                with m.Else():
                    m.d.sync += neuron.eq(neuron + 1)
        return m
