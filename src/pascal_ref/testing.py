"""Random networks for tests, benchmarks and co-simulation.

:func:`random_network` builds small networks of a chosen family with
thresholds ``lam`` calibrated on random inputs (the 99th percentile of each
layer's pre-activation), so that no layer is silent or saturated.
"""
from __future__ import annotations

import numpy as np

from pascal_ref.errors import PascalError
from pascal_ref.golden.ann import float_ann
from pascal_ref.ir.network import (
    QCFS,
    AvgPool2d,
    BasicBlock,
    Conv2d,
    Flatten,
    GlobalAvgPool,
    Linear,
    MaxPool2d,
    Network,
)

__all__ = ["FAMILIES", "random_network", "random_inputs", "calibrate"]

FAMILIES = ("dense", "conv", "residual")


def random_inputs(network: Network, rng, batch: int) -> np.ndarray:
    """Inputs in [0, 1] (count-coded) or standard normal (analog)."""
    shape = (batch,) + network.input_shape
    return rng.uniform(0, 1, size=shape) if network.input_levels is not None else rng.normal(size=shape)


def calibrate(network: Network, x: np.ndarray, percentile: float = 99.0) -> Network:
    """Set every activation's ``lam`` to a percentile of its pre-activation, in order."""
    names = [layer.name for layer in network.hidden_layers]
    for name in names:
        result = float_ann(network, x)
        act = network.by_name[name].activation
        z = (result.preactivations[name] - act.phi) * act.lam / act.levels
        positive = z[z > 0]
        lam = float(np.percentile(positive, percentile)) if positive.size else 1.0
        network = _with_lam(network, name, max(lam, 1e-3))
    return network


def _with_lam(network: Network, name: str, lam: float) -> Network:
    def replace(layer):
        if isinstance(layer, QCFS) and layer.name == name:
            return QCFS(name, lam, layer.levels, layer.phi)
        if isinstance(layer, BasicBlock):
            return BasicBlock(layer.name, layer.conv1, replace(layer.act1), layer.conv2, replace(layer.act2),
                              shortcut=layer.shortcut)
        return layer
    return Network(network.input_shape, [replace(l) for l in network.layers], network.input_levels, network.name)


def random_network(rng, family: str = "dense", levels=None, input_levels: int | None = 4, classes: int = 5,
                   calibrate_batch: int = 16) -> Network:
    """A random network of ``family`` (``dense``, ``conv`` with average and
    max pooling, ``residual`` with identity and 1x1-conv shortcut blocks).

    ``levels``: the L of every activation (a list), or None for random L in
    {1, 2, 3, 4, 8}.
    """
    if family not in FAMILIES:
        raise PascalError(f"unknown family {family!r}; choose from {FAMILIES}")

    def w(*shape):
        fan_in = int(np.prod(shape[1:]))
        return rng.normal(size=shape) * (1.5 / np.sqrt(fan_in))

    def b(n):
        return rng.normal(size=n) * 0.1

    pick = iter(levels) if levels is not None else None

    def act(name):
        L = next(pick) if pick is not None else int(rng.choice([1, 2, 3, 4, 8]))
        return QCFS(name, 1.0, L)

    if family == "dense":
        sizes = [int(rng.integers(4, 13)) for _ in range(int(rng.integers(1, 4)))]
        layers, fan_in = [], 6
        for i, n in enumerate(sizes):
            layers += [Linear(f"fc{i}", w(n, fan_in), b(n)), act(f"act{i}")]
            fan_in = n
        layers.append(Linear("readout", w(classes, fan_in), b(classes)))
        network = Network((6,), layers, input_levels, "random-dense")
    elif family == "conv":
        c1, c2 = int(rng.integers(2, 5)), int(rng.integers(2, 5))
        layers = [Conv2d("conv1", w(c1, 2, 3, 3), b(c1), padding=1), act("act1"),
                  MaxPool2d("pool1", 2),
                  Conv2d("conv2", w(c2, c1, 3, 3), b(c2), stride=int(rng.integers(1, 3)), padding=1), act("act2"),
                  AvgPool2d("pool2", 2, 1), Flatten("flatten")]
        flat = _flat_size((2, 8, 8), layers)
        network = Network((2, 8, 8), layers + [Linear("readout", w(classes, flat), b(classes))], input_levels, "random-conv")
    else:
        c = int(rng.integers(2, 4))
        layers = [Conv2d("conv1", w(c, 2, 3, 3), b(c), padding=1), act("act1"),
                  BasicBlock("layer1.0", Conv2d("layer1.0.conv1", w(c, c, 3, 3), b(c), padding=1), act("layer1.0.act1"),
                             Conv2d("layer1.0.conv2", w(c, c, 3, 3), b(c), padding=1), act("layer1.0.act2")),
                  BasicBlock("layer2.0", Conv2d("layer2.0.conv1", w(2 * c, c, 3, 3), b(2 * c), stride=2, padding=1),
                             act("layer2.0.act1"), Conv2d("layer2.0.conv2", w(2 * c, 2 * c, 3, 3), b(2 * c), padding=1),
                             act("layer2.0.act2"), shortcut=Conv2d("layer2.0.shortcut", w(2 * c, c, 1, 1), b(2 * c), stride=2)),
                  GlobalAvgPool("avgpool"), Flatten("flatten"), Linear("readout", w(classes, 2 * c), b(classes))]
        network = Network((2, 6, 6), layers, input_levels, "random-residual")
    return calibrate(network, random_inputs(network, rng, calibrate_batch))


def _flat_size(input_shape, layers) -> int:
    shape = tuple(input_shape)
    for layer in layers:
        shape = layer.output_shape(shape)
    return int(np.prod(shape))
