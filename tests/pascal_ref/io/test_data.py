"""Data checked against the model: layout (NCHW), count-coding range, labels; never a silent guess."""
from __future__ import annotations

import numpy as np
import pytest

from pascal_ref.io.bundled import bundled_path
from pascal_ref.io.data import DataError, check_data, load_data
from pascal_ref.io.fileformat import load


@pytest.fixture(scope="module")
def mlp():
    return load(bundled_path("digits-mlp"))


@pytest.fixture(scope="module")
def cnn():
    return load(bundled_path("digits-cnn"))


def test_raw_pixels_are_an_error_naming_the_range(mlp):
    from sklearn.datasets import load_digits
    raw = load_digits().data[:20]    # 0..16, not scaled
    with pytest.raises(DataError, match=r"values in \[0, 16\]; model 'digits_mlp' count-codes its input "
                                        r"\(input_levels=16\), defined on \[0, 1\] .*divide by 16\?"):
        check_data(mlp, raw)
    with pytest.raises(DataError, match=r"values in \[-0.5, 1\]"):
        check_data(mlp, np.full((2, 64), -0.5) + np.eye(2, 64) * 1.5)
    x, _ = check_data(mlp, raw / 16)
    assert x.dtype == np.float64 and x.shape == (20, 64)


def test_analog_models_take_any_finite_values():
    from pascal_ref.testing import random_mlp
    analog = random_mlp(np.random.default_rng(0), [4, 3, 2], [2], input_levels=None)
    x, _ = check_data(analog, np.array([[-7.0, 3, 100, 0]]))
    assert x.max() == 100
    with pytest.raises(DataError, match="NaN or Inf"):
        check_data(analog, np.array([[np.inf, 0, 0, 0]]))


@pytest.mark.parametrize("labels, message", [
    (np.array([0, 1, 10]), r"labels in \[0, 10\]; the model has 10 classes \(labels 0..9\): 1 of 3"),
    (np.array([-1, 1, 2]), r"labels in \[-1, 2\]"),
    (np.array([0.0, 1.0, 2.0]), "must hold integer labels, got dtype float64"),
    (np.array([True, False, True]), "must hold integer labels, got dtype bool"),
    (np.array(3), r"has shape \(\), expected \(3,\)"),
    (np.zeros((3, 1), int), r"has shape \(3, 1\), expected \(3,\)"),
    (np.zeros(4, int), r"has shape \(4,\), expected \(3,\)"),
])
def test_bad_labels(mlp, labels, message):
    with pytest.raises(DataError, match=message):
        check_data(mlp, np.zeros((3, 64)), labels)


def test_layouts(cnn, mlp):
    x = np.random.default_rng(0).uniform(0, 1, (5, 1, 8, 8))
    np.testing.assert_array_equal(check_data(cnn, x)[0], x)
    np.testing.assert_array_equal(check_data(cnn, x.reshape(5, 64))[0], x)        # flat
    np.testing.assert_array_equal(check_data(cnn, x[:, 0])[0], x)                 # one channel, no axis
    assert check_data(cnn, x[0])[0].shape == (1, 1, 8, 8)                        # one sample
    with pytest.raises(DataError, match=r"channels last \(N, H, W, C\); the model expects channels first "
                                        r"\(N, C, H, W\) = \(N, 1, 8, 8\): transpose it"):
        check_data(cnn, x.transpose(0, 2, 3, 1))
    with pytest.raises(DataError, match=r"samples of shape \(4, 16\), the model expects \(1, 8, 8\)"):
        check_data(cnn, x.reshape(5, 4, 16))          # same size, another layout: never reshaped
    with pytest.raises(DataError, match=r"samples of shape \(8, 8\), the model expects \(64,\)"):
        check_data(mlp, x[:, 0])
    with pytest.raises(DataError, match="an empty batch"):
        check_data(mlp, np.zeros((0, 64)))
    with pytest.raises(DataError, match="dtype complex128"):
        check_data(mlp, np.zeros((1, 64), complex))


def test_channels_last_rgb_is_refused(tmp_path):
    from pascal_ref.testing import random_network
    net = random_network(np.random.default_rng(1), "conv", levels=[2, 2], input_levels=4)   # input (2, 8, 8)
    x = np.zeros((3, 8, 8, 2))
    with pytest.raises(DataError, match=r"channels last.*\(N, 2, 8, 8\)"):
        check_data(net, x)


def test_load_data_file_checks(tmp_path, mlp):
    np.savez(tmp_path / "d.npz", x=np.full((4, 64), 0.5), y=np.array([1, 2, 3, 4]))
    data = load_data(str(tmp_path / "d.npz"), network=mlp, limit=2)
    assert len(data) == 2 and data.y.tolist() == [1, 2] and data.name == "d.npz"
    np.savez(tmp_path / "extra.npz", x=np.zeros((4, 64)), z=np.zeros(3))
    with pytest.raises(DataError, match="unexpected array 'z'; expected x, y"):
        load_data(str(tmp_path / "extra.npz"), network=mlp)
    np.savez(tmp_path / "raw.npz", x=np.full((4, 64), 16.0))
    with pytest.raises(DataError, match=r"raw.npz: array 'x' has values in \[16, 16\]"):
        load_data(str(tmp_path / "raw.npz"), network=mlp)
    with pytest.raises(DataError, match="--limit must be >= 1, got 0"):
        load_data("digits", network=mlp, limit=0)
