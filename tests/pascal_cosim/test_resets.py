"""The reset bench's judge without a simulator: a made-up run of the digits MLP core (the golden model's
own results and monitor events), then the same run with one thing wrong."""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("amaranth")

from pascal_cosim.core import hidden_counts                      # noqa: E402
from pascal_cosim.resets import ResetRun, judge                   # noqa: E402
from pascal_hdl.flow.generate import core_config_from_network     # noqa: E402
from pascal_ref.golden.quantize import integer_ann                # noqa: E402
from pascal_ref.io.bundled import bundled_path                    # noqa: E402
from pascal_ref.io.data import load_digits_split                  # noqa: E402
from pascal_ref.io.fileformat import load                         # noqa: E402


@pytest.fixture(scope="module")
def case():
    config, model = core_config_from_network(load(bundled_path("digits-mlp")), in_flight=2)
    levels = model.encode_input(load_digits_split()[2][:6]).reshape(6, -1)
    golden = integer_ann(model, x_int=levels.reshape((6,) + tuple(model.network.input_shape)))
    counts = hidden_counts(config, golden, levels)[0]
    logits = np.asarray(golden.integer_logits)

    def events(image):
        nonzero = np.flatnonzero(counts[image]).tolist() or [0]
        last = config.hidden[0].out_features - 1
        out = [[n, int(counts[image][n]), 0] for n in nonzero]
        if out[-1][0] != last:
            out.append([last, int(counts[image][last]), 0])
        out[-1][2] = 1
        return out

    def result(image, k):
        return {"sample": k, "rejected": 0, "logits": logits[image].tolist(), "cls": int(np.argmax(logits[image]))}

    # epoch 0: images 0-2, image 0's result left, images 1 and 2 finished act1, image 2's events cut short;
    # epoch 1 (the last): images 3-5, all
    epochs = [{"samples": [0, 3]}, {"samples": [3, 6]}]
    report = {"error": None, "epochs": [
        {"results": [result(0, 0)], "in_flight_at_reset": 2,
         "monitors": {"monitor_act1": events(0) + events(1) + events(2)[:1]}},
        {"results": [result(i, i - 3) for i in range(3, 6)], "in_flight_at_reset": None,
         "monitors": {"monitor_act1": events(3) + events(4) + events(5)}}]}
    return config, model, levels, ResetRun(epochs, report, Path("."), 0.0, 0.0)


def test_a_right_run_passes_and_the_interrupted_sample_is_dropped(case):
    config, model, levels, run = case
    assert judge(run, config, model, levels) == []


def test_a_wrong_count_is_named_by_epoch_image_layer_and_neuron(case):
    config, model, levels, run = case
    broken = copy.deepcopy(run)
    event = broken.report["epochs"][1]["monitors"]["monitor_act1"][0]
    event[1] += 1
    errors = judge(broken, config, model, levels)
    assert len(errors) == 1 and errors[0].startswith(f"epoch 1: image 3 layer act1: neurons [{event[0]}] counts ")


def test_a_stage_that_finished_fewer_images_than_left_is_an_error(case):
    config, model, levels, run = case
    broken = copy.deepcopy(run)
    broken.report["epochs"][0]["monitors"]["monitor_act1"] = []
    assert judge(broken, config, model, levels) == [
        "epoch 0: layer act1 finished 0 images, 1 results left before the reset"]
    broken = copy.deepcopy(run)
    del broken.report["epochs"][1]["monitors"]["monitor_act1"][-1]          # the last image's last event
    errors = judge(broken, config, model, levels)
    assert "epoch 1: layer act1: events after its last complete image" in errors
    assert "epoch 1: layer act1 finished 2 images, 3 results were sent" in errors


def test_wrong_logits_and_tags_are_named(case):
    config, model, levels, run = case
    broken = copy.deepcopy(run)
    broken.report["epochs"][1]["results"][1]["logits"][0] += 1
    broken.report["epochs"][1]["results"][2]["sample"] = 7
    errors = judge(broken, config, model, levels)
    assert any(e.startswith("epoch 1: image 4 logits ") for e in errors)
    assert "epoch 1: image 5 came out tagged sample 7, expected 2" in errors
