"""The torch-free .pth reader: real torch files, hand-built archives, hostile pickles.

The hand-built archives follow the layout torch.save writes (checked against
real files in the torch tests below), so the reader is tested without torch.
"""
from __future__ import annotations

import os
import pickle
import struct
import sys
import zipfile

import numpy as np
import pytest

from pascal_ref.convert.architectures import build
from pascal_ref.convert.state_dict import load_state_dict
from pascal_ref.io.torch_pickle import TorchPickleError, find_state_dict, load_pth, load_state_dict_pth
from pascal_ref.testing import random_state_dict

# ----------------------------------------------- a minimal torch.save writer

_STORAGE_NAMES = {np.dtype(np.float32): "FloatStorage", np.dtype(np.float64): "DoubleStorage",
                  np.dtype(np.int64): "LongStorage", np.dtype(np.float16): "HalfStorage", np.dtype(np.bool_): "BoolStorage"}


def _str(text: str) -> bytes:
    data = text.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def _int(value: int) -> bytes:
    return b"J" + struct.pack("<i", value)


def _ints(values) -> bytes:
    return b"(" + b"".join(_int(v) for v in values) + b"t"


def _global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _tensor(key: str, storage: str, numel: int, offset: int, size, stride, storage_type: bytes | None = None) -> bytes:
    storage_type = storage_type or _global("torch", storage)
    pid = b"(" + _str("storage") + storage_type + _str(key) + _str("cpu") + _int(numel) + b"t" + b"Q"
    hooks = _global("collections", "OrderedDict") + b")R"
    return (_global("torch._utils", "_rebuild_tensor_v2") + b"(" + pid + _int(offset) + _ints(size) + _ints(stride)
            + b"\x89" + hooks + b"tR")


def write_pth(path, tensors: dict, *, pickle_bytes: bytes | None = None, prefix: str = "archive",
              byteorder: str = "little", extra_members: dict | None = None, storage_overrides: dict | None = None):
    """Write ``{name: ndarray}`` the way torch.save lays it out (protocol 2, zip, stored)."""
    body = b"\x80\x02" + _global("collections", "OrderedDict") + b")R(" if pickle_bytes is None else None
    members = {}
    if pickle_bytes is None:
        for index, (name, array) in enumerate(tensors.items()):
            array = np.array(array, order="C")   # (ascontiguousarray would make a 0-d array 1-d)
            stride = tuple(s // array.itemsize for s in array.strides)
            body += _str(name) + _tensor(str(index), _STORAGE_NAMES[array.dtype], array.size, 0, array.shape, stride)
            order = "<" if byteorder == "little" else ">"
            members[f"{prefix}/data/{index}"] = array.astype(array.dtype.newbyteorder(order)).tobytes()
        body += b"u."
    else:
        body = pickle_bytes
    members.update(storage_overrides or {})
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr(f"{prefix}/data.pkl", body)
        archive.writestr(f"{prefix}/byteorder", byteorder)
        for name, data in members.items():
            archive.writestr(name, data)
        for name, data in (extra_members or {}).items():
            archive.writestr(name, data)
        archive.writestr(f"{prefix}/version", "3\n")
    return path


def _sample_tensors():
    rng = np.random.default_rng(0)
    return {"fc.weight": rng.normal(size=(3, 4)).astype(np.float32), "fc.bias": rng.normal(size=3),
            "bn.num_batches_tracked": np.array(7, dtype=np.int64), "half": np.arange(6, dtype=np.float16).reshape(2, 3),
            "mask": np.array([True, False])}


# ------------------------------------------------------------ torch-free


@pytest.mark.parametrize("byteorder", ["little", "big"])
def test_hand_built_archive_round_trip(tmp_path, byteorder):
    tensors = _sample_tensors()
    loaded = load_pth(write_pth(tmp_path / "m.pth", tensors, byteorder=byteorder))
    assert list(loaded) == list(tensors)
    for key, value in tensors.items():
        assert loaded[key].dtype == value.dtype and loaded[key].shape == value.shape
        assert np.array_equal(loaded[key], value), key
        assert loaded[key].dtype.isnative


def test_strided_views_and_offsets(tmp_path):
    base = np.arange(12, dtype=np.float32)
    body = (b"\x80\x02}(" + _str("view") + _tensor("0", "FloatStorage", 12, 1, (3, 2), (4, 1))
            + _str("transposed") + _tensor("0", "FloatStorage", 12, 0, (4, 3), (1, 4)) + b"u.")
    loaded = load_pth(write_pth(tmp_path / "v.pth", {}, pickle_bytes=body,
                                storage_overrides={"archive/data/0": base.tobytes()}))
    assert np.array_equal(loaded["view"], base.reshape(3, 4)[:, 1:3])
    assert np.array_equal(loaded["transposed"], base.reshape(3, 4).T)


def test_template_from_hand_built_pth(tmp_path):
    state = random_state_dict("resnet18", 10, rng=2)
    path = write_pth(tmp_path / "r18.pth", state)
    network = build("resnet18", 10, 4, load_state_dict(path), input_shape=(3, 8, 8))
    assert network.by_name["conv2_x.0.act"].activation.lam == pytest.approx(float(state["conv2_x.0.act.thresh"][0]), abs=0)


def test_convert_command_reads_pth_and_refuses_hostile_files(tmp_path, capsys):
    from pascal_ref.cli import main
    from pascal_ref.io.fileformat import load

    state = random_state_dict("resnet18", 10, rng=2)
    source = write_pth(tmp_path / "r18.pth", state)
    output = tmp_path / "model.npz"
    argv = ["convert", str(source), "--arch", "resnet18", "--classes", "10", "--levels", "2", "--input-shape", "3,8,8",
            "-o", str(output), "-q"]
    assert main(argv) == 0
    assert load(output).levels == [2] * 17
    marker = tmp_path / "pwned"
    body = b"\x80\x02" + _global("os", "system") + b"(" + _str(f"touch {marker}") + b"tR."
    evil = write_pth(tmp_path / "evil.pth", {}, pickle_bytes=body)
    argv[1], argv[-2] = str(evil), str(tmp_path / "evil_model.npz")
    assert main(argv) == 2
    assert "refusing to load global 'os.system'" in capsys.readouterr().err
    assert not marker.exists() and not (tmp_path / "evil_model.npz").exists()


MARKER_COMMANDS = [
    ("os", "system"), ("posix", "system"), ("builtins", "eval"), ("builtins", "exec"),
    ("subprocess", "check_call"), ("torch", "load"), ("numpy.core.multiarray", "_reconstruct"), ("torch._utils", "evil"),
]


@pytest.mark.parametrize("module, name", MARKER_COMMANDS)
def test_malicious_pickle_is_refused_and_nothing_runs(tmp_path, module, name):
    marker = tmp_path / "pwned"
    command = f"open({str(marker)!r}, 'w').write('x')" if name in ("eval", "exec") else f"touch {marker}"
    body = b"\x80\x02" + _global(module, name) + b"(" + _str(command) + b"tR."
    path = write_pth(tmp_path / "evil.pth", {}, pickle_bytes=body)
    with pytest.raises(TorchPickleError, match=f"refusing to load global '{module}.{name}'"):
        load_pth(path)
    assert not marker.exists()


def test_malicious_pickle_from_python_pickler_is_refused(tmp_path):
    """The classic exploit, written by Python's own pickler: __reduce__ -> os.system."""
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    body = pickle.dumps({"fc.weight": Exploit()}, protocol=2)
    path = write_pth(tmp_path / "evil.pth", {}, pickle_bytes=body)
    with pytest.raises(TorchPickleError, match="refusing to load global '(posix|nt|os).system'"):
        load_pth(path)
    assert not marker.exists()


def test_unsupported_storage_type(tmp_path):
    body = b"\x80\x02}(" + _str("w") + _tensor("0", "ComplexFloatStorage", 1, 0, (1,), (1,)) + b"u."
    with pytest.raises(TorchPickleError, match="tensors of type torch.ComplexFloatStorage are not supported"):
        load_pth(write_pth(tmp_path / "c.pth", {}, pickle_bytes=body, storage_overrides={"archive/data/0": b"\0" * 8}))


def test_hostile_storage_type_and_persistent_ids(tmp_path):
    marker = tmp_path / "pwned"
    evil_type = _global("os", "system")
    body = b"\x80\x02}(" + _str("w") + _tensor("0", "", 1, 0, (1,), (1,), storage_type=evil_type) + b"u."
    with pytest.raises(TorchPickleError, match="refusing to load global 'os.system'"):
        load_pth(write_pth(tmp_path / "a.pth", {}, pickle_bytes=body, storage_overrides={"archive/data/0": b"\0" * 4}))
    body = b"\x80\x02(" + _str("storage") + _str("FloatStorage") + _str("0") + _str("cpu") + _int(1) + b"tQ."
    with pytest.raises(TorchPickleError, match="no known storage type"):
        load_pth(write_pth(tmp_path / "b.pth", {}, pickle_bytes=body))
    body = b"\x80\x02" + _str("just a string") + b"Q."
    with pytest.raises(TorchPickleError, match="unexpected persistent id"):
        load_pth(write_pth(tmp_path / "c.pth", {}, pickle_bytes=body))
    assert not marker.exists()


@pytest.mark.parametrize("offset, size, stride, message", [
    (0, (4, 4), (4, 1), "reaches element 15 of a storage of 12"),         # past the end
    (10, (3,), (1,), "reaches element 12"),                                # offset pushes it out
    (0, (1000, 1000), (0, 0), "more elements than its storage"),           # expansion bomb
    (0, (2, 2), (2,), "differ in length"),
    (-1, (2,), (1,), "offset must be an integer >= 0"),
])
def test_out_of_bounds_tensors_are_refused(tmp_path, offset, size, stride, message):
    body = b"\x80\x02}(" + _str("w") + _tensor("0", "FloatStorage", 12, offset, size, stride) + b"u."
    path = write_pth(tmp_path / "oob.pth", {}, pickle_bytes=body,
                     storage_overrides={"archive/data/0": np.zeros(12, np.float32).tobytes()})
    with pytest.raises(TorchPickleError, match=message):
        load_pth(path)


def test_damaged_archives(tmp_path):
    good = write_pth(tmp_path / "good.pth", _sample_tensors())
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(TorchPickleError, match="truncated.pth: not a torch zip archive"):
        load_pth(truncated)
    with pytest.raises(TorchPickleError, match="missing.pth: no such file"):
        load_pth(tmp_path / "missing.pth")
    # storage of the wrong size, storage missing, path-like storage key
    tensors = {"w": np.zeros(4, np.float32)}
    with pytest.raises(TorchPickleError, match="storage '0' holds 8 bytes, 4 x FloatStorage needs 16"):
        load_pth(write_pth(tmp_path / "short.pth", tensors, storage_overrides={"archive/data/0": b"\0" * 8}))
    body = b"\x80\x02}(" + _str("w") + _tensor("7", "FloatStorage", 1, 0, (1,), (1,)) + b"u."
    with pytest.raises(TorchPickleError, match="storage '7' missing from the archive"):
        load_pth(write_pth(tmp_path / "nostorage.pth", {}, pickle_bytes=body))
    body = b"\x80\x02}(" + _str("w") + _tensor("../0", "FloatStorage", 1, 0, (1,), (1,)) + b"u."
    with pytest.raises(TorchPickleError, match="invalid storage key"):
        load_pth(write_pth(tmp_path / "traversal.pth", {}, pickle_bytes=body))
    # a pickle cut short, a zip without data.pkl, the legacy format
    with pytest.raises(TorchPickleError, match="malformed pickle"):
        load_pth(write_pth(tmp_path / "cut.pth", {}, pickle_bytes=b"\x80\x02}(" + _str("w")))
    nopkl = tmp_path / "nopkl.pth"
    with zipfile.ZipFile(nopkl, "w") as archive:
        archive.writestr("x/constants.pkl", b"")
    with pytest.raises(TorchPickleError, match="TorchScript"):
        load_pth(nopkl)
    legacy = tmp_path / "legacy.pth"
    legacy.write_bytes(b"\x80\x02\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little") + b".")
    with pytest.raises(TorchPickleError, match="legacy"):
        load_pth(legacy)


def test_find_state_dict():
    state = {"a": np.zeros(2)}
    assert find_state_dict(state) is state
    assert find_state_dict({"state_dict": state, "epoch": 3, "best": 0.9}) is state
    assert find_state_dict({"net": state, "opt": {"lr": 0.1}}) is state
    assert find_state_dict({"ema": state, "x": 1}, key="ema") is state
    with pytest.raises(TorchPickleError, match=r"top-level keys: 'ema', 'x'"):
        find_state_dict({"ema": state, "x": 1})
    with pytest.raises(TorchPickleError, match="no entry 'model'"):
        find_state_dict({"ema": state}, key="model")
    with pytest.raises(TorchPickleError, match="holds a list"):
        find_state_dict([state])


def test_reader_module_does_not_import_torch():
    code = ("import sys; import pascal_ref.io.torch_pickle, pascal_ref.convert.templates, pascal_ref.cli.convert; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    import subprocess
    subprocess.run([sys.executable, "-c", code], check=True)


# -------------------------------------------------- files written by torch


@pytest.fixture
def torch():
    return pytest.importorskip("torch")


def test_real_torch_files(tmp_path, torch):
    tensors = {
        "conv.weight": torch.randn(4, 3, 3, 3),
        "double": torch.randn(5, dtype=torch.float64),
        "half": torch.randn(2, 3).half(),
        "bf16": torch.randn(7).bfloat16(),
        "long": torch.arange(5),
        "int8": torch.arange(-3, 3, dtype=torch.int8),
        "uint8": torch.arange(6, dtype=torch.uint8),
        "int32": torch.arange(4, dtype=torch.int32),
        "bool": torch.tensor([True, False, True]),
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 3),
        "view": torch.arange(24.0).reshape(4, 6)[1:3, ::2],
        "transposed": torch.randn(3, 5).t(),
    }
    tensors["tied"] = tensors["conv.weight"]      # shared storage, saved once
    path = tmp_path / "t.pth"
    torch.save(tensors, path)
    loaded = load_pth(path)
    assert list(loaded) == list(tensors)
    for key, value in tensors.items():
        expected = value.float().numpy() if value.dtype == torch.bfloat16 else value.numpy()
        assert loaded[key].dtype == expected.dtype, key
        assert loaded[key].shape == expected.shape, key
        assert np.array_equal(loaded[key], expected), key


def test_real_state_dict_and_checkpoint(tmp_path, torch):
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2), torch.nn.Flatten(), torch.nn.Linear(8, 3))
    state = model.state_dict()
    torch.save(state, tmp_path / "sd.pt")
    torch.save({"epoch": 4, "state_dict": state, "optimizer": torch.optim.SGD(model.parameters(), lr=0.1).state_dict(),
                "names": ["a", "b"], "acc": 0.5, "flag": None}, tmp_path / "ckpt.pth")
    torch.save(dict(model.named_parameters()), tmp_path / "params.pth")   # Parameters, not plain tensors
    for name in ("sd.pt", "ckpt.pth"):
        loaded = load_state_dict_pth(tmp_path / name)
        assert list(loaded) == list(state)
        for key in state:
            assert np.array_equal(loaded[key], state[key].numpy()), (name, key)
    params = load_pth(tmp_path / "params.pth")
    assert np.array_equal(params["3.weight"], model[3].weight.detach().numpy())


@pytest.mark.filterwarnings("ignore::DeprecationWarning")     # torch.jit.script/save
def test_real_torch_pickles_of_code_are_refused(tmp_path, torch):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"fc.weight": torch.zeros(2), "payload": Exploit()}, tmp_path / "evil.pth")
    with pytest.raises(TorchPickleError, match="refusing to load global '(posix|nt|os).system'"):
        load_pth(tmp_path / "evil.pth")
    assert not marker.exists()
    torch.save(torch.nn.Linear(2, 2), tmp_path / "module.pth")            # a whole pickled module
    with pytest.raises(TorchPickleError, match="refusing to load global 'torch.nn.modules.linear.Linear'.*state_dict"):
        load_pth(tmp_path / "module.pth")
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), tmp_path / "scripted.pt")
    with pytest.raises(TorchPickleError):
        load_pth(tmp_path / "scripted.pt")
    torch.save({"w": torch.zeros(2)}, tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
    with pytest.raises(TorchPickleError, match="legacy"):
        load_pth(tmp_path / "legacy.pth")


def test_hand_built_layout_matches_torch(tmp_path, torch):
    """What the torch-free writer above produces loads in torch itself (weights_only)."""
    tensors = _sample_tensors()
    loaded = torch.load(write_pth(tmp_path / "m.pth", tensors), weights_only=True)
    for key, value in tensors.items():
        assert np.array_equal(loaded[key].numpy(), value), key


# ------------------------------------------------- bounded memory and time


def test_memo_bomb_is_refused_before_unpickling(tmp_path):
    # 10 bytes: LONG_BINPUT 2**31-1 would make the C unpickler allocate a memo table of 16 GiB
    bomb = b"\x80\x02N" + b"r\xff\xff\xff\x7f" + b"."
    assert len(bomb) == 9
    with pytest.raises(TorchPickleError, match="stores memo entry 2147483647 at opcode 2; refused \\(a memo bomb"):
        load_pth(write_pth(tmp_path / "memo.pth", {}, pickle_bytes=bomb))


def test_deep_nesting_is_refused(tmp_path):
    marks = b"\x80\x02" + b"(" * 1000 + b"N" + b"t" * 1000 + b"."
    with pytest.raises(TorchPickleError, match="nests marks more than 64 deep"):
        load_pth(write_pth(tmp_path / "marks.pth", {}, pickle_bytes=marks))
    lists = b"\x80\x02" + b"]" * 300 + b"a" * 299 + b"."   # nested lists without a single mark
    with pytest.raises(TorchPickleError, match="nests containers more than 64 deep"):
        load_pth(write_pth(tmp_path / "lists.pth", {}, pickle_bytes=lists))


def _views(count: int, numel: int) -> bytes:
    return (b"\x80\x02}(" + b"".join(_str(f"w{i}") + _tensor("0", "FloatStorage", numel, 0, (numel,), (1,))
                                     for i in range(count)) + b"u.")


def test_views_of_one_storage_share_its_memory(tmp_path):
    numel = 1 << 16
    storage = np.arange(numel, dtype=np.float32)
    path = write_pth(tmp_path / "views.pth", {}, pickle_bytes=_views(100, numel),
                     storage_overrides={"archive/data/0": storage.tobytes()})
    loaded = load_pth(path)
    assert len(loaded) == 100 and all(np.shares_memory(loaded["w0"], loaded[f"w{i}"]) for i in range(100))
    assert not loaded["w5"].flags.writeable
    np.testing.assert_array_equal(loaded["w99"], storage)
    # views covering far more than their storages: bounded by max_bytes, not copied
    with pytest.raises(TorchPickleError, match="its tensors cover more than 1048576 bytes \\(1 MiB, max_bytes=\\) of storage"):
        load_pth(path, max_bytes=1 << 20)


def test_checkpoint_archive_is_inspected_before_decompressing(tmp_path):
    good = write_pth(tmp_path / "good.pth", _sample_tensors())
    with zipfile.ZipFile(good) as source, zipfile.ZipFile(tmp_path / "bz.pth", "w", zipfile.ZIP_BZIP2) as target:
        for info in source.infolist():
            target.writestr(info.filename, source.read(info))
    with pytest.raises(TorchPickleError, match="uses bzip2 compression"):
        load_pth(tmp_path / "bz.pth")
    data = bytearray(good.read_bytes())
    data[data.find(b"PK\x01\x02") + 8] |= 1
    (tmp_path / "enc.pth").write_bytes(bytes(data))
    with pytest.raises(TorchPickleError, match="is encrypted"):
        load_pth(tmp_path / "enc.pth")
    with pytest.raises(TorchPickleError, match="would expand to .* more than the limit of 100 bytes"):
        load_pth(good, max_bytes=100)
    fifo = tmp_path / "fifo.pth"
    os.mkfifo(fifo)
    with pytest.raises(TorchPickleError, match="not a regular file \\(a named pipe\\)"):
        load_pth(fifo)
    with pytest.raises(TorchPickleError, match="not a regular file"):
        load_pth("/dev/zero")


@pytest.mark.parametrize("module, name", [("torch", "FloatStorage"), ("torch._utils", "_rebuild_tensor_v2"),
                                          ("collections", "OrderedDict")])
def test_globals_left_unused_are_not_returned(tmp_path, module, name):
    body = b"\x80\x02" + _global(module, name) + b"."
    with pytest.raises(TorchPickleError, match="not a tensor or plain data; refused"):
        load_pth(write_pth(tmp_path / "stray.pth", {}, pickle_bytes=body))
