"""Fast engines for the integer model, bit-exact with :mod:`pascal_ref.golden.snn`.

Two engines, both tested equal (every count, every logit, and for the
timestep engine the final ``v`` and ``c`` of every neuron) to the readable
reference on random networks:

:func:`count_engine`
    The closed form of the theorem (``docs/semantics.md`` §2),
    one GEMM per synapse: ``q = clip(floor((S + v0) / theta), 0, L)`` with
    ``S = sum_k W_int[c, k] * x_k`` over the source levels.  Activations are
    kept channels-last (``(B, H, W, C)``) so a convolution is one im2col
    copy and one BLAS matrix product whose output is already the next
    layer's layout.

:func:`timestep_engine`
    The three stages of every PASC-IF neuron, step by step, in Numba.
    Synaptic work is event driven: a source neuron with count ``k`` sends
    a spike at steps ``0..k-1`` (burst) and each spike adds one weight
    column to the current of its targets; silent neurons cost nothing.
    Traces (``v``, ``c`` after every step) stay in the reference
    (``simulate(..., engine="timestep", trace=True)``).

Exactness of BLAS (why a float GEMM returns the exact integer result)
-------------------------------------------------------------------------
Every operand is an integer: weights ``w`` (``weight_bits`` wide), source
levels ``x`` in ``[input_min, input_max]`` (the quantizer's widths; average
pooling sums).  A float type with a ``p``-bit significand represents every
integer of magnitude ``<= 2**p`` exactly (``p = 24`` for float32, ``53`` for
float64).  Whatever order and blocking BLAS uses (and FMA or not), every
intermediate value is a sum of a subset of the products ``w_ck x_k``, so its
magnitude is at most

    bound_c = sum_k |w_ck| * max(|input_min|, |input_max|)

(summed over the synapses of a layer, as their partial results are added
too).  If ``max_c bound_c < 2**p`` every product and every partial sum is an
integer representable in the type, every rounding is the identity, and the
float result is the exact integer.  :func:`gemm_precision` picks float32
when the bound is below ``2**24``, float64 below ``2**53``, and exact int64
(numpy integer matmul, no BLAS) beyond.  Strassen-like or Winograd
algorithms would break this argument: numpy's ``matmul`` (OpenBLAS/MKL
``gemm``) uses neither, and this module never calls a convolution library.

Average pooling sums levels before the GEMM (the quantizer's ``input_max``
already counts the summed window), max pooling only selects, and the
partial results of several synapses are added in the same type: all are
sums of the same terms, inside the same bound.

The neuron division is exact as well: with ``|S + v0| < 2**52`` and
``(L + 1) * theta < 2**52`` (checked per layer), ``floor((S + v0) / theta)``
is estimated in float64 and settled by one exact comparison each way (see
``_qcfs_levels_float``); otherwise an int64 kernel divides.
"""
from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field

import numba
import numpy as np

from pascal_ref.errors import PascalError
from pascal_ref.golden.quantize import IntegerNetwork
from pascal_ref.golden.snn import SnnResult
from pascal_ref.ir.network import INPUT, AvgPool2d, Conv2d, Flatten, GlobalAvgPool, Identity, Linear, MaxPool2d, Network
from pascal_ref.numeric import FLOAT32_EXACT_LIMIT, FLOAT64_EXACT_LIMIT, INT64_LIMIT

__all__ = ["FLOAT32_EXACT_LIMIT", "FLOAT64_EXACT_LIMIT", "PRECISIONS", "gemm_precision", "CountPlan", "count_plan",
           "count_engine", "timestep_engine", "TimestepStats", "float_ann_fast"]

PRECISIONS = ("auto", "float32", "float64", "int64")
_DTYPES = {"float32": np.float32, "float64": np.float64, "int64": np.int64}
_IM2COL_BUDGET = 1 << 23   # elements of one im2col block (32 MiB in float32), reused


def gemm_precision(bound: int, requested: str = "auto") -> str:
    """The cheapest exact accumulation type for partial sums of magnitude ``<= bound``.

    ``requested`` forces a type; forcing one that cannot hold ``bound``
    exactly is an error, never a silent rounding.
    """
    if requested not in PRECISIONS:
        raise PascalError(f"precision must be one of {', '.join(PRECISIONS)}, got {requested!r}")
    limits = {"float32": FLOAT32_EXACT_LIMIT, "float64": FLOAT64_EXACT_LIMIT, "int64": INT64_LIMIT}
    if requested != "auto":
        if bound >= limits[requested]:
            raise OverflowError(f"partial sums up to {bound} are not exact in {requested} (limit {limits[requested]})")
        return requested
    for name in ("float32", "float64", "int64"):
        if bound < limits[name]:
            return name
    raise OverflowError(f"partial sums up to {bound} exceed int64")


# ----------------------------------------------------------- layouts


def _channels_last(x: np.ndarray) -> np.ndarray:
    """``(B, C, H, W) -> (B, H, W, C)``; 1-D samples unchanged."""
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if x.ndim == 4 else x


def _channels_first(x: np.ndarray) -> np.ndarray:
    return x.transpose(0, 3, 1, 2) if x.ndim == 4 else x


def _flatten_permutation(shape: tuple[int, ...]) -> np.ndarray:
    """Index ``j`` of a channels-last flattened ``(C, H, W)`` -> its channels-first index."""
    if len(shape) != 3:
        return np.arange(int(np.prod(shape)))
    c, h, w = shape
    return np.arange(c * h * w).reshape(c, h, w).transpose(1, 2, 0).reshape(-1)


def _pre_ops_channels_last(x: np.ndarray, pre_ops, integer: bool) -> np.ndarray:
    """Pooling and flatten on a channels-last batch (integer: average pooling sums)."""
    for op in pre_ops:
        if isinstance(op, (MaxPool2d, AvgPool2d)):
            (kh, kw), (sh, sw) = op.kernel, op.stride
            b, h, w, c = x.shape
            ho, wo = (h - kh) // sh + 1, (w - kw) // sw + 1
            if (kh, kw) == (sh, sw):   # tiling windows: a reshape
                tiles = x[:, :ho * kh, :wo * kw].reshape(b, ho, kh, wo, kw, c)
                if isinstance(op, MaxPool2d):
                    x = tiles.max(axis=(2, 4))
                else:
                    x = tiles.sum(axis=(2, 4)) if integer else tiles.mean(axis=(2, 4), dtype=x.dtype)
                continue
            acc = None
            for i in range(kh):
                for j in range(kw):
                    part = x[:, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw]
                    if acc is None:
                        acc = part.copy()
                    elif isinstance(op, MaxPool2d):
                        np.maximum(acc, part, out=acc)
                    else:
                        acc += part
            x = acc if isinstance(op, MaxPool2d) or integer else acc / x.dtype.type(kh * kw)
        elif isinstance(op, GlobalAvgPool):
            x = x.sum(axis=(1, 2), keepdims=True) if integer else x.mean(axis=(1, 2), keepdims=True, dtype=x.dtype)
        elif isinstance(op, Flatten):
            x = x.reshape(x.shape[0], -1)   # channels-last order; the Linear weight is permuted to match
        else:  # pragma: no cover - the network validates pre-ops
            raise TypeError(f"unsupported pre-op {type(op).__name__}")
    return x


def _flatten_source_shape(synapse) -> tuple[int, ...] | None:
    """Shape (C, H, W) that a Flatten before a Linear op flattens, or None."""
    shape = tuple(synapse.input_shape)
    for op in synapse.pre_ops:
        if isinstance(op, Flatten):
            return shape
        shape = op.output_shape(shape)
    return None


# ------------------------------------------------------------- GEMMs


@numba.njit(cache=True)
def _im2col_into(x, kh, kw, sh, sw, ph, pw, cols):
    """Channels-last patches of ``x`` ``(B, H, W, C)`` into ``cols`` ``(B*Ho*Wo, kh*kw*C)``.

    Padding is written as zeros in the same pass (no padded copy of ``x``).
    Serial: it runs between two BLAS calls whose threads are still spinning.
    """
    batch, h, w, c = x.shape
    out_h = (h + 2 * ph - kh) // sh + 1
    out_w = (w + 2 * pw - kw) // sw + 1
    r = 0
    for b in range(batch):
        for oy in range(out_h):
            for ox in range(out_w):
                k = 0
                for ky in range(kh):
                    y = oy * sh - ph + ky
                    for kx in range(kw):
                        xx = ox * sw - pw + kx
                        if 0 <= y < h and 0 <= xx < w:
                            for ch in range(c):
                                cols[r, k + ch] = x[b, y, xx, ch]
                        else:
                            for ch in range(c):
                                cols[r, k + ch] = 0
                        k += c
                r += 1


_workspace = threading.local()


def _scratch(rows: int, columns: int, dtype) -> np.ndarray:
    """A reused per-thread buffer: fresh 100 MB arrays cost a page fault per 4 KiB on every call."""
    key = np.dtype(dtype).str
    buffers = getattr(_workspace, "buffers", None)
    if buffers is None:
        buffers = _workspace.buffers = {}
    size = rows * columns
    buffer = buffers.get(key)
    if buffer is None or buffer.size < size:
        buffer = buffers[key] = np.empty(size, dtype)
    return buffer[:size].reshape(rows, columns)


@dataclass(frozen=True, eq=False)
class _Gemm:
    """One synapse's weighted op as a matrix product on channels-last input."""

    kind: str                  # "conv", "linear" or "identity"
    matrix: np.ndarray         # (K, O) in the accumulation dtype; identity: (C,) gains
    kernel: tuple = (1, 1)
    stride: tuple = (1, 1)
    padding: tuple = (0, 0)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        dtype = self.matrix.dtype
        if self.kind == "identity":
            return x.astype(dtype, copy=False) * self.matrix
        if self.kind == "linear":
            return _matmul(x.astype(dtype, copy=False), self.matrix)
        b, h, w, _ = x.shape
        (kh, kw), (sh, sw), (ph, pw) = self.kernel, self.stride, self.padding
        ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
        out = np.empty((b, ho, wo, self.matrix.shape[1]), dtype)
        if self.kernel == (1, 1) and self.padding == (0, 0):
            flat = np.ascontiguousarray(x[:, ::sh, ::sw], dtype=dtype).reshape(-1, x.shape[3])
            out.reshape(-1, out.shape[3])[:] = _matmul(flat, self.matrix)
            return out
        per_sample = ho * wo * self.matrix.shape[0]
        block = max(1, _IM2COL_BUDGET // per_sample)
        for start in range(0, b, block):
            part = x[start:start + block]
            cols = _scratch(part.shape[0] * ho * wo, self.matrix.shape[0], dtype)
            _im2col_into(np.ascontiguousarray(part), kh, kw, sh, sw, ph, pw, cols)
            out[start:start + block].reshape(-1, out.shape[3])[:] = _matmul(cols, self.matrix)
        return out


def _matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b``: BLAS gemm for floats (exact under the module's bound), numpy's integer loop for int64.

    With fewer rows than columns (the deep layers: few pixels, many
    channels; the classifier) OpenBLAS is several times faster on the
    transposed problem ``(b.T @ a.T).T``; the products and the partial sums
    are the same terms, so the exactness argument is unchanged.
    """
    if a.dtype.kind == "f" and a.shape[0] < 2 * b.shape[1]:
        return (b.T @ a.T).T
    return a @ b


def _synapse_bound(weight: np.ndarray, input_min: int, input_max: int) -> np.ndarray:
    """Per output channel ``sum_k |w_ck| * max|x|``, as exact Python integers (object array)."""
    flat = weight.reshape(weight.shape[0], -1)
    largest = int(np.abs(flat).max(initial=0))
    if largest * flat.shape[1] < 2 ** 62:       # the int64 row sums cannot overflow
        sums = np.abs(flat.astype(np.int64)).sum(axis=1).astype(object)
    else:                                       # pragma: no cover - weights beyond the quantizer's 24 bits
        sums = np.abs(flat.astype(object)).sum(axis=1)
    return sums * max(abs(int(input_min)), abs(int(input_max)))


def _gemm_for(synapse, weight: np.ndarray, dtype) -> _Gemm:
    op = synapse.op
    if isinstance(op, Identity):
        return _Gemm("identity", np.asarray(weight, dtype).reshape(-1))
    if isinstance(op, Conv2d):
        out_ch = weight.shape[0]
        matrix = np.ascontiguousarray(weight.transpose(2, 3, 1, 0).reshape(-1, out_ch), dtype)   # (kh*kw*C, O)
        return _Gemm("conv", matrix, tuple(weight.shape[2:]), tuple(op.stride), tuple(op.padding))
    if isinstance(op, Linear):
        flat_shape = _flatten_source_shape(synapse)
        columns = weight if flat_shape is None else weight[:, _flatten_permutation(flat_shape)]
        return _Gemm("linear", np.ascontiguousarray(columns.T, dtype))
    raise TypeError(f"unsupported op {type(op).__name__}")  # pragma: no cover


# ------------------------------------------------------ count engine


@dataclass(frozen=True, eq=False)
class _CountLayer:
    name: str
    sources: tuple[str, ...]
    pre_ops: tuple[tuple, ...]
    gemms: tuple[_Gemm, ...]
    precision: str
    bound: int
    theta: np.ndarray      # int64 (O,)
    v0: np.ndarray         # int64 (O,)
    bias: np.ndarray       # int64 (O,)
    levels: int | None
    output_shape: tuple
    float_activation: bool     # the float64 activation kernel is exact for this layer


@dataclass(frozen=True, eq=False)
class CountPlan:
    """An :class:`IntegerNetwork` prepared for :func:`count_engine` (weights in GEMM layout)."""

    model: IntegerNetwork
    layers: tuple[_CountLayer, ...]

    def precisions(self) -> dict[str, str]:
        """Accumulation type of every layer (see the module docstring)."""
        return {layer.name: layer.precision for layer in self.layers}

    def bounds(self) -> dict[str, int]:
        """Worst-case magnitude of any partial sum of every layer."""
        return {layer.name: layer.bound for layer in self.layers}


def count_plan(model: IntegerNetwork, precision: str = "auto") -> CountPlan:
    """Prepare an integer network for :func:`count_engine`.

    ``precision`` forces one accumulation type for every layer; a layer
    whose bound does not fit raises ``OverflowError``.
    """
    if not isinstance(model, IntegerNetwork):
        raise TypeError(f"count_plan: expected an IntegerNetwork, got {type(model).__name__}")
    layers = []
    for layer in model.layers:
        bound = 0
        per_channel = np.zeros(len(layer.theta), dtype=object)
        for synapse in layer.synapses:
            per_channel = per_channel + _synapse_bound(synapse.weight, synapse.input_min, synapse.input_max)
        bound = int(per_channel.max())
        try:
            chosen = gemm_precision(bound, precision)
        except OverflowError as error:
            raise OverflowError(f"layer '{layer.name}': {error}") from None
        dtype = _DTYPES[chosen]
        gemms = tuple(_gemm_for(s, s.weight, dtype) for s in layer.synapses)
        v0_max = int(np.abs(layer.v0).max())
        float_activation = (chosen != "int64" and bound + v0_max < 2 ** 52 and layer.levels is not None
                            and (layer.levels + 1) * int(layer.theta.max()) < 2 ** 52)
        layers.append(_CountLayer(layer.name, tuple(s.source for s in layer.synapses),
                                  tuple(s.pre_ops for s in layer.synapses), gemms, chosen, bound,
                                  layer.theta.astype(np.int64), layer.v0.astype(np.int64),
                                  layer.bias.astype(np.int64), layer.levels, tuple(layer.output_shape),
                                  float_activation))
    return CountPlan(model, tuple(layers))


@numba.njit(cache=True)   # serial: BLAS threads still spin right after the GEMM
def _qcfs_levels_int(acc, v0, theta, levels, out):
    """``out[r, c] = clip(floor((acc[r, c] + v0[c]) / theta[c]), 0, levels)`` in int64 (any width)."""
    rows, channels = acc.shape
    for r in range(rows):
        for c in range(channels):
            q = (np.int64(acc[r, c]) + v0[c]) // theta[c]
            out[r, c] = min(max(q, 0), levels)


@numba.njit(cache=True)
def _qcfs_levels_float(acc, v0, theta, levels, out):
    """The same in float64, branch-free so that it vectorizes; exact when ``|acc + v0| < 2**52``
    and ``(levels + 1) * theta < 2**52`` (:func:`count_plan` checks both).

    ``a = acc + v0`` is an exact integer.  ``e = a * fl(1/theta)`` has a relative
    error below ``2**-52``; with ``|a| < 2**52`` that is less than ``1/theta``, the
    smallest distance of a non-integer ``a/theta`` to an integer, so ``floor(e)``
    is the true quotient ``q`` or, when ``a/theta`` is an integer, possibly ``q - 1``.
    After clipping, one exact comparison each way (``q*theta`` and
    ``(q+1)*theta`` are exact integers) settles it.
    """
    rows, channels = acc.shape
    v0f = v0.astype(np.float64)
    thetaf = theta.astype(np.float64)
    inverse = 1.0 / thetaf
    top = float(levels)
    for r in range(rows):
        for c in range(channels):
            a = np.float64(acc[r, c]) + v0f[c]
            q = min(max(np.floor(a * inverse[c]), 0.0), top)
            q = q - 1.0 if (q > 0.0) and (q * thetaf[c] > a) else q
            q = q + 1.0 if (q < top) and ((q + 1.0) * thetaf[c] <= a) else q
            out[r, c] = q


def count_engine(model: IntegerNetwork | CountPlan, x=None, *, x_int=None, counts: bool = True,
                 precision: str = "auto") -> SnnResult:
    """The integer count engine: equal to ``simulate(model, x, engine="count")`` bit for bit.

    Parameters
    ----------
    model : IntegerNetwork or a :class:`CountPlan` made by :func:`count_plan` (reuse it
        across batches to avoid re-laying out the weights).
    x : float batch, encoded by :meth:`IntegerNetwork.encode_input`; or ``x_int``.
    counts : return every layer's counts (int64, ``(B, *shape)`` channels-first like the
        reference); ``False`` keeps only the logits (less memory).
    """
    plan = model if isinstance(model, CountPlan) else count_plan(model, precision)
    net = plan.model
    if (x is None) == (x_int is None):
        raise PascalError("count_engine: give exactly one of x (float batch) or x_int (integer levels)")
    x_int = net.encode_input(x) if x_int is None else net.check_input_levels(x_int)
    values = {INPUT: _channels_last(x_int)}
    result_counts = {}
    remaining = _last_use(plan)
    for index, layer in enumerate(plan.layers):
        acc = None
        for source, pre_ops, gemm in zip(layer.sources, layer.pre_ops, layer.gemms):
            part = gemm(_pre_ops_channels_last(values[source], pre_ops, integer=True))
            acc = part if acc is None else np.add(acc, part, out=acc)
        for source in layer.sources:
            if remaining[source] == index:
                del values[source]
        if layer.levels is None:
            logits = acc.astype(np.int64).reshape(acc.shape[0], -1) + layer.bias
            scale = net.readout.scale
            return SnnResult(logits=logits / scale, counts=result_counts, integer_logits=logits)
        store = np.float32 if layer.levels < FLOAT32_EXACT_LIMIT else np.int64
        q = np.empty(acc.shape, store)
        channels = acc.shape[-1]
        kernel = _qcfs_levels_float if layer.float_activation else _qcfs_levels_int
        kernel(acc.reshape(-1, channels), layer.v0, layer.theta, layer.levels, q.reshape(-1, channels))
        values[layer.name] = q
        if counts:
            result_counts[layer.name] = _channels_first(q).astype(np.int64)
    raise AssertionError("network without readout")  # pragma: no cover


def _last_use(plan) -> dict[str, int]:
    last = {}
    for index, layer in enumerate(plan.layers):
        for source in layer.sources:
            last[source] = index
    return last


# ------------------------------------------------ fast float32 ANN


def float_ann_fast(network: Network, x, dtype=np.float32) -> np.ndarray:
    """The float QCFS ANN on the same im2col + BLAS kernels, for benchmarks.

    Same math as :func:`pascal_ref.golden.ann.float_ann` (``q = clip(floor(z/lam*L + phi), 0, L)``,
    ``h = q * lam/L``) in ``dtype``; returns the logits.  Float results depend on the
    summation order, so this path is compared with tolerance, never used for verification.
    """
    from pascal_ref.golden.ann import check_input, input_levels_of
    x = check_input(network, x)
    if network.input_levels is not None:
        x = input_levels_of(network, x) / network.input_levels
    values = {INPUT: _channels_last(x.astype(dtype))}
    plan = _float_plan(network, dtype)
    for layer, gemms in zip(network.neuron_layers, plan):
        z = None
        for synapse, gemm in zip(layer.synapses, gemms):
            part = gemm(_pre_ops_channels_last(values[synapse.source], synapse.pre_ops, integer=False))
            z = part if z is None else np.add(z, part, out=z)
        if layer.is_readout:
            z += layer.bias.astype(dtype)
            return z.reshape(z.shape[0], -1)
        act = layer.activation
        constants = np.array([act.lam, act.levels, act.phi, act.theta], dtype)
        _qcfs_values(z.reshape(-1, z.shape[-1]), layer.bias.astype(dtype), constants)
        values[layer.name] = z
    raise AssertionError("network without readout")  # pragma: no cover


@numba.njit(cache=True)
def _qcfs_values(z, bias, constants):
    """In place, in the dtype of ``z``: ``h = clip(floor((z + b) / lam * L + phi), 0, L) * theta``.

    One pass (the numpy expression takes six); the operations and their
    order are those of :func:`pascal_ref.golden.ann.float_ann`.
    """
    lam, levels, phi, theta = constants[0], constants[1], constants[2], constants[3]
    zero = constants[0] - constants[0]
    rows, channels = z.shape
    for r in range(rows):
        for c in range(channels):
            scaled = (z[r, c] + bias[c]) / lam * levels + phi
            z[r, c] = min(max(np.floor(scaled), zero), levels) * theta


_float_plans: dict = {}


def _float_plan(network: Network, dtype):
    key = (id(network), np.dtype(dtype).str)
    cached = _float_plans.get(key)
    if cached is not None and cached[0] is network:
        return cached[1]
    plan = []
    for layer in network.neuron_layers:
        gemms = []
        for synapse in layer.synapses:
            weight = np.ones(synapse.op.channels) if isinstance(synapse.op, Identity) else synapse.op.weight
            gemms.append(_gemm_for(synapse, weight, dtype))
        plan.append(gemms)
    _float_plans.clear()   # one network at a time: the cache only serves repeated batches
    _float_plans[key] = (network, plan)
    return plan


# --------------------------------------------------- timestep engine
#
# Per layer and sample: the stage-1 currents ``I[t, n]`` are built by
# scattering the source spikes of every step (event driven), then the
# neurons run their three stages.  Neurons are indexed channels-last
# (``(y * W + x) * C + c``), so a spike adds one contiguous weight row to
# the currents of its targets.

_CONV, _LINEAR, _IDENTITY = 0, 1, 2


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
    kind: int
    weight: np.ndarray         # conv (kh*kw*C, O); linear (K, O); identity (1, C)
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


@dataclass
class TimestepStats:
    """What a :func:`timestep_engine` run did, per layer.

    ``spikes[name]``: transmitted (stage-3) spikes of the layer's neurons.
    ``events[name]``: synaptic events delivered *into* the layer: one per
    spike per synapse (weight) it crosses, as performed (average pooling
    sums spikes before the weights, so a pooled spike is one event per
    weight of the pooled cell).  ``macs[name]``: multiply-accumulates of the
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


def _sum_pool_map(pre_ops, shape) -> tuple[tuple, np.ndarray | None, tuple]:
    """Split pre-ops into leading max pools and a sparse sum map (channels-last indices).

    Returns ``(max_pools, map, op_input_shape)``, ``map`` a scipy CSR matrix
    ``(source neurons, op inputs)`` of multiplicities, or None when the rest
    is only Flatten (the identity on channels-last flat indices).
    """
    import scipy.sparse as sparse
    max_pools = []
    shape = tuple(shape)
    ops = list(pre_ops)
    while ops and isinstance(ops[0], MaxPool2d):
        max_pools.append(ops[0])
        shape = ops.pop(0).output_shape(shape)
    matrix = None
    for op in ops:
        out_shape = op.output_shape(shape)
        if isinstance(op, Flatten):
            shape = out_shape
            continue
        c, h, w = shape
        members = np.arange(h * w * c).reshape(h, w, c)
        if isinstance(op, GlobalAvgPool):
            rows, cols = members.reshape(-1), np.tile(np.arange(c), h * w)
        elif isinstance(op, AvgPool2d):
            (kh, kw), (sh, sw) = op.kernel, op.stride
            _, ho, wo = out_shape
            cells = np.arange(ho * wo * c).reshape(ho, wo, c)
            rows = np.concatenate([members[i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw].reshape(-1)
                                   for i in range(kh) for j in range(kw)])
            cols = np.tile(cells.reshape(-1), kh * kw)
        else:  # pragma: no cover - max pools after averaging are rejected by the network
            raise TypeError(f"unsupported pre-op {type(op).__name__} after average pooling")
        step = sparse.csr_matrix((np.ones(len(rows), np.int64), (rows, cols)),
                                 shape=(h * w * c, int(np.prod(out_shape))))
        matrix = step if matrix is None else (matrix @ step).tocsr()
        shape = out_shape
    return tuple(max_pools), matrix, shape


def _timestep_plan(model: IntegerNetwork) -> tuple[_TsLayer, ...]:
    cached = getattr(model, "_fast_timestep_plan", None)
    if cached is not None:
        return cached
    plan = count_plan(model)
    layers = []
    for layer, counted in zip(model.layers, plan.layers):
        dtype = np.int32 if counted.bound < 2 ** 31 else np.int64
        synapses = []
        for synapse in layer.synapses:
            analog = synapse.source == INPUT and model.input_levels is None
            max_pools, matrix, op_shape = _sum_pool_map(synapse.pre_ops, synapse.input_shape)
            if matrix is None:
                ptr, index, mult = np.zeros(1, np.int64), np.zeros(1, np.int64), np.zeros(1, np.int64)
            else:
                matrix.sort_indices()
                ptr, index, mult = (matrix.indptr.astype(np.int64), matrix.indices.astype(np.int64),
                                    matrix.data.astype(np.int64))
            op = synapse.op
            weight = synapse.weight
            geometry = np.zeros(8, np.int64)
            if isinstance(op, Conv2d):
                kind = _CONV
                matrix_w = weight.transpose(2, 3, 1, 0).reshape(-1, weight.shape[0])
                (kh, kw), (sh, sw), (ph, pw) = weight.shape[2:], op.stride, op.padding
                geometry[:] = (kh, kw, sh, sw, ph, pw, layer.output_shape[1], layer.output_shape[2])
                op_input = (op_shape[1], op_shape[2], op_shape[0])
            elif isinstance(op, Linear):
                kind = _LINEAR
                flat_shape = _flatten_source_shape(synapse)
                columns = weight if flat_shape is None else weight[:, _flatten_permutation(flat_shape)]
                matrix_w = columns.T
                op_input = (1, 1, weight.shape[1])
            else:
                kind = _IDENTITY
                matrix_w = weight.reshape(1, -1)
                op_input = (op_shape[1], op_shape[2], op_shape[0])
            synapses.append(_TsSynapse(synapse.source, analog, 1 if analog else model.source_levels(synapse.source),
                                       max_pools, matrix is not None, ptr, index, mult, kind,
                                       np.ascontiguousarray(matrix_w, dtype), op_input, geometry))
        shape = tuple(layer.output_shape)
        layers.append(_TsLayer(layer.name, tuple(synapses), layer.theta.astype(np.int64), layer.v0.astype(np.int64),
                               layer.bias.astype(np.int64), layer.levels, int(layer.input_steps), shape[0],
                               int(np.prod(shape)), shape, dtype))
    plan_tuple = tuple(layers)
    model._fast_timestep_plan = plan_tuple   # cached on the model: it is immutable
    return plan_tuple


@numba.njit(parallel=True, cache=True)
def _scatter(src, source_steps, analog, use_map, map_ptr, map_index, map_mult, kind, weight,
             op_h, op_w, op_c, geometry, currents, events):
    """Add every spike of ``src`` (counts, or analog values) to the step currents of its targets.

    ``currents[b, t, n]`` (channels-last targets); ``events[b]`` receives the
    number of weight additions done for sample ``b``.
    """
    batch, sources = src.shape
    out_ch = weight.shape[1]
    kh, kw, sh, sw, ph, pw, out_h, out_w = (geometry[0], geometry[1], geometry[2], geometry[3],
                                            geometry[4], geometry[5], geometry[6], geometry[7])
    for b in numba.prange(batch):
        done = 0
        for n in range(sources):
            k = src[b, n]
            if k == 0:
                continue
            if analog:
                steps = 1
                value = k
            else:
                steps = min(k, source_steps)
                value = 1
            lo, hi = (map_ptr[n], map_ptr[n + 1]) if use_map else (0, 1)
            for m in range(lo, hi):
                i = map_index[m] if use_map else n
                gain = value * (map_mult[m] if use_map else 1)
                if kind == 1:      # linear: every output
                    for t in range(steps):
                        row = currents[b, t]
                        for o in range(out_ch):
                            row[o] += gain * weight[i, o]
                    done += steps * out_ch
                elif kind == 2:    # identity: the same neuron
                    c = i % op_c
                    for t in range(steps):
                        currents[b, t, i] += gain * weight[0, c]
                    done += steps
                else:              # convolution: the outputs whose window holds input i
                    c = i % op_c
                    x = (i // op_c) % op_w
                    y = i // (op_c * op_w)
                    for ky in range(kh):
                        ny = y + ph - ky
                        if ny < 0 or ny % sh != 0 or ny // sh >= out_h:
                            continue
                        oy = ny // sh
                        for kx in range(kw):
                            nx = x + pw - kx
                            if nx < 0 or nx % sw != 0 or nx // sw >= out_w:
                                continue
                            ox = nx // sw
                            row_w = (ky * kw + kx) * op_c + c
                            base = (oy * out_w + ox) * out_ch
                            for t in range(steps):
                                row = currents[b, t]
                                for o in range(out_ch):
                                    row[base + o] += gain * weight[row_w, o]
                            done += steps * out_ch
        events[b] += done


@numba.njit(parallel=True, cache=True)
def _neuron_stages(currents, theta, v0, channels, levels, settle, counts, v_out, c_out):
    """Stages 1-3 of every neuron (channels-last index ``n = p * channels + channel``)."""
    batch, steps, neurons = currents.shape
    pixels = neurons // channels
    for b in numba.prange(batch):
        v = v_out[b]
        c = c_out[b]
        for p in range(pixels):
            for ch in range(channels):
                v[p * channels + ch] = v0[ch]
                c[p * channels + ch] = 0
        for t in range(steps):           # stage 1: integrate; spikes stay inside
            row = currents[b, t]
            for p in range(pixels):
                base = p * channels
                for ch in range(channels):
                    th = theta[ch]
                    value = v[base + ch] + row[base + ch]
                    fire = value >= th
                    v[base + ch] = value - th if fire else value
                    c[base + ch] += 1 if fire else 0
        for p in range(pixels):          # stage 2: settle, excitatory or inhibitory
            for ch in range(channels):
                n = p * channels + ch
                th = theta[ch]
                value = v[n]
                count = c[n]
                for s in range(settle):
                    if value >= th:
                        value -= th
                        count += 1
                    elif value < 0:
                        value += th
                        count -= 1
                    else:
                        break            # stable: later steps change nothing
                v[n] = value
                c[n] = count
                counts[b, n] = min(max(count, 0), levels)   # stage 3: a burst of this length


def timestep_engine(model: IntegerNetwork, x=None, *, x_int=None, state: bool = False, return_stats: bool = False):
    """The integer timestep engine: equal to ``simulate(model, x, engine="timestep")`` bit for bit.

    Every neuron runs stage 1 step by step on currents built from the
    spikes of each step (event driven), then stages 2 and 3.  With
    ``state=True`` the result's ``traces[name]`` is a dict with the final
    membrane ``v`` and signed counter ``c`` (int64, channels-first; the
    reference's ``PascIfResult.v``/``.c``).  With ``return_stats=True``
    returns ``(SnnResult, TimestepStats)``.
    """
    if not isinstance(model, IntegerNetwork):
        raise TypeError(f"timestep_engine: expected an IntegerNetwork, got {type(model).__name__}")
    if (x is None) == (x_int is None):
        raise PascalError("timestep_engine: give exactly one of x (float batch) or x_int (integer levels)")
    started = time.perf_counter()
    plan = _timestep_plan(model)
    x_int = model.encode_input(x) if x_int is None else model.check_input_levels(x_int)
    batch = x_int.shape[0]
    counts = {INPUT: _channels_last(x_int).astype(np.int64)}
    stats = TimestepStats()
    result_counts, states = {}, {} if state else None
    for layer in plan:
        currents = np.zeros((batch, layer.input_steps, layer.neurons), layer.current_dtype)
        events = np.zeros(batch, np.int64)
        macs = np.zeros(batch, np.int64)
        for synapse in layer.synapses:
            src = counts[synapse.source]
            if synapse.max_pools:
                src = _pre_ops_channels_last(src, synapse.max_pools, integer=True)
            src = np.ascontiguousarray(src.reshape(batch, -1))
            h, w, c = synapse.op_input
            _scatter(src, synapse.source_steps, synapse.analog, synapse.use_map, synapse.map_ptr, synapse.map_index,
                     synapse.map_mult, synapse.kind, synapse.weight, h, w, c, synapse.geometry, currents,
                     macs if synapse.analog else events)
        stats.events[layer.name] = int(events.sum())
        if macs.any():
            stats.macs[layer.name] = int(macs.sum())
        if layer.levels is None:
            logits = currents.sum(axis=1, dtype=np.int64) + layer.bias
            stats.seconds = time.perf_counter() - started
            result = SnnResult(logits=logits / model.readout.scale, counts=result_counts, integer_logits=logits,
                               traces=states)
            return (result, stats) if return_stats else result
        out = np.empty((batch, layer.neurons), np.int64)
        v = np.empty((batch, layer.neurons), np.int64)
        c = np.empty((batch, layer.neurons), np.int64)
        settle = max(layer.input_steps, layer.levels) - 1
        _neuron_stages(currents, layer.theta, layer.v0, layer.channels, layer.levels, settle, out, v, c)
        shaped = out.reshape((batch,) + _channels_last_shape(layer.output_shape))
        counts[layer.name] = shaped
        result_counts[layer.name] = np.ascontiguousarray(_channels_first(shaped))
        stats.spikes[layer.name] = int(out.sum())
        if state:
            states[layer.name] = {
                "v": np.ascontiguousarray(_channels_first(v.reshape(shaped.shape))),
                "c": np.ascontiguousarray(_channels_first(c.reshape(shaped.shape)))}
    raise AssertionError("network without readout")  # pragma: no cover


def _channels_last_shape(shape: tuple) -> tuple:
    return (shape[1], shape[2], shape[0]) if len(shape) == 3 else tuple(shape)
