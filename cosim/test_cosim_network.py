"""Co-simulation of the whole network core on the bundled digits MLP.

The build folder is written by the product's own generator
(:func:`pascal_hdl.flow.generate.generate_from_network`, the code behind
``pascal-ref hdl``), from ``pascal_ref/models/digits_mlp.npz`` quantized as
the golden model's ``verify`` command does.  Digits test images (count coded,
levels 0..16) stream through one simulation; per image the hidden layers'
counts (read on the ``monitor_*`` ports), the integer logits and the class
must equal the integer golden model (``pascal_ref.golden.quantize.integer_ann``), and
the cycle counter in the result must equal the design's cycle model
(``pascal_hdl.gateware.core.expected_cycles``) when the source and sink never stall.

Results: ``cosim_cycles.json`` in the build folder (cycles per image,
measured and ideal = synaptic events / lanes), and the wall times per
simulator in ``sim_build/bench/`` for the benchmark line printed at the end
of the session.
"""
from __future__ import annotations

import json
import time

import numpy as np
import pytest
from cosim_runner import BUILD_ROOT, simulate
from reference_models import mnist_like_images, mnist_shape_network
from streams import decode_outputs, pack, stim_bytes, unpack

from pascal_hdl.flow.generate import core_config_from_network, generate_from_network
from pascal_hdl.gateware.core import core_result_layout
from pascal_hdl.gateware.engine import event_layout
from pascal_hdl.model.core import expected_cycles
from pascal_hdl.model.engine import sample_events
from pascal_ref.golden.quantize import integer_ann
from pascal_ref.io.bundled import bundled_path
from pascal_ref.io.data import load_digits_split
from pascal_ref.io.fileformat import load

pytestmark = pytest.mark.cosim

IMAGES = 200
MODEL = "digits-mlp"
MNIST_LANES = 16
MNIST_IMAGES = 6


@pytest.fixture(scope="module")
def digits_build():
    """``(build folder, CoreConfig, integer model, test levels)`` of the bundled digits MLP."""
    path = bundled_path(MODEL)
    network = load(path)
    folder = BUILD_ROOT / "src" / "digits_mlp"
    with open(path, "rb") as handle:
        manifest = generate_from_network(network, folder, model_bytes=handle.read())
    config, model = core_config_from_network(network)
    _, _, x_test, _ = load_digits_split()
    levels = model.encode_input(x_test)
    return folder, manifest, config, model, levels


@pytest.fixture(scope="module")
def mnist_build():
    """The 784-128-10 model (random weights, L=4, count-coded input) with 16 lanes."""
    network = mnist_shape_network()
    folder = BUILD_ROOT / "src" / "mnist_shape_mlp"
    manifest = generate_from_network(network, folder, lanes=MNIST_LANES)
    config, model = core_config_from_network(network, lanes=MNIST_LANES)
    levels = model.encode_input(mnist_like_images(MNIST_IMAGES))
    return folder, manifest, config, model, levels


def write_cycles(folder, stats, simulator):
    (folder / "cosim_cycles.json").write_text(json.dumps(
        {key: stats[key] for key in ("images", "mean_cycles_per_image", "max_cycles_per_image", "min_cycles_per_image",
                                     "mean_ideal_cycles", "measured_over_ideal", "worst_case_cycles")}
        | {"checked_by": "cosim/test_cosim_network.py", "simulator": simulator}, indent=2, sort_keys=True) + "\n")


def run_core(simulator, request, digits_build, count, idle, ready_prob, seed):
    folder, manifest, config, model, all_levels = digits_build
    levels = all_levels[:count]
    rng = np.random.default_rng(seed)
    in_layout = event_layout(config.input_features, config.input_levels)
    words, gaps = [], []
    for sample in levels:
        for event in sample_events(sample):
            words.append(pack(in_layout, event))
            gaps.append(int(rng.geometric(1 - idle)) - 1 if idle else 0)
    hidden = [layer.name for layer in config.hidden]
    worst = manifest["expected_cycles"]["worst_case"]
    settings = {"in_prefix": "i", "out_prefix": "o", "ready_prob": ready_prob, "seed": int(rng.integers(1 << 30)),
                "end_bit": -1, "samples": count, "monitors": [f"monitor_{name}" for name in hidden],
                "limit": int(count * (worst + 16) * (1 + 4 * idle) / ready_prob)}
    top = manifest["top"]
    sources = [folder / name for name in manifest["verilog"]]
    start = time.monotonic()
    run_dir, times = simulate(simulator, top, sources, top, "stream_tb", request.node.name,
                              inputs={"stim.npz": stim_bytes(words, gaps, settings)})
    wall = time.monotonic() - start
    record = np.load(run_dir / "record.npz")
    results = decode_outputs(record, core_result_layout(config))
    assert len(results) == count

    golden = integer_ann(model, x_int=levels)
    want_logits = np.asarray(golden.integer_logits)
    errors = []
    for s, result in enumerate(results):
        if result["logits"] != want_logits[s].tolist():
            errors.append(f"image {s}: logits {result['logits']} want {want_logits[s].tolist()}")
        if result["cls"] != int(np.argmax(want_logits[s])):
            errors.append(f"image {s}: class {result['cls']} want {int(np.argmax(want_logits[s]))}")
        if result["rejected"]:
            errors.append(f"image {s}: an input event was rejected")
    # Per-layer counts from the monitors: events in index order, `last` ends a sample.
    layers_checked = 0
    for number, name in enumerate(hidden):
        layer = config.hidden[number]
        layout = event_layout(layer.out_features, layer.t_out)
        beats = [unpack(layout, int(w)) for m, w, _ in record["monitor"].tolist() if m == number]
        s, counts = 0, np.zeros(layer.out_features, dtype=np.int64)
        want = np.asarray(golden.levels[model.layers[number].name])
        for beat in beats:
            counts[beat["index"]] = beat["count"]
            if beat["last"]:
                if s < count and not np.array_equal(counts, want[s]):
                    bad = np.flatnonzero(counts != want[s])
                    errors.append(f"image {s} layer {name}: neurons {bad.tolist()} counts {counts[bad].tolist()} "
                                  f"want {want[s][bad].tolist()}")
                s, counts = s + 1, np.zeros(layer.out_features, dtype=np.int64)
        if s != count:
            errors.append(f"layer {name}: {s} samples on the monitor, {count} sent")
        layers_checked += 1
    cycles = np.array([r["cycles"] for r in results], dtype=np.int64)
    ideal = config.ideal_cycles(levels)
    stats = {"simulator": simulator, "images": count, "mismatches": len(errors), "layers_checked": layers_checked,
             "idle": idle, "ready_prob": ready_prob,
             "mean_cycles_per_image": float(cycles.mean()), "max_cycles_per_image": int(cycles.max()),
             "min_cycles_per_image": int(cycles.min()), "mean_ideal_cycles": float(ideal.mean()),
             "measured_over_ideal": float(cycles.sum() / max(1, ideal.sum())),
             "worst_case_cycles": worst, "simulated_cycles": int(record["cycles"]),
             "wall_s": wall, **times,
             "accuracy_vs_labels": None}
    return run_dir, stats, errors, cycles, levels


def test_network_matches_integer_model(simulator, request, digits_build):
    folder, manifest, config, model, _ = digits_build
    run_dir, stats, errors, cycles, levels = run_core(simulator, request, digits_build, IMAGES, 0.0, 1.0, seed=11)
    want_cycles = expected_cycles(config, levels)
    bad = np.flatnonzero(cycles != want_cycles)
    if len(bad):
        errors.append(f"cycles differ from expected_cycles on {len(bad)} images, first {int(bad[0])}: "
                      f"{int(cycles[bad[0]])} != {int(want_cycles[bad[0]])}")
    _, _, _, y_test = load_digits_split()
    predictions = np.argmax(integer_ann(model, x_int=levels).integer_logits, axis=1)
    stats["accuracy_vs_labels"] = float(np.mean(predictions == y_test[:IMAGES]))
    stats["cycles_equal_model"] = not len(bad)
    (run_dir / "summary.json").write_text(json.dumps(stats, indent=2))
    write_cycles(folder, stats, simulator)
    bench = BUILD_ROOT / "bench"
    bench.mkdir(exist_ok=True)
    (bench / f"network-{simulator}.json").write_text(json.dumps(stats))
    print(f"\nnetwork cosim {simulator}: {IMAGES} images, {len(errors)} mismatches, "
          f"{stats['mean_cycles_per_image']:.1f} cycles/image (ideal {stats['mean_ideal_cycles']:.1f}, "
          f"ratio {stats['measured_over_ideal']:.3f}), build {stats['build_s']:.1f} s, run {stats['run_s']:.1f} s")
    assert not errors, f"{len(errors)} mismatches:\n" + "\n".join(errors[:10])


def test_mnist_shape_core(simulator, request, mnist_build):
    """784-128-10, 16 lanes, MNIST-like random images: data and cycles equal the models."""
    folder, manifest, config, model, levels = mnist_build
    run_dir, stats, errors, cycles, _ = run_core(simulator, request, mnist_build, MNIST_IMAGES, 0.0, 1.0, seed=14)
    bad = np.flatnonzero(cycles != expected_cycles(config, levels))
    if len(bad):
        errors.append(f"cycles differ from expected_cycles on images {bad.tolist()}")
    stats["lit_input_fraction"] = float(np.mean(levels > 0))
    (run_dir / "summary.json").write_text(json.dumps(stats, indent=2))
    write_cycles(folder, stats, simulator)
    print(f"\n784-128-10 cosim {simulator}: {MNIST_IMAGES} images, {len(errors)} mismatches, "
          f"{stats['mean_cycles_per_image']:.1f} cycles/image (ideal {stats['mean_ideal_cycles']:.1f}, "
          f"ratio {stats['measured_over_ideal']:.3f}), build {stats['build_s']:.1f} s, run {stats['run_s']:.1f} s")
    assert not errors, f"{len(errors)} mismatches:\n" + "\n".join(errors[:10])


def test_network_with_stalls(simulator, request, digits_build):
    """Random idle cycles on the input and back-pressure on the result: same data."""
    run_dir, stats, errors, _, _ = run_core(simulator, request, digits_build, 40, 0.3, 0.3, seed=12)
    (run_dir / "summary.json").write_text(json.dumps(stats, indent=2))
    print(f"\nnetwork cosim with stalls {simulator}: 40 images, {len(errors)} mismatches")
    assert not errors, f"{len(errors)} mismatches:\n" + "\n".join(errors[:10])


@pytest.mark.slow
def test_network_all_test_images(simulator, request, digits_build):
    """Every digits test image (540)."""
    count = len(digits_build[4])
    run_dir, stats, errors, cycles, levels = run_core(simulator, request, digits_build, count, 0.0, 1.0, seed=13)
    bad = np.flatnonzero(cycles != expected_cycles(digits_build[2], levels))
    (run_dir / "summary.json").write_text(json.dumps(stats, indent=2))
    print(f"\nnetwork cosim {simulator}: {count} images, {len(errors)} mismatches, {len(bad)} cycle differences")
    assert not errors and not len(bad), "\n".join(errors[:10])
