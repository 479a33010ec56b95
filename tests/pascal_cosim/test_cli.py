"""``pascal-ref cosim`` without a simulator: the missing-extra line, argument errors; the import arrows."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from pascal_ref import cli

SRC = Path(__file__).resolve().parents[2] / "src"


def test_missing_hdl_extra_prints_the_standard_line(monkeypatch, capsys):
    monkeypatch.setitem(cli.EXTRAS, "hdl", ("no_such_module_for_the_test",))
    status = cli.main(["cosim", "digits-mlp", "--data", "digits", "--sim", "icarus"])
    assert status == 2
    assert capsys.readouterr().err == ("pascal-ref cosim: error: this command needs the 'hdl' extra "
                                       "(no_such_module_for_the_test is not installed): pip install 'pascal-ref[hdl]'\n")


@pytest.mark.parametrize("argv, message", [
    (["--sim", "questa"], "invalid choice: 'questa'"),
    (["--sim", "icarus", "--limit", "0"], "argument --limit: invalid _positive value: '0'"),
    (["--sim", "icarus", "--lanes", "x"], "argument --lanes: invalid _positive value: 'x'"),
    (["--sim", "icarus", "--idle", "1"], "argument --idle: invalid probability value: '1'"),
    (["--sim", "icarus", "--ready", "0"], "argument --ready: invalid probability value: '0'"),
    (["--sim", "icarus", "--seed", "-1"], "argument --seed: invalid _seed value: '-1'"),
])
def test_bad_arguments_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["cosim", "digits-mlp", "--data", "digits", *argv])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_unknown_model_is_a_user_error(capsys, tmp_path):
    status = cli.main(["cosim", str(tmp_path / "nothing.npz"), "--data", "digits", "--sim", "icarus",
                       "--build-dir", str(tmp_path / "b")])
    assert status == 2 and "nothing.npz" in capsys.readouterr().err


def test_golden_model_and_hardware_never_import_cosim():
    """The arrows point one way: pascal_cosim sits on top of pascal_ref and pascal_hdl."""
    pattern = re.compile(r"^\s*(from|import)\s+pascal_cosim\b", re.MULTILINE)
    offenders = [str(path.relative_to(SRC)) for package in ("pascal_ref", "pascal_hdl")
                 for path in sorted((SRC / package).rglob("*.py")) if pattern.search(path.read_text())]
    assert offenders == []


def fake_cosim(errors, per_layer, late: int = 0, seen: dict | None = None):
    """A stand-in for ``cosim_network`` (no simulator): the golden model's outputs and the cycle model's
    stream, with ``errors``; ``late`` cycles added to the last result's ``finished`` (a slower core);
    the options it was called with are put into ``seen``."""
    def cosim_network(folder, config, model, levels, simulator, **options):
        if seen is not None:
            seen.update(options)
        import numpy as np

        from pascal_cosim.core import NetworkCosim
        from pascal_hdl.model.core import run_stream
        from pascal_ref.golden.quantize import integer_ann

        logits = np.asarray(integer_ann(model, x_int=levels).integer_logits)
        stream = run_stream(config, levels)
        cycles = np.array([r["cycles"] for r in stream])
        finished = np.array([r["finished"] for r in stream])
        finished[-1] += late
        return NetworkCosim(simulator, len(levels), None, list(errors), dict(per_layer), logits,
                            np.argmax(logits, axis=1), cycles, None, int(cycles.sum()), finished, 1.5, 2.0, 0.5,
                            Path(folder))
    return cosim_network


@pytest.mark.parametrize("broken", [False, True], ids=["matching", "mismatching"])
def test_exit_status_and_json_follow_the_comparison(broken, monkeypatch, capsys, tmp_path):
    pytest.importorskip("amaranth")
    import json

    import pascal_cosim.core

    errors = ["image 1 layer act1: neurons [3] counts [2] want [1]"] if broken else []
    monkeypatch.setattr(pascal_cosim.core, "cosim_network",
                        fake_cosim(errors, {"act1": int(broken), "fc2": 0}))
    out = tmp_path / "cosim.json"
    status = cli.main(["cosim", "digits-mlp", "--data", "digits", "--sim", "verilator", "--limit", "3",
                       "--build-dir", str(tmp_path / "b"), "--json", str(out)])
    text = capsys.readouterr().out
    assert status == (1 if broken else 0)
    assert ("MISMATCHES" in text) == broken
    assert f"  layer act1 (hidden, 64 neurons, 8 lanes): {int(broken)} of 3 samples differ" in text
    assert "cycle model equal on 3 of 3" in text
    report = json.loads(out.read_text())
    assert report["ok"] is not broken and report["errors"] == errors
    assert [s["hardware"]["prediction"] for s in report["samples"]] == \
        [s["golden"]["prediction"] for s in report["samples"]]
    assert (tmp_path / "b" / "designs").is_dir()


@pytest.mark.parametrize("in_flight", [1, 2])
def test_throughput_is_measured_and_checked_against_the_model(in_flight, monkeypatch, capsys, tmp_path):
    """The steady-state cycles per image and the latency are printed and in the JSON; a core whose results
    come later than the cycle model says is a mismatch (exit 1)."""
    pytest.importorskip("amaranth")
    import json

    import pascal_cosim.core

    for late in (0, 5):
        monkeypatch.setattr(pascal_cosim.core, "cosim_network", fake_cosim([], {"act1": 0, "fc2": 0}, late))
        out = tmp_path / f"cosim{late}.json"
        status = cli.main(["cosim", "digits-mlp", "--data", "digits", "--sim", "verilator", "--limit", "4",
                           "--in-flight", str(in_flight), "--build-dir", str(tmp_path / "b"), "--json", str(out)])
        text = capsys.readouterr().out
        report = json.loads(out.read_text())
        assert status == (1 if late else 0) and report["in_flight"] == in_flight
        hardware, model = report["throughput"]["hardware"], report["throughput"]["model"]
        assert hardware["images"] == 4 and hardware["first_to_last_result_cycles"] == \
            model["first_to_last_result_cycles"] + late
        assert f"throughput ({in_flight} sample(s) in flight, back to back): {hardware['cycles_per_image']:.1f}" in text
        assert ("throughput differs from the cycle model" in text) == bool(late)


def test_stalls_are_passed_on_and_cycles_not_held_to_the_ideal_model(monkeypatch, capsys, tmp_path):
    """``--idle``/``--ready``/``--seed`` reach the bench; the cycles (later than the ideal model's, as stalls make
    them) are then not a mismatch, no ``cosim_cycles.json`` is written, and the output says so; a data mismatch
    still fails."""
    pytest.importorskip("amaranth")
    import json

    import pascal_cosim.core

    for errors in ([], ["image 2 layer fc2: logits differ"]):
        seen: dict = {}
        monkeypatch.setattr(pascal_cosim.core, "cosim_network",
                            fake_cosim(errors, {"act1": 0, "fc2": int(bool(errors))}, late=7, seen=seen))
        out = tmp_path / "stalls.json"
        status = cli.main(["cosim", "digits-mlp", "--data", "digits", "--sim", "verilator", "--limit", "4",
                           "--idle", "0.3", "--ready", "0.5", "--seed", "9", "--build-dir", str(tmp_path / "b"),
                           "--json", str(out)])
        text = capsys.readouterr().out
        assert status == (1 if errors else 0), text
        assert (seen["idle"], seen["ready_probability"], seen["seed"]) == (0.3, 0.5, 9)
        assert "idle0.3-ready0.5-seed9" in seen["run_name"]
        assert "30% idle input cycles, result sink ready 50% of cycles (seed 9); cycles not compared" in text
        assert "throughput differs" not in text and "cycle model equal" not in text
        report = json.loads(out.read_text())
        assert report["stalls"] == {"idle": 0.3, "ready": 0.5, "seed": 9} and report["cycles"]["model_equal"] is None
        assert report["ok"] is not bool(errors)
    assert not list((tmp_path / "b" / "designs").glob("*/cosim_cycles.json"))
