"""An AXI4-Stream wrapper around the network core, for SoC and vendor-flow integration.

::

    s_axis (levels, one beat per feature) -> [framing] -> NetworkCore.i
    m_axis (one beat per result)          <- [+ malformed flag FIFO] <- NetworkCore.o

The beat formats, the framing rules for malformed samples and the timing are those of the cycle
model, :mod:`pascal_hdl.model.axis` (its docstring is the contract, summarised here): ``s_axis``
carries one input level per beat in feature order with ``tlast`` on feature ``N-1``; ``m_axis``
carries one result per beat (``tlast`` on every beat), ``tdata`` packed as
:func:`pascal_hdl.model.axis.result_fields`. A malformed sample (a level above ``input_levels``,
``tlast`` early or missing) gives one result with ``rejected`` set. Only ``tdata``, ``tvalid``,
``tready`` and ``tlast`` are used (no ``tkeep``/``tuser``: every beat is one whole word).
"""
from __future__ import annotations

from amaranth import Array, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from pascal_hdl.config import CoreConfig, HardwareError
from pascal_hdl.gateware.core import NetworkCore, core_result_layout
from pascal_hdl.model.axis import result_data_width, sample_data_width
from pascal_hdl.widths import check_type

__all__ = ["AxiStreamCore", "axi_stream_signature"]


def axi_stream_signature(data_width: int) -> wiring.Signature:
    """An AXI4-Stream interface as its transmitter sees it: ``tdata``, ``tvalid``, ``tlast`` out,
    ``tready`` in (``In(...)`` of it is a receiver)."""
    return wiring.Signature({"tdata": Out(data_width), "tvalid": Out(1), "tready": In(1), "tlast": Out(1)})


class AxiStreamCore(wiring.Component):
    """:class:`~pascal_hdl.gateware.core.NetworkCore` behind an AXI4-Stream slave (samples) and master
    (results); cycle model :class:`pascal_hdl.model.axis.AxiStreamCoreModel`.

    Parameters
    ----------
    config : CoreConfig
        The network.

    Members
    -------
    s_axis : In(axi_stream_signature(sample_data_width(config)))
        Input levels, one beat per feature, ``tlast`` on the sample's last feature.
    m_axis : Out(axi_stream_signature(result_data_width(config)))
        One result per sample, in order, ``tlast`` on every beat.
    """

    def __init__(self, config: CoreConfig):
        self._MustUse__silence = True  # no "never used" warning if validation fails
        self.config = check_type("AxiStreamCore", "config", config, CoreConfig)
        if config.is_analog:
            raise HardwareError(f"AXI4-Stream wrapper: core '{config.name}' takes signed analog pixels; the wrapper's "
                                "beats carry levels 0..input_levels (use the core's event stream)")
        super().__init__({
            "s_axis": In(axi_stream_signature(sample_data_width(config))),
            "m_axis": Out(axi_stream_signature(result_data_width(config))),
        })
        self._MustUse__silence = False

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        m.submodules.core = core = NetworkCore(cfg)
        depth = cfg.in_flight
        features = cfg.input_features
        beat = self.s_axis

        # Framing: the feature position of the next beat, dropping the rest of an over-long packet,
        # and whether the sample so far was malformed.
        position = Signal(range(max(features, 2)))
        dropping = Signal()
        malformed = Signal()
        at_last_feature = position == features - 1
        ends = beat.tlast | at_last_feature
        level_bad = beat.tdata > cfg.input_levels
        count = Mux(level_bad, 0, beat.tdata)
        bad = level_bad | (beat.tlast != at_last_feature)
        forward = ~dropping & (ends | (count != 0))
        m.d.comb += [
            core.i.payload.index.eq(position),
            core.i.payload.count.eq(count),
            core.i.payload.last.eq(ends),
            core.i.valid.eq(beat.tvalid & forward),
            beat.tready.eq(Mux(forward, core.i.ready, 1)),
        ]

        # One malformed flag per sample in flight: written when its last event is taken, read (and
        # ORed into `rejected`) while its result is offered. The result of a sample comes at least
        # one cycle after its last event was taken, so the slot is written by then.
        flags = Array(Signal(name=f"malformed_{k}") for k in range(depth))
        head = Signal(range(depth))
        tail = Signal(range(depth))

        def advance(pointer):
            return Mux(pointer == depth - 1, 0, pointer + 1)

        with m.If(beat.tvalid & beat.tready):
            with m.If(dropping):
                m.d.sync += dropping.eq(~beat.tlast)
            with m.Elif(ends):
                m.d.sync += [flags[tail].eq(malformed | bad), tail.eq(advance(tail)),
                             position.eq(0), malformed.eq(0), dropping.eq(~beat.tlast)]
            with m.Else():
                m.d.sync += [position.eq(position + 1), malformed.eq(malformed | bad)]

        result = Signal(core_result_layout(cfg))
        m.d.comb += [
            result.eq(core.o.payload),
            result.rejected.eq(core.o.payload.rejected | flags[head]),
            self.m_axis.tdata.eq(result.as_value()),
            self.m_axis.tvalid.eq(core.o.valid),
            self.m_axis.tlast.eq(1),
            core.o.ready.eq(self.m_axis.tready),
        ]
        with m.If(self.m_axis.tvalid & self.m_axis.tready):
            m.d.sync += head.eq(advance(head))
        return m
