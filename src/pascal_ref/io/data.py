"""Data sets that work offline: scikit-learn's digits, and user ``.npz`` files, validated against the model.

``--data digits`` is the digits test split (stratified 30%, random_state=0),
pixels scaled to [0, 1] (``pixel / 16``; the digits pixels are integers
0..16, so a network with ``input_levels=16`` sees them exactly).
``--data FILE.npz`` reads arrays ``x`` (samples first) and optionally ``y``
(integer labels) with :func:`pascal_ref.io.npzio.read_npz` (never unpickles,
bounded memory); any other array is refused before it is decompressed.

:func:`check_data` checks a batch against the model it is meant for, and
refuses rather than guesses (``docs/threat-model.md``):

* layout: ``(N, *input_shape)`` as the model takes it (channels first,
  NCHW), or ``(N, prod(input_shape))`` flat, or ``(N, H, W)`` for a model of
  one channel; a channels-last ``(N, H, W, C)`` array is an error that says
  so (it is never reshaped into channels first);
* values: finite; for a count-coded model (``input_levels``) inside
  ``[0, 1]``, the range the encoding is defined on (raw pixels 0..16 would
  otherwise be clipped to 1 without a word);
* labels: integers, one per sample (shape ``(N,)``), in ``0..classes-1``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from pascal_ref.errors import PascalError, printable
from pascal_ref.io.npzio import NpzError, read_npz

__all__ = ["Dataset", "load_digits_split", "load_data", "check_data", "check_labels", "DataError",
           "DIGITS_TEST_FRACTION", "DIGITS_SEED"]

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
    """``x`` as ``(N, *input_shape)``: exact, flat, or one missing channel axis; never a transpose."""
    if input_shape is None:
        return x
    input_shape = tuple(int(n) for n in input_shape)
    samples = x.shape[1:]
    if samples == input_shape:
        return x
    size = int(np.prod(input_shape))
    if x.ndim == 2 and samples[0] == size:
        return x.reshape((x.shape[0],) + input_shape)
    if len(input_shape) == 3 and input_shape[0] == 1 and samples == input_shape[1:]:
        return x[:, None]
    if len(input_shape) == 3 and len(samples) == 3 and samples == (input_shape[1], input_shape[2], input_shape[0]):
        c, h, w = input_shape
        raise DataError(f"{source}: array 'x' has samples of shape {samples}, channels last (N, H, W, C); the model "
                        f"expects channels first (N, C, H, W) = (N, {c}, {h}, {w}): transpose it with "
                        "x.transpose(0, 3, 1, 2)")
    raise DataError(f"{source}: array 'x' has samples of shape {samples}, the model expects {input_shape}"
                    + (f" (or flat ({size},))" if len(input_shape) > 1 else ""))


def _classes(network) -> int:
    return int(np.prod(network.readout.output_shape))


def check_labels(y, samples: int, classes: int | None, source: str = "data") -> np.ndarray:
    """Labels as int64 ``(samples,)``; refuses another shape, a non-integer dtype and labels outside ``0..classes-1``."""
    y = np.asarray(y)
    if y.dtype.kind not in "iu":
        raise DataError(f"{source}: array 'y' must hold integer labels, got dtype {y.dtype}")
    if y.shape != (samples,):
        raise DataError(f"{source}: array 'y' has shape {y.shape}, expected ({samples},) to match 'x'")
    if y.size and classes is not None:
        low, high = int(y.min()), int(y.max())
        if low < 0 or high >= classes:
            bad = int(np.count_nonzero((y < 0) | (y >= classes)))
            raise DataError(f"{source}: array 'y' has labels in [{low}, {high}]; the model has {classes} classes "
                            f"(labels 0..{classes - 1}): {bad} of {samples} labels are outside")
    return y.astype(np.int64)


def check_data(network, x, y=None, source: str = "data"):
    """``(x, y)`` checked against ``network`` (module docstring): x float64 ``(N, *input_shape)``, y int64 or None.

    Raises :class:`DataError` naming ``source``, the array and what was expected.
    """
    x = np.asarray(x)
    if x.dtype.kind not in "iuf" or x.dtype == np.float16:
        raise DataError(f"{source}: array 'x' must be float (32 or 64 bit) or integer, got dtype {x.dtype}")
    if x.shape == tuple(network.input_shape):
        x = x[None]   # one sample
    if x.ndim < 2 or x.shape[0] == 0:
        raise DataError(f"{source}: array 'x' must be (samples, ...) with at least one sample, got shape {x.shape}"
                        + (" (an empty batch)" if x.ndim >= 1 and x.shape[0] == 0 else ""))
    x = _fit_shape(x, network.input_shape, source)
    x = x.astype(np.float64)
    if not np.all(np.isfinite(x)):
        raise DataError(f"{source}: array 'x' contains NaN or Inf")
    if network.input_levels is not None:
        low, high = float(x.min()), float(x.max())
        if low < 0.0 or high > 1.0:
            unscaled = low >= 0 and high > 1 and high.is_integer()
            hint = f" (values up to {high:g} look like unscaled counts: divide by {high:g}?)" if unscaled else ""
            raise DataError(f"{source}: array 'x' has values in [{low:g}, {high:g}]; model "
                            f"'{printable(network.name)}' count-codes its input (input_levels="
                            f"{network.input_levels}), defined on [0, 1]{hint}")
    if y is not None:
        y = check_labels(y, x.shape[0], _classes(network), source)
    return x, y


def _positive_limit(limit):
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1:
        raise DataError(f"--limit must be >= 1, got {limit!r}")
    return int(limit)


def load_data(spec: str, input_shape=None, split: str = "test", limit: int | None = None, *,
              network=None) -> Dataset:
    """Load ``digits`` (``split`` train or test) or an ``.npz`` with ``x``/``y``.

    With ``network`` the data is checked against it (:func:`check_data`);
    ``input_shape`` alone only fits the layout.  ``limit`` keeps the first
    samples (before the checks, so a bad sample beyond it does not matter).
    """
    limit = _positive_limit(limit)
    if spec == "digits":
        x_train, y_train, x_test, y_test = load_digits_split()
        if split not in ("train", "test"):
            raise DataError(f"digits: split must be 'train' or 'test', got {split!r}")
        x, y = (x_train, y_train) if split == "train" else (x_test, y_test)
        name = f"digits-{split}"
    else:
        try:
            arrays = read_npz(spec, names=("x", "y"))
        except NpzError as error:
            hint = " (use 'digits' or an .npz with arrays 'x' and 'y')" if "not an .npz archive" in str(error) else ""
            raise DataError(f"{error}{hint}") from None
        if "x" not in arrays:
            raise DataError(f"{spec}: no array 'x' (found: {', '.join(arrays) or 'none'})")
        x, y = arrays["x"], arrays.get("y")
        if x.ndim < 2 or x.shape[0] == 0:
            raise DataError(f"{spec}: array 'x' must be (samples, ...) with at least one sample, got shape {x.shape}")
        if y is not None:
            check_labels(y, x.shape[0], None, spec)
        name = os.path.basename(spec)
    if limit is not None:
        x, y = x[:limit], None if y is None else y[:limit]
    if network is not None:
        x, y = check_data(network, x, y, spec)
    else:
        if x.dtype.kind not in "iuf" or x.dtype == np.float16:
            raise DataError(f"{spec}: array 'x' must be float or integer, got dtype {x.dtype}")
        x = _fit_shape(x, input_shape, spec).astype(np.float64)
        if not np.all(np.isfinite(x)):
            raise DataError(f"{spec}: array 'x' contains NaN or Inf")
        y = None if y is None else y.astype(np.int64)
    return Dataset(x, y, name)
