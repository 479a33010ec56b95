"""Channels-last layout and the matrix product of one synapse, shared by the count engine and the float ANN.

Activations are kept channels-last (``(B, H, W, C)``), so that a
convolution is one im2col copy and one BLAS matrix product whose output is
already the next layer's layout.  What a synapse needs is read from its
layers: pooling pre-ops give their :class:`~pascal_ref.ir.layers.Window`, a
flatten says ``flattens``, and the weighted op its ``kind``
(:data:`GEMM_LAYOUTS`).  A synapse with anything else runs through its
layers' own ``apply`` methods (:class:`LayerApply`, channels-first, exact on
integers): slower, never wrong.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from pascal_ref.fast.kernels import im2col_into
from pascal_ref.golden.ops import apply_pre_ops
from pascal_ref.ir.graph import Synapse
from pascal_ref.ir.layers import WeightedOp, Window
from pascal_ref.numeric import FLOAT32_EXACT_LIMIT, FLOAT64_EXACT_LIMIT

__all__ = ["channels_last", "channels_first", "channels_last_shape", "flatten_permutation", "flatten_source_shape",
           "pre_ops_channels_last", "Gemm", "LayerApply", "GEMM_LAYOUTS", "synapse_gemm"]

_IM2COL_BUDGET = 1 << 23   # elements of one im2col block (32 MiB in float32), reused


# ----------------------------------------------------------- layouts


def channels_last(x: np.ndarray) -> np.ndarray:
    """``(B, C, H, W) -> (B, H, W, C)``; 1-D samples unchanged."""
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if x.ndim == 4 else x


def channels_first(x: np.ndarray) -> np.ndarray:
    return x.transpose(0, 3, 1, 2) if x.ndim == 4 else x


def channels_last_shape(shape: tuple) -> tuple:
    return (shape[1], shape[2], shape[0]) if len(shape) == 3 else tuple(shape)


def flatten_permutation(shape: tuple[int, ...]) -> np.ndarray:
    """Index ``j`` of a channels-last flattened ``(C, H, W)`` -> its channels-first index."""
    if len(shape) != 3:
        return np.arange(int(np.prod(shape)))
    c, h, w = shape
    return np.arange(c * h * w).reshape(c, h, w).transpose(1, 2, 0).reshape(-1)


def flatten_source_shape(synapse: Synapse) -> tuple[int, ...] | None:
    """Shape (C, H, W) that a flatten before the synapse's op flattens, or None."""
    shape = tuple(synapse.input_shape)
    for op in synapse.pre_ops:
        if op.flattens:
            return shape
        shape = op.output_shape(shape)
    return None


def _pool_channels_last(x: np.ndarray, window: Window, integer: bool) -> np.ndarray:
    """A pooling window on a channels-last batch (integer: a mean is a sum)."""
    (kh, kw), (sh, sw) = window.kernel, window.stride
    b, h, w, c = x.shape
    is_max = window.reduce == "max"
    if (kh, kw) == (h, w):     # the whole plane: one reduction
        if is_max:
            return x.max(axis=(1, 2), keepdims=True)
        return x.sum(axis=(1, 2), keepdims=True) if integer else x.mean(axis=(1, 2), keepdims=True, dtype=x.dtype)
    ho, wo = (h - kh) // sh + 1, (w - kw) // sw + 1
    if (kh, kw) == (sh, sw):   # tiling windows: a reshape
        tiles = x[:, :ho * kh, :wo * kw].reshape(b, ho, kh, wo, kw, c)
        if is_max:
            return tiles.max(axis=(2, 4))
        return tiles.sum(axis=(2, 4)) if integer else tiles.mean(axis=(2, 4), dtype=x.dtype)
    acc = None
    for i in range(kh):
        for j in range(kw):
            part = x[:, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw]
            if acc is None:
                acc = part.copy()
            elif is_max:
                np.maximum(acc, part, out=acc)
            else:
                acc += part
    return acc if is_max or integer else acc / x.dtype.type(kh * kw)


def pre_ops_channels_last(x: np.ndarray, pre_ops, integer: bool) -> np.ndarray:
    """Pooling windows and flatten on a channels-last batch (integer: average pooling sums)."""
    for op in pre_ops:
        if op.flattens:
            x = x.reshape(x.shape[0], -1)   # channels-last order; the dense op's weight is permuted to match
        else:
            _, h, w, c = x.shape
            x = _pool_channels_last(x, op.window((c, h, w)), integer)
    return x


# ------------------------------------------------------------- GEMMs


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


def _matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b``: BLAS gemm for floats (exact under the bound of :mod:`pascal_ref.fast`), numpy's integer loop for int64.

    With fewer rows than columns (the deep layers: few pixels, many
    channels; the classifier) OpenBLAS is several times faster on the
    transposed problem ``(b.T @ a.T).T``; the products and the partial sums
    are the same terms, so the exactness argument is unchanged.
    """
    if a.dtype.kind == "f" and a.shape[0] < 2 * b.shape[1]:
        return (b.T @ a.T).T
    return a @ b


@dataclass(frozen=True, eq=False)
class Gemm:
    """One synapse's weighted op as a matrix product on channels-last input."""

    kind: str                  # the op's kind: "dense", "conv" or "identity"
    matrix: np.ndarray         # (K, O) in the accumulation dtype; identity: (C,) gains
    kernel: tuple = (1, 1)
    stride: tuple = (1, 1)
    padding: tuple = (0, 0)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        dtype = self.matrix.dtype
        if self.kind == "identity":
            return x.astype(dtype, copy=False) * self.matrix
        if self.kind == "dense":
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
            im2col_into(np.ascontiguousarray(part), kh, kw, sh, sw, ph, pw, cols)
            out[start:start + block].reshape(-1, out.shape[3])[:] = _matmul(cols, self.matrix)
        return out


def _dense_gemm(synapse: Synapse, weight: np.ndarray, dtype) -> Gemm:
    flat_shape = flatten_source_shape(synapse)
    columns = weight if flat_shape is None else weight[:, flatten_permutation(flat_shape)]
    return Gemm("dense", np.ascontiguousarray(columns.T, dtype))


def _conv_gemm(synapse: Synapse, weight: np.ndarray, dtype) -> Gemm:
    out_ch = weight.shape[0]
    matrix = np.ascontiguousarray(weight.transpose(2, 3, 1, 0).reshape(-1, out_ch), dtype)   # (kh*kw*C, O)
    return Gemm("conv", matrix, tuple(weight.shape[2:]), tuple(synapse.op.stride), tuple(synapse.op.padding))


def _identity_gemm(synapse: Synapse, weight: np.ndarray, dtype) -> Gemm:
    return Gemm("identity", np.asarray(weight, dtype).reshape(-1))


GEMM_LAYOUTS = {"dense": _dense_gemm, "conv": _conv_gemm, "identity": _identity_gemm}
"""Weighted-op ``kind`` -> the builder of its channels-last :class:`Gemm`."""


@dataclass(frozen=True, eq=False)
class LayerApply:
    """A synapse the fast kernels do not know, run by its layers' own ``apply`` (channels-first).

    ``integer``: the levels are made int64 first, so the op is exact; the
    result is cast to the accumulation dtype, which holds it exactly (the
    plan's bound covers it).
    """

    pre_ops: tuple
    op: WeightedOp
    weight: np.ndarray
    integer: bool
    dtype: type

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = channels_first(x)
        if self.integer:
            x = x.astype(np.int64)
        y = self.op.apply(apply_pre_ops(x, self.pre_ops, self.integer), self.weight)
        if self.integer and np.dtype(self.dtype).kind == "f":
            limit = FLOAT32_EXACT_LIMIT if np.dtype(self.dtype) == np.float32 else FLOAT64_EXACT_LIMIT
            if y.size and int(np.abs(y).max()) >= limit:
                raise OverflowError(f"op '{self.op.name}': results up to {int(np.abs(y).max())} are not exact in "
                                    f"{np.dtype(self.dtype).name} (its weights are used more than once per output)")
        return channels_last(y).astype(self.dtype, copy=False)


def _native(synapse: Synapse) -> bool:
    """The fast kernels cover the synapse: pooling windows and flatten, then an op of a known kind."""
    if synapse.op.kind not in GEMM_LAYOUTS:
        return False
    shape = tuple(synapse.input_shape)
    for op in synapse.pre_ops:
        if not op.flattens:
            window = op.window(shape)
            if window is None or window.reduce not in ("max", "mean"):
                return False
        shape = op.output_shape(shape)
    return True


def synapse_gemm(synapse: Synapse, weight: np.ndarray, dtype, integer: bool):
    """``(pre_ops, gemm)`` of a synapse: run ``gemm(pre_ops_channels_last(x, pre_ops, integer))``."""
    if _native(synapse):
        return synapse.pre_ops, GEMM_LAYOUTS[synapse.op.kind](synapse, weight, dtype)
    weight = np.asarray(weight, np.int64 if integer else dtype)
    return (), LayerApply(tuple(synapse.pre_ops), synapse.op, weight, integer, dtype)
