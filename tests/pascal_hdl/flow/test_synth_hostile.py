"""Hostile build folders for ``pascal-ref synth``: nothing from a folder reaches a tool script, a path outside
the folder or the report unchecked (``docs/threat-model.md``, "Build folders and manifests").

Every attack here is made as strong as it can be: the folder is internally consistent (the planted file
exists, the manifest's digests are recomputed for it), so the only thing that can stop it is the check
under test.  ``synth.run_tool`` is replaced by a recorder: a test fails if any tool would have run.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pascal_hdl.flow import synth
from pascal_hdl.flow.generate import generate_from_network
from pascal_hdl.flow.synth import SynthError, manifest_digest, synthesize, wrapper_verilog
from pascal_ref.ir.network import QCFS, Linear, Network

CLI = str(Path(sys.executable).with_name("pascal-ref"))


class ToolCall(Exception):
    """Raised instead of running a tool: the folder passed every check made before the tools."""


@pytest.fixture
def tools(monkeypatch):
    """Records the tool calls instead of running them (the first call stops ``synthesize``)."""
    calls = []

    def record(cmd, log_path, env, cwd):
        calls.append((list(cmd), Path(cwd)))
        raise ToolCall()

    monkeypatch.setattr(synth, "run_tool", record)
    return calls


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    rng = np.random.default_rng(0)
    network = Network((6,), [Linear("fc1", rng.normal(0, 0.5, (5, 6)), rng.normal(0, 0.1, 5)), QCFS("act1", 1.5, 2),
                             Linear("fc2", rng.normal(0, 0.5, (3, 5)), rng.normal(0, 0.1, 3))],
                      input_levels=2, name="tiny_mlp")
    folder = tmp_path_factory.mktemp("generated") / "build"
    generate_from_network(network, folder, lanes=2)
    return folder


@pytest.fixture
def build(generated, tmp_path):
    """A fresh copy of a generated build folder (``tmp_path/work/build``; ``tmp_path/work`` is "outside")."""
    folder = tmp_path / "work" / "build"
    shutil.copytree(generated, folder)
    return folder


def _manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def _reseal(folder: Path, manifest: dict) -> None:
    """Write ``manifest`` with digests recomputed for the files it names (as an attacker would)."""
    files = {}
    for name in list(manifest["verilog"]) + [entry["file"] for layer in manifest["layers"]
                                             for _, _, entry in synth.memory_entries(layer)]:
        target = folder / name
        files[name] = hashlib.sha256(target.read_bytes()).hexdigest() if target.is_file() else "0" * 64
    manifest["digests"] = {"files": files, "manifest": ""}
    manifest["digests"]["manifest"] = manifest_digest(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest))


def _refused(folder, tools, message, out_dir=None):
    with pytest.raises(SynthError, match=message) as caught:
        synthesize(folder, "ice40-up5k", out_dir=out_dir)
    assert not tools, f"a tool ran: {tools}"
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 2000
    return str(caught.value)


def test_a_generated_folder_reaches_the_tools_with_quoted_names(build, tools):
    with pytest.raises(ToolCall):
        synthesize(build, "ice40-up5k")
    (command, cwd), = tools
    script = command[command.index("-p") + 1]
    assert script.startswith('read_verilog "tiny_mlp.v"; read_verilog "wrapper.v"; ')
    assert cwd == build / "synth-ice40-up5k"
    assert sorted(p.name for p in cwd.iterdir()) == ["tiny_mlp.v", "wrapper.v"]


# ------------------------------------------------------------------ script injection


@pytest.mark.parametrize("entry", [
    "tiny_mlp.v; tee -o pwned.txt stat",
    "tiny_mlp.v;script evil.ys",
    "tiny_mlp.v\ntee -o pwned.txt stat",
    'tiny_mlp.v" ; tee -o pwned.txt stat ; "',
    "tiny_mlp.v tee",
    "-ptee.v",
], ids=["semicolon-tee", "semicolon-script", "newline", "quote", "space", "option"])
def test_script_injection_in_a_verilog_entry_is_refused(build, tools, entry):
    (build / entry).write_text("module x; endmodule\n")
    (build / "evil.ys").write_text("tee -o pwned.txt stat\n")
    manifest = _manifest(build)
    manifest["verilog"] = [entry]
    _reseal(build, manifest)
    _refused(build, tools, r"'verilog' entry .* is not a plain file name inside the build folder")
    assert not list(build.parent.rglob("pwned.txt"))
    assert not (build / "synth-ice40-up5k" / entry).exists()


# ------------------------------------------------------------------ path traversal


@pytest.mark.parametrize("entry", ["/etc/passwd", "../outside.v", "..", "sub/inner.v", "./tiny_mlp.v"],
                         ids=["absolute", "parent", "dotdot", "subfolder", "dot-slash"])
def test_verilog_entries_outside_the_folder_are_refused(build, tools, entry):
    (build.parent / "outside.v").write_text("module outside; endmodule\n")
    (build / "sub").mkdir()
    (build / "sub" / "inner.v").write_text("module inner; endmodule\n")
    manifest = _manifest(build)
    manifest["verilog"] = manifest["verilog"] + [entry]
    _reseal(build, manifest)
    _refused(build, tools, r"'verilog' entry .* is not a plain file name")
    out = build / "synth-ice40-up5k"
    assert not out.exists() or not any(p.name in ("passwd", "outside.v", "inner.v") for p in out.iterdir())


def test_a_memory_image_outside_the_folder_is_refused(build, tools):
    manifest = _manifest(build)
    manifest["layers"][0]["weight_memory"]["file"] = "../../../etc/passwd"
    _reseal(build, manifest)
    _refused(build, tools, r"layer entry #0: weight_memory file .* is not a plain file name")


@pytest.mark.parametrize("what", ["verilog", "memory"])
def test_a_symlink_pointing_outside_the_folder_is_refused(build, tools, what):
    secret = build.parent / "secret.txt"
    secret.write_text("module secret; endmodule\n")
    manifest = _manifest(build)
    if what == "verilog":
        os.symlink(secret, build / "link.v")
        manifest["verilog"] = manifest["verilog"] + ["link.v"]
    else:
        name = manifest["layers"][0]["weight_memory"]["file"]
        (build / name).unlink()
        os.symlink(secret, build / name)
    _reseal(build, manifest)
    _refused(build, tools, r"is a symbolic link; a build folder holds its own files only")
    out = build / "synth-ice40-up5k"
    assert not out.exists() or "secret" not in "".join(p.read_text() for p in out.iterdir() if p.is_file())


def test_the_tools_never_write_through_a_planted_symlink(build, tools, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("untouched\n")
    out = build / "synth-ice40-up5k"
    out.mkdir()
    os.symlink(victim, out / "netlist.json")
    _refused(build, tools, r"netlist.json is a symbolic link; refusing to let the tools write through it")
    (out / "netlist.json").unlink()
    os.symlink(victim, out / "wrapper.v")
    _refused(build, tools, r"wrapper.v is a symbolic link")
    assert victim.read_text() == "untouched\n"


def test_a_symlinked_output_folder_is_refused(build, tools, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, build / "synth-ice40-up5k")
    _refused(build, tools, r"synth-ice40-up5k is a symbolic link; refusing to write through it")
    assert not list(elsewhere.iterdir())


# ------------------------------------------------------------------ top


@pytest.mark.parametrize("top", ["pascal_core u(); endmodule module x", "tiny_mlp;", "a b", "1core", "core\n",
                                 "\\escaped", "x" * 200, "pascal_synth_top"])
def test_top_must_be_a_verilog_identifier(build, tools, top):
    manifest = _manifest(build)
    manifest["top"] = top
    _reseal(build, manifest)
    _refused(build, tools, r"'top' must be a Verilog identifier")
    with pytest.raises(SynthError, match="'top' must be a Verilog identifier"):
        wrapper_verilog(manifest)


# ------------------------------------------------------------------ tampering after generation


def test_a_tampered_memory_image_is_detected(build, tools):
    name = _manifest(build)["layers"][0]["weight_memory"]["file"]
    (build / name).write_text("ff\n" * 4)
    _refused(build, tools, rf"memory image {name} does not match the SHA-256 in manifest.json")


@pytest.fixture(scope="module")
def generated_resnet(tmp_path_factory):
    from pascal_hdl.model.chain import core_config
    from pascal_hdl.testing import residual_network
    from pascal_hdl.flow.generate import generate

    _, model = residual_network(np.random.default_rng(5), [("identity", 3, 1), ("conv", 4, 2)], [2, 3, 2, 2, 3],
                                input_shape=(2, 5, 5))
    folder = tmp_path_factory.mktemp("generated") / "resnet"
    generate(core_config(model, lanes=2), folder)
    return folder


def test_every_residual_engine_memory_image_is_digested(generated_resnet, tools, tmp_path):
    """A residual block's memory images sit under its ``engines``; each one is in the digests, and a
    changed one is refused like any other."""
    manifest = _manifest(generated_resnet)
    engine_files = [engine[m]["file"] for layer in manifest["layers"] for engine in layer.get("engines", [])
                    for m in ("weight_memory", "param_memory")]
    assert len(engine_files) == 8 and set(engine_files) <= set(manifest["digests"]["files"])
    for name in engine_files:
        folder = tmp_path / name / "build"
        shutil.copytree(generated_resnet, folder)
        (folder / name).write_text("ff\n" * 4)
        _refused(folder, tools, rf"memory image {name} does not match the SHA-256 in manifest.json")


@pytest.mark.parametrize("engines", ["many", [1], [{}] * 5])
def test_malformed_engine_lists_are_refused(generated_resnet, tools, tmp_path, engines):
    folder = tmp_path / "build"
    shutil.copytree(generated_resnet, folder)
    manifest = _manifest(folder)
    manifest["layers"][1]["engines"] = engines
    _reseal(folder, manifest)
    _refused(folder, tools, r"layer entry #1: 'engines' must be a list of at most 4 objects")


def test_tampered_verilog_is_detected(build, tools):
    with open(build / "tiny_mlp.v", "a") as handle:
        handle.write("// changed\n")
    _refused(build, tools, r"Verilog file tiny_mlp.v does not match the SHA-256")


@pytest.mark.parametrize("edit", [
    lambda m: m["expected_cycles"].update(worst_case=1),
    lambda m: m["ports"][-1].update(width=1),
    lambda m: m["layers"][0].update(lanes=64),
], ids=["expected_cycles", "port-width", "layer"])
def test_a_tampered_manifest_is_detected(build, tools, edit):
    manifest = _manifest(build)
    edit(manifest)
    (build / "manifest.json").write_text(json.dumps(manifest))
    _refused(build, tools, r"its content does not match its digest")


def test_a_manifest_without_digests_is_refused(build, tools):
    manifest = _manifest(build)
    del manifest["digests"]
    (build / "manifest.json").write_text(json.dumps(manifest))
    _refused(build, tools, r"missing key 'digests' .*regenerate it")


@pytest.mark.parametrize("cycles", [0, -5, 10 ** 12, "many", float("nan")])
def test_cosim_cycles_beyond_the_design_are_refused(build, cycles):
    (build / "cosim_cycles.json").write_text(json.dumps({"mean_cycles_per_image": cycles, "images": 3}))
    with pytest.raises(SynthError, match=r"'mean_cycles_per_image' must be a number in \[1, \d+\]"):
        synth._cycles_per_image(build, synth.load_manifest(build))


def test_cosim_cycles_are_reported_as_coming_from_the_file(build):
    worst = _manifest(build)["expected_cycles"]["worst_case"]
    (build / "cosim_cycles.json").write_text(json.dumps({"mean_cycles_per_image": worst / 2, "images": 3}))
    cycles = synth._cycles_per_image(build, synth.load_manifest(build))
    assert cycles["cycles_per_image"] == worst / 2 and "cosim_cycles.json" in cycles["cycles_source"]


# ------------------------------------------------------------------ the manifest as JSON


@pytest.mark.parametrize("text, message", [
    ("null", "must be a JSON object, got NoneType"),
    ("[" * 100_000 + "]" * 100_000, "nested more than 64 levels"),
    ("[" + "1" * 5000 + "]", "integer literal of more than 4300 digits"),
    ('{"top": 1, "top": 2}', "duplicate key 'top'"),
    ("\xff", "not UTF-8|not valid JSON"),
])
def test_malformed_manifest_text_is_one_line(build, tools, text, message):
    (build / "manifest.json").write_bytes(text.encode("latin-1") if text == "\xff" else text.encode())
    _refused(build, tools, message)


def test_a_manifest_that_is_a_fifo_is_refused_without_blocking(build, tools):
    (build / "manifest.json").unlink()
    os.mkfifo(build / "manifest.json")
    _refused(build, tools, r"not a regular file \(a named pipe\)")


# ------------------------------------------------------------------ pascal-ref hdl


def test_hdl_refuses_a_fifo_and_a_device_without_blocking(tmp_path):
    fifo = tmp_path / "model.npz"
    os.mkfifo(fifo)
    for model in (str(fifo), "/dev/zero"):
        done = subprocess.run([CLI, "hdl", model, "-o", str(tmp_path / "out")], capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
        assert "not a regular file" in done.stderr and "Traceback" not in done.stderr


def test_hdl_refuses_a_non_ascii_layer_name_in_one_line(tmp_path):
    from pascal_ref.io.bundled import bundled_path
    from pascal_ref.io.fileformat import GRAPH_KEY
    arrays = dict(np.load(bundled_path("digits-mlp")))
    graph = json.loads(str(arrays.pop(GRAPH_KEY)))
    graph["layers"][0]["name"] = "fc数"
    arrays = {key.replace("fc1.", "fc数.", 1): value for key, value in arrays.items()}
    np.savez(tmp_path / "m.npz", **{GRAPH_KEY: np.array(json.dumps(graph))}, **arrays)
    done = subprocess.run([CLI, "hdl", str(tmp_path / "m.npz"), "-o", str(tmp_path / "out")], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "invalid layer name 'fc\\u6570'" in done.stderr or "invalid layer name 'fc数'" in done.stderr
    assert not (tmp_path / "out").exists()
