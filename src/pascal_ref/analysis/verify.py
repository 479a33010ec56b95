"""Run every path of a model on data and check the equivalences.

Paths: float QCFS ANN, float SNN, integer QCFS ANN, integer SNN (timestep
engine, checked against the count engine).  Per layer it counts the neurons
whose SNN spike count differs from the ANN level: integer mismatches must be
0 (anything else is a bug), float mismatches are reported together with the
largest distance of those neurons' ANN pre-activation ``(z/lam)*L + phi``
from a rounding boundary (tiny distances mean float accumulation order; a
mismatch far from a boundary was caused upstream).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pascal_ref.golden.ann import float_ann
from pascal_ref.golden.quantize import IntegerNetwork, integer_ann, quantize
from pascal_ref.golden.snn import latency, layer_timesteps, simulate
from pascal_ref.ir.network import Network

__all__ = ["PATHS", "Evaluation", "evaluate", "verify", "format_report", "default_input_bound"]

PATHS = ("float_ann", "float_snn", "integer_ann", "integer_snn")


def default_input_bound(network: Network, x: np.ndarray) -> float | None:
    """Analog networks quantize their input over ``[-max|x|, max|x|]`` of the data."""
    if network.input_levels is not None:
        return None
    bound = float(np.abs(x).max())
    return bound if bound > 0 else 1.0


@dataclass
class Evaluation:
    """Per-sample logits/predictions of each path and per-layer statistics."""

    logits: dict = field(default_factory=dict)
    integer_logits: dict = field(default_factory=dict)
    layers: dict = field(default_factory=dict)

    def predictions(self, path: str) -> np.ndarray:
        source = self.integer_logits.get(path, self.logits[path])
        return np.argmax(source, axis=1)


def _batches(n: int, size: int, progress: bool, label: str):
    starts = range(0, n, size)
    if progress and n > size:
        from tqdm import tqdm
        return tqdm(starts, total=len(starts), desc=label, unit="batch", leave=False)
    return starts


def evaluate(network: Network, x: np.ndarray, model: IntegerNetwork | None = None, engine: str = "timestep",
             batch_size: int = 64, progress: bool = False) -> Evaluation:
    """Run the four paths on ``x`` in batches, gathering layer statistics."""
    if model is None:
        model = quantize(network, input_bound=default_input_bound(network, x))
    result = Evaluation()
    stats = {layer.name: {"layer": layer.name, "levels": layer.levels, "neurons": 0, "float_mismatches": 0,
                          "float_max_boundary_distance": 0.0, "integer_mismatches": 0,
                          "integer_engine_mismatches": 0, "float_spikes": 0, "integer_spikes": 0}
             for layer in network.hidden_layers}
    parts = {path: [] for path in PATHS}
    int_parts = {"integer_ann": [], "integer_snn": []}
    for start in _batches(len(x), batch_size, progress, f"verify {network.name}"):
        xb = x[start:start + batch_size]
        fa = float_ann(network, xb)
        fs = simulate(network, xb, engine=engine)
        ia = integer_ann(model, xb)
        is_ = simulate(model, xb, engine=engine)
        other = simulate(model, xb, engine="count" if engine == "timestep" else "timestep")
        for name, row in stats.items():
            row["neurons"] += fa.levels[name].size
            wrong = fa.levels[name] != fs.counts[name]
            row["float_mismatches"] += int(wrong.sum())
            if wrong.any():
                pre = fa.preactivations[name][wrong]
                distance = float(np.max(np.abs(pre - np.rint(pre))))
                row["float_max_boundary_distance"] = max(row["float_max_boundary_distance"], distance)
            row["integer_mismatches"] += int((ia.levels[name] != is_.counts[name]).sum())
            row["integer_engine_mismatches"] += int((other.counts[name] != is_.counts[name]).sum())
            row["float_spikes"] += int(fs.counts[name].sum())
            row["integer_spikes"] += int(is_.counts[name].sum())
        if not np.array_equal(other.integer_logits, is_.integer_logits):
            raise AssertionError("integer SNN engines disagree on the logits")  # a bug, never expected
        for path, res in zip(PATHS, (fa, fs, ia, is_)):
            parts[path].append(res.logits)
        int_parts["integer_ann"].append(ia.integer_logits)
        int_parts["integer_snn"].append(is_.integer_logits)
    result.logits = {path: np.concatenate(v) for path, v in parts.items()}
    result.integer_logits = {path: np.concatenate(v) for path, v in int_parts.items()}
    result.layers = stats
    return result


def verify(network: Network, x, y=None, model: IntegerNetwork | None = None, engine: str = "timestep",
           batch_size: int = 64, progress: bool = False, evaluation: Evaluation | None = None) -> dict:
    """The verification report as a JSON-ready dict; ``report['ok']`` is
    True when the integer SNN equals the integer ANN everywhere."""
    x = np.asarray(x, dtype=np.float64)
    if model is None:
        model = quantize(network, input_bound=default_input_bound(network, x))
    ev = evaluation or evaluate(network, x, model, engine, batch_size, progress)
    preds = {path: ev.predictions(path) for path in PATHS}
    int_mismatches = sum(row["integer_mismatches"] + row["integer_engine_mismatches"] for row in ev.layers.values())
    logits_equal = bool(np.array_equal(ev.integer_logits["integer_ann"], ev.integer_logits["integer_snn"]))
    report = {
        "model": network.name,
        "samples": int(len(x)),
        "engine": engine,
        "integer_model": {"weight_bits": model.weight_bits, "per_channel": model.per_channel,
                          "input_range": list(model.input_range),
                          "membrane_bits": {l.name: l.membrane_bits for l in model.layers}},
        "layers": list(ev.layers.values()),
        "float": {
            "mismatched_neurons": sum(r["float_mismatches"] for r in ev.layers.values()),
            "max_abs_logit_difference": float(np.max(np.abs(ev.logits["float_ann"] - ev.logits["float_snn"]))),
            "prediction_agreement": float(np.mean(preds["float_ann"] == preds["float_snn"])),
        },
        "integer": {
            "mismatched_neurons": int(int_mismatches),
            "logits_identical": logits_equal,
            "prediction_agreement": float(np.mean(preds["integer_ann"] == preds["integer_snn"])),
        },
        "quantization": {
            "prediction_agreement_float_vs_integer_ann": float(np.mean(preds["float_ann"] == preds["integer_ann"])),
            "max_abs_logit_difference_float_vs_integer_ann": float(np.max(np.abs(ev.logits["float_ann"] - ev.logits["integer_ann"]))),
        },
        "timesteps": {"per_layer": layer_timesteps(network), "latency": latency(network)},
    }
    if y is not None:
        y = np.asarray(y)
        report["accuracy"] = {path: float(np.mean(preds[path] == y)) for path in PATHS}
        report["quantization"]["accuracy_cost_points"] = 100 * (report["accuracy"]["float_ann"] - report["accuracy"]["integer_snn"])
    report["ok"] = int_mismatches == 0 and logits_equal
    return report


def format_report(report: dict) -> str:
    """A terminal table of a :func:`verify` report."""
    lines = [f"model {report['model']}: {report['samples']} samples, {report['engine']} engine, "
             f"integer model {report['integer_model']['weight_bits']}-bit weights"]
    if "accuracy" in report:
        lines.append("")
        lines.append(f"  {'path':<14}{'accuracy':>10}")
        for path, acc in report["accuracy"].items():
            lines.append(f"  {path:<14}{100 * acc:>9.2f}%")
    lines.append("")
    width = max([20] + [len(row["layer"]) + 2 for row in report["layers"]])
    header = f"  {'layer':<{width}}{'L':>3}{'neurons':>10}{'float mism.':>12}{'max dist':>10}{'int mism.':>10}{'int engines':>12}{'steps':>7}"
    lines.append(header)
    steps = {row["layer"]: row for row in report["timesteps"]["per_layer"]}
    for row in report["layers"]:
        lines.append(f"  {row['layer']:<{width}}{row['levels']:>3}{row['neurons']:>10}{row['float_mismatches']:>12}"
                     f"{row['float_max_boundary_distance']:>10.2g}{row['integer_mismatches']:>10}"
                     f"{row['integer_engine_mismatches']:>12}{steps[row['layer']]['steps']:>7}")
    f, i, q = report["float"], report["integer"], report["quantization"]
    lines.append("")
    lines.append(f"  float SNN vs ANN: {f['mismatched_neurons']} mismatched neurons, max |logit diff| "
                 f"{f['max_abs_logit_difference']:.3g}, predictions agree {100 * f['prediction_agreement']:.2f}%")
    lines.append(f"  integer SNN vs ANN: {i['mismatched_neurons']} mismatched neurons, logits identical: {i['logits_identical']}")
    cost = f", accuracy cost {q['accuracy_cost_points']:.2f} points" if "accuracy_cost_points" in q else ""
    lines.append(f"  quantizer: float vs integer ANN predictions agree {100 * q['prediction_agreement_float_vs_integer_ann']:.2f}%{cost}")
    lines.append(f"  latency: {report['timesteps']['latency']} timesteps")
    lines.append(f"  verdict: {'OK (integer path exact)' if report['ok'] else 'FAIL: integer SNN differs from integer ANN'}")
    return "\n".join(lines)
