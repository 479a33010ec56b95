"""Data sets that work offline: scikit-learn's digits, and user ``.npz`` files.

``--data digits`` is the digits test split (stratified 30%, random_state=0),
pixels scaled to [0, 1] (``pixel / 16``; the digits pixels are integers
0..16, so a network with ``input_levels=16`` sees them exactly).
``--data FILE.npz`` reads arrays ``x`` (samples first) and optionally ``y``
(integer labels) with ``allow_pickle=False``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from pascal_ref.errors import PascalError
from pascal_ref.io.npzio import NpzError, read_npz

__all__ = ["Dataset", "load_digits_split", "load_data", "DataError", "DIGITS_TEST_FRACTION", "DIGITS_SEED"]

DIGITS_TEST_FRACTION = 0.3
DIGITS_SEED = 0


class DataError(PascalError):
    """A data set that cannot be used; the message names the file and the array."""


@dataclass(frozen=True)
class Dataset:
    x: np.ndarray
    y: np.ndarray | None
    name: str

    def __len__(self) -> int:
        return len(self.x)


def load_digits_split():
    """``(x_train, y_train, x_test, y_test)``: digits, x in [0, 1], shape (N, 64)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = digits.data.astype(np.float64) / 16.0
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=DIGITS_TEST_FRACTION, random_state=DIGITS_SEED, stratify=y)
    return x_train, y_train, x_test, y_test


def _fit_shape(x: np.ndarray, input_shape, source: str) -> np.ndarray:
    if input_shape is None:
        return x
    input_shape = tuple(input_shape)
    if x.shape[1:] == input_shape:
        return x
    if x.ndim >= 2 and int(np.prod(x.shape[1:])) == int(np.prod(input_shape)):
        return x.reshape((x.shape[0],) + input_shape)
    raise DataError(f"{source}: array 'x' has samples of shape {x.shape[1:]}, the model expects {input_shape}")


def load_data(spec: str, input_shape=None, split: str = "test", limit: int | None = None) -> Dataset:
    """Load ``digits`` (``split`` train or test) or an ``.npz`` with ``x``/``y``."""
    if spec == "digits":
        x_train, y_train, x_test, y_test = load_digits_split()
        if split not in ("train", "test"):
            raise DataError(f"digits: split must be 'train' or 'test', got {split!r}")
        x, y = (x_train, y_train) if split == "train" else (x_test, y_test)
        name = f"digits-{split}"
    else:
        try:
            arrays = read_npz(spec)
        except NpzError as error:
            raise DataError(f"{error} (use 'digits' or an .npz with arrays 'x' and 'y')") from None
        if "x" not in arrays:
            raise DataError(f"{spec}: no array 'x' (found: {', '.join(arrays) or 'none'})")
        extra = set(arrays) - {"x", "y"}
        if extra:
            raise DataError(f"{spec}: unexpected array(s) {', '.join(sorted(extra))}; expected 'x' and optionally 'y'")
        x, y = arrays["x"], arrays.get("y")
        if x.dtype.kind not in "iuf" or x.dtype == np.float16:
            raise DataError(f"{spec}: array 'x' must be float or integer, got dtype {x.dtype}")
        if x.ndim < 2 or x.shape[0] == 0:
            raise DataError(f"{spec}: array 'x' must be (samples, ...) with at least one sample, got shape {x.shape}")
        if not np.all(np.isfinite(x)):
            raise DataError(f"{spec}: array 'x' contains NaN or Inf")
        if y is not None:
            if y.dtype.kind not in "iu":
                raise DataError(f"{spec}: array 'y' must hold integer labels, got dtype {y.dtype}")
            if y.shape != (x.shape[0],):
                raise DataError(f"{spec}: array 'y' has shape {y.shape}, expected ({x.shape[0]},) to match 'x'")
            y = y.astype(np.int64)
        x = x.astype(np.float64)
        name = os.path.basename(spec)
    x = _fit_shape(x, input_shape, spec)
    if limit is not None:
        if limit < 1:
            raise DataError(f"--limit must be >= 1, got {limit}")
        x, y = x[:limit], None if y is None else y[:limit]
    return Dataset(x, y, name)
