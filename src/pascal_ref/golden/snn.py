"""The PASC-IF spiking network: timestep and count engines, float and integer.

``simulate(model, x, engine=...)`` runs a float :class:`Network` or an
:class:`IntegerNetwork` as a spiking network (``docs/semantics.md``):

* every neuron layer receives burst-coded trains from its sources; the
  input current at stage-1 step ``t`` is ``sum over synapses
  op(pre_ops(spike value * s_source[t]))`` for ``t < T_source`` and nothing
  after (stage 1 lasts ``T1 = max`` of the source train lengths: with a
  residual block both trains are fed step by step from step 0, the shorter
  one simply ends earlier);
* the bias is added once, into ``v0 = phi*theta + bias`` (float) or
  ``v0_int = round(phi*theta_int) + b_int`` (integer);
* max pooling acts on each step's spikes (bursts: the burst of the max
  count), average pooling is linear (a sum in the integer model);
* the readout accumulates its currents: ``logits = sum_t I[t] + bias``.
* input: count-coded networks send bursts of ``L_in`` steps worth
  ``1/L_in``; analog input arrives as one stage-1 step (``T1 = 1``) through
  a multiply-accumulate, as the reference computes its first layer.

``engine="timestep"`` (:func:`simulate_timestep`) runs every stage step with
:func:`pasc_if` (traces available). ``engine="count"`` (:func:`simulate_count`)
uses the closed form of the theorem on the total current ``S = sum_t I[t]``,
computed from the counts directly.  For the integer model both are exact and
equal to :func:`integer_ann`; for the float model they accumulate in
different orders than the ANN, and the differences are what
:mod:`pascal_ref.analysis.verify` reports.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pascal_ref.errors import PascalError
from pascal_ref.golden.ann import check_input, float_weights, input_levels_of
from pascal_ref.golden.neuron import PascIfResult, neuron_count, pasc_if
from pascal_ref.golden.ops import apply_op, apply_pre_ops, channel_view
from pascal_ref.golden.quantize import IntegerNetwork
from pascal_ref.ir.network import INPUT, Network

__all__ = ["simulate", "simulate_timestep", "simulate_count", "SnnResult", "ENGINES", "layer_timesteps", "latency"]

ENGINES = ("timestep", "count")


@dataclass(frozen=True)
class SnnResult:
    """``counts[name]``: output spike count of every neuron (int64,
    ``(B, *shape)``); ``logits``; ``integer_logits`` for the integer model;
    ``traces[name]``: the :class:`PascIfResult` of each layer (timestep
    engine with ``trace=True``)."""

    logits: np.ndarray
    counts: dict
    integer_logits: np.ndarray | None = None
    traces: dict | None = None

    @property
    def predictions(self) -> np.ndarray:
        return np.argmax(self.logits if self.integer_logits is None else self.integer_logits, axis=1)


class _Model:
    """Float and integer networks seen through one interface."""

    def __init__(self, model):
        if isinstance(model, IntegerNetwork):
            self.integer, self.network, self.layers = True, model.network, model.layers
        elif isinstance(model, Network):
            self.integer, self.network, self.layers = False, model, model.neuron_layers
        else:
            raise TypeError(f"simulate: expected a Network or IntegerNetwork, got {type(model).__name__}")
        self.model = model

    def spike_value(self, source: str) -> float | int:
        if self.integer:
            return 1
        if source == INPUT and self.network.input_levels is None:
            return 1.0  # analog input: the value itself is the current
        return self.network.source_theta(source)

    def weights(self, layer):
        if self.integer:
            return [s.weight for s in layer.synapses]
        return float_weights(layer)

    def theta(self, layer):
        return layer.theta if self.integer else np.full(layer.channels, layer.activation.theta)

    def v0(self, layer):
        if self.integer:
            return layer.v0
        return layer.activation.phi * layer.activation.theta + layer.bias

    def input_counts(self, x):
        """Integer levels (integer model, count coding) or real values (float analog input)."""
        if self.integer:
            return self.model.encode_input(x)
        x = check_input(self.network, x)
        return input_levels_of(self.network, x) if self.network.input_levels is not None else x


def _currents(model: _Model, layer, trains: dict, steps: int) -> np.ndarray:
    """Stage-1 currents ``(T1, B, *shape)`` from the sources' per-step spikes."""
    total = None
    for synapse, weight in zip(layer.synapses, model.weights(layer)):
        train = trains[synapse.source]  # (T_src, B, ...)
        value = model.spike_value(synapse.source)
        per_step = []
        for t in range(train.shape[0]):
            spikes = train[t] if model.integer else train[t] * value
            per_step.append(apply_op(apply_pre_ops(spikes, synapse.pre_ops, model.integer), synapse.op, weight))
        part = np.stack(per_step)
        if part.shape[0] < steps:
            pad = np.zeros((steps - part.shape[0],) + part.shape[1:], part.dtype)
            part = np.concatenate([part, pad])
        total = part if total is None else total + part
    return total


def _burst(counts: np.ndarray, length: int) -> np.ndarray:
    steps = np.arange(length).reshape((length,) + (1,) * counts.ndim)
    return (counts[None] > steps).astype(np.int64)


def simulate(model, x, engine: str = "count", trace: bool = False) -> SnnResult:
    """Run the spiking network on a batch ``x`` (float inputs, as for the ANN)
    with one of the :data:`ENGINES`: :func:`simulate_timestep` or
    :func:`simulate_count` (``trace=True`` needs the timestep engine)."""
    if engine not in ENGINES:
        raise PascalError(f"simulate: unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    if engine == "timestep":
        return simulate_timestep(model, x, trace=trace)
    if trace:
        raise PascalError("simulate: trace=True needs engine='timestep'")
    return simulate_count(model, x)


def simulate_timestep(model, x, trace: bool = False) -> SnnResult:
    """Every stage step of every layer with :func:`pasc_if`: the layers pass
    their per-step spike trains on; ``trace=True`` keeps each layer's
    :class:`PascIfResult` in ``SnnResult.traces``."""
    m = _Model(model)
    net = m.network
    inputs = m.input_counts(x)
    if net.input_levels is None:
        trains = {INPUT: inputs[None] if m.integer else inputs[None].astype(np.float64)}
    else:
        trains = {INPUT: _burst(inputs, net.input_levels)}
    counts, traces = {}, {} if trace else None
    for layer in m.layers:
        currents = _currents(m, layer, trains, net.input_steps(net.by_name[layer.name]))
        if layer.levels is None:
            total = currents.sum(axis=0) if not m.integer else currents.sum(axis=0, dtype=np.int64)
            return _result(m, total + channel_view(layer.bias, total.ndim), counts, traces)
        shape = currents.shape[1:]
        theta = np.broadcast_to(channel_view(m.theta(layer), len(shape)), shape)
        v0 = np.broadcast_to(channel_view(m.v0(layer), len(shape)), shape)
        result: PascIfResult = pasc_if(currents, theta, v0, layer.levels, trace=trace)
        counts[layer.name] = result.counts
        trains[layer.name] = result.spikes.astype(np.int64)
        if trace:
            traces[layer.name] = result
    raise AssertionError("a network ends with its readout")  # pragma: no cover


def simulate_count(model, x, *, shared=None) -> SnnResult:
    """The closed form: each layer's output counts from the total current
    ``S = sum_t I[t]`` of its sources' counts (:func:`neuron_count`), no
    steps and no traces.  ``shared`` (float model): the
    :class:`~pascal_ref.golden.ops.SharedProducts` of a float ANN run on the
    same batch, whose products are taken where this engine's input to a
    synapse is bit for bit the ANN's (the same floats: the same product)."""
    m = _Model(model)
    counts_by_source = {INPUT: m.input_counts(x)}
    counts = {}
    for layer in m.layers:
        total = None
        for index, (synapse, weight) in enumerate(zip(layer.synapses, m.weights(layer))):
            source_counts = counts_by_source[synapse.source]
            if not m.integer:
                source_counts = source_counts * m.spike_value(synapse.source)
            if shared is not None and not m.integer:
                part = shared.product((layer.name, index), source_counts, synapse, weight)
            else:
                part = apply_op(apply_pre_ops(source_counts, synapse.pre_ops, m.integer), synapse.op, weight)
            total = part if total is None else total + part
        if layer.levels is None:
            return _result(m, total + channel_view(layer.bias, total.ndim), counts, None)
        q = neuron_count(total, channel_view(m.theta(layer), total.ndim), channel_view(m.v0(layer), total.ndim), layer.levels)
        counts[layer.name] = counts_by_source[layer.name] = q
    raise AssertionError("a network ends with its readout")  # pragma: no cover


def _result(m: _Model, logits: np.ndarray, counts: dict, traces: dict | None) -> SnnResult:
    """The readout's accumulated currents plus bias as logits (integer model:
    ``integer_logits``, and ``logits`` divided by the readout scale)."""
    if m.integer:
        return SnnResult(logits=logits / channel_view(m.model.readout.scale, logits.ndim), counts=counts,
                         integer_logits=logits, traces=traces)
    return SnnResult(logits=logits, counts=counts, traces=traces)


def layer_timesteps(network: Network) -> list[dict]:
    """Stage steps of every neuron layer: ``T1``, ``T2``, stage 2
    ``max(T1, T2) - 1`` and the total ``T1 + max(T1,T2) - 1 + T2``
    (the readout only integrates: ``T1`` steps)."""
    rows = []
    for layer in network.neuron_layers:
        t1 = network.input_steps(layer)
        if layer.is_readout:
            rows.append({"layer": layer.name, "T1": t1, "T2": 0, "stage1": t1, "stage2": 0, "stage3": 0, "steps": t1})
            continue
        t2 = layer.levels
        settle = max(t1, t2) - 1
        rows.append({"layer": layer.name, "T1": t1, "T2": t2, "stage1": t1, "stage2": settle, "stage3": t2,
                     "steps": t1 + settle + t2})
    return rows


def latency(network: Network) -> int:
    """Total timesteps of one inference when layers run one after another
    and a layer's stage 3 overlaps the next layer's stage 1 (its transmitted
    spikes are that layer's input): the sum of stage-1 and stage-2 steps of
    every layer on the path, plus the readout's integration.  For a chain
    with one L everywhere and count-coded input of L steps this is
    ``n_hidden * (2L - 1) + L``."""
    finish = {INPUT: 0}
    for layer, row in zip(network.neuron_layers, layer_timesteps(network)):
        start = max(finish[s.source] for s in layer.synapses)
        finish[layer.name] = start + row["stage1"] + row["stage2"]
    return finish[network.readout.name]
