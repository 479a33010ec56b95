"""Array kernels shared by every engine: convolution, pooling, linear maps.

All kernels take a batch first axis. Integer inputs stay exact: integer
matrix products run on float64 BLAS only when the worst-case magnitude of
every partial sum is below 2**53 (so every float64 partial sum is an exact
integer), and in int64 otherwise; the bound is computed from the operands.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from pascal_ref.ir.network import AvgPool2d, Conv2d, Flatten, GlobalAvgPool, Identity, Linear, MaxPool2d
from pascal_ref.numeric import FLOAT64_EXACT_LIMIT, INT64_LIMIT

__all__ = ["exact_matmul", "conv2d", "apply_pre_ops", "apply_op"]


def _is_int(a: np.ndarray) -> bool:
    return a.dtype.kind in "iub"


def exact_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b``; exact for integer operands (result int64).

    Bound: ``|sum_k a_ik b_kj| <= max|a| * max_j sum_k |b_kj|``; below 2**53
    float64 products and sums of integers are exact, so BLAS is used.
    """
    if not (_is_int(a) and _is_int(b)):
        return a @ b
    a64 = a.astype(np.int64, copy=False)
    b64 = b.astype(np.int64, copy=False)
    max_a = int(np.abs(a64).max(initial=0))
    col_sum = int(np.abs(b64).sum(axis=0).max(initial=0)) if b64.ndim == 2 else int(np.abs(b64).sum())
    if max_a * col_sum < FLOAT64_EXACT_LIMIT:
        return np.rint(a64.astype(np.float64) @ b64.astype(np.float64)).astype(np.int64)
    if max_a * col_sum >= INT64_LIMIT:
        raise OverflowError(f"integer product bound {max_a * col_sum} exceeds int64")
    return a64 @ b64


def _windows(x: np.ndarray, kernel, stride) -> np.ndarray:
    """``(B, C, H, W) -> (B, C, Ho, Wo, kh, kw)`` views."""
    win = sliding_window_view(x, kernel, axis=(2, 3))
    return win[:, :, :: stride[0], :: stride[1]]


def conv2d(x: np.ndarray, weight: np.ndarray, stride=(1, 1), padding=(0, 0)) -> np.ndarray:
    """Cross-correlation as in PyTorch, no bias: ``(B,C,H,W) x (O,C,kh,kw) -> (B,O,Ho,Wo)``."""
    ph, pw = padding
    if ph or pw:
        x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    out_ch, in_ch, kh, kw = weight.shape
    win = _windows(x, (kh, kw), stride)
    batch, _, ho, wo = win.shape[:4]
    cols = win.transpose(0, 2, 3, 1, 4, 5).reshape(batch * ho * wo, in_ch * kh * kw)
    out = exact_matmul(cols, weight.reshape(out_ch, -1).T)
    return out.reshape(batch, ho, wo, out_ch).transpose(0, 3, 1, 2)


def apply_pre_ops(x: np.ndarray, pre_ops, integer: bool) -> np.ndarray:
    """Pooling and flatten on a batch. In the integer model average pooling is
    a sum (its ``1/k`` is folded into the next layer's integer weights)."""
    for op in pre_ops:
        if isinstance(op, MaxPool2d):
            x = _windows(x, op.kernel, op.stride).max(axis=(4, 5))
        elif isinstance(op, AvgPool2d):
            win = _windows(x, op.kernel, op.stride)
            x = win.sum(axis=(4, 5)) if integer else win.mean(axis=(4, 5))
        elif isinstance(op, GlobalAvgPool):
            x = x.sum(axis=(2, 3), keepdims=True) if integer else x.mean(axis=(2, 3), keepdims=True)
        elif isinstance(op, Flatten):
            x = x.reshape(x.shape[0], -1)
        else:  # pragma: no cover - the network validates pre-ops
            raise TypeError(f"unsupported pre-op {type(op).__name__}")
    return x


def pool_size(pre_ops, input_shape) -> int:
    """Number of elements an average pooling chain sums (1 without averaging)."""
    size = 1
    shape = tuple(input_shape)
    for op in pre_ops:
        if isinstance(op, AvgPool2d):
            size *= op.kernel[0] * op.kernel[1]
        elif isinstance(op, GlobalAvgPool):
            size *= shape[1] * shape[2]
        shape = op.output_shape(shape)
    return size


def apply_op(x: np.ndarray, op, weight: np.ndarray) -> np.ndarray:
    """The weighted op of a synapse with the given weight (float or integer).

    ``Identity`` takes a per-channel gain vector as its weight.
    """
    if isinstance(op, Linear):
        return exact_matmul(x, weight.T)
    if isinstance(op, Conv2d):
        return conv2d(x, weight, op.stride, op.padding)
    if isinstance(op, Identity):
        return x * weight.reshape((1, -1) + (1,) * (x.ndim - 2))
    raise TypeError(f"unsupported op {type(op).__name__}")  # pragma: no cover


def channel_view(per_channel: np.ndarray, ndim: int) -> np.ndarray:
    """Reshape a per-channel vector to broadcast against ``(B, C, ...)``."""
    return per_channel.reshape((-1,) + (1,) * (ndim - 2))
