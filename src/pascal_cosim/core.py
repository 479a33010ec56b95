"""Benches of the layer engine and the network core, and the whole network co-simulation.

* :func:`core_dut` reads a build folder written by ``pascal-ref hdl``
  (:func:`pascal_hdl.flow.generate.generate`): the core's Verilog with its
  weight and parameter memories loaded from the folder's ``.hex`` files.
* :func:`network_bench`: the core fed count-coded samples (events of
  :func:`pascal_hdl.model.engine.sample_events`, optional idle gaps and
  back-pressure), expected per hidden layer the counts of the integer golden
  model (on the ``monitor_*`` ports) and per sample its logits and class (and
  the cycles of :func:`pascal_hdl.model.core.expected_cycles` when the source
  and sink never stall).
* :func:`engine_dut`, :func:`engine_bench`: one :class:`LayerEngine`, expected
  per sample the contract (:func:`pascal_hdl.model.contract.layer_contract`).
* :func:`cosim_network`: everything for one model and one simulator, the
  function behind ``pascal-ref cosim``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pascal_cosim.bench import (
    Bench,
    BenchResult,
    Channel,
    assemble,
    random_gaps,
    ring_words,
    simulate,
)
from pascal_cosim.harness import StreamHarness
from pascal_cosim.payload import PayloadLayout, words_to_hex
from pascal_cosim.sources import MemoryImage, memories_from_hex

__all__ = [
    "CoreDut",
    "NetworkCosim",
    "core_dut",
    "core_harness",
    "cosim_network",
    "cycle_limit",
    "cycle_stats",
    "engine_bench",
    "engine_dut",
    "engine_harness",
    "input_words",
    "network_bench",
    "write_cosim_cycles",
]


@dataclass
class CoreDut:
    """A generated core ready for simulation."""

    top: str
    manifest: dict
    verilog: dict[str, str]
    runtime_files: dict[str, bytes]
    memory_differences: list[str]


def _images(top: str, layers, positions=None) -> list[MemoryImage]:
    images = []
    for index, layer in enumerate(layers):
        module = f"{top}.layer{index if positions is None else positions[layer]}_{layer}"
        images.append(MemoryImage(module, "weights", f"{layer}.weights.hex", layer))
        images.append(MemoryImage(module, "params", f"{layer}.params.hex", layer))
    return images


def core_dut(folder) -> CoreDut:
    """The core of a build folder (``manifest.json``, ``<top>.v``, ``.hex`` memory images)."""
    folder = Path(folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    top = manifest["top"]
    # Linear layer engines load their memories from the .hex files; conv, pooling and residual stages
    # keep the Verilog's inline initial values (the same words, checked by pascal_hdl's generator tests).
    layers = [layer["name"] for layer in manifest["layers"] if layer.get("kind", "hidden") in ("hidden", "readout")]
    positions = {layer["name"]: index for index, layer in enumerate(manifest["layers"])}
    images = _images(top, layers, positions)
    hex_files = {image.file: (folder / image.file).read_text() for image in images}
    text, differences = memories_from_hex((folder / manifest["verilog"][0]).read_text(), images, hex_files)
    return CoreDut(top, manifest, {f"{top}.v": text}, {k: v.encode() for k, v in hex_files.items()}, differences)


def core_harness(dut: CoreDut, config, **options) -> StreamHarness:
    """The stream harness of a core: input ``i``, result ``o``, every hidden layer's monitor."""
    return StreamHarness(dut.top, dut.manifest["ports"], monitors=[f"monitor_{layer.name}" for layer in config.hidden],
                         **options)


def input_words(levels, features: int, input_levels: int, minimum: int = 0) -> tuple[list[int], list[int]]:
    """Input event words of count-coded samples (or of the signed pixels ``minimum..input_levels`` of an
    analog input) and the index of each sample's first event."""
    from pascal_hdl.gateware.engine import event_layout
    from pascal_hdl.model.engine import sample_events

    layout = PayloadLayout.from_amaranth(event_layout(features, input_levels, minimum))
    words, firsts = [], []
    for sample in np.asarray(levels):
        firsts.append(len(words))
        words.extend(layout.pack(event) for event in sample_events(sample))
    return words, firsts


def cycle_limit(samples: int, worst_case: int, idle: float, ready_probability: float) -> int:
    """A cycle budget no correct run reaches (worst case per sample, stretched by stalls)."""
    return min((1 << 32) - 1, int(samples * (worst_case + 16) * (1 + 4 * idle) / ready_probability) + 1000)


def hidden_counts(config, golden, levels) -> list[np.ndarray]:
    """Expected counts on every ``monitor_*`` port: the golden model's levels where the stage is a golden
    neuron layer (:func:`golden_stage_levels`), the stage model (``CoreConfig.forward``) for pooling
    units; a stage model that disagrees with the golden model is an error before any simulation."""
    levels = np.asarray(levels)
    from pascal_hdl.model.chain import golden_stage_levels

    batch = len(levels)
    if config.is_linear:   # golden layer i is hidden layer i (as before conv cores)
        names = list(golden.levels)
        return [np.asarray(golden.levels[names[index]], dtype=np.int64) for index in range(len(config.hidden))]
    golden_levels = golden_stage_levels(config, golden, batch)
    hidden, _, _ = config.forward(levels.reshape(batch, -1))
    for layer, counts in zip(config.hidden, hidden):
        if layer.name in golden_levels and not np.array_equal(golden_levels[layer.name], counts):
            raise ValueError(f"stage '{layer.name}': the stage model's counts differ from the golden model's")
    return [golden_levels.get(layer.name, counts).astype(np.int64) for layer, counts in zip(config.hidden, hidden)]


def network_bench(harness: StreamHarness, config, golden, levels, *, instance: str = "h", idle: float = 0.0,
                  ready_probability: float = 1.0, seed: int = 1, expected_cycles=None, noun: str = "image") -> Bench:
    """A bench of the network core.

    ``golden`` is ``pascal_ref.golden.quantize.integer_ann(model, x_int=levels)``:
    its ``levels[<layer>]`` are the expected hidden counts, its ``integer_logits``
    the logits (class: first maximum). ``expected_cycles`` (per sample) is
    compared with the result's cycle counter when given (ideal source and sink only).
    """
    from pascal_hdl.gateware.core import SAMPLE_TAG_WIDTH, core_result_layout
    from pascal_hdl.gateware.engine import event_layout

    levels = np.asarray(levels)
    count = len(levels)
    levels = levels.reshape(count, -1)
    rng = np.random.default_rng(seed)
    payloads, _ = input_words(levels, config.input_features, config.input_levels, config.input_min)
    gaps = random_gaps(len(payloads), idle, rng)
    words = ring_words(payloads, gaps, harness.source.payload_width, harness.gap_width)
    logits = np.asarray(golden.integer_logits, dtype=np.int64)
    expected = {"logits": logits, "cls": np.argmax(logits, axis=1), "rejected": np.zeros(count, dtype=np.int64),
                "sample": np.arange(count, dtype=np.int64) % (1 << SAMPLE_TAG_WIDTH)}   # in order, tagged
    if expected_cycles is not None:
        expected["cycles"] = np.asarray(expected_cycles, dtype=np.int64)
    channels = []
    for layer, counts in zip(config.hidden, hidden_counts(config, golden, levels)):
        channels.append(Channel(f"monitor_{layer.name}", "events", layer.name,
                                PayloadLayout.from_amaranth(event_layout(layer.out_features, layer.t_out)), count,
                                layer.out_features, {"counts": counts}))
    readout = config.readout
    channels.append(Channel("o", "results", readout.name, PayloadLayout.from_amaranth(core_result_layout(config)),
                            count, readout.out_features, expected))
    return Bench(instance, harness, f"{harness.module}_harness", words, channels, samples=count,
                 ready_probability=ready_probability, seed=int(rng.integers(1, 1 << 31)),
                 cycle_limit=cycle_limit(count, config.worst_case_cycles(), idle, ready_probability), noun=noun)


# -- layer engine


def engine_dut(config, top: str, engine_class=None) -> tuple[dict[str, str], dict[str, bytes]]:
    """``({file: Verilog}, {file: memory image})`` of a :class:`LayerEngine` (or ``engine_class``,
    e.g. a mutant) as module ``top``; the memories are loaded from the images."""
    from pascal_hdl.flow.generate import component_verilog

    if engine_class is None:
        from pascal_hdl.gateware.engine import LayerEngine as engine_class
    text = component_verilog(engine_class(config), top)
    param_width = config.lanes * (config.logit_width if config.is_readout else config.v0_width + config.theta_width)
    files = {f"{top}.weights.hex": words_to_hex(config.weight_words(), config.lanes * config.weight_width),
             f"{top}.params.hex": words_to_hex(config.param_words(), param_width)}
    images = [MemoryImage(top, "weights", f"{top}.weights.hex", config.name),
              MemoryImage(top, "params", f"{top}.params.hex", config.name)]
    text, differences = memories_from_hex(text, images, files)
    if differences:  # pragma: no cover - the words come from the same config
        raise AssertionError("; ".join(differences))
    return {f"{top}.v": text}, {name: content.encode() for name, content in files.items()}


def engine_harness(config, top: str, ports) -> StreamHarness:
    from pascal_hdl.gateware.engine import event_layout

    end_bit = None if config.is_readout else event_layout(config.out_features, config.t_out)["last"].offset
    return StreamHarness(top, ports, end_bit=end_bit)


def engine_bench(harness: StreamHarness, config, samples, *, instance: str, idle: float = 0.0,
                 ready_probability: float = 1.0, seed: int = 1) -> Bench:
    """A bench of one layer engine; expected: the contract of every sample."""
    from pascal_hdl.gateware.engine import event_layout, result_layout
    from pascal_hdl.model.contract import layer_contract

    samples = np.asarray(samples)
    rng = np.random.default_rng(seed)
    payloads, _ = input_words(samples, config.in_features, config.t_in, config.t_min)
    gaps = random_gaps(len(payloads), idle, rng)
    words = ring_words(payloads, gaps, harness.source.payload_width, harness.gap_width)
    reference = layer_contract(config, samples)
    if config.is_readout:
        layout = PayloadLayout.from_amaranth(result_layout(config.out_features, config.logit_width))
        channel = Channel("o", "results", config.name, layout, len(samples), config.out_features,
                          {"logits": reference.logits, "cls": reference.cls})
    else:
        # The engine sends counts; the contract's trains must be their bursts.
        bursts = reference.counts[:, :, None] > np.arange(config.t_out)[None, None, :]
        if not np.array_equal(bursts.astype(np.int64), reference.trains):  # pragma: no cover - a contract bug
            raise AssertionError(f"layer {config.name}: contract trains are not bursts of their counts")
        layout = PayloadLayout.from_amaranth(event_layout(config.out_features, config.t_out))
        channel = Channel("o", "events", config.name, layout, len(samples), config.out_features,
                          {"counts": reference.counts})
    limit = 50 * len(words) * config.groups * config.t_in + 200 * len(samples) * config.out_features
    limit = int(limit * (1 + 4 * idle) / ready_probability) + 1000
    return Bench(instance, harness, f"{harness.module}_harness", words, [channel], samples=len(samples),
                 ready_probability=ready_probability, seed=int(rng.integers(1, 1 << 31)), cycle_limit=limit)


# -- the whole network, for the command line


@dataclass
class NetworkCosim:
    """The result of :func:`cosim_network` (also written as JSON by ``pascal-ref cosim``)."""

    simulator: str
    samples: int
    result: BenchResult
    errors: list[str]
    mismatches_per_layer: dict[str, int]
    logits: np.ndarray
    classes: np.ndarray
    cycles: np.ndarray
    model_cycles: np.ndarray | None
    simulated_cycles: int
    finished: np.ndarray            # the core's cycle counter when each result became valid
    build_s: float
    run_s: float
    sim_wall_s: float
    run_dir: Path

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def cycles_per_s(self) -> float:
        return self.simulated_cycles / max(self.sim_wall_s, 1e-9)

    @property
    def stream(self) -> dict:
        """Steady-state cycles per image and latency of the run (:func:`pascal_hdl.model.core.stream_figures`
        on the results' ``finished`` and ``cycles``)."""
        from pascal_hdl.model.core import stream_figures

        return stream_figures([{"finished": f, "cycles": c} for f, c in zip(self.finished, self.cycles)])


def cosim_network(folder, config, model, levels, simulator: str, *, run_name: str, root=None, idle: float = 0.0,
                  ready_probability: float = 1.0, seed: int = 1, expected_cycles=None,
                  opt_fast: str = "-O1") -> NetworkCosim:
    """Co-simulate the core of build folder ``folder`` on ``levels`` against the integer golden model.

    ``expected_cycles`` (per sample, ideal source and sink only) are compared in
    the scoreboard when given. ``opt_fast``: see :func:`pascal_cosim.bench.assemble`.
    """
    from pascal_ref.golden.quantize import integer_ann

    dut = core_dut(folder)
    harness = core_harness(dut, config)
    levels = np.asarray(levels)
    golden = integer_ann(model, x_int=levels.reshape((len(levels),) + tuple(model.network.input_shape)))
    bench = network_bench(harness, config, golden, levels, idle=idle, ready_probability=ready_probability, seed=seed,
                          expected_cycles=expected_cycles)
    design = assemble(dut.top, dut.verilog, [bench], dut.runtime_files, opt_fast=opt_fast)
    results, run = simulate(design, [bench], simulator, run_name, root)
    result = results[bench.instance]
    errors = [f"memory image: {d}" for d in dut.memory_differences] + result.errors
    errors_total = list(errors)
    if result.error_count > len(result.errors):
        errors_total.append(f"... {result.error_count - len(result.errors)} more")
    per_layer = dict(result.mismatches_per_layer)
    captured = result.captured
    count = len(levels)
    logits = captured.get("o.logits", np.zeros((0, config.classes), dtype=np.int64))
    return NetworkCosim(simulator, count, result, errors_total, per_layer, logits,
                        captured.get("o.cls", np.zeros(0, dtype=np.int64)),
                        captured.get("o.cycles", np.zeros(0, dtype=np.int64)),
                        None if expected_cycles is None else np.asarray(expected_cycles), result.cycles,
                        captured.get("o.finished", np.zeros(0, dtype=np.int64)),
                        run.build_s, run.run_s, run.report["wall_s"], run.run_dir)


def cycle_stats(config, levels, cycles, worst_case: int) -> dict:
    """Cycles per sample measured by a co-simulation, beside the ideal (synaptic events / lanes)."""
    cycles = np.asarray(cycles)
    levels = np.asarray(levels)
    ideal = config.ideal_cycles(levels.reshape(len(levels), -1)[:len(cycles)])
    return {"images": len(cycles), "mean_cycles_per_image": float(cycles.mean()),
            "max_cycles_per_image": int(cycles.max()), "min_cycles_per_image": int(cycles.min()),
            "mean_ideal_cycles": float(ideal.mean()), "measured_over_ideal": float(cycles.sum() / max(1, ideal.sum())),
            "worst_case_cycles": int(worst_case)}


def write_cosim_cycles(folder, stats: dict, simulator: str, checked_by: str) -> None:
    """``<folder>/cosim_cycles.json``: the measured cycles ``pascal-ref synth`` reports at Fmax."""
    Path(folder, "cosim_cycles.json").write_text(json.dumps(
        stats | {"checked_by": checked_by, "simulator": simulator}, indent=2, sort_keys=True) + "\n")
