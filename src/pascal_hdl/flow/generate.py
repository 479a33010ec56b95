"""Verilog generation: a model in, a build folder out.

:func:`generate` writes, for one :class:`~pascal_hdl.config.CoreConfig`::

    DIR/<top>.v                 the network core (Amaranth -> Verilog, no source paths)
    DIR/<layer>.weights.hex     weight memory image of every layer ($readmemh format)
    DIR/<layer>.params.hex      per-group neuron parameters (v0 | theta, or the readout bias)
    DIR/manifest.json           layers, widths, lanes, memories, ports, expected cycles, and the
                                SHA-256 digests of every file listed and of the manifest itself

The memories are initialized inside the Verilog (Amaranth writes the
initial values inline); the ``.hex`` files hold the same words, one per line,
most significant digit first, for inspection and for flows that load memories
with ``$readmemh``.  ``tests/pascal_hdl/flow/test_generate.py`` checks that both agree.

Deterministic: the same model and options give the same bytes (no
timestamps, no absolute paths, sorted JSON keys).  :func:`generate_from_network`
takes a float :class:`pascal_ref.ir.network.Network`, quantizes it exactly as the
golden model's ``verify`` command does (8-bit weights, per-channel
thresholds by default) and rejects what the core cannot take with a
:class:`~pascal_hdl.config.HardwareError` naming the layer.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from pathlib import Path

import numpy as np
from amaranth.back import verilog

from pascal_hdl.config import CoreConfig, HardwareError, LayerConfig
from pascal_hdl.model.chain import core_config, dsp_products, stage_lanes, with_mac
from pascal_ref.io.files import replace_file

__all__ = ["component_verilog", "generate", "generate_from_network", "core_config_from_network", "verilog_ports",
           "manifest_of", "MANIFEST_FORMAT", "MANIFEST_VERSION", "read_hex"]

MANIFEST_FORMAT = "pascal-hdl-core"
MANIFEST_VERSION = 1


def component_verilog(component, name: str) -> str:
    """Verilog of one Amaranth component, module ``name``, without source paths."""
    return verilog.convert(component, name=name, emit_src=False)


_DECL = re.compile(r"^\s*(input|output|inout)\s+(?:wire\s+|reg\s+)?(?:signed\s+)?(?:\[(\d+):(\d+)\]\s+)?(\\?\S+?)\s*;", re.M)


def verilog_ports(source: str, module: str) -> list[dict]:
    """Ports of ``module`` in a Verilog text, in header order: ``{name, direction, width}``."""
    match = re.search(r"^module\s+" + re.escape(module) + r"\s*\(([^)]*)\);(.*?)^endmodule", source, re.M | re.S)
    if match is None:
        raise HardwareError(f"generated Verilog has no module {module!r}")
    header = [name.strip() for name in match.group(1).split(",") if name.strip()]
    decls = {m.group(4): (m.group(1), int(m.group(2)) - int(m.group(3)) + 1 if m.group(2) else 1)
             for m in _DECL.finditer(match.group(2))}
    ports = []
    for name in header:
        if name not in decls:
            raise HardwareError(f"generated Verilog: port {name!r} of {module} has no declaration")
        direction, width = decls[name]
        ports.append({"name": name, "direction": direction, "width": width})
    return ports


def _hex_lines(words: list[int], width: int) -> str:
    digits = max(1, -(-width // 4))
    return "".join(f"{word:0{digits}x}\n" for word in words)


def read_hex(path) -> list[int]:
    """Words of a ``.hex`` memory image written by :func:`generate`."""
    return [int(line, 16) for line in Path(path).read_text().split()]


def _layer_entry(layer: LayerConfig) -> dict:
    weight_width = layer.lanes * layer.weight_width
    entry = {
        "name": layer.name,
        "kind": "readout" if layer.is_readout else "hidden",
        "in_features": layer.in_features,
        "out_features": layer.out_features,
        "t_in": layer.t_in,
        "t_out": layer.t_out,
        "lanes": layer.lanes,
        "groups": layer.groups,
        "widths": {
            "weight": layer.weight_width,
            "accumulator": layer.acc_width,
            "count_in": layer.count_in_width,
        },
        "current_range": list(layer.current_range),
        "weight_memory": {"file": f"{layer.name}.weights.hex", "depth": layer.weight_depth,
                          "word_width": weight_width, "bits": layer.weight_bits_total,
                          "layout": "word j*groups+g holds W[g*lanes+k, j] in lane k (bits k*weight..)"},
        "banks": layer.banks,
        "accumulator_memory": {"banks": layer.banks, "depth": layer.groups, "word_width": layer.lanes * layer.acc_width,
                               "bits": layer.accumulator_bits,
                               "note": "no image (zeroed by the CLEAR phase); banks 2: double-buffered, twice the bits"},
    }
    if layer.mac:       # each event issued once, count * weight added ("logic": shift-and-add, "dsp": a DSP block)
        entry["mac"], entry["multiplier"] = True, layer.multiplier
    if layer.t_min < 0:
        entry["t_min"] = layer.t_min       # signed pixels of an analog input
    if layer.is_readout:
        entry["widths"]["logit"] = layer.logit_width
        entry["logit_range"] = list(layer.logit_range)
        entry["param_memory"] = {"file": f"{layer.name}.params.hex", "depth": layer.groups,
                                 "word_width": layer.lanes * layer.logit_width, "layout": "bias per lane"}
    else:
        widths = layer.neuron
        entry["widths"].update(v0=layer.v0_width, theta=layer.theta_width, membrane=widths.v_width,
                               counter=widths.c_width)
        entry["membrane_range"] = [widths.v_min, widths.v_max]
        entry["param_memory"] = {"file": f"{layer.name}.params.hex", "depth": layer.groups,
                                 "word_width": layer.lanes * (layer.v0_width + layer.theta_width),
                                 "layout": "per lane: v0 (low bits) | theta"}
    return entry


def _param_width(layer: LayerConfig) -> int:
    return layer.lanes * (layer.logit_width if layer.is_readout else layer.v0_width + layer.theta_width)


def _weight_bits(stage) -> int:
    """Bits of weight memory of a stage (a residual block: its two engines; a pooling unit: none)."""
    if hasattr(stage, "conv1"):
        return stage.conv1.weight_bits_total + stage.merge.weight_bits_total
    return getattr(stage, "weight_bits_total", 0)


def _stage_kind(stage) -> str:
    if isinstance(stage, LayerConfig):
        return "readout" if stage.is_readout else "hidden"
    if hasattr(stage, "conv1"):
        return "residual"
    return "conv" if hasattr(stage, "kernel_size") else "pool"


def _conv_entry(conv, file_stem: str) -> dict:
    """A conv engine (or the act2 engine of a residual block): geometry, widths, memories."""
    entry = {
        "name": conv.name,
        "in_features": conv.in_features,
        "out_features": conv.out_features,
        "input_shape": list(conv.main.input_shape if hasattr(conv, "main") else conv.input_shape),
        "output_shape": list(conv.output_shape),
        "t_in": conv.t_in,
        "t_out": conv.t_out,
        "lanes": conv.lanes,
        "groups": conv.groups,
        "widths": {"weight": conv.weight_width, "accumulator": conv.acc_width, "v0": conv.v0_width,
                   "theta": conv.theta_width},
        "current_range": list(conv.current_range),
        "weight_memory": {"file": f"{file_stem}.weights.hex", "depth": conv.weight_depth,
                          "word_width": conv.lanes * conv.weight_width, "bits": conv.weight_bits_total},
        "param_memory": {"file": f"{file_stem}.params.hex", "depth": conv.groups,
                         "word_width": conv.lanes * (conv.v0_width + conv.theta_width),
                         "layout": "per lane: v0 (low bits) | theta"},
    }
    if not hasattr(conv, "main"):
        entry.update(_geometry(conv), accumulator_memory={"depth": conv.acc_depth, "bits": conv.acc_bits_total})
    else:   # the act2 engine of a residual block: two input ports
        entry.update(ports={"main": _geometry(conv.main), "shortcut": _geometry(conv.shortcut)})
    entry["banks"] = int(getattr(conv, "banks", 1))
    entry["mac"] = bool(conv.mac)     # each tap issued once per event, count * weight added
    if getattr(conv, "t_min", 0) < 0:
        entry["t_min"] = conv.t_min       # signed pixels of an analog input
    if conv.mac:
        entry["multiplier"] = conv.multiplier   # "logic" (shift-and-add) or "dsp" (one DSP block per lane)
    return entry


def _geometry(conv) -> dict:
    return {"kernel": list(conv.kernel_size), "stride": list(conv.stride), "padding": list(conv.padding),
            "input_shape": list(conv.input_shape), "input_order": conv.input_layout, "diagonal": bool(conv.diagonal)}


def _stage_entry(stage) -> dict:
    """The manifest entry of one stage; events out of a conv, pooling or residual stage are ``"hwc"``."""
    kind = _stage_kind(stage)
    if kind in ("hidden", "readout"):
        entry = _layer_entry(stage)
        entry["output_order"] = "flat"
        return entry
    if kind == "pool":
        entry = {"name": stage.name, "in_features": stage.in_features, "out_features": stage.out_features,
                 "input_shape": list(stage.input_shape), "output_shape": list(stage.output_shape),
                 "kernel": list(stage.kernel), "stride": list(stage.stride), "reduce": stage.reduce,
                 "t_in": stage.t_in, "t_out": stage.t_out, "lanes": 1, "input_order": stage.input_layout}
    elif kind == "conv":
        entry = _conv_entry(stage, stage.name)
    else:
        entry = {"name": stage.name, "in_features": stage.in_features, "out_features": stage.out_features,
                 "input_shape": list(stage.input_shape), "output_shape": list(stage.output_shape),
                 "t_in": stage.t_in, "t_out": stage.t_out, "lanes": stage.merge.lanes,
                 "input_order": stage.input_layout,
                 "engines": [_conv_entry(stage.conv1, f"{stage.name}.conv1"),
                             _conv_entry(stage.merge, f"{stage.name}.act2")]}
    entry.setdefault("banks", int(getattr(stage, "banks", 1)))
    entry["kind"] = kind
    entry["output_order"] = "hwc"
    return entry


def _memory_files(stage) -> list[tuple[str, list[int], int]]:
    """``(file, words, word width)`` of every memory image of a stage."""
    kind = _stage_kind(stage)
    if kind in ("hidden", "readout"):
        return [(f"{stage.name}.weights.hex", stage.weight_words(), stage.lanes * stage.weight_width),
                (f"{stage.name}.params.hex", stage.param_words(), _param_width(stage))]
    engines = {"conv": [(stage, stage.name)], "pool": [],
               "residual": [(getattr(stage, "conv1", None), f"{stage.name}.conv1"),
                            (getattr(stage, "merge", None), f"{stage.name}.act2")]}[kind]
    files = []
    for conv, stem in engines:
        files.append((f"{stem}.weights.hex", conv.weight_words(), conv.lanes * conv.weight_width))
        files.append((f"{stem}.params.hex", conv.param_words(), conv.lanes * (conv.v0_width + conv.theta_width)))
    return files


def manifest_of(config: CoreConfig, top: str, ports: list[dict], verilog_name: str, cycles: dict,
                source: dict | None = None) -> dict:
    """The manifest dict (see the module docstring)."""
    return {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "top": top,
        "verilog": [verilog_name],
        "source": source or {},
        "input": {"features": config.input_features, "levels": config.input_levels, "encoding": "count-coded",
                  "note": "pixel levels 0..levels as bursts (pascal_ref.ir.network input_levels)"}
        if not config.is_analog else
                 {"features": config.input_features, "levels": config.input_levels, "minimum": config.input_min,
                  "encoding": "analog", "note": "signed integer pixels minimum..levels, one event each (count = the "
                  "pixel), multiplied by the first engine (pascal_ref.golden.quantize input_bits/input_bound)"},
        "classes": config.classes,
        "layers": [_layer_entry(layer) for layer in config.layers] if config.is_linear else
                  [_stage_entry(stage) for stage in config.layers],
        "ports": ports,
        "expected_cycles": cycles,
        "memory_bits": sum(_weight_bits(layer) for layer in config.layers),
        "dsp_products": dsp_products(config.layers),   # lanes whose count * weight is a DSP block ("dsp")
    }


def _build_core(config: CoreConfig):
    from pascal_hdl.gateware.core import NetworkCore  # imported here: the neuron/engine tests do not need it
    return NetworkCore(config)


def _expected_cycles(config: CoreConfig, core) -> dict:
    """Cycle figures of the design (``NetworkCore.cycle_model``); cosim checks the measured ones."""
    info = dict(core.cycle_model)
    info["worst_case"] = int(config.worst_case_cycles())
    info["ideal_formula"] = ("sum over layers of weight additions / lanes: a spike (with mac, or an analog pixel: "
                             "a nonzero input of any value) adds one weight to each output it reaches")
    full = np.full((1, config.input_features), config.input_levels, dtype=np.int64)
    info["ideal_all_inputs_full"] = int(config.ideal_cycles(full)[0])
    info["in_flight"] = config.in_flight
    info["throughput"] = ("samples back to back: with in_flight 1 a sample starts when the previous result has left "
                          "(cycles per image = latency); with more, each stage holds its own sample, so the steady "
                          "state is bounded below by the slowest stage's cycles per sample; exact figures: "
                          "pascal_hdl.model.core.run_stream and stream_figures, measured by pascal-ref cosim")
    return info


def generate(config: CoreConfig, out_dir, top: str | None = None, source: dict | None = None) -> dict:
    """Write the build folder of ``config`` into ``out_dir``; returns the manifest."""
    if not isinstance(config, CoreConfig):
        raise TypeError(f"generate: expected a CoreConfig, got {type(config).__name__}")
    top = top or config.name
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", top):
        raise HardwareError(f"top module name must be a Verilog identifier, got {top!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    core = _build_core(config)
    text = component_verilog(core, top)
    verilog_name = f"{top}.v"
    # Each file is written whole and renamed into place: two runs generating one folder at once (two
    # `pascal-ref cosim` runs of a design) never let a reader see a half-written file.
    replace_file(out / verilog_name, text)
    for layer in config.layers:
        for file, words, width in _memory_files(layer):
            replace_file(out / file, _hex_lines(words, width))
    manifest = manifest_of(config, top, verilog_ports(text, top), verilog_name, _expected_cycles(config, core), source)
    manifest["digests"] = _digests(manifest, out)
    replace_file(out / "manifest.json", json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def _digests(manifest: dict, out: Path) -> dict:
    """SHA-256 of every file the manifest lists and of the manifest itself (``pascal_hdl.flow.synth``
    refuses a build folder whose files or manifest were changed after generation)."""
    from pascal_hdl.flow.synth import file_digest, manifest_digest, memory_entries
    names = list(manifest["verilog"]) + [entry["file"] for layer in manifest["layers"]
                                         for _, _, entry in memory_entries(layer)]
    return {"files": {name: file_digest(out, name) for name in names}, "manifest": manifest_digest(manifest)}


def core_config_from_network(network, lanes=None, weight_bits: int = 8, per_channel: bool = True,
                             name: str | None = None, layer_lanes: dict | None = None,
                             in_flight: int = 1, double_buffer=None, mac=None,
                             multiplier: str = "logic", input_bits: int = 8,
                             input_bound: float | None = None) -> tuple[CoreConfig, object]:
    """Quantize a float network as the golden model does and map it onto the core.

    Returns ``(config, integer_model)``; raises :class:`HardwareError` for a
    model the core cannot take. ``layer_lanes`` may be ``"auto"``: lanes per stage chosen by
    :func:`pascal_hdl.model.chain.balance_lanes` (calibrated on the bundled digits test split when the
    network takes its shape, else on uniform random levels). ``double_buffer``, ``mac`` and
    ``multiplier``: see :func:`pascal_hdl.model.chain.core_config`. ``input_bits`` and ``input_bound``:
    the quantization of an analog input (``pascal_ref.golden.quantize.quantize``; the bound is required
    then, and the first layer must be a Conv2d or a Linear, which multiplies the signed pixels).
    """
    from pascal_ref.ir.network import Network
    from pascal_ref.golden.quantize import quantize

    if not isinstance(network, Network):
        raise TypeError(f"expected a pascal_ref Network, got {type(network).__name__}")
    if network.input_levels is None and input_bound is None:
        raise HardwareError(f"network '{network.name}' has analog input: give input_bound (--input-bound, the "
                            "largest |x| the signed integer pixels represent)")
    model = quantize(network, weight_bits=weight_bits, per_channel=per_channel, input_bits=input_bits,
                     input_bound=input_bound)
    if layer_lanes == "auto":
        from pascal_hdl.model.chain import balance_lanes, calibration_levels
        layer_lanes = balance_lanes(model, calibration_levels(model), lanes=lanes,
                                    double_buffer=double_buffer, in_flight=in_flight, mac=mac)["layer_lanes"]
    return core_config(model, lanes=lanes, layer_lanes=layer_lanes, name=name, in_flight=in_flight,
                       double_buffer=double_buffer, mac=mac, multiplier=multiplier), model


def choose_multiplier(config: CoreConfig, target: str | None, multipliers: int | None = None) -> str:
    """``"dsp"`` when ``target`` has a multiplier block for every lane of the stages that multiply (and there
    is one), else ``"logic"`` (shift-and-add); no target: ``"logic"``. An unknown target is a HardwareError.
    ``multipliers``: the part's multiplier blocks, for a part ``pascal-ref synth`` does not build for (the
    estimator's); default: the synthesis target's."""
    if target is None:
        return "logic"
    if multipliers is None:
        from pascal_hdl.flow.synth import TARGETS
        if target not in TARGETS:
            raise HardwareError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
        multipliers = TARGETS[target].multipliers
    needed = dsp_products(config.layers, multiplier=None)
    return "dsp" if 0 < needed <= multipliers else "logic"


def generate_from_network(network, out_dir, lanes=None, weight_bits: int = 8, per_channel: bool = True,
                          name: str | None = None, model_bytes: bytes | None = None,
                          layer_lanes: dict | None = None, in_flight: int = 1, double_buffer=None,
                          mac=None, multiplier: str | None = "logic", input_bits: int = 8,
                          input_bound: float | None = None, target: str | None = None) -> dict:
    """Quantize, check and generate; the manifest records the options and the model's SHA-256.

    ``target`` (a part of :data:`pascal_hdl.flow.synth.TARGETS`) with ``multiplier=None``: the stages that
    multiply use the part's DSP blocks when it has one for each of their lanes, else shift-and-add
    (:func:`choose_multiplier`); without a target None means ``"logic"``."""
    config, _ = core_config_from_network(network, lanes, weight_bits, per_channel, name, layer_lanes, in_flight,
                                         double_buffer, mac, multiplier or "logic", input_bits, input_bound)
    if multiplier is None:      # chosen for the part, on the stages that multiply (quantized once)
        multiplier = choose_multiplier(config, target)
        config = dataclasses.replace(config, layers=with_mac(config.layers, None, multiplier))
    source = {"network": network.name, "weight_bits": weight_bits, "per_channel": per_channel,
              "lanes": [stage_lanes(layer) for layer in config.layers]}
    if layer_lanes == "auto":
        source["layer_lanes"] = "auto (pascal_hdl.model.chain.balance_lanes)"
    elif layer_lanes:
        source["layer_lanes"] = dict(sorted(layer_lanes.items()))
    if double_buffer:
        source["double_buffer"] = sorted(s.name for s in config.layers if getattr(s, "banks", 1) == 2)
    if mac:
        source["mac"] = sorted(s.name for s in config.layers if getattr(s, "mac", False))
    if multiplier != "logic":
        source["multiplier"] = multiplier
    if target is not None:
        source["target"] = target
    if network.input_levels is None:
        source["input_bits"], source["input_bound"] = int(input_bits), float(input_bound)
    if model_bytes is not None:
        source["model_sha256"] = hashlib.sha256(model_bytes).hexdigest()
    return generate(config, out_dir, source=source)
