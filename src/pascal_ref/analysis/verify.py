"""Run every path of a model on data and check the equivalences.

Paths: float QCFS ANN, float SNN, integer QCFS ANN, integer SNN.  Per layer
it counts the neurons whose SNN spike count differs from the ANN level:
integer mismatches must be 0 (anything else is a bug), float mismatches are
reported together with the largest distance of those neurons' ANN
pre-activation ``(z/lam)*L + phi`` from a rounding boundary (tiny distances
mean float accumulation order; a mismatch far from a boundary was caused
upstream).

Engines (``engines="fast"``, the default):

* the integer paths run on the fast engines of :mod:`pascal_ref.fast` over
  the whole data set: the integer ANN is :func:`~pascal_ref.fast.count_engine`
  (the closed form ``clip(floor((S + v0) / theta), 0, L)`` of the integer
  ANN's own equations), the integer SNN is
  :func:`~pascal_ref.fast.timestep_engine` (``engine="timestep"``: every
  stage step of every PASC-IF neuron) or the count engine
  (``engine="count"``); with the timestep engine the count engine is the
  other engine checked against it on every sample;
* the readable engines of :mod:`pascal_ref.golden` stay the reference: on
  the first ``reference_samples`` samples the readable counterpart of every
  fast engine used runs too (:func:`~pascal_ref.golden.quantize.integer_ann`
  for the count engine, whose closed form is the integer ANN's;
  ``simulate(model, engine="timestep")`` for the timestep engine) and, with
  ``engine="count"``, the fast timestep engine as the other engine; every
  level, count and logit must equal the fast engines' (``report["reference"]``);
* the float paths have no fast engine that yields per-neuron levels in
  float64, so they run on the readable engines over the whole data set;
  with ``engine="count"`` the float SNN's count engine takes the float
  ANN's synapse products where its input to a synapse is bit for bit the
  ANN's (``SharedProducts``: the same floats give the same product, so
  its counts are those it computes alone).

``engines="reference"`` runs the readable engines alone over the whole data
set (the behaviour before the fast engines, kept for benchmarks and as a
fallback).  Either way the integer verdict needs zero mismatches.

Before the first batch, :func:`check_run_size` refuses a run whose working
memory per batch would exceed a bound (a layer of ``10**9`` neurons, a
padding of a million pixels, ``L = 10**7``), naming the figure it would need.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from pascal_ref.errors import PascalError, ResourceLimitError, printable
from pascal_ref.golden.ann import float_ann
from pascal_ref.golden.quantize import IntegerNetwork, integer_ann, quantize
from pascal_ref.golden.ops import SharedProducts
from pascal_ref.golden.snn import ENGINES, SnnResult, latency, layer_timesteps, simulate, simulate_count
from pascal_ref.io.data import check_data
from pascal_ref.io.npzio import format_bytes
from pascal_ref.ir.layers import MAX_LEVELS
from pascal_ref.ir.network import Network

__all__ = ["PATHS", "ENGINE_SETS", "REFERENCE_SAMPLES", "MAX_BATCH_BYTES", "MAX_LAYER_STEPS", "MAX_LEVELS",
           "Evaluation", "evaluate", "verify", "format_report", "default_input_bound", "check_network",
           "check_run_size", "batch_footprint", "check_arguments"]

PATHS = ("float_ann", "float_snn", "integer_ann", "integer_snn")
ENGINE_SETS = ("fast", "reference")

REFERENCE_SAMPLES = 4
"""Samples on which the readable engines re-run the integer paths (``reference_samples=``): a fixed cost
(about a second per sample of a CIFAR VGG-16), enough to catch an engine that is wrong for this network."""

MAX_BATCH_BYTES = 4 * 2 ** 30
"""Working memory one batch may need in the readable engines (4 GiB; ``max_batch_bytes=``)."""

MAX_LAYER_STEPS = 1 << 16
"""Most stage steps (``T1 + max(T1, T2) - 1 + T2``) of one layer the timestep engines run."""



def default_input_bound(network: Network, x: np.ndarray) -> float | None:
    """Analog networks quantize their input over ``[-max|x|, max|x|]`` of the data."""
    if network.input_levels is not None:
        return None
    bound = float(np.abs(x).max())
    return bound if bound > 0 else 1.0


# ------------------------------------------------------------ arguments and sizes


def _check_count(value, what: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise PascalError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_arguments(network, model=None, engine: str = "timestep", batch_size: int = 64) -> None:
    """Refuse arguments of the wrong type or value before any work (one clear error each)."""
    if not isinstance(network, Network):
        raise TypeError(f"expected a Network, got {type(network).__name__}")
    if model is not None:
        if not isinstance(model, IntegerNetwork):
            raise TypeError(f"model: expected the IntegerNetwork of the network (quantize(network)), got "
                            f"{type(model).__name__}")
        other = model.network
        if other is not network and ([l.name for l in other.neuron_layers] != [l.name for l in network.neuron_layers]
                                     or other.input_shape != network.input_shape
                                     or other.input_levels != network.input_levels):
            raise PascalError(f"model: the integer model of '{printable(other.name)}' does not belong to network "
                              f"'{printable(network.name)}' (other layers or input)")
    if engine not in ENGINES:
        raise PascalError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    _check_count(batch_size, "batch_size", 1)


def _neurons(shape) -> int:
    return math.prod(int(n) for n in shape)


def batch_footprint(network: Network, batch_size: int, engine: str = "timestep") -> list[dict]:
    """Estimated working memory of one batch in the readable engines, per neuron layer (bytes).

    float64/int64 throughout: ``engine="timestep"`` holds each layer's
    stage-1 currents (``T1`` steps, twice while they are stacked), its
    output trains (``T2`` steps), and per synapse the im2col matrix of a
    convolution (``B Ho Wo x C kh kw``) and the padded input; the count
    engine and the ANN hold a few arrays of the layer's size instead of the
    steps.  An estimate within a small factor, enough to refuse a run that
    cannot fit before it starts.
    """
    rows = []
    for layer in network.neuron_layers:
        neurons = _neurons(layer.output_shape)
        t1 = network.input_steps(layer)
        t2 = layer.levels or 0
        scratch = 0
        for synapse in layer.synapses:
            op = synapse.op
            if op.kind == "conv":
                out_ch, in_ch, kh, kw = op.weight.shape
                ho, wo = layer.output_shape[1:] if len(layer.output_shape) == 3 else (1, 1)
                c, h, w = synapse.op_input_shape
                ph, pw = op.padding
                scratch = max(scratch, ho * wo * in_ch * kh * kw + c * (h + 2 * ph) * (w + 2 * pw))
            else:
                scratch = max(scratch, _neurons(synapse.op_input_shape))
        per_sample = (2 * t1 + 2 * t2 + 2) * neurons if engine == "timestep" else 4 * neurons
        rows.append({"layer": layer.name, "neurons": neurons, "T1": t1, "T2": t2,
                     "steps": t1 + max(t1, t2) - 1 + t2 if t2 else t1,
                     "bytes": 8 * batch_size * (per_sample + scratch), "scratch_bytes": 8 * batch_size * scratch})
    return rows


def _brief(n: int) -> str:
    """An integer for a message: in full up to 15 digits, else as a power of ten."""
    text = str(n)
    return text if len(text) <= 15 else f"{text[0]}.{text[1:3]}e{len(text) - 1}"


def check_network(network: Network) -> Network:
    """Refuse a network no run can take: a layer without neurons or weights (zero width), an ``L`` or
    ``input_levels`` above :data:`MAX_LEVELS`.  Returns ``network``."""
    if network.input_levels is not None and network.input_levels > MAX_LEVELS:
        raise ResourceLimitError(f"network '{printable(network.name)}': input_levels={_brief(network.input_levels)} exceeds "
                                 f"the limit of {MAX_LEVELS} (the input would be a burst of that many steps)")
    for layer in network.neuron_layers:
        where = f"layer '{printable(layer.name)}'"
        if _neurons(layer.output_shape) == 0:
            raise PascalError(f"{where} has no neurons (output shape {layer.output_shape}): a zero-width layer")
        for synapse in layer.synapses:
            if _neurons(synapse.op_input_shape) == 0:
                raise PascalError(f"{where} has no inputs (input shape {synapse.op_input_shape}): a zero-width layer")
        if layer.levels is not None and layer.levels > MAX_LEVELS:
            raise ResourceLimitError(f"{where}: L={_brief(layer.levels)} exceeds the limit of {MAX_LEVELS} levels")
    return network


def check_run_size(network: Network, batch_size: int, engine: str = "timestep",
                   max_batch_bytes: int = MAX_BATCH_BYTES) -> None:
    """Refuse a run that cannot fit: :func:`check_network`, more than
    :data:`MAX_LAYER_STEPS` stage steps of a layer (timestep engine), or a
    batch needing more than ``max_batch_bytes`` (:func:`batch_footprint`)."""
    check_network(network)
    rows = batch_footprint(network, batch_size, engine)
    for row in rows:
        if engine == "timestep" and row["steps"] > MAX_LAYER_STEPS:
            raise ResourceLimitError(f"layer '{printable(row['layer'])}': {row['steps']} stage steps (T1={row['T1']}, "
                                     f"T2={row['T2']}) exceed the limit of {MAX_LAYER_STEPS} for the timestep "
                                     "engine; use the count engine or fewer levels")
    worst = max(rows, key=lambda row: row["bytes"])
    if worst["bytes"] > max_batch_bytes:
        one = worst["bytes"] // batch_size
        advice = (f"lower --batch-size (one sample needs {format_bytes(one)})" if one <= max_batch_bytes else
                  f"even one sample needs {format_bytes(one)}")
        raise ResourceLimitError(
            f"layer '{printable(worst['layer'])}': a batch of {batch_size} would need about "
            f"{format_bytes(worst['bytes'])} in the {engine} engine ({worst['neurons']} neurons, T1={worst['T1']}, "
            f"T2={worst['T2']}, scratch {format_bytes(worst['scratch_bytes'])}), more than the limit of "
            f"{format_bytes(max_batch_bytes)} (max_batch_bytes=): {advice}")


# ------------------------------------------------------------ evaluation


@dataclass
class Evaluation:
    """Per-sample logits/predictions of each path, per-layer statistics and the reference check."""

    logits: dict = field(default_factory=dict)
    integer_logits: dict = field(default_factory=dict)
    layers: dict = field(default_factory=dict)
    reference: dict = field(default_factory=dict)

    def predictions(self, path: str) -> np.ndarray:
        source = self.integer_logits.get(path, self.logits[path])
        return np.argmax(source, axis=1)


def _batches(n: int, size: int, progress: bool, label: str):
    starts = range(0, n, size)
    if progress and n > size:
        from tqdm import tqdm
        return tqdm(starts, total=len(starts), desc=label, unit="batch", leave=False)
    return starts


def _empty_stats(network: Network) -> dict:
    return {layer.name: {"layer": layer.name, "levels": layer.levels, "neurons": 0, "float_mismatches": 0,
                         "float_max_boundary_distance": 0.0, "integer_mismatches": 0,
                         "integer_engine_mismatches": 0, "integer_engine_neurons": 0, "reference_mismatches": 0,
                         "float_spikes": 0, "integer_spikes": 0}
            for layer in network.hidden_layers}


def _levels(result) -> dict:
    """Every layer's levels (ANN results) or spike counts (SNN results): equal when the paths agree."""
    return result.counts if hasattr(result, "counts") else result.levels


def _compare(expected, actual, names) -> tuple[dict, bool]:
    """Per-layer count mismatches of two results and whether their integer logits agree."""
    want, got = _levels(expected), _levels(actual)
    per_layer = {name: int((want[name] != got[name]).sum()) for name in names}
    return per_layer, bool(np.array_equal(expected.integer_logits, actual.integer_logits))


class _FastEngines:
    """The fast integer engines of one model; the count plan is laid out once and reused across batches
    and across calls (a sharded run calls :func:`evaluate` once per chunk with the same model)."""

    _recent: list = []   # [(model, engines)], most recent last; holds the models, so ids stay unique

    def __init__(self, model: IntegerNetwork):
        from pascal_ref.fast import count_engine, count_plan, timestep_engine
        self.model = model
        self.plan = count_plan(model)
        self._count, self._timestep = count_engine, timestep_engine

    @classmethod
    def of(cls, model: IntegerNetwork) -> "_FastEngines":
        for known, engines in cls._recent:
            if known is model:
                return engines
        engines = cls(model)
        cls._recent = (cls._recent + [(model, engines)])[-2:]
        return engines

    def count(self, xb):
        return self._count(self.plan, xb)

    def timestep(self, xb):
        return self._timestep(self.model, xb)


def _one_blas_thread():
    """A context in which BLAS runs on one thread (threadpoolctl, a dependency of scikit-learn; a no-op
    without it).  The reference runs on a few samples: matrix products with a handful of rows, which
    two BLAS threads spinning against each other on a loaded machine slow down several times.  Only
    integer paths run inside it, exact whatever the thread count (every product below 2**53)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:   # pragma: no cover - scikit-learn brings it
        import contextlib
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


def _reference_check(model: IntegerNetwork, xb, ia, is_, engine: str, fast: _FastEngines, names) -> dict:
    """The readable counterpart of every fast engine used (and, for the count engine, the fast timestep
    engine as the other engine) on ``xb``, against the fast results."""
    with _one_blas_thread():
        checks = [("integer_ann", integer_ann(model, xb), ia)]
        if engine == "timestep":
            checks.append(("simulate timestep", simulate(model, xb, engine="timestep"), is_))
        else:   # the count engine is the integer ANN's closed form: integer_ann is its readable counterpart
            checks.append(("fast timestep_engine", fast.timestep(xb), ia))
    per_layer = {name: 0 for name in names}
    identical = True
    for _label, expected, actual in checks:
        counts, logits = _compare(expected, actual, names)
        for name, wrong in counts.items():
            per_layer[name] += wrong
        identical &= logits
    return {"per_layer": per_layer, "logits_identical": identical, "engines": [label for label, _, _ in checks]}


def evaluate(network: Network, x: np.ndarray, model: IntegerNetwork | None = None, engine: str = "timestep",
             batch_size: int = 64, progress: bool = False, *, engines: str = "fast",
             reference_samples: int = REFERENCE_SAMPLES, max_batch_bytes: int = MAX_BATCH_BYTES) -> Evaluation:
    """Run the four paths on ``x`` in batches, gathering layer statistics (module docstring).

    ``engines``: ``"fast"`` (integer paths on :mod:`pascal_ref.fast`, the
    readable engines re-run on the first ``reference_samples`` samples) or
    ``"reference"`` (readable engines only).
    """
    check_arguments(network, model, engine, batch_size)
    if engines not in ENGINE_SETS:
        raise PascalError(f"engines must be one of {', '.join(ENGINE_SETS)}, got {engines!r}")
    reference_samples = _check_count(reference_samples, "reference_samples", 0)
    check_network(network)
    x, _ = check_data(network, x, None, "input")
    check_run_size(network, min(batch_size, len(x)), engine, max_batch_bytes)
    if model is None:
        model = quantize(network, input_bound=default_input_bound(network, x))
    other_engine = "count" if engine == "timestep" else "timestep"
    fast = _FastEngines.of(model) if engines == "fast" else None
    names = [layer.name for layer in network.hidden_layers]
    stats = _empty_stats(network)
    parts = {path: [] for path in PATHS}
    int_parts = {"integer_ann": [], "integer_snn": []}
    reference = {"engines": [], "samples": 0, "mismatched_neurons": 0, "logits_identical": True,
                 "other_engine_samples": 0}
    pending_reference = reference_samples if fast is not None else 0
    for start in _batches(len(x), batch_size, progress, f"verify {printable(network.name)}"):
        xb = x[start:start + batch_size]
        if fast is not None and engine == "count":
            # The float SNN's count engine multiplies the same weights by c*theta where the ANN does by
            # q*theta: wherever those are the same floats, the ANN's product is taken (SharedProducts).
            shared = SharedProducts()
            fa = float_ann(network, xb, shared=shared)
            fs = simulate_count(network, xb, shared=shared)
        else:
            fa = float_ann(network, xb)
            fs = simulate(network, xb, engine=engine)
        if fast is None:
            ia = integer_ann(model, xb)
            is_ = simulate(model, xb, engine=engine)
            other = simulate(model, xb, engine=other_engine)
        else:
            ia = fast.count(xb)
            is_ = fast.timestep(xb) if engine == "timestep" else ia
            other = ia if engine == "timestep" else None
        if pending_reference:
            k = min(pending_reference, len(xb))
            sub = _reference_check(model, xb[:k], _head(ia, k), _head(is_, k), engine, fast, names)
            pending_reference -= k
            reference["samples"] += k
            reference["engines"] = sub["engines"]
            reference["logits_identical"] &= sub["logits_identical"]
            for name, wrong in sub["per_layer"].items():
                stats[name]["reference_mismatches"] += wrong
                reference["mismatched_neurons"] += wrong
            if other is None:   # count engine: the timestep engine ran on this sample only
                reference["other_engine_samples"] += k
        for name, row in stats.items():
            row["neurons"] += fa.levels[name].size
            wrong = fa.levels[name] != fs.counts[name]
            int_ann, int_snn = _levels(ia)[name], is_.counts[name]
            row["float_mismatches"] += int(wrong.sum())
            if wrong.any():
                pre = fa.preactivations[name][wrong]
                distance = float(np.max(np.abs(pre - np.rint(pre))))
                row["float_max_boundary_distance"] = max(row["float_max_boundary_distance"], distance)
            row["integer_mismatches"] += int((int_ann != int_snn).sum())
            if other is not None:
                row["integer_engine_mismatches"] += int((other.counts[name] != int_snn).sum())
                row["integer_engine_neurons"] += int_snn.size
            row["float_spikes"] += int(fs.counts[name].sum())
            row["integer_spikes"] += int(int_snn.sum())
        if other is not None and not np.array_equal(other.integer_logits, is_.integer_logits):
            reference["logits_identical"] = False   # a bug of an engine: the verdict fails, no traceback
        for path, res in zip(PATHS, (fa, fs, ia, is_)):
            parts[path].append(res.logits)
        int_parts["integer_ann"].append(ia.integer_logits)
        int_parts["integer_snn"].append(is_.integer_logits)
    result = Evaluation()
    result.logits = {path: np.concatenate(v) for path, v in parts.items()}
    result.integer_logits = {path: np.concatenate(v) for path, v in int_parts.items()}
    result.layers = stats
    result.reference = reference
    return result


def _head(result, k: int) -> SnnResult:
    """The first ``k`` samples of an engine result (counts and logits)."""
    return SnnResult(logits=result.logits[:k], counts={name: c[:k] for name, c in _levels(result).items()},
                     integer_logits=result.integer_logits[:k])


# ------------------------------------------------------------ the report


def verify(network: Network, x, y=None, model: IntegerNetwork | None = None, engine: str = "timestep",
           batch_size: int = 64, progress: bool = False, evaluation: Evaluation | None = None, *,
           engines: str = "fast", reference_samples: int = REFERENCE_SAMPLES) -> dict:
    """The verification report as a JSON-ready dict; ``report['ok']`` is
    True when the integer SNN equals the integer ANN everywhere and the fast
    engines equal the readable reference on its sample.

    ``x`` and ``y`` are checked against the network
    (:func:`pascal_ref.io.data.check_data`: layout, count-coding range,
    labels ``(N,)`` integers in ``0..classes-1``).
    """
    check_arguments(network, model, engine, batch_size)
    check_network(network)
    x, y = check_data(network, x, y, "verify")
    if model is None:
        model = quantize(network, input_bound=default_input_bound(network, x))
    ev = evaluation or evaluate(network, x, model, engine, batch_size, progress, engines=engines,
                                reference_samples=reference_samples)
    if len(ev.logits["float_ann"]) != len(x):
        raise PascalError(f"verify: the evaluation holds {len(ev.logits['float_ann'])} samples, the data {len(x)}")
    preds = {path: ev.predictions(path) for path in PATHS}
    int_mismatches = sum(row["integer_mismatches"] + row["integer_engine_mismatches"] for row in ev.layers.values())
    logits_equal = bool(np.array_equal(ev.integer_logits["integer_ann"], ev.integer_logits["integer_snn"]))
    reference = dict(ev.reference) if ev.reference else {"engines": [], "samples": 0, "mismatched_neurons": 0,
                                                         "logits_identical": True, "other_engine_samples": 0}
    reference_ok = reference["mismatched_neurons"] == 0 and reference["logits_identical"]
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
        "reference": reference,
        "quantization": {
            "prediction_agreement_float_vs_integer_ann": float(np.mean(preds["float_ann"] == preds["integer_ann"])),
            "max_abs_logit_difference_float_vs_integer_ann": float(np.max(np.abs(ev.logits["float_ann"] - ev.logits["integer_ann"]))),
        },
        "timesteps": {"per_layer": layer_timesteps(network), "latency": latency(network)},
    }
    if y is not None:
        report["accuracy"] = {path: float(np.mean(preds[path] == y)) for path in PATHS}
        report["quantization"]["accuracy_cost_points"] = 100 * (report["accuracy"]["float_ann"] - report["accuracy"]["integer_snn"])
    report["ok"] = int_mismatches == 0 and logits_equal and reference_ok
    return report


def format_report(report: dict) -> str:
    """A terminal table of a :func:`verify` report (names from the file made :func:`printable`)."""
    lines = [f"model {printable(report['model'])}: {report['samples']} samples, {report['engine']} engine, "
             f"integer model {report['integer_model']['weight_bits']}-bit weights"]
    if "accuracy" in report:
        lines.append("")
        lines.append(f"  {'path':<14}{'accuracy':>10}")
        for path, acc in report["accuracy"].items():
            lines.append(f"  {path:<14}{100 * acc:>9.2f}%")
    lines.append("")
    names = {row["layer"]: printable(row["layer"]) for row in report["layers"]}
    width = max([20] + [len(name) + 2 for name in names.values()])
    header = f"  {'layer':<{width}}{'L':>3}{'neurons':>10}{'float mism.':>12}{'max dist':>10}{'int mism.':>10}{'int engines':>12}{'steps':>7}"
    lines.append(header)
    steps = {row["layer"]: row for row in report["timesteps"]["per_layer"]}
    for row in report["layers"]:
        lines.append(f"  {names[row['layer']]:<{width}}{row['levels']:>3}{row['neurons']:>10}{row['float_mismatches']:>12}"
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
    reference = report.get("reference") or {}
    reference_ok = reference.get("mismatched_neurons", 0) == 0 and reference.get("logits_identical", True)
    integer_ok = i["mismatched_neurons"] == 0 and i["logits_identical"]
    if report["ok"]:
        verdict = "OK (integer path exact)"
    elif integer_ok and not reference_ok:
        verdict = (f"FAIL: the fast engines differ from the readable reference on {reference.get('samples', 0)} "
                   f"samples ({reference.get('mismatched_neurons', 0)} neurons)")
    else:
        verdict = "FAIL: integer SNN differs from integer ANN"
    lines.append(f"  verdict: {verdict}")
    return "\n".join(lines)
