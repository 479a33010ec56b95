"""The core commands: demo, verify, run, info; errors are one clear line."""
import json
import re

import numpy as np
import pytest

from pascal_ref import save
from pascal_ref.cli import main
from pascal_ref.testing import random_mlp


@pytest.fixture
def model_file(tmp_path):
    # digits have 64 pixels: a small random MLP of that input size
    network = random_mlp(np.random.default_rng(1), [64, 12, 10], [4], input_levels=16, name="cli-mlp", lam=1.0)
    path = tmp_path / "m.npz"
    save(network, path)
    return path


def test_verify_json(model_file, tmp_path, capsys):
    out = tmp_path / "report.json"
    assert main(["verify", str(model_file), "--data", "digits", "--limit", "50", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["ok"] and report["samples"] == 50
    assert report["integer"]["mismatched_neurons"] == 0
    assert {row["layer"] for row in report["layers"]} == {"act1"}
    assert set(report["accuracy"]) == {"float_ann", "float_snn", "integer_ann", "integer_snn"}
    assert "verdict: OK" in capsys.readouterr().out


def test_run_writes_every_path(model_file, tmp_path):
    data = tmp_path / "data.npz"
    rng = np.random.default_rng(0)
    np.savez(data, x=rng.uniform(0, 1, size=(7, 64)), y=rng.integers(0, 10, 7))
    out = tmp_path / "run.json"
    assert main(["run", str(model_file), "--data", str(data), "--json", str(out), "--engine", "count"]) == 0
    payload = json.loads(out.read_text())
    assert len(payload["samples"]) == 7
    sample = payload["samples"][0]
    assert sample["integer_ann"]["integer_logits"] == sample["integer_snn"]["integer_logits"]
    assert all(len(sample[p]["logits"]) == 10 for p in payload["paths"])


def test_demo_on_bundled_models(capsys):
    assert main(["demo", "--limit", "40"]) == 0
    out = capsys.readouterr().out
    assert "digits_mlp" in out and "digits_cnn" in out and "digits_resnet" in out and out.count("verdict: OK") == 3


@pytest.mark.parametrize("make_data, message", [
    (lambda p: np.savez(p, x=np.zeros((3, 5))), r"samples of shape \(5,\), the model expects \(64,\)"),
    (lambda p: np.savez(p, x=np.array([[object()]], dtype=object)), "pickled object array; refused"),
    (lambda p: np.savez(p, x=np.zeros((3, 64)), y=np.zeros(4, int)), r"'y' has shape \(4,\), expected \(3,\)"),
    (lambda p: np.savez(p, x=np.zeros((3, 64)), y=np.zeros(3)), "integer labels"),
    (lambda p: np.savez(p, images=np.zeros((3, 64))), "unexpected array 'images'; expected x, y"),
    (lambda p: np.savez(p, y=np.zeros(3, int)), "no array 'x'"),
    (lambda p: np.savez(p, x=np.full((2, 64), np.nan)), "NaN"),
    (lambda p: p.write_text("not an archive"), "not an .npz archive"),
])
def test_bad_data_is_one_clear_line(model_file, tmp_path, capsys, make_data, message):
    data = tmp_path / "bad.npz"
    make_data(data)
    assert main(["verify", str(model_file), "--data", str(data)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert re.search(message, err), err


def test_bad_model_is_one_clear_line(tmp_path, capsys):
    assert main(["info", str(tmp_path / "missing.npz")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_verify_over_a_local_cluster_equals_one_process(tmp_path):
    pytest.importorskip("distributed")
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    assert main(["run", "digits-mlp", "--data", "digits", "--limit", "100", "--batch-size", "32", "--json", str(one)]) == 0
    assert main(["run", "digits-mlp", "--data", "digits", "--limit", "100", "--batch-size", "32", "--workers", "2",
                 "--json", str(two)]) == 0
    assert json.loads(one.read_text()) == json.loads(two.read_text())


def test_write_json_numpy_stdout_and_no_half_files(tmp_path, capsys):
    from pascal_ref.cli.common import write_json

    payload = {"counts": np.arange(3), "mean": np.float32(0.5), "n": np.int64(7), "nested": [{"v": np.ones(2)}]}
    out = tmp_path / "out.json"
    write_json(out, payload)
    text = out.read_text()
    assert json.loads(text) == {"counts": [0, 1, 2], "mean": 0.5, "n": 7, "nested": [{"v": [1.0, 1.0]}]}
    assert text.endswith("}\n") and list(tmp_path.iterdir()) == [out]
    write_json("-", payload)
    assert capsys.readouterr().out == text
    with pytest.raises(TypeError, match="not JSON serializable: object"):
        write_json(out, {"bad": object()})
    assert out.read_text() == text and list(tmp_path.iterdir()) == [out]


def test_missing_model_names_the_bundled_ones(capsys):
    assert main(["info", "no-such-model"]) == 2
    err = capsys.readouterr().err
    assert "no-such-model: no such file (bundled models: digits-mlp, digits-cnn, digits-resnet)" in err and err.count("\n") == 1
