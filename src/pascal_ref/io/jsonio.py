"""JSON read from a file: bounded, strict, and every failure one line.

``json.loads`` on hostile text can raise ``RecursionError`` (nesting), a
``ValueError`` that is not a ``JSONDecodeError`` (an integer literal of more
than 4300 digits), and silently keeps the last of duplicate keys.
:func:`parse_json` refuses all three with the error type its caller names (``ModelFileError``, ``SynthError``), so model graphs and
build-folder manifests are read the same way (``docs/threat-model.md``).
"""
from __future__ import annotations

import json
import re

import numpy as np

from pascal_ref.errors import PascalError
from pascal_ref.ir.layers import quote

__all__ = ["parse_json", "json_depth", "MAX_JSON_DEPTH"]

MAX_JSON_DEPTH = 64
"""Deepest nesting of arrays and objects accepted (a model graph has 5, a manifest 4)."""

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)


def json_depth(text: str) -> int:
    """The deepest nesting of ``[``/``{`` in ``text`` outside string literals, found without parsing
    (vectorized: a text of any length costs a few passes in C)."""
    code = np.frombuffer(_STRING.sub("", text).encode("utf-8", "surrogatepass"), dtype=np.uint8)
    steps = np.zeros(code.shape, dtype=np.int64)
    steps[(code == ord("[")) | (code == ord("{"))] = 1
    steps[(code == ord("]")) | (code == ord("}"))] = -1
    return int(np.cumsum(steps).max(initial=0))


def parse_json(text: str, where: str, error: type[PascalError] = PascalError, max_depth: int = MAX_JSON_DEPTH):
    """``json.loads(text)``, or one line of type ``error`` starting with ``where`` for invalid JSON,
    nesting deeper than ``max_depth``, an integer literal of more than 4300 digits or a duplicate key.
    ``NaN`` and ``Infinity`` literals are read (as Python does): the caller's schema refuses them where
    it needs finite numbers, with a message naming the field."""
    if text.count("[") + text.count("{") > max_depth and json_depth(text) > max_depth:
        raise error(f"{where}: JSON nested more than {max_depth} levels deep; refused")

    def pairs(items):
        keys = [key for key, _ in items]
        if len(set(keys)) != len(keys):
            duplicate = next(key for key in keys if keys.count(key) > 1)
            raise ValueError(f"duplicate key {quote(duplicate)}")
        return dict(items)

    try:
        return json.loads(text, object_pairs_hook=pairs)
    except (ValueError, RecursionError) as failure:   # JSONDecodeError is a ValueError; so is a 5000-digit integer
        message = str(failure)
        if "Exceeds the limit" in message:
            message = "an integer literal of more than 4300 digits"
        raise error(f"{where}: not valid JSON ({message[:200]})") from None
