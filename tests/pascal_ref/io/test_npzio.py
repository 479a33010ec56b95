"""The safe .npz reader: every hostile archive is refused before anything is decompressed or allocated."""
from __future__ import annotations

import io
import os
import struct
import tracemalloc
import warnings
import zipfile

import numpy as np
import pytest

from pascal_ref.io.fileformat import ModelFileError, load, save
from pascal_ref.io.npzio import (
    MAX_HEADER_BYTES,
    NpzError,
    NpzLimitError,
    check_zip_members,
    open_regular_file,
    read_npz,
)
from pascal_ref.testing import random_mlp


def npy_bytes(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def npy_with_header(header: str, data: bytes = b"", version=(1, 0)) -> bytes:
    text = header.encode("latin1")
    length = struct.pack("<H", len(text)) if version == (1, 0) else struct.pack("<I", len(text))
    return b"\x93NUMPY" + bytes(version) + length + text + data


def write_zip(path, members, compression=zipfile.ZIP_STORED):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # zipfile warns about duplicate names
        with zipfile.ZipFile(path, "w", compression) as archive:
            for name, data in members:
                archive.writestr(name, data)
    return path


def test_round_trip_keeps_every_array_dtype_and_order(tmp_path):
    arrays = {"f": np.arange(12.0).reshape(3, 4), "fortran": np.asfortranarray(np.arange(6).reshape(2, 3)),
              "big_endian": np.arange(5, dtype=">i4"), "text": np.array("héllo"), "empty": np.zeros((0, 3)),
              "bool": np.array([True, False]), "f32": np.ones(3, np.float32)}
    for saver in (np.savez, np.savez_compressed):
        saver(tmp_path / "a.npz", **arrays)
        got = read_npz(tmp_path / "a.npz")
        assert set(got) == set(arrays)
        for key, array in arrays.items():
            assert got[key].dtype == array.dtype and got[key].shape == array.shape
            np.testing.assert_array_equal(got[key], array)
        assert got["fortran"].flags.f_contiguous


def test_zip_bomb_is_refused_from_the_directory_alone(tmp_path):
    # 128 MiB of zeros in a 130 kB member: refused by the expanded-size cap without decompressing
    path = tmp_path / "bomb.npz"
    header = "{'descr': '<f8', 'fortran_order': False, 'shape': (16777216,), }".ljust(117) + "\n"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("x.npy", "w", force_zip64=True) as member:
            member.write(npy_with_header(header))
            block = bytes(1 << 24)
            for _ in range(8):
                member.write(block)
    assert path.stat().st_size < 200_000
    tracemalloc.start()
    with pytest.raises(NpzLimitError, match=r"would expand to 128 MiB, more than the limit of 64 MiB"):
        read_npz(path, max_bytes=1 << 26)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 10_000_000
    # an unused member is refused before anything is decompressed
    with pytest.raises(NpzError, match="unexpected array 'x'; expected a, b"):
        read_npz(path, names=("a", "b"))


def test_header_declaring_more_than_the_member_holds(tmp_path):
    header = "{'descr': '<f8', 'fortran_order': False, 'shape': (1000000000000,), }".ljust(117) + "\n"
    path = write_zip(tmp_path / "huge.npz", [("x.npy", npy_with_header(header, bytes(80)))])
    with pytest.raises(NpzError, match=r"declares float64 \(1000000000000,\) \(7.28 TiB\) but the member holds 80"):
        read_npz(path)


def test_long_header_is_a_limit_not_a_pickle(tmp_path):
    header = "{'descr': '<f8', 'fortran_order': False, 'shape': (1,), }".ljust(20_000) + "\n"
    path = write_zip(tmp_path / "long.npz", [("x.npy", npy_with_header(header, bytes(8), (2, 0)))])
    with pytest.raises(NpzLimitError, match=f"header of 20001 bytes exceeds the limit of {MAX_HEADER_BYTES}") as error:
        read_npz(path)
    assert "pickle" not in str(error.value)


@pytest.mark.parametrize("header, message", [
    ("{'descr': '|O', 'fortran_order': False, 'shape': (1,), }", "pickled object array; refused"),
    ("{'descr': [('a', '<f8')], 'fortran_order': False, 'shape': (1,), }", "not a plain numeric"),
    ("{'descr': '<U0', 'fortran_order': False, 'shape': (10000000000,), }", "items of 0 bytes"),
    ("{'descr': '<f8', 'fortran_order': 0, 'shape': (1,), }", "fortran_order must be True or False"),
    ("{'descr': '<f8', 'fortran_order': False, 'shape': (-1,), }", "tuple of integers >= 0"),
    ("{'descr': '<f8', 'fortran_order': False, 'shape': (1,), 'extra': 1}", "must be a dict of"),
    ("__import__('os').system('true')", "unreadable .npy header"),
    ("{'descr': 'not-a-dtype', 'fortran_order': False, 'shape': (1,), }", "unknown dtype"),
    ("(" * 3000 + ")" * 3000, "unreadable .npy header"),   # nested past the parser's limit
])
def test_bad_headers(tmp_path, header, message):
    path = write_zip(tmp_path / "bad.npz", [("x.npy", npy_with_header(header.ljust(100) + "\n", bytes(8)))])
    with pytest.raises(NpzError, match=message):
        read_npz(path)


def test_duplicate_encrypted_and_exotic_members(tmp_path):
    one = npy_bytes(np.ones(3))
    with pytest.raises(NpzError, match="member 'x.npy' appears twice"):
        read_npz(write_zip(tmp_path / "dup.npz", [("x.npy", one), ("x.npy", npy_bytes(np.zeros(3)))]))
    with pytest.raises(NpzError, match="uses bzip2 compression; only stored and deflate"):
        read_npz(write_zip(tmp_path / "bz.npz", [("x.npy", one)], zipfile.ZIP_BZIP2))
    with pytest.raises(NpzError, match="uses lzma compression"):
        read_npz(write_zip(tmp_path / "lzma.npz", [("x.npy", one)], zipfile.ZIP_LZMA))
    data = bytearray(write_zip(tmp_path / "enc.npz", [("x.npy", one)]).read_bytes())
    data[data.find(b"PK\x01\x02") + 8] |= 1          # the central directory's "encrypted" flag
    (tmp_path / "enc.npz").write_bytes(bytes(data))
    with pytest.raises(NpzError, match="member 'x.npy' is encrypted"):
        read_npz(tmp_path / "enc.npz")
    with pytest.raises(NpzError, match="'notes.txt' is not a .npy array"):
        read_npz(write_zip(tmp_path / "txt.npz", [("x.npy", one), ("notes.txt", b"hi")]))


def test_damaged_archives(tmp_path):
    np.savez(tmp_path / "good.npz", x=np.arange(1000.0))
    good = (tmp_path / "good.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(good[:len(good) // 2])
    with pytest.raises(NpzError, match="not an .npz archive"):
        read_npz(tmp_path / "cut.npz")
    flipped = bytearray(good)
    flipped[600] ^= 0xFF
    (tmp_path / "crc.npz").write_bytes(bytes(flipped))
    with pytest.raises(NpzError, match="Bad CRC-32"):
        read_npz(tmp_path / "crc.npz")
    # a stored member whose data runs past its declared shape
    extra = npy_bytes(np.ones(2)) + bytes(8)
    with pytest.raises(NpzError, match="holds 24 bytes of data"):
        read_npz(write_zip(tmp_path / "long.npz", [("x.npy", extra)]))


def test_special_files_are_never_read(tmp_path):
    fifo = tmp_path / "model.npz"
    os.mkfifo(fifo)   # opening it for reading would wait for a writer forever
    with pytest.raises(NpzError, match="not a regular file \\(a named pipe\\)"):
        read_npz(fifo)
    with pytest.raises(NpzError, match="/dev/zero: not a regular file \\(a character device\\)"):
        read_npz("/dev/zero")
    with pytest.raises(NpzError, match="not a regular file \\(a directory\\)"):
        read_npz(tmp_path)
    with pytest.raises(NpzError, match="no such file"):
        read_npz(tmp_path / "missing.npz")
    with pytest.raises(ModelFileError, match="not a regular file"):
        load(fifo)
    handle, size = open_regular_file(__file__)
    handle.close()
    assert size > 0


def test_ratio_and_member_count_limits(tmp_path):
    path = write_zip(tmp_path / "ok.npz", [("x.npy", npy_bytes(np.zeros(100_000)))], zipfile.ZIP_DEFLATED)
    with zipfile.ZipFile(path) as archive:
        info = archive.infolist()[0]
        info.file_size = 2000 * info.compress_size   # a directory entry claiming more than deflate can do
        with pytest.raises(NpzLimitError, match="more than deflate can"):
            check_zip_members(archive, "ok.npz")


def test_models_still_load_and_save_round_trip(tmp_path):
    network = random_mlp(np.random.default_rng(2), [6, 5, 3], [4], name="rt")
    save(network, tmp_path / "m.npz")
    again = load(tmp_path / "m.npz")
    assert again.name == "rt" and [l.name for l in again.neuron_layers] == [l.name for l in network.neuron_layers]
