"""Array kernels the layer types are made of: exact matrix products, convolution, pooling windows.

Plain functions on batch-first arrays, with no knowledge of layers; the
layer classes of :mod:`pascal_ref.ir.layers` call them and the engines reach
them through the layers (and :mod:`pascal_ref.golden.ops`, which re-exports
them). Integer inputs stay exact: integer matrix products run on float64
BLAS only when the worst-case magnitude of every partial sum is below 2**53
(so every float64 partial sum is an exact integer), and in int64 otherwise;
the bound is computed from the operands.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from pascal_ref.numeric import FLOAT64_EXACT_LIMIT, INT64_LIMIT

__all__ = ["exact_matmul", "conv2d", "windows", "channel_view"]


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


def windows(x: np.ndarray, kernel, stride) -> np.ndarray:
    """Pooling windows as views: ``(B, C, H, W) -> (B, C, Ho, Wo, kh, kw)``, no padding."""
    win = sliding_window_view(x, kernel, axis=(2, 3))
    return win[:, :, :: stride[0], :: stride[1]]


def conv2d(x: np.ndarray, weight: np.ndarray, stride=(1, 1), padding=(0, 0)) -> np.ndarray:
    """Cross-correlation as in PyTorch, no bias: ``(B,C,H,W) x (O,C,kh,kw) -> (B,O,Ho,Wo)``."""
    ph, pw = padding
    if ph or pw:
        x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    out_ch, in_ch, kh, kw = weight.shape
    win = windows(x, (kh, kw), stride)
    batch, _, ho, wo = win.shape[:4]
    cols = win.transpose(0, 2, 3, 1, 4, 5).reshape(batch * ho * wo, in_ch * kh * kw)
    out = exact_matmul(cols, weight.reshape(out_ch, -1).T)
    return out.reshape(batch, ho, wo, out_ch).transpose(0, 3, 1, 2)


def channel_view(per_channel: np.ndarray, ndim: int) -> np.ndarray:
    """Reshape a per-channel vector to broadcast against ``(B, C, ...)``."""
    return per_channel.reshape((-1,) + (1,) * (ndim - 2))
