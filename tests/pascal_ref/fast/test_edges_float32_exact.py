"""The float32 ANN of the fast engines, pinned exactly (issue 17: before, only a 75 % prediction agreement
guarded it).

On a network whose every value is a short binary fraction (weights and biases
multiples of 1/8 or 1/64, count-coded input k/16, lam a power of two), each sum, each
QCFS step ``floor(z/lam*L + phi)`` and each ``q*lam/L`` is exact in float32, so
the float32 path must give the float64 reference's logits bit for bit: any
change of its formula (phi, the clip, the scale, a bias added twice) shows.
"""
from __future__ import annotations

import numpy as np
import pytest

from pascal_ref import QCFS, Conv2d, Flatten, Linear, Network, float_ann
from pascal_ref.fast import float_ann_fast


def _dyadic(rng, shape, scale=8):
    return rng.integers(-12, 13, size=shape) / scale


def _networks(rng):
    dense = Network((20,), [Linear("fc1", _dyadic(rng, (24, 20)), _dyadic(rng, 24)), QCFS("act1", 2.0, 4),
                            Linear("fc2", _dyadic(rng, (12, 24), 64), _dyadic(rng, 12, 64)), QCFS("act2", 1.0, 8, phi=0.25),
                            Linear("readout", _dyadic(rng, (5, 12)), _dyadic(rng, 5))], input_levels=16, name="dense")
    conv = Network((2, 6, 6), [Conv2d("conv1", _dyadic(rng, (4, 2, 3, 3)), _dyadic(rng, 4), padding=(1, 1)),
                               QCFS("act1", 4.0, 4),
                               Conv2d("conv2", _dyadic(rng, (3, 4, 3, 3)), _dyadic(rng, 3), stride=(2, 2)),
                               QCFS("act2", 2.0, 2, phi=0.375), Flatten("flat"),
                               Linear("readout", _dyadic(rng, (5, 12)), _dyadic(rng, 5))], input_levels=16, name="conv")
    return dense, conv


@pytest.mark.parametrize("seed", range(4))
def test_float32_ann_is_exact_on_dyadic_networks(seed):
    rng = np.random.default_rng(seed)
    for network in _networks(rng):
        x = rng.integers(0, 17, size=(64,) + network.input_shape) / 16
        reference = float_ann(network, x)
        fast32 = float_ann_fast(network, x)
        assert fast32.dtype == np.float32
        np.testing.assert_array_equal(fast32, reference.logits.astype(np.float32), err_msg=network.name)
        # Not a vacuous case: the levels span their range and the logits differ between samples.
        assert all(len(np.unique(q)) > 2 for q in reference.levels.values()), network.name
        assert len(np.unique(reference.logits, axis=0)) > 32, network.name
