"""The event-driven timestep engine: the three stages of every PASC-IF neuron, step by step, in Numba.

Per layer and sample the stage-1 currents ``I[t, n]`` are built by
scattering the source spikes: a source neuron with count ``k`` sends a
spike at steps ``0..k-1`` (burst), so its weight row is added once, at step
``k - 1``, to a table of differences ``I[t] - I[t+1]``, which one pass
from the last step back turns into the step currents (integers: exact in
any order); silent neurons cost nothing.
Neurons are indexed channels-last (``(y * W + x) * C + c``), so a spike adds
one contiguous weight row.  Then the neurons run stages 2 and 3.  Traces
(``v``, ``c`` after every step) stay in the reference
(``simulate(..., engine="timestep", trace=True)``).

Where a spike lands is read from the synapse's layers: leading max pools
(``Window.reduce == "max"``) act on the counts (exact on bursts), average
pools become a sparse sum map, a flatten is the identity on channels-last
indices, and the op's ``kind`` picks the scatter loop (:data:`SCATTER_LAYOUTS`).
A layer type outside these has no event-driven kernel here: use the count
engine or the reference.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from pascal_ref.errors import PascalError
from pascal_ref.fast.kernels import (
    SCATTER_CONV,
    SCATTER_DENSE,
    SCATTER_IDENTITY,
    burst_currents,
    neuron_stages,
    scatter_spikes,
)
from pascal_ref.fast.layout import (
    channels_first,
    channels_last,
    channels_last_shape,
    flatten_permutation,
    flatten_source_shape,
    pre_ops_channels_last,
)
from pascal_ref.fast.plan import cached_plan, count_plan
from pascal_ref.golden.quantize import IntegerNetwork, IntNeuronLayer, IntSynapse
from pascal_ref.golden.snn import SnnResult
from pascal_ref.ir.graph import INPUT

__all__ = ["timestep_engine", "TimestepStats", "TimestepResult"]


@dataclass
class TimestepStats:
    """What a :func:`timestep_engine` run did, per layer.

    ``spikes[name]``: transmitted (stage-3) spikes of the layer's neurons.
    ``events[name]``: synaptic events delivered *into* the layer: one per
    spike per synapse (weight) it crosses, as the event-driven hardware
    performs them (average pooling sums spikes before the weights, so a
    pooled spike is one event per weight of the pooled cell; the engine
    itself adds a burst's weight row once, see the module docstring).  ``macs[name]``: multiply-accumulates of the
    analog input layer (not events).  ``seconds``: wall time of the run.
    """

    spikes: dict = field(default_factory=dict)
    events: dict = field(default_factory=dict)
    macs: dict = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def total_events(self) -> int:
        return int(sum(self.events.values()))

    @property
    def events_per_second(self) -> float:
        return self.total_events / self.seconds if self.seconds > 0 else float("nan")


@dataclass(frozen=True)
class TimestepResult(SnnResult):
    """An :class:`~pascal_ref.golden.snn.SnnResult` with what the run did (``stats``)."""

    stats: TimestepStats = field(default_factory=TimestepStats)


@dataclass(frozen=True, eq=False)
class _TsSynapse:
    source: str
    analog: bool               # analog input: one step, the value multiplies the weight
    source_steps: int          # T of the source train
    max_pools: tuple           # leading max pools, applied to the counts (exact on bursts)
    use_map: bool              # sum pooling between the source and the op
    map_ptr: np.ndarray        # CSR: source neuron -> op inputs (with multiplicity)
    map_index: np.ndarray
    map_mult: np.ndarray
    kind: int                  # a SCATTER_* code
    weight: np.ndarray         # conv (kh*kw*C, O); dense (K, O); identity (1, C)
    op_input: tuple            # (H, W, C) of the op input, channels-last
    geometry: np.ndarray       # conv: kh, kw, sh, sw, ph, pw, Ho, Wo


@dataclass(frozen=True, eq=False)
class _TsLayer:
    name: str
    synapses: tuple
    theta: np.ndarray
    v0: np.ndarray
    bias: np.ndarray
    levels: int | None
    input_steps: int
    channels: int
    neurons: int
    output_shape: tuple
    current_dtype: type


def _unsupported(layer: IntNeuronLayer, what, why: str) -> PascalError:
    return PascalError(f"timestep_engine: layer '{layer.name}': {type(what).__name__} '{what.name}' {why}; "
                       "run it with count_engine or pascal_ref.golden.snn.simulate")


def _sum_pool_map(layer: IntNeuronLayer, pre_ops, shape) -> tuple[tuple, object, tuple]:
    """Split pre-ops into leading max pools and a sparse sum map (channels-last indices).

    Returns ``(max_pools, map, op_input_shape)``, ``map`` a scipy CSR matrix
    ``(source neurons, op inputs)`` of multiplicities, or None when the rest
    is only flatten (the identity on channels-last flat indices).
    """
    from scipy import sparse
    max_pools = []
    shape = tuple(shape)
    ops = list(pre_ops)
    while ops and not ops[0].flattens and getattr(ops[0].window(shape), "reduce", None) == "max":
        max_pools.append(ops[0])
        shape = ops.pop(0).output_shape(shape)
    matrix = None
    for op in ops:
        out_shape = op.output_shape(shape)
        if op.flattens:
            shape = out_shape
            continue
        window = op.window(shape)
        if window is None or window.reduce != "mean":
            raise _unsupported(layer, op, "has no event map (only max pools before any average pool, "
                                          "average pools and flatten)")
        c, h, w = shape
        (kh, kw), (sh, sw) = window.kernel, window.stride
        _, ho, wo = out_shape
        members = np.arange(h * w * c).reshape(h, w, c)
        cells = np.arange(ho * wo * c).reshape(ho, wo, c)
        rows = np.concatenate([members[i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw].reshape(-1)
                               for i in range(kh) for j in range(kw)])
        cols = np.tile(cells.reshape(-1), kh * kw)
        step = sparse.csr_matrix((np.ones(len(rows), np.int64), (rows, cols)),
                                 shape=(h * w * c, int(np.prod(out_shape))))
        matrix = step if matrix is None else (matrix @ step).tocsr()
        shape = out_shape
    return tuple(max_pools), matrix, shape


def _dense_scatter(layer: IntNeuronLayer, synapse: IntSynapse, op_shape):
    weight = synapse.weight
    flat_shape = flatten_source_shape(synapse)
    columns = weight if flat_shape is None else weight[:, flatten_permutation(flat_shape)]
    return SCATTER_DENSE, columns.T, (1, 1, weight.shape[1]), np.zeros(8, np.int64)


def _conv_scatter(layer: IntNeuronLayer, synapse: IntSynapse, op_shape):
    weight = synapse.weight
    (kh, kw), (sh, sw), (ph, pw) = weight.shape[2:], synapse.op.stride, synapse.op.padding
    geometry = np.array((kh, kw, sh, sw, ph, pw, layer.output_shape[1], layer.output_shape[2]), np.int64)
    matrix = weight.transpose(2, 3, 1, 0).reshape(-1, weight.shape[0])
    return SCATTER_CONV, matrix, channels_last_shape(op_shape), geometry


def _identity_scatter(layer: IntNeuronLayer, synapse: IntSynapse, op_shape):
    return SCATTER_IDENTITY, synapse.weight.reshape(1, -1), channels_last_shape(op_shape), np.zeros(8, np.int64)


SCATTER_LAYOUTS = {"dense": _dense_scatter, "conv": _conv_scatter, "identity": _identity_scatter}
"""Weighted-op ``kind`` -> ``(scatter code, weight rows, op input (H, W, C), geometry)`` of a synapse."""


def _timestep_plan(model: IntegerNetwork) -> tuple[_TsLayer, ...]:
    plan = count_plan(model)
    layers = []
    for layer, counted in zip(model.layers, plan.layers):
        dtype = np.int32 if counted.bound < 2 ** 31 else np.int64
        synapses = []
        for synapse in layer.synapses:
            analog = synapse.source == INPUT and model.input_levels is None
            max_pools, matrix, op_shape = _sum_pool_map(layer, synapse.pre_ops, synapse.input_shape)
            if matrix is None:
                ptr, index, mult = np.zeros(1, np.int64), np.zeros(1, np.int64), np.zeros(1, np.int64)
            else:
                matrix.sort_indices()
                ptr, index, mult = (matrix.indptr.astype(np.int64), matrix.indices.astype(np.int64),
                                    matrix.data.astype(np.int64))
            if synapse.op.kind not in SCATTER_LAYOUTS:
                raise _unsupported(layer, synapse.op, "has no event-driven kernel")
            kind, weight, op_input, geometry = SCATTER_LAYOUTS[synapse.op.kind](layer, synapse, op_shape)
            synapses.append(_TsSynapse(synapse.source, analog, 1 if analog else model.source_levels(synapse.source),
                                       max_pools, matrix is not None, ptr, index, mult, kind,
                                       np.ascontiguousarray(weight, dtype), op_input, geometry))
        shape = tuple(layer.output_shape)
        layers.append(_TsLayer(layer.name, tuple(synapses), layer.theta.astype(np.int64), layer.v0.astype(np.int64),
                               layer.bias.astype(np.int64), layer.levels, int(layer.input_steps), shape[0],
                               int(np.prod(shape)), shape, dtype))
    return tuple(layers)


def timestep_engine(model: IntegerNetwork, x=None, *, x_int=None, state: bool = False) -> TimestepResult:
    """The integer timestep engine: equal to ``simulate(model, x, engine="timestep")`` bit for bit.

    Every neuron runs stage 1 step by step on currents built from the
    spikes of each step (event driven), then stages 2 and 3.  With
    ``state=True`` the result's ``traces[name]`` is a dict with the final
    membrane ``v`` and signed counter ``c`` (int64, channels-first; the
    reference's ``PascIfResult.v``/``.c``).  The result's ``stats`` is the
    run's :class:`TimestepStats`.
    """
    if not isinstance(model, IntegerNetwork):
        raise TypeError(f"timestep_engine: expected an IntegerNetwork, got {type(model).__name__}")
    if (x is None) == (x_int is None):
        raise PascalError("timestep_engine: give exactly one of x (float batch) or x_int (integer levels)")
    started = time.perf_counter()
    plan = cached_plan(model, "timestep", lambda: _timestep_plan(model))
    x_int = model.encode_input(x) if x_int is None else model.check_input_levels(x_int)
    batch = x_int.shape[0]
    counts = {INPUT: channels_last(x_int).astype(np.int64)}
    stats = TimestepStats()
    result_counts, states = {}, {} if state else None
    for layer in plan:
        currents = np.zeros((batch, layer.input_steps, layer.neurons), layer.current_dtype)
        events = np.zeros(batch, np.int64)
        macs = np.zeros(batch, np.int64)
        for synapse in layer.synapses:
            src = counts[synapse.source]
            if synapse.max_pools:
                src = pre_ops_channels_last(src, synapse.max_pools, integer=True)
            src = np.ascontiguousarray(src.reshape(batch, -1))
            h, w, c = synapse.op_input
            scatter_spikes(src, synapse.source_steps, synapse.analog, synapse.use_map, synapse.map_ptr,
                           synapse.map_index, synapse.map_mult, synapse.kind, synapse.weight, h, w, c,
                           synapse.geometry, currents, macs if synapse.analog else events)
        burst_currents(currents)
        stats.events[layer.name] = int(events.sum())
        if macs.any():
            stats.macs[layer.name] = int(macs.sum())
        if layer.levels is None:
            logits = currents.sum(axis=1, dtype=np.int64) + layer.bias
            stats.seconds = time.perf_counter() - started
            result = TimestepResult(logits=logits / model.readout.scale, counts=result_counts, integer_logits=logits,
                                    traces=states, stats=stats)
            return result
        out = np.empty((batch, layer.neurons), np.int64)
        v = np.empty((batch, layer.neurons), np.int64)
        c = np.empty((batch, layer.neurons), np.int64)
        settle = max(layer.input_steps, layer.levels) - 1
        neuron_stages(currents, layer.theta, layer.v0, layer.channels, layer.levels, settle, out, v, c)
        shaped = out.reshape((batch,) + channels_last_shape(layer.output_shape))
        counts[layer.name] = shaped
        result_counts[layer.name] = np.ascontiguousarray(channels_first(shaped))
        stats.spikes[layer.name] = int(out.sum())
        if state:
            states[layer.name] = {
                "v": np.ascontiguousarray(channels_first(v.reshape(shaped.shape))),
                "c": np.ascontiguousarray(channels_first(c.reshape(shaped.shape)))}
    raise AssertionError("network without readout")  # pragma: no cover
