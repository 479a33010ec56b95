"""The float64 QCFS division of the count engine at exact multiples of theta (issue 17).

``qcfs_levels_float`` computes ``floor(a * fl(1/theta))`` and corrects it by one
exact comparison each way. The upward correction ``(q + 1) * theta <= a`` is
needed exactly when ``a`` is a multiple of theta and ``a * fl(1/theta)`` falls
just below the integer (``49 * fl(1/49) < 1``). The property test of
``test_engines.py`` reaches such a case by chance (a ``<=`` turned into ``<``
was caught by 3 seeds of 7); here every multiple of every theta up to 600, and
its neighbours, is checked against integer floor division, so the kill is
deterministic.
"""
from __future__ import annotations

import numpy as np

from pascal_ref.fast.kernels import qcfs_levels_float, qcfs_levels_int

LEVELS = 8


def cases():
    theta = np.arange(1, 601)
    k = np.arange(-1, LEVELS + 2)
    multiples = (theta[:, None] * k[None, :])[..., None] + np.array([-1, 0, 1])   # (theta, k, offset)
    acc = multiples.reshape(len(theta), -1).T.astype(np.int64)                     # rows: values, columns: theta
    return acc, theta.astype(np.int64)


def test_the_upward_correction_is_needed():
    acc, theta = cases()
    estimate = np.floor(acc * (1.0 / theta))
    assert (estimate != acc // theta).sum() > 100       # 49 * fl(1/49) = 0.9999999999999999, and many more
    assert np.floor(49 * (1.0 / 49)) == 0


def test_float_division_equals_integer_floor_at_every_multiple():
    acc, theta = cases()
    expected = np.clip(acc // theta, 0, LEVELS)
    for v0 in (0, 7, -3):
        v0s = np.full(theta.shape, v0, np.int64)
        shifted = acc - v0                                                     # acc + v0 is the same multiple
        out = np.empty(acc.shape, np.float32)
        qcfs_levels_float(shifted.astype(np.float64), v0s, theta, LEVELS, out)
        np.testing.assert_array_equal(out, expected, err_msg=f"v0 = {v0}")
        exact = np.empty(acc.shape, np.int64)
        qcfs_levels_int(shifted, v0s, theta, LEVELS, exact)
        np.testing.assert_array_equal(exact, expected, err_msg=f"v0 = {v0}")
