"""The quantization levels ``L`` of a network's activations, one per activation.

One reader for every place that takes them: ``--levels`` of ``pascal-ref
convert`` and ``pascal-ref cost`` (text: ``"4"`` for all activations or
``"8,4,4,..."`` one per activation, in network order), the architecture
templates (:func:`pascal_ref.convert.architectures.build`: an int or a list)
and the benchmarks.  Every error names the option or argument (``where``),
the network and, for a bad value, the activation.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from pascal_ref.errors import PascalError

__all__ = ["levels_per_activation"]


def levels_per_activation(levels, names: Sequence[str], owner: str, where: str = "levels") -> list[int]:
    """One integer ``L >= 1`` per activation, in the order of ``names``.

    Parameters
    ----------
    levels : int, sequence of int, or str
        One L for every activation, or one per activation; text is an
        integer or a comma-separated list of integers (``"4"``,
        ``"8,4,4"``).
    names : the activations' names, in network order.
    owner : the network or architecture, as errors name it (``"resnet18"``).
    where : the option or argument, as errors name it (``"--levels"``).
    """
    names = list(names)
    if isinstance(levels, str):
        try:
            levels = [int(part) for part in levels.split(",")]
        except ValueError:
            raise PascalError(f"{where}: expected an integer or a comma-separated list of integers, "
                              f"got {levels!r}") from None
        if len(levels) == 1:
            levels = levels[0]
    if isinstance(levels, (int, np.integer)) and not isinstance(levels, bool):
        levels = [levels] * len(names)
    try:
        levels = list(levels)
    except TypeError:
        raise PascalError(f"{where}: expected an int or a list of ints, one per activation, got {levels!r}") from None
    if len(levels) != len(names):
        span = ", ".join(names) if len(names) <= 3 else f"{names[0]} .. {names[-1]}"
        plural = "s" if len(names) != 1 else ""
        raise PascalError(f"{where}: {len(levels)} values but {owner} has {len(names)} activation{plural} ({span}); "
                          f"give one L per activation, or one for all")
    for name, value in zip(names, levels):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise PascalError(f"{where}: level for activation '{name}' must be an integer >= 1, got {value!r}")
    return [int(value) for value in levels]
