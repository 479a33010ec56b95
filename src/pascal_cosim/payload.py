"""Stream payloads as plain data: field offsets and widths, packing and unpacking.

The layouts come from the design (``pascal_hdl.gateware.engine.event_layout``,
``core_result_layout``, ...) through :meth:`PayloadLayout.from_amaranth`, so no
offset or width is written twice; a :class:`PayloadLayout` is then plain data
(JSON-serializable) that the cocotb testbench uses inside the simulator without
importing Amaranth.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Field", "PayloadLayout", "hex_to_words", "words_to_hex"]


@dataclass(frozen=True)
class Field:
    """One field: ``count`` elements (1: a scalar) of ``width`` bits from bit ``offset``."""

    name: str
    offset: int
    width: int
    signed: bool = False
    count: int = 1

    @property
    def is_array(self) -> bool:
        return self.count != 1


@dataclass(frozen=True)
class PayloadLayout:
    """The fields of a payload word of ``width`` bits (low bits first)."""

    fields: tuple[Field, ...]
    width: int

    @classmethod
    def from_amaranth(cls, layout) -> PayloadLayout:
        """From an ``amaranth.lib.data.StructLayout`` (scalar fields and one-level ``ArrayLayout`` s)."""
        from amaranth.hdl import Shape
        from amaranth.lib import data

        fields = []
        for name, field in layout:
            shape = field.shape
            if isinstance(shape, data.ArrayLayout):
                elem = shape.elem_shape
                if isinstance(elem, data.Layout):
                    raise TypeError(f"payload field {name!r}: nested layouts are not supported")
                elem = Shape.cast(elem)
                fields.append(Field(name, field.offset, elem.width, elem.signed, shape.length))
            elif isinstance(shape, data.Layout):
                raise TypeError(f"payload field {name!r}: nested layouts are not supported")
            else:
                cast = Shape.cast(shape)
                fields.append(Field(name, field.offset, cast.width, cast.signed))
        return cls(tuple(fields), layout.size)

    def to_json(self) -> dict:
        return {"width": self.width, "fields": [vars(f) for f in self.fields]}

    @classmethod
    def from_json(cls, obj: dict) -> PayloadLayout:
        return cls(tuple(Field(**f) for f in obj["fields"]), int(obj["width"]))

    def __getitem__(self, name: str) -> Field:
        for field in self.fields:
            if field.name == name:
                return field
        raise KeyError(f"payload has no field {name!r} (fields: {', '.join(f.name for f in self.fields)})")

    def pack(self, values: dict) -> int:
        """One payload word from ``{field: int or list of int}`` (negative ints for signed fields)."""
        word = 0
        for field in self.fields:
            items = values[field.name]
            items = list(items) if field.is_array else [items]
            if len(items) != field.count:
                raise ValueError(f"field {field.name}: {len(items)} values for {field.count} elements")
            limit = 1 << field.width
            for k, value in enumerate(items):
                value = int(value)
                low = -(limit >> 1) if field.signed else 0
                high = (limit >> 1) if field.signed else limit
                if not low <= value < high:
                    raise ValueError(f"field {field.name}: {value} does not fit {field.width} "
                                     f"{'signed' if field.signed else 'unsigned'} bits")
                word |= (value & (limit - 1)) << (field.offset + k * field.width)
        return word

    def unpack(self, word: int) -> dict:
        """``{field: int or list}`` from one payload word (signed fields sign-extended)."""
        columns = self.unpack_many([word])
        return {name: (col[0].tolist()) for name, col in columns.items()}

    def unpack_many(self, words) -> dict[str, np.ndarray]:
        """Columns ``{field: int64 array (n,) or (n, count)}`` from a sequence of words."""
        objects = np.empty(len(words), dtype=object)
        objects[:] = [int(w) for w in words]
        columns = {}
        for field in self.fields:
            mask = (1 << field.width) - 1
            parts = []
            for k in range(field.count):
                raw = ((objects >> (field.offset + k * field.width)) & mask).astype(np.int64)
                if field.signed:
                    raw = np.where(raw >> (field.width - 1), raw - (1 << field.width), raw)
                parts.append(raw)
            columns[field.name] = np.stack(parts, axis=1) if field.is_array else parts[0]
        return columns


def words_to_hex(words, width: int) -> str:
    """Words one per line, most significant digit first (``$readmemh`` format)."""
    digits = max(1, -(-width // 4))
    return "".join(f"{int(w):0{digits}x}\n" for w in words)


def hex_to_words(text: str) -> list[int]:
    return [int(line, 16) for line in text.split()]
