"""Test helpers for the convolution engines (to be merged into :mod:`pascal_hdl.testing` by its owner).

* :func:`conv_network` builds a small random count-coded network with one or two
  Conv2d layers (then ``Flatten`` and a Linear readout), calibrated so that the
  counts spread over ``0..L``; :func:`random_levels` draws sparse input levels.
* :func:`residual_network` builds a small random ResNet: an optional conv stem,
  basic blocks with identity and 1x1-conv shortcuts, global average pooling and a
  Linear readout.
"""
from __future__ import annotations

import numpy as np

from pascal_ref.golden.quantize import quantize
from pascal_ref.ir.network import (
    QCFS,
    BasicBlock,
    Conv2d,
    Flatten,
    GlobalAvgPool,
    Linear,
    Network,
)
from pascal_ref.testing import calibrate, random_inputs, random_weight

__all__ = ["conv_network", "random_levels", "residual_network"]


def conv_network(rng, kernel: int, stride: int, padding: int, levels, input_levels: int = 4,
                 input_shape=(2, 6, 6), channels=(3,), classes: int = 3, second: tuple | None = None,
                 weight_bits: int = 6):
    """``conv1 [act1, conv2] act, Flatten, Linear readout`` quantized by the golden model.

    ``levels``: the L of each conv layer; ``channels``: their output channels;
    ``second``: ``(kernel, stride, padding)`` of a second conv layer (or None).
    Returns ``(network, integer model)``.
    """
    layers, shape = [], tuple(input_shape)
    geometry = [(kernel, stride, padding)] + ([second] if second is not None else [])
    for index, ((k, s, p), out, level) in enumerate(zip(geometry, channels, levels)):
        conv = Conv2d(f"conv{index + 1}", random_weight(rng, (out, shape[0], k, k)), rng.normal(0, 0.1, out),
                      stride=s, padding=p)
        layers += [conv, QCFS(f"act{index + 1}", 1.0, level)]
        shape = conv.output_shape(shape)
    flat = int(np.prod(shape))
    layers += [Flatten("flatten"), Linear("readout", random_weight(rng, (classes, flat)), rng.normal(0, 0.1, classes))]
    network = Network(tuple(input_shape), layers, input_levels, "conv-test")
    network = calibrate(network, random_inputs(network, rng, 16), percentile=95.0)
    return network, quantize(network, weight_bits=weight_bits)


def random_levels(rng, batch: int, shape, high: int, density: float = 0.5) -> np.ndarray:
    """Integer levels ``(batch, *shape)`` in ``0..high``, each nonzero with probability ``density``;
    sample 1 is all zero and sample 2 all at ``high`` (when ``batch > 2``)."""
    levels = rng.integers(1, high + 1, (batch,) + tuple(shape)) * (rng.random((batch,) + tuple(shape)) < density)
    if batch > 2:
        levels[1], levels[2] = 0, high
    return levels.astype(np.int64)


def residual_network(rng, blocks, levels, input_levels: int = 4, input_shape=(2, 6, 6), stem: int | None = 3,
                     classes: int = 3, weight_bits: int = 8):
    """``[conv stem, act], blocks..., GlobalAvgPool, Flatten, Linear readout`` quantized by the golden model.

    ``blocks``: per block ``(shortcut, out_channels, stride)``, ``shortcut`` ``"identity"`` (needs the
    same channels and stride 1) or ``"conv"`` (1x1 Conv2d with the stride); each block is ``conv1`` 3x3
    (stride, padding 1), ``act1``, ``conv2`` 3x3 (padding 1), ``act2``. ``stem``: output channels of a
    3x3 conv stem (None: none; the golden IR then refuses a block reading the network input). ``levels``: the L of every
    activation in order (stem, then ``act1``, ``act2`` of each block). Returns ``(network, integer model)``.
    """
    pick = iter(levels)
    layers, channels = [], input_shape[0]

    def weight(*shape):
        return random_weight(rng, shape)

    def bias(n):
        return rng.normal(0.0, 0.1, n)

    if stem is not None:
        layers += [Conv2d("stem", weight(stem, channels, 3, 3), bias(stem), padding=1), QCFS("stem_act", 1.0, next(pick))]
        channels = stem
    for number, (shortcut, out, stride) in enumerate(blocks):
        name = f"block{number}"
        conv1 = Conv2d(f"{name}.conv1", weight(out, channels, 3, 3), bias(out), stride=stride, padding=1)
        act1 = QCFS(f"{name}.act1", 1.0, next(pick))
        conv2 = Conv2d(f"{name}.conv2", weight(out, out, 3, 3), bias(out), padding=1)
        act2 = QCFS(f"{name}.act2", 1.0, next(pick))
        skip = None if shortcut == "identity" else Conv2d(f"{name}.shortcut", weight(out, channels, 1, 1), bias(out),
                                                          stride=stride)
        layers.append(BasicBlock(name, conv1, act1, conv2, act2, shortcut=skip))
        channels = out
    layers += [GlobalAvgPool("avgpool"), Flatten("flatten"), Linear("readout", weight(classes, channels), bias(classes))]
    network = Network(tuple(input_shape), layers, input_levels, "resnet-test")
    network = calibrate(network, random_inputs(network, rng, 16), percentile=95.0)
    return network, quantize(network, weight_bits=weight_bits)
