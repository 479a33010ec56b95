"""The 784-128-10 model of MNIST shape used for the size/speed comparison.

Random weights (seeded, He scale), one hidden layer of QCFS with L=4,
count-coded input with 4 levels, and MNIST-like random images (about 19 % of
the pixels lit, most of them at full intensity).  No MNIST data is needed.

    python cosim/reference_models.py OUT.npz      # save the model for `pascal-ref hdl`
"""
from __future__ import annotations

import sys

import numpy as np

from pascal_ref.io.fileformat import save
from pascal_ref.ir.network import QCFS, Linear, Network

__all__ = ["mnist_shape_network", "mnist_like_images", "LIT_FRACTION"]

LIT_FRACTION = 0.19


def mnist_shape_network(seed: int = 784, levels: int = 4, input_levels: int = 4) -> Network:
    rng = np.random.default_rng(seed)
    w1 = rng.normal(0, np.sqrt(2 / 784), (128, 784))
    b1 = rng.normal(0, 0.01, 128)
    w2 = rng.normal(0, np.sqrt(2 / 128), (10, 128))
    # lam = 0.5 spreads the hidden counts over 0..L on the images below.
    return Network((784,), [Linear("fc1", w1, b1), QCFS("act1", 0.5, levels), Linear("fc2", w2, np.zeros(10))],
                   input_levels=input_levels, name="mnist_shape_mlp")


def mnist_like_images(count: int, seed: int = 1) -> np.ndarray:
    """Float images in [0, 1], shape (count, 784)."""
    rng = np.random.default_rng(seed)
    lit = rng.random((count, 784)) < LIT_FRACTION
    value = np.where(rng.random((count, 784)) < 0.7, 1.0, rng.random((count, 784)))
    return np.where(lit, value, 0.0)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python cosim/reference_models.py OUT.npz")
    save(mnist_shape_network(), sys.argv[1])
    print(f"wrote {sys.argv[1]}")
