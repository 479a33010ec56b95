"""Trained models shipped with the package (see ``examples/train_digits.py``)."""
from __future__ import annotations

import os
from importlib import resources

from pascal_ref.errors import PascalError

__all__ = ["BUNDLED", "bundled_path", "resolve_model_path"]

BUNDLED = {"digits-mlp": "digits_mlp.npz", "digits-cnn": "digits_cnn.npz"}


def bundled_path(name: str) -> str:
    if name not in BUNDLED:
        raise PascalError(f"unknown bundled model {name!r}; bundled: {', '.join(BUNDLED)}")
    return str(resources.files("pascal_ref") / "models" / BUNDLED[name])


def resolve_model_path(spec: str) -> str:
    """A file path as given, or the path of a bundled model by name."""
    if spec in BUNDLED and not os.path.exists(spec):
        return bundled_path(spec)
    return spec
