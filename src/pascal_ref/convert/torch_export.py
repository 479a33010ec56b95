"""PyTorch interop: a QCFS torch module and the exporter ``nn.Module -> Network``.

This module needs PyTorch (``pip install torch==2.13.0``); nothing in the
golden model imports it.

The exporter walks the module tree in registration order, which must be the
forward order (true for ``nn.Sequential`` and for the VGG and ResNet models
of the QCFS and PASCAL repositories).  It understands

* ``Conv2d`` (groups 1, dilation 1, zero padding given as numbers), ``Linear``;
* ``BatchNorm1d`` / ``BatchNorm2d`` with running statistics (folded);
* ``AvgPool2d`` / ``MaxPool2d`` without padding, ``AdaptiveAvgPool2d((1, 1))``
  (-> ``GlobalAvgPool``), ``Flatten(1, -1)``;
* ``Dropout*`` and ``Identity`` (nothing at inference), empty ``Sequential``;
* QCFS activations, recognised by duck typing as the QCFS and PASCAL
  repositories define them: a module with a one-element ``thresh`` or ``up``
  parameter and an integer ``L`` attribute (the older QCFS ``MyFloor`` calls
  it ``t``); ``phi`` is read when present, else 0.5.  Its ANN-mode forward
  ``clamp(x/thresh, 0, 1)`` then ``floor(x*L + 1/2)/L * thresh`` is our
  ``clip(floor(x*L/thresh + 1/2), 0, L) * thresh/L``;
* ResNet basic blocks laid out as in those repositories: ``residual_function``
  = ``[Conv2d, BatchNorm2d, QCFS, Conv2d, BatchNorm2d]``, ``shortcut`` empty or
  ``[Conv2d(1x1), BatchNorm2d]``, block activation ``act`` (or ``relu``).

A ``Linear`` that receives a ``(C, H, W)`` tensor gets an implicit
``Flatten`` (the reference ResNets flatten with ``x.view(B, -1)`` in
``forward``).  Any other module is an error naming it; pass ``skip=`` with
the names of parameter-free helper modules that do nothing in ANN mode (for
example the PASCAL models' ``merge`` and ``expand``).  Layer names are the
qualified module names.

Because a ``forward`` can do what the module tree does not show, the export
is checked by default: a float64 copy of the module and the exported network
run one random batch and must agree (:func:`check_export`).
"""
from __future__ import annotations

import math

import numpy as np

from pascal_ref.errors import PascalError

try:
    import torch
    from torch import nn
except ImportError as error:  # pragma: no cover - exercised only without torch
    raise ImportError("pascal_ref.convert.torch_export needs PyTorch: pip install torch==2.13.0 "
                      "(state-dict .npz/.pth files load without it: pascal_ref.convert.templates, pascal_ref.io.torch_pickle)") from error

from pascal_ref.ir import network as ir

__all__ = ["QCFS", "BasicBlock", "ExportError", "export", "check_export", "is_qcfs", "qcfs_parameters", "state_dict_arrays"]


class ExportError(PascalError):
    """A module the exporter cannot translate; the message names it."""


class _FloorSTE(torch.autograd.Function):
    """``floor`` with a straight-through gradient (the QCFS training trick)."""

    @staticmethod
    def forward(ctx, x):
        return torch.floor(x)

    @staticmethod
    def backward(ctx, grad):
        return grad


class QCFS(nn.Module):
    """QCFS activation ``h = thresh/L * clip(floor(x*L/thresh + phi), 0, L)``.

    ``thresh`` (lambda) is a trainable one-element parameter; ``L`` the number
    of levels.  The gradient of the floor is passed straight through, so both
    the weights before it and ``thresh`` train.  Evaluated exactly as
    :func:`pascal_ref.golden.ann.float_ann` evaluates it.
    """

    def __init__(self, L: int = 4, thresh: float = 1.0, phi: float = 0.5):
        super().__init__()
        if isinstance(L, bool) or not isinstance(L, int) or L < 1:
            raise ExportError(f"QCFS: L must be an integer >= 1, got {L!r}")
        if not (thresh > 0 and math.isfinite(thresh)):
            raise ExportError(f"QCFS: thresh must be a finite number > 0, got {thresh!r}")
        self.L = L
        self.phi = float(phi)
        self.thresh = nn.Parameter(torch.tensor([float(thresh)]))

    def forward(self, x):
        q = torch.clamp(_FloorSTE.apply(x * (self.L / self.thresh) + self.phi), 0, self.L)
        return q * (self.thresh / self.L)

    def extra_repr(self) -> str:
        return f"L={self.L}, thresh={self.thresh.item():.4g}, phi={self.phi}"


class BasicBlock(nn.Module):
    """ResNet basic block in the PASCAL layout, with :class:`QCFS` activations.

    ``act(residual_function(x) + shortcut(x))``; the shortcut is a 1x1
    conv + batch norm where the shape changes, else identity.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, L1: int = 4, L2: int = 4):
        super().__init__()
        self.residual_function = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(out_channels), QCFS(L1),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels))
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(out_channels))
        self.act = QCFS(L2)

    def forward(self, x):
        return self.act(self.residual_function(x) + self.shortcut(x))


# ------------------------------------------------------------ recognition


def qcfs_parameters(module) -> tuple[float, int, float] | None:
    """``(lam, L, phi)`` if ``module`` is a QCFS activation by duck typing, else None."""
    threshold = None
    for attr in ("thresh", "up"):
        value = getattr(module, attr, None)
        if isinstance(value, torch.Tensor):
            threshold = (attr, value)
            break
    if threshold is None:
        return None
    attr, value = threshold
    levels = getattr(module, "L", None)
    if levels is None and attr == "up":
        levels = getattr(module, "t", None)
    if isinstance(levels, bool) or not isinstance(levels, (int, np.integer)):
        return None
    if value.numel() != 1:
        raise ExportError(f"QCFS activation {type(module).__name__}: '{attr}' must hold one value, got shape {tuple(value.shape)}")
    phi = getattr(module, "phi", 0.5)
    return float(value.detach().double().reshape(())), int(levels), float(phi)


def is_qcfs(module) -> bool:
    return qcfs_parameters(module) is not None


def _array(tensor) -> np.ndarray:
    return tensor.detach().cpu().double().numpy().copy()


def state_dict_arrays(module) -> dict[str, np.ndarray]:
    """``module.state_dict()`` as numpy arrays (what a plain state-dict ``.npz`` holds)."""
    return {key: value.detach().cpu().numpy().copy() for key, value in module.state_dict().items()}


# ------------------------------------------------------------- conversion


class _Walker:
    def __init__(self, skip):
        self.skip_names = {s for s in skip if isinstance(s, str)}
        self.skip_types = tuple(s for s in skip if isinstance(s, type))
        self.layers: list = []
        self.ndim = None   # 1 (features) or 3 (C, H, W)

    def walk(self, module, name: str):
        if name in self.skip_names or (self.skip_types and isinstance(module, self.skip_types)):
            return
        if is_qcfs(module):
            lam, levels, phi = qcfs_parameters(module)
            self.layers.append(self._ir(ir.QCFS, name, lam, levels, phi))
        elif isinstance(module, nn.Conv2d):
            self.layers.append(self._conv(module, name))
            self.ndim = 3
        elif isinstance(module, nn.Linear):
            if self.ndim == 3:
                self.layers.append(ir.Flatten(f"{name}.flatten"))
            self.layers.append(self._ir(ir.Linear, name, _array(module.weight),
                                        None if module.bias is None else _array(module.bias)))
            self.ndim = 1
        elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            self.layers.append(self._batchnorm(module, name))
        elif isinstance(module, (nn.AvgPool2d, nn.MaxPool2d)):
            self.layers.append(self._pool(module, name))
        elif isinstance(module, nn.AdaptiveAvgPool2d):
            size = module.output_size
            if size not in (1, (1, 1)):
                raise ExportError(f"module '{name}': AdaptiveAvgPool2d only with output size (1, 1), got {size}")
            self.layers.append(ir.GlobalAvgPool(name))
        elif isinstance(module, nn.Flatten):
            if module.start_dim != 1 or module.end_dim != -1:
                raise ExportError(f"module '{name}': Flatten only over all feature dims (start_dim=1, end_dim=-1)")
            self.layers.append(ir.Flatten(name))
            self.ndim = 1
        elif isinstance(module, (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.Identity)):
            pass
        elif _is_basic_block(module):
            self.layers.append(self._block(module, name))
        elif type(module) in (nn.Sequential, nn.ModuleList) or (type(module).__module__.split(".")[0] != "torch"
                                                              and len(list(module.children())) > 0
                                                              and not _has_own_parameters(module)):
            for child_name, child in module.named_children():
                self.walk(child, f"{name}.{child_name}" if name else child_name)
        elif isinstance(module, (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.Hardtanh)):
            raise ExportError(f"module '{name}': {type(module).__name__} is not a QCFS activation; replace it by "
                              "pascal_ref.convert.torch_export.QCFS (with a trained threshold) before exporting")
        elif any(isinstance(getattr(module, attr, None), torch.Tensor) for attr in ("thresh", "up")):
            raise ExportError(f"module '{name}': {type(module).__name__} has a threshold ('thresh'/'up') but no integer "
                              f"attribute L, so it is not recognised as a QCFS activation; set L to its number of levels")
        else:
            hint = "" if list(module.parameters()) else f"; if it does nothing at inference pass skip=['{name}']"
            raise ExportError(f"module '{name}': unsupported module type {type(module).__name__}{hint}")

    @staticmethod
    def _ir(cls, name, *args, **kwargs):
        try:
            return cls(name, *args, **kwargs)
        except ir.NetworkError as error:
            raise ExportError(f"module '{name}': {error}") from None

    def _conv(self, module, name):
        if module.groups != 1 or tuple(module.dilation) != (1, 1):
            raise ExportError(f"module '{name}': Conv2d with groups={module.groups}, dilation={module.dilation} is not supported")
        if isinstance(module.padding, str) or module.padding_mode != "zeros":
            raise ExportError(f"module '{name}': Conv2d padding must be numbers with padding_mode 'zeros', "
                              f"got {module.padding!r}/{module.padding_mode!r}")
        return self._ir(ir.Conv2d, name, _array(module.weight), None if module.bias is None else _array(module.bias),
                        tuple(module.stride), tuple(module.padding))

    def _batchnorm(self, module, name):
        if module.running_mean is None or module.running_var is None:
            raise ExportError(f"module '{name}': BatchNorm without running statistics (track_running_stats=False) cannot be folded")
        channels = module.num_features
        weight = _array(module.weight) if module.weight is not None else np.ones(channels)
        bias = _array(module.bias) if module.bias is not None else np.zeros(channels)
        return self._ir(ir.BatchNorm, name, weight, bias, _array(module.running_mean), _array(module.running_var),
                        eps=float(module.eps))

    def _pool(self, module, name):
        kind = type(module).__name__
        padding = module.padding if isinstance(module.padding, tuple) else (module.padding, module.padding)
        if any(padding) or module.ceil_mode:
            raise ExportError(f"module '{name}': {kind} with padding or ceil_mode is not supported")
        if isinstance(module, nn.MaxPool2d):
            dilation = module.dilation if isinstance(module.dilation, tuple) else (module.dilation,) * 2
            if dilation != (1, 1) or module.return_indices:
                raise ExportError(f"module '{name}': MaxPool2d with dilation or return_indices is not supported")
            cls = ir.MaxPool2d
        else:
            if module.divisor_override is not None:
                raise ExportError(f"module '{name}': AvgPool2d with divisor_override is not supported")
            cls = ir.AvgPool2d
        stride = module.stride if module.stride is not None else module.kernel_size
        return self._ir(cls, name, module.kernel_size, stride)

    def _block(self, module, name):
        residual = list(module.residual_function.named_children())
        kinds = [(nn.Conv2d,), (nn.BatchNorm2d,), None, (nn.Conv2d,), (nn.BatchNorm2d,)]
        ok = len(residual) == 5 and all((kind is None and is_qcfs(m)) or (kind is not None and isinstance(m, kind))
                                        for kind, (_, m) in zip(kinds, residual))
        if not ok:
            raise ExportError(f"module '{name}': residual_function must be [Conv2d, BatchNorm2d, QCFS, Conv2d, BatchNorm2d], "
                              f"got [{', '.join(type(m).__name__ for _, m in residual)}]")
        prefix = f"{name}.residual_function"
        (n0, conv1), (n1, bn1), (n2, act1), (n3, conv2), (n4, bn2) = residual
        shortcut = list(module.shortcut.named_children()) if isinstance(module.shortcut, nn.Sequential) else None
        if shortcut is None or not (len(shortcut) == 0 or (len(shortcut) == 2 and isinstance(shortcut[0][1], nn.Conv2d)
                                                             and isinstance(shortcut[1][1], nn.BatchNorm2d))):
            raise ExportError(f"module '{name}': shortcut must be an empty Sequential or [Conv2d, BatchNorm2d]")
        act_name = "act" if is_qcfs(getattr(module, "act", None)) else "relu"
        lam1, l1, phi1 = qcfs_parameters(act1)
        lam2, l2, phi2 = qcfs_parameters(getattr(module, act_name))
        parts = dict(
            conv1=self._conv(conv1, f"{prefix}.{n0}"), bn1=self._batchnorm(bn1, f"{prefix}.{n1}"),
            act1=self._ir(ir.QCFS, f"{prefix}.{n2}", lam1, l1, phi1),
            conv2=self._conv(conv2, f"{prefix}.{n3}"), bn2=self._batchnorm(bn2, f"{prefix}.{n4}"),
            act2=self._ir(ir.QCFS, f"{name}.{act_name}", lam2, l2, phi2))
        if shortcut:
            (s0, sconv), (s1, sbn) = shortcut
            parts.update(shortcut=self._conv(sconv, f"{name}.shortcut.{s0}"),
                         shortcut_bn=self._batchnorm(sbn, f"{name}.shortcut.{s1}"))
        return self._ir(ir.BasicBlock, name, **parts)


def _has_own_parameters(module) -> bool:
    return any(True for _ in module.parameters(recurse=False)) or any(True for _ in module.buffers(recurse=False))


def _is_basic_block(module) -> bool:
    return (isinstance(getattr(module, "residual_function", None), nn.Sequential)
            and isinstance(getattr(module, "shortcut", None), nn.Module)
            and (is_qcfs(getattr(module, "act", None)) or is_qcfs(getattr(module, "relu", None))))


def check_export(model, network: ir.Network, batch: int = 2, seed: int = 0, tolerance: float = 1e-6) -> float:
    """Run a float64 copy of ``model`` (eval mode) and ``float_ann`` on one random
    batch; raise :class:`ExportError` if the logits differ by more than
    ``tolerance * max(1, max|logit|)``.  Returns the largest difference.

    This catches modules whose ``forward`` is not the sequence of their
    children (an unrecognised skip connection, a reordered forward), which
    the registration-order walk cannot see.
    """
    import copy

    from pascal_ref.golden.ann import float_ann

    rng = np.random.default_rng(seed)
    shape = (batch,) + network.input_shape
    if network.input_levels is not None:   # inputs on the count-coding grid, seen alike by both
        x = rng.integers(0, network.input_levels + 1, shape) / network.input_levels
    else:
        x = rng.normal(size=shape)
    probe = copy.deepcopy(model).double().eval()
    try:
        with torch.no_grad():
            expected = probe(torch.tensor(x)).numpy()
    except Exception as error:
        raise ExportError(f"checking the export: the module's forward failed on a float64 probe input of shape {shape} "
                          f"({type(error).__name__}: {error}); pass check=False to skip the check") from None
    logits = float_ann(network, x).logits
    if expected.shape != logits.shape:
        raise ExportError(f"checking the export: the module returns shape {expected.shape}, the exported network {logits.shape}")
    difference = float(np.max(np.abs(expected - logits)))
    if not difference <= tolerance * max(1.0, float(np.max(np.abs(expected)))):
        raise ExportError(f"checking the export: logits differ by up to {difference:.3g} from the module's own forward; "
                          "its forward is probably not the sequence of its children (unsupported skip connection "
                          "or ordering); pass check=False only if you know why")
    return difference


def export(model, input_shape, *, input_levels: int | None = None, name: str | None = None, skip=(), path=None,
           check: bool = True) -> ir.Network:
    """Translate a QCFS ``nn.Module`` into a validated :class:`~pascal_ref.ir.network.Network`.

    Parameters
    ----------
    model : the module; evaluated as in ``eval()`` mode (batch-norm running
        statistics, no dropout) whatever its current mode.
    input_shape : input shape without batch: ``(features,)`` or ``(C, H, W)``.
    input_levels : None for analog input, or ``L_in`` for count-coded input.
    skip : qualified module names or module classes to ignore (parameter-free
        helpers with no effect in ANN mode).
    path : when given, also save the network there (``pascal_ref.io.fileformat``).
    check : compare against the module's own forward on a random batch
        (:func:`check_export`); needs a forward that runs on CPU in float64.
    """
    if not isinstance(model, nn.Module):
        raise ExportError(f"export needs a torch.nn.Module, got {type(model).__name__}")
    walker = _Walker(skip)
    walker.ndim = len(tuple(input_shape))
    with torch.no_grad():
        walker.walk(model, "")
    if not walker.layers:
        raise ExportError(f"model {type(model).__name__} has no exportable layers")
    network = ir.Network(input_shape, walker.layers, input_levels=input_levels,
                         name=name or type(model).__name__.lower())
    if check:
        check_export(model, network)
    if path is not None:
        from pascal_ref.io.fileformat import save
        save(network, path)
    return network
