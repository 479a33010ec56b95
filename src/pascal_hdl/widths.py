"""Register widths and run lengths of the PASC-IF neuron unit (no Amaranth needed).

:func:`neuron_widths` derives, from the declared input ranges, the membrane and
counter ranges that no register can leave; :class:`Stage` names the stage step a
unit executes in a cycle (the gateware, the cycle models and the formal reference
share it); :func:`check_int` and :func:`check_type` are the argument checks of the
hardware constructors.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

from pascal_ref.numeric import signed_width

__all__ = ["Stage", "NeuronWidths", "neuron_widths", "signed_width", "neuron_cycles", "check_int", "check_type"]


class Stage(enum.IntEnum):
    """Stage of the step a :class:`PascIfNeuron` executes in the current cycle."""

    IDLE = 0
    INTEGRATE = 1
    SETTLE = 2
    TRANSMIT = 3


def check_int(owner: str, name: str, value, minimum: int, maximum: int | None = None) -> int:
    """``value`` if it is an ``int`` (not a ``bool``) in ``[minimum, maximum]``; else ``TypeError``/``ValueError``
    naming ``owner`` and ``name``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{owner}: {name} must be an int, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise ValueError(f"{owner}: {name} must be {bound}, got {value}")
    return value


def check_type(owner: str, name: str, value, kind: type):
    """``value`` if it is a ``kind``; else a ``TypeError`` naming ``owner`` and ``name``."""
    if not isinstance(value, kind):
        raise TypeError(f"{owner}: {name} must be a {kind.__name__}, got {type(value).__name__}")
    return value


@dataclass(frozen=True)
class NeuronWidths:
    """Worst-case ranges and register widths of a PASC-IF neuron.

    ``v`` stays in ``[v_min, v_max]`` and ``c`` in ``[c_min, c_max]`` after
    every step, for every current sequence in the declared input range; the
    intermediate sums are computed one bit wider by Amaranth's arithmetic.
    """

    current_min: int
    current_max: int
    v0_min: int
    v0_max: int
    theta_max: int
    max_t_in: int
    max_t_out: int
    v_min: int
    v_max: int
    c_min: int
    c_max: int
    v_width: int
    c_width: int
    settle_max: int


def neuron_widths(current_min: int, current_max: int, v0_min: int, v0_max: int, theta_max: int,
                  max_t_in: int, max_t_out: int) -> NeuronWidths:
    """Derive the membrane and counter ranges from the input ranges.

    Stage 1: a step adds ``I`` and subtracts ``theta`` only from ``v >= theta``
    (the result is then >= 0), so ``v`` stays in
    ``[min(0, v0_min) + T1*min(0, I_min), max(0, v0_max) + T1*max(0, I_max)]``.
    Stage 2 moves ``v`` towards ``[0, theta)`` without leaving that range or
    ``[0, theta_max - 1]``. The counter moves by at most one per step:
    ``c`` in ``[-(max(T1,T2)-1), T1 + max(T1,T2)-1]``.
    """
    owner = "neuron_widths"
    for name, value in (("current_min", current_min), ("current_max", current_max), ("v0_min", v0_min),
                        ("v0_max", v0_max)):
        check_int(owner, name, value, -(1 << 62))
    check_int(owner, "theta_max", theta_max, 1)
    check_int(owner, "max_t_in", max_t_in, 1)
    check_int(owner, "max_t_out", max_t_out, 1)
    if current_min > current_max:
        raise ValueError(f"{owner}: current_min {current_min} > current_max {current_max}")
    if v0_min > v0_max:
        raise ValueError(f"{owner}: v0_min {v0_min} > v0_max {v0_max}")
    settle_max = max(max_t_in, max_t_out) - 1
    v_min = min(0, v0_min) + max_t_in * min(0, current_min)
    v_max = max(max(0, v0_max) + max_t_in * max(0, current_max), theta_max - 1)
    c_min, c_max = -settle_max, max_t_in + settle_max
    return NeuronWidths(current_min, current_max, v0_min, v0_max, theta_max, max_t_in, max_t_out,
                        v_min, v_max, c_min, c_max, signed_width(v_min, v_max), signed_width(c_min, c_max),
                        settle_max)


def neuron_cycles(t_in: int, t_out: int) -> int:
    """Cycles of one run: ``T1 + max(T1, T2) - 1 + T2`` (one stage step per cycle)."""
    return t_in + max(t_in, t_out) - 1 + t_out
