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

Bounded memory and time (``docs/threat-model.md``):

* the path must be a regular file (no FIFO, no ``/dev/zero``), and the zip's
  central directory is checked before anything is decompressed
  (:func:`pascal_ref.io.npzio.check_zip_members`: no encryption, stored or
  deflate only, no duplicate member, total uncompressed size at most
  ``max_bytes``, default :data:`~pascal_ref.io.npzio.MAX_EXPANDED_BYTES`);
* ``data.pkl`` is at most :data:`MAX_PICKLE_BYTES` and is scanned opcode by
  opcode (:mod:`pickletools`, nothing executed) before it is unpickled: at
  most :data:`MAX_PICKLE_OPS` opcodes, memo indices no larger than the
  opcodes before them (a 10-byte ``LONG_BINPUT 2**31`` would otherwise make
  the unpickler allocate a memo table of gigabytes), marks nested at most
  :data:`MAX_NESTING` deep; the loaded object may nest containers at most
  :data:`MAX_NESTING` deep;
* every tensor is a read-only *view* of its storage (a storage is read
  once, however many tensors view it), and the views together may cover
  at most ``max_bytes``.
"""
from __future__ import annotations

import io
import pickle
import pickletools
import struct
import zipfile
from dataclasses import dataclass

import numpy as np

from pascal_ref.errors import PascalError, ResourceLimitError
from pascal_ref.io.npzio import MAX_EXPANDED_BYTES, check_zip_members, format_bytes, open_regular_file

__all__ = ["TorchPickleError", "TorchPickleLimitError", "load_pth", "load_state_dict_pth", "find_state_dict",
           "MAX_PICKLE_BYTES", "MAX_PICKLE_OPS", "MAX_NESTING"]

MAX_PICKLE_BYTES = 64 * 2 ** 20
"""Largest ``data.pkl`` read (a ResNet-152 checkpoint's is under 200 kB)."""

MAX_PICKLE_OPS = 2_000_000
"""Most pickle opcodes run (about 20 per tensor in a state dict)."""

MAX_NESTING = 64
"""Deepest nesting of marks in the pickle and of containers in the loaded object."""

# A pickled torch file of the legacy format starts with this pickled magic number.
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


class TorchPickleError(PascalError):
    """A ``.pth`` file that is damaged, hostile or not a plain tensor container."""


class TorchPickleLimitError(TorchPickleError, ResourceLimitError):
    """A ``.pth`` file beyond a stated bound (size, opcodes, nesting)."""


@dataclass(frozen=True)
class _StorageType:
    name: str
    dtype: np.dtype
    bfloat16: bool = False

    def __setstate__(self, state):
        raise TorchPickleError(f"the checkpoint tried to give state to the storage type torch.{self.name}; refused")


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


def _tensor_view(storage: _Storage, storage_offset, size, stride) -> np.ndarray:
    """A read-only view of ``storage`` (``torch._utils._rebuild_tensor`` in numpy); bounds-checked, never a copy."""
    if not isinstance(storage, _Storage):
        raise TorchPickleError(f"tensor rebuild got {type(storage).__name__} instead of a storage")
    offset = _check_int(storage_offset, "tensor storage offset")
    size = _check_ints(size, "tensor size")
    stride = _check_ints(stride, "tensor stride")
    if len(size) != len(stride):
        raise TorchPickleError(f"tensor size {size} and stride {stride} differ in length")
    if len(size) > 32:
        raise TorchPickleError(f"tensor of {len(size)} dimensions (numpy allows 32)")
    count = 1
    for n in size:
        count *= n
    available = storage.data.shape[0]
    if count == 0:
        return np.zeros(size, dtype=storage.data.dtype)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= available:
        raise TorchPickleError(f"tensor (offset {offset}, size {size}, stride {stride}) reaches element {last} "
                               f"of a storage of {available} elements")
    if count > max(available, 1):
        raise TorchPickleError(f"tensor of size {size} has more elements than its storage ({available}); "
                               "expanded views are not supported")
    itemsize = storage.data.itemsize
    return np.lib.stride_tricks.as_strided(storage.data[offset:], shape=size,
                                           strides=tuple(s * itemsize for s in stride), writeable=False)


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


class _Guarded:
    """A callable handed to the unpickler in place of a reader function: it forwards calls and refuses
    every attribute write and any pickled state (``BUILD``), so a checkpoint made only of allowed globals
    cannot change the reader (a function's ``__defaults__``/``__dict__``) for the rest of the process."""

    __slots__ = ("_call", "_name")

    def __init__(self, call, name: str):
        object.__setattr__(self, "_call", call)
        object.__setattr__(self, "_name", name)

    def __call__(self, *args):
        return self._call(*args)

    def __setattr__(self, key, value):
        raise TorchPickleError(f"the checkpoint tried to set attribute {key!r} of {self._name}; refused")

    def __setstate__(self, state):
        raise TorchPickleError(f"the checkpoint tried to give state to {self._name} (a BUILD opcode on a "
                               "function); refused")


_REBUILD_TENSOR = {("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_tensor")}
_ALLOWED = {
    ("torch._utils", "_rebuild_parameter"): _Guarded(_rebuild_parameter, "torch._utils._rebuild_parameter"),
    ("collections", "OrderedDict"): _OrderedDict,
}


def _scan_pickle(data: bytes, source: str, member: str) -> None:
    """Walk the pickle's opcodes without running any (:func:`pickletools.genops`) and refuse bombs.

    A pickler numbers its memo entries 0, 1, 2, ...: an index larger than
    the number of opcodes before it exists only to make the unpickler
    allocate a memo table of that size.  Marks nest as deep as the
    containers being built.
    """
    depth = 0
    try:
        for count, (opcode, argument, _position) in enumerate(pickletools.genops(data)):
            if count >= MAX_PICKLE_OPS:
                raise TorchPickleLimitError(f"{source}: '{member}' has more than {MAX_PICKLE_OPS} pickle opcodes; "
                                            "refused (a state dict needs about 20 per tensor)")
            if opcode.name in ("PUT", "BINPUT", "LONG_BINPUT"):
                index = int(argument)
                if index > count:
                    raise TorchPickleLimitError(f"{source}: '{member}' stores memo entry {index} at opcode {count}; "
                                                "refused (a memo bomb: picklers number entries from 0)")
            if opcode.name == "MARK":
                depth += 1
                if depth > MAX_NESTING:
                    raise TorchPickleLimitError(f"{source}: '{member}' nests marks more than {MAX_NESTING} deep; "
                                                "refused")
            elif pickletools.markobject in opcode.stack_before:
                depth -= 1
    except TorchPickleError:
        raise
    except (ValueError, KeyError, struct.error, UnicodeDecodeError, IndexError, OverflowError) as error:
        raise TorchPickleError(f"{source}: malformed pickle in '{member}' ({type(error).__name__}: {error})") from None


_PLAIN = (str, bytes, bytearray, int, float, complex, bool, type(None), np.ndarray)


def _check_loaded(value, source: str) -> None:
    """Refuse a loaded object that is not plain data: containers nested deeper than :data:`MAX_NESTING`,
    or anything but containers, strings, numbers, None and tensors (a storage type or a rebuild function
    left on the stack by a pickle that never called it).  Iterative, no recursion."""
    seen = set()
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list, tuple, set, frozenset)):
            if id(item) in seen:
                continue
            seen.add(id(item))
            if depth > MAX_NESTING:
                raise TorchPickleLimitError(f"{source}: the checkpoint nests containers more than {MAX_NESTING} "
                                            "deep; refused")
            children = list(item.keys()) + list(item.values()) if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
        elif not isinstance(item, _PLAIN):
            what = item.name if isinstance(item, _StorageType) else type(item).__name__
            raise TorchPickleError(f"{source}: the checkpoint holds a {what} object that is not a tensor or plain "
                                   "data; refused")


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str, byteorder: str, source: str,
                 max_bytes: int):
        super().__init__(io.BytesIO(data))
        self.archive = archive
        self.prefix = prefix
        self.byteorder = byteorder
        self.source = source
        self.max_bytes = max_bytes
        self.view_bytes = 0
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str):
        if (module, name) in _REBUILD_TENSOR:
            return _Guarded(self.rebuild_tensor, f"{module}.{name}")
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

    def rebuild_tensor(self, storage, storage_offset, size, stride, *_ignored) -> np.ndarray:
        """``torch._utils._rebuild_tensor(_v2)``: a view of the storage, counted against ``max_bytes``."""
        view = _tensor_view(storage, storage_offset, size, stride)
        self.view_bytes += view.nbytes
        if self.view_bytes > self.max_bytes:
            raise TorchPickleLimitError(f"{self.source}: its tensors cover more than {self.max_bytes} bytes "
                                        f"({format_bytes(self.max_bytes)}, max_bytes=) of storage (overlapping views "
                                        f"of the same storages, {format_bytes(sum(s.data.nbytes for s in self.storages.values()))} "
                                        "stored); refused")
        return view

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise TorchPickleError(f"{self.source}: unexpected persistent id {str(pid)[:80]}; "
                                   "expected ('storage', type, key, location, numel)")
        _, kind, key, _location, numel = pid
        if not isinstance(kind, _StorageType):
            raise TorchPickleError(f"{self.source}: storage {key!r:.80} has no known storage type ({kind!r:.80})")
        if not isinstance(key, str) or not key or "/" in key or ".." in key:
            raise TorchPickleError(f"{self.source}: invalid storage key {key!r:.80}")
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
        order = "<" if self.byteorder == "little" else ">"
        stored = kind.dtype if kind.dtype.itemsize == 1 else kind.dtype.newbyteorder(order)
        data = np.frombuffer(raw, dtype=stored)
        if kind.bfloat16:
            data = (data.astype(np.uint32) << 16).view(np.float32)   # once per storage, not per view
        elif not stored.isnative:
            data = data.astype(kind.dtype)
        data.setflags(write=False)
        storage = _Storage(kind, data)
        self.storages[key] = storage
        return storage


def load_pth(path, *, max_bytes: int = MAX_EXPANDED_BYTES) -> object:
    """Unpickle a ``torch.save`` zip archive safely; tensors become read-only numpy views.

    Returns the saved object (usually a dict); raises :class:`TorchPickleError`
    for damaged, legacy or hostile files without calling any code from them,
    and :class:`TorchPickleLimitError` beyond the bounds of the module
    docstring (``max_bytes`` caps the archive's expanded size and the bytes
    its tensors cover).  Tensors viewing one storage share its memory; copy
    one (``np.array(t)``) to write to it.
    """
    source = str(path)
    handle, _size = open_regular_file(source, TorchPickleError, "checkpoint")
    try:
        with handle:
            head = handle.read(64)
            handle.seek(0)
            if not zipfile.is_zipfile(handle):
                legacy = head[:3] == b"\x80\x02\x8a" and head[3:4] == b"\x0a" and \
                    int.from_bytes(head[4:14], "little") == _LEGACY_MAGIC
                raise TorchPickleError(f"{source}: " + ("legacy (pre-1.6) torch serialization is not supported; "
                                                        "re-save it with a current torch.save" if legacy else
                                                        "not a torch zip archive (truncated or not a .pth file)"))
            handle.seek(0)
            with zipfile.ZipFile(handle) as archive:
                return _load_archive(archive, source, max_bytes)
    except TorchPickleError:
        raise
    except MemoryError:
        raise TorchPickleLimitError(f"{source}: not enough memory to load the checkpoint") from None
    except (zipfile.BadZipFile, EOFError, zipfile.LargeZipFile, OSError, ValueError, struct.error, OverflowError,
            NotImplementedError, RuntimeError) as error:
        raise TorchPickleError(f"{source}: damaged zip archive ({type(error).__name__}: {error})") from None


def _load_archive(archive: zipfile.ZipFile, source: str, max_bytes: int):
    check_zip_members(archive, source, max_bytes, TorchPickleError, TorchPickleLimitError)
    names = archive.namelist()
    pickles = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(pickles) != 1:
        raise TorchPickleError(f"{source}: expected one '<name>/data.pkl' in the archive, found {len(pickles)}"
                               + (" (a TorchScript archive? export its state_dict instead)" if
                                  any(n.endswith("constants.pkl") for n in names) else ""))
    prefix = pickles[0][:-len("/data.pkl")]
    byteorder = "little"
    if f"{prefix}/byteorder" in names:
        if archive.getinfo(f"{prefix}/byteorder").file_size > 16:
            raise TorchPickleError(f"{source}: '{prefix}/byteorder' is not a byte order")
        byteorder = archive.read(f"{prefix}/byteorder").decode("ascii", "replace").strip()
        if byteorder not in ("little", "big"):
            raise TorchPickleError(f"{source}: unknown byte order {byteorder!r}")
    size = archive.getinfo(pickles[0]).file_size
    if size > MAX_PICKLE_BYTES:
        raise TorchPickleLimitError(f"{source}: '{pickles[0]}' is {format_bytes(size)}, more than the limit of "
                                    f"{format_bytes(MAX_PICKLE_BYTES)}; refused")
    data = archive.read(pickles[0])
    _scan_pickle(data, source, pickles[0])
    unpickler = _RestrictedUnpickler(data, archive, prefix, byteorder, source, max_bytes)
    try:
        value = unpickler.load()
    except TorchPickleError:
        raise
    except (pickle.UnpicklingError, EOFError, TypeError, ValueError, AttributeError, IndexError, KeyError,
            OverflowError, RecursionError, struct.error) as error:
        raise TorchPickleError(f"{source}: malformed pickle in '{pickles[0]}' ({type(error).__name__}: "
                               f"{str(error)[:200]})") from None
    _check_loaded(value, source)
    return value


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
            found = ", ".join(f"{k!r:.40}" for k in list(value)[:10]) if isinstance(value, dict) else type(value).__name__
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
        found = ", ".join(f"{k!r:.40}" for k in list(value)[:10])
        raise TorchPickleError(f"{source}: not a state dict of name -> tensor and no unique 'state_dict'/'model'/'net' "
                               f"entry holding one (top-level keys: {found}); name the entry with key=")
    raise TorchPickleError(f"{source}: holds a {type(value).__name__}, not a state dict")


def load_state_dict_pth(path, key: str | None = None, *, max_bytes: int = MAX_EXPANDED_BYTES) -> dict[str, np.ndarray]:
    """``load_pth`` + :func:`find_state_dict`: a plain ``{name: ndarray}`` mapping (read-only views)."""
    return find_state_dict(load_pth(path, max_bytes=max_bytes), str(path), key)
