"""Architecture templates: VGG-16, ResNet-18 and ResNet-34 as in BrainSeek-Lab/PASCAL.

Torch-free.  A template turns a *plain state dict* (a mapping of key ->
array, as ``np.savez(f, **{k: v.numpy() for k, v in model.state_dict().items()})``
writes it) plus the list of quantization levels, one per activation, into a
validated :class:`~pascal_ref.ir.network.Network`.  Reading state-dict files
is :mod:`pascal_ref.convert.state_dict`; random weights in this layout, for
tests and benchmarks, are :func:`pascal_ref.testing.random_state_dict`.

Layout and key names follow the PASCAL repository (CIFAR stems):

* ``vgg16``: ``layer1`` .. ``layer5`` are ``nn.Sequential`` blocks of
  ``[Conv2d(3x3, pad 1, bias), BatchNorm2d, IF, Dropout]`` per conv and a
  closing ``AvgPool2d(2, 2)``; ``classifier`` is ``[Flatten, Linear(512 or
  512*7*7 -> 4096), IF, Dropout, Linear(4096 -> 4096), IF, Dropout,
  Linear(4096 -> classes)]``.  Keys such as ``layer1.0.weight``,
  ``layer1.1.running_mean``, ``layer1.2.thresh``, ``classifier.7.bias``.
* ``resnet18`` / ``resnet34``: ``conv1`` = ``[Conv2d(3x3, no bias),
  BatchNorm2d, IF]``; ``conv2_x`` .. ``conv5_x`` are sequences of basic
  blocks with ``residual_function`` = ``[Conv2d, BatchNorm2d, IF, Conv2d,
  BatchNorm2d]``, ``shortcut`` = ``[Conv2d(1x1), BatchNorm2d]`` where the
  shape changes (else identity) and the block activation ``act``;
  ``avg_pool`` (adaptive, to 1x1), ``fc`` (its flatten, a ``view`` in the
  reference ``forward``, is the layer ``fc.flatten``, as the exporter names it).

An activation's threshold is read from ``<name>.thresh`` (PASCAL, QCFS) or
``<name>.up`` (the older QCFS code, whose block activation is called
``relu``: ``conv2_x.0.relu.up``).  ``num_batches_tracked`` entries are
accepted and ignored; a ``module.`` prefix on every key (``nn.DataParallel``)
is stripped.  Layer names are always the PASCAL module names, whatever the
checkpoint's flavour.

The levels are given once per activation, in network order (VGG-16: 15,
ResNet-18: 17, ResNet-34: 33), or as one int for all; the L attribute of the
reference modules is not part of a state dict.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pascal_ref.convert.levels import levels_per_activation
from pascal_ref.convert.state_dict import StateDictError, StateDictReader, quote_keys
from pascal_ref.ir.network import (
    QCFS,
    AvgPool2d,
    BasicBlock,
    BatchNorm,
    Conv2d,
    Flatten,
    GlobalAvgPool,
    Linear,
    Network,
    NetworkError,
)

__all__ = ["ARCHITECTURES", "NUM_CLASSES", "build", "expected_keys", "activation_names", "default_input_shape",
           "VGG16_CONFIG", "RESNET_BLOCKS", "RESNET_STAGES"]

ARCHITECTURES = ("vgg16", "resnet18", "resnet34")
NUM_CLASSES = (10, 100, 1000)

VGG16_CONFIG = ((64, 64, "M"), (128, 128, "M"), (256, 256, 256, "M"), (512, 512, 512, "M"), (512, 512, 512, "M"))
RESNET_BLOCKS = {"resnet18": (2, 2, 2, 2), "resnet34": (3, 4, 6, 3)}
RESNET_STAGES = (("conv2_x", 64, 1), ("conv3_x", 128, 2), ("conv4_x", 256, 2), ("conv5_x", 512, 2))
VGG_HIDDEN = 4096
BN_EPS = 1e-5


# ------------------------------------------------------------- the slots
#
# A template is a list of slots in forward order.  Each slot names one
# module of the reference layout and the parameter keys it owns.


@dataclass(frozen=True)
class _Conv:
    name: str
    in_channels: int
    out_channels: int
    kernel: int
    stride: int
    padding: int
    bias: bool

    def keys(self):
        yield f"{self.name}.weight", (self.out_channels, self.in_channels, self.kernel, self.kernel)
        if self.bias:
            yield f"{self.name}.bias", (self.out_channels,)


@dataclass(frozen=True)
class _Linear:
    name: str
    in_features: int
    out_features: int

    def keys(self):
        yield f"{self.name}.weight", (self.out_features, self.in_features)
        yield f"{self.name}.bias", (self.out_features,)


@dataclass(frozen=True)
class _BatchNorm:
    name: str
    channels: int

    def keys(self):
        for key in ("weight", "bias", "running_mean", "running_var"):
            yield f"{self.name}.{key}", (self.channels,)


@dataclass(frozen=True)
class _Act:
    name: str
    aliases: tuple = ()   # other module names used by QCFS checkpoints

    def keys(self):
        yield f"{self.name}.thresh", (1,)

    def threshold_keys(self) -> list[str]:
        """Where a checkpoint may keep the threshold: ``thresh`` (PASCAL, QCFS) or ``up`` (older QCFS)."""
        return [f"{name}.{param}" for name in (self.name, *self.aliases) for param in ("thresh", "up")]


@dataclass(frozen=True)
class _Plain:
    """A parameter-free layer (pooling, flatten): ``make()`` builds it."""

    layer: object

    def keys(self):
        return iter(())


@dataclass(frozen=True)
class _Block:
    name: str
    conv1: _Conv
    bn1: _BatchNorm
    act1: _Act
    conv2: _Conv
    bn2: _BatchNorm
    shortcut: _Conv | None
    shortcut_bn: _BatchNorm | None
    act2: _Act

    def parts(self):
        return [p for p in (self.conv1, self.bn1, self.act1, self.conv2, self.bn2, self.shortcut, self.shortcut_bn,
                            self.act2) if p is not None]

    def keys(self):
        for part in self.parts():
            yield from part.keys()


def _check_arch(arch: str, num_classes: int):
    if arch not in ARCHITECTURES:
        raise StateDictError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes not in NUM_CLASSES:
        raise StateDictError(f"{arch}: num_classes must be one of {NUM_CLASSES} (CIFAR-10, CIFAR-100, ImageNet), got {num_classes!r}")


def default_input_shape(arch: str, num_classes: int) -> tuple[int, int, int]:
    """``(3, 32, 32)`` for 10/100 classes (CIFAR), ``(3, 224, 224)`` for 1000."""
    _check_arch(arch, num_classes)
    return (3, 224, 224) if num_classes == 1000 else (3, 32, 32)


def _vgg16_slots(num_classes: int) -> list:
    slots, in_channels = [], 3
    for block, config in enumerate(VGG16_CONFIG, start=1):
        index = 0
        for item in config:
            prefix = f"layer{block}.{index}"
            if item == "M":
                slots.append(_Plain(AvgPool2d(prefix, 2, 2)))
                index += 1
            else:
                slots += [_Conv(prefix, in_channels, item, 3, 1, 1, True),
                          _BatchNorm(f"layer{block}.{index + 1}", item),
                          _Act(f"layer{block}.{index + 2}")]           # index + 3: Dropout
                in_channels = item
                index += 4
    features = 512 * 7 * 7 if num_classes == 1000 else 512
    slots += [_Plain(Flatten("classifier.0")),
              _Linear("classifier.1", features, VGG_HIDDEN), _Act("classifier.2"),       # classifier.3: Dropout
              _Linear("classifier.4", VGG_HIDDEN, VGG_HIDDEN), _Act("classifier.5"),     # classifier.6: Dropout
              _Linear("classifier.7", VGG_HIDDEN, num_classes)]
    return slots


def _resnet_slots(arch: str, num_classes: int) -> list:
    slots = [_Conv("conv1.0", 3, 64, 3, 1, 1, False), _BatchNorm("conv1.1", 64), _Act("conv1.2")]
    in_channels = 64
    for (stage, channels, stride), blocks in zip(RESNET_STAGES, RESNET_BLOCKS[arch]):
        for index in range(blocks):
            name = f"{stage}.{index}"
            block_stride = stride if index == 0 else 1
            residual = f"{name}.residual_function"
            needs_shortcut = block_stride != 1 or in_channels != channels
            slots.append(_Block(
                name,
                conv1=_Conv(f"{residual}.0", in_channels, channels, 3, block_stride, 1, False),
                bn1=_BatchNorm(f"{residual}.1", channels),
                act1=_Act(f"{residual}.2"),
                conv2=_Conv(f"{residual}.3", channels, channels, 3, 1, 1, False),
                bn2=_BatchNorm(f"{residual}.4", channels),
                shortcut=_Conv(f"{name}.shortcut.0", in_channels, channels, 1, block_stride, 0, False) if needs_shortcut else None,
                shortcut_bn=_BatchNorm(f"{name}.shortcut.1", channels) if needs_shortcut else None,
                act2=_Act(f"{name}.act", aliases=(f"{name}.relu",))))
            in_channels = channels
    slots += [_Plain(GlobalAvgPool("avg_pool")), _Plain(Flatten("fc.flatten")), _Linear("fc", 512, num_classes)]
    return slots


def _slots(arch: str, num_classes: int) -> list:
    _check_arch(arch, num_classes)
    return _vgg16_slots(num_classes) if arch == "vgg16" else _resnet_slots(arch, num_classes)


def _activations(slots) -> list[_Act]:
    acts = []
    for slot in slots:
        if isinstance(slot, _Act):
            acts.append(slot)
        elif isinstance(slot, _Block):
            acts += [slot.act1, slot.act2]
    return acts


def activation_names(arch: str, num_classes: int = 10) -> list[str]:
    """Names of the activations in network order: one L each."""
    return [act.name for act in _activations(_slots(arch, num_classes))]


def expected_keys(arch: str, num_classes: int) -> dict[str, tuple[int, ...]]:
    """Every state-dict key of the template (PASCAL spelling) and its shape."""
    keys = {}
    for slot in _slots(arch, num_classes):
        keys.update(slot.keys())
    return keys


# ------------------------------------------------------- reading arrays


def _threshold(params: StateDictReader, act: _Act) -> float:
    candidates = act.threshold_keys()
    found = [key for key in candidates if params.has(key)]
    if not found:
        raise StateDictError(f"{params.where}: missing activation threshold for '{act.name}' "
                             f"(looked for {', '.join(repr(c) for c in candidates)})")
    if len(found) > 1:
        raise StateDictError(f"{params.where}: activation '{act.name}' has several thresholds: {', '.join(found)}")
    return float(params.get(found[0], (1,)).reshape(()))


def _check_missing(arch: str, slots, params: StateDictReader):
    """All missing keys at once (a wrong architecture shows at a glance)."""
    missing, total = [], 0
    for slot in slots:
        parts = slot.parts() if isinstance(slot, _Block) else [slot]
        for part in parts:
            if isinstance(part, _Act):
                total += 1
                if not any(params.has(key) for key in part.threshold_keys()):
                    missing.append(f"{part.name}.thresh")
                continue
            for key, _ in part.keys():
                total += 1
                if not params.has(key):
                    missing.append(key)
    if missing:
        present = list(params.arrays)
        hint = ""
        if len(missing) > total // 2:
            hint = (f"; is this a {arch} state dict? its keys start " + ", ".join(repr(k) for k in present[:4])
                    if present else "; the state dict is empty")
        raise StateDictError(f"{params.where}: {len(missing)} of {total} {arch} keys missing: {quote_keys(missing, 6)}{hint}")


def _make(slot, params: StateDictReader, levels: dict[str, int]):
    if isinstance(slot, _Conv):
        weight = params.get(f"{slot.name}.weight", next(slot.keys())[1])
        bias = params.get(f"{slot.name}.bias", (slot.out_channels,)) if slot.bias else None
        return Conv2d(slot.name, weight, bias, slot.stride, slot.padding)
    if isinstance(slot, _Linear):
        return Linear(slot.name, params.get(f"{slot.name}.weight", (slot.out_features, slot.in_features)),
                      params.get(f"{slot.name}.bias", (slot.out_features,)))
    if isinstance(slot, _BatchNorm):
        arrays = [params.get(f"{slot.name}.{key}", (slot.channels,)) for key in ("weight", "bias", "running_mean", "running_var")]
        return BatchNorm(slot.name, *arrays, eps=BN_EPS)
    if isinstance(slot, _Act):
        return QCFS(slot.name, _threshold(params, slot), levels[slot.name])
    if isinstance(slot, _Plain):
        return slot.layer
    if isinstance(slot, _Block):
        parts = {key: None if part is None else _make(part, params, levels)
                 for key, part in (("conv1", slot.conv1), ("bn1", slot.bn1), ("act1", slot.act1), ("conv2", slot.conv2),
                                   ("bn2", slot.bn2), ("shortcut", slot.shortcut), ("shortcut_bn", slot.shortcut_bn),
                                   ("act2", slot.act2))}
        return BasicBlock(slot.name, **parts)
    raise AssertionError(slot)  # pragma: no cover


# --------------------------------------------------------------- public


def build(arch: str, num_classes: int, levels, state_dict, *, input_levels: int | None = None,
          input_shape=None, name: str | None = None, source: str = "state dict") -> Network:
    """Build a template network from a state dict.

    Parameters
    ----------
    arch : ``"vgg16"``, ``"resnet18"`` or ``"resnet34"``
    num_classes : 10, 100 or 1000
    levels : int or list of int
        L of every activation in network order (see :func:`activation_names`).
    state_dict : mapping of key -> array
        Plain state dict in the PASCAL (or QCFS) key spelling; missing,
        unexpected or misshapen keys raise :class:`StateDictError`.  Random
        weights: :func:`pascal_ref.testing.random_state_dict`, or
        :func:`pascal_ref.testing.random_template_network` for both steps.
    input_levels : None (analog input, as the reference) or int (count coding)
    input_shape : (C, H, W); defaults to :func:`default_input_shape`.
    source : how errors name the state dict (a file name, say).
    """
    slots = _slots(arch, num_classes)
    names = [act.name for act in _activations(slots)]
    levels_by_name = dict(zip(names, levels_per_activation(levels, names, arch)))
    params = StateDictReader(state_dict, source)
    _check_missing(arch, slots, params)
    layers = [_make(slot, params, levels_by_name) for slot in slots]
    params.check_unused()
    shape = default_input_shape(arch, num_classes) if input_shape is None else input_shape
    try:
        return Network(shape, layers, input_levels=input_levels, name=name or f"{arch}-{num_classes}")
    except NetworkError as error:
        raise NetworkError(f"{source}: {error}") from None
