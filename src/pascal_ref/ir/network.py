"""The network description: one validated data structure read by every path.

A :class:`Network` is an ``input_shape`` (without batch), an input encoding
and a flat list of layers, as a user or an exporter writes it.  At
construction it is validated, BatchNorm layers are folded into the
convolution or linear layer before them, shapes are inferred and checked, and
the list is compiled into :attr:`Network.neuron_layers`: the neuron layers
of the spiking network in topological order.  Every engine (float/integer ANN,
timestep and count SNN), the quantizer, the cost model and the hardware
generator read ``neuron_layers``; nothing else describes the network.

A neuron layer has one or more :class:`Synapse` (a source layer, pre-ops on
the source's spike trains, and one weighted op) and a QCFS activation, or no
activation for the readout.  Pre-ops are ``MaxPool2d`` (exact on burst
trains: the max of bursts is the burst of the max count, so only allowed
before any averaging), ``AvgPool2d``, ``GlobalAvgPool`` and ``Flatten``.
A ResNet :class:`BasicBlock` compiles to two neuron layers; the second has
two synapses (``conv2`` from the first, the shortcut from the block input).

Input encodings (``docs/semantics.md`` §5): ``input_levels=None``
is analog (the first layer multiplies the real-valued input, as the
reference does, and its current arrives in one stage-1 step); an integer
``input_levels=L_in`` is count coded: an input ``x`` in [0, 1] becomes the
level ``clip(floor(x*L_in + 1/2), 0, L_in)``, sent as a burst of ``L_in``
steps of spikes worth ``1/L_in`` each, in every path (ANN included).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Union

import numpy as np

from pascal_ref.errors import PascalError

__all__ = [
    "Linear", "Conv2d", "BatchNorm", "AvgPool2d", "MaxPool2d", "GlobalAvgPool", "Flatten", "QCFS",
    "BasicBlock", "Identity", "Synapse", "NeuronLayer", "Network", "NetworkError", "INPUT",
]

INPUT = "input"


class NetworkError(PascalError):
    """An invalid network description; the message names the layer and the array."""


def _array(layer: str, field_name: str, value, ndim: int) -> np.ndarray:
    try:
        a = np.asarray(value)
    except Exception as error:  # pragma: no cover - exotic inputs
        raise NetworkError(f"layer '{layer}': {field_name} is not an array ({error})") from None
    if a.dtype.kind not in "iuf" or a.dtype == np.float16:
        raise NetworkError(f"layer '{layer}': {field_name} must be a float or integer array, got dtype {a.dtype}")
    if a.ndim != ndim:
        raise NetworkError(f"layer '{layer}': {field_name} must have {ndim} dimensions, got shape {a.shape}")
    a = a.astype(np.float64)
    if not np.all(np.isfinite(a)):
        raise NetworkError(f"layer '{layer}': {field_name} contains NaN or Inf")
    a.setflags(write=False)
    return a


def _pair(layer: str, field_name: str, value, minimum: int) -> tuple[int, int]:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (value, value)
    try:
        pair = tuple(int(v) for v in value)
        ok = len(pair) == 2 and all(int(v) == v and not isinstance(v, bool) for v in value)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise NetworkError(f"layer '{layer}': {field_name} must be an int or a pair of ints, got {value!r}")
    if min(pair) < minimum:
        raise NetworkError(f"layer '{layer}': {field_name} must be >= {minimum}, got {pair}")
    return pair


def _check_name(name) -> str:
    if not isinstance(name, str) or not name or name == INPUT or any(ch in name for ch in "/\\ \n\t"):
        raise NetworkError(f"invalid layer name {name!r}: a non-empty string without spaces or slashes, not '{INPUT}'")
    return name


# ---------------------------------------------------------------- layers


@dataclass(frozen=True, eq=False)
class Linear:
    """``y = weight @ x + bias``; weight ``(out_features, in_features)``."""

    name: str
    weight: np.ndarray
    bias: np.ndarray | None = None

    def __post_init__(self):
        _check_name(self.name)
        w = _array(self.name, "weight", self.weight, 2)
        bias = np.zeros(w.shape[0]) if self.bias is None else self.bias
        b = _array(self.name, "bias", bias, 1)
        if b.shape != (w.shape[0],):
            raise NetworkError(f"layer '{self.name}': bias shape {b.shape} does not match weight rows {w.shape[0]}")
        object.__setattr__(self, "weight", w)
        object.__setattr__(self, "bias", b)

    arrays = ("weight", "bias")

    @property
    def out_channels(self) -> int:
        return self.weight.shape[0]

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(shape) != 1 or shape[0] != self.weight.shape[1]:
            raise NetworkError(
                f"layer '{self.name}': weight shape {self.weight.shape} does not match input shape {shape}"
                + (" (add a Flatten layer)" if len(shape) != 1 else ""))
        return (self.weight.shape[0],)


@dataclass(frozen=True, eq=False)
class Conv2d:
    """2-D convolution; weight ``(out, in, kh, kw)``, zero padding."""

    name: str
    weight: np.ndarray
    bias: np.ndarray | None = None
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)

    def __post_init__(self):
        _check_name(self.name)
        w = _array(self.name, "weight", self.weight, 4)
        bias = np.zeros(w.shape[0]) if self.bias is None else self.bias
        b = _array(self.name, "bias", bias, 1)
        if b.shape != (w.shape[0],):
            raise NetworkError(f"layer '{self.name}': bias shape {b.shape} does not match weight out-channels {w.shape[0]}")
        object.__setattr__(self, "weight", w)
        object.__setattr__(self, "bias", b)
        object.__setattr__(self, "stride", _pair(self.name, "stride", self.stride, 1))
        object.__setattr__(self, "padding", _pair(self.name, "padding", self.padding, 0))

    arrays = ("weight", "bias")

    @property
    def out_channels(self) -> int:
        return self.weight.shape[0]

    def output_shape(self, shape):
        if len(shape) != 3 or shape[0] != self.weight.shape[1]:
            raise NetworkError(f"layer '{self.name}': weight shape {self.weight.shape} expects input (C={self.weight.shape[1]}, H, W), got {shape}")
        (kh, kw), (sh, sw), (ph, pw) = self.weight.shape[2:], self.stride, self.padding
        h, w = (shape[1] + 2 * ph - kh) // sh + 1, (shape[2] + 2 * pw - kw) // sw + 1
        if h < 1 or w < 1:
            raise NetworkError(f"layer '{self.name}': kernel {kh}x{kw} does not fit input {shape} with padding {self.padding}")
        return (self.weight.shape[0], h, w)


@dataclass(frozen=True, eq=False)
class BatchNorm:
    """Eval-mode batch norm over channels; folded into the layer before it."""

    name: str
    weight: np.ndarray
    bias: np.ndarray
    running_mean: np.ndarray
    running_var: np.ndarray
    eps: float = 1e-5

    def __post_init__(self):
        _check_name(self.name)
        arrays = [_array(self.name, key, getattr(self, key), 1) for key in self.arrays]
        n = arrays[0].shape[0]
        for key, a in zip(self.arrays, arrays):
            if a.shape != (n,):
                raise NetworkError(f"layer '{self.name}': {key} shape {a.shape} != ({n},)")
            object.__setattr__(self, key, a)
        if np.any(self.running_var < 0):
            raise NetworkError(f"layer '{self.name}': running_var has negative entries")
        if not (isinstance(self.eps, (float, int)) and self.eps > 0 and math.isfinite(self.eps)):
            raise NetworkError(f"layer '{self.name}': eps must be a finite number > 0, got {self.eps!r}")
        if np.any(self.running_var + self.eps <= 0):
            raise NetworkError(f"layer '{self.name}': running_var + eps must be > 0")

    arrays = ("weight", "bias", "running_mean", "running_var")

    def fold(self, layer: Linear | Conv2d) -> Linear | Conv2d:
        if layer.out_channels != self.weight.shape[0]:
            raise NetworkError(f"layer '{self.name}': {self.weight.shape[0]} channels, layer '{layer.name}' before it has {layer.out_channels}")
        scale = self.weight / np.sqrt(self.running_var + self.eps)
        weight = layer.weight * scale.reshape((-1,) + (1,) * (layer.weight.ndim - 1))
        bias = (layer.bias - self.running_mean) * scale + self.bias
        if isinstance(layer, Conv2d):
            return Conv2d(layer.name, weight, bias, layer.stride, layer.padding)
        return Linear(layer.name, weight, bias)


def _pool_shape(layer, shape):
    if len(shape) != 3:
        raise NetworkError(f"layer '{layer.name}': needs a (C, H, W) input, got {shape}")
    (kh, kw), (sh, sw) = layer.kernel, layer.stride
    h, w = (shape[1] - kh) // sh + 1, (shape[2] - kw) // sw + 1
    if h < 1 or w < 1:
        raise NetworkError(f"layer '{layer.name}': kernel {layer.kernel} larger than input {shape}")
    return (shape[0], h, w)


@dataclass(frozen=True, eq=False)
class _Pool2d:
    name: str
    kernel: tuple[int, int]
    stride: tuple[int, int] | None = None

    def __post_init__(self):
        _check_name(self.name)
        object.__setattr__(self, "kernel", _pair(self.name, "kernel", self.kernel, 1))
        object.__setattr__(self, "stride", _pair(self.name, "stride", self.kernel if self.stride is None else self.stride, 1))

    arrays = ()
    output_shape = _pool_shape


@dataclass(frozen=True, eq=False)
class AvgPool2d(_Pool2d):
    """Average pooling, no padding; ``stride`` defaults to ``kernel``."""


@dataclass(frozen=True, eq=False)
class MaxPool2d(_Pool2d):
    """Max pooling, no padding, ``stride`` defaults to ``kernel``; exact on
    burst trains (the max of bursts is the burst of the max count)."""


@dataclass(frozen=True, eq=False)
class GlobalAvgPool:
    """Mean over H and W: ``(C, H, W) -> (C, 1, 1)``."""

    name: str

    def __post_init__(self):
        _check_name(self.name)

    arrays = ()

    def output_shape(self, shape):
        if len(shape) != 3:
            raise NetworkError(f"layer '{self.name}': needs a (C, H, W) input, got {shape}")
        return (shape[0], 1, 1)


@dataclass(frozen=True, eq=False)
class Flatten:
    name: str

    def __post_init__(self):
        _check_name(self.name)

    arrays = ()

    def output_shape(self, shape):
        return (int(np.prod(shape)),)


@dataclass(frozen=True, eq=False)
class QCFS:
    """``q = clip(floor(z*L/lam + phi), 0, L)``, ``h = lam/L * q``."""

    name: str
    lam: float
    levels: int
    phi: float = 0.5

    def __post_init__(self):
        _check_name(self.name)
        lam = self.lam
        if isinstance(lam, np.ndarray) and lam.size == 1:
            lam = lam.item()
        if isinstance(lam, bool) or not isinstance(lam, (int, float, np.floating, np.integer)) or not math.isfinite(lam) or lam <= 0:
            raise NetworkError(f"layer '{self.name}': lam must be a finite number > 0, got {self.lam!r}")
        levels = self.levels
        if isinstance(levels, bool) or not isinstance(levels, (int, np.integer)) or levels < 1:
            raise NetworkError(f"layer '{self.name}': levels (L) must be an integer >= 1, got {self.levels!r}")
        phi = self.phi
        if isinstance(phi, bool) or not isinstance(phi, (int, float, np.floating)) or not (0 <= phi <= 1):
            raise NetworkError(f"layer '{self.name}': phi must be a number in [0, 1], got {self.phi!r}")
        object.__setattr__(self, "lam", float(lam))
        object.__setattr__(self, "levels", int(levels))
        object.__setattr__(self, "phi", float(phi))

    arrays = ()

    @property
    def theta(self) -> float:
        return self.lam / self.levels

    def output_shape(self, shape):
        return shape


@dataclass(frozen=True, eq=False)
class BasicBlock:
    """ResNet basic block: ``act2(bn2(conv2(act1(bn1(conv1(x))))) + shortcut(x))``.

    ``shortcut`` is None (identity) or a 1x1 ``Conv2d``; the BatchNorms are
    optional and folded at construction.
    """

    name: str
    conv1: Conv2d
    act1: QCFS
    conv2: Conv2d
    act2: QCFS
    bn1: BatchNorm | None = None
    bn2: BatchNorm | None = None
    shortcut: Conv2d | None = None
    shortcut_bn: BatchNorm | None = None

    def __post_init__(self):
        _check_name(self.name)
        for key, kind, optional in (("conv1", Conv2d, False), ("act1", QCFS, False), ("conv2", Conv2d, False),
                                    ("act2", QCFS, False), ("bn1", BatchNorm, True), ("bn2", BatchNorm, True),
                                    ("shortcut", Conv2d, True), ("shortcut_bn", BatchNorm, True)):
            value = getattr(self, key)
            if value is None and optional:
                continue
            if not isinstance(value, kind):
                raise NetworkError(f"layer '{self.name}': {key} must be a {kind.__name__}, got {type(value).__name__}")
        if self.shortcut_bn is not None and self.shortcut is None:
            raise NetworkError(f"layer '{self.name}': shortcut_bn given without a shortcut conv")
        for key, bn in (("conv1", self.bn1), ("conv2", self.bn2), ("shortcut", self.shortcut_bn)):
            if bn is not None:
                object.__setattr__(self, key, bn.fold(getattr(self, key)))
        object.__setattr__(self, "bn1", None)
        object.__setattr__(self, "bn2", None)
        object.__setattr__(self, "shortcut_bn", None)

    arrays = ()
    children = ("conv1", "act1", "conv2", "act2", "shortcut")

    def output_shape(self, shape):
        inner = self.conv2.output_shape(self.conv1.output_shape(shape))
        skip = shape if self.shortcut is None else self.shortcut.output_shape(shape)
        if inner != skip:
            raise NetworkError(f"layer '{self.name}': residual branch gives {inner} but shortcut gives {skip}"
                               + ("; an identity shortcut needs equal shapes, give a 1x1 conv shortcut" if self.shortcut is None else ""))
        return inner


Layer = Union[Linear, Conv2d, BatchNorm, AvgPool2d, MaxPool2d, GlobalAvgPool, Flatten, QCFS, BasicBlock]
LAYER_TYPES = {cls.__name__: cls for cls in (Linear, Conv2d, BatchNorm, AvgPool2d, MaxPool2d, GlobalAvgPool, Flatten, QCFS, BasicBlock)}
PRE_OPS = (MaxPool2d, AvgPool2d, GlobalAvgPool, Flatten)


# ------------------------------------------------------- compiled graph


@dataclass(frozen=True, eq=False)
class Identity:
    """Identity shortcut as a weighted op: ``y = x`` (channels kept)."""

    name: str
    channels: int

    @property
    def out_channels(self) -> int:
        return self.channels


@dataclass(frozen=True, eq=False)
class Synapse:
    """One input of a neuron layer: ``op(pre_ops(trains of source))``."""

    source: str
    pre_ops: tuple
    op: Linear | Conv2d | Identity
    input_shape: tuple[int, ...]      # shape of the source's output
    op_input_shape: tuple[int, ...]   # shape after the pre-ops


@dataclass(frozen=True, eq=False)
class NeuronLayer:
    """A layer of PASC-IF neurons (or the readout, ``activation is None``).

    ``bias`` is the sum of the synapses' biases; the neuron threshold is
    ``activation.theta`` and ``v0 = phi*theta + bias`` (bias added once).
    """

    name: str
    synapses: tuple[Synapse, ...]
    activation: QCFS | None
    output_shape: tuple[int, ...]
    bias: np.ndarray = field(repr=False)

    @property
    def is_readout(self) -> bool:
        return self.activation is None

    @property
    def levels(self) -> int | None:
        return None if self.activation is None else self.activation.levels

    @property
    def channels(self) -> int:
        return self.output_shape[0]


class Network:
    """A validated QCFS network; see the module docstring."""

    def __init__(self, input_shape, layers, input_levels: int | None = None, name: str = "network"):
        if not isinstance(name, str) or not name:
            raise NetworkError(f"network name must be a non-empty string, got {name!r}")
        try:
            input_shape = tuple(int(s) for s in input_shape)
        except (TypeError, ValueError):
            raise NetworkError(f"input_shape must be a tuple of positive ints, got {input_shape!r}") from None
        if len(input_shape) not in (1, 3) or min(input_shape) < 1:
            raise NetworkError(f"input_shape must be (features,) or (C, H, W) with sizes >= 1, got {input_shape}")
        if input_levels is not None and (isinstance(input_levels, bool) or not isinstance(input_levels, (int, np.integer)) or input_levels < 1):
            raise NetworkError(f"input_levels must be None (analog input) or an integer >= 1, got {input_levels!r}")
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
            all_names = [layer.name] + ([getattr(layer, c).name for c in layer.children if getattr(layer, c) is not None]
                                        if isinstance(layer, BasicBlock) else [])
            for n in all_names:
                if n in names:
                    raise NetworkError(f"layer '{n}': duplicate layer name")
                names.add(n)
            if isinstance(layer, BatchNorm):
                if not folded or not isinstance(folded[-1], (Linear, Conv2d)):
                    raise NetworkError(f"layer '{layer.name}': BatchNorm must follow a Conv2d or Linear layer")
                folded[-1] = layer.fold(folded[-1])
                continue
            folded.append(layer)
        if not folded:
            raise NetworkError("network has no layers")
        return folded

    def _compile(self):
        layers = self.layers
        if not isinstance(layers[-1], Linear):
            raise NetworkError(f"layer '{layers[-1].name}': the network must end with a Linear readout layer")
        source, source_shape = INPUT, self.input_shape
        shape = self.input_shape
        pre_ops: list = []
        pending = None  # weighted layer waiting for its activation
        averaged = False
        for layer in layers:
            if isinstance(layer, PRE_OPS):
                if pending is not None:
                    raise NetworkError(f"layer '{layer.name}': pooling/flatten between '{pending.layer.name}' and its activation is not supported; put it after the activation")
                if isinstance(layer, MaxPool2d) and (averaged or (source == INPUT and self.input_levels is None)):
                    raise NetworkError(f"layer '{layer.name}': MaxPool2d must act on spike trains (after an activation or count-coded input), before any average pooling")
                averaged = averaged or isinstance(layer, (AvgPool2d, GlobalAvgPool))
                shape = layer.output_shape(shape)
                pre_ops.append(layer)
            elif isinstance(layer, (Linear, Conv2d)):
                if pending is not None:
                    raise NetworkError(f"layer '{layer.name}': two weighted layers ('{pending.layer.name}', '{layer.name}') without an activation between them")
                op_input_shape = shape
                shape = layer.output_shape(shape)
                pending = _Pending(layer, tuple(pre_ops), op_input_shape)
            elif isinstance(layer, QCFS):
                if pending is None:
                    raise NetworkError(f"layer '{layer.name}': QCFS activation must follow a Conv2d or Linear layer")
                synapse = Synapse(source, pending.pre_ops, pending.layer, source_shape, pending.op_input_shape)
                yield NeuronLayer(layer.name, (synapse,), layer, shape, pending.layer.bias)
                source, source_shape, pre_ops, pending, averaged = layer.name, shape, [], None, False
            elif isinstance(layer, BasicBlock):
                if pending is not None or pre_ops or source == INPUT:
                    raise NetworkError(f"layer '{layer.name}': a BasicBlock must directly follow a QCFS activation")
                out_shape = layer.output_shape(shape)
                mid_shape = layer.conv1.output_shape(shape)
                first = layer.act1.name
                yield NeuronLayer(first, (Synapse(source, (), layer.conv1, shape, shape),), layer.act1, mid_shape, layer.conv1.bias)
                skip_op = Identity(f"{layer.name}.shortcut", shape[0]) if layer.shortcut is None else layer.shortcut
                synapses = (Synapse(first, (), layer.conv2, mid_shape, mid_shape), Synapse(source, (), skip_op, shape, shape))
                bias = layer.conv2.bias + (0 if layer.shortcut is None else layer.shortcut.bias)
                second = layer.act2.name
                yield NeuronLayer(second, synapses, layer.act2, out_shape, bias)
                source, source_shape, shape = second, out_shape, out_shape
            else:  # pragma: no cover - _fold rejects the rest
                raise NetworkError(f"layer '{layer.name}': unsupported layer type {type(layer).__name__}")
        if pending is None:
            raise NetworkError(f"layer '{layers[-1].name}': the network must end with a Linear readout layer")
        synapse = Synapse(source, pending.pre_ops, pending.layer, source_shape, pending.op_input_shape)
        yield NeuronLayer(pending.layer.name, (synapse,), None, shape, pending.layer.bias)

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

    def with_levels(self, levels) -> "Network":
        """A copy with the activations' L replaced (one entry per activation)."""
        levels = list(levels)
        acts = [l.activation for l in self.hidden_layers]
        if len(levels) != len(acts):
            raise NetworkError(f"levels list has {len(levels)} entries, the network has {len(acts)} activations ({', '.join(a.name for a in acts)})")
        mapping = {a.name: L for a, L in zip(acts, levels)}

        def relevel(layer):
            if isinstance(layer, QCFS):
                return QCFS(layer.name, layer.lam, mapping[layer.name], layer.phi)
            if isinstance(layer, BasicBlock):
                return BasicBlock(layer.name, layer.conv1, relevel(layer.act1), layer.conv2, relevel(layer.act2),
                                  shortcut=layer.shortcut)
            return layer
        return Network(self.input_shape, [relevel(l) for l in self.layers], self.input_levels, self.name)

    def summary(self) -> str:
        lines = [f"{self.name}: input {self.input_shape}, " + ("analog input" if self.input_levels is None else f"count-coded input, L_in={self.input_levels}")]
        for layer in self.neuron_layers:
            ops = " + ".join(
                "".join(f"{type(p).__name__}->" for p in s.pre_ops) + f"{type(s.op).__name__}({s.source})" for s in layer.synapses)
            act = "readout" if layer.is_readout else f"QCFS L={layer.levels} lam={layer.activation.lam:.4g}"
            lines.append(f"  {layer.name:<22} {ops:<50} {act:<28} -> {layer.output_shape}")
        return "\n".join(lines)


@dataclass(frozen=True)
class _Pending:
    layer: Linear | Conv2d
    pre_ops: tuple
    op_input_shape: tuple
