"""The README's claim that count coding is exact on digits: pixels 0..16 with L_in = 16 (issue 17)."""
from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits

from pascal_ref.golden.ann import input_levels_of
from pascal_ref.io.bundled import BUNDLED, bundled_path
from pascal_ref.io.data import load_digits_split
from pascal_ref.io.fileformat import load


def test_digits_pixels_are_the_input_levels_exactly():
    raw = load_digits().data
    assert raw.min() == 0 and raw.max() == 16 and np.array_equal(raw, np.rint(raw))
    for name in BUNDLED:
        network = load(bundled_path(name))
        assert network.input_levels == 16, name
    x_train, _, x_test, _ = load_digits_split()
    x = np.concatenate([x_train, x_test]).reshape(len(raw), -1)
    levels = input_levels_of(load(bundled_path("digits-mlp")), x)
    # Every pixel comes back as its own value: the coding loses nothing on this data set.
    np.testing.assert_array_equal(np.sort(levels.sum(axis=1)), np.sort(raw.sum(axis=1)))
    np.testing.assert_array_equal(np.unique(levels), np.arange(17))
    assert np.array_equal(levels / 16, x)
