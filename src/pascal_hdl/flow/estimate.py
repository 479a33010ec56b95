"""Resource and cycle estimate of a core for a part, without generating Verilog or running synthesis.

``pascal-ref hdl MODEL --estimate --target PART [generator options]`` prints :func:`format_estimate` of
:func:`estimate` (``--json OUT`` writes the same dict). Per stage and in total:

Block RAM and LUT RAM: computed, not fitted
    Every memory the core instantiates (:func:`core_memories`: per engine the weight ROM, the parameter
    ROM, the accumulator RAM and its second bank, the two tap ROMs per input port of a conv engine; the
    cell RAM of a pooling unit and its second bank) with its word width and depth, as the gateware builds
    it (``src/pascal_hdl/gateware/{engine,conv,pool,residual}.py``). ROM bit columns that are the same in
    every word are dropped first, as yosys' ``opt_mem`` does. Each memory is then mapped as yosys'
    ``memory_libmap`` maps it (:func:`map_memory`): every configuration of every RAM primitive of the
    part is tiled (``ceil(depth / config depth) * ceil(width / config width)`` blocks, the width rounded
    to the primitive's write granularity for a RAM), priced with libmap's cost (the primitive's cost per
    block, plus 0.5 per output bit of every extra read multiplexer level, 0.5 per write-enable decode,
    2 per point of emulated logic: a transparent read port 3, a read port not shared with the write port
    1), against the cost of soft logic (``width * depth`` for a RAM, ``/ 16`` for a ROM, truncated to an
    integer), and the cheapest wins (soft logic on a tie). The primitives are those of yosys 0.70's
    libraries for the part: iCE40 ``SB_RAM40_4K`` (256x16, 512x8, 1024x4, 2048x2; cost 64), ECP5
    ``DP16KD`` (true dual port 1024x18 .. 16384x1) and its pseudo-dual-port mode (512x36; cost 128),
    ECP5 distributed RAM ``TRELLIS_DPR16X4`` (16x4, RAMs only, cost 4). A tap ROM is read
    combinationally, which no block RAM does: soft logic. ``tests/pascal_hdl/flow/test_estimate.py``
    checks every decision and every block count against yosys' own on the calibration designs.

LUT4 and FF: a cost model per block kind, calibrated
    Each stage's LUT4 and FF are a linear function of its features (:func:`stage_features`: lanes times
    accumulator, membrane, logit and count-product widths, address widths, the soft-logic bits of the
    memories that stay out of block RAM, the distributed-RAM cells, one constant per engine kind), with
    coefficients fitted (non-negative least squares, :func:`fit_costs`) to yosys' per-module cells of
    small random cores (``benchmarks/calibrate_estimator.py``; none of them a digits model) synthesized
    with ``-noflatten``, each stage's cells scaled by its design's ratio of flattened to hierarchical
    totals (yosys optimizes across the module boundaries of the flattened netlist ``pascal-ref synth``
    builds: 0.78 to 1.20 of the hierarchical LUT4 on the ECP5 calibration designs, 0.81 to 0.95 on the
    UP5K). The
    coefficients and the measurements they come from are in ``estimate_costs.json`` beside this module.
    The distributed-RAM cells count as LUT4 (``pascal-ref synth`` counts ``TRELLIS_DPR16X4`` as one).

DSP blocks: exact
    One per lane of every engine that multiplies on DSP blocks (``--multiplier dsp``;
    :func:`pascal_hdl.model.chain.dsp_products`).

Cycles
    ``worst_case``: :meth:`CoreConfig.worst_case_cycles` (any input). ``typical``: on input levels (the
    ``--data`` samples, else :func:`pascal_hdl.model.chain.calibration_levels`, or for an analog input
    uniform random pixels over the quantizer's range): the exact cycle model
    (:func:`pascal_hdl.model.core.expected_cycles`, with samples in flight
    :func:`~pascal_hdl.model.core.run_stream`) when the worst case of all samples is at most
    :data:`MODEL_CYCLE_BUDGET` cycles, else the sum of the stages' cycles alone on the integer golden
    model's levels (:func:`stage_cycles_alone`: a conv engine's issue cycles and neuron sequencer, a
    pooling unit's updates and sweep, the Linear engine's exact period; a residual block conv1 then
    conv2, the shortcut overlapped), of which the exact cycle model of the digits MLP, CNN and ResNet
    needs 0.92 to 0.98 (docs/estimator.md); with samples in flight the slowest stage, a lower bound of
    the steady state.

Fmax
    Not a timing analysis of the design: :data:`PARTS` gives per part a measured Fmax of a synthesized
    digits design of the same option class (multiplying, samples in flight or double buffers; or none),
    the lowest of those measured where there are several, with its source (the Artix-7: the ECP5-25k's,
    assumed; no flow here synthesizes for it).

External weights
    If the memories do not fit the part's block RAM, the weight memories are kept on chip in stage order
    while blocks remain and the rest are counted as external: their bytes per image (each weight read
    once per image) and the bandwidth that needs at the images per second above. The core cannot read
    external weights yet (issue 14, item 2): this is what such a design would need, not what it does.
"""
from __future__ import annotations

import json
import weakref
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pascal_hdl.config import CoreConfig, HardwareError, LayerConfig

__all__ = ["PARTS", "Part", "Memory", "MemoryMapping", "core_memories", "map_memory", "stage_features",
           "estimate", "format_estimate", "fit_costs", "load_costs", "COSTS_FILE", "MODEL_CYCLE_BUDGET",
           "EstimateError", "tile"]

COSTS_FILE = Path(__file__).with_name("estimate_costs.json")

MODEL_CYCLE_BUDGET = 3_000_000
"""Largest ``worst_case_cycles * samples`` for which the typical cycles come from the exact Python cycle model
(about a second per 10^5 cycles); above it, from the stages' analytic timing."""


class EstimateError(HardwareError):
    """An estimate that cannot be made (unknown part, no calibration data)."""


# ---------------------------------------------------------------------------------------------- parts


@dataclass(frozen=True)
class RamPrimitive:
    """One block or distributed RAM primitive as yosys' ``memory_libmap`` library describes it."""

    name: str
    kind: str                 # "block" or "distributed"
    abits: int
    widths: tuple             # data widths per configuration (depth = 2**abits / width, rounded down to 2**k)
    cost: float
    byte: int = 0             # write granularity (0: the whole port)
    max_write_width: int | None = None
    min_write_width: int | None = None
    rom: bool = True          # may hold a ROM (False: distributed RAM, libmap's prune_rom)
    shared_port: bool = False  # a read port shares the write port's address (not with these engines)

    def depth(self, width_index: int) -> int:
        return 1 << (self.abits - width_index)


ICE40_EBR = (RamPrimitive("SB_RAM40_4K", "block", 11, (2, 4, 8, 16), 64.0, byte=0, max_write_width=8),
             RamPrimitive("SB_RAM40_4K", "block", 11, (2, 4, 8, 16), 64.0, byte=1, min_write_width=16))
"""``$__ICE40_RAM4K_`` in yosys' ``ice40/brams.txt``, options HAS_BE 0 (write 2/4/8 bits) and 1 (16, bit enables)."""

ECP5_EBR = (RamPrimitive("DP16KD", "block", 14, (1, 2, 4, 9, 18), 128.0, byte=9),
            RamPrimitive("DP16KD", "block", 14, (1, 2, 4, 9, 18, 36), 128.0, byte=9, min_write_width=36))
"""``$__DP16KD_`` and ``$__PDPW16KD_`` (the same block, 36-bit pseudo dual port) in ``lattice/brams_16kd.txt``."""

ECP5_LUTRAM = RamPrimitive("TRELLIS_DPR16X4", "distributed", 4, (4,), 4.0, rom=False)
"""``$__TRELLIS_DPR16X4_`` in ``lattice/lutrams_trellis.txt`` (async read, RAMs only)."""


@dataclass(frozen=True)
class Part:
    """An FPGA part: capacity, RAM primitives, the calibration family and the Fmax figures."""

    name: str
    description: str
    source: str               # where the capacity figures come from
    family: str               # cost-model calibration: "ice40" or "ecp5"
    lut: int                  # LUT4 (or, for a LUT6 part, LUT6: a LUT4 netlist needs at most one each)
    lut_kind: str
    ff: int
    ram_name: str
    ram_blocks: int
    ram_kbit: int
    primitives: tuple
    dsp_name: str
    dsp: int
    fmax_mhz: dict            # option class -> (MHz, where it comes from)


_ICE40_FMAX = {
    "plain": (25.65, "lowest measured Fmax of the synthesized digits designs on the UP5K (digits ResNet, 1 lane: "
                     "tests/pascal_hdl/flow/baselines/digits_resnet_ice40.json)"),
    "mac": (26.3, "digits CNN analog, --mac --multiplier dsp, 2 in flight on the UP5K (docs/hardware.md, "
                  "Analog first layer)"),
}
_ECP5_FMAX = {
    "plain": (72.06, "lowest measured Fmax of the default-lane digits designs on the ECP5-25k (digits CNN, "
                     "docs/hardware.md, The digits models side by side; measured 2026-12-04)"),
    "mac": (54.3, "lowest measured Fmax of the digits designs that multiply or hold samples in flight on the "
                  "ECP5-25k (analog MLP --multiplier dsp, docs/hardware.md, Analog first layer)"),
}

PARTS = {
    "ice40-up5k": Part(
        "ice40-up5k", "Lattice iCE40 UP5K (iCE40UP5K-SG48)",
        "iCE40 UltraPlus family data sheet: 5,280 LUT4, 30 EBR of 4 kbit, 8 SB_MAC16 (the 4 SPRAM of 256 kbit "
        "are not used by the flow: synth_ice40 runs without -spram); nextpnr reports the same counts",
        "ice40", 5280, "LUT4", 5280, "SB_RAM40_4K", 30, 4, ICE40_EBR, "SB_MAC16", 8, _ICE40_FMAX),
    "ecp5-25k": Part(
        "ecp5-25k", "Lattice ECP5 LFE5U-25F (CABGA381)",
        "ECP5 family data sheet (FPGA-DS-02012): 24K LUTs (nextpnr: 24,288 TRELLIS_COMB), 56 sysMEM EBR of "
        "18 kbit, 28 18x18 multipliers",
        "ecp5", 24288, "LUT4", 24288, "DP16KD", 56, 18, ECP5_EBR + (ECP5_LUTRAM,), "MULT18X18D", 28, _ECP5_FMAX),
    "ecp5-85k": Part(
        "ecp5-85k", "Lattice ECP5 LFE5U-85F (CABGA381)",
        "ECP5 family data sheet (FPGA-DS-02012): 84K LUTs (nextpnr: 83,640 TRELLIS_COMB), 208 sysMEM EBR of "
        "18 kbit (3,744 kbit), 156 18x18 multipliers",
        "ecp5", 83640, "LUT4", 83640, "DP16KD", 208, 18, ECP5_EBR + (ECP5_LUTRAM,), "MULT18X18D", 156,
        {"plain": (74.4, "measured on the 85k: digits CNN, default lanes (pascal-ref hdl digits-cnn -o DIR; "
                         "pascal-ref synth DIR --target ecp5-85k, seed 1; docs/estimator.md)"),
         "mac": (55.58, "measured on the 85k: digits CNN, default lanes, --mac on 16 MULT18X18D (pascal-ref hdl "
                        "digits-cnn -o DIR --mac --target ecp5-85k; pascal-ref synth DIR --target ecp5-85k, seed 1)")}),
    "xc7a200t": Part(
        "xc7a200t", "AMD/Xilinx Artix-7 XC7A200T",
        "7 Series FPGAs Data Sheet: Overview (DS180), XC7A200T: 33,650 slices = 134,600 LUT6 and 269,200 "
        "flip-flops, 365 block RAMs of 36 kbit = 730 RAMB18 of 18 kbit (512x36 .. 16384x1), 740 DSP48E1 "
        "slices. No tool of this project synthesizes for it: the LUT figure is the LUT4 estimate (each LUT4 "
        "function fits one LUT6, so it bounds the LUT6 count from above), the RAMB18 tiling uses the ECP5 "
        "DP16KD configurations (the same aspect ratios)",
        "ecp5", 134600, "LUT6", 269200, "RAMB18E1", 730, 18, ECP5_EBR, "DSP48E1", 740,
        {key: (mhz, "assumed equal to the ECP5-25k's, not measured (no Artix-7 flow here): " + text)
         for key, (mhz, text) in _ECP5_FMAX.items()}),
}


def get_part(name: str) -> Part:
    if name not in PARTS:
        raise EstimateError(f"unknown part {name!r}; the estimator knows {', '.join(PARTS)}")
    return PARTS[name]


# ------------------------------------------------------------------------------------------ memories


@dataclass(frozen=True)
class Memory:
    """One ``amaranth.lib.memory.Memory`` of the core, as yosys sees it after ``opt_mem``."""

    name: str                 # yosys' name below the core: ``layer0_act1.weights``
    stage: str
    depth: int
    width: int                # bits per word the gateware declares
    used_width: int           # without the bit columns constant over every word (ROMs)
    rom: bool
    async_read: bool = False  # read combinationally (tap ROMs): no block RAM can

    @property
    def bits(self) -> int:
        return self.depth * self.width


@dataclass(frozen=True)
class MemoryMapping:
    memory: Memory
    kind: str                 # "block", "distributed" or "logic"
    primitive: str | None
    cells: int                # blocks or distributed-RAM cells (0 for logic)
    config: tuple | None      # (depth, width) of the chosen configuration
    cost: float

    @property
    def logic_bits(self) -> int:
        return self.memory.depth * self.memory.used_width if self.kind == "logic" else 0


def _two_complement(values: np.ndarray, width: int) -> np.ndarray:
    return np.asarray(values, dtype=np.int64) & ((1 << width) - 1)


def _varying_bits(lane_values: np.ndarray, width: int) -> int:
    """Bits of a ROM whose lanes (columns of ``lane_values``, ``(words, lanes)``, each ``width`` bits two's
    complement) are not the same in every word."""
    if lane_values.size == 0:
        return 0
    values = _two_complement(lane_values, width)
    ored = np.bitwise_or.reduce(values, axis=0)
    anded = np.bitwise_and.reduce(values, axis=0)
    return int(sum(bin(int(x)).count("1") for x in (ored & ~anded)))


def _varying_bits_words(words, width: int) -> int:
    if not words:
        return 0
    ored, anded = 0, (1 << width) - 1
    for word in words:
        ored |= int(word)
        anded &= int(word)
    return bin(ored & ~anded).count("1")


def _padded_rows(kernel: LayerConfig, groups: int, lanes: int) -> np.ndarray:
    """``kernel``'s weights as the weight memory's lane values ``(in, groups, lanes)``, the last group padded with 0."""
    weight = np.asarray(kernel.weight, dtype=np.int64)
    pad = groups * lanes - weight.shape[0]
    weight = np.concatenate([weight, np.zeros((pad, weight.shape[1]), dtype=np.int64)])
    return weight.reshape(groups, lanes, weight.shape[1]).transpose(2, 0, 1)


def _weight_lane_values(engine) -> np.ndarray:
    """The words of an engine's weight memory as lane values ``(words, lanes)``."""
    if isinstance(engine, LayerConfig):
        return _padded_rows(engine, engine.groups, engine.lanes).reshape(-1, engine.lanes)
    if hasattr(engine, "main"):      # residual act2: main's words, then the shortcut's
        parts = []
        for port in (engine.main, engine.shortcut):
            rows = _padded_rows(port.kernel, engine.groups, engine.lanes)
            if port.diagonal:
                index = np.arange(port.kernel.in_features)
                parts.append(rows[index, index // engine.lanes])
            else:
                parts.append(rows.reshape(-1, engine.lanes))
        return np.concatenate(parts)
    return _padded_rows(engine.kernel, engine.groups, engine.lanes).reshape(-1, engine.lanes)


def _bits_for(limit: int) -> int:
    """Width of ``Signal(range(limit))``."""
    return max(1, (limit - 1).bit_length())


def _engine_memories(engine, prefix: str, stage: str) -> list[Memory]:
    lanes, groups = engine.lanes, engine.groups
    ww = engine.weight_width
    weights = _weight_lane_values(engine)
    readout = bool(getattr(engine, "is_readout", False))
    param_width = engine.logit_width if readout else engine.v0_width + engine.theta_width
    params = engine.param_words()
    memories = [
        Memory(f"{prefix}.weights", stage, len(weights), lanes * ww, _varying_bits(weights, ww), rom=True),
        Memory(f"{prefix}.params", stage, groups, lanes * param_width,
               _varying_bits_words(params, lanes * param_width), rom=True),
    ]
    acc_depth = groups if isinstance(engine, LayerConfig) else engine.acc_depth
    acc_width = lanes * engine.acc_width
    if int(getattr(engine, "banks", 1)) == 2:
        names = ("acc0", "acc1") if isinstance(engine, LayerConfig) else ("acc_bank0", "acc_bank1")
    else:
        names = ("acc",)
    memories += [Memory(f"{prefix}.{name}", stage, acc_depth, acc_width, acc_width, rom=False) for name in names]
    if not isinstance(engine, LayerConfig):
        memories += _tap_memories(engine, prefix, stage)
    return memories


def _tap_memories(engine, prefix: str, stage: str) -> list[Memory]:
    """The two combinational tap ROMs per input port of a conv engine (``gateware/conv.py``)."""
    memories = []
    weight_bits, acc_bits = _bits_for(engine.weight_depth + 1), _bits_for(engine.acc_depth + 1)
    names = getattr(engine, "port_names", ("i",))
    for geometry, port in zip(engine.inputs, names):
        port_prefix = "" if port == "i" else f"{port}_"
        kh, kw = geometry.kernel_size
        _, in_h, in_w = geometry.input_shape
        for table, depth, n_bits in (("row_taps", in_h, _bits_for(kh + 1)), ("col_taps", in_w, _bits_for(kw + 1))):
            width = n_bits + weight_bits + acc_bits
            memories.append(Memory(f"{prefix}.{port_prefix}{table}", stage, depth, width, width, rom=True,
                                   async_read=True))
    return memories


def _pool_memories(pool, prefix: str, stage: str) -> list[Memory]:
    cells, width = pool.out_features, max(1, int(pool.t_out).bit_length())
    names = ("cells_bank0", "cells_bank1") if int(getattr(pool, "banks", 1)) == 2 else ("cells",)
    memories = [Memory(f"{prefix}.{name}", stage, cells, width, width, rom=False) for name in names]
    _, in_h, in_w = pool.input_shape
    kh, kw = pool.kernel
    abits = _bits_for(cells + 1)
    for table, depth, n_bits in (("row_taps", in_h, _bits_for(kh + 1)), ("col_taps", in_w, _bits_for(kw + 1))):
        memories.append(Memory(f"{prefix}.{table}", stage, depth, n_bits + abits, n_bits + abits, rom=True,
                               async_read=True))
    return memories


def stage_engines(stage) -> list[tuple[str, object]]:
    """``(suffix, engine)`` of a stage's engines (a residual block: ``conv1`` and ``merge``; a pooling unit: none)."""
    if hasattr(stage, "conv1"):
        return [(".conv1", stage.conv1), (".merge", stage.merge)]
    if hasattr(stage, "reduce"):
        return []
    return [("", stage)]


def stage_prefix(index: int, stage) -> str:
    """The stage's submodule name in the core (``NetworkCore``: ``layer{index}_{name}``)."""
    return f"layer{index}_{stage.name}"


_MEMORIES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def core_memories(config: CoreConfig) -> list[Memory]:
    """Every memory of the core, in stage order, named as yosys names them below the core."""
    if config not in _MEMORIES:
        _MEMORIES[config] = _core_memories(config)
    return list(_MEMORIES[config])


def _core_memories(config: CoreConfig) -> list[Memory]:
    memories = []
    for index, stage in enumerate(config.layers):
        prefix = stage_prefix(index, stage)
        if hasattr(stage, "reduce"):
            memories += _pool_memories(stage, prefix, stage.name)
        for suffix, engine in stage_engines(stage):
            memories += _engine_memories(engine, prefix + suffix, stage.name)
    return memories


def tile(depth: int, width: int, primitive: RamPrimitive, width_index: int, rom: bool) -> tuple[int, int, int]:
    """Blocks of ``primitive`` in configuration ``width_index`` for a ``depth`` x ``width`` memory:
    ``(blocks, address multiplexing factor, configuration depth)``; the width is rounded up to the write
    granularity of a RAM (a ROM has no write port: bit granularity), as libmap's swizzle does."""
    config_width = primitive.widths[width_index]
    config_depth = primitive.depth(width_index)
    mult = -(-depth // config_depth)
    if rom:
        granule = 1
    else:
        granule = config_width if primitive.byte == 0 or primitive.byte > config_width else primitive.byte
    swizzled = -(-width // granule) * granule
    blocks = -(-(mult * swizzled) // config_width)
    return blocks, mult, config_depth


def _primitive_cost(memory: Memory, primitive: RamPrimitive):
    """libmap's best geometry of ``memory`` on ``primitive``: ``(cost, blocks, (depth, width))`` or None."""
    if memory.async_read and primitive.kind == "block":
        return None
    if memory.rom and not primitive.rom:
        return None
    width = memory.used_width
    # emulation: a read port not shared with a write port (1 point), a transparent read port (3: the
    # accumulators' read port is transparent for their write port, which no primitive here provides)
    score = 1 if memory.rom else 4
    best = None
    for index, config_width in enumerate(primitive.widths):
        if not memory.rom:
            if primitive.max_write_width is not None and config_width > primitive.max_write_width:
                break
            if primitive.min_write_width is not None and primitive.byte and config_width < primitive.byte:
                continue
        blocks, mult, config_depth = tile(memory.depth, width, primitive, index, memory.rom)
        cost = primitive.cost * blocks + 0.5 * (mult - 1) * width + 2 * score
        if not memory.rom and mult != 1:
            cost += 0.5 * mult
        if best is None or cost < best[0]:
            best = (cost, blocks, (config_depth, config_width))
    return best


def map_memory(memory: Memory, part: Part) -> MemoryMapping:
    """The mapping yosys' ``memory_libmap`` chooses for ``memory`` on ``part`` (see the module docstring)."""
    if memory.used_width == 0:
        return MemoryMapping(memory, "logic", None, 0, None, 0.0)
    logic = int(memory.depth * memory.used_width * (1 / 16 if memory.rom else 1.0))
    choice = MemoryMapping(memory, "logic", None, 0, None, float(logic))
    best = float(logic)
    for primitive in part.primitives:
        found = _primitive_cost(memory, primitive)
        if found is not None and found[0] < best:
            best = found[0]
            choice = MemoryMapping(memory, primitive.kind, primitive.name, found[1], found[2], found[0])
    return choice


# ------------------------------------------------------------------------------------ LUT and FF model

FEATURES = ("engine_linear", "engine_readout", "engine_conv", "engine_merge", "pool", "block", "acc_bits",
            "neuron_bits", "param_bits", "logit_bits", "mac_bits", "dsp_lanes", "addr_bits", "bank_bits", "emit_bits",
            "rom_logic", "ram_logic", "lutram_bits", "block_ram_bits", "core", "in_flight", "fold_luts")
"""The features of :func:`stage_features` (one coefficient each per part family, for LUT4 and for FF)."""


def _count_width(engine) -> int:
    """Bits of the count field an engine multiplies by (``--mac``): the input counts' range."""
    low = min(int(getattr(port, "t_min", 0)) for port in getattr(engine, "inputs", (engine,)))
    high = max(int(port.t_in) for port in getattr(engine, "inputs", (engine,)))
    return max(1, high.bit_length()) + (1 if low < 0 else 0)


def _membrane_width(engine, aw: int) -> int:
    """Membrane register width of an engine's neuron units (a conv engine builds them from its accumulator
    width ``aw``, ``gateware/conv.py``)."""
    if isinstance(engine, LayerConfig):
        return engine.neuron.v_width
    from pascal_hdl.widths import neuron_widths
    v0w = engine.v0_width
    return neuron_widths(-(1 << (aw - 1)), (1 << (aw - 1)) - 1, -(1 << (v0w - 1)), (1 << (v0w - 1)) - 1,
                         (1 << engine.theta_width) - 1, 1, engine.t_out).v_width


def _engine_features(engine, kind: str) -> dict:
    lanes = engine.lanes
    aw = engine.acc_width
    readout = bool(getattr(engine, "is_readout", False))
    acc_depth = engine.groups if isinstance(engine, LayerConfig) else engine.acc_depth
    features = {kind: 1, "acc_bits": lanes * aw,
                "addr_bits": _bits_for(engine.weight_depth + 1) + _bits_for(acc_depth + 1)
                + _bits_for(engine.out_features + 1) + _bits_for(engine.in_features + 1)}
    if readout:
        features["logit_bits"] = lanes * engine.logit_width
    else:
        features["neuron_bits"] = lanes * _membrane_width(engine, aw)
        features["param_bits"] = lanes * (engine.v0_width + engine.theta_width)
    if not isinstance(engine, LayerConfig):
        features["emit_bits"] = lanes * _bits_for(engine.t_out + 2)
    if getattr(engine, "mac", False):
        if getattr(engine, "multiplier", "logic") == "dsp":
            features["dsp_lanes"] = lanes
        else:
            features["mac_bits"] = lanes * engine.weight_width * _count_width(engine)
    if int(getattr(engine, "banks", 1)) == 2:
        features["bank_bits"] = lanes * aw
    return features


def _add(total: dict, part: dict) -> dict:
    for key, value in part.items():
        total[key] = total.get(key, 0) + value
    return total


def stage_features(stage, mappings: list[MemoryMapping]) -> dict:
    """The cost-model features of one stage (``mappings``: its memories' mappings)."""
    features: dict = {}
    if hasattr(stage, "reduce"):
        _add(features, {"pool": 1, "addr_bits": 2 * _bits_for(stage.out_features + 1)})
        if int(getattr(stage, "banks", 1)) == 2:
            _add(features, {"bank_bits": max(1, int(stage.t_out).bit_length())})
    elif hasattr(stage, "conv1"):
        _add(features, {"block": 1})
        _add(features, _engine_features(stage.conv1, "engine_conv"))
        _add(features, _engine_features(stage.merge, "engine_merge"))
    elif isinstance(stage, LayerConfig):
        _add(features, _engine_features(stage, "engine_readout" if stage.is_readout else "engine_linear"))
    else:
        _add(features, _engine_features(stage, "engine_conv"))
    for mapping in mappings:
        memory = mapping.memory
        if mapping.kind == "logic":
            if memory.rom:
                _add(features, {"rom_logic": memory.depth * memory.used_width / 16})
            else:
                _add(features, {"ram_logic": memory.depth * memory.used_width})
        elif mapping.kind == "distributed":     # the read data register libmap adds (async read)
            _add(features, {"lutram_bits": memory.used_width})
        elif not memory.rom:                    # the emulated transparent read (a bypass register and mux)
            _add(features, {"block_ram_bits": memory.used_width})
    return {key: float(value) for key, value in features.items()}


def _signature_ports(config: CoreConfig) -> list[dict]:
    """The core's ports ``{name, direction, width}`` as the generated Verilog names them (from the Amaranth
    signature; no elaboration)."""
    from amaranth.hdl import Shape
    from amaranth.lib import wiring
    from pascal_hdl.gateware.core import NetworkCore

    core = NetworkCore(config)
    core._MustUse__silence = True       # only its signature is read here; it is never elaborated
    ports = [{"name": "clk", "direction": "input", "width": 1}, {"name": "rst", "direction": "input", "width": 1}]
    for path, member in core.signature.members.flatten():
        if member.is_port:
            ports.append({"name": "__".join(str(p) for p in path),
                          "direction": "input" if member.flow == wiring.In else "output",
                          "width": Shape.cast(member.shape).width})
    return ports


def fold_luts(config: CoreConfig) -> int:
    """LUT4s of the synthesis wrapper's XOR folds (:func:`pascal_hdl.flow.synth.wrapper_verilog`): a fold pin
    of ``n`` taps is a tree of ``ceil((n - 1) / 3)`` LUT4."""
    from pascal_hdl.flow.synth import wrapper_verilog
    text, _ = wrapper_verilog({"top": config.name, "ports": _signature_ports(config)})
    total = 0
    for line in text.splitlines():
        if line.strip().startswith("assign fold_"):
            taps = line.count("^") + 1
            total += -(-(taps - 1) // 3)
    return total


def core_features(config: CoreConfig) -> dict:
    """Features of the core's own logic (input gate, cycle counter, per-sample FIFO) and the wrapper."""
    return {"core": 1.0, "in_flight": float(config.in_flight), "fold_luts": float(fold_luts(config))}


def load_costs(path=None) -> dict:
    path = Path(path) if path is not None else COSTS_FILE
    if not path.exists():
        raise EstimateError(f"{path}: no calibration data (run 'python benchmarks/calibrate_estimator.py measure' "
                            "then 'fit')")
    return json.loads(path.read_text())


def _apply(coefficients: dict, features: dict) -> float:
    return sum(coefficients.get(key, 0.0) * value for key, value in features.items())


_RAM_CELLS = {"SB_RAM40_4K": "block", "DP16KD": "block", "TRELLIS_DPR16X4": "distributed"}


def _cells_summary(part: str, cells: dict) -> dict:
    """LUT4 (as ``pascal-ref synth`` counts them), FF and RAM cells of a yosys cell count."""
    from pascal_hdl.flow.synth import TARGETS
    spec = TARGETS[part]
    return {"lut4": sum(n * cells.get(k, 0) for k, n in spec.lut4.items()),
            "ff": sum(n for k, n in cells.items() if k.startswith(spec.ff)),
            "block": sum(n for k, n in cells.items() if _RAM_CELLS.get(k) == "block"),
            "distributed": sum(n for k, n in cells.items() if _RAM_CELLS.get(k) == "distributed")}


def measured_stages(record: dict) -> dict:
    """Per stage index (and ``"core"``: the core's own module and the wrapper) the cells of a ``-noflatten``
    yosys run (``benchmarks/calibrate_estimator.py`` records): ``{index: {lut4, ff, block, distributed}}``."""
    import re
    stages: dict = {}
    for name, cells in record["modules"].items():
        match = re.match(r"^[^.]+\.layer(\d+)_", name)
        key = int(match.group(1)) if match else "core"
        summary = _cells_summary(record["part"], cells)
        stages[key] = _add(stages.get(key, {}), summary)
    return stages


def _design_config(designs: dict, name: str) -> CoreConfig:
    from pascal_hdl.flow.generate import core_config_from_network
    factory, options = designs[name]
    config, _ = core_config_from_network(factory(), **options)
    return config


def _stage_rows(config: CoreConfig, part: Part):
    """``(features, mappings)`` per stage index and for ``"core"``."""
    mappings = [map_memory(memory, part) for memory in core_memories(config)]
    rows = {}
    for index, stage in enumerate(config.layers):
        own = [m for m in mappings if m.memory.stage == stage.name]
        rows[index] = (stage_features(stage, own), own)
    rows["core"] = (core_features(config), [])
    return rows


def fit_coefficients(rows: list[dict]) -> dict:
    """Non-negative least squares of the measured LUT4 (without distributed-RAM cells) and FF of ``rows``
    (``{features, lut4, ff}`` per stage) on :data:`FEATURES`: ``{"lut4": {feature: coefficient}, "ff": ...}``."""
    from scipy.optimize import nnls

    matrix = np.array([[row["features"].get(key, 0.0) for key in FEATURES] for row in rows])
    coefficients = {}
    for metric in ("lut4", "ff"):
        solution, _ = nnls(matrix, np.array([row[metric] for row in rows], dtype=float))
        coefficients[metric] = {key: round(float(value), 6) for key, value in zip(FEATURES, solution)}
    return coefficients


def fit_costs(records: list[dict], designs: dict) -> dict:
    """Fit the LUT4 and FF coefficients per part family to the calibration ``records`` (see the module
    docstring); ``designs``: name -> (network factory, generator options) of the recorded designs. Returns
    the content of :data:`COSTS_FILE`: per family the coefficients, the flattened-over-hierarchical
    ratios, the rows fitted to, and per design the memory decisions yosys made."""
    calibration = [r for r in records if not r.get("validation") and r["design"] in designs]
    families = {}
    configs = {name: _design_config(designs, name) for name in sorted({r["design"] for r in calibration})}
    for part_name in sorted({r["part"] for r in calibration}):
        part = get_part(part_name)
        rows, memory_checks = [], []
        flat = {r["design"]: _cells_summary(part_name, r["total_cells"]) for r in calibration
                if r["part"] == part_name and r["flatten"]}
        for record in calibration:
            if record["part"] != part_name or record["flatten"]:
                continue
            config = configs[record["design"]]
            hier = _cells_summary(part_name, record["total_cells"])
            # the design's flattened over hierarchical logic (LUT4 without distributed RAM, FF): each stage's
            # cells are scaled by it, so the model predicts the flattened netlist pascal-ref synth builds
            scale = {"lut4": (flat[record["design"]]["lut4"] - flat[record["design"]]["distributed"])
                     / (hier["lut4"] - hier["distributed"]),
                     "ff": flat[record["design"]]["ff"] / hier["ff"]}
            measured = measured_stages(record)
            for key, (features, _) in _stage_rows(config, part).items():
                cells = measured.get(key, {"lut4": 0, "ff": 0, "block": 0, "distributed": 0})
                rows.append({"design": record["design"], "stage": key if key == "core" else config.layers[key].name,
                             "features": features, "hier_lut4": cells["lut4"] - cells["distributed"],
                             "hier_ff": cells["ff"], "scale": {k: round(v, 6) for k, v in scale.items()},
                             "lut4": (cells["lut4"] - cells["distributed"]) * round(scale["lut4"], 6),
                             "ff": cells["ff"] * round(scale["ff"], 6),
                             "block": cells["block"], "distributed": cells["distributed"]})
            memory_checks.append({"design": record["design"], "yosys": record["memories"]})
        families[part.family] = {"part": part_name, "coefficients": fit_coefficients(rows), "rows": rows,
                                 "memories": memory_checks}
    costs = {"what": "LUT4/FF cost model of pascal_hdl.flow.estimate, fitted by benchmarks/calibrate_estimator.py fit "
                     "to yosys 0.70 runs of the designs there (not the digits models)",
             "features": list(FEATURES), "families": families}
    costs["check"] = {}
    for part_name in sorted({r["part"] for r in calibration}):
        table = []
        for record in calibration:
            if record["part"] == part_name and record["flatten"]:
                result = estimate(configs[record["design"]], part_name, costs=costs, cycles=False)
                summary = _cells_summary(part_name, record["total_cells"])
                table.append({"design": record["design"], "lut4": [result["total"]["lut4"], summary["lut4"]],
                              "ff": [result["total"]["ff"], summary["ff"]],
                              "block": [result["total"]["ram_blocks"], summary["block"]]})
        costs["check"][part_name] = table
    return costs


# ------------------------------------------------------------------------------------------- cycles


def _reach_map(conv) -> np.ndarray:
    """Output positions each input position ``(y, x)`` of a conv or pooling input reaches, ``(H, W)``."""
    rows = np.array([t.n for t in conv.row_taps], dtype=np.int64)
    cols = np.array([t.n for t in conv.col_taps], dtype=np.int64)
    return rows[:, None] * cols[None, :]


def _pool_levels(pool, levels: np.ndarray) -> np.ndarray:
    """A pooling unit's output levels ``(batch, C, Ho, Wo)`` from input levels ``(batch, C, H, W)``."""
    (kh, kw), (sh, sw) = pool.kernel, pool.stride
    _, ho, wo = pool.output_shape
    out = np.zeros(levels.shape[:2] + (ho, wo), dtype=np.int64)
    for oy in range(ho):
        for ox in range(wo):
            window = levels[:, :, oy * sh:oy * sh + kh, ox * sw:ox * sw + kw]
            out[:, :, oy, ox] = window.max(axis=(2, 3)) if pool.reduce == "max" else window.sum(axis=(2, 3))
    return out


def _conv_alone(conv, levels: np.ndarray) -> np.ndarray:
    """Cycles of a conv engine alone per sample from its input levels ``(batch, C, H, W)``: ``2`` + the issue
    cycles + the neuron sequencer + the last word's events (``ConvConfig.stream_cycles`` without the
    event-order terms, which are at most one cycle per event)."""
    issued = (levels != 0) if conv.mac else np.maximum(levels, 0)
    work = (issued * _reach_map(conv)[None, None]).reshape(len(levels), -1).sum(axis=1) * conv.issue_groups
    return 2 + work + conv.neuron_cycles() + conv.lanes


def stage_cycles_alone(config: CoreConfig, model, levels: np.ndarray) -> list[float]:
    """Mean cycles of each stage alone on the samples (input levels ``(batch, *input_shape)``, integer), from
    the stages' timing and the integer golden model's levels of every layer (no cycle model run)."""
    from pascal_ref.golden.quantize import integer_ann
    from pascal_hdl.model.chain import _linear_period

    from pascal_hdl.config import _identifier
    names = {_identifier(layer.name): layer.name for layer in model.layers}   # stage names, as the configs make them
    golden = integer_ann(model, x_int=levels).levels
    current = np.asarray(levels, dtype=np.int64)
    if current.ndim == 2:
        current = current[:, :, None, None]
    periods = []
    for stage in config.layers:
        if isinstance(stage, LayerConfig):
            periods.append(_linear_period(stage, current.reshape(len(current), -1)))
            if not stage.is_readout:
                current = golden[names[stage.name]].reshape(len(current), -1, 1, 1)
        elif hasattr(stage, "reduce"):
            work = ((current != 0) * _reach_map(stage)[None, None]).reshape(len(current), -1).sum(axis=1)
            periods.append(float((2 + work + 1 + 1 + stage.out_features).mean()))
            current = _pool_levels(stage, current)
        elif hasattr(stage, "conv1"):
            first = _conv_alone(stage.conv1, current)
            inner = golden[names[stage.conv1.name]]
            second = _conv_alone(stage.merge.main, inner)
            periods.append(float((first + second).mean()))
            current = golden[names[stage.merge.name]]
        else:
            periods.append(float(_conv_alone(stage, current).mean()))
            current = golden[names[stage.name]]
    return periods


def typical_levels(model, limit: int = 16) -> tuple[np.ndarray, str]:
    """Input levels to take the typical cycles on without ``--data``: :func:`calibration_levels` (the digits test
    split when the network takes its shape, else uniform random levels), or for an analog input uniform random
    pixels over the quantizer's range (seed 0)."""
    network = model.network
    if network.input_levels is None:
        low, high = model.input_range
        rng = np.random.default_rng(0)
        return (rng.integers(low, high + 1, (limit,) + tuple(network.input_shape)),
                f"{limit} uniform random analog pixels in [{low}, {high}] (seed 0)")
    from pascal_hdl.model.chain import calibration_levels
    levels = calibration_levels(model, limit=limit)
    from pascal_ref.io.data import DataError, load_data
    try:
        load_data("digits", limit=1, network=network)
        source = f"the first {limit} digits test images"
    except DataError:
        source = f"{limit} uniform random input levels (seed 0)"
    return levels.reshape((len(levels),) + tuple(network.input_shape)), source


def cycle_figures(config: CoreConfig, model, levels, source: str) -> dict:
    """Cycles per image: the worst case, and typical figures on ``levels`` (see the module docstring)."""
    levels = np.asarray(levels, dtype=np.int64)
    flat = levels.reshape(len(levels), -1)
    worst = int(config.worst_case_cycles())
    result = {"worst_case": worst, "samples": len(levels), "levels": source, "in_flight": config.in_flight}
    if worst * len(levels) <= MODEL_CYCLE_BUDGET:
        from pascal_hdl.model.core import expected_cycles, run_stream, stream_figures
        if config.in_flight == 1:
            cycles = expected_cycles(config, flat)
            result.update(typical=float(cycles.mean()), latency=float(cycles.mean()),
                          method="exact cycle model (pascal_hdl.model.core.expected_cycles)")
        else:
            figures = stream_figures(run_stream(config, flat))
            result.update(typical=float(figures["cycles_per_image"]), latency=float(figures["latency_mean"]),
                          method="exact cycle model, samples back to back (run_stream, stream_figures)")
        return result
    periods = stage_cycles_alone(config, model, levels)
    result["stage_cycles_alone"] = {stage.name: round(period, 1) for stage, period in zip(config.layers, periods)}
    if config.in_flight == 1:
        result.update(typical=float(sum(periods)), latency=float(sum(periods)),
                      method="sum of the stages' cycles alone (analytic timing on the golden model's levels)")
    else:
        result.update(typical=float(max(periods)), latency=float(sum(periods)),
                      method="slowest stage alone (a lower bound of the steady state with samples in flight); "
                             "latency: sum of the stages alone")
    return result


# ----------------------------------------------------------------------------------------- estimate


def _kind(stage) -> str:
    if stage is None:
        return "core + wrapper"
    if isinstance(stage, LayerConfig):
        return "Linear readout" if stage.is_readout else "Linear"
    if hasattr(stage, "reduce"):
        return f"{stage.reduce} pool"
    if hasattr(stage, "conv1"):
        return "residual block"
    return "Conv2d"


def _uses_mac_class(config: CoreConfig) -> bool:
    """The design multiplies, holds samples in flight or double-buffers (the Fmax class of those)."""
    return config.in_flight > 1 or any(
        getattr(engine, "mac", False) or int(getattr(engine, "banks", 1)) == 2
        for stage in config.layers for engine in [stage, *[e for _, e in stage_engines(stage)]])


def estimate(config: CoreConfig, part_name: str, model=None, levels=None, levels_source: str | None = None,
             costs: dict | None = None, cycles: bool = True) -> dict:
    """The estimate of ``config`` on ``part_name`` (a dict, JSON-ready; see the module docstring).

    ``model``: the integer model the config was built from (needed for the cycle figures); ``levels``:
    integer input levels ``(batch, *input_shape)`` for the typical cycles (default :func:`typical_levels`).
    ``cycles=False`` leaves the cycle and throughput figures out."""
    from pascal_hdl.model.chain import dsp_products, stage_lanes

    if not isinstance(config, CoreConfig):
        raise TypeError(f"estimate: expected a CoreConfig, got {type(config).__name__}")
    part = get_part(part_name)
    costs = costs if costs is not None else load_costs()
    family = costs["families"].get(part.family)
    if family is None:
        raise EstimateError(f"{part_name}: no calibration for the {part.family} family in the cost file")
    lut_coef, ff_coef = family["coefficients"]["lut4"], family["coefficients"]["ff"]
    rows = _stage_rows(config, part)
    stages = []
    for key, (features, mappings) in rows.items():
        stage = config.layers[key] if key != "core" else None
        lutram = sum(m.cells for m in mappings if m.kind == "distributed")
        blocks = sum(m.cells for m in mappings if m.kind == "block")
        weight_blocks = sum(m.cells for m in mappings if m.kind == "block" and m.memory.name.endswith(".weights"))
        weight_bits = sum(m.memory.bits for m in mappings if m.memory.name.endswith(".weights"))
        stages.append({
            "stage": stage.name if stage is not None else "core",
            "kind": _kind(stage),
            "lanes": stage_lanes(stage) if stage is not None else None,
            "lut4": int(round(_apply(lut_coef, features))) + lutram,
            "ff": int(round(_apply(ff_coef, features))),
            "ram_blocks": blocks, "weight_ram_blocks": weight_blocks, "lutram_cells": lutram,
            "logic_memory_bits": sum(m.logic_bits for m in mappings),
            "dsp": dsp_products([stage]) if stage is not None else 0,
            "weight_bits": weight_bits,
            "memories": [{"name": m.memory.name, "depth": m.memory.depth, "width": m.memory.width,
                          "used_width": m.memory.used_width, "rom": m.memory.rom, "mapped": m.kind,
                          "cells": m.cells, "config": list(m.config) if m.config else None} for m in mappings],
        })
    total = {key: sum(s[key] for s in stages) for key in
             ("lut4", "ff", "ram_blocks", "lutram_cells", "dsp", "weight_bits", "logic_memory_bits")}
    fits = {"lut": total["lut4"] <= part.lut, "ff": total["ff"] <= part.ff,
            "ram": total["ram_blocks"] <= part.ram_blocks, "dsp": total["dsp"] <= part.dsp}
    # weights off chip: the other memories stay, the weight memories go on chip in stage order while blocks remain
    fixed = total["ram_blocks"] - sum(s["weight_ram_blocks"] for s in stages)
    room, external = part.ram_blocks - fixed, []
    for s in stages:
        if s["weight_ram_blocks"] == 0:
            continue
        if s["weight_ram_blocks"] <= room:
            room -= s["weight_ram_blocks"]
        else:
            external.append(s)
    result = {
        "part": {"name": part.name, "description": part.description, "source": part.source, "lut": part.lut,
                 "lut_kind": part.lut_kind, "ff": part.ff, "ram": part.ram_name, "ram_blocks": part.ram_blocks,
                 "ram_kbit": part.ram_kbit, "dsp": part.dsp_name, "dsp_blocks": part.dsp},
        "core": config.name, "stages": stages, "total": total, "fits": fits, "fits_part": all(fits.values()),
        "calibration": f"{COSTS_FILE.name}: {part.family} coefficients fitted on {family['part']}",
        "external": {
            "stages": [s["stage"] for s in external],
            "weight_bytes": sum(s["weight_bits"] for s in external) // 8,
            "on_chip_ram_blocks_if_external": total["ram_blocks"] - sum(s["weight_ram_blocks"] for s in external),
            "note": "the core cannot read external weights yet (issue 14, item 2): the bytes and bandwidth a design "
                    "that kept these stages' weights off chip would need, each weight read once per image",
        },
    }
    if cycles:
        if model is None:
            raise TypeError("estimate: cycle figures need the integer model (model=) or cycles=False")
        if levels is None:
            levels, levels_source = typical_levels(model)
        figures = cycle_figures(config, model, levels, levels_source or "given input levels")
        mhz, fmax_source = part.fmax_mhz["mac" if _uses_mac_class(config) else "plain"]
        per_image = figures["typical"]
        figures.update(fmax_mhz=mhz, fmax_source=fmax_source,
                       us_per_image=per_image / mhz, images_per_s=mhz * 1e6 / per_image,
                       us_per_image_worst_case=figures["worst_case"] / mhz)
        result["cycles"] = figures
        result["external"]["bytes_per_s"] = result["external"]["weight_bytes"] * figures["images_per_s"]
    return result


def _fmt(value) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:,.1f}"


def format_estimate(result: dict) -> str:
    """The table ``pascal-ref hdl --estimate`` prints."""
    part = result["part"]
    lines = [f"estimate of core {result['core']} on {part['name']} ({part['description']}); "
             "no Verilog generated, no synthesis run",
             f"{'stage':<16} {'kind':<15} {'lanes':>6} {'LUT4':>8} {'FF':>7} {part['ram']:>9} {'LUTRAM':>7} "
             f"{'DSP':>5} {'weight kbit':>12}"]
    for s in result["stages"]:
        lanes = s["lanes"] if s["lanes"] is not None else ""
        lanes = "+".join(map(str, lanes)) if isinstance(lanes, list) else str(lanes)
        lines.append(f"{s['stage']:<16} {s['kind']:<15} {lanes:>6} {s['lut4']:>8,} {s['ff']:>7,} {s['ram_blocks']:>9,} "
                     f"{s['lutram_cells']:>7,} {s['dsp']:>5,} {s['weight_bits'] / 1000:>12,.1f}")
    t = result["total"]
    lines.append(f"{'total':<16} {'':<15} {'':>6} {t['lut4']:>8,} {t['ff']:>7,} {t['ram_blocks']:>9,} "
                 f"{t['lutram_cells']:>7,} {t['dsp']:>5,} {t['weight_bits'] / 1000:>12,.1f}")
    fits = result["fits"]
    mark = {True: "fits", False: "DOES NOT FIT"}
    lines.append(f"{'part':<16} {'':<15} {'':>6} {part['lut']:>8,} {part['ff']:>7,} {part['ram_blocks']:>9,} {'':>7} "
                 f"{part['dsp_blocks']:>5,}   ({part['ram']} {part['ram_kbit']} kbit"
                 + (f"; {part['lut_kind']}: a LUT4 fits one" if part["lut_kind"] != "LUT4" else "") + ")")
    lines.append(f"fits {part['name']}: " + ("yes" if result["fits_part"] else "no") + " (LUT " + mark[fits["lut"]]
                 + ", FF " + mark[fits["ff"]] + ", RAM " + mark[fits["ram"]] + ", DSP " + mark[fits["dsp"]] + ")")
    if "cycles" in result:
        c = result["cycles"]
        lines.append(f"cycles per image: worst case {c['worst_case']:,}; typical {_fmt(c['typical'])} "
                     f"({c['method']}; {c['levels']})")
        lines.append(f"at {c['fmax_mhz']} MHz: {c['us_per_image']:,.1f} us/image, {c['images_per_s']:,.0f} images/s "
                     f"(worst case {c['us_per_image_worst_case']:,.1f} us); Fmax: {c['fmax_source']}")
    ext = result["external"]
    if ext["stages"]:
        rate = f", {ext['bytes_per_s'] / 1e6:,.1f} MB/s at that rate" if "bytes_per_s" in ext else ""
        left = ext["on_chip_ram_blocks_if_external"]
        lines.append(f"weights off chip ({', '.join(ext['stages'])}): {ext['weight_bytes']:,} bytes per image{rate}; "
                     f"{left:,} {part['ram']} left on chip"
                     + (f" (more than the part's {part['ram_blocks']:,}: the other memories, accumulators first, do "
                        "not fit even with every weight off chip)" if left > part["ram_blocks"] else "") + ".")
        lines.append("  " + ext["note"][0].upper() + ext["note"][1:] + ".")
    else:
        lines.append("weights off chip: none (every weight memory fits the part's block RAM)")
    lines.append(f"LUT4/FF: {result['calibration']} (docs/estimator.md); RAM: yosys memory_libmap's tiling; "
                 f"capacity: {part['source']}")
    return "\n".join(lines)
