"""Bundled models: a bundled name is never a planted file, and the training script rebuilds them bit for bit."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pascal_ref.cli import main
from pascal_ref.io.bundled import BUNDLED, bundled_path, resolve_model_path
from pascal_ref.io.fileformat import load
from pascal_ref.testing import random_mlp

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def planted(tmp_path, monkeypatch):
    """A working folder holding a file named like each bundled model: a different, wrong network."""
    from pascal_ref import save

    monkeypatch.chdir(tmp_path)
    for name in BUNDLED:
        network = random_mlp(np.random.default_rng(5), [64, 3, 10], [1], input_levels=16, name="planted", lam=9.0)
        save(network, tmp_path / "planted.npz")
        os.replace(tmp_path / "planted.npz", tmp_path / name)
    return tmp_path


def test_bundled_name_resolves_to_the_package_not_the_working_folder(planted):
    for name in BUNDLED:
        assert resolve_model_path(name) == bundled_path(name)
        assert resolve_model_path(f"./{name}") == f"./{name}"


def test_demo_never_runs_a_planted_file(planted, capsys):
    assert main(["demo", "--limit", "5"]) == 0
    out = capsys.readouterr().out
    assert "planted" not in out and all(BUNDLED[name].removesuffix(".npz") in out for name in BUNDLED)


def test_a_path_reaches_the_planted_file(planted, capsys):
    assert main(["info", "./digits-mlp"]) == 0
    assert capsys.readouterr().out.startswith("planted:")


def _float_accuracy(path) -> float:
    from pascal_ref.golden.ann import float_ann
    from pascal_ref.io.data import load_digits_split

    network = load(path)
    _, _, x, y = load_digits_split()
    return float(np.mean(float_ann(network, x.reshape((len(x),) + tuple(network.input_shape))).predictions == y))


def _check_retrain(kind: str, out_dir: Path) -> None:
    """``examples/train_digits.py --model KIND`` rebuilds the bundled file byte for byte on the CPU it was
    built on; elsewhere (the script says "expect a retrain to differ") it must reach the bundled
    model's float accuracy within 2 points on the digits test split."""
    pytest.importorskip("torch")
    script = REPO / "examples" / "train_digits.py"
    done = subprocess.run([sys.executable, str(script), "--model", kind, "--out-dir", str(out_dir)],
                          capture_output=True, text=True, timeout=600, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    retrained, bundled = out_dir / f"digits_{kind}.npz", Path(bundled_path(f"digits-{kind}"))
    if "expect a retrain to differ" in done.stdout:
        assert abs(_float_accuracy(retrained) - _float_accuracy(bundled)) <= 0.02, done.stdout[-2000:]
    else:
        assert retrained.read_bytes() == bundled.read_bytes(), done.stdout.splitlines()[0]


@pytest.mark.torch
def test_train_digits_rebuilds_the_bundled_mlp(tmp_path):
    _check_retrain("mlp", tmp_path)


@pytest.mark.torch
def test_train_digits_rebuilds_the_bundled_resnet(tmp_path):
    _check_retrain("resnet", tmp_path)
