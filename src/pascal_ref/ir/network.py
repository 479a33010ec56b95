"""The network description: one validated data structure read by every path.

A :class:`Network` is an ``input_shape`` (without batch), an input encoding
and a flat list of layers, as a user or an exporter writes it.  At
construction it is validated, BatchNorm layers are folded into the
convolution or linear layer before them, shapes are inferred and checked, and
the list is compiled into :attr:`Network.neuron_layers`: the neuron layers
of the spiking network in topological order.  Every engine (float/integer ANN,
timestep and count SNN), the quantizer, the cost model and the hardware
generator read ``neuron_layers``; nothing else describes the network.

The layer types live in :mod:`pascal_ref.ir.layers` (re-exported here), each
carrying its own behaviour; this module only reads their ``role``.  A neuron
layer (:mod:`pascal_ref.ir.graph`) has one or more :class:`Synapse` (a source
layer, pre-ops on the source's spike trains, and one weighted op) and a QCFS
activation, or no activation for the readout.  Pre-ops are ``MaxPool2d``
(exact on burst trains: the max of bursts is the burst of the max count, so
only allowed before any averaging), ``AvgPool2d``, ``GlobalAvgPool`` and
``Flatten``.  A ResNet :class:`BasicBlock` compiles itself to two neuron
layers; the second has two synapses (``conv2`` from the first, the shortcut
from the block input).

Input encodings (``docs/semantics.md`` §5): ``input_levels=None``
is analog (the first layer multiplies the real-valued input, as the
reference does, and its current arrives in one stage-1 step); an integer
``input_levels=L_in`` is count coded: an input ``x`` in [0, 1] becomes the
level ``clip(floor(x*L_in + 1/2), 0, L_in)``, sent as a burst of ``L_in``
steps of spikes worth ``1/L_in`` each, in every path (ANN included).
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from pascal_ref.ir.graph import INPUT, NeuronLayer, Synapse
from pascal_ref.ir.layers import (
    LAYER_TYPES,
    QCFS,
    AvgPool2d,
    BasicBlock,
    BatchNorm,
    Conv2d,
    Flatten,
    GlobalAvgPool,
    Identity,
    Layer,
    Linear,
    MaxPool2d,
    NetworkError,
    WeightedOp,
    brief_int,
    check_levels,
    check_name,
    quote,
)

MAX_INPUT_ELEMENTS = 1 << 32
"""Most elements of one input sample (``prod(input_shape)``)."""

__all__ = [
    "Linear", "Conv2d", "BatchNorm", "AvgPool2d", "MaxPool2d", "GlobalAvgPool", "Flatten", "QCFS",
    "BasicBlock", "Identity", "Synapse", "NeuronLayer", "Network", "NetworkError", "INPUT", "LAYER_TYPES", "Layer",
]


class Network:
    """A validated QCFS network; see the module docstring."""

    def __init__(self, input_shape, layers, input_levels: int | None = None, name: str = "network"):
        check_name(name, "network name")
        try:
            sizes = tuple(input_shape)
        except TypeError:
            raise NetworkError(f"input_shape must be a tuple of positive ints, got {quote(input_shape)}") from None
        if not all(isinstance(n, (int, np.integer)) and not isinstance(n, bool) for n in sizes):
            raise NetworkError(f"input_shape must be a tuple of positive ints, got {quote(input_shape)}")
        input_shape = tuple(int(n) for n in sizes)
        if len(input_shape) not in (1, 3) or min(input_shape) < 1:
            raise NetworkError(f"input_shape must be (features,) or (C, H, W) with sizes >= 1, got {quote(input_shape)}")
        if math.prod(input_shape) > MAX_INPUT_ELEMENTS:
            raise NetworkError(f"input_shape {quote(input_shape)}: {brief_int(math.prod(input_shape))} elements per "
                               f"sample, more than the limit of {MAX_INPUT_ELEMENTS}")
        if input_levels is not None:
            input_levels = check_levels(input_levels, "input_levels", f"network '{name}'")
        self.name = name
        self.input_shape = input_shape
        self.input_levels = None if input_levels is None else int(input_levels)
        self.layers = tuple(self._fold(list(layers)))
        self.neuron_layers = tuple(self._compile())
        self.by_name = {layer.name: layer for layer in self.neuron_layers}

    # -- construction

    @staticmethod
    def _fold(layers: list) -> list:
        names = set()
        folded: list = []
        for index, layer in enumerate(layers):
            if type(layer).__name__ not in LAYER_TYPES or not isinstance(layer, LAYER_TYPES[type(layer).__name__]):
                raise NetworkError(f"layer #{index}: unknown layer type {type(layer).__name__}")
            for n in [layer.name] + [child.name for child in layer.sublayers()]:
                if n in names:
                    raise NetworkError(f"layer '{n}': duplicate layer name")
                names.add(n)
            if layer.role == "batch_norm":
                if not folded or folded[-1].role != "op":
                    raise NetworkError(f"layer '{layer.name}': BatchNorm must follow a Conv2d or Linear layer")
                folded[-1] = layer.fold(folded[-1])
                continue
            folded.append(layer)
        if not folded:
            raise NetworkError("network has no layers")
        return folded

    def _compile(self):
        """Pair every weighted op (with the pre-ops before it) with the activation after it."""
        layers = self.layers
        readout_error = f"layer '{layers[-1].name}': the network must end with a Linear readout layer"
        if layers[-1].role != "op":
            raise NetworkError(readout_error)
        source, source_shape = INPUT, self.input_shape
        shape = self.input_shape
        pre_ops: list = []
        pending: _Pending | None = None  # the weighted op waiting for its activation
        averaged = False
        for layer in layers:
            kind = type(layer).__name__
            if layer.role == "pre_op":
                if pending is not None:
                    raise NetworkError(f"layer '{layer.name}': pooling/flatten between '{pending.op.name}' and its activation is not supported; put it after the activation")
                if layer.acts_on_trains and (averaged or (source == INPUT and self.input_levels is None)):
                    raise NetworkError(f"layer '{layer.name}': {kind} must act on spike trains (after an activation or count-coded input), before any average pooling")
                averaged = averaged or layer.averages
                shape = layer.output_shape(shape)
                pre_ops.append(layer)
            elif layer.role == "op":
                if pending is not None:
                    raise NetworkError(f"layer '{layer.name}': two weighted layers ('{pending.op.name}', '{layer.name}') without an activation between them")
                pending = _Pending(layer, tuple(pre_ops), shape)
                shape = layer.output_shape(shape)
            elif layer.role == "activation":
                if pending is None:
                    raise NetworkError(f"layer '{layer.name}': {kind} activation must follow a Conv2d or Linear layer")
                synapse = Synapse(source, pending.pre_ops, pending.op, source_shape, pending.input_shape)
                yield NeuronLayer(layer.name, (synapse,), layer, shape, pending.op.bias)
                source, source_shape, pre_ops, pending, averaged = layer.name, shape, [], None, False
            elif layer.role == "block":
                if pending is not None or pre_ops or source == INPUT:
                    raise NetworkError(f"layer '{layer.name}': a {kind} must directly follow a QCFS activation")
                compiled = layer.compile(source, shape)
                yield from compiled
                source, shape = compiled[-1].name, compiled[-1].output_shape
                source_shape = shape
            else:  # pragma: no cover - every registered role is handled above
                raise NetworkError(f"layer '{layer.name}': {kind} has an unknown role {layer.role!r}")
        if pending is None or len(shape) != 1:
            raise NetworkError(readout_error)
        synapse = Synapse(source, pending.pre_ops, pending.op, source_shape, pending.input_shape)
        yield NeuronLayer(pending.op.name, (synapse,), None, shape, pending.op.bias)

    # -- queries

    @property
    def hidden_layers(self) -> tuple[NeuronLayer, ...]:
        return self.neuron_layers[:-1]

    @property
    def readout(self) -> NeuronLayer:
        return self.neuron_layers[-1]

    @property
    def levels(self) -> list[int]:
        """L of every activation, in order (the list the AL method chooses)."""
        return [layer.levels for layer in self.hidden_layers]

    def source_levels(self, source: str) -> int:
        """Length of the spike train a source sends (1 for analog input)."""
        if source == INPUT:
            return 1 if self.input_levels is None else self.input_levels
        return self.by_name[source].levels

    def source_theta(self, source: str) -> float:
        """Value of one spike of a source (``1/L_in`` for count-coded input)."""
        if source == INPUT:
            return 1.0 if self.input_levels is None else 1.0 / self.input_levels
        return self.by_name[source].activation.theta

    def input_steps(self, layer: NeuronLayer) -> int:
        """``T1`` of a neuron layer: the longest of its input trains."""
        return max(self.source_levels(s.source) for s in layer.synapses)

    def with_levels(self, levels) -> Network:
        """A copy with the activations' L replaced (one entry per activation)."""
        levels = list(levels)
        acts = [l.activation for l in self.hidden_layers]
        if len(levels) != len(acts):
            raise NetworkError(f"levels list has {len(levels)} entries, the network has {len(acts)} activations ({', '.join(a.name for a in acts)})")
        mapping = {a.name: L for a, L in zip(acts, levels)}
        return self.map_layers(lambda layer: dataclasses.replace(layer, levels=mapping[layer.name])
                               if layer.role == "activation" else layer)

    def map_layers(self, fn: Callable[[Layer], Layer]) -> Network:
        """A copy with ``fn(layer)`` in place of every layer and sub-layer (see :meth:`Layer.map`)."""
        return Network(self.input_shape, [layer.map(fn) for layer in self.layers], self.input_levels, self.name)

    def summary(self) -> str:
        lines = [f"{self.name}: input {self.input_shape}, " + ("analog input" if self.input_levels is None else f"count-coded input, L_in={self.input_levels}")]
        for layer in self.neuron_layers:
            ops = " + ".join(
                "".join(f"{type(p).__name__}->" for p in s.pre_ops) + f"{type(s.op).__name__}({s.source})" for s in layer.synapses)
            act = "readout" if layer.is_readout else f"QCFS L={layer.levels} lam={layer.activation.lam:.4g}"
            lines.append(f"  {layer.name:<22} {ops:<50} {act:<28} -> {layer.output_shape}")
        return "\n".join(lines)


class _Pending(NamedTuple):
    op: WeightedOp
    pre_ops: tuple
    input_shape: tuple
