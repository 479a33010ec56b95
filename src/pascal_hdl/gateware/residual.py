"""ResNet basic blocks: the two-port act2 engine and the block (conv1 engine, fork, act2 engine).

::

    i: x events --fork--> ConvEngine(conv1) --act1 events (inner)--> ResidualEngine.i          \\
                     \\----------------------------------------------> ResidualEngine.shortcut --> o: act2 events

The arithmetic, the timing rule and the reasons are in :mod:`pascal_hdl.model.residual`;
:class:`ResidualEngine` is :class:`~pascal_hdl.gateware.conv.ConvEngine` elaborated with the two
ports of a :class:`~pascal_hdl.model.residual.ResidualConfig` (each with its input register,
index decode, tap tables and rules; ``shortcut`` decoded until its ``last``, then ``i``; one issue
stage, one accumulator memory, one weight memory holding both inputs' words).
"""
from __future__ import annotations

from amaranth import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from pascal_hdl.gateware.conv import ConvEngine, issue_signature
from pascal_hdl.gateware.engine import event_layout
from pascal_hdl.model.residual import ResidualBlockConfig, ResidualConfig
from pascal_hdl.widths import check_type

__all__ = ["ResidualBlock", "ResidualEngine"]


class ResidualEngine(ConvEngine):
    """The second neuron layer of a basic block (``act2``).

    Parameters
    ----------
    config : ResidualConfig

    Members
    -------
    i : In(stream.Signature(event_layout(main.in_features, main.t_in)))
        act1 events (``"hwc"``), scattered through conv2.
    shortcut : In(stream.Signature(event_layout(shortcut.in_features, shortcut.t_in)))
        Block input events, scattered through the 1x1-conv or identity shortcut; accumulated first.
    o : Out(stream.Signature(event_layout(out_features, t_out)))
        act2 events, ``"hwc"``, as the Conv2d engine's.
    rejected : Out(1)
        An event of either port is dropped in this cycle (each port's own rule).
    issue : Out(issue_signature(config))
        Observation of the scatter, as the Conv2d engine's.

    Timing: :class:`~pascal_hdl.model.residual.ResidualEngineModel`, cycle by cycle.
    """

    def __init__(self, config: ResidualConfig):
        self._MustUse__silence = True  # no "never used" warning if validation fails
        self.config = check_type("ResidualEngine", "config", config, ResidualConfig)
        short, main = config.inputs
        wiring.Component.__init__(self, {
            "i": In(stream.Signature(event_layout(main.in_features, main.t_in))),
            "shortcut": In(stream.Signature(event_layout(short.in_features, short.t_in))),
            "o": Out(stream.Signature(event_layout(config.out_features, config.t_out))),
            "rejected": Out(1),
            "issue": Out(issue_signature(config)),
        })
        self._MustUse__silence = False


class ResidualBlock(wiring.Component):
    """One basic block as a stage of :class:`~pascal_hdl.gateware.chain.StageChain`.

    Parameters
    ----------
    config : ResidualBlockConfig

    Members
    -------
    i : In(stream.Signature(event_layout(in_features, t_in)))
        Block input events; one is taken when the conv1 engine and the shortcut port both take it.
    o : Out(stream.Signature(event_layout(out_features, t_out)))
        act2 events.
    rejected : Out(1)
        conv1 or the act2 engine drops an event in this cycle.
    inner : Out({valid, payload})
        An act1 event is handed from conv1 to act2 in this cycle (observation only).

    Timing: :class:`~pascal_hdl.model.residual.ResidualBlockModel`. ``i.ready`` and ``o.valid``
    depend on the state only (both blocks' handshakes do).
    """

    def __init__(self, config: ResidualBlockConfig):
        self._MustUse__silence = True  # no "never used" warning if validation fails
        self.config = check_type("ResidualBlock", "config", config, ResidualBlockConfig)
        conv1 = config.conv1
        super().__init__({
            "i": In(stream.Signature(event_layout(config.in_features, config.t_in))),
            "o": Out(stream.Signature(event_layout(config.out_features, config.t_out))),
            "rejected": Out(1),
            "inner": Out(wiring.Signature({"valid": Out(1), "payload": Out(event_layout(conv1.out_features,
                                                                                        conv1.t_out))})),
        })
        self._MustUse__silence = False

    def elaborate(self, platform):
        m = Module()
        m.submodules.conv1 = conv1 = ConvEngine(self.config.conv1)
        m.submodules.merge = merge = ResidualEngine(self.config.merge)
        # Fork: both consumers' ready depend on their state only, so no combinational loop.
        m.d.comb += [
            conv1.i.payload.eq(self.i.payload),
            merge.shortcut.payload.eq(self.i.payload),
            conv1.i.valid.eq(self.i.valid & merge.shortcut.ready),
            merge.shortcut.valid.eq(self.i.valid & conv1.i.ready),
            self.i.ready.eq(conv1.i.ready & merge.shortcut.ready),
        ]
        wiring.connect(m, conv1.o, merge.i)
        wiring.connect(m, merge.o, wiring.flipped(self.o))
        m.d.comb += [
            self.inner.valid.eq(conv1.o.valid & conv1.o.ready),
            self.inner.payload.eq(conv1.o.payload),
            self.rejected.eq(conv1.rejected | merge.rejected),
        ]
        return m
