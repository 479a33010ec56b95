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
(:func:`pascal_hdl.model.engine.sample_events` builds them). Analog input
(``CoreConfig.input_min < 0``, an analog first layer): each nonzero signed
integer pixel ``x_j`` in ``input_min..input_levels`` is one event ``(j, x_j)``
(``count`` is then a signed field), taken by a conv first stage with ``mac``
that adds ``x_j * weight`` per tap: the one stage-1 step carrying ``W x`` of
the integer model. Without ``mac`` stages the core is multiplier-free.

Samples in flight (``CoreConfig.in_flight = D``, a generator option): the core takes the
first event of a sample only while fewer than ``D`` samples are inside (started, result not yet
taken). With ``D = 1`` a sample starts only after the previous result was taken; with ``D > 1``
the next sample's events enter the first stage as soon as that stage takes them, so every stage
works on its own sample (each stage still holds one sample: it takes the next sample's events
once it has emitted the previous one's). Results leave in order. Every result carries
``sample`` (the number of the sample since reset, modulo ``2**SAMPLE_TAG_WIDTH``), ``cycles``
(latency: from the acceptance of the sample's first event to the first cycle its result is
valid), ``finished`` (the core's free-running cycle counter in that cycle: the difference of two
results' values is the time between them, from which the cosim and the tests measure the
steady-state cycles per image) and ``rejected`` (an input event of that sample broke the
stream rule and was dropped; the gate applies the first stage's rule itself, so the flag belongs
to its sample whatever else is in flight). :func:`expected_cycles` predicts ``cycles`` exactly
for a source that offers events back to back with ``D = 1``; :func:`run_stream` predicts every
field for one continuous stream with any ``D``.
"""
from __future__ import annotations

from amaranth import Array, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from pascal_hdl.config import CoreConfig
from pascal_hdl.gateware.chain import stage_block
from pascal_hdl.gateware.engine import breaks_stream_rule, event_layout
from pascal_hdl.model.core import SAMPLE_TAG_WIDTH
from pascal_hdl.widths import check_type

__all__ = ["NetworkCore", "core_result_layout", "CYCLE_COUNTER_WIDTH", "SAMPLE_TAG_WIDTH"]

CYCLE_COUNTER_WIDTH = 32


def core_result_layout(config: CoreConfig) -> data.StructLayout:
    """Result payload: ``logits`` (integer ``W@c + b``), ``cls`` (argmax, first maximum),
    ``cycles`` of the sample (latency), ``rejected`` (an input event of the sample was dropped),
    ``sample`` (its number since reset, modulo ``2**SAMPLE_TAG_WIDTH``) and ``finished`` (the
    core's cycle counter in the first cycle the result is valid)."""
    readout = config.readout
    return data.StructLayout({
        "logits": data.ArrayLayout(signed(readout.logit_width), readout.out_features),
        "cls": range(max(readout.out_features, 2)),
        "cycles": CYCLE_COUNTER_WIDTH,
        "rejected": 1,
        "sample": SAMPLE_TAG_WIDTH,
        "finished": CYCLE_COUNTER_WIDTH,
    })


class NetworkCore(wiring.Component):
    """The spiking accelerator core for a :class:`~pascal_hdl.config.CoreConfig`.

    Parameters
    ----------
    config : CoreConfig
        The network (from ``CoreConfig.from_integer_network``).

    Members
    -------
    i : In(stream.Signature(event_layout(input_features, input_levels, input_min)))
        Input events ``{index, count, last}`` (see the module docstring).
    o : Out(stream.Signature(core_result_layout(config)))
        One result per sample, in order: ``{logits, cls, cycles, rejected, sample, finished}``.
    monitor_<layer> : Out(wiring.Signature({"valid": Out(1), "payload": Out(event_layout)}))
        For every hidden layer: ``valid`` in a cycle where that layer hands an
        event ``{index, count, last}`` to the next one (only for observation).
    """

    def __init__(self, config: CoreConfig):
        self._MustUse__silence = True  # no "never used" warning if validation fails
        self.config = check_type("NetworkCore", "config", config, CoreConfig)
        members = {
            "i": In(stream.Signature(event_layout(config.input_features, config.input_levels, config.input_min))),
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
        cfg = self.config
        depth = cfg.in_flight
        now = Signal(CYCLE_COUNTER_WIDTH)               # free-running cycle counter
        m.d.sync += now.eq(now + 1)

        # The gate: a sample starts (its first event is accepted) only while fewer than `depth`
        # samples are inside; the events of a started sample pass until its `last`.
        inside = Signal(range(depth + 1))
        within = Signal()                                # between the first and the last event of a sample
        starting = ~within
        open_ = within | (inside < depth)
        m.d.comb += [
            first.i.payload.eq(self.i.payload),
            first.i.valid.eq(self.i.valid & open_),
            self.i.ready.eq(first.i.ready & open_),
        ]
        accept = self.i.valid & self.i.ready
        taken = self.o.valid & self.o.ready
        start = accept & starting

        # Per sample in flight: the cycle its first event was accepted and its rejection flag,
        # in a FIFO of `depth` slots (written at the start, read when its result leaves).
        stamps = Array(Signal(CYCLE_COUNTER_WIDTH, name=f"start_{k}") for k in range(depth))
        flags = Array(Signal(name=f"rejected_{k}") for k in range(depth))
        head = Signal(range(depth))                      # slot of the oldest sample (the next result)
        free = Signal(range(depth))                      # slot the next sample to start takes
        current = Signal(range(depth))                   # slot of the sample whose events are arriving
        results_taken = Signal(SAMPLE_TAG_WIDTH)         # the number of the sample at the head

        def advance(pointer):
            return Mux(pointer == depth - 1, 0, pointer + 1)

        # The first stage's stream rule, applied at the gate to the events as they are accepted:
        # index < in_features, count <= input_levels, index above the sample's previous valid index.
        prev_index = Signal.like(self.i.payload.index)
        seen_valid = Signal()
        payload = self.i.payload
        bad = breaks_stream_rule(payload.index, payload.count, cfg.input_features, cfg.input_levels,
                                 ~starting & seen_valid, prev_index, cfg.input_min)
        slot = Mux(starting, free, current)
        with m.If(accept):
            with m.If(start):
                m.d.sync += [stamps[free].eq(now), current.eq(free), free.eq(advance(free))]
            m.d.sync += flags[slot].eq(Mux(start, bad, flags[slot] | bad))
            with m.If(~bad):
                m.d.sync += [prev_index.eq(payload.index), seen_valid.eq(1)]
            with m.Elif(start):
                m.d.sync += seen_valid.eq(0)
            m.d.sync += within.eq(~payload.last)
            with m.If(payload.last):
                m.d.sync += seen_valid.eq(0)
        m.d.sync += inside.eq(inside + start - taken)

        # The result: the cycle it became valid, held while the sink waits; the latency follows from it.
        held = Signal()
        held_finished = Signal(CYCLE_COUNTER_WIDTH)
        finished_at = Signal(CYCLE_COUNTER_WIDTH)
        latency = Signal(CYCLE_COUNTER_WIDTH)
        m.d.comb += finished_at.eq(Mux(held, held_finished, now))
        m.d.comb += latency.eq(finished_at - stamps[head])
        with m.If(taken):
            m.d.sync += [held.eq(0), head.eq(advance(head)), results_taken.eq(results_taken + 1)]
        with m.Elif(readout.o.valid & ~held):
            m.d.sync += [held.eq(1), held_finished.eq(now)]

        m.d.comb += [
            self.o.valid.eq(readout.o.valid),
            readout.o.ready.eq(self.o.ready),
            self.o.payload.logits.eq(readout.o.payload.logits),
            self.o.payload.cls.eq(readout.o.payload.cls),
            self.o.payload.cycles.eq(latency),
            self.o.payload.finished.eq(finished_at),
            self.o.payload.rejected.eq(flags[head]),
            self.o.payload.sample.eq(results_taken),
        ]
        return m


