"""Co-simulation of the whole network core on the bundled digits MLP (and a 784-128-10 core).

The build folder is written by the product's own generator
(:func:`pascal_hdl.flow.generate.generate_from_network`, the code behind
``pascal-ref hdl``), from ``digits-mlp`` quantized as the golden model's
``verify`` command does; the simulated memories are its ``.hex`` files. All
540 digits test images (count coded, levels 0..16) stream through one
simulation per simulator; per image the hidden layer's counts (on its
``monitor_*`` port), the integer logits and the class must equal the integer
golden model (``pascal_ref.golden.quantize.integer_ann``), in order, and the
cycle counter in each result must equal the cycle model
(``pascal_hdl.model.core.expected_cycles``) when source and sink never stall.

A design with one weight changed in its ``.hex`` must fail with a message
naming the image and the layer.

Results: ``cosim_cycles.json`` in the build folder (cycles per image,
measured and ideal = synaptic events / lanes, read by ``pascal-ref synth``),
and per simulator ``sim_build/bench/network-<sim>.json`` for the benchmark
line printed at the end of the session.
"""
from __future__ import annotations

import json
import re
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from jobboard import CosimJob

from pascal_cosim.core import cosim_network, cycle_stats, write_cosim_cycles
from pascal_hdl.flow.generate import (
    core_config_from_network,
    generate_from_network,
    read_hex,
)
from pascal_hdl.model.core import expected_cycles
from pascal_ref.testing import mnist_like_images, mnist_shape_network
from pascal_ref.io.bundled import bundled_path
from pascal_ref.io.data import load_digits_split
from pascal_ref.io.fileformat import load

pytestmark = pytest.mark.cosim

MODEL = "digits-mlp"
STALL_IMAGES = 40
BROKEN_IMAGES = 12
MNIST_LANES = 16
MNIST_IMAGES = 6


@dataclass
class Case:
    """A generated core and the images it is fed."""

    folder: Path
    manifest: dict
    config: object
    model: object
    levels: np.ndarray
    labels: np.ndarray | None = None


_lock = threading.Lock()
_cases: dict[tuple, Case] = {}
_cycles: dict[tuple, np.ndarray] = {}


def digits_case(root: Path) -> Case:
    """The bundled digits MLP generated into ``<root>/src/digits_mlp`` and its 540 test images."""
    with _lock:
        key = ("digits", root)
        if key not in _cases:
            path = bundled_path(MODEL)
            network = load(path)
            folder = root / "src" / "digits_mlp"
            manifest = generate_from_network(network, folder, model_bytes=Path(path).read_bytes())
            config, model = core_config_from_network(network)
            _, _, x_test, y_test = load_digits_split()
            _cases[key] = Case(folder, manifest, config, model, model.encode_input(x_test), np.asarray(y_test))
        return _cases[key]


def mnist_case(root: Path) -> Case:
    """784-128-10 (random weights, L=4, count-coded input) with 16 lanes, MNIST-like images."""
    with _lock:
        key = ("mnist", root)
        if key not in _cases:
            network = mnist_shape_network()
            folder = root / "src" / "mnist_shape_mlp"
            manifest = generate_from_network(network, folder, lanes=MNIST_LANES)
            config, model = core_config_from_network(network, lanes=MNIST_LANES)
            levels = model.encode_input(mnist_like_images(MNIST_IMAGES))
            _cases[key] = Case(folder, manifest, config, model, levels)
        return _cases[key]


def model_cycles(case: Case, count: int | None = None) -> np.ndarray:
    """``expected_cycles`` of the first ``count`` images (the Python cycle model: ~20 ms per image)."""
    levels = case.levels if count is None else case.levels[:count]
    key = (str(case.folder), len(levels))
    if key not in _cycles:
        _cycles[key] = expected_cycles(case.config, levels)
    return _cycles[key]


def flip_weight(case: Case, folder: Path) -> dict:
    """A copy of the build folder with one hidden-layer weight changed in its ``.hex``.

    The weight (neuron ``n``, input ``j``) is the one whose change alters the
    golden counts of the most of the first images; returns what was changed
    and the images whose hidden counts it changes (by the layer's integer model).
    """
    if folder.exists():
        shutil.rmtree(folder)
    shutil.copytree(case.folder, folder)
    layer = case.config.hidden[0]
    levels = case.levels[:BROKEN_IMAGES]
    top = (1 << (layer.weight_width - 1)) - 1
    best = None
    for j in np.argsort(-(levels > 0).sum(axis=0))[:4]:
        for n in range(layer.lanes):
            weight = layer.weight.copy()
            weight[n, j] = -top if weight[n, j] > 0 else top
            total = levels @ weight.T
            counts = np.clip((total + layer.v0) // layer.theta, 0, layer.t_out)
            changed = np.flatnonzero(np.any(counts != layer.forward(levels), axis=1))
            if best is None or len(changed) > len(best[3]):
                best = (int(n), int(j), int(weight[n, j]), changed)
    n, j, value, changed = best
    path = folder / f"{layer.name}.weights.hex"
    words = read_hex(path)
    group, lane = divmod(n, layer.lanes)
    address, width = j * layer.groups + group, layer.weight_width
    mask = ((1 << width) - 1) << (lane * width)
    words[address] = (words[address] & ~mask) | ((value & ((1 << width) - 1)) << (lane * width))
    digits = max(1, -(-(layer.lanes * width) // 4))
    path.write_text("".join(f"{w:0{digits}x}\n" for w in words))
    return {"layer": layer.name, "neuron": n, "input": j, "value": value, "images": changed.tolist()}


# -- jobs (see conftest.JobBoard): every simulation of this module, submitted at the first test


def _ideal(simulator, root):
    case = digits_case(root)
    return cosim_network(case.folder, case.config, case.model, case.levels, simulator,
                         run_name=f"network-all-{simulator}", root=root, seed=11)


def _stalls(simulator, root, count):
    case = digits_case(root)
    return cosim_network(case.folder, case.config, case.model, case.levels[:count], simulator,
                         run_name=f"network-stalls-{count}-{simulator}", root=root, idle=0.3, ready_probability=0.3,
                         seed=12)


def _mnist(simulator, root):
    case = mnist_case(root)
    return cosim_network(case.folder, case.config, case.model, case.levels, simulator,
                         run_name=f"mnist-shape-{simulator}", root=root, seed=14, opt_fast="-O0")  # 25k cycles


def _broken(simulator, root):
    case = digits_case(root)
    with _lock:
        folder = root / "src" / "digits_mlp_broken"
        flipped = flip_weight(case, folder)
    result = cosim_network(folder, case.config, case.model, case.levels[:BROKEN_IMAGES], simulator,
                           run_name=f"network-broken-{simulator}", root=root, seed=15)
    return result, flipped


_JOBS = {
    # test name: (job name, rough seconds on icarus / verilator, function(simulator, root))
    "test_network_matches_integer_model": ("all", (100, 20), _ideal),
    "test_network_with_stalls": ("stalls", (25, 8), lambda sim, root: _stalls(sim, root, STALL_IMAGES)),
    "test_network_all_images_with_stalls": ("stalls-all", (330, 30), lambda sim, root: _stalls(sim, root, 540)),
    "test_mnist_shape_core": ("mnist", (15, 15), _mnist),
    "test_broken_weight_fails": ("broken", (5, 5), _broken),
}


def cosim_job(item, root) -> CosimJob | None:
    name = item.originalname
    if name not in _JOBS:
        return None
    simulator = item.callspec.params["simulator"]
    job, costs, function = _JOBS[name]
    return CosimJob(("network", job, simulator), costs[simulator == "verilator"],
                    lambda: function(simulator, root))


# -- tests


def write_cycles(case: Case, result, simulator: str) -> dict:
    stats = cycle_stats(case.config, case.levels, result.cycles, case.manifest["expected_cycles"]["worst_case"])
    write_cosim_cycles(case.folder, stats, simulator, "cosim/test_cosim_network.py")
    return stats


def check_cycles(errors: list, result, want) -> int:
    """Appends a message if the result's cycle counters differ from the cycle model; returns the count."""
    bad = np.flatnonzero(result.cycles != want) if len(result.cycles) == len(want) else np.arange(len(want))
    if len(bad):
        first = int(bad[0])
        got = int(result.cycles[first]) if first < len(result.cycles) else None
        errors.append(f"cycles differ from expected_cycles on {len(bad)} images, first image {first}: "
                      f"{got} != {int(want[first])}")
    return len(bad)


def test_network_matches_integer_model(simulator, request, cosim_jobs, build_root):
    result = cosim_jobs.result(request.node)
    case = digits_case(build_root)
    errors = list(result.errors)
    check_cycles(errors, result, model_cycles(case))
    stats = write_cycles(case, result, simulator)
    accuracy = float(np.mean(result.classes == case.labels)) if len(result.classes) == len(case.labels) else None
    summary = {"simulator": simulator, "images": result.samples, "mismatches": len(errors),
               "mismatches_per_layer": result.mismatches_per_layer, "simulated_cycles": result.simulated_cycles,
               "sim_wall_s": result.sim_wall_s, "build_s": result.build_s, "run_s": result.run_s,
               "accuracy_vs_labels": accuracy, "wakes": result.result.counters["wakes"],
               "python_s": result.result.counters["python_us"] / 1e6, **stats}
    (result.run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    bench = build_root / "bench"
    bench.mkdir(exist_ok=True)
    (bench / f"network-{simulator}.json").write_text(json.dumps(summary))
    print(f"\nnetwork cosim {simulator}: {result.samples} images, {len(errors)} mismatches, "
          f"{stats['mean_cycles_per_image']:.1f} cycles/image (ideal {stats['mean_ideal_cycles']:.1f}, ratio "
          f"{stats['measured_over_ideal']:.3f}), {result.cycles_per_s:,.0f} cycles/s, build {result.build_s:.1f} s, "
          f"run {result.run_s:.1f} s")
    assert result.samples == len(case.levels) == 540
    assert not errors, f"{len(errors)} mismatches:\n" + "\n".join(errors[:10])
    assert result.mismatches_per_layer == {layer.name: 0 for layer in case.config.layers}


def test_mnist_shape_core(simulator, request, cosim_jobs, build_root):
    """784-128-10, 16 lanes, MNIST-like random images: data and cycles equal the models."""
    result = cosim_jobs.result(request.node)
    case = mnist_case(build_root)
    errors = list(result.errors)
    check_cycles(errors, result, model_cycles(case))
    stats = write_cycles(case, result, simulator)
    print(f"\n784-128-10 cosim {simulator}: {MNIST_IMAGES} images, {len(errors)} mismatches, "
          f"{stats['mean_cycles_per_image']:.1f} cycles/image (ideal {stats['mean_ideal_cycles']:.1f}), "
          f"lit inputs {float(np.mean(case.levels > 0)):.2f}, build {result.build_s:.1f} s, run {result.run_s:.1f} s")
    assert not errors, f"{len(errors)} mismatches:\n" + "\n".join(errors[:10])


def test_network_with_stalls(simulator, request, cosim_jobs):
    """Random idle cycles on the input and back-pressure on the result: same data, in order."""
    result = cosim_jobs.result(request.node)
    stalled = result.result.counters["cycle"]
    print(f"\nnetwork cosim with stalls {simulator}: {result.samples} images, {len(result.errors)} mismatches, "
          f"{stalled} cycles")
    assert result.samples == STALL_IMAGES
    assert not result.errors, f"{len(result.errors)} mismatches:\n" + "\n".join(result.errors[:10])


@pytest.mark.slow
def test_network_all_images_with_stalls(simulator, request, cosim_jobs):
    """Every digits test image (540) with idle and back-pressure."""
    result = cosim_jobs.result(request.node)
    assert result.samples == 540
    assert not result.errors, f"{len(result.errors)} mismatches:\n" + "\n".join(result.errors[:10])


def test_broken_weight_fails(simulator, request, cosim_jobs):
    """One weight changed in the generated ``.hex``: the co-simulation names the image and the layer."""
    result, flipped = cosim_jobs.result(request.node)
    layer, first = flipped["layer"], flipped["images"][0]
    message = "\n".join(result.errors)
    print(f"\nbroken design ({simulator}): {flipped}\n" + "\n".join(result.errors[:4]))
    assert not result.ok
    assert re.search(rf"^image {first} layer {layer}: neurons \[{flipped['neuron']}\] counts \[\d+\] want \[\d+\]$",
                     message, re.MULTILINE), message
    assert f"memory image: layer '{layer}': {layer}.weights.hex differs" in message
    assert result.mismatches_per_layer[layer] == len(flipped["images"])


@pytest.mark.parametrize("lanes", [None, 4], ids=["lanes-default", "lanes-4"])
def test_memory_images_equal_the_verilog(lanes, build_root):
    """The simulated memories are the ``.hex`` images; they must equal the Verilog's initial values
    (64-bit words are written in hex, 32-bit words in decimal), and a changed word is named."""
    from pascal_cosim.core import core_dut

    network = load(bundled_path(MODEL))
    folder = build_root / "src" / f"digits_mlp_images_{lanes}"
    generate_from_network(network, folder, lanes=lanes)
    assert core_dut(folder).memory_differences == []
    path = folder / "fc2.params.hex"
    words = read_hex(path)
    words[0] ^= 1
    path.write_text("".join(f"{w:x}\n" for w in words))
    differences = core_dut(folder).memory_differences
    assert len(differences) == 1 and differences[0].startswith("layer 'fc2': fc2.params.hex differs from the "
                                                               "Verilog's initial params at 1 word(s), first [0]")
