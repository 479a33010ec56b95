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

With integer inputs both functions compute in exact int64 and first check,
from the extremes of the inputs, that no intermediate value can leave the
int64 range (``v`` stays within ``[min(v0, 0) + T1 min(I, 0), max(v0, theta)
+ T1 max(I, 0)]``, widened by ``theta`` for the discarded branch of each
reset): an input that could wrap, or a ``uint64`` value above ``2**63 - 1``,
is a :class:`~pascal_ref.errors.PascalError`, never a wrong count.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pascal_ref.errors import PascalError
from pascal_ref.numeric import INT64_LIMIT

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


def _check_finite(name: str, a: np.ndarray, where: str = "pasc_if") -> None:
    if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
        raise PascalError(f"{where}: {name} contains NaN or Inf")


def _extremes(name: str, a: np.ndarray, where: str) -> tuple[int, int]:
    """``(min, max)`` of an integer array as Python ints, refusing values int64 cannot hold."""
    if a.size == 0:
        return 0, 0
    low, high = int(a.min()), int(a.max())
    if low < -INT64_LIMIT or high >= INT64_LIMIT:
        raise PascalError(f"{where}: {name} holds {high if high >= INT64_LIMIT else low}, outside the int64 range "
                          "of the exact path")
    return low, high


def _check_int64_span(low: int, high: int, what: str, where: str) -> None:
    if low < -INT64_LIMIT or high >= INT64_LIMIT:
        raise PascalError(f"{where}: {what} may reach [{low}, {high}], beyond int64 "
                          f"[-2**63, 2**63 - 1]: the exact path would wrap; refused")


def _check_t_out(t_out, where: str) -> int:
    if isinstance(t_out, (bool, np.bool_)) or not isinstance(t_out, (int, np.integer)) or t_out < 1:
        raise PascalError(f"{where}: t_out (T2) must be an integer >= 1, got {t_out!r}")
    return int(t_out)


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
    t_out = _check_t_out(t_out, "pasc_if")
    for name, a in (("currents", currents), ("theta", theta), ("v0", v0)):
        if a.dtype.kind not in "iubf":
            raise TypeError(f"pasc_if: {name} must be integer or float, got dtype {a.dtype}")
        _check_finite(name, a)
    if np.any(theta <= 0):
        raise PascalError("pasc_if: theta must be > 0")
    exact = _is_integer(currents) and _is_integer(theta) and _is_integer(v0)
    dtype = np.int64 if exact else np.float64
    neuron_shape = currents.shape[1:]
    if exact:
        i_low, i_high = _extremes("currents", currents, "pasc_if")
        v_low, v_high = _extremes("v0", v0, "pasc_if")
        _, theta_high = _extremes("theta", theta, "pasc_if")
        _check_int64_span(min(v_low, 0) + t_in * min(i_low, 0) - theta_high,
                          max(v_high, theta_high) + t_in * max(i_high, 0) + theta_high, "the membrane", "pasc_if")
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

    Exact for integers (floor division, refused if ``v0 + S`` could leave
    int64); float64 otherwise.  ``theta`` must be > 0 and ``t_out`` an
    integer >= 1, as for :func:`pasc_if`.
    """
    total_current = np.asarray(total_current)
    theta = np.asarray(theta)
    v0 = np.asarray(v0)
    t_out = _check_t_out(t_out, "neuron_count")
    for name, a in (("total_current", total_current), ("theta", theta), ("v0", v0)):
        if a.dtype.kind not in "iubf":
            raise TypeError(f"neuron_count: {name} must be integer or float, got dtype {a.dtype}")
        _check_finite(name, a, "neuron_count")
    if np.any(theta <= 0):
        raise PascalError("neuron_count: theta must be > 0")
    if _is_integer(total_current) and _is_integer(theta) and _is_integer(v0):
        s_low, s_high = _extremes("total_current", total_current, "neuron_count")
        v_low, v_high = _extremes("v0", v0, "neuron_count")
        _extremes("theta", theta, "neuron_count")
        _check_int64_span(v_low + s_low, v_high + s_high, "v0 + S", "neuron_count")
        return np.clip((v0.astype(np.int64) + total_current.astype(np.int64)) // theta.astype(np.int64),
                       0, t_out).astype(np.int64)
    return np.clip(np.floor((v0 + total_current) / theta), 0, t_out).astype(np.int64)
