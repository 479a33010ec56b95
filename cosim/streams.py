"""pytest-side helpers: pack and unpack stream payloads by their Amaranth layouts.

The layouts come from the design (``pascal_hdl.gateware.engine.event_layout`` etc.),
so the testbench never repeats a field offset or width.
"""
from __future__ import annotations

import io
import json

import numpy as np
from amaranth.hdl import Shape
from amaranth.lib import data
from stream_tb import LIMB, join_limbs, split_limbs

__all__ = ["pack", "unpack", "stim_bytes", "decode_outputs"]


def _width(shape) -> int:
    if isinstance(shape, data.Layout):
        return shape.size
    return Shape.cast(shape).width


def _signed(shape) -> bool:
    return not isinstance(shape, data.Layout) and Shape.cast(shape).signed


def pack(layout: data.StructLayout, values: dict) -> int:
    """One payload word from ``{field: int}`` (negative ints for signed fields)."""
    word = 0
    for name, field in layout:
        width = _width(field.shape)
        value = int(values[name])
        limit = (1 << width)
        if not (-(limit >> 1) <= value < limit):
            raise ValueError(f"field {name}: {value} does not fit {width} bits")
        word |= (value & (limit - 1)) << field.offset
    return word


def unpack(layout, word: int) -> dict:
    """``{field: int or list}`` from a payload word (signed fields sign-extended)."""
    result = {}
    for name, field in layout:
        shape = field.shape
        if isinstance(shape, data.ArrayLayout):
            width = _width(shape.elem_shape)
            items = []
            for k in range(shape.length):
                raw = (word >> (field.offset + k * width)) & ((1 << width) - 1)
                if _signed(shape.elem_shape) and raw >> (width - 1):
                    raw -= 1 << width
                items.append(raw)
            result[name] = items
        else:
            width = _width(shape)
            raw = (word >> field.offset) & ((1 << width) - 1)
            if _signed(shape) and raw >> (width - 1):
                raw -= 1 << width
            result[name] = raw
    return result


def stim_bytes(words: list[int], gaps, config: dict) -> bytes:
    """The ``stim.npz`` of ``stream_tb`` for input words, idle gaps and settings."""
    limbs = max(1, max((w.bit_length() for w in words), default=1) // LIMB + 1)
    payload = np.asarray([split_limbs(w, limbs) for w in words], dtype=np.int64).reshape(-1, limbs)
    buffer = io.BytesIO()
    np.savez(buffer, payload=payload, gap=np.asarray(gaps, dtype=np.int64), config=np.asarray(json.dumps(config)))
    return buffer.getvalue()


def decode_outputs(record, layout) -> list[dict]:
    """Every output beat of a ``record.npz`` unpacked with ``layout``."""
    return [unpack(layout, join_limbs(row)) for row in record["outputs"].tolist()]
