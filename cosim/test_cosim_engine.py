"""Co-simulation of the layer engine's Verilog against the golden model.

Each configuration (random integer weights, thresholds, ``v0``/bias, ``T1``,
``T2``, lanes) is one build per simulator.  Many samples stream through one
simulation, at several input densities (silent inputs are not sent), with
random idle cycles on the input stream and random back-pressure on the
output stream.  The reference is the contract itself: per neuron,
``pasc_if`` fed the per-step currents ``I[t] = W @ [c > t]`` of the input
bursts over ``T1`` steps (not the engine's one-step shortcut); its output
train and count must equal the burst of the count the engine sends, every
neuron of every sample.  The readout's logits ``W @ c + b`` and class
(first maximum) must be equal too.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from cosim_runner import BUILD_ROOT, simulate, write_sources
from streams import decode_outputs, pack, stim_bytes

from pascal_hdl.flow.generate import component_verilog
from pascal_hdl.config import LayerConfig
from pascal_hdl.gateware.engine import LayerEngine, event_layout, result_layout
from pascal_hdl.model.contract import layer_contract
from pascal_hdl.model.engine import sample_events

pytestmark = pytest.mark.cosim

DENSITIES = (0.0, 0.05, 0.3, 0.7, 1.0)

# name: (in_features, out_features, t_in, t_out (None: readout), lanes, weight_bits, seed)
CONFIGS = {
    "t4to2_l4": (20, 13, 4, 2, 4, 6, 1),      # unequal T1 > T2, padded last group
    "l1": (16, 8, 1, 1, 8, 8, 2),            # L = 1 everywhere, one group
    "t2to8_l2": (9, 5, 2, 8, 2, 5, 3),       # unequal T1 < T2, three groups
    "t3to3_l1lane": (7, 6, 3, 3, 1, 4, 4),   # one lane: a group per neuron
    "readout": (24, 10, 4, None, 3, 8, 5),   # readout, padded last group
}


def make_config(name: str) -> LayerConfig:
    in_f, out_f, t_in, t_out, lanes, bits, seed = CONFIGS[name]
    rng = np.random.default_rng(seed)
    wmax = (1 << (bits - 1)) - 1
    weight = rng.integers(-wmax, wmax + 1, (out_f, in_f))
    weight[rng.random(weight.shape) < 0.2] = 0
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


def golden(config: LayerConfig, counts: np.ndarray):
    """Contract reference for one sample: (output counts, output trains (out, T2)) or (logits, class)."""
    ref = layer_contract(config, counts)
    if config.is_readout:
        return ref.logits[0], int(ref.cls[0])
    return ref.counts[0], ref.trains[0]


def engine_source(name: str):
    config = make_config(name)
    top = f"engine_{name}"
    text = component_verilog(LayerEngine(config), top)
    return config, top, write_sources(BUILD_ROOT / "src" / top, {f"{top}.v": text})


@pytest.mark.parametrize("idle, ready_prob", [(0.0, 1.0), (0.5, 0.4)], ids=["full-rate", "idle-backpressure"])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_engine_matches_golden(simulator, name, idle, ready_prob, request):
    config, top, sources = engine_source(name)
    rng = np.random.default_rng([CONFIGS[name][-1], int(idle * 10)])
    samples = random_samples(config, 12, rng)
    in_layout = event_layout(config.in_features, config.t_in)
    words, gaps = [], []
    for counts in samples:
        for event in sample_events(counts):
            words.append(pack(in_layout, event))
            gaps.append(int(rng.geometric(1 - idle)) - 1 if idle else 0)
    if config.is_readout:
        out_layout = result_layout(config.out_features, config.logit_width)
        end_bit = -1
    else:
        out_layout = event_layout(config.out_features, config.t_out)
        end_bit = out_layout["last"].offset
    settings = {"in_prefix": "i", "out_prefix": "o", "ready_prob": ready_prob, "seed": int(rng.integers(1 << 30)),
                "end_bit": end_bit, "samples": len(samples),
                "limit": 50 * len(words) * config.groups * config.t_in + 200 * len(samples) * config.out_features}
    run_dir, times = simulate(simulator, top, sources, top, "stream_tb", request.node.name,
                              inputs={"stim.npz": stim_bytes(words, gaps, settings)})
    record = np.load(run_dir / "record.npz")
    beats = decode_outputs(record, out_layout)
    errors = []
    neurons_checked = 0
    count_values = set()
    if config.is_readout:
        assert len(beats) == len(samples)
        for s, (counts, beat) in enumerate(zip(samples, beats)):
            logits, cls = golden(config, counts)
            if beat["logits"] != logits.tolist() or beat["cls"] != cls:
                errors.append(f"sample {s}: logits {beat['logits']} class {beat['cls']}, want {logits.tolist()} class {cls}")
            neurons_checked += config.out_features
    else:
        s, got = 0, np.zeros(config.out_features, dtype=np.int64)
        last_index = -1
        for beat in beats:
            if beat["index"] <= last_index:
                errors.append(f"sample {s}: output index {beat['index']} after {last_index}")
            last_index = beat["index"]
            got[beat["index"]] = beat["count"]
            if beat["last"]:
                if beat["index"] != config.out_features - 1:
                    errors.append(f"sample {s}: last flag on neuron {beat['index']}")
                want_counts, want_trains = golden(config, samples[s])
                trains = (got[:, None] > np.arange(config.t_out)[None, :]).astype(np.int64)  # burst of the count
                bad = np.flatnonzero((got != want_counts) | np.any(trains != want_trains, axis=1))
                if len(bad):
                    errors.append(f"sample {s}: neurons {bad.tolist()} counts {got[bad].tolist()} want {want_counts[bad].tolist()}")
                count_values.update(want_counts.tolist())
                neurons_checked += config.out_features
                s, got, last_index = s + 1, np.zeros(config.out_features, dtype=np.int64), -1
        assert s == len(samples), f"{s} samples ended, {len(samples)} sent"
    summary = dict(simulator=simulator, config=name, samples=len(samples), neurons_checked=neurons_checked,
                   input_events=len(words), cycles=int(record["cycles"]), mismatches=len(errors), **times)
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"\nengine cosim {summary}")
    assert not errors, f"{len(errors)} of {len(samples)} samples differ:\n" + "\n".join(errors[:10])
    if not config.is_readout and config.t_out > 1:
        # The stimulus reaches silent, saturated and intermediate neurons.
        assert {0, config.t_out} <= count_values and len(count_values) > 2, count_values
