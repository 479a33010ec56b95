"""Reading ``.npz`` archives safely: never unpickle, clear errors."""
from __future__ import annotations

import os
import zipfile

import numpy as np

from pascal_ref.errors import PascalError

__all__ = ["read_npz", "NpzError"]


class NpzError(PascalError):
    """An ``.npz`` file that cannot be read safely."""


def read_npz(path) -> dict:
    """All arrays of an ``.npz`` as a dict, with ``allow_pickle=False``.

    A missing file, a file that is not a zip archive, a truncated archive or
    an object (pickled) array is an :class:`NpzError` naming the file and,
    where it applies, the array.
    """
    source = os.fspath(path)
    if not os.path.exists(source):
        raise NpzError(f"{source}: no such file")
    if not zipfile.is_zipfile(source):
        raise NpzError(f"{source}: not an .npz archive (not a zip file)")
    arrays = {}
    try:
        with np.load(source, allow_pickle=False) as archive:
            for key in archive.files:
                try:
                    value = archive[key]
                    if not isinstance(value, np.ndarray):
                        raise NpzError(f"{source}: member '{key}' is not a .npy array; refused")
                    arrays[key] = value
                except ValueError as error:
                    if "pickle" in str(error):
                        raise NpzError(f"{source}: array '{key}' is a pickled object array; refused (only numeric arrays are read)") from None
                    raise NpzError(f"{source}: array '{key}' cannot be read ({error})") from None
    except NpzError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as error:
        raise NpzError(f"{source}: damaged .npz archive ({type(error).__name__}: {error})") from None
    return arrays
