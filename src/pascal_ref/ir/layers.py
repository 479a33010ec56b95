"""The layer types of a network description, each carrying its own behaviour.

A layer is a small validated frozen dataclass, registered by :func:`layer_type`
in :data:`LAYER_TYPES` under its class name (the ``"type"`` of the model
file).  Its ``role`` tells the network compiler what to do with it, and each
role is a protocol that the engines, the file format, the cost model and the
hardware configuration call instead of testing for concrete types:

``"op"``, :class:`WeightedOp` (``Linear``, ``Conv2d``; ``Identity``, the identity shortcut of a block)
    ``output_shape(shape)``; ``apply(x, weight)``, ``y = op(x; weight)`` without
    bias, in floats or exactly on integers (the integer model passes its own
    weights); ``fan_in`` (weights per output neuron); ``synaptic_events(counts)``
    (additions when every input sends ``counts`` spikes); ``kind``, the
    connectivity that the fast kernels and the hardware key on (``"dense"``,
    ``"conv"``, ``"identity"``).
``"pre_op"``, :class:`PreOp` (``MaxPool2d``, ``AvgPool2d``, ``GlobalAvgPool``, ``Flatten``)
    parameter-free maps of the source's trains before the op: ``apply(x, integer)``
    (the integer model sums where the float model averages), ``pool_size(shape)``
    (the summed elements), ``integer_range(low, high, shape)``, ``window(shape)``
    (a pooling window, for the fast engines) and the flags ``averages``,
    ``acts_on_trains`` (exact on burst trains only) and ``flattens``.
``"activation"``, ``QCFS``
    closes a neuron layer: ``q = clip(floor(z*L/lam + phi), 0, L)``, ``theta = lam/L``.
``"batch_norm"``, ``BatchNorm``
    ``fold(op)``: merged into the op before it at construction.
``"block"``, ``BasicBlock``
    ``compile(source, shape)``: the neuron layers the block stands for.

Serialization (the ``.npz`` format, :mod:`pascal_ref.io.fileformat`) is derived
from the dataclass fields: a field annotated ``np.ndarray`` is an array named
``<layer>.<field>``, a field annotated with a layer type is a nested layer
entry, a field with ``metadata=NOT_SAVED`` is not written (a block's
BatchNorms, folded at construction), and every other field is a JSON value of
its annotated type (a tuple is a list).
"""
from __future__ import annotations

import dataclasses
import math
import re
import sys
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from pascal_ref.errors import PascalError, ResourceLimitError
from pascal_ref.ir.graph import INPUT, NeuronLayer, Synapse
from pascal_ref.ir.kernels import conv2d, exact_matmul, windows

__all__ = [
    "Layer", "WeightedOp", "PreOp", "Window", "Linear", "Conv2d", "Identity", "BatchNorm", "AvgPool2d",
    "MaxPool2d", "GlobalAvgPool", "Flatten", "QCFS", "BasicBlock", "LAYER_TYPES", "NOT_SAVED", "layer_type",
    "layer_from_dict", "NetworkError", "LevelLimitError", "MAX_LEVELS", "MAX_NAME", "NAME_PATTERN", "check_name",
    "quote",
]


class NetworkError(PascalError):
    """An invalid network description; the message names the layer and the array."""


class LevelLimitError(NetworkError, ResourceLimitError):
    """An ``L`` or ``input_levels`` above :data:`MAX_LEVELS` (a run would need that many steps per layer)."""


MAX_LEVELS = 1 << 16
"""Largest ``L`` of an activation and ``input_levels`` a network may have (in practice 1..16; 256 for
8-bit count coding): every engine runs bursts of that many steps."""

MAX_NAME = 128
"""Longest layer or network name."""

MAX_WINDOW = 1 << 20
"""Largest stride, padding or pooling kernel (a figure beyond any image a run can hold)."""

NAME_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")
"""What a layer or network name may be: ASCII letters, digits, ``_``, ``.`` and ``-``, not starting with
``.`` or ``-``.  Every consumer takes it as it is: file names (``<layer>.weights.hex``, plot stems),
Verilog identifiers (``.`` and ``-`` become ``_``), array keys ``<layer>.<field>``, terminals."""


def quote(value, limit: int = 60) -> str:
    """``repr(value)`` for an error message, at most about ``limit`` characters (a hostile value may be huge;
    an integer too long to write is given by its number of digits)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 200:
        return f"an integer of {len(str(abs(value))) if value.bit_length() < 10_000 else 'more than 3000'} digits"
    try:
        text = repr(value)
    except Exception:  # pragma: no cover - a repr that fails
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else f"{text[:limit - 20]}...({len(text)} characters)"


def check_name(name, what: str = "layer name") -> str:
    """``name`` if it is a valid layer or network name (:data:`NAME_PATTERN`, at most :data:`MAX_NAME`
    characters, not ``'input'`` for a layer), else a :class:`NetworkError` quoting it shortened."""
    if not isinstance(name, str):
        raise NetworkError(f"invalid {what} {quote(name)}: a string is needed, got {type(name).__name__}")
    if len(name) > MAX_NAME:
        raise NetworkError(f"invalid {what} {quote(name)}: {len(name)} characters, more than the limit of {MAX_NAME}")
    if not NAME_PATTERN.fullmatch(name) or (what == "layer name" and name == INPUT):
        raise NetworkError(f"invalid {what} {quote(name)}: ASCII letters, digits, '_', '.' and '-' only, not starting "
                           f"with '.' or '-'" + (f", and not '{INPUT}'" if what == "layer name" else ""))
    return name


def _finite_number(layer: str, field_name: str, value, condition: str) -> float:
    """``value`` as a finite float, or a :class:`NetworkError` (an integer too large for a float included)."""
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise NetworkError(f"layer '{layer}': {field_name} must be a finite number {condition}, got {quote(value)}")
    try:
        number = float(value)
    except OverflowError:
        raise NetworkError(f"layer '{layer}': {field_name} must be a finite number {condition}, got {quote(value)} "
                           "(too large for a float)") from None
    if not math.isfinite(number):
        raise NetworkError(f"layer '{layer}': {field_name} must be a finite number {condition}, got {quote(value)}")
    return number


def brief_int(n: int) -> str:
    """An integer for a message: in full up to 15 digits, else as a power of ten."""
    if n.bit_length() >= 10_000:
        return "more than 1e3000"
    text = str(n)
    return text if len(text) <= 15 else f"{text[0]}.{text[1:3]}e{len(text) - 1}"


def check_levels(value, what: str, where: str = "") -> int:
    """``value`` as an integer level count in ``1..MAX_LEVELS`` (``what``: ``'L'`` or ``'input_levels'``)."""
    prefix = f"{where}: " if where else ""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise NetworkError(f"{prefix}{'levels (L)' if what == 'L' else what} must be an integer >= 1, got {quote(value)}")
    if value > MAX_LEVELS:
        raise LevelLimitError(f"{prefix}{what}={brief_int(int(value))} exceeds the limit of {MAX_LEVELS}"
                              + (" levels" if what == "L" else " (the input would be a burst of that many steps)"))
    return int(value)


LAYER_TYPES: dict[str, type] = {}
"""Every layer type a network (and a model file) may hold, by class name."""

NOT_SAVED = {"saved": False}
"""Field metadata: the field is consumed at construction and not written to a model file."""


# ------------------------------------------------------------ validation


def _array(layer: str, field_name: str, value, ndim: int) -> np.ndarray:
    try:
        a = np.asarray(value)
    except Exception as error:  # pragma: no cover - exotic inputs
        raise NetworkError(f"layer '{layer}': {field_name} is not an array ({error})") from None
    if a.dtype.kind not in "iuf" or a.dtype == np.float16:
        raise NetworkError(f"layer '{layer}': {field_name} must be a float or integer array, got dtype {a.dtype}")
    if a.ndim != ndim:
        raise NetworkError(f"layer '{layer}': {field_name} must have {ndim} dimensions, got shape {a.shape}")
    if a.size == 0 and ndim > 1:
        raise NetworkError(f"layer '{layer}': {field_name} has shape {a.shape}: a zero-width layer (no neurons or no "
                           "inputs) is not a network layer")
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
        raise NetworkError(f"layer '{layer}': {field_name} must be an int or a pair of ints, got {quote(value)}")
    if min(pair) < minimum:
        raise NetworkError(f"layer '{layer}': {field_name} must be >= {minimum}, got {quote(pair)}")
    if max(pair) > MAX_WINDOW:
        raise NetworkError(f"layer '{layer}': {field_name} must be at most {MAX_WINDOW}, got {quote(pair)}")
    return pair



def _weight_and_bias(layer, ndim: int, rows: str) -> None:
    """Validate ``weight`` (``ndim`` dimensions) and ``bias`` (zeros when None, one per weight row)."""
    w = _array(layer.name, "weight", layer.weight, ndim)
    b = _array(layer.name, "bias", np.zeros(w.shape[0]) if layer.bias is None else layer.bias, 1)
    if b.shape != (w.shape[0],):
        raise NetworkError(f"layer '{layer.name}': bias shape {b.shape} does not match weight {rows} {w.shape[0]}")
    object.__setattr__(layer, "weight", w)
    object.__setattr__(layer, "bias", b)


# --------------------------------------------------------- serialization


def _members(hint) -> tuple:
    """The alternatives of a ``X | Y`` annotation (the annotation itself otherwise)."""
    return typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)


def _json_types(hint) -> tuple[type, ...]:
    """The JSON value types accepted for a field annotated ``hint`` (a tuple is a list)."""
    accepted: list[type] = []
    for member in _members(hint):
        origin = typing.get_origin(member) or member
        if origin is tuple:
            accepted.append(list)
        elif origin is float:
            accepted += [int, float]
        else:
            accepted.append(origin)
    return tuple(accepted)


def _is_layer_class(member) -> bool:
    return isinstance(member, type) and typing.get_origin(member) is None and issubclass(member, Layer)


def _derive_saved_fields(cls) -> None:
    """``cls.arrays``, ``cls.children`` and ``cls.json_fields`` from the annotations of the dataclass fields."""
    hints = typing.get_type_hints(cls)
    arrays, children, json_fields = [], [], {}
    for f in dataclasses.fields(cls):
        if f.name == "name" or not f.init or f.metadata.get("saved", True) is False:
            continue
        members = _members(hints[f.name])
        if np.ndarray in members:
            arrays.append(f.name)
        elif any(_is_layer_class(m) for m in members):
            children.append(f.name)
        else:
            json_fields[f.name] = _json_types(hints[f.name])
    cls.arrays, cls.children, cls.json_fields = tuple(arrays), tuple(children), json_fields


def layer_type(cls):
    """Class decorator of a layer type: a frozen dataclass, its saved fields derived
    from its annotations, registered in :data:`LAYER_TYPES` under its class name."""
    cls = dataclass(frozen=True, eq=False)(cls)
    _derive_saved_fields(cls)
    if cls.__name__ in LAYER_TYPES:
        raise TypeError(f"layer type {cls.__name__} is already registered ({LAYER_TYPES[cls.__name__].__module__})")
    LAYER_TYPES[cls.__name__] = cls
    return cls


ReadArray = Callable[[str, str], np.ndarray]
"""``read_array(layer_name, field) -> array``: where :meth:`Layer.from_dict` gets its arrays."""


def layer_from_dict(entry, read_array: ReadArray) -> Layer:
    """The layer a model-file entry ``{"type": ..., "name": ..., <fields>}`` describes."""
    if not isinstance(entry, dict):
        raise NetworkError(f"a layer entry must be a JSON object, got {type(entry).__name__}")
    name, kind = entry.get("name"), entry.get("type")
    if "name" not in entry:
        raise NetworkError(f"layer entry without a 'name' (fields: {quote(sorted(map(str, entry)))})")
    check_name(name)
    if not isinstance(kind, str) or kind not in LAYER_TYPES:
        raise NetworkError(f"layer '{name}': unknown layer type {quote(kind)} (known: {', '.join(sorted(LAYER_TYPES))})")
    return LAYER_TYPES[kind].from_dict(entry, read_array)


# ------------------------------------------------------------- protocols


class Layer:
    """What every layer type has (see the module docstring).

    Subclasses are frozen dataclasses whose first field is ``name``, made with
    :func:`layer_type`; ``arrays``, ``children`` and ``json_fields`` are the
    saved fields that decorator derives.
    """

    role: ClassVar[str]
    arrays: ClassVar[tuple[str, ...]] = ()
    children: ClassVar[tuple[str, ...]] = ()
    json_fields: ClassVar[dict[str, tuple[type, ...]]] = {}

    def __post_init__(self):
        check_name(self.name)

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape of one output sample for one input sample of ``shape``; raises :class:`NetworkError`."""
        raise NotImplementedError

    def sublayers(self) -> list[Layer]:
        """The layers held by this one (a block's convolutions and activations)."""
        return [getattr(self, key) for key in self.children if getattr(self, key) is not None]

    def map(self, fn: Callable[[Layer], Layer]) -> Layer:
        """``fn`` applied to every sub-layer, then to this layer (rebuilt if a sub-layer changed)."""
        layer = self
        changed = {key: getattr(self, key).map(fn) for key in self.children if getattr(self, key) is not None}
        if any(value is not getattr(self, key) for key, value in changed.items()):
            layer = dataclasses.replace(self, **changed)
        return fn(layer)

    def to_dict(self) -> dict:
        """The model-file entry: type, name, JSON fields and nested layers (arrays: :meth:`named_arrays`)."""
        entry = {"type": type(self).__name__, "name": self.name}
        for key in self.json_fields:
            value = getattr(self, key)
            entry[key] = list(value) if isinstance(value, tuple) else value
        for key in self.children:
            child = getattr(self, key)
            entry[key] = None if child is None else child.to_dict()
        return entry

    def named_arrays(self) -> dict[str, np.ndarray]:
        """Every array of the layer and its sub-layers, named ``<layer name>.<field>``."""
        arrays = {f"{self.name}.{key}": getattr(self, key) for key in self.arrays}
        for child in self.sublayers():
            arrays.update(child.named_arrays())
        return arrays

    @classmethod
    def from_dict(cls, entry: dict, read_array: ReadArray) -> Layer:
        """The inverse of :meth:`to_dict` and :meth:`named_arrays`; field errors are :class:`NetworkError`."""
        name = entry["name"]
        known = {"type", "name", *cls.json_fields, *cls.children}
        unknown = sorted(str(key) for key in entry if key not in known)
        if unknown:
            raise NetworkError(f"layer '{name}': unknown field {quote(unknown[0])} in a {cls.__name__} entry "
                               f"(its fields: {', '.join(sorted(known))})")
        values = {key: read_array(name, key) for key in cls.arrays}
        for key, accepted in cls.json_fields.items():
            if key not in entry:
                raise NetworkError(f"layer '{name}': missing field '{key}'")
            value = entry[key]
            if not isinstance(value, accepted) or (isinstance(value, bool) and bool not in accepted):
                raise NetworkError(f"layer '{name}': field '{key}' has the wrong type ({type(value).__name__})")
            values[key] = value
        defaults = {f.name: f.default for f in dataclasses.fields(cls)}
        for key in cls.children:
            if key not in entry:
                raise NetworkError(f"layer '{name}': missing field '{key}'" + (
                    "" if defaults[key] is dataclasses.MISSING else " (null when there is none)"))
            child = entry[key]
            if child is None and defaults[key] is dataclasses.MISSING:
                raise NetworkError(f"layer '{name}': field '{key}' must be a layer entry, got null")
            values[key] = None if child is None else layer_from_dict(child, read_array)
        return cls(name=name, **values)


class WeightedOp(Layer):
    """The weighted op of a synapse: ``y = op(x; weight)``, without bias (the neuron layer adds it).

    ``weight`` is the float weight, one row (first axis) per output channel,
    and ``bias`` one value per output channel (the network adds it to the
    neuron layer); :meth:`apply` takes the weight as an argument so that the
    integer model runs the same op with its integer weights (exactly: integer
    inputs and weights give int64 results).
    """

    role = "op"
    # The connectivity, when the op is exactly the standard one: "dense" (y = weight @ x), "conv"
    # (a 2-D convolution with the op's stride and padding) or "identity" (a gain per channel). The fast
    # kernels and the hardware compute these with loops of their own; None: only apply computes the op.
    kind: ClassVar[str | None] = None

    @property
    def out_channels(self) -> int:
        return self.weight.shape[0]

    def apply(self, x: np.ndarray, weight: np.ndarray) -> np.ndarray:
        """``op(x; weight)`` on a batch ``(B, *input_shape)``."""
        raise NotImplementedError

    @property
    def fan_in(self) -> int:
        """Weights per output neuron."""
        raise NotImplementedError

    def synaptic_events(self, counts: np.ndarray) -> np.ndarray:
        """Per sample ``(B,)``: additions when every input element sends ``counts`` spikes, each
        spike added once to every output neuron it connects to (zero padding connects nothing)."""
        raise NotImplementedError


@dataclass(frozen=True)
class Window:
    """A pooling window as the fast engines read it: ``reduce`` (``"max"``, or
    ``"mean"``, which the integer model sums) over ``kernel`` cells every ``stride``."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    reduce: str


class PreOp(Layer):
    """A parameter-free map of a source's trains before the weighted op (pooling, flatten).

    In the integer model a pre-op that averages sums instead (its ``1/pool``
    is folded into the next op's integer weights by the quantizer).
    """

    role = "pre_op"
    averages: ClassVar[bool] = False        # the float model averages, the integer model sums
    acts_on_trains: ClassVar[bool] = False  # exact only on burst trains: not on analog input, not after averaging
    flattens: ClassVar[bool] = False        # a pure reshape to one dimension

    def apply(self, x: np.ndarray, integer: bool) -> np.ndarray:
        """The pre-op on a batch ``(B, *shape)`` (``integer``: sums instead of means)."""
        raise NotImplementedError

    def window(self, shape: tuple[int, ...]) -> Window | None:
        """The pooling window on an input of ``shape`` (C, H, W), or None for other pre-ops."""
        return None

    def pool_size(self, shape: tuple[int, ...]) -> int:
        """Elements the integer model sums where the float model averages (1 if it does not average;
        a pre-op that averages without a window overrides this)."""
        window = self.window(shape)
        return window.kernel[0] * window.kernel[1] if self.averages else 1

    def integer_range(self, low: int, high: int, shape: tuple[int, ...]) -> tuple[int, int]:
        """Range of the integer output for integer inputs in ``[low, high]``."""
        size = self.pool_size(shape)
        return low * size, high * size


# ----------------------------------------------------------- weighted ops


@layer_type
class Linear(WeightedOp):
    """``y = weight @ x + bias``; weight ``(out_features, in_features)``."""

    kind = "dense"

    name: str
    weight: np.ndarray
    bias: np.ndarray | None = None

    def __post_init__(self):
        super().__post_init__()
        _weight_and_bias(self, 2, "rows")

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(shape) != 1 or shape[0] != self.weight.shape[1]:
            raise NetworkError(
                f"layer '{self.name}': weight shape {self.weight.shape} does not match input shape {shape}"
                + (" (add a Flatten layer)" if len(shape) != 1 else ""))
        return (self.weight.shape[0],)

    def apply(self, x, weight):
        return exact_matmul(x, weight.T)

    @property
    def fan_in(self) -> int:
        return self.weight.shape[1]

    def synaptic_events(self, counts):
        return counts.reshape(counts.shape[0], -1).sum(axis=1) * self.weight.shape[0]


@layer_type
class Conv2d(WeightedOp):
    """2-D convolution; weight ``(out, in, kh, kw)``, zero padding."""

    kind = "conv"

    name: str
    weight: np.ndarray
    bias: np.ndarray | None = None
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)

    def __post_init__(self):
        super().__post_init__()
        _weight_and_bias(self, 4, "out-channels")
        object.__setattr__(self, "stride", _pair(self.name, "stride", self.stride, 1))
        object.__setattr__(self, "padding", _pair(self.name, "padding", self.padding, 0))

    def output_shape(self, shape):
        if len(shape) != 3 or shape[0] != self.weight.shape[1]:
            raise NetworkError(f"layer '{self.name}': weight shape {self.weight.shape} expects input (C={self.weight.shape[1]}, H, W), got {shape}")
        (kh, kw), (sh, sw), (ph, pw) = self.weight.shape[2:], self.stride, self.padding
        h, w = (shape[1] + 2 * ph - kh) // sh + 1, (shape[2] + 2 * pw - kw) // sw + 1
        if h < 1 or w < 1:
            raise NetworkError(f"layer '{self.name}': kernel {kh}x{kw} does not fit input {shape} with padding {self.padding}")
        return (self.weight.shape[0], h, w)

    def apply(self, x, weight):
        return conv2d(x, weight, self.stride, self.padding)

    @property
    def fan_in(self) -> int:
        return int(np.prod(self.weight.shape[1:]))

    def synaptic_events(self, counts):
        # Events in the receptive field of each output position: a convolution with a kernel of ones.
        ones = np.ones((1,) + self.weight.shape[1:], dtype=counts.dtype)
        covered = conv2d(counts, ones, self.stride, self.padding)  # (B, 1, Ho, Wo)
        return covered.reshape(counts.shape[0], -1).sum(axis=1) * self.weight.shape[0]


@dataclass(frozen=True, eq=False)
class Identity(WeightedOp):
    """Identity shortcut of a residual block as a weighted op: ``y = x``, a gain
    of 1 per channel (its ``weight``). Made by the compiler, not a user layer."""

    kind = "identity"

    name: str
    channels: int
    weight: np.ndarray = field(init=False, repr=False)

    def __post_init__(self):
        super().__post_init__()
        gain = np.ones(self.channels)
        gain.setflags(write=False)
        object.__setattr__(self, "weight", gain)

    def output_shape(self, shape):
        return tuple(shape)

    def apply(self, x, weight):
        return x * weight.reshape((1, -1) + (1,) * (x.ndim - 2))

    @property
    def fan_in(self) -> int:
        return 1

    def synaptic_events(self, counts):
        return counts.reshape(counts.shape[0], -1).sum(axis=1)


# ------------------------------------------------------------- batch norm


@layer_type
class BatchNorm(Layer):
    """Eval-mode batch norm over channels; folded into the layer before it."""

    role = "batch_norm"

    name: str
    weight: np.ndarray
    bias: np.ndarray
    running_mean: np.ndarray
    running_var: np.ndarray
    eps: float = 1e-5

    def __post_init__(self):
        super().__post_init__()
        arrays = [_array(self.name, key, getattr(self, key), 1) for key in self.arrays]
        n = arrays[0].shape[0]
        for key, a in zip(self.arrays, arrays):
            if a.shape != (n,):
                raise NetworkError(f"layer '{self.name}': {key} shape {a.shape} != ({n},)")
            object.__setattr__(self, key, a)
        if np.any(self.running_var < 0):
            raise NetworkError(f"layer '{self.name}': running_var has negative entries")
        eps = _finite_number(self.name, "eps", self.eps, "> 0")
        if not eps > 0:
            raise NetworkError(f"layer '{self.name}': eps must be a finite number > 0, got {quote(self.eps)}")
        object.__setattr__(self, "eps", eps)
        if np.any(self.running_var + self.eps <= 0):
            raise NetworkError(f"layer '{self.name}': running_var + eps must be > 0")

    def fold(self, layer: WeightedOp) -> WeightedOp:
        """``layer`` with this batch norm merged into its weight and bias."""
        if layer.out_channels != self.weight.shape[0]:
            raise NetworkError(f"layer '{self.name}': {self.weight.shape[0]} channels, layer '{layer.name}' before it has {layer.out_channels}")
        scale = self.weight / np.sqrt(self.running_var + self.eps)
        weight = layer.weight * scale.reshape((-1,) + (1,) * (layer.weight.ndim - 1))
        bias = (layer.bias - self.running_mean) * scale + self.bias
        return dataclasses.replace(layer, weight=weight, bias=bias)


# ---------------------------------------------------------------- pre-ops


@dataclass(frozen=True, eq=False)
class _Pool2d(PreOp):
    """A 2-D pooling window, no padding; ``stride`` defaults to ``kernel``."""

    reduce: ClassVar[str]   # "max" or "mean"

    name: str
    kernel: tuple[int, int]
    stride: tuple[int, int] | None = None

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "kernel", _pair(self.name, "kernel", self.kernel, 1))
        object.__setattr__(self, "stride", _pair(self.name, "stride", self.kernel if self.stride is None else self.stride, 1))

    def output_shape(self, shape):
        if len(shape) != 3:
            raise NetworkError(f"layer '{self.name}': needs a (C, H, W) input, got {shape}")
        (kh, kw), (sh, sw) = self.kernel, self.stride
        h, w = (shape[1] - kh) // sh + 1, (shape[2] - kw) // sw + 1
        if h < 1 or w < 1:
            raise NetworkError(f"layer '{self.name}': kernel {self.kernel} larger than input {shape}")
        return (shape[0], h, w)

    def window(self, shape):
        return Window(self.kernel, self.stride, self.reduce)

    def apply(self, x, integer):
        win = windows(x, self.kernel, self.stride)
        if self.reduce == "max":
            return win.max(axis=(4, 5))
        return win.sum(axis=(4, 5)) if integer else win.mean(axis=(4, 5))


@layer_type
class AvgPool2d(_Pool2d):
    """Average pooling, no padding; ``stride`` defaults to ``kernel``."""

    reduce = "mean"
    averages = True


@layer_type
class MaxPool2d(_Pool2d):
    """Max pooling, no padding, ``stride`` defaults to ``kernel``; exact on
    burst trains (the max of bursts is the burst of the max count)."""

    reduce = "max"
    acts_on_trains = True


@layer_type
class GlobalAvgPool(PreOp):
    """Mean over H and W: ``(C, H, W) -> (C, 1, 1)``."""

    averages = True

    name: str

    def output_shape(self, shape):
        if len(shape) != 3:
            raise NetworkError(f"layer '{self.name}': needs a (C, H, W) input, got {shape}")
        return (shape[0], 1, 1)

    def window(self, shape):
        return Window((shape[1], shape[2]), (shape[1], shape[2]), "mean")

    def apply(self, x, integer):
        return x.sum(axis=(2, 3), keepdims=True) if integer else x.mean(axis=(2, 3), keepdims=True)


@layer_type
class Flatten(PreOp):
    """``(C, H, W) -> (C*H*W,)`` in channels-first (PyTorch) order."""

    flattens = True

    name: str

    def output_shape(self, shape):
        return (math.prod(int(n) for n in shape),)

    def apply(self, x, integer):
        return x.reshape(x.shape[0], -1)


# ------------------------------------------------------------- activation


@layer_type
class QCFS(Layer):
    """``q = clip(floor(z*L/lam + phi), 0, L)``, ``h = lam/L * q``."""

    role = "activation"

    name: str
    lam: float
    levels: int
    phi: float = 0.5

    def __post_init__(self):
        super().__post_init__()
        lam = _finite_number(self.name, "lam", self.lam, "> 0")
        if not lam > 0:
            raise NetworkError(f"layer '{self.name}': lam must be a finite number > 0, got {quote(self.lam)}")
        levels = check_levels(self.levels, "L", f"layer '{self.name}'")
        if lam / levels < sys.float_info.min:   # theta a subnormal or zero: 1/theta overflows
            raise NetworkError(f"layer '{self.name}': theta = lam/L = {lam!r}/{levels} is below the smallest normal "
                               f"float ({sys.float_info.min:.3g})")
        phi = self.phi
        if isinstance(phi, bool) or not isinstance(phi, (int, float, np.floating)) or not (0 <= phi <= 1):
            raise NetworkError(f"layer '{self.name}': phi must be a number in [0, 1], got {quote(self.phi)}")
        object.__setattr__(self, "lam", lam)
        object.__setattr__(self, "levels", levels)
        object.__setattr__(self, "phi", float(phi))

    @property
    def theta(self) -> float:
        return self.lam / self.levels

    def output_shape(self, shape):
        return shape


# ------------------------------------------------------------------ block


@layer_type
class BasicBlock(Layer):
    """ResNet basic block: ``act2(bn2(conv2(act1(bn1(conv1(x))))) + shortcut(x))``.

    ``shortcut`` is None (identity) or a 1x1 ``Conv2d``; the BatchNorms are
    optional and folded at construction.
    """

    role = "block"

    name: str
    conv1: Conv2d
    act1: QCFS
    conv2: Conv2d
    act2: QCFS
    bn1: BatchNorm | None = field(default=None, metadata=NOT_SAVED)
    bn2: BatchNorm | None = field(default=None, metadata=NOT_SAVED)
    shortcut: Conv2d | None = None
    shortcut_bn: BatchNorm | None = field(default=None, metadata=NOT_SAVED)

    def __post_init__(self):
        super().__post_init__()
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

    def output_shape(self, shape):
        inner = self.conv2.output_shape(self.conv1.output_shape(shape))
        skip = shape if self.shortcut is None else self.shortcut.output_shape(shape)
        if inner != skip:
            raise NetworkError(f"layer '{self.name}': residual branch gives {inner} but shortcut gives {skip}"
                               + ("; an identity shortcut needs equal shapes, give a 1x1 conv shortcut" if self.shortcut is None else ""))
        return inner

    def compile(self, source: str, shape: tuple[int, ...]) -> tuple[NeuronLayer, NeuronLayer]:
        """``act1(conv1(source))``, then ``act2(conv2(act1) + shortcut(source))``: the second
        neuron layer has two synapses and the sum of their biases."""
        out_shape = self.output_shape(shape)
        mid_shape = self.conv1.output_shape(shape)
        first = NeuronLayer(self.act1.name, (Synapse(source, (), self.conv1, shape, shape),), self.act1, mid_shape,
                            self.conv1.bias)
        skip = Identity(f"{self.name}.shortcut", shape[0]) if self.shortcut is None else self.shortcut
        synapses = (Synapse(first.name, (), self.conv2, mid_shape, mid_shape), Synapse(source, (), skip, shape, shape))
        bias = self.conv2.bias + (0 if self.shortcut is None else self.shortcut.bias)
        return first, NeuronLayer(self.act2.name, synapses, self.act2, out_shape, bias)
