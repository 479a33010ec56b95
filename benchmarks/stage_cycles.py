"""Per stage: cycles per image when the stage runs alone on back-to-back samples, and the bound it sets.

    python benchmarks/stage_cycles.py MODEL [--images N] [--layer-lanes NAME=K,...|auto] [--double-buffer [NAME,...]] [--mac [NAME,...]]
                                            [--in-flight D] [--stream] [--time [--repeats R]]

``MODEL`` is a model ``.npz`` or a bundled name (digits-mlp, digits-cnn, digits-resnet); the images are the
first N of the digits test split (or random levels for another input shape,
:func:`pascal_hdl.model.chain.calibration_levels`). Each stage's cycle model runs alone
(:func:`pascal_hdl.model.chain.stage_cycles`) on its own inputs (the integer outputs of the stages before
it); the slowest stage bounds the steady-state cycles per image of a core with samples in flight.

With ``--stream`` the whole core's cycle model (:func:`pascal_hdl.model.core.run_stream`) also runs the
images as one back-to-back stream with ``D`` samples in flight (default 2 with ``--double-buffer``, else 1)
and with one (the same lanes and ``--mac``, single-buffered), and prints the steady-state cycles per image,
the mean latency and their ratios: the overlap the stages reach when they are coupled.

With ``--time`` it times the whole core's cycle model on the stream (``run_stream``, the model
``pascal-ref cosim`` runs beside the simulator): milliseconds per image and model cycles per second,
the median of ``R`` runs (default 3), with the conv and pooling tap tables cached (as shipped) and
rebuilt at every lookup (the code before the cache), in the same process, and the ratio.
"""
from __future__ import annotations

import argparse
import statistics
import time
from contextlib import contextmanager

from pascal_hdl.cli import _layer_lanes, _stage_names
from pascal_hdl.flow.generate import core_config_from_network
from pascal_hdl.model.chain import calibration_levels, chain_forward, stage_cycles, stage_kind, stage_lanes
from pascal_hdl.model.core import run_stream, stream_figures
from pascal_ref.io.bundled import resolve_model_path
from pascal_ref.io.fileformat import load


@contextmanager
def uncached_taps():
    """The tap tables rebuilt at every lookup, as before ``axis_taps`` was cached."""
    import pascal_hdl.model.conv as conv
    import pascal_hdl.model.pool as pool

    cached = conv.axis_taps
    conv.axis_taps = pool.axis_taps = cached.__wrapped__
    try:
        yield
    finally:
        conv.axis_taps = pool.axis_taps = cached


def time_stream(config, levels, repeats: int) -> tuple[float, int]:
    """Median seconds of ``run_stream(config, levels)`` over ``repeats`` runs, and the stream's last cycle."""
    seconds, last = [], 0
    for _ in range(repeats):
        start = time.perf_counter()
        results = run_stream(config, levels)
        seconds.append(time.perf_counter() - start)
        last = int(results[-1]["finished"])
    return statistics.median(seconds), last


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--layer-lanes", type=_layer_lanes, default=None)
    parser.add_argument("--double-buffer", type=_stage_names, nargs="?", const=True, default=None)
    parser.add_argument("--mac", type=_stage_names, nargs="?", const=True, default=None)
    parser.add_argument("--in-flight", type=int, default=None, metavar="D")
    parser.add_argument("--stream", action="store_true", help="also run the whole core with D and with 1 in flight")
    parser.add_argument("--time", action="store_true", help="time the whole core's cycle model, tap tables cached or not")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of --time (median)")
    args = parser.parse_args(argv)
    network = load(resolve_model_path(args.model))
    in_flight = args.in_flight if args.in_flight is not None else (2 if args.double_buffer else 1)
    config, model = core_config_from_network(network, layer_lanes=args.layer_lanes, in_flight=in_flight,
                                             double_buffer=args.double_buffer, mac=args.mac)
    levels = calibration_levels(model, args.images)
    inputs = [levels] + chain_forward(config.layers, levels)[:-1]
    rows = [(stage, stage_cycles(stage, counts)) for stage, counts in zip(config.layers, inputs)]
    bound = max(cycles["per_image"] for _, cycles in rows)
    print(f"{config.name}: {len(levels)} images, stages alone (cycle models, back-to-back samples)")
    for stage, cycles in rows:
        mark = "  <- bound" if cycles["per_image"] == bound else ""
        print(f"  {stage.name:32s} {stage_kind(stage):8s} lanes {str(stage_lanes(stage)):8s} banks "
              f"{getattr(stage, 'banks', 1)}  {cycles['per_image']:10.1f} cycles/image{mark}")
    print(f"  steady state >= {bound:.1f} cycles per image (the slowest stage)")
    if args.stream:
        one_config, _ = core_config_from_network(network, layer_lanes=args.layer_lanes, mac=args.mac)
        one = stream_figures(run_stream(one_config, levels))
        many = stream_figures(run_stream(config, levels))
        print(f"  whole core, {len(levels)} images back to back (run_stream): {in_flight} in flight "
              f"{many['cycles_per_image']:.1f} cycles/image, latency mean {many['latency_mean']:.1f}; 1 in flight "
              f"{one['cycles_per_image']:.1f}, latency {one['latency_mean']:.1f}; ratio "
              f"{one['cycles_per_image'] / many['cycles_per_image']:.3f}, latency "
              f"{many['latency_mean'] / one['latency_mean'] - 1:+.1%}")
    if args.time:
        cached, cycles = time_stream(config, levels, args.repeats)
        with uncached_taps():
            rebuilt, cycles_rebuilt = time_stream(config, levels, args.repeats)
        assert cycles == cycles_rebuilt, "the cache changed the model's cycles"
        n = len(levels)
        print(f"  cycle model (run_stream, {n} images, {cycles:,} cycles, median of {args.repeats}): tap tables cached "
              f"{cached / n * 1e3:.1f} ms/image ({cycles / cached:,.0f} cycles/s), rebuilt at every lookup "
              f"{rebuilt / n * 1e3:.1f} ms/image; ratio {rebuilt / cached:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
