"""What the subcommands share: the model argument, loading it, ``--levels``, JSON output.

Imports of the golden model happen inside the functions, so a command
module that imports this one keeps a fast ``--help``.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys

import numpy as np

from pascal_ref.cli import CommandError

__all__ = ["add_model_argument", "load_model", "network_with_levels", "write_json"]


def add_model_argument(parser) -> None:
    """The positional ``model``: a model ``.npz`` or the name of a bundled model."""
    from pascal_ref.io.bundled import BUNDLED

    parser.add_argument("model", help=f"model .npz file, or a bundled model: {', '.join(BUNDLED)}")


def load_model(spec: str):
    """The :class:`~pascal_ref.ir.network.Network` of a model file, or of a bundled model by name."""
    from pascal_ref.io.bundled import BUNDLED, resolve_model_path
    from pascal_ref.io.fileformat import load

    path = resolve_model_path(spec)
    if not os.path.exists(path):
        raise CommandError(f"{spec}: no such file (bundled models: {', '.join(BUNDLED)})")
    return load(path)


def network_with_levels(network, text: str, option: str = "--levels"):
    """``network`` with the L of its activations from ``--levels`` text
    (:func:`pascal_ref.convert.levels.levels_per_activation`)."""
    from pascal_ref.convert.levels import levels_per_activation

    names = [layer.name for layer in network.hidden_layers]
    return network.with_levels(levels_per_activation(text, names, network.name, option))


def write_json(path, payload) -> None:
    """Write ``payload`` as indented JSON to the file ``path``, or to stdout for ``"-"``.

    NumPy arrays become lists and NumPy scalars numbers.  The whole text is
    made before anything is written, and a file is written beside its
    destination and then renamed onto it: a payload that cannot be
    serialized, or a failed write, leaves no half-written file.  A path that
    exists and is no regular file (``/dev/stdout``, a pipe) is written in place.
    """
    text = json.dumps(payload, indent=2, default=_jsonable) + "\n"
    if path == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    target = os.path.realpath(os.fspath(path))
    if os.path.exists(target) and not os.path.isfile(target):
        with open(target, "w") as handle:
            handle.write(text)
        return
    temporary = f"{target}.{os.getpid()}.tmp"
    try:
        with open(temporary, "w") as handle:
            handle.write(text)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)
        raise


def _jsonable(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")
