"""``pascal-ref cosim`` on a model the suite does not bundle, on both simulators.

A random 3-layer MLP (``pascal_ref.testing.random_mlp``, 24-16-12-6, L = 2
and 4, count-coded input with L_in = 4, calibrated on its data) is written
with ``pascal_ref.save`` and its data as an ``.npz``; the command runs as a
user runs it (the ``pascal-ref`` script, a subprocess) and must exit 0, print
zero mismatches for every layer and the cycles against the cycle model, and
write JSON whose per-sample hardware logits and classes are those of
``pascal-ref run``'s ``integer_ann`` entries for the same model and data.
With ``--idle 0.3 --ready 0.5`` (random idle input cycles and back-pressure) the
same logits and classes, and the report says the cycles were not held to the
ideal cycle model.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from jobboard import CosimJob

import pascal_ref
from pascal_ref.testing import calibrate, random_mlp

pytestmark = pytest.mark.cosim

SAMPLES = 40
SIZES = (24, 16, 12, 6)
LEVELS = (2, 4)
_lock = threading.Lock()


def pascal_ref_command() -> str:
    return str(Path(sys.executable).parent / "pascal-ref")


def user_model(root: Path) -> tuple[Path, Path]:
    """The model and data files (written once per session)."""
    folder = root / "src" / "cli_mlp3"
    model, data = folder / "mlp3.npz", folder / "data.npz"
    with _lock:
        if not model.is_file():
            folder.mkdir(parents=True, exist_ok=True)
            rng = np.random.default_rng(2024)
            x = rng.random((SAMPLES, SIZES[0]))
            network = calibrate(random_mlp(rng, SIZES, LEVELS, input_levels=4, name="user_mlp3"), x)
            pascal_ref.save(network, model)
            np.savez(data, x=x, y=rng.integers(0, SIZES[-1], SAMPLES))
    return model, data


STALLS = ("--idle", "0.3", "--ready", "0.5", "--seed", "4")


def _run(simulator: str, root: Path, stalls: bool = False) -> dict:
    model, data = user_model(root)
    out = root / "runs" / f"cli-{simulator}{'-stalls' if stalls else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([pascal_ref_command(), "cosim", str(model), "--data", str(data), "--sim", simulator,
                           "--json", str(out), "--build-dir", str(root), *(STALLS if stalls else ())],
                          capture_output=True, text=True, check=False)
    report = json.loads(out.read_text()) if out.is_file() and done.returncode in (0, 1) else None
    return {"returncode": done.returncode, "stdout": done.stdout, "stderr": done.stderr, "report": report}


def cosim_job(item, root) -> CosimJob | None:
    if item.originalname not in ("test_cli_cosim_of_a_saved_model", "test_cli_cosim_with_stalls"):
        return None
    simulator = item.callspec.params["simulator"]
    stalls = item.originalname == "test_cli_cosim_with_stalls"
    return CosimJob(("cli", simulator, stalls), 20 if simulator == "verilator" else 6,
                    lambda: _run(simulator, root, stalls))


def test_cli_cosim_of_a_saved_model(simulator, request, cosim_jobs, build_root, tmp_path):
    result = cosim_jobs.result(request.node)
    print(f"\n{result['stdout']}{result['stderr']}")
    assert result["returncode"] == 0, result["stdout"] + result["stderr"]
    stdout = result["stdout"]
    assert "every sample matches the integer golden model and the cycle model" in stdout
    for name in ("act1", "act2", "fc3"):
        assert re.search(rf"^  layer {name} \((hidden|readout), \d+ neurons, \d+ lanes\): 0 of {SAMPLES} samples "
                         "differ$", stdout, re.MULTILINE), stdout
    assert f"cycle model equal on {SAMPLES} of {SAMPLES}" in stdout
    assert re.search(r"^  speed: [\d,]+ cycles in [\d.]+ s = [\d,]+ cycles/s \(build [\d.]+ s, run [\d.]+ s",
                     stdout, re.MULTILINE), stdout

    report = result["report"]
    assert report["ok"] and report["simulator"] == simulator and report["samples_count"] == SAMPLES
    assert report["mismatches_per_layer"] == {"act1": 0, "act2": 0, "fc3": 0}
    assert report["cycles"]["model_equal"] == SAMPLES and report["speed"]["cycles_per_s"] > 0

    # The hardware's logits and classes are what `pascal-ref run` reports for the integer ANN.
    model, data = user_model(build_root)
    run_json = tmp_path / "run.json"
    subprocess.run([pascal_ref_command(), "run", str(model), "--data", str(data), "--json", str(run_json)],
                   check=True, capture_output=True)
    golden = json.loads(run_json.read_text())["samples"]
    assert len(report["samples"]) == len(golden) == SAMPLES
    for mine, theirs in zip(report["samples"], golden):
        assert mine["index"] == theirs["index"] and mine["label"] == theirs["label"]
        assert mine["hardware"]["integer_logits"] == theirs["integer_ann"]["integer_logits"], mine["index"]
        assert mine["hardware"]["prediction"] == theirs["integer_ann"]["prediction"], mine["index"]
        assert mine["hardware"]["cycles"] == mine["golden"]["cycles"]


def test_cli_cosim_with_stalls(simulator, request, cosim_jobs, build_root):
    result = cosim_jobs.result(request.node)
    print(f"\n{result['stdout']}{result['stderr']}")
    assert result["returncode"] == 0, result["stdout"] + result["stderr"]
    assert "every sample matches the integer golden model, in order" in result["stdout"]
    assert "30% idle input cycles, result sink ready 50% of cycles (seed 4)" in result["stdout"]
    report = result["report"]
    assert report["ok"] and report["stalls"] == {"idle": 0.3, "ready": 0.5, "seed": 4}
    assert report["mismatches_per_layer"] == {"act1": 0, "act2": 0, "fc3": 0}
    ideal = _run_report(simulator, build_root)
    assert [s["hardware"]["integer_logits"] for s in report["samples"]] == \
        [s["golden"]["integer_logits"] for s in report["samples"]]
    # Stalls only delay results: the total simulated cycles exceed the ideal run's.
    assert report["speed"]["simulated_cycles"] > ideal["speed"]["simulated_cycles"]


def _run_report(simulator: str, root: Path) -> dict:
    """The ideal run's JSON (written by the other test's job, which the board runs in the same session)."""
    path = root / "runs" / f"cli-{simulator}.json"
    return json.loads(path.read_text()) if path.is_file() else _run(simulator, root)["report"]
