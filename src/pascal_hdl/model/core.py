"""Cycle-level Python model of the network core (:class:`pascal_hdl.gateware.core.NetworkCore`).

:class:`CoreModel` chains the stage models (:func:`~pascal_hdl.model.chain.stage_model`:
:class:`~pascal_hdl.model.engine.EngineModel`, conv, pooling, residual) as the core chains its blocks; :func:`expected_cycles` is the exact cycle count of a
sample for a source that offers its events back to back.
"""
from __future__ import annotations

import enum

import numpy as np

from pascal_hdl.config import CoreConfig, HardwareError
from pascal_hdl.model.chain import stage_model
from pascal_hdl.model.engine import sample_events
from pascal_hdl.widths import check_type

__all__ = ["CoreState", "CoreModel", "check_levels", "run_model", "expected_cycles"]


class CoreState(enum.IntEnum):
    """Input gate state of the core (the gateware's state register holds these values)."""

    IDLE = 0      # no sample in flight
    INPUT = 1     # events of the current sample arriving
    WAIT = 2      # last event accepted, result not yet taken


class CoreModel:
    """Cycle-level Python model of :class:`NetworkCore` built from the stage models.

    Per cycle: read :meth:`in_ready`, :meth:`out_valid`, :attr:`out_payload`,
    then :meth:`step`. :attr:`events` records, per hidden layer, the events
    handed on (as the ``monitor_*`` ports show them).
    """

    def __init__(self, config: CoreConfig):
        self.config = check_type("CoreModel", "config", config, CoreConfig)
        self.engines = [stage_model(layer) for layer in config.layers]
        self.state = CoreState.IDLE
        self.cycles = 0
        self.rejected = False
        self.events = {layer.name: [] for layer in config.hidden}

    def in_ready(self) -> bool:
        return self.engines[0].in_ready() and self.state != CoreState.WAIT

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
        if accept and self.state == CoreState.IDLE:
            self.rejected = False
        elif rejecting:
            self.rejected = True
        if accept:
            self.cycles = 1 if self.state == CoreState.IDLE else self.cycles + 1
            self.state = CoreState.WAIT if in_payload["last"] else CoreState.INPUT
        elif self.state != CoreState.IDLE and not result_valid:
            self.cycles += 1
        if taken:
            self.state = CoreState.IDLE
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
    that offers the events of :func:`~pascal_hdl.gateware.engine.sample_events` back to back."""
    return np.array([r["cycles"] for r in run_model(config, levels)], dtype=np.int64)
