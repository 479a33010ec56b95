"""A chain of stages (Conv2d engines, pooling units, residual blocks, Linear engines) connected by their event streams.

::

    i -> stage 0 -> stage 1 -> ... -> stage n-1 -> o
              |          |
          monitor0   monitor1 ...     (every event handed from one stage to the next)

The stages come from :func:`pascal_hdl.model.chain.stage_configs`; each is the
block of its configuration type (:func:`stage_block`). Without the
network core's input gate and cycle counter, this is what the core will
instantiate for a convolutional network (see the integration plan in the
report of issue 12); :class:`pascal_hdl.model.chain.ChainModel` is its cycle model.
"""
from __future__ import annotations

from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from pascal_hdl.config import LayerConfig
from pascal_hdl.gateware.conv import ConvEngine
from pascal_hdl.gateware.engine import LayerEngine, event_layout
from pascal_hdl.gateware.pool import PoolUnit
from pascal_hdl.gateware.residual import ResidualBlock
from pascal_hdl.model.conv import ConvConfig
from pascal_hdl.model.pool import PoolConfig
from pascal_hdl.model.residual import ResidualBlockConfig

__all__ = ["StageChain", "stage_block"]


def stage_block(stage):
    """The gateware block of one stage configuration."""
    if isinstance(stage, ConvConfig):
        return ConvEngine(stage)
    if isinstance(stage, PoolConfig):
        return PoolUnit(stage)
    if isinstance(stage, ResidualBlockConfig):
        return ResidualBlock(stage)
    if isinstance(stage, LayerConfig):
        return LayerEngine(stage)
    raise TypeError(f"stage_block: not a stage configuration: {type(stage).__name__}")


class StageChain(wiring.Component):
    """Stages chained by their streams.

    Parameters
    ----------
    stages : sequence of ConvConfig, PoolConfig, ResidualBlockConfig, LayerConfig
        In stream order; only the last may be a readout.

    Members
    -------
    i : In(stream.Signature) of the first stage; o : Out(stream.Signature) of the last.
    rejected : Out(1)
        Some stage drops an event in this cycle.
    monitor<k> : Out({valid, payload: event_layout})
        Stage ``k`` hands an event to stage ``k + 1`` in this cycle (observation only).
    """

    def __init__(self, stages):
        self._MustUse__silence = True  # no "never used" warning if validation fails
        stages = list(stages)
        if not stages:
            raise TypeError("StageChain: needs at least one stage")
        self.stages = stages
        self.blocks = [stage_block(stage) for stage in stages]
        members = {"i": In(self.blocks[0].i.signature.flip()), "o": Out(self.blocks[-1].o.signature),
                   "rejected": Out(1)}
        for index, stage in enumerate(stages[:-1]):
            members[f"monitor{index}"] = Out(wiring.Signature({
                "valid": Out(1), "payload": Out(event_layout(stage.out_features, stage.t_out))}))
        super().__init__(members)
        self._MustUse__silence = False

    def elaborate(self, platform):
        m = Module()
        for index, (stage, block) in enumerate(zip(self.stages, self.blocks)):
            m.submodules[f"stage{index}_{stage.name}"] = block
        for index, (before, after) in enumerate(zip(self.blocks, self.blocks[1:])):
            wiring.connect(m, before.o, after.i)
            monitor = getattr(self, f"monitor{index}")
            m.d.comb += [monitor.valid.eq(before.o.valid & before.o.ready), monitor.payload.eq(before.o.payload)]
        wiring.connect(m, wiring.flipped(self.i), self.blocks[0].i)
        wiring.connect(m, self.blocks[-1].o, wiring.flipped(self.o))
        rejected = 0
        for block in self.blocks:
            rejected = rejected | block.rejected
        m.d.comb += self.rejected.eq(rejected)
        return m
