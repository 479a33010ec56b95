"""The PASC-IF neuron: the readable reference of ``docs/semantics.md`` §2.

Every fast engine in this package is tested against :func:`pasc_if` bit for bit.

A neuron with threshold ``theta`` receives input spike currents for ``T1``
steps and emits a burst of length ``T2``::

    v = v0 ; c = 0
    stage 1, t = 0 .. T1-1:             v += I[t]; if v >= theta: v -= theta; c += 1
    stage 2, t = 0 .. max(T1,T2)-2:     if v >= theta: v -= theta; c += 1   (excitatory)
                                        elif v < 0:    v += theta; c -= 1   (inhibitory)
    stage 3, t = 0 .. T2-1:             out[t] = c > t

Theorem: the number of output spikes is ``clip(floor((v0 + sum(I)) / theta), 0, T2)``
whatever the order of the currents.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pascal_ref.errors import PascalError

__all__ = ["pasc_if", "PascIfResult", "StageTrace", "neuron_count"]


@dataclass(frozen=True)
class StageTrace:
    """State after every step of one stage; arrays of shape ``(steps, *neurons)``.

    ``v`` membrane potential, ``c`` signed spike counter, ``excitatory`` and
    ``inhibitory`` the spikes of that step (bool). In stage 3 ``excitatory``
    holds the transmitted spikes and ``inhibitory`` is all False.
    """

    v: np.ndarray
    c: np.ndarray
    excitatory: np.ndarray
    inhibitory: np.ndarray


@dataclass(frozen=True)
class PascIfResult:
    """Output of :func:`pasc_if`.

    ``spikes``: bool ``(T2, *neurons)``, the stage-3 burst. ``counts``: int64
    ``(*neurons)``, number of output spikes. ``trace``: ``(stage1, stage2,
    stage3)`` :class:`StageTrace` or None. ``v``, ``c``: final state.
    """

    spikes: np.ndarray
    counts: np.ndarray
    v: np.ndarray
    c: np.ndarray
    trace: tuple[StageTrace, StageTrace, StageTrace] | None = None


def _is_integer(a: np.ndarray) -> bool:
    return a.dtype.kind in "iub"


def _check_finite(name: str, a: np.ndarray) -> None:
    if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
        raise PascalError(f"pasc_if: {name} contains NaN or Inf")


def pasc_if(currents, theta, v0, t_out: int, trace: bool = False) -> PascIfResult:
    """Run PASC-IF neurons through the three stages of the contract.

    Parameters
    ----------
    currents : array_like, shape ``(T1, *neurons)``
        Input current of every neuron at every stage-1 step (float or integer).
    theta : scalar or array broadcastable to ``neurons``
        Firing threshold, > 0 (integer >= 1 in the integer model).
    v0 : scalar or array broadcastable to ``neurons``
        Initial membrane potential (``phi*theta`` plus the bias).
    t_out : int
        ``T2``, the length of the output spike train (the layer's L), >= 1.
    trace : bool
        Record every step's ``v``, ``c`` and spikes of both signs.

    If ``currents``, ``theta`` and ``v0`` are all integer the computation is
    exact int64 arithmetic; otherwise float64 with the contract's exact
    comparisons (no firing tolerance).
    """
    currents = np.asarray(currents)
    theta = np.asarray(theta)
    v0 = np.asarray(v0)
    if currents.ndim < 1:
        raise PascalError("pasc_if: currents must have shape (T1, ...), got a scalar")
    t_in = currents.shape[0]
    if t_in < 1:
        raise PascalError("pasc_if: currents has T1 = 0 steps; need T1 >= 1")
    if isinstance(t_out, (bool, np.bool_)) or not isinstance(t_out, (int, np.integer)) or t_out < 1:
        raise PascalError(f"pasc_if: t_out (T2) must be an integer >= 1, got {t_out!r}")
    t_out = int(t_out)
    for name, a in (("currents", currents), ("theta", theta), ("v0", v0)):
        if a.dtype.kind not in "iubf":
            raise TypeError(f"pasc_if: {name} must be integer or float, got dtype {a.dtype}")
        _check_finite(name, a)
    if np.any(theta <= 0):
        raise PascalError("pasc_if: theta must be > 0")
    exact = _is_integer(currents) and _is_integer(theta) and _is_integer(v0)
    dtype = np.int64 if exact else np.float64
    neuron_shape = currents.shape[1:]
    try:
        theta = np.broadcast_to(theta.astype(dtype), neuron_shape)
        v = np.broadcast_to(v0.astype(dtype), neuron_shape).copy()
    except ValueError:
        raise PascalError(
            f"pasc_if: theta {theta.shape} and v0 {v0.shape} must broadcast to the neuron shape {neuron_shape}"
        ) from None
    currents = currents.astype(dtype, copy=False)
    c = np.zeros(neuron_shape, dtype=np.int64)

    def record(steps):
        return {"v": np.empty((steps,) + neuron_shape, dtype), "c": np.empty((steps,) + neuron_shape, np.int64),
                "excitatory": np.zeros((steps,) + neuron_shape, bool),
                "inhibitory": np.zeros((steps,) + neuron_shape, bool)}

    settle_steps = max(t_in, t_out) - 1
    logs = [record(t_in), record(settle_steps), record(t_out)] if trace else None

    # Stage 1: integrate; spikes are internal.
    for t in range(t_in):
        v = v + currents[t]
        fire = v >= theta
        v = np.where(fire, v - theta, v)
        c = c + fire
        if trace:
            logs[0]["v"][t], logs[0]["c"][t], logs[0]["excitatory"][t] = v, c, fire

    # Stage 2: settle without input; inhibitory spikes take back early spikes.
    for t in range(settle_steps):
        excite = v >= theta
        inhibit = ~excite & (v < 0)
        v = np.where(excite, v - theta, np.where(inhibit, v + theta, v))
        c = c + excite.astype(np.int64) - inhibit.astype(np.int64)
        if trace:
            log = logs[1]
            log["v"][t], log["c"][t], log["excitatory"][t], log["inhibitory"][t] = v, c, excite, inhibit

    # Stage 3: transmit a burst of min(max(c, 0), T2) spikes.
    steps = np.arange(t_out).reshape((t_out,) + (1,) * len(neuron_shape))
    spikes = c > steps
    counts = np.clip(c, 0, t_out)
    stage_traces = None
    if trace:
        logs[2]["v"][:] = v
        logs[2]["c"][:] = c
        logs[2]["excitatory"][:] = spikes
        stage_traces = tuple(StageTrace(**log) for log in logs)
    return PascIfResult(spikes=spikes, counts=counts, v=v, c=c, trace=stage_traces)


def neuron_count(total_current, theta, v0, t_out: int):
    """Closed form of the theorem: ``clip(floor((v0 + S) / theta), 0, T2)``.

    Exact for integers (floor division); float64 otherwise.
    """
    total_current = np.asarray(total_current)
    theta = np.asarray(theta)
    v0 = np.asarray(v0)
    if _is_integer(total_current) and _is_integer(theta) and _is_integer(v0):
        return np.clip((v0.astype(np.int64) + total_current) // theta, 0, t_out).astype(np.int64)
    return np.clip(np.floor((v0 + total_current) / theta), 0, t_out).astype(np.int64)
