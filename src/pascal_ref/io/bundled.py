"""Trained models shipped with the package (see ``examples/train_digits.py``).

A bundled name (``digits-mlp``, ``digits-cnn``, ``digits-resnet``) always means the bundled
model, never a file of that name in the working folder: a file planted
there cannot take its place (``docs/threat-model.md``).  To load such a
file, give it as a path: ``./digits-mlp``.
"""
from __future__ import annotations

from importlib import resources

from pascal_ref.errors import PascalError

__all__ = ["BUNDLED", "bundled_path", "resolve_model_path", "is_bundled_name"]

BUNDLED = {"digits-mlp": "digits_mlp.npz", "digits-cnn": "digits_cnn.npz", "digits-resnet": "digits_resnet.npz"}


def bundled_path(name: str) -> str:
    """The installed file of the bundled model ``name``."""
    if name not in BUNDLED:
        raise PascalError(f"unknown bundled model {name!r}; bundled: {', '.join(BUNDLED)}")
    return str(resources.files("pascal_ref") / "models" / BUNDLED[name])


def is_bundled_name(spec) -> bool:
    """True when ``spec`` is the bare name of a bundled model (not a path)."""
    return isinstance(spec, str) and spec in BUNDLED


def resolve_model_path(spec) -> str:
    """The path of a bundled model by name; anything else is a path, as given.

    ``digits-mlp`` is the bundled model even if the working folder holds a
    file of that name; ``./digits-mlp`` is that file.
    """
    if is_bundled_name(spec):
        return bundled_path(spec)
    return str(spec)
