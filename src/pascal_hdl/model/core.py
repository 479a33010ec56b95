"""Cycle-level Python model of the network core (:class:`pascal_hdl.gateware.core.NetworkCore`).

:class:`CoreModel` chains the stage models (:func:`~pascal_hdl.model.chain.stage_model`:
:class:`~pascal_hdl.model.engine.EngineModel`, conv, pooling, residual) as the core chains its
blocks. :func:`expected_cycles` is the exact cycle count (latency) of each sample run alone, for a
source that offers its events back to back; :func:`run_stream` runs all samples as one stream (with
``CoreConfig.in_flight > 1`` they overlap) and :func:`stream_figures` gives the steady-state cycles
per image and the latencies of such a run.
"""
from __future__ import annotations

import numpy as np

from pascal_hdl.config import CoreConfig, HardwareError
from pascal_hdl.model.chain import stage_model
from pascal_hdl.model.engine import breaks_stream_rule, sample_events
from pascal_hdl.widths import check_type

__all__ = ["CoreModel", "SAMPLE_TAG_WIDTH", "check_levels", "run_model", "run_stream", "expected_cycles",
           "stream_figures"]

SAMPLE_TAG_WIDTH = 16     # the result's sample number, modulo 2**16
COUNTER_MODULUS = 1 << 32  # the core's cycle counter (CYCLE_COUNTER_WIDTH bits)


class CoreModel:
    """Cycle-level Python model of :class:`NetworkCore` built from the stage models.

    Per cycle: read :meth:`in_ready`, :meth:`out_valid`, :attr:`out_payload`,
    then :meth:`step`. :attr:`events` records, per hidden layer, the events
    handed on (as the ``monitor_*`` ports show them). The gate, the per-sample FIFO
    (start cycle, rejection flag) and the result fields follow the gateware register by register.
    """

    def __init__(self, config: CoreConfig):
        self.config = check_type("CoreModel", "config", config, CoreConfig)
        self.engines = [stage_model(layer) for layer in config.layers]
        self.events = {layer.name: [] for layer in config.hidden}
        self.now = 0
        self.inside = 0
        self.within = False
        self.stamps = [0] * config.in_flight
        self.flags = [False] * config.in_flight
        self.head = self.free = self.current = 0
        self.results_taken = 0
        self.prev_index, self.seen_valid = 0, False
        self.held = None          # (cycles, finished) frozen in the first cycle the result is valid

    def reset(self) -> None:
        """The core's ``rst``: every register back to its reset value, every stage model reset (each
        clears its memories again, ``CoreConfig.clear_cycles``); :attr:`events` is a record and stays."""
        events = self.events
        self.__init__(self.config)
        self.events = events

    def _gate_open(self) -> bool:
        return self.within or self.inside < self.config.in_flight

    def in_ready(self) -> bool:
        return self.engines[0].in_ready() and self._gate_open()

    def out_valid(self) -> bool:
        return self.engines[-1].out_valid()

    @property
    def out_payload(self) -> dict:
        payload = dict(self.engines[-1].out_payload)
        cycles, finished = self.held or ((self.now - self.stamps[self.head]) % COUNTER_MODULUS, self.now)
        payload.update(cycles=cycles, rejected=self.flags[self.head], finished=finished,
                       sample=self.results_taken % (1 << SAMPLE_TAG_WIDTH))
        return payload

    def step(self, in_valid: bool = False, in_payload=None, out_ready: bool = True) -> tuple[bool, bool]:
        """Advance one clock cycle; return ``(input accepted, result taken)``."""
        engines, depth = self.engines, self.config.in_flight
        accept = bool(in_valid) and self.in_ready()
        valid = [e.out_valid() for e in engines]
        ready = [e.in_ready() for e in engines]
        payloads = [e.out_payload if v else None for e, v in zip(engines, valid)]
        result_valid = valid[-1]
        frozen = (self.out_payload["cycles"], self.out_payload["finished"]) if result_valid else None
        accepted, _ = engines[0].step(accept, in_payload if accept else None, ready[1] if len(engines) > 1 else out_ready)
        for index in range(1, len(engines)):
            handed = valid[index - 1] and ready[index]
            if handed:
                self.events[self.config.layers[index - 1].name].append(payloads[index - 1])
            out = ready[index + 1] if index + 1 < len(engines) else out_ready
            engines[index].step(handed, payloads[index - 1], out)
        taken = result_valid and bool(out_ready)
        start = accept and not self.within
        if accept:
            bad = breaks_stream_rule(in_payload, self.config.input_features, self.config.input_levels,
                                     self.seen_valid and not start, self.prev_index, self.config.input_min)
            slot = self.free if start else self.current
            if start:
                self.stamps[slot], self.current, self.free = self.now % COUNTER_MODULUS, slot, (slot + 1) % depth
            self.flags[slot] = bad if start else (self.flags[slot] or bad)
            if not bad:
                self.prev_index, self.seen_valid = int(in_payload["index"]), True
            elif start:
                self.seen_valid = False
            self.within = not in_payload["last"]
            if in_payload["last"]:
                self.seen_valid = False
        self.inside += int(start) - int(taken)
        if taken:
            self.held, self.head, self.results_taken = None, (self.head + 1) % depth, self.results_taken + 1
        elif result_valid and self.held is None:
            self.held = frozen
        self.now += 1
        return accepted, taken


def check_levels(config: CoreConfig, levels) -> np.ndarray:
    """Validate input levels ``(batch, input_features)`` in ``input_min..input_levels``."""
    levels = np.asarray(levels)
    if levels.ndim == 1:
        levels = levels[None]
    if levels.dtype.kind not in "iu" or levels.ndim != 2 or levels.shape[1] != config.input_features:
        raise HardwareError(f"core '{config.name}': input levels must be integers of shape (batch, "
                            f"{config.input_features}), got {levels.dtype} {levels.shape}")
    if levels.size and (levels.min() < config.input_min or levels.max() > config.input_levels):
        raise HardwareError(f"core '{config.name}': input levels must lie in [{config.input_min}, {config.input_levels}], "
                            f"got [{levels.min()}, {levels.max()}]")
    return levels.astype(np.int64)


def run_model(config: CoreConfig, levels, max_cycles: int = 10_000_000) -> list[dict]:
    """Run :class:`CoreModel` on samples with an ideal source and sink, each sample alone and sent once
    every stage has cleared its memories after reset (``config.clear_cycles`` idle cycles); one result
    dict per sample."""
    levels = check_levels(config, levels)
    results = []
    for sample in levels:
        model = CoreModel(config)
        for _ in range(config.clear_cycles):
            model.step(False, None, True)
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
    that offers the events of :func:`~pascal_hdl.gateware.engine.sample_events` back to back."""
    return np.array([r["cycles"] for r in run_model(config, levels)], dtype=np.int64)


def run_stream(config: CoreConfig, levels, max_cycles: int | None = None) -> list[dict]:
    """Run one :class:`CoreModel` on all samples as one stream: the source offers every sample's events
    back to back (the next sample's first event right after the previous one's last) and the sink is
    always ready. One result per sample, in order, with every field of the result (``cycles`` is
    the latency, ``finished`` the core's cycle counter when the result became valid)."""
    levels = check_levels(config, levels)
    queue = [event for sample in levels for event in sample_events(sample)]
    model, results, position = CoreModel(config), [], 0
    budget = max_cycles if max_cycles is not None else 16 * (len(levels) + 1) * (config.worst_case_cycles() + 16)
    for _ in range(budget):
        if len(results) == len(levels):
            return results
        if model.out_valid():
            results.append(model.out_payload)
        offered = position < len(queue)
        accepted, _ = model.step(offered, queue[position] if offered else None, True)
        position += int(accepted)
    raise RuntimeError("core model did not finish the stream")  # pragma: no cover - the model always terminates


def stream_figures(results: list[dict]) -> dict:
    """Throughput and latency of a run of back-to-back samples (:func:`run_stream`, or the same fields
    measured on the hardware): ``cycles_per_image`` = the steady-state interval between results,
    ``(finished[-1] - finished[0]) / (n - 1)`` (the first result's latency is not part of it),
    ``latency`` mean, min, max of ``cycles``."""
    finished = np.array([r["finished"] for r in results], dtype=np.int64)
    latency = np.array([r["cycles"] for r in results], dtype=np.int64)
    if len(results) < 2:
        raise ValueError("stream_figures: at least two results are needed for an interval")
    span = int((finished[-1] - finished[0]) % COUNTER_MODULUS)
    return {"images": len(results), "cycles_per_image": span / (len(results) - 1),
            "latency_mean": float(latency.mean()), "latency_min": int(latency.min()), "latency_max": int(latency.max()),
            "first_to_last_result_cycles": span}
