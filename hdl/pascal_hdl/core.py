"""The network core: a chain of layer engines that runs a whole integer model.

::

    i (input events) -> [gate] -> LayerEngine(hidden 1) -> ... -> LayerEngine(readout) -> o (result)
                                       |                   |
                                  monitor_<name>      monitor_<name>   (every event between layers)

Input encoding: count coded (``../shared/PASCAL-SEMANTICS.md`` §5, the golden
model's ``input_levels`` option): each input feature ``j`` with level
``x_j`` in ``0..input_levels`` is sent as one event ``(j, x_j)``, a burst of
``x_j`` spikes; features at level 0 need not be sent. Events of a sample
must come in increasing index order and the last carries ``last``; an
all-zero sample is the single event ``(0, 0, last)``
(:func:`pascal_hdl.engine.sample_events` builds them). The whole core is
multiplier-free. Analog input, convolutions, pooling and residual blocks
are rejected by :meth:`CoreConfig.from_integer_network`.

One sample is in flight at a time: the core accepts the first event of a
sample only when the previous result has been taken, so ``cycles`` (in the
result) counts the cycles from the acceptance of the sample's first event to
the first cycle its result is valid, and :func:`expected_cycles` predicts it
exactly for a source that offers events back to back.
"""
from __future__ import annotations

import numpy as np
from amaranth import Module, Signal, signed
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out

from .config import CoreConfig, HardwareError
from .engine import EngineModel, LayerEngine, event_layout, sample_events

__all__ = ["NetworkCore", "CoreModel", "core_result_layout", "expected_cycles", "CYCLE_COUNTER_WIDTH"]

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


class _State(enum.Enum, shape=2):
    IDLE = 0      # no sample in flight
    INPUT = 1     # events of the current sample arriving
    WAIT = 2      # last event accepted, result not yet taken


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
        if not isinstance(config, CoreConfig):
            raise TypeError(f"NetworkCore: config must be a CoreConfig, got {type(config).__name__}")
        self.config = config
        members = {
            "i": In(stream.Signature(event_layout(config.input_features, config.input_levels))),
            "o": Out(stream.Signature(core_result_layout(config))),
        }
        for layer in config.hidden:
            members[f"monitor_{layer.name}"] = Out(wiring.Signature({
                "valid": Out(1), "payload": Out(event_layout(layer.out_features, layer.t_out))}))
        super().__init__(members)

    @property
    def cycle_model(self) -> dict:
        """How the cycles of a sample are predicted (for manifests); exact figures: :func:`expected_cycles`."""
        return {
            "model": "pascal_hdl.core.expected_cycles(config, levels): exact, cycle-level CoreModel",
            "per_input_event": "max(1, count * groups) cycles",
            "per_group_hidden": "READ 1 + START 1 + RUN T2 + one EMIT cycle per neuron (+ back-pressure)",
            "per_group_readout": "READ 1 + one COLLECT cycle per neuron",
            "cycles_counted": "first input event accepted -> first cycle the result is valid",
            "worst_case": self.config.worst_case_cycles(),
        }

    def monitor(self, layer_name: str):
        """The monitor interface of a hidden layer."""
        return getattr(self, f"monitor_{layer_name}")

    def elaborate(self, platform):
        m = Module()
        engines = []
        for index, layer in enumerate(self.config.layers):
            engine = LayerEngine(layer)
            m.submodules[f"layer{index}_{layer.name}"] = engine
            engines.append(engine)
        for before, after, layer in zip(engines, engines[1:], self.config.hidden):
            wiring.connect(m, before.o, after.i)
            monitor = self.monitor(layer.name)
            m.d.comb += [monitor.valid.eq(before.o.valid & before.o.ready), monitor.payload.eq(before.o.payload)]

        first, readout = engines[0], engines[-1]
        state = Signal(_State)
        cycles = Signal(CYCLE_COUNTER_WIDTH)
        rejected = Signal()
        m.d.comb += [
            first.i.payload.eq(self.i.payload),
            first.i.valid.eq(self.i.valid & (state != _State.WAIT)),
            self.i.ready.eq(first.i.ready & (state != _State.WAIT)),
        ]
        accept = self.i.valid & self.i.ready
        # The first engine drops a bad event at least one cycle after it was accepted
        # here, so the flag of a sample is cleared before any of its events can set it.
        with m.If(accept & (state == _State.IDLE)):
            m.d.sync += rejected.eq(0)
        with m.Elif(first.rejected):
            m.d.sync += rejected.eq(1)
        with m.If(accept):
            with m.If(state == _State.IDLE):
                m.d.sync += cycles.eq(1)
            with m.Else():
                m.d.sync += cycles.eq(cycles + 1)
            m.d.sync += state.eq(_State.INPUT)
            with m.If(self.i.payload.last):
                m.d.sync += state.eq(_State.WAIT)
        with m.Elif((state != _State.IDLE) & ~readout.o.valid):
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
            m.d.sync += state.eq(_State.IDLE)
        return m


class CoreModel:
    """Cycle-level Python model of :class:`NetworkCore` built from :class:`EngineModel` s.

    Per cycle: read :meth:`in_ready`, :meth:`out_valid`, :attr:`out_payload`,
    then :meth:`step`. :attr:`events` records, per hidden layer, the events
    handed on (as the ``monitor_*`` ports show them).
    """

    def __init__(self, config: CoreConfig):
        if not isinstance(config, CoreConfig):
            raise TypeError(f"CoreModel: config must be a CoreConfig, got {type(config).__name__}")
        self.config = config
        self.engines = [EngineModel(layer) for layer in config.layers]
        self.state = _State.IDLE
        self.cycles = 0
        self.rejected = False
        self.events = {layer.name: [] for layer in config.hidden}

    def in_ready(self) -> bool:
        return self.engines[0].in_ready() and self.state != _State.WAIT

    def out_valid(self) -> bool:
        return self.engines[-1].out_valid()

    @property
    def out_payload(self) -> dict:
        payload = dict(self.engines[-1].out_payload)
        payload.update(cycles=self.cycles, rejected=self.rejected)
        return payload

    def step(self, in_valid: bool = False, in_payload=None, out_ready: bool = True) -> tuple[bool, bool]:
        """Advance one clock cycle; return ``(input accepted, result taken)``."""
        engines = self.engines
        accept = bool(in_valid) and self.in_ready()
        valid = [e.out_valid() for e in engines]
        ready = [e.in_ready() for e in engines]
        payloads = [e.out_payload if v else None for e, v in zip(engines, valid)]
        result_valid = valid[-1]
        rejecting = engines[0].rejecting()
        accepted, _ = engines[0].step(accept, in_payload if accept else None, ready[1] if len(engines) > 1 else out_ready)
        for index in range(1, len(engines)):
            handed = valid[index - 1] and ready[index]
            if handed:
                self.events[self.config.layers[index - 1].name].append(payloads[index - 1])
            out = ready[index + 1] if index + 1 < len(engines) else out_ready
            engines[index].step(handed, payloads[index - 1], out)
        taken = result_valid and out_ready
        if accept and self.state == _State.IDLE:
            self.rejected = False
        elif rejecting:
            self.rejected = True
        if accept:
            self.cycles = 1 if self.state == _State.IDLE else self.cycles + 1
            self.state = _State.WAIT if in_payload["last"] else _State.INPUT
        elif self.state != _State.IDLE and not result_valid:
            self.cycles += 1
        if taken:
            self.state = _State.IDLE
        return accepted, taken


def check_levels(config: CoreConfig, levels) -> np.ndarray:
    """Validate input levels ``(batch, input_features)`` in ``0..input_levels``."""
    levels = np.asarray(levels)
    if levels.ndim == 1:
        levels = levels[None]
    if levels.dtype.kind not in "iu" or levels.ndim != 2 or levels.shape[1] != config.input_features:
        raise HardwareError(f"core '{config.name}': input levels must be integers of shape (batch, "
                            f"{config.input_features}), got {levels.dtype} {levels.shape}")
    if levels.size and (levels.min() < 0 or levels.max() > config.input_levels):
        raise HardwareError(f"core '{config.name}': input levels must lie in [0, {config.input_levels}], "
                            f"got [{levels.min()}, {levels.max()}]")
    return levels.astype(np.int64)


def run_model(config: CoreConfig, levels, max_cycles: int = 10_000_000) -> list[dict]:
    """Run :class:`CoreModel` on samples with an ideal source and sink; one result dict per sample."""
    levels = check_levels(config, levels)
    results = []
    for sample in levels:
        model = CoreModel(config)
        queue = sample_events(sample)
        for _ in range(max_cycles):
            if model.out_valid():
                result = model.out_payload
                result["events"] = model.events
                results.append(result)
                break
            accepted, _ = model.step(bool(queue), queue[0] if queue else None, True)
            if accepted:
                queue.pop(0)
        else:  # pragma: no cover - the model always terminates
            raise RuntimeError("core model did not finish")
    return results


def expected_cycles(config: CoreConfig, levels) -> np.ndarray:
    """Exact cycles per sample (first input event accepted -> result valid) for a source
    that offers the events of :func:`~pascal_hdl.engine.sample_events` back to back."""
    return np.array([r["cycles"] for r in run_model(config, levels)], dtype=np.int64)
