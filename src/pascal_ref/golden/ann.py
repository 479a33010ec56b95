"""Float QCFS ANN inference (``docs/semantics.md`` §1).

Every layer computes ``z = sum over synapses op(pre_ops(h_source)) + bias``
and ``q = clip(floor((z / lam) * L + phi), 0, L)`` (in this order of float
operations, as PyTorch QCFS modules do), ``h = (lam / L) * q``;
the readout returns ``z``. float64 by default.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pascal_ref.errors import PascalError, printable
from pascal_ref.golden.ops import apply_op, apply_pre_ops, channel_view
from pascal_ref.ir.network import INPUT, Network, NeuronLayer

__all__ = ["AnnResult", "float_ann", "check_input", "input_levels_of"]


@dataclass(frozen=True)
class AnnResult:
    """``logits`` ``(B, classes)``; ``levels[name]`` the integer QCFS level
    ``q`` of every neuron, int64 ``(B, *shape)``; ``preactivations[name]``
    ``z*L/lam + phi`` before the floor (float paths only, for audits)."""

    logits: np.ndarray
    levels: dict
    preactivations: dict | None = None
    integer_logits: np.ndarray | None = None

    @property
    def predictions(self) -> np.ndarray:
        return np.argmax(self.logits if self.integer_logits is None else self.integer_logits, axis=1)


def check_input(network: Network, x, what: str = "input") -> np.ndarray:
    """Validate a batch ``(B, *input_shape)`` (or one sample) and return float64.

    A flat ``(B, prod(input_shape))`` batch is reshaped; anything else is an
    error naming the expected shape.  A count-coded network takes values in
    ``[0, 1]`` only (the range its encoding is defined on): anything outside
    is an error, never clipped.
    """
    x = np.asarray(x)
    if x.dtype.kind not in "iuf" or x.dtype == np.float16:
        raise TypeError(f"{what}: expected a float or integer array, got dtype {x.dtype}")
    shape = network.input_shape
    if x.shape == shape:
        x = x[None]
    elif x.ndim == 2 and len(shape) > 1 and x.shape[1] == int(np.prod(shape)):
        x = x.reshape((x.shape[0],) + shape)
    if x.shape[1:] != shape:
        raise PascalError(f"{what}: shape {x.shape} does not match the network input (batch, {', '.join(map(str, shape))})")
    if x.shape[0] == 0:
        raise PascalError(f"{what}: empty batch")
    x = x.astype(np.float64)
    if not np.all(np.isfinite(x)):
        raise PascalError(f"{what}: contains NaN or Inf")
    if network.input_levels is not None:
        low, high = float(x.min()), float(x.max())
        if low < 0.0 or high > 1.0:   # the count coding is defined on [0, 1]: never clip without a word
            raise PascalError(f"{what}: values in [{low:g}, {high:g}]; network '{printable(network.name)}' count-codes "
                              f"its input (input_levels={network.input_levels}), defined on [0, 1]")
    return x


def input_levels_of(network: Network, x: np.ndarray) -> np.ndarray:
    """Count coding of an input in [0, 1]: ``clip(floor(x*L_in + 1/2), 0, L_in)``."""
    levels = network.input_levels
    return np.clip(np.floor(x * levels + 0.5), 0, levels).astype(np.int64)


def layer_input(layer: NeuronLayer, values: dict, integer: bool, weights=None, shared=None):
    """``sum over synapses op(pre_ops(values[source]))`` (without bias); ``shared``: a
    :class:`~pascal_ref.golden.ops.SharedProducts` that keeps (or hands back) each float product."""
    total = None
    for index, synapse in enumerate(layer.synapses):
        weight = synapse.op.weight if weights is None else weights[index]
        if shared is not None and not integer:
            part = shared.product((layer.name, index), values[synapse.source], synapse, weight)
        else:
            part = apply_op(apply_pre_ops(values[synapse.source], synapse.pre_ops, integer), synapse.op, weight)
        total = part if total is None else total + part
    return total


def float_ann(network: Network, x, dtype=np.float64, *, shared=None) -> AnnResult:
    """Run the QCFS ANN on a batch; returns logits and every layer's levels.

    ``dtype``: ``np.float64`` (default) or ``np.float32``; an integer dtype
    would truncate the thresholds and activations and is refused.
    ``shared``: a :class:`~pascal_ref.golden.ops.SharedProducts` that keeps
    every synapse product for another engine on the same batch (verify).
    """
    try:
        dtype = np.dtype(dtype).type
    except TypeError:
        raise TypeError(f"float_ann: dtype must be np.float32 or np.float64, got {dtype!r}") from None
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"float_ann: dtype must be np.float32 or np.float64, got {np.dtype(dtype).name}")
    x = check_input(network, x)
    if network.input_levels is not None:
        x = input_levels_of(network, x) / network.input_levels
    values = {INPUT: x.astype(dtype)}
    levels, pre = {}, {}
    for layer in network.neuron_layers:
        z = layer_input(layer, values, integer=False, weights=float_weights(layer, dtype), shared=shared)
        z = z + channel_view(layer.bias.astype(dtype), z.ndim)
        if layer.is_readout:
            return AnnResult(logits=z, levels=levels, preactivations=pre)
        act = layer.activation
        scaled = z / dtype(act.lam) * dtype(act.levels) + dtype(act.phi)
        q = np.clip(np.floor(scaled), 0, act.levels).astype(np.int64)
        levels[layer.name], pre[layer.name] = q, scaled
        values[layer.name] = (q * act.theta).astype(dtype)
    raise AssertionError("network without readout")  # pragma: no cover


def float_weights(layer: NeuronLayer, dtype=np.float64) -> list:
    """Each synapse's float weight (an identity shortcut's is a gain of 1 per channel)."""
    return [s.op.weight.astype(dtype, copy=False) for s in layer.synapses]
