"""The sandboxed loader process of the fuzzing tier (started by :mod:`sandbox`, one per test process).

It imports every loader, then caps its own address space (``RLIMIT_AS`` =
what the imports use plus ``--budget`` bytes) and its CPU time, and serves
requests, one JSON line each on stdin: ``{"kind": ..., "path": ..., "seconds": ...}``.
Each load runs under a wall-clock alarm; the answer (one JSON line on the
original stdout) classifies the outcome:

``ok``        the loader returned; ``summary`` describes the result and
              ``invariant`` is an empty string or what is wrong with it;
``error``     a ``PascalError`` or ``OSError`` (``one_line``: no newline in it);
``memory``    a ``MemoryError`` escaped: the loader tried to allocate beyond the cap;
``hang``      the alarm fired;
``traceback`` any other exception (a bug), with its last frames.
"""
from __future__ import annotations

import json
import os
import re
import resource
import signal
import sys
import traceback
from pathlib import Path

_answers = os.fdopen(os.dup(1), "w", buffering=1)   # answers only; the loaders' prints go to stderr
os.dup2(2, 1)

import numpy as np  # noqa: E402

from pascal_ref.errors import PascalError, printable  # noqa: E402
from pascal_ref.io import fileformat  # noqa: E402
from pascal_ref.io.data import load_data  # noqa: E402
from pascal_ref.io.bundled import bundled_path  # noqa: E402
from pascal_ref.io.torch_pickle import load_pth  # noqa: E402


class Hang(BaseException):
    """Raised by the alarm; a BaseException so that no ``except Exception`` in a loader swallows it."""


def _alarm(_signum, _frame):
    raise Hang()


_NETWORKS = {}


def _network(name):
    if name not in _NETWORKS:
        _NETWORKS[name] = fileformat.load(bundled_path(name))
    return _NETWORKS[name]


# ------------------------------------------------------------ loaders and what a correct result is


def _first_difference(a, b, path="graph"):
    """Where two JSON documents first differ (None if equal; ``2 == 2.0``)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            if key not in a or key not in b:
                return f"{path}: field {key!r:.40} only in the {'file' if key in a else 'saved graph'}"
            found = _first_difference(a[key], b[key], f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{path}: {len(a)} entries in the file, {len(b)} saved"
        for index, (x, y) in enumerate(zip(a, b)):
            found = _first_difference(x, y, f"{path}[{index}]")
            if found:
                return found
        return None
    if type(a) is bool or type(b) is bool:
        return None if a is b else f"{path}: {a!r:.40} in the file, {b!r:.40} saved"
    return None if a == b else f"{path}: {a!r:.40} in the file, {b!r:.40} saved"


def load_model(path: str):
    """``fileformat.load``; a correct result is a network whose saved graph is the file's graph
    (nothing ignored, nothing coerced) and that loads back."""
    from pascal_ref.io.npzio import read_npz
    network = fileformat.load(path)
    file_graph = json.loads(str(read_npz(path)["__graph__"]))
    problems = []
    difference = _first_difference(file_graph, fileformat.network_to_graph(network))
    if difference:
        problems.append(f"accepted but not what the file says: {difference}")
    again_path = path + ".again.npz"
    fileformat.save(network, again_path)
    again = fileformat.load(again_path)
    if fileformat.network_to_graph(again) != fileformat.network_to_graph(network):
        problems.append("save/load changes the network")
    return f"network {network.name!r:.40} of {len(network.neuron_layers)} layers", "; ".join(problems)


def _load_data_for(path: str, model: str):
    network = _network(model)
    data = load_data(path, network=network)
    problems = []
    x = data.x
    if x.dtype != np.float64 or x.shape[1:] != network.input_shape or len(x) < 1:
        problems.append(f"x has dtype {x.dtype} shape {x.shape}")
    elif not np.all(np.isfinite(x)) or (network.input_levels is not None and (x.min() < 0 or x.max() > 1)):
        problems.append("x holds values the model cannot take")
    if data.y is not None and (data.y.dtype != np.int64 or data.y.shape != (len(x),) or
                               (data.y.size and (data.y.min() < 0 or data.y.max() > 9))):
        problems.append(f"y has dtype {data.y.dtype} shape {data.y.shape}")
    return f"{len(x)} samples", "; ".join(problems)


def load_data_mlp(path: str):
    return _load_data_for(path, "digits-mlp")


def load_data_cnn(path: str):
    return _load_data_for(path, "digits-cnn")


def load_checkpoint(path: str):
    """``load_pth``: every tensor a read-only numpy array; containers only of plain types."""
    value = load_pth(path)
    problems, stack, seen, tensors = [], [value], set(), 0
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, np.ndarray):
            tensors += 1
            if item.flags.writeable:
                problems.append("a writeable tensor")
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple, set, frozenset)):
            stack.extend(item)
        elif not isinstance(item, (str, bytes, int, float, complex, bool, type(None), bytearray)):
            problems.append(f"an object of type {type(item).__name__}")
    return f"{type(value).__name__} with {tensors} tensors", "; ".join(sorted(set(problems)))


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


class ToolsReached(Exception):
    """Raised instead of running yosys: the build folder passed every check ``synthesize`` makes first."""


def _no_tools(cmd, log_path, env, cwd):
    raise ToolsReached(cmd, cwd)


def load_manifest(path: str):
    """``pascal_hdl.flow.synth.synthesize`` on the build folder of ``path``, stopped at its first tool call.

    Accepted (the tools were reached), the manifest must have named only plain
    files inside the folder and a ``top`` that is a Verilog identifier, and
    the output folder must hold only the copies of those files and the
    wrapper: nothing from a manifest may reach a tool script or a path
    unquoted, and nothing outside the folder may be read.
    """
    from pascal_hdl.flow import synth
    build_dir = Path(path).parent.resolve()
    out_dir = build_dir / "synth-out"
    synth.run_tool = _no_tools
    try:
        synth.synthesize(build_dir, "ice40-up5k", out_dir=out_dir)
    except ToolsReached as reached:
        command, cwd = reached.args
    else:
        raise AssertionError("synthesize returned without running a tool")
    manifest = json.loads((build_dir / "manifest.json").read_text())
    problems = []
    for name in manifest.get("verilog", []):
        if not (isinstance(name, str) and _FILE_NAME.fullmatch(name) and (build_dir / name).resolve().parent == build_dir):
            problems.append(f"verilog entry {name!r:.60} reached the tools")
    if not (isinstance(manifest.get("top"), str) and _IDENTIFIER.fullmatch(manifest["top"])):
        problems.append(f"top {manifest.get('top')!r:.60} reached the tools")
    written = {p.name for p in Path(cwd).iterdir()}
    expected = {"wrapper.v"} | {str(n) for n in manifest.get("verilog", []) if isinstance(n, str)}
    if not written <= expected:
        problems.append(f"unexpected files in the output folder: {sorted(written - expected)[:3]}")
    return f"tools reached with {len(command)} arguments", "; ".join(problems)


MAX_MESSAGE = 2000
"""Longest error line accepted as "one clear line" (a message must not quote a whole hostile value).
Messages are judged as the command line prints them, through ``printable``."""

def selftest(path: str):
    """The harness's own check: ``hang``, ``memory`` or ``traceback`` on purpose."""
    if path == "hang":
        while True:
            pass
    if path == "memory":
        return f"{len(bytearray(8 << 30))} bytes", ""
    if path == "traceback":
        raise KeyError("on purpose")
    return "fine", ""


LOADERS = {"selftest": selftest, "model": load_model, "data-mlp": load_data_mlp, "data-cnn": load_data_cnn,
           "checkpoint": load_checkpoint, "manifest": load_manifest}


# ------------------------------------------------------------ the loop


def _vm_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def serve(budget: int) -> None:
    from pascal_hdl.flow import synth  # noqa: F401  (imported before the cap, like the other loaders)
    import json as _json  # noqa: F401
    _network("digits-mlp"), _network("digits-cnn")
    cap = _vm_bytes() + budget
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    signal.signal(signal.SIGALRM, _alarm)
    _answers.write(json.dumps({"ready": True, "cap": cap}) + "\n")
    for line in sys.stdin:
        request = json.loads(line)
        answer = {"kind": request["kind"]}
        try:
            signal.setitimer(signal.ITIMER_REAL, request["seconds"])
            try:
                summary, invariant = LOADERS[request["kind"]](request["path"])
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            answer.update(outcome="ok", summary=summary, invariant=invariant)
        except Hang:
            answer.update(outcome="hang")
        except (PascalError, OSError) as error:
            message = printable(error)   # as the command line prints it: control characters escaped
            answer.update(outcome="error", type=type(error).__name__, message=message[:2000], length=len(message),
                          one_line="\n" not in message and len(message) <= MAX_MESSAGE)
        except MemoryError:
            answer.update(outcome="memory", trace=traceback.format_exc(limit=-4)[-3000:])
        except BaseException as error:   # a bug: report it, keep serving
            answer.update(outcome="traceback", type=type(error).__name__, message=str(error)[:500],
                          trace=traceback.format_exc(limit=-6)[-4000:])
        _answers.write(json.dumps(answer) + "\n")


if __name__ == "__main__":
    serve(int(sys.argv[1]) if len(sys.argv) > 1 else 1 << 30)
