"""The network core: a chain of stages that runs a whole integer model.

::

    i (input events) -> [gate] -> stage 1 -> ... -> LayerEngine(readout) -> o (result)
                                     |          |
                              monitor_<name>  monitor_<name>   (every event between stages)

A stage is the block of its configuration (:func:`pascal_hdl.gateware.chain.stage_block`):
a :class:`~pascal_hdl.gateware.engine.LayerEngine` (Linear), a
:class:`~pascal_hdl.gateware.conv.ConvEngine`, a :class:`~pascal_hdl.gateware.pool.PoolUnit` or a
:class:`~pascal_hdl.gateware.residual.ResidualBlock`; an MLP core holds only layer engines.
The events after a conv, pooling or residual stage are in ``"hwc"`` order
(``index = (y*W + x)*C + c``), as :meth:`CoreConfig.forward` gives its counts.

Input encoding: count coded (``docs/semantics.md`` §5, the golden
model's ``input_levels`` option): each input feature ``j`` with level
``x_j`` in ``0..input_levels`` is sent as one event ``(j, x_j)``, a burst of
``x_j`` spikes; features at level 0 need not be sent. Events of a sample
must come in increasing index order and the last carries ``last``; an
all-zero sample is the single event ``(0, 0, last)``
(:func:`pascal_hdl.model.engine.sample_events` builds them). The whole core is
multiplier-free. Analog input, convolutions, pooling and residual blocks
are rejected by :meth:`CoreConfig.from_integer_network`.

One sample is in flight at a time: the core accepts the first event of a
sample only when the previous result has been taken, so ``cycles`` (in the
result) counts the cycles from the acceptance of the sample's first event to
the first cycle its result is valid, and :func:`expected_cycles` predicts it
exactly for a source that offers events back to back.
"""
from __future__ import annotations

from amaranth import Module, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from pascal_hdl.config import CoreConfig
from pascal_hdl.gateware.chain import stage_block
from pascal_hdl.gateware.engine import event_layout
from pascal_hdl.model.core import CoreState
from pascal_hdl.widths import check_type

__all__ = ["NetworkCore", "core_result_layout", "CYCLE_COUNTER_WIDTH"]

CYCLE_COUNTER_WIDTH = 32


def core_result_layout(config: CoreConfig) -> data.StructLayout:
    """Result payload: ``logits`` (integer ``W@c + b``), ``cls`` (argmax, first maximum),
    ``cycles`` of the sample and ``rejected`` (an input event of the sample was dropped)."""
    readout = config.readout
    return data.StructLayout({
        "logits": data.ArrayLayout(signed(readout.logit_width), readout.out_features),
        "cls": range(max(readout.out_features, 2)),
        "cycles": CYCLE_COUNTER_WIDTH,
        "rejected": 1,
    })


class NetworkCore(wiring.Component):
    """The spiking accelerator core for a :class:`~pascal_hdl.config.CoreConfig`.

    Parameters
    ----------
    config : CoreConfig
        The network (from ``CoreConfig.from_integer_network``).

    Members
    -------
    i : In(stream.Signature(event_layout(input_features, input_levels)))
        Input events ``{index, count, last}`` (see the module docstring).
    o : Out(stream.Signature(core_result_layout(config)))
        One result per sample: ``{logits, cls, cycles, rejected}``.
    monitor_<layer> : Out(wiring.Signature({"valid": Out(1), "payload": Out(event_layout)}))
        For every hidden layer: ``valid`` in a cycle where that layer hands an
        event ``{index, count, last}`` to the next one (only for observation).
    """

    def __init__(self, config: CoreConfig):
        self._MustUse__silence = True  # no "never used" warning if validation fails
        self.config = check_type("NetworkCore", "config", config, CoreConfig)
        members = {
            "i": In(stream.Signature(event_layout(config.input_features, config.input_levels))),
            "o": Out(stream.Signature(core_result_layout(config))),
        }
        for layer in config.hidden:
            members[f"monitor_{layer.name}"] = Out(wiring.Signature({
                "valid": Out(1), "payload": Out(event_layout(layer.out_features, layer.t_out))}))
        super().__init__(members)
        self._MustUse__silence = False

    @property
    def cycle_model(self) -> dict:
        """How the cycles of a sample are predicted (for manifests); exact figures: :func:`expected_cycles`."""
        info = {
            "model": "pascal_hdl.model.core.expected_cycles(config, levels): exact, cycle-level CoreModel",
            "per_input_event": "max(1, count * groups) cycles",
            "per_group_hidden": "READ 1 + START 1 + RUN T2 + one EMIT cycle per neuron (+ back-pressure)",
            "per_group_readout": "READ 1 + one COLLECT cycle per neuron",
            "cycles_counted": "first input event accepted -> first cycle the result is valid",
            "worst_case": self.config.worst_case_cycles(),
        }
        if not self.config.is_linear:
            info["per_conv_event"] = "count * (valid taps) * groups cycles (a spike reaches the outputs of its taps)"
            info["per_conv_word"] = "T2 + 2 cycles per accumulator word (the emitter overlaps the next word)"
            info["per_pool_event"] = "one cycle per window cell the event updates, then one EMIT per nonzero cell"
        return info

    def monitor(self, layer_name: str):
        """The monitor interface of a hidden layer."""
        return getattr(self, f"monitor_{layer_name}")

    def elaborate(self, platform):
        m = Module()
        engines = []
        for index, layer in enumerate(self.config.layers):
            engine = stage_block(layer)
            m.submodules[f"layer{index}_{layer.name}"] = engine
            engines.append(engine)
        for before, after, layer in zip(engines, engines[1:], self.config.hidden):
            wiring.connect(m, before.o, after.i)
            monitor = self.monitor(layer.name)
            m.d.comb += [monitor.valid.eq(before.o.valid & before.o.ready), monitor.payload.eq(before.o.payload)]

        first, readout = engines[0], engines[-1]
        state = Signal(CoreState)
        cycles = Signal(CYCLE_COUNTER_WIDTH)
        rejected = Signal()
        m.d.comb += [
            first.i.payload.eq(self.i.payload),
            first.i.valid.eq(self.i.valid & (state != CoreState.WAIT)),
            self.i.ready.eq(first.i.ready & (state != CoreState.WAIT)),
        ]
        accept = self.i.valid & self.i.ready
        # The first engine drops a bad event at least one cycle after it was accepted
        # here, so the flag of a sample is cleared before any of its events can set it.
        with m.If(accept & (state == CoreState.IDLE)):
            m.d.sync += rejected.eq(0)
        with m.Elif(first.rejected):
            m.d.sync += rejected.eq(1)
        with m.If(accept):
            with m.If(state == CoreState.IDLE):
                m.d.sync += cycles.eq(1)
            with m.Else():
                m.d.sync += cycles.eq(cycles + 1)
            m.d.sync += state.eq(CoreState.INPUT)
            with m.If(self.i.payload.last):
                m.d.sync += state.eq(CoreState.WAIT)
        with m.Elif((state != CoreState.IDLE) & ~readout.o.valid):
            m.d.sync += cycles.eq(cycles + 1)

        m.d.comb += [
            self.o.valid.eq(readout.o.valid),
            readout.o.ready.eq(self.o.ready),
            self.o.payload.logits.eq(readout.o.payload.logits),
            self.o.payload.cls.eq(readout.o.payload.cls),
            self.o.payload.cycles.eq(cycles),
            self.o.payload.rejected.eq(rejected),
        ]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += state.eq(CoreState.IDLE)
        return m


