"""Run the reference implementation (a local checkout of BrainSeek-Lab/PASCAL) on the CPU.

The checkout is imported as it is, never modified: no bytecode is written
into it, and the three things that keep it from running on a CPU-only
machine are handled in this process only:

* ``models/layer.py`` imports ``cv2`` and ``sympy`` for names it never uses;
  when OpenCV is not installed a stand-in module is registered;
* the neuron and the ResNet block allocate ``torch.zeros(..., device=0)``
  (the first CUDA device); the modules' ``torch`` global is replaced by a
  view of ``torch`` whose ``zeros`` ignores the device;
* the per-layer L lists are module globals or set in ``__init__``; they are
  set here before (ResNet) or after (VGG) construction.

Only the model definitions (``models/``) are imported, never the training or
test scripts.
"""
from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path

import torch

__all__ = ["load_pascal_models", "pascal_vgg16", "pascal_resnet"]


class _CpuTorch(types.ModuleType):
    """``torch`` as seen by the checkout: ``zeros(..., device=...)`` lands on the CPU."""

    def __init__(self):
        super().__init__("torch")

    def __getattr__(self, name):
        return getattr(torch, name)

    @staticmethod
    def zeros(*args, device=None, **kwargs):
        return torch.zeros(*args, **kwargs)


_loaded: dict[str, types.ModuleType] = {}


def load_pascal_models(repo: str | Path) -> types.ModuleType:
    """Import the ``models`` package of a PASCAL checkout, patched for the CPU."""
    repo = Path(repo).resolve()
    if not (repo / "models" / "layer.py").is_file():
        raise FileNotFoundError(f"--pascal-repo {repo}: no models/layer.py; expected a checkout of BrainSeek-Lab/PASCAL")
    key = str(repo)
    if key in _loaded:
        return _loaded[key]
    if "models" in sys.modules and key not in str(getattr(sys.modules["models"], "__file__", "")):
        raise RuntimeError("another package named 'models' is already imported in this process")
    try:
        importlib.import_module("cv2")
    except ImportError:
        stand_in = types.ModuleType("cv2")
        stand_in.mean = lambda *a, **k: None  # imported by models/layer.py, never called
        sys.modules["cv2"] = stand_in
    dont_write = sys.dont_write_bytecode
    sys.dont_write_bytecode = True  # leave the checkout untouched
    sys.path.insert(0, key)
    try:
        models = importlib.import_module("models")
    finally:
        sys.path.remove(key)
        sys.dont_write_bytecode = dont_write
    cpu_torch = _CpuTorch()
    for name in ("models.layer", "models.ResNet", "models.VGG"):
        module = sys.modules[name]
        if getattr(module, "torch", None) is torch:
            module.torch = cpu_torch
    _loaded[key] = models
    return models


def _relevel_if(models, net: torch.nn.Module, levels: list[int]) -> None:
    """Give every IF neuron of a built model its L from ``levels`` (indexed by IF.index)."""
    layer = sys.modules["models.layer"]
    for module in net.modules():
        if isinstance(module, layer.IF):
            i = module.index
            module.list = levels
            module.L = module.T = levels[i]
            module.expand = layer.ExpandTemporalDim(levels[i - 1] if i > 0 else levels[i])
    net.list = levels
    net.expand = layer.ExpandTemporalDim(levels[-1])


def pascal_vgg16(repo, levels: list[int], num_classes: int = 10) -> torch.nn.Module:
    """The reference VGG-16 SNN (eval mode, CPU) with the given 15-entry L list."""
    models = load_pascal_models(repo)
    if len(levels) != 15:
        raise ValueError(f"VGG-16 needs 15 L values (13 conv + 2 fc), got {len(levels)}")
    net = models.vgg16(num_classes=num_classes)
    _relevel_if(models, net, list(levels))
    return net.eval()


def pascal_resnet(repo, depth: int, levels: list[int], num_classes: int = 10) -> torch.nn.Module:
    """The reference ResNet-18/34 SNN (eval mode, CPU); ``levels`` has one L per IF neuron layer."""
    models = load_pascal_models(repo)
    resnet = sys.modules["models.ResNet"]
    blocks = {18: 8, 34: 16}[depth]
    if len(levels) != 1 + 2 * blocks:
        raise ValueError(f"ResNet-{depth} needs {1 + 2 * blocks} L values, got {len(levels)}")
    resnet.mylist = list(levels)   # read by the constructors
    resnet.counter = 0
    net = getattr(models, f"resnet{depth}")(num_classes=num_classes)
    net.expand = sys.modules["models.layer"].ExpandTemporalDim(levels[-1])
    return net.eval()
