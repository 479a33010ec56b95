"""Plain state dicts: reading them from files and handing out their arrays.

A *plain state dict* is a mapping of key -> numeric array, as
``np.savez(f, **{k: v.numpy() for k, v in model.state_dict().items()})``
writes it, or a torch ``.pth`` read without torch
(:mod:`pascal_ref.io.torch_pickle`).  :class:`StateDictReader` gives the
architecture templates (:mod:`pascal_ref.convert.architectures`) its arrays
by key with the shape checked, strips an ``nn.DataParallel`` ``module.``
prefix and reports the keys nobody asked for.  Torch-free.
"""
from __future__ import annotations

import numpy as np

from pascal_ref.errors import PascalError
from pascal_ref.io.npzio import read_npz

__all__ = ["StateDictError", "StateDictReader", "load_state_dict_npz", "load_state_dict"]

_MODULE_PREFIX = "module."   # nn.DataParallel


class StateDictError(PascalError):
    """A state dict that does not fit the template; the message names the keys."""


class StateDictReader:
    """Hands out a state dict's arrays by key, checking shapes, and records which were used.

    ``where`` names the state dict in errors (a file name, say).
    ``num_batches_tracked`` entries of used batch norms are never reported
    as unused.
    """

    def __init__(self, state_dict, where: str):
        if not hasattr(state_dict, "keys") or not hasattr(state_dict, "__getitem__"):
            raise StateDictError(f"{where}: a state dict must be a mapping of key -> array, got {type(state_dict).__name__}")
        keys = list(state_dict.keys())
        bad = [k for k in keys if not isinstance(k, str)]
        if bad:
            raise StateDictError(f"{where}: state-dict keys must be strings, got {bad[:3]!r}")
        strip = bool(keys) and all(k.startswith(_MODULE_PREFIX) for k in keys)
        self.arrays = {(k[len(_MODULE_PREFIX):] if strip else k): state_dict[k] for k in keys}
        self.where = where
        self.used: set[str] = set()

    def has(self, key: str) -> bool:
        return key in self.arrays

    def get(self, key: str, shape: tuple[int, ...]) -> np.ndarray:
        """The array of ``key`` as float64; shape ``(1,)`` also accepts a scalar."""
        if key not in self.arrays:
            raise StateDictError(f"{self.where}: missing key '{key}' (expected shape {shape})")
        array = np.asarray(self.arrays[key])
        if array.dtype.kind not in "iuf":
            raise StateDictError(f"{self.where}: '{key}' must be a numeric array, got dtype {array.dtype}")
        if array.shape != shape and not (shape == (1,) and array.shape == ()):
            raise StateDictError(f"{self.where}: '{key}' has shape {array.shape}, the template expects {shape}")
        self.used.add(key)
        return array.astype(np.float64)

    def check_unused(self):
        """Raise :class:`StateDictError` naming the keys no :meth:`get` asked for."""
        extra = []
        for key in self.arrays:
            if key in self.used:
                continue
            owner, _, leaf = key.rpartition(".")
            if leaf == "num_batches_tracked" and f"{owner}.running_mean" in self.used:
                continue
            extra.append(key)
        if extra:
            raise StateDictError(f"{self.where}: {len(extra)} unexpected key(s) not in the template: "
                                 f"{quote_keys(sorted(extra), 8)}")


def quote_keys(keys, limit: int) -> str:
    """The first ``limit`` keys, quoted, and how many more there are."""
    text = ", ".join(repr(k) for k in keys[:limit])
    return text + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def load_state_dict_npz(path) -> dict[str, np.ndarray]:
    """Read a plain state-dict ``.npz`` without ever unpickling.

    Every entry must be a numeric array; object arrays, strings and damaged
    archives raise an error naming the file and the key
    (:class:`~pascal_ref.io.npzio.NpzError` or :class:`StateDictError`).
    """
    path = str(path)
    state = read_npz(path)
    for key, array in state.items():
        if array.dtype.kind not in "iufb":
            raise StateDictError(f"{path}: array '{key}' has dtype {array.dtype}; only numeric arrays are accepted")
    if not state:
        raise StateDictError(f"{path}: the archive holds no arrays")
    return state


def load_state_dict(path, key: str | None = None) -> dict[str, np.ndarray]:
    """Read a state dict from ``.npz`` (:func:`load_state_dict_npz`) or from a
    torch ``.pth``/``.pt``/``.ckpt``/``.tar`` file (:mod:`pascal_ref.io.torch_pickle`,
    torch-free and without running the file's pickle code); ``key`` names the
    entry of a checkpoint dict that holds the state dict."""
    path = str(path)
    lower = path.lower()
    if lower.endswith(".npz"):
        if key is not None:
            raise StateDictError(f"{path}: key= applies to torch checkpoints, not to .npz files")
        return load_state_dict_npz(path)
    if lower.endswith((".pth", ".pt", ".ckpt", ".tar", ".bin")):
        from pascal_ref.io.torch_pickle import load_state_dict_pth
        return load_state_dict_pth(path, key)
    raise StateDictError(f"{path}: unknown state-dict file type; expected .npz or a torch .pth/.pt file")
