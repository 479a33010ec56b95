"""Bench of the PASC-IF neuron unit: thousands of runs per simulation, every cycle traced.

The unit's Verilog (:class:`pascal_hdl.gateware.neuron.PascIfNeuron`) sits in a
:class:`~pascal_cosim.harness.NeuronHarness`, which starts the cases of a ring
(back to back or after idle gaps) and writes every port of every cycle into a
trace ring; Python wakes once per half ring (thousands of cycles). The trace
comes back as columns (:func:`neuron_trace`); the per-step comparison with
``pascal_ref.golden.neuron.pasc_if(..., trace=True)`` is the test's.
"""
from __future__ import annotations

import numpy as np

from pascal_cosim.bench import Bench, Channel, assemble, simulate
from pascal_cosim.harness import NeuronHarness
from pascal_cosim.payload import PayloadLayout

__all__ = ["TRACE_COLUMNS", "neuron_bench", "neuron_design", "neuron_trace"]

TRACE_COLUMNS = ("case", "start", "stage", "step", "excitatory", "inhibitory", "spike", "v", "c", "count", "ready")


def neuron_design(params: dict, top: str = "pasc_if_neuron", **options):
    """``(harness, {file: Verilog})`` of a PascIfNeuron with ``params`` (its keyword arguments)."""
    from pascal_hdl.flow.generate import component_verilog
    from pascal_hdl.gateware.neuron import PascIfNeuron

    unit = PascIfNeuron(**params)
    harness = NeuronHarness(unit, top, **options)
    return harness, {f"{top}.v": component_verilog(unit, top)}


def neuron_bench(harness: NeuronHarness, cases: dict, instance: str = "n") -> Bench:
    """A bench running ``cases`` (arrays ``t_in, t_out, theta, v0, currents (n, max_t_in), gap``) in order."""
    layout = PayloadLayout.from_amaranth(harness.case_layout)
    n = len(cases["t_in"])
    words = [layout.pack({"t_in": cases["t_in"][k], "t_out": cases["t_out"][k], "theta": cases["theta"][k],
                          "v0": cases["v0"][k], "currents": cases["currents"][k], "gap": cases["gap"][k]})
             for k in range(n)]
    run_cycles = sum(int(g) + 2 * (int(a) + int(b)) for g, a, b in zip(cases["gap"], cases["t_in"], cases["t_out"]))
    trace = Channel("trace", "raw", "neuron", PayloadLayout.from_amaranth(harness.trace_layout))
    return Bench(instance, harness, f"{harness.module}_harness", words, [trace], samples=n,
                 cycle_limit=run_cycles + 64, noun="case")


def neuron_trace(result) -> dict[str, np.ndarray]:
    """The trace columns (``TRACE_COLUMNS``) of a neuron bench's result."""
    return {name: result.captured[f"trace.{name}"] for name in TRACE_COLUMNS}


def run_neuron(params: dict, cases: dict, simulator: str, run_name: str, root=None):
    """Build (or reuse) the neuron design and run ``cases``; returns ``(trace columns, BenchResult, RunResult)``."""
    harness, verilog = neuron_design(params)
    bench = neuron_bench(harness, cases)
    design = assemble("neuron", verilog, [bench], opt_fast="-O0")   # ~100k cycles: the build dominates
    results, run = simulate(design, [bench], simulator, run_name, root)
    result = results[bench.instance]
    return neuron_trace(result), result, run
