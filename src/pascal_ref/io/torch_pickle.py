"""Read PyTorch ``.pth`` / ``.pt`` files without torch and without running their code.

``torch.save`` writes a zip archive: ``<name>/data.pkl`` is a pickle of the
saved object in which every tensor is a call
``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`` and
every storage a *persistent id* ``("storage", torch.FloatStorage, key,
location, numel)`` whose bytes are the archive member ``<name>/data/<key>``.

A pickle is a program: unpickling an arbitrary one can call any importable
function (``os.system`` included).  This reader runs the pickle on a
restricted unpickler whose ``find_class`` hands out only our own harmless
stand-ins:

* ``torch._utils._rebuild_tensor_v2`` / ``_rebuild_tensor`` /
  ``_rebuild_parameter`` -> build a numpy array from the storage bytes,
  checking that every element lies inside the storage;
* ``torch.<Type>Storage`` -> a dtype marker (float16/32/64, bfloat16 as
  float32, int8/16/32/64, uint8, bool);
* ``collections.OrderedDict`` -> a ``dict`` (subclass) without attributes.

Everything else (any other global: a model class, ``os.system``,
``builtins.eval``, numpy reconstructors, TorchScript classes) is refused with
:class:`TorchPickleError` *before* anything is called.  Plain containers
(dict, list, tuple, str, numbers, None, bools) come from pickle opcodes that
never call code.  Legacy (pre-1.6, non-zip) files are refused too.
"""
from __future__ import annotations

import io
import pickle
import zipfile
from dataclasses import dataclass

import numpy as np

from pascal_ref.errors import PascalError

__all__ = ["TorchPickleError", "load_pth", "load_state_dict_pth", "find_state_dict"]

# A pickled torch file of the legacy format starts with this pickled magic number.
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


class TorchPickleError(PascalError):
    """A ``.pth`` file that is damaged, hostile or not a plain tensor container."""


@dataclass(frozen=True)
class _StorageType:
    name: str
    dtype: np.dtype
    bfloat16: bool = False


_STORAGE_TYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "BFloat16Storage": np.uint16, "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


@dataclass(frozen=True)
class _Storage:
    kind: _StorageType
    data: np.ndarray  # 1-D, native byte order, read-only


def _check_int(value, what: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise TorchPickleError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return value


def _check_ints(value, what: str) -> tuple[int, ...]:
    if not isinstance(value, tuple):
        raise TorchPickleError(f"{what} must be a tuple of integers, got {type(value).__name__}")
    return tuple(_check_int(v, what) for v in value)


def _rebuild_tensor(storage, storage_offset, size, stride, *_ignored) -> np.ndarray:
    """numpy stand-in for ``torch._utils._rebuild_tensor(_v2)``; bounds-checked."""
    if not isinstance(storage, _Storage):
        raise TorchPickleError(f"tensor rebuild got {type(storage).__name__} instead of a storage")
    offset = _check_int(storage_offset, "tensor storage offset")
    size = _check_ints(size, "tensor size")
    stride = _check_ints(stride, "tensor stride")
    if len(size) != len(stride):
        raise TorchPickleError(f"tensor size {size} and stride {stride} differ in length")
    count = int(np.prod(size, dtype=object)) if size else 1
    available = storage.data.shape[0]
    if count > 0:
        last = offset + sum((n - 1) * s for n, s in zip(size, stride))
        if last >= available:
            raise TorchPickleError(f"tensor (offset {offset}, size {size}, stride {stride}) reaches element {last} "
                                   f"of a storage of {available} elements")
        if count > max(available, 1):
            raise TorchPickleError(f"tensor of size {size} has more elements than its storage ({available}); "
                                   "expanded views are not supported")
        itemsize = storage.data.itemsize
        array = np.lib.stride_tricks.as_strided(storage.data[offset:], shape=size,
                                                strides=tuple(s * itemsize for s in stride), writeable=False).copy()
    else:
        array = np.zeros(size, dtype=storage.data.dtype)
    if storage.kind.bfloat16:
        array = (array.astype(np.uint32) << 16).view(np.float32)
    return array


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *_ignored):
    if not isinstance(data, np.ndarray):
        raise TorchPickleError(f"parameter rebuild got {type(data).__name__} instead of a tensor")
    return data


class _OrderedDict(dict):
    """Stand-in for ``collections.OrderedDict``; drops pickled attribute state
    (a state dict's ``_metadata``: module versions, not needed here)."""

    def __setstate__(self, state):
        if not isinstance(state, (dict, tuple)):
            raise TorchPickleError(f"unexpected dict state of type {type(state).__name__}")


_ALLOWED = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("collections", "OrderedDict"): _OrderedDict,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str, byteorder: str, source: str):
        super().__init__(io.BytesIO(data))
        self.archive = archive
        self.prefix = prefix
        self.byteorder = byteorder
        self.source = source
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module == "torch" and name in _STORAGE_TYPES:
            return _StorageType(name, np.dtype(_STORAGE_TYPES[name]), bfloat16=name == "BFloat16Storage")
        if module == "torch" and name.endswith("Storage"):
            raise TorchPickleError(f"{self.source}: tensors of type torch.{name} are not supported "
                                   f"(supported: {', '.join(sorted(_STORAGE_TYPES))})")
        raise TorchPickleError(f"{self.source}: refusing to load global '{module}.{name}': only tensors, storages "
                               "and plain containers are allowed (the file may contain code, or a whole pickled "
                               "model: save model.state_dict() instead)")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise TorchPickleError(f"{self.source}: unexpected persistent id {pid!r}; expected ('storage', type, key, location, numel)")
        _, kind, key, _location, numel = pid
        if not isinstance(kind, _StorageType):
            raise TorchPickleError(f"{self.source}: storage {key!r} has no known storage type ({kind!r})")
        if not isinstance(key, str) or not key or "/" in key or ".." in key:
            raise TorchPickleError(f"{self.source}: invalid storage key {key!r}")
        numel = _check_int(numel, f"{self.source}: storage {key!r} element count")
        if key in self.storages:
            storage = self.storages[key]
            if storage.kind != kind or storage.data.shape[0] != numel:
                raise TorchPickleError(f"{self.source}: storage {key!r} is declared twice with different types or sizes")
            return storage
        member = f"{self.prefix}/data/{key}"
        try:
            info = self.archive.getinfo(member)
        except KeyError:
            raise TorchPickleError(f"{self.source}: storage {key!r} missing from the archive (no '{member}')") from None
        expected = numel * kind.dtype.itemsize
        if info.file_size != expected:
            raise TorchPickleError(f"{self.source}: storage {key!r} holds {info.file_size} bytes, "
                                   f"{numel} x {kind.name} needs {expected}")
        raw = self.archive.read(member)
        dtype = kind.dtype if kind.dtype.itemsize == 1 else kind.dtype.newbyteorder("<" if self.byteorder == "little" else ">")
        data = np.frombuffer(raw, dtype=dtype).astype(kind.dtype)  # native order, own copy
        data.setflags(write=False)
        storage = _Storage(kind, data)
        self.storages[key] = storage
        return storage


def load_pth(path) -> object:
    """Unpickle a ``torch.save`` zip archive safely; tensors become numpy arrays.

    Returns the saved object (usually a dict); raises :class:`TorchPickleError`
    for damaged, legacy or hostile files without calling any code from them.
    """
    source = str(path)
    try:
        with open(source, "rb") as handle:
            head = handle.read(64)
    except OSError as error:
        raise TorchPickleError(f"{source}: cannot read ({error.strerror or error})") from None
    if not zipfile.is_zipfile(source):
        legacy = head[:3] == b"\x80\x02\x8a" and head[3:4] == b"\x0a" and \
            int.from_bytes(head[4:14], "little") == _LEGACY_MAGIC
        raise TorchPickleError(f"{source}: " + ("legacy (pre-1.6) torch serialization is not supported; re-save it with "
                                                "a current torch.save" if legacy else
                                                "not a torch zip archive (truncated or not a .pth file)"))
    try:
        with zipfile.ZipFile(source) as archive:
            pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
            if len(pickles) != 1:
                raise TorchPickleError(f"{source}: expected one '<name>/data.pkl' in the archive, found {len(pickles)}"
                                       + (" (a TorchScript archive? export its state_dict instead)" if
                                          any(n.endswith("constants.pkl") for n in archive.namelist()) else ""))
            prefix = pickles[0][:-len("/data.pkl")]
            byteorder = "little"
            if f"{prefix}/byteorder" in archive.namelist():
                byteorder = archive.read(f"{prefix}/byteorder").decode("ascii", "replace").strip()
                if byteorder not in ("little", "big"):
                    raise TorchPickleError(f"{source}: unknown byte order {byteorder!r}")
            data = archive.read(pickles[0])
            unpickler = _RestrictedUnpickler(data, archive, prefix, byteorder, source)
            try:
                return unpickler.load()
            except TorchPickleError:
                raise
            except (pickle.UnpicklingError, EOFError, TypeError, ValueError, AttributeError, IndexError, KeyError,
                    OverflowError, MemoryError, RecursionError) as error:
                raise TorchPickleError(f"{source}: malformed pickle in '{pickles[0]}' ({type(error).__name__}: {error})") from None
    except (zipfile.BadZipFile, EOFError, zipfile.LargeZipFile) as error:
        raise TorchPickleError(f"{source}: damaged zip archive ({error})") from None
    except OSError as error:
        if isinstance(error, TorchPickleError):
            raise
        raise TorchPickleError(f"{source}: damaged zip archive ({error})") from None


def _is_state_dict(value) -> bool:
    return isinstance(value, dict) and len(value) > 0 and all(
        isinstance(k, str) and isinstance(v, np.ndarray) for k, v in value.items())


def find_state_dict(value, source: str = "checkpoint", key: str | None = None) -> dict[str, np.ndarray]:
    """The flat ``{name: array}`` state dict inside a loaded checkpoint.

    Accepts a state dict itself, or a dict holding one under ``key`` (or, when
    ``key`` is None, under exactly one of the usual keys ``state_dict``,
    ``model``, ``net``, ``model_state_dict``).
    """
    if key is not None:
        if not isinstance(value, dict) or key not in value:
            found = ", ".join(repr(k) for k in value) if isinstance(value, dict) else type(value).__name__
            raise TorchPickleError(f"{source}: no entry {key!r} in the checkpoint (found: {found})")
        value = value[key]
        if not _is_state_dict(value):
            raise TorchPickleError(f"{source}: entry {key!r} is not a state dict of name -> tensor")
        return value
    if _is_state_dict(value):
        return value
    if isinstance(value, dict):
        hits = [k for k in ("state_dict", "model", "net", "model_state_dict") if k in value and _is_state_dict(value[k])]
        if len(hits) == 1:
            return value[hits[0]]
        found = ", ".join(repr(k) for k in list(value)[:10])
        raise TorchPickleError(f"{source}: not a state dict of name -> tensor and no unique 'state_dict'/'model'/'net' "
                               f"entry holding one (top-level keys: {found}); name the entry with key=")
    raise TorchPickleError(f"{source}: holds a {type(value).__name__}, not a state dict")


def load_state_dict_pth(path, key: str | None = None) -> dict[str, np.ndarray]:
    """``load_pth`` + :func:`find_state_dict`: a plain ``{name: ndarray}`` mapping."""
    return find_state_dict(load_pth(path), str(path), key)
