"""Valid files to start from and hypothesis strategies that break them.

Every generated file is written by the test process into its own temporary
folder and loaded by the sandboxed worker.  Strategies mutate valid files at
three levels: the content (graph JSON fields, arrays, labels, pickle
opcodes, manifest entries), the container (zip members, compression, .npy
headers) and the bytes.
"""
from __future__ import annotations

import io
import json
import struct
import warnings
import zipfile

import numpy as np
from hypothesis import strategies as st

# ------------------------------------------------------------ nasty values

HOSTILE_STRINGS = ["", " ", "../x", "../../etc/passwd", "/etc/passwd", "a/b", "x.v; tee -o /tmp/pwned stat",
                   "top\nmodule evil;", "\x1b[2J\r", "\u202eevil", "名前", "input", "nul\x00byte", "a" * 5000,
                   "con", ".", "..", "fc1", "act1", "digits_mlp", "x.npy"]

NASTY_NUMBERS = [0, 1, -1, 2, 3, 4, 16, 64, 64.9, 0.5, -0.0, 1e-300, 1e308, -1e308, 2 ** 31, 2 ** 53 + 1,
                 2 ** 63, -(2 ** 63) - 1, 10 ** 30, 10 ** 400, float("nan"), float("inf"), True, False]

json_scalars = st.one_of(st.none(), st.sampled_from(NASTY_NUMBERS), st.sampled_from(HOSTILE_STRINGS),
                         st.integers(-5, 100), st.floats(allow_nan=True, allow_infinity=True),
                         st.text(max_size=12))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=12)


def nested(depth: int, opener: str = "[", closer: str = "]", core: str = "0") -> str:
    return opener * depth + core + closer * depth


# ------------------------------------------------------------ JSON documents


def paths_of(document, prefix=()):
    """Every (path, value) inside a JSON document, the root included."""
    yield prefix, document
    if isinstance(document, dict):
        for key, value in document.items():
            yield from paths_of(value, prefix + (key,))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            yield from paths_of(value, prefix + (index,))


def _set(document, path, value):
    if not path:
        return value
    target = document
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return document


def _delete(document, path):
    if not path:
        return None
    target = document
    for step in path[:-1]:
        target = target[step]
    del target[path[-1]]
    return document


@st.composite
def mutated_json(draw, document, extra_values=st.nothing()):
    """``document`` (a deep copy) with one to three edits: a value replaced, a key deleted or an unknown key added."""
    document = json.loads(json.dumps(document))
    for _ in range(draw(st.integers(1, 3))):
        paths = list(paths_of(document))
        path, value = draw(st.sampled_from(paths))
        action = draw(st.sampled_from(["replace", "replace", "delete", "add", "retype"]))
        if action == "replace":
            document = _set(document, path, draw(st.one_of(json_values, extra_values)))
        elif action == "delete" and path:
            document = _delete(document, path)
        elif action == "add" and isinstance(value, dict):
            value[draw(st.sampled_from(["unknown", "extra_field", "name", "type", "__proto__"]))] = draw(json_values)
        elif action == "retype":
            document = _set(document, path, [value] if not isinstance(value, list) else {"v": value})
        if document is None:
            break
    return document


# ------------------------------------------------------------ zip containers


def npy_bytes(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def npy_header_bytes(header: str, data: bytes, version=(1, 0)) -> bytes:
    text = header.encode("latin1", "replace")
    length = struct.pack("<H", len(text) & 0xFFFF) if version == (1, 0) else struct.pack("<I", len(text))
    return b"\x93NUMPY" + bytes(version) + length + text + data


def write_zip(path, members, compression=zipfile.ZIP_STORED):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with zipfile.ZipFile(path, "w", compression) as archive:
            for name, data in members:
                archive.writestr(name, data)
    return path


def zip_members(path) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(path) as archive:
        return [(info.filename, archive.read(info)) for info in archive.infolist()]


headers = st.one_of(
    st.builds(lambda d, f, s: repr({"descr": d, "fortran_order": f, "shape": s}),
              st.sampled_from(["<f8", "<f4", "<i8", "|b1", "|O", "<U3", "<U0", "|V8", "<c16", ">f8", "<M8[s]",
                               "bogus", [("a", "<f8")]]),
              st.sampled_from([False, True, 0, None]),
              st.one_of(st.tuples(), st.tuples(st.integers(0, 10)), st.tuples(st.integers(-2, 4), st.integers(0, 4)),
                        st.tuples(st.sampled_from([2 ** 40, 10 ** 12, 2 ** 62, 2 ** 64])),
                        st.just((1,) * 40))),
    st.sampled_from(["", "{", "[1,2]", "__import__('os')", nested(200, "(", ")"), "{'descr': '<f8'}"]),
    st.text(max_size=40),
)


@st.composite
def zip_variants(draw, members):
    """The same members, rewritten: another compression, a member duplicated, dropped, renamed, added or replaced
    by a fuzzed .npy header."""
    members = list(members)
    compression = draw(st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2,
                                        zipfile.ZIP_LZMA]))
    for _ in range(draw(st.integers(1, 2))):
        index = draw(st.integers(0, max(0, len(members) - 1)))
        action = draw(st.sampled_from(["duplicate", "drop", "rename", "add", "header", "truncate", "none"]))
        if not members:
            break
        name, data = members[index]
        if action == "duplicate":
            members.append((name, draw(st.sampled_from([data, data[:len(data) // 2], b""]))))
        elif action == "drop":
            members.pop(index)
        elif action == "rename":
            members[index] = (draw(st.sampled_from(["x", "x.npy", "../x.npy", "/abs.npy", "a/b.npy", "y.npy",
                                                    "__graph__.npy", "fc1.weight.npy", "é.npy"])), data)
        elif action == "add":
            members.append((draw(st.sampled_from(["extra.npy", "notes.txt", "x.npy", "archive/data/99"])),
                            draw(st.sampled_from([npy_bytes(np.zeros(3)), b"hello", b""]))))
        elif action == "header":
            version = draw(st.sampled_from([(1, 0), (2, 0), (3, 0), (9, 9)]))
            payload = draw(st.sampled_from([b"", bytes(8), bytes(80), bytes(1000)]))
            members[index] = (name, npy_header_bytes(draw(headers).ljust(draw(st.sampled_from([0, 118, 20000]))),
                                                     payload, version))
        elif action == "truncate":
            members[index] = (name, data[:draw(st.integers(0, max(0, len(data) - 1)))])
    return members, compression


@st.composite
def byte_mutations(draw, data: bytes):
    """``data`` with bytes flipped, overwritten, inserted or cut off."""
    data = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        action = draw(st.sampled_from(["flip", "set", "insert", "truncate"]))
        position = draw(st.integers(0, len(data) - 1))
        if action == "flip":
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif action == "set":
            data[position] = draw(st.sampled_from([0, 0xFF, 0x7F, 0x80]))
        elif action == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=8))
        else:
            del data[position:]
    return bytes(data)


# ------------------------------------------------------------ arrays

dtypes = st.sampled_from(["<f8", "<f4", "<f2", "<i8", "<i4", "|u1", "<u8", "|b1", "<U3", "<c16", ">f8", "|i1"])


@st.composite
def arrays(draw, shapes=None):
    dtype = np.dtype(draw(dtypes))
    shape = draw(shapes if shapes is not None else
                 st.lists(st.integers(0, 6), min_size=0, max_size=4).map(tuple))
    count = int(np.prod(shape)) if shape else 1
    if dtype.kind == "U":
        return np.array(draw(st.lists(st.text(max_size=3), min_size=count, max_size=count)) or [""],
                        dtype=dtype)[:count].reshape(shape)
    special = draw(st.sampled_from([None, np.nan, np.inf, -np.inf, 1e300, -1.0, 16.0, 255.0, 2 ** 63]))
    values = draw(st.sampled_from(["uniform", "zeros", "big", "integers"]))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 16)))
    data = {"uniform": rng.uniform(0, 1, count), "zeros": np.zeros(count), "big": rng.normal(0, 1e6, count),
            "integers": rng.integers(-3, 20, count).astype(float)}[values]
    if special is not None and count and dtype.kind in "fc":
        data[rng.integers(0, count)] = special
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return data.astype(dtype).reshape(shape)


# ------------------------------------------------------------ pickles (torch checkpoints)


def pickle_str(text: str) -> bytes:
    data = text.encode("utf-8", "surrogatepass")
    return b"X" + struct.pack("<I", len(data)) + data


def pickle_int(value: int) -> bytes:
    if -2 ** 31 <= value < 2 ** 31:
        return b"J" + struct.pack("<i", value)
    data = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(data)]) + data   # LONG1


def pickle_global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def pickle_tensor(key: str, storage: str, numel: int, offset: int, size, stride) -> bytes:
    pid = (b"(" + pickle_str("storage") + pickle_global("torch", storage) + pickle_str(key) + pickle_str("cpu")
           + pickle_int(numel) + b"tQ")
    hooks = pickle_global("collections", "OrderedDict") + b")R"
    ints = lambda values: b"(" + b"".join(pickle_int(v) for v in values) + b"t"   # noqa: E731
    return (pickle_global("torch._utils", "_rebuild_tensor_v2") + b"(" + pid + pickle_int(offset) + ints(size)
            + ints(stride) + b"\x89" + hooks + b"tR")


STORAGES = {np.dtype(np.float32): "FloatStorage", np.dtype(np.float64): "DoubleStorage",
            np.dtype(np.int64): "LongStorage", np.dtype(np.float16): "HalfStorage", np.dtype(np.bool_): "BoolStorage"}


def pth_members(tensors: dict, prefix: str = "archive") -> list[tuple[str, bytes]]:
    """The members ``torch.save`` writes for a state dict of ``tensors`` (protocol 2, one storage each)."""
    body = b"\x80\x02" + pickle_global("collections", "OrderedDict") + b")R("
    members = []
    for index, (name, array) in enumerate(tensors.items()):
        array = np.array(array, order="C")
        stride = tuple(s // array.itemsize for s in array.strides)
        body += pickle_str(name) + pickle_tensor(str(index), STORAGES[array.dtype], array.size, 0, array.shape, stride)
        members.append((f"{prefix}/data/{index}", array.astype(array.dtype.newbyteorder("<")).tobytes()))
    body += b"u."
    return [(f"{prefix}/data.pkl", body), (f"{prefix}/byteorder", b"little")] + members + [(f"{prefix}/version", b"3\n")]


_OPCODES = [b"N", b"}", b"]", b")", b"(", b"t", b"l", b"d", b"u", b"a", b"e", b"s", b"R", b"b", b"0", b"2",
            b"\x85", b"\x86", b"\x87", b"\x88", b"\x89", b"Q", b"\x81", b"\x8f", b"\x90", b"\x94", b"."]


@st.composite
def pickle_programs(draw):
    """Opcode sequences from plain containers, memo operations (huge indices included), hostile and allowed
    globals, persistent ids and tensors rebuilt from random arguments."""
    parts = [b"\x80" + bytes([draw(st.sampled_from([2, 4, 5, 6]))])]
    for _ in range(draw(st.integers(0, 30))):
        choice = draw(st.integers(0, 9))
        if choice < 4:
            parts.append(draw(st.sampled_from(_OPCODES)))
        elif choice == 4:
            parts.append(draw(st.sampled_from([pickle_int(draw(st.integers(-2 ** 31, 2 ** 31 - 1))),
                                               pickle_str(draw(st.sampled_from(HOSTILE_STRINGS)))])))
        elif choice == 5:
            index = draw(st.sampled_from([0, 1, 2, 255, 2 ** 16, 2 ** 31 - 1, 2 ** 32 - 1]))
            parts.append(draw(st.sampled_from([b"q" + bytes([index % 256]), b"r" + struct.pack("<I", index),
                                               b"h" + bytes([index % 256]), b"j" + struct.pack("<I", index)])))
        elif choice == 6:
            module, name = draw(st.sampled_from([("os", "system"), ("builtins", "eval"), ("torch", "FloatStorage"),
                                                 ("torch", "QInt8Storage"), ("torch._utils", "_rebuild_tensor_v2"),
                                                 ("torch._utils", "_rebuild_parameter"),
                                                 ("collections", "OrderedDict"), ("numpy", "ndarray"),
                                                 ("torch", "Tensor")]))
            parts.append(pickle_global(module, name))
        elif choice == 7:
            size = draw(st.lists(st.sampled_from([0, 1, 2, 3, 2 ** 20, 2 ** 40, -1]), max_size=3))
            stride = draw(st.lists(st.sampled_from([0, 1, 2, 2 ** 30, -1]), min_size=len(size), max_size=len(size)))
            parts.append(pickle_str("t") + pickle_tensor(draw(st.sampled_from(["0", "1", "../0", "", "/x"])),
                                                         draw(st.sampled_from(list(STORAGES.values()) +
                                                                              ["BFloat16Storage"])),
                                                         draw(st.sampled_from([0, 1, 4, 2 ** 40, -1])),
                                                         draw(st.sampled_from([0, 1, 3, -1])), size, stride))
        elif choice == 8:
            parts.append(b"\x95" + struct.pack("<Q", draw(st.sampled_from([0, 8, 2 ** 40, 2 ** 63]))))   # FRAME
        else:
            parts.append(draw(st.sampled_from([b"(" * 100, b"]" * 100 + b"a" * 99, b"B" + struct.pack("<I", 2 ** 31),
                                               b"\x8e" + struct.pack("<Q", 2 ** 62), b"\x8a\xff" + b"\xff" * 8])))
    if draw(st.booleans()):
        parts.append(b".")
    return b"".join(parts)


# ------------------------------------------------------------ build folders


CORE_VERILOG = "module pascal_core(input clk, input rst); endmodule\n"


def base_manifest() -> dict:
    """A manifest as ``pascal-ref hdl`` writes it for the ``pascal_core.v`` of :func:`build_folder`
    (sealed: its digests match; :func:`seal` again after an edit to get past the digest check)."""
    import hashlib
    manifest = {
        "format": "pascal-hdl-core", "version": 1, "top": "pascal_core", "verilog": ["pascal_core.v"],
        "source": {}, "classes": 10, "layers": [], "memory_bits": 1024,
        "input": {"features": 64, "levels": 16, "encoding": "count-coded"},
        "ports": [{"name": "clk", "direction": "input", "width": 1}, {"name": "rst", "direction": "input", "width": 1},
                  {"name": "in_data", "direction": "input", "width": 12},
                  {"name": "out_logits", "direction": "output", "width": 40}],
        "expected_cycles": {"worst_case": 1000, "ideal_formula": "x"},
        "digests": {"files": {"pascal_core.v": hashlib.sha256(CORE_VERILOG.encode()).hexdigest()}, "manifest": ""},
    }
    return seal(manifest)


def seal(manifest):
    """``manifest`` with ``digests.manifest`` recomputed (when it has that field): an edit that a digest
    would catch then reaches the checks behind it (schema, names, file digests, the tools)."""
    from pascal_hdl.flow.synth import manifest_digest
    if isinstance(manifest, dict) and isinstance(manifest.get("digests"), dict) and "manifest" in manifest["digests"]:
        manifest["digests"]["manifest"] = manifest_digest(manifest)
    return manifest


def build_folder(root, text: str):
    """A build folder in a new temporary folder under ``root``: ``manifest.json`` holding ``text`` and a
    ``pascal_core.v``; the manifest's path."""
    import tempfile
    from pathlib import Path
    folder = Path(tempfile.mkdtemp(dir=root))
    (folder / "pascal_core.v").write_text(CORE_VERILOG)
    (folder / "manifest.json").write_text(text)
    return folder / "manifest.json"


manifest_values = st.one_of(json_values, st.sampled_from(HOSTILE_STRINGS),
                            st.lists(st.sampled_from(HOSTILE_STRINGS + ["pascal_core.v"]), max_size=3))
