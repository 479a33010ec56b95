"""Time the readable reference engines on VGG-16 and ResNet-18 (CIFAR shape).

Prints, for a small batch, the wall time of each path (float ANN, float SNN
timestep/count, integer ANN, integer SNN timestep/count) and the per-layer
verification counts: the integer SNN must equal the integer ANN in every
neuron; the float SNN's mismatches are reported as they are.

    python benchmarks/golden_engines.py [--batch 2] [--arch vgg16 resnet18] [--repeats 3]

Thresholds of the random networks are calibrated layer by layer (99th
percentile of each pre-activation on the batch), so no layer is silent.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from pascal_ref import float_ann, integer_ann, quantize, simulate
from pascal_ref.analysis.verify import default_input_bound, format_report, verify
from pascal_ref.testing import calibrate, random_template_network

MIXED_VGG16 = [8, 4, 4, 1, 4, 4, 1, 1, 1, 1, 1, 4, 8, 8, 8]


def timed(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return result, statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", nargs="+", default=["vgg16", "resnet18"])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    for arch in args.arch:
        levels = MIXED_VGG16 if arch == "vgg16" else 4
        network = random_template_network(arch, 10, levels, rng)
        x = rng.normal(size=(args.batch,) + network.input_shape)
        network = calibrate(network, x)
        model = quantize(network, input_bound=default_input_bound(network, x))
        print(f"\n{arch}: batch {args.batch}, levels {network.levels}, median of {args.repeats}")
        paths = {
            "float ANN": lambda: float_ann(network, x),
            "float SNN count": lambda: simulate(network, x, engine="count"),
            "float SNN timestep": lambda: simulate(network, x, engine="timestep"),
            "integer ANN": lambda: integer_ann(model, x),
            "integer SNN count": lambda: simulate(model, x, engine="count"),
            "integer SNN timestep": lambda: simulate(model, x, engine="timestep"),
        }
        base = None
        for label, fn in paths.items():
            _, seconds = timed(fn, args.repeats)
            base = base or seconds
            print(f"  {label:<22}{seconds * 1e3:>10.1f} ms   {seconds / base:>6.2f}x float ANN")
        print(format_report(verify(network, x, model=model)))


if __name__ == "__main__":
    main()
