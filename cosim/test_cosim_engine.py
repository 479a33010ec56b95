"""Co-simulation of the layer engine's Verilog against the contract.

Each configuration (random integer weights, thresholds, ``v0``/bias, ``T1``,
``T2``, lanes) is one engine; all of them, each at full rate and with random
idle cycles on the input and random back-pressure on the output, run side by
side as harness instances of ONE design and ONE simulation per simulator.
Many samples stream through each, at several input densities (silent inputs
are not sent). The reference is the contract itself
(:func:`pascal_hdl.model.contract.layer_contract`): per neuron, ``pasc_if`` fed
the per-step currents ``I[t] = W @ [c > t]`` of the input bursts over ``T1``
steps (not the engine's one-step shortcut); its output train must be the
burst of its count and the count must equal the engine's, every neuron of
every sample; the readout's logits ``W @ c + b`` and class (first maximum,
also on exact ties) must be equal too.

Two mutants run in the same simulation (:class:`pascal_hdl.formal.mutants.Mutation`:
one piece of the gateware changed): a readout that takes the last maximum
must fail with a message naming the sample and the layer, and a hidden
engine that moves on without waiting for ``ready`` must be stopped by the
harness's stream checker with a message naming the cycle.
"""
from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pytest
from jobboard import CosimJob

from pascal_cosim.bench import assemble, random_gaps, ring_words, simulate
from pascal_cosim.core import engine_bench, engine_dut, engine_harness
from pascal_cosim.payload import PayloadLayout
from pascal_hdl.config import LayerConfig
from pascal_hdl.flow.generate import verilog_ports
from pascal_hdl.formal.mutants import Mutation, load_mutant
from pascal_hdl.model.engine import sample_events

pytestmark = pytest.mark.cosim

DENSITIES = (0.0, 0.05, 0.3, 0.7, 1.0)
SAMPLES_PER_DENSITY = 12
MODES = {"full-rate": (0.0, 1.0), "idle-backpressure": (0.5, 0.4)}   # (idle, ready probability)

# name: (in_features, out_features, t_in, t_out (None: readout), lanes, weight_bits, seed)
CONFIGS = {
    "t4to2_l4": (20, 13, 4, 2, 4, 6, 1),      # unequal T1 > T2, padded last group
    "l1": (16, 8, 1, 1, 8, 8, 2),            # L = 1 everywhere, one group
    "t2to8_l2": (9, 5, 2, 8, 2, 5, 3),       # unequal T1 < T2, three groups
    "t3to3_l1lane": (7, 6, 3, 3, 1, 4, 4),   # one lane: a group per neuron
    "readout": (24, 10, 4, None, 3, 8, 5),   # readout, padded last group
    "ties": (12, 6, 3, None, 4, 6, 6),       # readout whose two best classes always tie
}
TIE_CLASSES = (1, 4)
ARGMAX_LAST = Mutation("argmax_last", "pascal_hdl.gateware.engine",
                       "with m.If((logit_index == 0) | (logit > best)):",
                       "with m.If((logit_index == 0) | (logit >= best)):",
                       "the readout's class is the last maximum instead of the first")
IGNORE_READY = Mutation("ignore_ready", "pascal_hdl.gateware.engine",
                        "with m.If(~wanted | self.o.ready):", "with m.If(1):",
                        "a hidden engine moves to the next neuron whether or not its event was taken")
MUTANTS = {  # bench instance: (mutation, configuration, mode)
    "ties_mutant_full": (ARGMAX_LAST, "ties", "full-rate"),
    "ignore_ready_idle": (IGNORE_READY, "t4to2_l4", "idle-backpressure"),
}


def make_config(name: str) -> LayerConfig:
    in_f, out_f, t_in, t_out, lanes, bits, seed = CONFIGS[name]
    rng = np.random.default_rng(seed)
    wmax = (1 << (bits - 1)) - 1
    weight = rng.integers(-wmax, wmax + 1, (out_f, in_f))
    weight[rng.random(weight.shape) < 0.2] = 0
    if name == "ties":
        # Two equal rows above every other and equal biases at the top: every sample ties.
        weight = rng.integers(-wmax, wmax // 2, (out_f, in_f))
        bias = rng.integers(-wmax, wmax, out_f)
        for k in TIE_CLASSES:
            weight[k], bias[k] = wmax, wmax
        return LayerConfig(name, weight, t_in, None, None, bias, lanes)
    if t_out is None:
        return LayerConfig(name, weight, t_in, None, None, rng.integers(-4 * wmax, 4 * wmax + 1, out_f), lanes)
    # Thresholds that put the counts across 0..T2 for inputs of medium density.
    spread = np.sqrt((weight.astype(float) ** 2).sum(axis=1) * 0.5) * t_in
    theta = np.maximum(1, np.rint(spread * rng.uniform(0.3, 1.2, out_f) / t_out)).astype(np.int64)
    theta[0] = 1
    v0 = np.rint(0.5 * theta).astype(np.int64) + rng.integers(-2, 3, out_f) * theta // 2
    return LayerConfig(name, weight, t_in, t_out, theta, v0, lanes)


def random_samples(config: LayerConfig, n_per_density: int, rng) -> np.ndarray:
    rows = []
    for density in DENSITIES:
        active = rng.random((n_per_density, config.in_features)) < density
        rows.append(np.where(active, rng.integers(1, config.t_in + 1, active.shape), 0))
    samples = np.concatenate(rows)
    return samples[rng.permutation(len(samples))]


HOSTILE = ("t4to2_l4", "readout")   # engines whose event ports can carry index == in_features and count T1 + 1


def hostile_events(config: LayerConfig, events: list[dict]) -> tuple[list[dict], dict]:
    """The events of one sample with events the engine must drop inserted before its last one: index ==
    ``in_features``, count ``T1 + 1``, and (after a valid event) a repeated index; their ``last`` is 0."""
    from pascal_hdl.gateware.engine import event_layout

    from amaranth import Shape

    layout = event_layout(config.in_features, config.t_in)
    widths = {name: Shape.cast(layout[name].shape).width for name in ("index", "count")}
    assert config.in_features < (1 << widths["index"]) and config.t_in + 1 < (1 << widths["count"]), widths
    bad = [{"index": config.in_features, "count": 1, "last": False},
           {"index": events[0]["index"], "count": config.t_in + 1, "last": False}]
    kinds = {"index_in_features": 1, "count_above_t1": 1, "repeated_index": 0}
    if len(events) >= 2:
        bad.append({"index": events[0]["index"], "count": 1, "last": False})
        kinds["repeated_index"] = 1
        return events[:1] + bad + events[1:], kinds
    return bad + events, kinds


def hostile_bench(harness, config: LayerConfig, samples, *, instance: str, idle: float, ready: float, rng):
    """The engine's bench with hostile events in every sample; expected: the contract of the clean
    samples (a dropped event has no effect)."""
    from pascal_hdl.gateware.engine import event_layout

    bench = engine_bench(harness, config, samples, instance=instance, idle=idle, ready_probability=ready,
                         seed=int(rng.integers(1 << 30)))
    layout = PayloadLayout.from_amaranth(event_layout(config.in_features, config.t_in))
    payloads, totals = [], {}
    for sample in samples:
        events, kinds = hostile_events(config, sample_events(sample))
        payloads.extend(layout.pack(event) for event in events)
        totals = {k: totals.get(k, 0) + v for k, v in kinds.items()}
    words = ring_words(payloads, random_gaps(len(payloads), idle, rng), harness.source.payload_width,
                       harness.gap_width)
    return dataclasses.replace(bench, words=words, cycle_limit=2 * bench.cycle_limit), totals


def instance_name(name: str, mode: str) -> str:
    return f"{name}_{mode.split('-')[0]}"


def engine_benches(workdir):
    """Every engine (and the mutant) with its benches, and the one design that holds them all."""
    verilog, files, benches, info = {}, {}, [], {}
    engines = [(name, make_config(name), None, list(MODES)) for name in CONFIGS]
    for instance, (mutation, name, mode) in MUTANTS.items():
        mutant = load_mutant(mutation, workdir)
        engines.append((instance.rsplit("_", 1)[0], make_config(name), mutant.LayerEngine, [mode]))
    for name, config, engine_class, modes in engines:
        top = f"engine_{name}"
        texts, images = engine_dut(config, top, engine_class=engine_class)
        verilog.update(texts)
        files.update(images)
        harness = engine_harness(config, top, verilog_ports(texts[f"{top}.v"], top))
        for mode in modes:
            idle, ready = MODES[mode]
            rng = np.random.default_rng([CONFIGS[config.name][-1], int(idle * 10)])
            samples = random_samples(config, SAMPLES_PER_DENSITY, rng)
            instance = instance_name(name, mode)
            benches.append(engine_bench(harness, config, samples, instance=instance, idle=idle,
                                        ready_probability=ready, seed=int(rng.integers(1 << 30))))
            info[instance] = (config, samples)
        if name in HOSTILE and engine_class is None:
            rng = np.random.default_rng([CONFIGS[config.name][-1], 99])
            samples = random_samples(config, SAMPLES_PER_DENSITY, rng)
            bench, totals = hostile_bench(harness, config, samples, instance=f"{name}_hostile", idle=0.5, ready=0.4,
                                          rng=rng)
            benches.append(bench)
            info[f"{name}_hostile"] = (config, samples, totals)
    # A few thousand cycles per engine: -O0 (the C++ build dominates, -O1 would double it).
    return assemble("engines", verilog, benches, files, opt_fast="-O0"), benches, info


_lock = threading.Lock()


def _run(simulator, root):
    with _lock:
        design, benches, info = engine_benches(root / "src" / "engine_mutants")
    results, run = simulate(design, benches, simulator, f"engines-{simulator}", root)
    return results, info, run


def cosim_job(item, root) -> CosimJob | None:
    if item.originalname not in ("test_engine_matches_golden", "test_argmax_tie_mutant_fails",
                                 "test_stream_checker_stops_the_mutant", "test_hostile_events_have_no_effect"):
        return None
    simulator = item.callspec.params["simulator"]
    return CosimJob(("engines", simulator), 30 if simulator == "icarus" else 12, lambda: _run(simulator, root))


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("name", list(CONFIGS))
def test_engine_matches_golden(simulator, name, mode, request, cosim_jobs):
    results, info, run = cosim_jobs.result(request.node)
    instance = instance_name(name, mode)
    result = results[instance]
    config, samples = info[instance]
    print(f"\nengine cosim {simulator} {instance}: {len(samples)} samples, {result.counters['accepted']} input events, "
          f"{result.cycles} cycles, {result.error_count} mismatches (simulation of {len(results)} engines: "
          f"build {run.build_s:.1f} s, run {run.run_s:.1f} s)")
    assert not result.errors, f"{result.error_count} mismatches:\n" + "\n".join(result.errors[:10])
    assert result.received == {"o": len(samples)}
    if config.is_readout:
        got = result.captured["o.cls"]
        if name == "ties":
            assert np.all(got == TIE_CLASSES[0])      # the first maximum, on every sample
    elif config.t_out > 1:
        # The stimulus reaches silent, saturated and intermediate neurons.
        values = set(np.unique(result.captured["o.counts"]).tolist())
        assert {0, config.t_out} <= values and len(values) > 2, values


def test_argmax_tie_mutant_fails(simulator, request, cosim_jobs):
    """The readout mutated to take the last maximum fails on the tied samples, naming sample and layer."""
    results, info, _ = cosim_jobs.result(request.node)
    result = results["ties_mutant_full"]
    _, samples = info["ties_mutant_full"]
    first, last = TIE_CLASSES
    print(f"\nargmax mutant ({simulator}): " + "\n".join(result.errors[:2]))
    assert result.error_count == len(samples)
    assert result.errors[0] == f"sample 0 layer ties: class {last} want {first}"


def test_stream_checker_stops_the_mutant(simulator, request, cosim_jobs):
    """A hidden engine that does not wait for ``ready`` breaks the stream contract under back-pressure:
    the harness's checker stops the run and the message names the stream and the cycle."""
    results, _, _ = cosim_jobs.result(request.node)
    result = results["ignore_ready_idle"]
    print(f"\nignore-ready mutant ({simulator}): " + "\n".join(result.errors[:2]))
    cycle = result.counters["o_first_violation"]
    assert result.counters["o_violations"] >= 1 and cycle > 0
    assert result.errors[0] == (f"stream o: valid dropped or payload changed before the beat was accepted, "
                                f"at cycle {cycle} (the run stopped there)")
    assert result.counters["i_violations"] == 0


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_events_have_no_effect(simulator, name, request, cosim_jobs):
    """Events the contract forbids (index == in_features, count T1 + 1, a repeated index), sent on the
    stream under idle and back-pressure among a sample's valid events, are dropped: every sample's
    outputs equal the contract of its valid events alone."""
    results, info, _ = cosim_jobs.result(request.node)
    result = results[f"{name}_hostile"]
    config, samples, totals = info[f"{name}_hostile"]
    print(f"\nhostile events ({simulator}) {name}: {totals} in {len(samples)} samples, {result.error_count} mismatches")
    assert totals["index_in_features"] == totals["count_above_t1"] == len(samples) and totals["repeated_index"] > 0
    assert not result.errors, f"{result.error_count} mismatches:\n" + "\n".join(result.errors[:10])
    assert result.received == {"o": len(samples)}
