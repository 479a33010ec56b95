"""The .pth reader's allow-list, pinned exactly (issue 17).

The deny-list tests of ``test_torch_pickle.py`` name 8 forbidden globals; a
reader that admits one more (``builtins.getattr``) passes them all, and with
``getattr`` a checkpoint made of allowed globals reaches ``os`` through
``_rebuild_parameter.__globals__``. Here every global of the modules an attack
would use is offered to the reader one at a time, through the public
:func:`load_pth`, and the set it accepts must be exactly :data:`ALLOWED`; the
``getattr`` exploit itself must be refused with nothing run.
"""
from __future__ import annotations

import builtins
import collections
import functools
import importlib
import operator
import struct
import zipfile

import pytest

from pascal_ref.io.torch_pickle import TorchPickleError, load_pth

STORAGES = ("FloatStorage", "DoubleStorage", "HalfStorage", "BFloat16Storage", "LongStorage", "IntStorage",
            "ShortStorage", "CharStorage", "ByteStorage", "BoolStorage")
# What a torch.save state dict needs, and nothing else.
ALLOWED = {("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_tensor"),
           ("torch._utils", "_rebuild_parameter"), ("collections", "OrderedDict")} | {("torch", s) for s in STORAGES}

# Names of torch and torch._utils that a real checkpoint of another kind would use (torch is not needed here).
TORCH_NAMES = {
    "torch": ["Tensor", "tensor", "load", "save", "from_numpy", "Size", "device", "dtype", "float32", "nn",
              "UntypedStorage", "TypedStorage", "ComplexFloatStorage", "QInt8Storage", "storage", "_utils",
              "Storage", "_C", "jit", "serialization", "FloatStorage.__init__", "floatstorage", "FLOATSTORAGE"],
    "torch._utils": ["_rebuild_tensor_v3", "_rebuild_qtensor", "_rebuild_sparse_tensor", "_rebuild_device_tensor_from_numpy",
                     "_rebuild_meta_tensor_no_storage", "_rebuild_wrapper_subclass", "_rebuild_xla_tensor",
                     "_rebuild_mlc_tensor", "_rebuild_nested_tensor", "_rebuild_parameter_with_state",
                     "_rebuild_tensor_v2.__globals__", "_rebuild_parameter.__globals__", "_import_dotted_name",
                     "_get_restore_location", "evil"],
    "torch.nn.modules.linear": ["Linear"],
    "torch.serialization": ["_get_layout", "load"],
}
OTHER_MODULES = ("os", "posix", "subprocess", "sys", "shutil", "runpy", "pickle", "copyreg", "types", "io", "codecs",
                 "importlib", "ctypes", "socket", "pathlib", "tempfile", "glob", "numpy", "numpy.core.multiarray",
                 "webbrowser", "pty", "platform", "signal", "threading", "multiprocessing")


def _probes() -> set[tuple[str, str]]:
    probes = set(ALLOWED)
    for module in (builtins, collections, functools, operator):
        probes |= {(module.__name__, name) for name in dir(module)}
    for name in OTHER_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:   # pragma: no cover - every one is in the standard library or a core dependency
            continue
        probes |= {(name, attr) for attr in dir(module)[:400]}
    for module, names in TORCH_NAMES.items():
        probes |= {(module, name) for name in names}
    # Dotted names (protocol 4 resolves them attribute by attribute) and near misses of the allowed ones.
    probes |= {("builtins", "getattr.__call__"), ("collections", "OrderedDict.fromkeys"),
               ("collections", "OrderedDict.__init__"), ("collections", "OrderedDict.__class__"),
               ("collections.OrderedDict", "fromkeys"), ("torch._utils.", "_rebuild_tensor_v2"),
               (" torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_tensor_v2 "),
               ("torch", "FloatStorage\x00"), ("Collections", "OrderedDict"), ("torch", "Storage"),
               ("pascal_ref.io.torch_pickle", "_rebuild_parameter"), ("pascal_ref.io.torch_pickle", "_OrderedDict"),
               ("pascal_ref.io.torch_pickle", "_ALLOWED")}
    return probes


def _str(text: str) -> bytes:
    data = text.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def _global(module: str, name: str, protocol4: bool = False) -> bytes:
    if protocol4:   # STACK_GLOBAL: module and name from the stack, so they may hold any character
        return _str(module) + _str(name) + b"\x93"
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _write(path, body: bytes):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("archive/data.pkl", body)
        archive.writestr("archive/byteorder", "little")
        archive.writestr("archive/version", "3\n")
    return path


def _accepted(path, module: str, name: str) -> bool:
    """Offer the single global ``module.name`` and return the loaded value: True if the reader handed it out
    (it then refuses the loaded object, which is not plain data), False if it refused the global itself."""
    with pytest.raises(TorchPickleError) as refused:
        load_pth(_write(path, b"\x80\x04" + _global(module, name, protocol4=True) + b"."))
    message = str(refused.value)
    if "not a tensor or plain data" in message:
        return True
    assert f"'{module}.{name}'" in message or "are not supported" in message, message
    return False


def test_the_reader_accepts_exactly_the_allowed_globals(tmp_path):
    probes = _probes()
    assert len(probes) > 1000 and ("builtins", "getattr") in probes
    path = tmp_path / "probe.pth"
    accepted = {(module, name) for module, name in sorted(probes) if _accepted(path, module, name)}
    assert accepted == ALLOWED, (f"admitted beyond the allow-list: {sorted(accepted - ALLOWED)}; "
                                 f"refused from it: {sorted(ALLOWED - accepted)}")


def _call(function: bytes, *arguments: bytes) -> bytes:
    return function + b"(" + b"".join(arguments) + b"tR"


def _getattr_exploit(marker) -> bytes:
    """Allowed globals plus ``builtins.getattr``: ``_rebuild_parameter.__globals__['__builtins__']['__import__']('os')
    .mkdir(marker)``: a directory appears if any of it runs."""
    getattr_ = _global("builtins", "getattr")
    module_globals = _call(getattr_, _global("torch._utils", "_rebuild_parameter"), _str("__globals__"))
    get = _call(getattr_, module_globals, _str("get"))
    builtins_ = _call(get, _str("__builtins__"))
    import_ = _call(_call(getattr_, builtins_, _str("get")), _str("__import__"))
    os_ = _call(import_, _str("os"))
    return b"\x80\x02" + _call(_call(getattr_, os_, _str("mkdir")), _str(str(marker))) + b"0}."


def test_getattr_exploit_over_allowed_globals_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned"
    with pytest.raises(TorchPickleError, match="refusing to load global 'builtins.getattr'"):
        load_pth(_write(tmp_path / "evil.pth", _getattr_exploit(marker)))
    assert not marker.exists()


@pytest.mark.parametrize("module, name", sorted(ALLOWED - {("torch", s) for s in STORAGES[1:]}))
def test_allowed_callables_cannot_be_called_on_non_tensors(tmp_path, module, name):
    """Calling an allowed global with something that is not a storage/tensor (a string, or another allowed
    global) is refused, not passed through."""
    body = b"\x80\x02" + _call(_global(module, name), _global("collections", "OrderedDict")) + b"."
    with pytest.raises(TorchPickleError):
        load_pth(_write(tmp_path / "call.pth", body))


def test_allowed_globals_cannot_be_given_state(tmp_path):
    """A checkpoint of allowed globals only: BUILD on ``_rebuild_parameter`` with (None, {'__defaults__': ...}),
    then POP, then an empty dict. It must be refused, and the reader's function left as it was."""
    from pascal_ref.io import torch_pickle

    before = (torch_pickle._rebuild_parameter.__defaults__, dict(torch_pickle._rebuild_parameter.__dict__))
    body = (b"\x80\x02" + _global("torch._utils", "_rebuild_parameter") + b"(N}" + _str("__defaults__")
            + b"(" + _str("tampered") + b"ts" + b"tb0}.")
    try:
        with pytest.raises(TorchPickleError):
            load_pth(_write(tmp_path / "state.pth", body))
    finally:
        after = (torch_pickle._rebuild_parameter.__defaults__, dict(torch_pickle._rebuild_parameter.__dict__))
        torch_pickle._rebuild_parameter.__defaults__ = before[0]
        torch_pickle._rebuild_parameter.__dict__.clear()
        torch_pickle._rebuild_parameter.__dict__.update(before[1])
    assert after == before
