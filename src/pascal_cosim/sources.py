"""Verilog sources for simulation: memory images from ``.hex`` files, the Icarus time-0 fix.

The generated core initializes its weight and parameter memories inline (that
is what synthesis reads) and writes the same words into ``<layer>.weights.hex``
and ``<layer>.params.hex``. For simulation, :func:`memories_from_hex` replaces
the inline initialization by ``$readmemh`` of those files, so that

* the co-simulation checks the memory images a ``$readmemh`` or
  block-RAM-swapping flow would load, and reports every word where they differ
  from the inline values (a difference is a failure: the two must agree);
* the simulator compiles no large initial blocks, and a build serves every
  model with the same structure (the words are read at time 0 of each run).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from pascal_cosim.payload import hex_to_words

__all__ = ["MemoryImage", "icarus_patch", "memories_from_hex", "split_modules"]


@dataclass(frozen=True)
class MemoryImage:
    """Memory ``memory`` of Verilog module ``module`` is loaded from ``file`` (in the run folder)."""

    module: str
    memory: str
    file: str
    layer: str


_MODULE = re.compile(r"^module\s+(\\?\S+)\s*\(.*?^endmodule\n?", re.MULTILINE | re.DOTALL)


def split_modules(text: str) -> dict[str, tuple[int, int]]:
    """``{module name: (start, end)}`` character spans of the modules of a Verilog text."""
    return {m.group(1).lstrip("\\"): (m.start(), m.end()) for m in _MODULE.finditer(text)}


def _init_block(memory: str) -> re.Pattern:
    return re.compile(r"(\n  reg \[(\d+):0\] " + re.escape(memory) + r" \[(\d+):0\];\n)  initial begin\n((?:    "
                      + re.escape(memory) + r"\[\d+\] = [^;\n]+;\n)*)  end\n")


_INIT_WORD = re.compile(r"\[(\d+)\] = (\d+)'([hdbo])([0-9a-fA-FxXzZ_]+);")
_BASES = {"h": 16, "d": 10, "b": 2, "o": 8}


def memories_from_hex(text: str, images, hex_files: dict[str, str]) -> tuple[str, list[str]]:
    """Replace the inline initialization of each :class:`MemoryImage` by ``$readmemh``.

    ``hex_files``: ``{file name: text}`` of the memory images.

    Returns the new text and the differences found between the inline words
    and the ``.hex`` file (one message per memory, naming the layer and the
    first differing words); a ``.hex`` file of the wrong length is an error.
    """
    spans = split_modules(text)
    differences = []
    edits = []
    for image in images:
        if image.module not in spans:
            raise ValueError(f"layer '{image.layer}': no module {image.module!r} in the Verilog")
        start, end = spans[image.module]
        body = text[start:end]
        match = _init_block(image.memory).search(body)
        if match is None:
            raise ValueError(f"layer '{image.layer}': module {image.module} has no initialized memory {image.memory!r}")
        depth = int(match.group(3)) + 1
        inline = [0] * depth
        for m in _INIT_WORD.finditer(match.group(4)):
            inline[int(m.group(1))] = int(m.group(4).replace("_", ""), _BASES[m.group(3)])
        words = hex_to_words(hex_files[image.file])
        if len(words) != depth:
            raise ValueError(f"layer '{image.layer}': {image.file} has {len(words)} words, memory {image.memory} "
                             f"of {image.module} has {depth}")
        bad = [k for k in range(depth) if words[k] != inline[k]]
        if bad:
            differences.append(f"layer '{image.layer}': {image.file} differs from the Verilog's initial {image.memory} "
                               f"at {len(bad)} word(s), first {bad[:5]} (the simulation used the .hex)")
        replacement = match.group(1) + f'  initial $readmemh("{image.file}", {image.memory});\n'
        edits.append((start + match.start(), start + match.end(), replacement))
    for lo, hi, new in sorted(edits, reverse=True):
        text = text[:lo] + new + text[hi:]
    return text, differences


_COMB_TRIGGER = re.compile(r"^(\s*)reg (\\\$auto\$verilog_backend\S*)\s*=\s*0;", re.MULTILINE)


def icarus_patch(text: str) -> str:
    """Every combinational block runs once at start, under Icarus too.

    Yosys' Verilog gives each module a dummy register read by every ``always @*``
    block so that simulators evaluate them at time 0; Icarus 11 applies the
    declaration's ``= 0`` without an event, so a block whose inputs never
    change (an output decoded from a state still at its reset value) stays X.
    Toggling the dummy 1 ns in fixes that; it is read in empty ``if``
    statements only, so nothing else changes. Simulation only.
    """
    return _COMB_TRIGGER.sub(lambda m: f"{m.group(0)}\n{m.group(1)}initial #1 {m.group(2)} = 1;", text)
