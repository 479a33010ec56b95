"""Cycle-level Python model of the layer engine (:class:`pascal_hdl.gateware.engine.LayerEngine`).

Same handshakes, same cycles and the same integer values as the gateware;
the Amaranth tests run both side by side and compare every cycle.
"""
from __future__ import annotations

import enum

import numpy as np

from pascal_hdl.config import LayerConfig
from pascal_hdl.widths import check_type

__all__ = ["Phase", "EngineModel", "breaks_stream_rule", "sample_events"]


def breaks_stream_rule(event, in_features: int, t_in: int, seen_valid: bool, prev_index: int,
                       t_min: int = 0) -> bool:
    """The stream rule of a stage's input, one home for every cycle model (engines, conv, pooling and
    the core's gate): an event is dropped (and flagged ``rejected``) if its ``index`` is not below
    ``in_features``, its ``count`` is above ``t_in`` or below ``t_min`` (0, or the negative bound of a
    signed analog input), or ``seen_valid`` (an event of the sample was kept before) and its index is
    not above ``prev_index``, the last kept one. The gateware's expression is
    :func:`pascal_hdl.gateware.engine.breaks_stream_rule`."""
    return (event["index"] >= in_features or event["count"] > t_in or event["count"] < t_min
            or (seen_valid and event["index"] <= prev_index))


class Phase(enum.IntEnum):
    """Phase of a layer engine (the gateware's state register holds these values)."""

    ACCUMULATE = 0
    READ = 1       # read one group's accumulators and parameters
    START = 2      # hidden: start the neuron units, clear the accumulators
    RUN = 3        # hidden: T2 cycles of stage 1 and stage 2
    EMIT = 4       # hidden: send the group's counts, one neuron per cycle
    COLLECT = 5    # readout: one logit per cycle, running argmax
    RESULT = 6     # readout: offer {logits, cls}
    FINISH = 7     # readout: last logit through the compare stage
    CLEAR = 8      # after reset: zero one accumulator word per cycle (i.ready low)


class EngineModel:
    """Cycle-level Python model of a :class:`LayerEngine` (same handshakes, same cycles).

    Per cycle: read :meth:`in_ready`, :meth:`out_valid` and :attr:`out_payload`
    (they depend on the state only), then call :meth:`step` with the input
    offered and whether the output was taken. Values come from
    :meth:`LayerConfig.forward`-style integer arithmetic on the accumulated
    totals, so the model checks both timing and data.

    A new model is the engine after a reset (or at power-up): in CLEAR, one
    accumulator word zeroed per cycle for :attr:`LayerConfig.clear_cycles`
    (``groups``) cycles with ``in_ready()`` false, then ACCUMULATE; :meth:`reset`
    returns it there (the ``rst`` of the engine, at any cycle).

    Double-buffered (``config.banks == 2``): :attr:`phase` is the drain side's (READ .. EMIT or
    COLLECT .. RESULT; ACCUMULATE when it has no bank to drain) and the accumulate side runs beside
    it: a sample whose last event has been issued leaves its bank full (:attr:`held`, its results in
    :attr:`held_outputs`); in a cycle that starts with a full bank and a free drain side the bank is
    handed over (the drain side starts READ in the next cycle) and the accumulate side takes the
    next sample's events into the other bank.
    """

    def __init__(self, config: LayerConfig):
        self.config = check_type("EngineModel", "config", config, LayerConfig)
        self.reset()

    def reset(self):
        """The engine's ``rst``: the state of a new model (CLEAR, then an empty engine)."""
        config = self.config
        self.phase = Phase.CLEAR
        self.total = np.zeros(config.out_features, dtype=np.int64)
        self.busy_cycles = 0
        self.last_seen = False
        self.first = True
        self.prev_index = -1
        self.group = self.lane = self.neuron = self.run_steps = 0
        self.outputs = None
        self.rejected = 0
        self.buffer = None                 # the input register
        self.held = False                  # two banks: the accumulate side's bank is full
        self.held_outputs = None

    @property
    def banked(self) -> bool:
        return self.config.banks == 2

    def can_take(self) -> bool:
        if self.banked:
            return self.phase != Phase.CLEAR and not self.held and self.busy_cycles == 0
        return self.phase == Phase.ACCUMULATE and self.busy_cycles == 0

    def in_ready(self) -> bool:
        return self.phase != Phase.CLEAR and (self.buffer is None or self.can_take())

    def _bad(self, event) -> bool:
        return breaks_stream_rule(event, self.config.in_features, self.config.t_in, not self.first, self.prev_index,
                                  self.config.t_min)

    def rejecting(self) -> bool:
        """The ``rejected`` output in this cycle."""
        return self.buffer is not None and self.can_take() and self._bad(self.buffer)

    def _value(self, n: int) -> int:
        return int(self.outputs[n])

    def out_valid(self) -> bool:
        if self.phase == Phase.RESULT:
            return True
        if self.phase == Phase.EMIT:
            return self._value(self.neuron) != 0 or self.neuron == self.config.out_features - 1
        return False

    @property
    def out_payload(self):
        if self.phase == Phase.RESULT:
            return {"logits": self.outputs.copy(), "cls": int(np.argmax(self.outputs))}
        n = self.neuron
        return {"index": n, "count": self._value(n), "last": n == self.config.out_features - 1}

    def _finish_input(self):
        cfg = self.config
        if cfg.is_readout:
            outputs = self.total + cfg.v0
        else:
            outputs = np.clip((self.total + cfg.v0) // cfg.theta, 0, cfg.t_out)
        self.total = np.zeros_like(self.total)
        if self.banked:
            self.held, self.held_outputs = True, outputs
            self.first, self.last_seen, self.prev_index = True, False, -1
        else:
            self.phase, self.group, self.lane, self.neuron = Phase.READ, 0, 0, 0
            self.outputs = outputs

    def _next_lane(self, done):
        cfg = self.config
        if self.neuron == cfg.out_features - 1:
            done()
        elif self.lane == cfg.lanes - 1:
            self.lane, self.group, self.phase = 0, self.group + 1, Phase.READ
        else:
            self.lane += 1
        self.neuron += 1

    def _end_sample(self):
        if self.banked:
            self.phase, self.group = Phase.ACCUMULATE, 0
        else:
            self.phase, self.first, self.last_seen, self.group, self.prev_index = Phase.ACCUMULATE, True, False, 0, -1

    def step(self, in_valid: bool = False, in_payload=None, out_ready: bool = True) -> tuple[bool, bool]:
        """Advance one clock cycle; return ``(input accepted, output taken)``."""
        cfg = self.config
        accepted = bool(in_valid) and self.in_ready()
        taken = bool(out_ready) and self.out_valid()
        phase = self.phase
        hand_over = self.banked and self.held and phase == Phase.ACCUMULATE
        event = self.buffer if self.can_take() else None
        if accepted:
            self.buffer = {key: in_payload[key] for key in ("index", "count", "last")}
        elif event is not None:
            self.buffer = None
        if event is not None:
            index, count, last = int(event["index"]), int(event["count"]), bool(event["last"])
            if self._bad(event):
                self.rejected += 1
                count = 0
            else:
                self.first, self.prev_index = False, index
                self.total += count * cfg.weight[:, index]
            self.last_seen = last
            cost = int(cfg.issues(count)) * cfg.groups      # mac: one pass per event
            self.busy_cycles = max(cost - 1, 0)
            if last and cost <= 1:
                self._finish_input()
        elif self.busy_cycles:
            self.busy_cycles -= 1
            if self.busy_cycles == 0 and self.last_seen:
                self._finish_input()
        # The drain side (with one bank it runs only when the accumulate side is idle: other phases).
        if hand_over:
            self.held, self.outputs, self.held_outputs = False, self.held_outputs, None
            self.phase, self.group, self.lane, self.neuron = Phase.READ, 0, 0, 0
        elif phase == Phase.CLEAR:
            if self.group == cfg.groups - 1:
                self.phase, self.group = Phase.ACCUMULATE, 0
            else:
                self.group += 1
        elif phase == Phase.READ:
            self.phase = Phase.COLLECT if cfg.is_readout else Phase.START
        elif phase == Phase.START:
            self.phase, self.run_steps = Phase.RUN, 0
        elif phase == Phase.RUN:
            self.run_steps += 1
            if self.run_steps == cfg.t_out:
                self.phase = Phase.EMIT
        elif phase == Phase.EMIT:
            if taken or not self.out_valid():
                self._next_lane(self._end_sample)
        elif phase == Phase.COLLECT:
            self._next_lane(lambda: setattr(self, "phase", Phase.FINISH))
        elif phase == Phase.FINISH:
            self.phase = Phase.RESULT
        elif phase == Phase.RESULT and taken:
            self._end_sample()
        return accepted, taken


def sample_events(counts) -> list[dict]:
    """Events of one sample: the nonzero counts in index order, the last one flagged.

    An all-zero sample is the single event ``(0, 0, last)``.
    """
    counts = np.asarray(counts)
    nonzero = np.flatnonzero(counts)
    if len(nonzero) == 0:
        return [{"index": 0, "count": 0, "last": True}]
    return [{"index": int(j), "count": int(counts[j]), "last": i == len(nonzero) - 1}
            for i, j in enumerate(nonzero)]


def run_samples(make_model, counts, out_features: int, what: str, max_cycles: int = 10_000_000):
    """Run a stage's cycle model one sample at a time: a fresh ``make_model()`` per sample, a source
    offering the sample's events (:func:`sample_events`) back to back and a sink always ready.

    The model has ``out_valid()``, ``out_payload`` (``index``, ``count``, ``last``) and
    ``step(in_valid, in_payload, out_ready) -> (accepted, taken)``. Returns the counts
    ``(batch, out_features)`` and, per sample, the cycles from the acceptance of its first event to
    the cycle after its last output is taken (a fresh model first runs its CLEAR phase with its input
    not ready: those cycles come before the first acceptance and are not counted).
    """
    outputs, cycles = [], []
    for sample in counts:
        model, queue = make_model(), sample_events(sample)
        result = np.zeros(out_features, dtype=np.int64)
        started = None
        for cycle in range(max_cycles):
            payload = model.out_payload if model.out_valid() else None
            accepted, taken = model.step(bool(queue), queue[0] if queue else None, True)
            if accepted:
                started = cycle if started is None else started
                queue.pop(0)
            if taken:
                result[payload["index"]] = payload["count"]
                if payload["last"]:
                    cycles.append(cycle + 1 - started)
                    break
        else:  # pragma: no cover - the models always terminate
            raise RuntimeError(f"{what} did not finish within {max_cycles} cycles")
        outputs.append(result)
    return np.array(outputs), np.array(cycles, dtype=np.int64)
