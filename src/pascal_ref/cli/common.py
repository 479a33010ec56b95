"""What the subcommands share: the model argument, loading it, ``--levels``, JSON output, safe printing.

Imports of the golden model happen inside the functions, so a command
module that imports this one keeps a fast ``--help``.

Text that comes from a file (network and layer names, array keys) reaches
the terminal only through :func:`echo`, which writes it
:func:`~pascal_ref.errors.printable` (no escape codes, no carriage returns),
and reaches a file name only through :func:`safe_filename` and
:func:`path_inside` (``docs/threat-model.md``).
"""
from __future__ import annotations

import json
import os
import re
import sys

import numpy as np

from pascal_ref.cli import CommandError
from pascal_ref.errors import printable
from pascal_ref.io.files import replace_file

__all__ = ["add_model_argument", "load_model", "network_with_levels", "write_json", "echo", "safe_filename",
           "path_inside", "check_count", "MAX_FILENAME"]

MAX_FILENAME = 64
"""Longest stem :func:`safe_filename` keeps from a name."""


def echo(*parts, file=None) -> None:
    """``print`` for text that may hold names from a file: every line :func:`printable`."""
    text = " ".join(str(part) for part in parts)
    print(printable(text, newlines=True), file=file or sys.stdout)


def safe_filename(name, fallback: str = "network") -> str:
    """A file-name stem made from ``name`` (a network name from a model file): only
    ``A-Z a-z 0-9 . _ -``, others replaced by ``_``, no leading dot, at most
    :data:`MAX_FILENAME` characters; ``fallback`` if nothing is left.

    >>> safe_filename("../../etc/passwd"), safe_filename("/tmp/x"), safe_filename("digits_mlp")
    ('etc_passwd', 'tmp_x', 'digits_mlp')
    """
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).strip("._")
    stem = stem[:MAX_FILENAME].strip("._")
    return stem or fallback


def path_inside(directory, filename: str) -> str:
    """``directory/filename``, refusing any result that would not lie directly inside ``directory``."""
    base = os.path.realpath(os.fspath(directory))
    target = os.path.realpath(os.path.join(base, filename))
    if os.path.dirname(target) != base:
        raise CommandError(f"refusing to write {printable(filename)!r} outside the folder {printable(directory)!r}")
    return target


def check_count(value, option: str, minimum: int = 1, maximum: int | None = None):
    """An option's integer value in ``[minimum, maximum]`` (None passes), else a one-line error."""
    if value is None:
        return None
    if value < minimum or (maximum is not None and value > maximum):
        bound = f">= {minimum}" if maximum is None else f"in {minimum}..{maximum}"
        raise CommandError(f"{option} must be {bound}, got {value}")
    return value


def add_model_argument(parser) -> None:
    """The positional ``model``: a model ``.npz`` or the name of a bundled model."""
    from pascal_ref.io.bundled import BUNDLED

    parser.add_argument("model", help=f"model .npz file, or a bundled model: {', '.join(BUNDLED)}")


def load_model(spec: str):
    """The :class:`~pascal_ref.ir.network.Network` of a bundled model by name, or of a model file.

    A bundled name (``digits-mlp``) always means the bundled model, even if
    the working folder holds a file of that name; ``./digits-mlp`` is the file.
    A network no run could take (a zero-width layer, ``L`` beyond the bound,
    :func:`pascal_ref.analysis.verify.check_network`) is refused here.
    """
    from pascal_ref.analysis.verify import check_network
    from pascal_ref.io.bundled import BUNDLED, resolve_model_path
    from pascal_ref.io.fileformat import load

    path = resolve_model_path(spec)
    if not os.path.lexists(path):
        raise CommandError(f"{spec}: no such file (bundled models: {', '.join(BUNDLED)})")
    return check_network(load(path))


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
    replace_file(target, text)


def _jsonable(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")
