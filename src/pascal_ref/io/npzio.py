"""Reading ``.npz`` archives safely: never unpickle, inspect before decompressing, bounded memory.

An ``.npz`` is a zip archive of ``.npy`` members.  A hostile one can hold a
pickled object array (code), members that expand a thousandfold (a zip
bomb), encrypted or exotically compressed members, two members of the same
name, or an ``.npy`` header that declares a shape far larger than its data.
:func:`read_npz` refuses all of these with an :class:`NpzError` naming the
file and the member, *before* anything is decompressed or allocated
(``docs/threat-model.md``):

1. the path must be a regular file (a FIFO, ``/dev/zero`` or a directory
   is refused without reading from it);
2. from the zip's central directory alone: at most :data:`MAX_MEMBERS`
   members, every name ending in ``.npy`` and appearing once (and, with
   ``names=``, only the expected ones), no encryption, only stored or
   deflated members, no member claiming a ratio deflate cannot produce
   (:data:`MAX_COMPRESSION_RATIO`), and a total uncompressed size of at most
   ``max_bytes`` (default :data:`MAX_EXPANDED_BYTES`);
3. per member, the ``.npy`` header (at most :data:`MAX_HEADER_BYTES`, as
   numpy's own default) is parsed as a literal, never evaluated; the dtype
   must be plain numeric, boolean or text (no objects, no records), and the
   declared shape times the item size must equal the bytes the member holds;
4. only then is the array allocated (once, its declared size) and filled
   from the decompressed stream, whose CRC zipfile checks at the end.

So one file can never make this reader allocate more than ``max_bytes`` plus
one read buffer, whatever it declares.
"""
from __future__ import annotations

import ast
import io
import os
import stat
import struct
import zipfile

import numpy as np

from pascal_ref.errors import PascalError, ResourceLimitError

__all__ = ["read_npz", "NpzError", "NpzLimitError", "open_regular_file", "check_zip_members", "format_bytes",
           "MAX_EXPANDED_BYTES", "MAX_MEMBERS", "MAX_HEADER_BYTES", "MAX_COMPRESSION_RATIO"]

MAX_EXPANDED_BYTES = 4 * 2 ** 30
"""Default cap (4 GiB) on what one archive may expand to: the sum of the
uncompressed sizes of its members.  A VGG-16 for ImageNet in float64 is
1.1 GB, the CIFAR-10 test set in float64 0.25 GB.  Every reader takes
``max_bytes=`` to raise or lower it."""

MAX_MEMBERS = 100_000
"""Most members one archive may list (a ResNet-152 state dict has about 1000)."""

MAX_HEADER_BYTES = 10_000
"""Longest ``.npy`` header read (numpy's ``max_header_size`` default); real headers are under 200 bytes."""

MAX_COMPRESSION_RATIO = 1100
"""Deflate cannot expand more than about 1032:1; a member claiming more is not an honest deflate stream."""

_READ_CHUNK = 1 << 24
_NPY_MAGIC = b"\x93NUMPY"
_DTYPE_KINDS = "biufcUS"   # bool, integers, floats, complex, text; never objects, records or void


class NpzError(PascalError):
    """An ``.npz`` file that cannot be read safely."""


class NpzLimitError(NpzError, ResourceLimitError):
    """An ``.npz`` file larger than a stated bound (expanded size, members, header)."""


def format_bytes(count: int) -> str:
    """``count`` bytes in binary units: ``1.5 GiB``."""
    value = float(count)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if value < 1024 or unit == "PiB":
            return f"{int(value)} bytes" if unit == "bytes" else f"{value:.3g} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def _file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "directory"), (stat.S_ISFIFO, "named pipe"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device"), (stat.S_ISSOCK, "socket")):
        if test(mode):
            return name
    return "special file"


def open_regular_file(path, error=None, what: str = "file"):
    """Open ``path`` for binary reading if it is a regular file; ``(handle, size)``.

    The file is opened without blocking (a FIFO would otherwise wait for a
    writer) and checked with ``fstat`` on the open descriptor, so it cannot
    be swapped between the check and the read.  A missing file, a
    directory, a FIFO or a device (``/dev/zero``) raises ``error`` (default
    :class:`NpzError`) naming the path.
    """
    error = error or NpzError
    source = os.fspath(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(source, flags)
    except FileNotFoundError:
        raise error(f"{source}: no such file") from None
    except OSError as failure:
        raise error(f"{source}: cannot open the {what} ({failure.strerror or failure})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise error(f"{source}: not a regular file (a {_file_kind(info.st_mode)}); refused")
        handle = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    return handle, info.st_size


def check_zip_members(archive: zipfile.ZipFile, source: str, max_bytes: int = MAX_EXPANDED_BYTES, error=None,
                      limit_error=None) -> list[zipfile.ZipInfo]:
    """Check a zip's central directory before anything is decompressed; its members.

    Refuses (``error``, default :class:`NpzError`; size limits as
    ``limit_error``, default :class:`NpzLimitError`): more than
    :data:`MAX_MEMBERS` members, a name listed twice, an encrypted member,
    a compression other than stored or deflate, a stored member whose sizes
    differ, a deflated one claiming more than :data:`MAX_COMPRESSION_RATIO`,
    and a total uncompressed size above ``max_bytes``.
    """
    error = error or NpzError
    limit_error = limit_error or NpzLimitError
    members = archive.infolist()
    if len(members) > MAX_MEMBERS:
        raise limit_error(f"{source}: the archive lists {len(members)} members (limit {MAX_MEMBERS}); refused")
    seen, total = set(), 0
    for info in members:
        name = info.filename
        if name in seen:
            raise error(f"{source}: member {name!r} appears twice in the archive; refused (which one is meant?)")
        seen.add(name)
        if info.flag_bits & 0x1:
            raise error(f"{source}: member {name!r} is encrypted; refused")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            method = {zipfile.ZIP_BZIP2: "bzip2", zipfile.ZIP_LZMA: "lzma"}.get(info.compress_type,
                                                                               f"method {info.compress_type}")
            raise error(f"{source}: member {name!r} uses {method} compression; only stored and deflate are read")
        if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
            raise error(f"{source}: member {name!r} is stored uncompressed but lists {info.compress_size} "
                        f"compressed and {info.file_size} uncompressed bytes (damaged archive)")
        if info.file_size > MAX_COMPRESSION_RATIO * max(info.compress_size, 1) + 64:
            raise limit_error(f"{source}: member {name!r} claims to expand {info.compress_size} bytes to "
                              f"{format_bytes(info.file_size)}, more than deflate can (ratio limit "
                              f"{MAX_COMPRESSION_RATIO}); refused as a zip bomb or a damaged archive")
        total += info.file_size
    if total > max_bytes:
        raise limit_error(f"{source}: the archive would expand to {format_bytes(total)}, more than the limit of "
                          f"{format_bytes(max_bytes)} per file (max_bytes=); refused before decompressing")
    return members


def _read_exact(member, count: int, what: str) -> bytes:
    data = member.read(count)
    if len(data) != count:
        raise EOFError(f"{what}: expected {count} bytes, the member ends after {len(data)}")
    return data


def _parse_header(member, info: zipfile.ZipInfo, source: str, key: str):
    """``(dtype, shape, fortran_order, data_bytes)`` of a ``.npy`` member, from its header alone."""
    where = f"{source}: array '{key}'"
    magic = _read_exact(member, 8, f"{where} header")
    if magic[:6] != _NPY_MAGIC:
        raise NpzError(f"{where} is not a .npy array (bad magic number); refused")
    major, minor = magic[6], magic[7]
    if (major, minor) == (1, 0):
        length = struct.unpack("<H", _read_exact(member, 2, f"{where} header"))[0]
        prefix = 10
    elif (major, minor) in ((2, 0), (3, 0)):
        length = struct.unpack("<I", _read_exact(member, 4, f"{where} header"))[0]
        prefix = 12
    else:
        raise NpzError(f"{where}: unsupported .npy format version {major}.{minor}")
    if length > MAX_HEADER_BYTES:
        raise NpzLimitError(f"{where}: .npy header of {length} bytes exceeds the limit of {MAX_HEADER_BYTES} "
                            "(real headers are under 200 bytes); refused as damaged or hostile")
    raw = _read_exact(member, length, f"{where} header")
    try:
        text = raw.decode("utf-8" if major == 3 else "latin1")
        header = ast.literal_eval(text)
    except (UnicodeDecodeError, SyntaxError, ValueError, TypeError, MemoryError, RecursionError) as failure:
        raise NpzError(f"{where}: unreadable .npy header ({type(failure).__name__})") from None
    if not isinstance(header, dict) or set(header) != {"descr", "fortran_order", "shape"}:
        raise NpzError(f"{where}: the .npy header must be a dict of 'descr', 'fortran_order' and 'shape', "
                       f"got {str(header)[:80]!r}")
    shape, fortran = header["shape"], header["fortran_order"]
    if not isinstance(shape, tuple) or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0
                                               for n in shape):
        raise NpzError(f"{where}: the .npy header's shape must be a tuple of integers >= 0, got {str(shape)[:80]}")
    if len(shape) > 32:
        raise NpzError(f"{where}: {len(shape)} dimensions (numpy allows 32)")
    if not isinstance(fortran, bool):
        raise NpzError(f"{where}: the .npy header's fortran_order must be True or False")
    try:
        dtype = np.lib.format.descr_to_dtype(header["descr"])
    except (TypeError, ValueError, KeyError, IndexError, MemoryError, RecursionError):
        raise NpzError(f"{where}: unknown dtype {str(header['descr'])[:80]!r} in the .npy header") from None
    if dtype.hasobject:
        raise NpzError(f"{where} is a pickled object array; refused (only numeric arrays are read)")
    if dtype.kind not in _DTYPE_KINDS or dtype.names is not None or dtype.subdtype is not None:
        raise NpzError(f"{where}: dtype {dtype} is not a plain numeric, boolean or text type; refused")
    if dtype.itemsize == 0:
        raise NpzError(f"{where}: dtype {dtype} has items of 0 bytes; refused")
    count = 1
    for n in shape:
        count *= n
    expected = count * dtype.itemsize
    held = info.file_size - prefix - length
    if expected != held:
        raise NpzError(f"{where}: the header declares {dtype} {shape} ({format_bytes(expected)}) but the member "
                       f"holds {format_bytes(max(held, 0))} of data; refused (damaged or hostile file)")
    return dtype, shape, fortran, count


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, source: str, key: str) -> np.ndarray:
    with archive.open(info) as member:
        dtype, shape, fortran, count = _parse_header(member, info, source, key)
        try:
            flat = np.empty(count, dtype=dtype)
        except MemoryError:
            raise NpzLimitError(f"{source}: array '{key}': not enough memory for {dtype} {shape} "
                                f"({format_bytes(count * dtype.itemsize)})") from None
        view = memoryview(flat.view(np.uint8).reshape(-1)) if count else memoryview(b"")
        filled = 0
        while filled < len(view):
            got = member.readinto(view[filled:filled + _READ_CHUNK])
            if not got:
                raise EOFError(f"array '{key}': the member ends after {filled} of {len(view)} data bytes")
            filled += got
        if member.read(1):  # also completes zipfile's CRC check
            raise NpzError(f"{source}: array '{key}': data continues past the declared shape {shape}")
    return flat.reshape(shape, order="F" if fortran else "C")


def read_npz(path, *, names=None, max_bytes: int = MAX_EXPANDED_BYTES, source: str | None = None) -> dict:
    """All arrays of an ``.npz`` as a dict ``{key: ndarray}``; never unpickles.

    Parameters
    ----------
    path : a regular file, or the bytes of one already read (``bytes``; ``source`` names them in messages).
    names : collection of str or None
        The only keys allowed (others are refused before anything is
        decompressed); None allows any.
    max_bytes : int
        Cap on the archive's total uncompressed size (default
        :data:`MAX_EXPANDED_BYTES`).

    Every problem (module docstring) is an :class:`NpzError` naming the
    file and, where it applies, the array; limits are an
    :class:`NpzLimitError`.
    """
    if isinstance(path, (bytes, bytearray)):
        source = source or "model bytes"
        handle = io.BytesIO(path)
    else:
        source = os.fspath(path)
        handle, _size = open_regular_file(source, NpzError, "archive")
    arrays = {}
    try:
        with handle:
            try:
                archive = zipfile.ZipFile(handle)
            except (zipfile.BadZipFile, EOFError, ValueError, OverflowError, struct.error):
                raise NpzError(f"{source}: not an .npz archive (not a zip file, or a damaged one)") from None
            with archive:
                members = check_zip_members(archive, source, max_bytes)
                keys = {}
                for info in members:
                    if not info.filename.endswith(".npy"):
                        raise NpzError(f"{source}: member {info.filename!r} is not a .npy array; refused")
                    key = info.filename[:-len(".npy")]
                    if key in keys:
                        raise NpzError(f"{source}: array {key!r} appears twice in the archive; refused")
                    if names is not None and key not in names:
                        raise NpzError(f"{source}: unexpected array {key!r}; expected {', '.join(sorted(names))}")
                    keys[key] = info
                for key, info in keys.items():
                    arrays[key] = _read_member(archive, info, source, key)
    except NpzError:
        raise
    except MemoryError:
        raise NpzLimitError(f"{source}: not enough memory to read the archive") from None
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError, OverflowError, struct.error,
            NotImplementedError, RuntimeError) as failure:
        raise NpzError(f"{source}: damaged .npz archive ({type(failure).__name__}: {failure})") from None
    return arrays
