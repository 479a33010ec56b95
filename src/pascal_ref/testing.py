"""Random networks, inputs and state dicts for tests, benchmarks and co-simulation.

The one home of every random builder:

* :func:`random_network`: small networks of a chosen family (dense, conv,
  residual) with thresholds ``lam`` calibrated on random inputs (the 99th
  percentile of each layer's pre-activation, :func:`calibrate`), so that no
  layer is silent or saturated; :func:`random_inputs` for them;
* :func:`random_mlp`: a chain of ``Linear`` layers of given sizes with fixed
  ``lam`` (the hardware tests), and :func:`mnist_shape_network` /
  :func:`mnist_like_images`, the 784-128-10 model of the size/speed
  comparison;
* :func:`random_state_dict` / :func:`random_template_network`: random
  weights in the key layout of the architecture templates
  (:mod:`pascal_ref.convert.architectures`: VGG-16, ResNet-18/34).

Weights are normal with a standard deviation set by the fan-in
(:func:`random_weight`).  Every builder draws from the ``rng`` it is given
in a fixed order, so a seed always gives the same network.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from pascal_ref.convert.architectures import build, expected_keys
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

__all__ = ["FAMILIES", "INITS", "random_weight", "random_network", "random_inputs", "calibrate", "random_mlp",
           "mnist_shape_network", "mnist_like_images", "LIT_FRACTION", "random_state_dict", "random_template_network"]

FAMILIES = ("dense", "conv", "residual")
INITS = ("wide", "he")
LIT_FRACTION = 0.19
"""Share of lit pixels in :func:`mnist_like_images`."""


def random_weight(rng, shape, init: str = "wide") -> np.ndarray:
    """Normal weights of ``shape`` (outputs first), zero mean, standard
    deviation from the fan-in ``n = prod(shape[1:])``: ``"wide"``
    ``1.5/sqrt(n)`` (random layers stay busy), ``"he"`` ``sqrt(2/n)``."""
    if init not in INITS:
        raise PascalError(f"unknown init {init!r}; choose from {INITS}")
    fan_in = int(np.prod(shape[1:]))
    std = 1.5 / np.sqrt(fan_in) if init == "wide" else np.sqrt(2.0 / fan_in)
    return rng.normal(0.0, std, size=shape)


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
    return network.map_layers(lambda layer: dataclasses.replace(layer, lam=lam)
                              if layer.role == "activation" and layer.name == name else layer)


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
        return random_weight(rng, shape)

    def b(n):
        return rng.normal(0.0, 0.1, size=n)

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


def random_mlp(rng, sizes, levels, input_levels: int | None = 4, name: str = "mlp", lam: float = 0.8,
               init: str = "wide", bias_std: float = 0.1, readout_bias: bool = True) -> Network:
    """A chain ``fc1, act1, fc2, act2, ..., fcN`` of ``Linear`` layers of
    ``sizes`` (input size first), a ``QCFS(lam, levels[i])`` after each of
    the first ``len(levels)`` of them; not calibrated.

    Per layer the weight (:func:`random_weight` with ``init``), then the
    bias (normal, ``bias_std``) are drawn; ``readout_bias=False`` gives the
    last layer a zero bias without drawing it.
    """
    pairs = list(zip(sizes, sizes[1:]))
    layers = []
    for index, (fan_in, fan_out) in enumerate(pairs):
        weight = random_weight(rng, (fan_out, fan_in), init)
        drawn = readout_bias or index < len(pairs) - 1
        bias = rng.normal(0.0, bias_std, size=fan_out) if drawn else np.zeros(fan_out)
        layers.append(Linear(f"fc{index + 1}", weight, bias))
        if index < len(levels):
            layers.append(QCFS(f"act{index + 1}", lam, levels[index]))
    return Network((sizes[0],), layers, input_levels=input_levels, name=name)


def mnist_shape_network(seed: int = 784, levels: int = 4, input_levels: int = 4) -> Network:
    """The 784-128-10 model of MNIST shape of the size/speed comparison:
    He-scale weights, one hidden QCFS layer (``lam = 0.5`` spreads the hidden
    counts over 0..L on :func:`mnist_like_images`), zero readout bias."""
    return random_mlp(np.random.default_rng(seed), (784, 128, 10), [levels], input_levels, "mnist_shape_mlp",
                      lam=0.5, init="he", bias_std=0.01, readout_bias=False)


def mnist_like_images(count: int, seed: int = 1) -> np.ndarray:
    """Float images in [0, 1], shape ``(count, 784)``: about
    :data:`LIT_FRACTION` of the pixels lit, most of them at full intensity."""
    rng = np.random.default_rng(seed)
    lit = rng.random((count, 784)) < LIT_FRACTION
    value = np.where(rng.random((count, 784)) < 0.7, 1.0, rng.random((count, 784)))
    return np.where(lit, value, 0.0)


def random_state_dict(arch: str, num_classes: int, rng=None, thresh_range=(0.5, 2.0)) -> dict[str, np.ndarray]:
    """Random float64 weights in the template's key layout (PASCAL spelling,
    :func:`pascal_ref.convert.architectures.expected_keys`).

    He-normal convolution and linear weights, small random biases, batch-norm
    statistics near identity, thresholds uniform in ``thresh_range``: enough
    to keep a useful share of the neurons of every layer between 0 and L.
    Includes ``num_batches_tracked`` like a real checkpoint.
    """
    rng = np.random.default_rng(rng)
    state = {}
    for key, shape in expected_keys(arch, num_classes).items():
        owner, _, leaf = key.rpartition(".")
        if leaf == "thresh":
            state[key] = rng.uniform(*thresh_range, size=shape)
        elif leaf == "weight" and len(shape) >= 2:
            state[key] = random_weight(rng, shape, "he")
        elif leaf == "running_var":
            state[key] = rng.uniform(0.5, 1.5, size=shape)
            state[f"{owner}.num_batches_tracked"] = np.array(100, dtype=np.int64)
        elif leaf == "running_mean":
            state[key] = rng.normal(0.0, 0.1, size=shape)
        elif leaf == "weight":   # batch-norm scale
            state[key] = rng.uniform(0.8, 1.2, size=shape)
        else:                    # biases
            state[key] = rng.normal(0.0, 0.05, size=shape)
    return state


def random_template_network(arch: str, num_classes: int, levels, rng=None, **options) -> Network:
    """A template network (:func:`pascal_ref.convert.architectures.build`,
    same ``options``) with the weights of :func:`random_state_dict`."""
    return build(arch, num_classes, levels, random_state_dict(arch, num_classes, rng), source=f"random {arch}",
                 **options)
