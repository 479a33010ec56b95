"""The array side of every engine: kernels, and pre-op chains and weighted ops applied through the layers.

The kernels themselves (:func:`exact_matmul`, :func:`conv2d`,
:func:`channel_view`) live in :mod:`pascal_ref.ir.kernels`, where the layer
types can call them, and are re-exported here.  Each layer carries its own
behaviour (:mod:`pascal_ref.ir.layers`): these functions only walk a chain.
Integer inputs stay exact: integer matrix products run on float64 BLAS only
when every partial sum is provably below 2**53, in int64 otherwise.
"""
from __future__ import annotations

import numpy as np

from pascal_ref.ir.kernels import channel_view, conv2d, exact_matmul

__all__ = ["exact_matmul", "conv2d", "channel_view", "apply_pre_ops", "apply_op", "pool_size", "integer_range",
           "synapse_product", "SharedProducts"]


def apply_pre_ops(x: np.ndarray, pre_ops, integer: bool) -> np.ndarray:
    """Pooling and flatten on a batch. In the integer model average pooling is
    a sum (its ``1/k`` is folded into the next layer's integer weights)."""
    for op in pre_ops:
        x = op.apply(x, integer)
    return x


def pool_size(pre_ops, input_shape) -> int:
    """Number of elements an average pooling chain sums (1 without averaging)."""
    size = 1
    shape = tuple(input_shape)
    for op in pre_ops:
        size *= op.pool_size(shape)
        shape = op.output_shape(shape)
    return size


def integer_range(pre_ops, input_shape, low: int, high: int) -> tuple[int, int]:
    """Range of the integer values after a pre-op chain, for integer inputs in ``[low, high]``."""
    shape = tuple(input_shape)
    for op in pre_ops:
        low, high = op.integer_range(low, high, shape)
        shape = op.output_shape(shape)
    return low, high


def apply_op(x: np.ndarray, op, weight: np.ndarray) -> np.ndarray:
    """The weighted op of a synapse with the given weight (float or integer)."""
    return op.apply(x, weight)


def synapse_product(x: np.ndarray, synapse, weight: np.ndarray, integer: bool) -> np.ndarray:
    """``op(pre_ops(x))`` of one synapse with the given weight (without bias)."""
    return apply_op(apply_pre_ops(x, synapse.pre_ops, integer), synapse.op, weight)


class SharedProducts:
    """The float synapse products of one batch, shared by two engines that run on the same batch.

    The float ANN and the float SNN's count engine multiply the same weights by their sources' values:
    ``q * theta`` and ``c * theta``, the same floats wherever the SNN's counts equal the ANN's levels.
    :meth:`product` computes ``op(pre_ops(x))`` once and hands the stored result to the second engine
    only when its input is bit for bit the one stored (``np.array_equal``, same dtype and shape): the
    same operation on the same operands, so the same float result; any difference in the input and the
    product is computed afresh.  ``hits``: the products reused.
    """

    def __init__(self):
        self._stored: dict = {}
        self.hits = 0

    def product(self, key, x: np.ndarray, synapse, weight: np.ndarray) -> np.ndarray:
        stored = self._stored.get(key)
        if (stored is not None and stored[0].dtype == x.dtype and stored[0].shape == x.shape
                and stored[2] is weight and np.array_equal(stored[0], x)
                and np.array_equal(np.signbit(stored[0]), np.signbit(x))):   # bit for bit: -0.0 is not 0.0
            self.hits += 1
            return stored[1]
        result = synapse_product(x, synapse, weight, integer=False)
        self._stored[key] = (x, result, weight)
        return result
