"""The integer (bit-exact) model (``docs/semantics.md`` §8).

:func:`quantize` maps a float :class:`~pascal_ref.ir.network.Network` onto
integers.  A spike of a source layer is worth ``theta_src`` in the float
model and 1 in the integer model, so the float weight seen by integer levels
is ``W_eff = W * theta_src / pool`` (``pool`` the number of elements an
average pooling before the op sums).  Per output channel ``c`` (or per layer)
a scale ``s_c = (2**(bits-1) - 1) / max|W_eff[c]|`` gives

    W_int = round(W_eff * s_c)     theta_int = max(1, round(theta * s_c))
    b_int = round(b * s_c)         v0_int = round(phi * theta_int) + b_int

and the integer QCFS ANN ``q = clip(floor((sum W_int q_src + v0_int) / theta_int), 0, L)``
which the integer SNN reproduces exactly.  The readout uses one scale for the
whole layer so that the argmax of the integer logits is the prediction.

Input: count-coded networks send their levels ``0..L_in`` (spike worth
``1/L_in``); analog networks are quantized to signed ``input_bits`` integers
with step ``input_bound / (2**(input_bits-1) - 1)``.

Widths are derived from worst-case bounds: every partial sum of input
currents lies in ``[S_min, S_max]`` (the sums of the negative and of the
positive weight terms at the largest source levels), so the membrane stays
in ``[min(0, v0) + S_min, max(v0, theta - 1) + S_max]`` through all stages.
A width beyond ``max_bits`` is a :class:`QuantizationError`, never a wrap.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pascal_ref.errors import PascalError
from pascal_ref.golden.ann import AnnResult, check_input, input_levels_of, layer_input
from pascal_ref.golden.ops import channel_view, integer_range, pool_size
from pascal_ref.ir.layers import PreOp, WeightedOp
from pascal_ref.ir.network import INPUT, Network, Synapse
from pascal_ref.numeric import signed_width

__all__ = ["quantize", "IntegerNetwork", "IntNeuronLayer", "IntSynapse", "integer_ann", "QuantizationError"]


class QuantizationError(PascalError):
    """The float model cannot be mapped onto the requested integer widths."""


@dataclass(frozen=True, eq=False)
class IntSynapse:
    """Integer synapse: ``op(pre_ops(levels of source))`` with integer ``weight``
    (average pooling sums here). ``input_max``: largest level after pre-ops."""

    source: str
    pre_ops: tuple[PreOp, ...]
    op: WeightedOp
    weight: np.ndarray
    input_min: int
    input_max: int
    input_shape: tuple
    op_input_shape: tuple


@dataclass(frozen=True, eq=False)
class IntNeuronLayer:
    """An integer layer; ``levels`` is None for the readout.

    ``theta``, ``bias``, ``v0`` and ``scale`` are per output channel.
    ``current_range`` bounds every partial sum of the input currents,
    ``membrane_range`` every value of ``v`` (stage steps included),
    ``counter_range`` the signed spike counter ``c``.
    """

    name: str
    synapses: tuple[IntSynapse, ...]
    theta: np.ndarray
    bias: np.ndarray
    v0: np.ndarray
    scale: np.ndarray
    levels: int | None
    input_steps: int
    output_shape: tuple
    current_range: tuple[int, int]
    membrane_range: tuple[int, int]
    counter_range: tuple[int, int]

    @property
    def is_readout(self) -> bool:
        return self.levels is None

    @property
    def membrane_bits(self) -> int:
        return signed_width(*self.membrane_range)

    @property
    def current_bits(self) -> int:
        return signed_width(*self.current_range)

    @property
    def counter_bits(self) -> int:
        return signed_width(*self.counter_range)

    @property
    def theta_bits(self) -> int:
        return signed_width(0, int(self.theta.max()))

    @property
    def weight_bits(self) -> int:
        lo = min(int(s.weight.min()) for s in self.synapses)
        hi = max(int(s.weight.max()) for s in self.synapses)
        return signed_width(lo, hi)

    @property
    def settle_steps(self) -> int:
        return max(self.input_steps, self.levels or 1) - 1


class IntegerNetwork:
    """The integer model of a :class:`Network`; see the module docstring."""

    def __init__(self, network: Network, layers, weight_bits: int, per_channel: bool,
                 input_step: float, input_range: tuple[int, int]):
        self.network = network
        self.layers = tuple(layers)
        self.weight_bits = weight_bits
        self.per_channel = per_channel
        self.input_step = input_step
        self.input_range = input_range
        self.by_name = {layer.name: layer for layer in self.layers}

    @property
    def input_levels(self) -> int | None:
        return self.network.input_levels

    @property
    def readout(self) -> IntNeuronLayer:
        return self.layers[-1]

    def source_levels(self, source: str) -> int:
        return self.network.source_levels(source)

    def encode_input(self, x) -> np.ndarray:
        """Integer input levels of a float batch (validated)."""
        x = check_input(self.network, x)
        if self.network.input_levels is not None:
            return input_levels_of(self.network, x)
        lo, hi = self.input_range
        return np.clip(np.rint(x / self.input_step), lo, hi).astype(np.int64)

    def check_input_levels(self, x_int) -> np.ndarray:
        """Validate an already-integer input batch against the input range."""
        x_int = np.asarray(x_int)
        if x_int.dtype.kind not in "iu":
            raise TypeError(f"integer input: expected an integer array, got dtype {x_int.dtype}")
        if x_int.shape[1:] != self.network.input_shape:
            raise QuantizationError(f"integer input: shape {x_int.shape} does not match (batch, {', '.join(map(str, self.network.input_shape))})")
        lo, hi = self.input_range
        if x_int.size and (x_int.min() < lo or x_int.max() > hi):
            raise QuantizationError(f"integer input: values must lie in [{lo}, {hi}], got [{x_int.min()}, {x_int.max()}]")
        return x_int.astype(np.int64)

    def summary(self) -> str:
        lines = [f"integer model of {self.network.name}: {self.weight_bits}-bit weights, "
                 + ("per-channel" if self.per_channel else "per-layer") + f" thresholds, input range {self.input_range}"]
        for layer in self.layers:
            kind = "readout" if layer.is_readout else f"T1={layer.input_steps} T2={layer.levels}"
            lines.append(f"  {layer.name:<22} {kind:<14} theta {int(layer.theta.min())}..{int(layer.theta.max())}"
                         f"  membrane {layer.membrane_bits} bits  current {layer.current_bits} bits")
        return "\n".join(lines)


def _level_range(network: Network, source: str, input_range) -> tuple[int, int]:
    if source == INPUT:
        return input_range
    return 0, network.source_levels(source)


def _effective_weight(network: Network, synapse: Synapse, input_step: float) -> np.ndarray:
    theta_src = input_step if synapse.source == INPUT else network.source_theta(synapse.source)
    pool = pool_size(synapse.pre_ops, synapse.input_shape)
    return synapse.op.weight * (theta_src / pool)


def _term_bounds(weight: np.ndarray, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """Per output channel min/max of ``sum_j w_j x_j`` with ``x_j`` in [lo, hi].

    int64 when ``sum |w| * max(|lo|, |hi|)`` fits in 62 bits (always, for
    weights of at most 24 bits and realistic fan-ins), Python ints otherwise.
    """
    flat = weight.reshape(weight.shape[0], -1)
    magnitude = max(abs(lo), abs(hi))
    if int(np.abs(flat).sum(axis=1).max(initial=0)) * magnitude >= 2 ** 62:
        flat = flat.astype(object)
    low = np.minimum(flat * lo, flat * hi).sum(axis=1)
    high = np.maximum(flat * lo, flat * hi).sum(axis=1)
    return low, high


INTEGER_BITS = 62
"""Largest magnitude (``< 2**62``) of any integer the quantizer makes: int64 then holds the sum of two of
them without a wrap, and ``max_bits`` is at most 62 anyway."""


def _to_integers(layer: str, array: str, values, hint: str = "") -> np.ndarray:
    """``values`` (floats, already rounded) as int64, or a :class:`QuantizationError` naming the layer and
    the array when one of them is not finite or has a magnitude of ``2**INTEGER_BITS`` or more (checked
    before the cast: ``astype`` would wrap it silently)."""
    values = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise QuantizationError(f"layer '{layer}': the integer {array} is not finite (a scale overflowed float64)"
                                + (f": {hint}" if hint else ""))
    peak = float(np.abs(values).max(initial=0.0))
    if peak >= 2.0 ** INTEGER_BITS:
        bits = signed_width(-int(peak), int(peak))
        raise QuantizationError(f"layer '{layer}': the integer {array} needs {bits} bits (largest magnitude "
                                f"{peak:.3g}), more than the {INTEGER_BITS} bits of the exact int64 model"
                                + (f": {hint}" if hint else ""))
    return values.astype(np.int64)


def quantize(network: Network, weight_bits: int = 8, per_channel: bool = True, input_bits: int = 8,
             input_bound: float | None = None, max_bits: int = 48) -> IntegerNetwork:
    """Map a float network onto integers (see the module docstring).

    Parameters
    ----------
    weight_bits : signed width of the integer weights (2..24).
    per_channel : one scale (and threshold) per output channel, else per layer.
    input_bits, input_bound : quantization of analog inputs to signed
        ``input_bits`` integers over ``[-input_bound, input_bound]``; required
        for analog-input networks, ignored for count-coded ones.
    max_bits : the largest membrane/accumulator width accepted.
    """
    if not isinstance(network, Network):
        raise TypeError(f"quantize: expected a Network, got {type(network).__name__}")
    if isinstance(weight_bits, bool) or not isinstance(weight_bits, (int, np.integer)) or not 2 <= weight_bits <= 24:
        raise QuantizationError(f"weight_bits must be an integer in 2..24, got {weight_bits!r}")
    if not isinstance(max_bits, (int, np.integer)) or not 8 <= max_bits <= 62:
        raise QuantizationError(f"max_bits must be an integer in 8..62, got {max_bits!r}")
    if network.input_levels is not None:
        input_step, input_range = 1.0 / network.input_levels, (0, network.input_levels)
    else:
        if input_bound is None or not np.isfinite(input_bound) or input_bound <= 0:
            raise QuantizationError(f"network '{network.name}' has analog input: give input_bound > 0 (the largest |x| to represent), got {input_bound!r}")
        if not isinstance(input_bits, (int, np.integer)) or not 2 <= input_bits <= 24:
            raise QuantizationError(f"input_bits must be an integer in 2..24, got {input_bits!r}")
        qmax = (1 << (input_bits - 1)) - 1
        input_step, input_range = float(input_bound) / qmax, (-qmax, qmax)

    wmax = (1 << (weight_bits - 1)) - 1
    layers = []
    for layer in network.neuron_layers:
        effective = [_effective_weight(network, s, input_step) for s in layer.synapses]
        channel_max = np.max([np.abs(w.reshape(w.shape[0], -1)).max(axis=1) for w in effective], axis=0)
        theta = None if layer.is_readout else layer.activation.theta
        if layer.is_readout or not per_channel:
            channel_max = np.full_like(channel_max, channel_max.max())
        # A channel without weights still needs a scale; give theta the full range.
        fallback = wmax / theta if theta is not None else 1.0
        scale = np.where(channel_max > 0, wmax / np.where(channel_max > 0, channel_max, 1.0), fallback)
        synapses = []
        cur_lo = np.zeros(layer.channels, dtype=object)
        cur_hi = np.zeros(layer.channels, dtype=object)
        if not np.all(np.isfinite(scale)):
            raise QuantizationError(f"layer '{layer.name}': the scale overflows float64 (largest |effective weight| "
                                    f"{float(channel_max.min()):.3g}): the weights or the source's theta are too small")
        for synapse, w_eff in zip(layer.synapses, effective):
            w_int = _to_integers(layer.name, "weight", np.rint(w_eff * scale.reshape((-1,) + (1,) * (w_eff.ndim - 1))))
            lo, hi = _level_range(network, synapse.source, input_range)
            in_lo, in_hi = integer_range(synapse.pre_ops, synapse.input_shape, lo, hi)
            low, high = _term_bounds(w_int, in_lo, in_hi)
            cur_lo, cur_hi = cur_lo + low, cur_hi + high
            synapses.append(IntSynapse(synapse.source, synapse.pre_ops, synapse.op, w_int, in_lo, in_hi,
                                       synapse.input_shape, synapse.op_input_shape))
        small = "the scale is large because the weights or the source's theta (lam/L) are small"
        bias = _to_integers(layer.name, "bias", np.rint(layer.bias * scale),
                            "the bias is too large for the scale of the weights" if np.max(np.abs(layer.bias), initial=0)
                            > 1 else small)
        steps = network.input_steps(layer)
        # Every bound in Python ints: no sum below can wrap.
        current_range = (min(int(cur_lo.min()), 0), max(int(cur_hi.max()), 0))
        if layer.is_readout:
            theta_int = np.ones(layer.channels, dtype=np.int64)
            v0 = bias.copy()
            acc = (min(0, int(bias.min())) + current_range[0], max(0, int(bias.max())) + current_range[1])
            membrane, counter = acc, (0, 0)
        else:
            act = layer.activation
            theta_int = np.maximum(1, _to_integers(layer.name, "theta", np.rint(act.theta * scale), small))
            v0 = _to_integers(layer.name, "v0", np.rint(act.phi * theta_int)) + bias
            membrane = (min(0, int(v0.min())) + current_range[0],
                        max(int(v0.max()), int(theta_int.max()) - 1) + current_range[1])
            settle = max(steps, act.levels) - 1
            counter = (-settle, steps + settle)
        if membrane[0] > membrane[1]:   # cannot happen with the bounds above; a wrap would show here
            raise QuantizationError(f"layer '{layer.name}': membrane range {membrane} is empty")
        bits = signed_width(*membrane)
        if bits > max_bits:
            raise QuantizationError(f"layer '{layer.name}': membrane needs {bits} bits (range {membrane}), more than max_bits={max_bits}")
        layers.append(IntNeuronLayer(layer.name, tuple(synapses), theta_int, bias, v0, scale, layer.levels, steps,
                                     layer.output_shape, current_range, membrane, counter))
    return IntegerNetwork(network, layers, int(weight_bits), bool(per_channel), input_step, input_range)


def integer_ann(model: IntegerNetwork, x=None, x_int=None) -> AnnResult:
    """The integer QCFS ANN: ``q = clip(floor((S + v0) / theta), 0, L)``.

    Give a float batch ``x`` (encoded with :meth:`IntegerNetwork.encode_input`)
    or integer input levels ``x_int``. Returns integer levels per layer,
    ``integer_logits`` (``S + b_int``) and ``logits = integer_logits / scale``.
    """
    if (x is None) == (x_int is None):
        raise QuantizationError("integer_ann: give exactly one of x (float batch) or x_int (integer levels)")
    x_int = model.encode_input(x) if x_int is None else model.check_input_levels(x_int)
    values = {INPUT: x_int}
    levels = {}
    for layer in model.layers:
        total = layer_input(layer, values, integer=True, weights=[s.weight for s in layer.synapses])
        if layer.is_readout:
            acc = total + channel_view(layer.bias, total.ndim)
            return AnnResult(logits=acc / channel_view(layer.scale, acc.ndim), levels=levels, integer_logits=acc)
        q = np.clip((total + channel_view(layer.v0, total.ndim)) // channel_view(layer.theta, total.ndim), 0, layer.levels)
        levels[layer.name] = values[layer.name] = q.astype(np.int64)
    raise AssertionError("network without readout")  # pragma: no cover
