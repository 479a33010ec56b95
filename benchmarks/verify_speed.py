"""How fast ``verify`` runs next to the fast engines it is built on, before and after moving it onto them.

Usage (from the repository root, venv active)::

    python benchmarks/verify_speed.py                       # VGG-16 (CIFAR), 32 images, 3 rounds
    python benchmarks/verify_speed.py --repeats 5 --json /tmp/verify_speed.json
    python benchmarks/verify_speed.py --large 10000 --workers 2   # + a 10,000-image `pascal-ref verify`
    python benchmarks/verify_speed.py --large 10000 --large-model digits-cnn --large-engine timestep --large-only

One process, one network (``pascal_ref.testing.random_template_network("vgg16", 10, 4)``,
analog input 3x32x32, seed 0) and one batch (standard normal, seed 1).  Every
item below runs once per round, round-robin, after a warm-up round (Numba
compilation, BLAS start-up), so load changes on a shared machine hit all of
them alike; the script prints the median of every item and ratios of
medians from this one run:

``fast: <path>``        the fast engine of each of the four paths alone:
                        ``float_ann_fast`` (float ANN, float32), ``count_engine``
                        (integer ANN), ``timestep_engine`` / ``count_engine``
                        (integer SNN).  The float SNN has no fast engine:
``readable: float SNN`` ``simulate(network, engine)``, the engine verify uses for it
                        (and ``readable: integer SNN``, the engine ``timestep_engine`` replaces).
``verify <engine> before``  ``verify(..., engines="reference")``: every path on the
                        readable engines over the whole batch (the code before).
``verify <engine> after``   ``verify(...)``: integer paths on the fast engines,
                        readable engines re-run on the first 4 samples (the default).

Two baselines per mode: ``fast engines only`` = float ANN + integer ANN +
integer SNN fast engines (nothing for the float SNN: the strictest), and
``fastest engine per path`` = the same plus the readable float SNN.  ``--large N`` also times the command line on N
images (written to a temporary ``.npz``) with and without ``--workers``.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np


def build(batch: int):
    from pascal_ref.analysis.verify import default_input_bound
    from pascal_ref.golden.quantize import quantize
    from pascal_ref.testing import random_template_network

    network = random_template_network("vgg16", 10, 4, rng=0)
    x = np.random.default_rng(1).normal(size=(batch, 3, 32, 32))
    y = np.random.default_rng(2).integers(0, 10, batch)
    model = quantize(network, input_bound=default_input_bound(network, x))
    return network, model, x, y


def items(network, model, x, y, engines_wanted):
    from pascal_ref import fast
    from pascal_ref.analysis.verify import verify

    plan = fast.count_plan(model)
    table = {
        "fast: float ANN (float_ann_fast)": lambda: fast.float_ann_fast(network, x),
        "fast: integer ANN (count_engine)": lambda: fast.count_engine(plan, x),
        "fast: integer SNN (timestep_engine)": lambda: fast.timestep_engine(model, x),
    }
    from pascal_ref.golden.snn import simulate
    for engine in engines_wanted:
        table[f"readable: float SNN ({engine})"] = lambda e=engine: simulate(network, x, engine=e)
    if "timestep" in engines_wanted:   # for comparison: the readable engine the fast one replaces
        table["readable: integer SNN (timestep)"] = lambda: simulate(model, x, engine="timestep")
    for engine in engines_wanted:
        table[f"verify {engine} before"] = lambda e=engine: verify(network, x, y, model, e, engines="reference")
        table[f"verify {engine} after"] = lambda e=engine: verify(network, x, y, model, e)
    return table


def measure(table: dict, repeats: int, pause: float) -> dict:
    for name, run in table.items():     # warm-up round
        run()
    times = {name: [] for name in table}
    for round_index in range(repeats):
        for name, run in table.items():
            time.sleep(pause)
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
        print(f"  round {round_index + 1}/{repeats} done", file=sys.stderr, flush=True)
    return times


def large_run(images: int, workers: int, engine: str, batch_size: int, model: str = "vgg16") -> dict:
    """``pascal-ref verify`` on ``images`` images, with and without ``--workers``.

    ``model``: ``vgg16`` (the random CIFAR VGG-16 of the rounds, on standard normal 3x32x32 images) or a
    bundled digits model (``digits-cnn``, ``digits-mlp``) on the 1797 digits images (pixels / 16) repeated
    to ``images`` samples, with their labels.
    """
    from pascal_ref.io.fileformat import save
    from pascal_ref.testing import random_template_network

    folder = tempfile.mkdtemp(prefix="verify-speed-")
    data_path = os.path.join(folder, "data.npz")
    if model == "vgg16":
        model_path = os.path.join(folder, "vgg16.npz")
        save(random_template_network("vgg16", 10, 4, rng=0), model_path)
        rng = np.random.default_rng(3)
        np.savez(data_path, x=rng.normal(size=(images, 3, 32, 32)), y=rng.integers(0, 10, images))
    else:
        from sklearn.datasets import load_digits
        model_path = model
        digits = load_digits()
        index = np.arange(images) % len(digits.target)
        x = digits.data[index] / 16.0
        np.savez(data_path, x=x.reshape(images, 1, 8, 8) if model == "digits-cnn" else x, y=digits.target[index])
    results = {}
    for label, extra in (("one process", []), (f"--workers {workers}", ["--workers", str(workers)])):
        command = [sys.executable, "-m", "pascal_ref.cli", "verify", model_path, "--data", data_path, "--engine",
                   engine, "--batch-size", str(batch_size), "--json", os.path.join(folder, f"{len(extra)}.json")]
        start = time.perf_counter()
        done = subprocess.run(command + extra, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        verdict = [line for line in done.stdout.splitlines() if "verdict" in line]
        results[label] = {"seconds": seconds, "exit": done.returncode, "verdict": verdict[-1].strip() if verdict else
                          done.stderr.strip().splitlines()[-1:]}
        print(f"  {images} images, {label}: {seconds:.0f} s, {results[label]['verdict']}", file=sys.stderr,
              flush=True)
    shutil.rmtree(folder, ignore_errors=True)
    return {"images": images, "model": model, "engine": engine, "batch_size": batch_size,
            "command": " ".join(command), "runs": results}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pause", type=float, default=0.5, help="seconds between timed runs")
    parser.add_argument("--engines", default="timestep,count", help="verify engines to time")
    parser.add_argument("--large", type=int, default=0, help="also time `pascal-ref verify` on this many images")
    parser.add_argument("--large-engine", default="count", choices=("count", "timestep"))
    parser.add_argument("--large-model", default="vgg16", choices=("vgg16", "digits-cnn", "digits-mlp"),
                        help="model of the --large run (digits: the digits images repeated to N samples)")
    parser.add_argument("--large-only", action="store_true", help="skip the rounds, only the --large run")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", metavar="OUT")
    args = parser.parse_args(argv)
    engines = [e for e in args.engines.split(",") if e]

    if args.large_only:
        if not args.large:
            parser.error("--large-only needs --large N")
        large = large_run(args.large, args.workers, args.large_engine, 64, args.large_model)
        for label, run in large["runs"].items():
            print(f"  {args.large} images of {args.large_model} ({args.large_engine} engine), {label}: "
                  f"{run['seconds']:.1f} s ({args.large / run['seconds']:.0f} images/s), {run['verdict']}")
        if args.json:
            with open(args.json, "w") as handle:
                json.dump({"large": large}, handle, indent=2)
        return
    network, model, x, y = build(args.batch)
    times = measure(items(network, model, x, y, engines), args.repeats, args.pause)
    median = {name: statistics.median(values) for name, values in times.items()}
    fast_ann, fast_count, fast_timestep = (median["fast: float ANN (float_ann_fast)"],
                                           median["fast: integer ANN (count_engine)"],
                                           median["fast: integer SNN (timestep_engine)"])
    baseline = {"timestep": fast_ann + fast_count + fast_timestep, "count": fast_ann + 2 * fast_count}
    available = {engine: baseline[engine] + median[f"readable: float SNN ({engine})"] for engine in engines}
    print(f"VGG-16 (CIFAR, random weights, L=4), {args.batch} images, {args.repeats} rounds, medians:")
    for name, value in median.items():
        print(f"  {name:<40} {value:8.2f} s")
    summary = {}
    for engine in engines:
        before, after = median[f"verify {engine} before"], median[f"verify {engine} after"]
        summary[engine] = {"before_s": before, "after_s": after, "fast_engines_only_s": baseline[engine],
                           "fastest_per_path_s": available[engine], "speedup": before / after,
                           "after_over_fast_engines_only": after / baseline[engine],
                           "after_over_fastest_per_path": after / available[engine]}
        print(f"  --engine {engine}: before {before:.2f} s, after {after:.2f} s ({before / after:.2f}x faster); "
              f"fast engines only {baseline[engine]:.2f} s (verify {after / baseline[engine]:.2f}x), fastest "
              f"engine per path {available[engine]:.2f} s (verify {after / available[engine]:.2f}x)")
    payload = {"network": "vgg16 cifar10 L=4 random (seed 0)", "batch": args.batch, "repeats": args.repeats,
               "times": times, "medians": median, "summary": summary}
    if args.large:
        payload["large"] = large_run(args.large, args.workers, args.large_engine, 64, args.large_model)
        runs = payload["large"]["runs"]
        for label, run in runs.items():
            print(f"  {args.large} images ({args.large_engine} engine), {label}: {run['seconds']:.0f} s "
                  f"({args.large / run['seconds']:.1f} images/s), {run['verdict']}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(payload, handle, indent=2)


if __name__ == "__main__":
    main()
