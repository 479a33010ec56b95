"""Host side of a co-simulation: benches (harness + stimulus + expectations), one design, one run.

A :class:`Bench` is one harness instance with what it is fed and what it
must produce: ring words (payload and idle gap), settings (samples,
back-pressure, seed, cycle limit) and :class:`Channel` s with their payload
layouts and expected transactions from the golden model. :func:`assemble`
puts the design under test, every distinct harness and a clock wrapper
instantiating every bench into one :class:`~pascal_cosim.runner.Design`;
:func:`simulate` runs all benches in one simulation and returns a
:class:`BenchResult` per bench, whose ``errors`` name the sample, the layer
and the neurons (and whose harness counters add stream-contract violations,
starvation and timeouts to them).
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pascal_cosim.harness import (
    CLOCK_PERIOD_NS,
    clock_wrapper,
    harness_verilog,
    ready_threshold,
)
from pascal_cosim.payload import PayloadLayout, words_to_hex
from pascal_cosim.runner import Design, RunResult, run

__all__ = ["Bench", "BenchResult", "Channel", "assemble", "random_gaps", "ring_words", "simulate"]


@dataclass
class Channel:
    """A captured channel: ``kind`` ``events`` / ``results`` (scoreboard) or ``raw`` (words kept)."""

    name: str
    kind: str
    layer: str
    layout: PayloadLayout
    samples: int = 0
    features: int | None = None
    expected: dict[str, np.ndarray] = field(default_factory=dict)

    def plan(self) -> dict:
        return {"name": self.name, "kind": self.kind, "layer": self.layer, "layout": self.layout.to_json(),
                "samples": self.samples, "features": self.features}


def ring_words(payloads, gaps, payload_width: int, gap_width: int) -> list[int]:
    """Stimulus ring words: ``payload | gap << payload_width`` (gaps clipped to the field)."""
    top = (1 << gap_width) - 1
    if gap_width == 0:
        return [int(p) for p in payloads]
    return [int(p) | (min(int(g), top) << payload_width) for p, g in zip(payloads, gaps)]


def random_gaps(count: int, idle: float, rng) -> np.ndarray:
    """Idle cycles before each beat: geometric, ``idle`` = probability of one more idle cycle (0: none)."""
    if idle <= 0:
        return np.zeros(count, dtype=np.int64)
    return rng.geometric(1 - idle, count).astype(np.int64) - 1


@dataclass
class Bench:
    """One harness instance in a simulation.

    ``harness`` is a :class:`~pascal_cosim.harness.StreamHarness` or
    :class:`~pascal_cosim.harness.NeuronHarness`; benches with the same
    ``module`` share its Verilog (same design, other stimulus and settings).
    """

    instance: str
    harness: object
    module: str
    words: list[int]
    channels: list[Channel]
    samples: int = 0
    ready_probability: float = 1.0
    seed: int = 1
    cycle_limit: int = 0
    noun: str = "sample"

    def settings(self) -> dict:
        """Values for the harness's setting ports."""
        if self.harness.describe(self.instance)["kind"] == "stream":
            return {"samples": self.samples, "ready_threshold": ready_threshold(self.ready_probability),
                    "seed": self.seed}
        return {}

    def plan(self) -> dict:
        return {"description": self.harness.describe(self.instance), "stimulus": f"{self.instance}.stim.hex",
                "expected": f"{self.instance}.expected.npz", "settings": self.settings(), "noun": self.noun,
                "cycle_limit": self.cycle_limit, "channels": [channel.plan() for channel in self.channels]}

    def files(self) -> dict[str, bytes]:
        description = self.harness.describe(self.instance)
        width = description["stim_payload_width"] + description["gap_width"]
        buffer = io.BytesIO()
        np.savez(buffer, **{f"{c.name}/{key}": np.asarray(value) for c in self.channels
                            for key, value in c.expected.items()})
        return {f"{self.instance}.stim.hex": words_to_hex(self.words, width).encode(),
                f"{self.instance}.expected.npz": buffer.getvalue()}


def assemble(name: str, dut_verilog: dict[str, str], benches: list[Bench],
             runtime_files: dict[str, bytes] | None = None, opt_fast: str = "-O1") -> Design:
    """One design: the design under test, each distinct harness module, the clock wrapper.

    ``opt_fast``: Verilator's C++ optimization of the model (``-O0`` for short runs: faster to build).
    """
    from pascal_hdl.flow.generate import verilog_ports

    texts: dict[str, str] = {}
    instances = []
    for bench in benches:
        if bench.module not in texts:
            texts[bench.module] = harness_verilog(bench.harness, bench.module, rings=["ring"])
        instances.append((bench.module, bench.instance, verilog_ports(texts[bench.module], bench.module)))
    verilog = dict(dut_verilog)
    verilog.update({f"{module}.v": text for module, text in texts.items()})
    verilog["cosim_top.v"] = clock_wrapper(instances)
    return Design(name, verilog, "cosim_top", dict(runtime_files or {}),
                  [bench.harness.describe(bench.instance) for bench in benches], opt_fast=opt_fast)


@dataclass
class BenchResult:
    """What one bench of a run produced and how it compared."""

    instance: str
    errors: list[str]
    error_count: int
    mismatches_per_layer: dict[str, int]
    counters: dict[str, int]
    captured: dict[str, np.ndarray]
    received: dict[str, int]

    @property
    def cycles(self) -> int:
        """Cycles simulated from reset to ``done``."""
        return self.counters["cycle"]

    @property
    def ok(self) -> bool:
        return self.error_count == 0


def _harness_errors(bench: Bench, counters: dict) -> list[str]:
    description = bench.harness.describe(bench.instance)
    errors = []
    if counters["timeout"]:
        errors.append(f"timeout: {bench.cycle_limit} cycles ran out, {counters['stim_fetched']} of "
                      f"{len(bench.words)} input beats sent")
    if counters["stim_starved"]:
        errors.append(f"stimulus ring ran dry for {counters['stim_starved']} cycles (driver late): "
                      "the input was not back to back")
    if description["kind"] == "stream":
        for role in ("input", "output"):
            stream = description[role]
            if counters[f"{stream}_violations"]:
                errors.append(f"stream {stream}: valid dropped or payload changed before the beat was accepted, "
                              f"at cycle {counters[f'{stream}_first_violation']} (the run stopped there)")
        stopped = counters["timeout"] or any(counters[f"{description[r]}_violations"] for r in ("input", "output"))
        if not stopped and counters["accepted"] != len(bench.words):
            errors.append(f"stream {description['input']}: {counters['accepted']} of {len(bench.words)} input beats "
                          "accepted")
    return errors


def simulate(design: Design, benches: list[Bench], simulator: str, run_name: str, root: Path | None = None
             ) -> tuple[dict[str, BenchResult], RunResult]:
    """Run every bench of ``design`` in one simulation; returns ``{instance: BenchResult}`` and the run."""
    files: dict[str, bytes] = {}
    for bench in benches:
        files.update(bench.files())
    plan = {"testcase": "harness_session", "clock_period_ns": CLOCK_PERIOD_NS,
            "benches": [bench.plan() for bench in benches]}
    result = run(design, simulator, plan, run_name, root, files)
    out = {}
    for bench in benches:
        entry = result.report["benches"][bench.instance]
        counters = entry["counters"]
        harness_errors = _harness_errors(bench, counters)
        with np.load(result.run_dir / f"{bench.instance}.capture.npz") as archive:
            captured = {key: archive[key] for key in archive.files}
        out[bench.instance] = BenchResult(bench.instance, harness_errors + entry["errors"],
                                          entry["error_count"] + len(harness_errors), entry["mismatches_per_layer"],
                                          counters, captured, entry["received"])
    return out, result
