"""Reproducers of the failures the fuzzing tier found in code outside it (issue 16), now fixed.

Each asserts the correct behaviour (a correct result or one clear line) in
the memory-capped sandbox.  A new failure found by the tier goes into
``known.py`` with a reproducer here marked ``_strict(reason)``
(``xfail(strict=True)``): it fails until the owner fixes it, then passes,
which fails the tier until the mark and the entry are removed.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
from builders import base_manifest, build_folder, nested, seal

from pascal_ref.io.bundled import bundled_path

GRAPH_KEY = "__graph__"


def _model(root, edit=None, text=None) -> str:
    with np.load(bundled_path("digits-mlp")) as archive:
        content = {key: archive[key] for key in archive.files}
    graph = json.loads(str(content.pop(GRAPH_KEY)))
    if edit:
        edit(graph)
    path = tempfile.mktemp(suffix=".npz", dir=root)
    np.savez(path, **{GRAPH_KEY: np.array(text if text is not None else json.dumps(graph))}, **content)
    return path


def _graph_text(edit_text):
    with np.load(bundled_path("digits-mlp")) as archive:
        return edit_text(str(archive[GRAPH_KEY]))


def _strict(reason):
    return pytest.mark.xfail(strict=True, reason=reason)


# ------------------------------------------------------------ model files (pascal_ref.io.fileformat, pascal_ref.ir)


def test_model_deep_json(box, tmp_path):
    box.reproduce("model", _model(tmp_path, text=_graph_text(lambda t: t[:-1] + ', "x": ' + nested(100_000) + "}")))


def test_model_huge_integer_literal(box, tmp_path):
    box.reproduce("model", _model(tmp_path, text=_graph_text(
        lambda t: t.replace('"input_levels": 16', '"input_levels": 1' + "0" * 5000))))


def test_model_integer_too_large_for_a_float(box, tmp_path):
    box.reproduce("model", _model(tmp_path, lambda g: g["layers"][1].update(lam=10 ** 400)))


def test_model_error_message_length(box, tmp_path):
    box.reproduce("model", _model(tmp_path, lambda g: g["layers"][0].update(name="a" * 5000)))


def test_model_unknown_layer_field(box, tmp_path):
    box.reproduce("model", _model(tmp_path, lambda g: g["layers"][0].update(unknown=1)))


def test_model_unknown_top_field(box, tmp_path):
    box.reproduce("model", _model(tmp_path, lambda g: g.update(extra=1)))


def test_model_fractional_input_shape(box, tmp_path):
    box.reproduce("model", _model(tmp_path, lambda g: g.update(input_shape=[64.9])))


def test_model_missing_name(box, tmp_path):
    box.reproduce("model", _model(tmp_path, lambda g: g.pop("name")))


# ------------------------------------------------------------ build folders (pascal_hdl.flow.synth)


def _manifest(root, edit=None, text=None) -> Path:
    manifest = base_manifest()
    if edit:
        edit(manifest)
    return build_folder(root, text if text is not None else json.dumps(seal(manifest)))


def test_manifest_not_an_object(box, tmp_path):
    box.reproduce("manifest", _manifest(tmp_path, text="null"))


def test_manifest_verilog_entry_not_a_string(box, tmp_path):
    box.reproduce("manifest", _manifest(tmp_path, lambda m: m.update(verilog=[3])))


def test_manifest_verilog_not_a_list(box, tmp_path):
    box.reproduce("manifest", _manifest(tmp_path, lambda m: m.update(verilog=3)))


def test_manifest_deep_json(box, tmp_path):
    box.reproduce("manifest", _manifest(tmp_path, text=nested(100_000)))


def test_manifest_huge_integer_literal(box, tmp_path):
    box.reproduce("manifest", _manifest(tmp_path, text="[" + "1" * 5000 + "]"))


def test_manifest_error_message_length(box, tmp_path):
    box.reproduce("manifest", _manifest(tmp_path, lambda m: m["ports"][2].update(width="a" * 5000)))


def test_manifest_top_injection(box, tmp_path):
    box.reproduce("manifest", _manifest(tmp_path, lambda m: m.update(top="pascal_core u(); endmodule module x")))


def test_manifest_script_injection(box, tmp_path):
    def edit(manifest):
        manifest["verilog"] = ["pascal_core.v; tee -o pwned.txt stat"]
    path = _manifest(tmp_path, edit)
    (path.parent / "pascal_core.v; tee -o pwned.txt stat").write_text("module x; endmodule\n")
    box.reproduce("manifest", path)


def test_manifest_absolute_path(box, tmp_path):
    box.reproduce("manifest", _manifest(tmp_path, lambda m: m.update(verilog=["pascal_core.v", "/etc/passwd"])))


def test_manifest_parent_path(box, tmp_path):
    path = _manifest(tmp_path)
    (path.parent.parent / "outside.v").write_text("module outside; endmodule\n")
    manifest = json.loads(path.read_text())
    manifest["verilog"].append("../outside.v")
    path.write_text(json.dumps(seal(manifest)))
    box.reproduce("manifest", path)


# ------------------------------------------------------------ fixed in this tier's own readers


def test_fixed_in_this_tier(box, tmp_path):
    """The cases of issue 16 in the readers this tier owns: one clear line each, in the sandbox."""
    import zipfile
    from builders import npy_header_bytes, write_zip
    bomb = write_zip(tmp_path / "long-header.npz", [("x.npy", npy_header_bytes(" " * 20_000, b"", (2, 0)))])
    answer = box.run("data-mlp", bomb)
    assert answer["outcome"] == "error" and "header of 20000 bytes exceeds the limit" in answer["message"]
    memo = write_zip(tmp_path / "memo.pth", [("archive/data.pkl", b"\x80\x02N" + b"r\xff\xff\xff\x7f" + b".")])
    answer = box.run("checkpoint", memo)
    assert answer["outcome"] == "error" and "memo bomb" in answer["message"]
    with zipfile.ZipFile(tmp_path / "bz.npz", "w", zipfile.ZIP_BZIP2) as archive:
        archive.writestr("x.npy", b"\x93NUMPY")
    answer = box.run("model", tmp_path / "bz.npz")
    assert answer["outcome"] == "error" and "bzip2 compression" in answer["message"]
    stray = write_zip(tmp_path / "stray.pth", [("archive/data.pkl", b"\x80\x02ctorch\nFloatStorage\n.")])
    answer = box.run("checkpoint", stray)
    assert answer["outcome"] == "error" and "not a tensor or plain data" in answer["message"]
    for special in ("/dev/zero", "/dev/urandom"):
        answer = box.run("model", special)
        assert answer["outcome"] == "error" and "not a regular file" in answer["message"]


def test_memory_cap_turns_a_large_archive_into_one_line(box, tmp_path):
    """1 GiB of zeros in a 1 MB archive: within the per-file cap, beyond the sandbox's memory: one line."""
    import zipfile
    path = tmp_path / "large.npz"
    header = "{'descr': '<f8', 'fortran_order': False, 'shape': (134217728, 1), }".ljust(117) + "\n"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        with archive.open("x.npy", "w", force_zip64=True) as member:
            member.write(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode())
            block = bytes(1 << 24)
            for _ in range(64):
                member.write(block)
    answer = box.run("data-mlp", path)
    assert answer["outcome"] == "error" and "not enough memory" in answer["message"], answer


def test_the_sandbox_classifies_hangs_allocations_and_tracebacks(box, monkeypatch):
    import sandbox
    monkeypatch.setattr(sandbox, "CASE_SECONDS", 1.0)
    assert box.run("selftest", "hang")["outcome"] == "hang"
    assert box.run("selftest", "memory")["outcome"] == "memory"
    assert box.run("selftest", "traceback")["outcome"] == "traceback"
    assert box.run("selftest", "fine")["outcome"] == "ok"
    for outcome in ("hang", "memory", "traceback"):
        box.counts[("selftest", outcome)] -= 1   # on purpose: not failures of a loader
