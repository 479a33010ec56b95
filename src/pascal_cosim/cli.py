"""``pascal-ref cosim``: co-simulate a model's generated core against the integer golden model.

    pascal-ref cosim MODEL --data DATA --sim icarus|verilator [--limit N] [--lanes K] [--layer-lanes NAME=K,...]
                     [--idle P] [--ready P] [--seed S] [--json OUT]

``MODEL`` is a model ``.npz`` or a bundled model name (``digits-mlp``);
``DATA`` is ``digits`` (the test split) or an ``.npz`` with ``x`` (and ``y``).
The core is generated as ``pascal-ref hdl`` does (same quantization and
options) into a build folder under ``--build-dir``, simulated with every
sample, and compared in order with the integer golden model: per hidden
layer the counts, then the logits and the class. The cycles of each sample
are compared with the cycle model (``pascal_hdl.model.core.expected_cycles``,
computed while the simulator runs). Prints the mismatches per layer, the
cycles per sample and the simulation speed, and writes ``cosim_cycles.json``
into the build folder (``pascal-ref synth`` reports those cycles at Fmax);
``--json`` also writes every
sample's logits and class as the hardware produced them (the fields of
``pascal-ref run``'s ``integer_ann`` entries). ``--idle P`` leaves each input
cycle idle with probability P and ``--ready P`` makes the result sink ready in
each cycle with probability P (random, from ``--seed``): the stream contracts
(valid held with a stable payload until taken) and every sample's data and
order are checked as without them, but the cycles, which then depend on the
stalls, are not compared with the cycle model (it assumes an ideal source and
sink) and no ``cosim_cycles.json`` is written. Exit status 1 on any mismatch,
2 on a user error.
"""
from __future__ import annotations

import hashlib
import threading
from pathlib import Path

from pascal_hdl.cli import _positive, add_input_options, add_throughput_options   # the same option syntax as 'pascal-ref hdl'

__all__ = ["register_cosim"]


def _model_cycles(config, levels, out: dict) -> None:
    """The cycle model's results of the whole stream (pure Python: run on a thread beside the
    simulator): latency per sample and, from the ``finished`` cycles, the steady-state cycles per image."""
    import numpy as np

    from pascal_hdl.model.core import run_stream, stream_figures

    try:
        results = run_stream(config, levels)
        out["cycles"] = np.array([r["cycles"] for r in results], dtype=np.int64)
        out["stream"] = stream_figures(results) if len(results) > 1 else None
    except Exception as error:  # noqa: BLE001 - re-raised in the main thread, never lost
        out["error"] = error


def _probability(low_open: bool):
    """An argparse type: a probability in [0, 1) (``low_open`` False: idle) or in (0, 1] (True: ready)."""
    def parse(text: str) -> float:
        value = float(text)
        if not (0 < value <= 1 if low_open else 0 <= value < 1):
            raise ValueError(f"expected a probability in {'(0, 1]' if low_open else '[0, 1)'}, got {text}")
        return value
    parse.__name__ = "probability"
    return parse


def _seed(text: str) -> int:
    value = int(text)
    if not 0 <= value < 2 ** 31:
        raise ValueError(f"expected an integer in [0, 2**31), got {text}")
    return value


def _cosim(args) -> int:
    from pascal_ref.cli import CommandError, require_extra
    require_extra("hdl", "this command")
    import numpy as np

    from pascal_cosim.core import cosim_network, cycle_stats, write_cosim_cycles
    from pascal_cosim.runner import SimulationFailed, default_build_root, safe_name
    from pascal_hdl.config import HardwareError
    from pascal_hdl.flow.generate import core_config_from_network, generate_from_network
    from pascal_hdl.model.chain import stage_kind, stage_lanes
    from pascal_ref.cli.common import echo, write_json
    from pascal_ref.analysis.verify import default_input_bound
    from pascal_ref.golden.quantize import QuantizationError, integer_ann
    from pascal_ref.io.bundled import resolve_model_path
    from pascal_ref.io.data import load_data
    from pascal_ref.io.fileformat import load

    path = resolve_model_path(args.model)
    try:
        with open(path, "rb") as handle:
            model_bytes = handle.read()
    except OSError as error:
        raise CommandError(f"cannot read model {args.model!r}: {error.strerror}") from None
    network = load(path)
    data = load_data(args.data, limit=args.limit, network=network)
    per_channel = not args.per_layer_threshold
    # An analog input is quantized as 'pascal-ref run' does (the bound from the data unless given), so the
    # hardware's logits can be compared with its output.
    bound = args.input_bound if args.input_bound is not None else default_input_bound(network, data.x)
    multiplier = args.multiplier or "logic"       # no --target here: dsp only when asked
    try:
        config, model = core_config_from_network(network, lanes=args.lanes, weight_bits=args.weight_bits,
                                                 per_channel=per_channel, layer_lanes=args.layer_lanes,
                                                 in_flight=args.in_flight, double_buffer=args.double_buffer,
                                                 mac=args.mac, multiplier=multiplier,
                                                 input_bits=args.input_bits, input_bound=bound)
    except (HardwareError, QuantizationError) as error:
        raise CommandError(f"the core cannot take model {args.model!r}: {error}") from None
    levels = model.encode_input(data.x)
    levels = levels.reshape(len(levels), -1)   # flat, "chw": the core's input events

    root = default_build_root() if args.build_dir is None else Path(args.build_dir).resolve()
    lanes_option = args.layer_lanes if isinstance(args.layer_lanes, str) else sorted((args.layer_lanes or {}).items())
    options = (f"{args.lanes}\0{lanes_option}\0{args.weight_bits}\0{per_channel}\0"
               f"{args.in_flight}\0{args.double_buffer}\0{args.mac}\0{multiplier}\0{args.input_bits}\0{bound}\0").encode()
    key = hashlib.sha256(options + model_bytes).hexdigest()[:12]
    folder = root / "designs" / f"{safe_name(config.name, 40)}-{key}"
    generate_from_network(network, folder, lanes=args.lanes, weight_bits=args.weight_bits, per_channel=per_channel,
                          model_bytes=model_bytes, layer_lanes=args.layer_lanes, in_flight=args.in_flight,
                          double_buffer=args.double_buffer, mac=args.mac, multiplier=multiplier,
                          input_bits=args.input_bits, input_bound=bound)

    stalls = args.idle > 0 or args.ready < 1     # cycles then depend on the stalls: not the cycle model's
    cycles_out: dict = {}
    worker = threading.Thread(target=_model_cycles, args=(config, levels, cycles_out), daemon=True)
    if not stalls:
        worker.start()
    stall_name = f"-idle{args.idle:g}-ready{args.ready:g}-seed{args.seed}" if stalls else ""
    try:
        result = cosim_network(folder, config, model, levels, args.sim, root=root, idle=args.idle,
                               ready_probability=args.ready, seed=args.seed,
                               run_name=f"cli-{folder.name}-{args.sim}{stall_name}")
    except SimulationFailed as error:
        raise CommandError(str(error)) from None
    if not stalls:
        worker.join()
    if "error" in cycles_out:
        raise cycles_out["error"]

    count = len(levels)
    errors = list(result.errors)
    measured = result.cycles
    model_cycles = cycles_out["cycles"] if not stalls else None
    cycle_bad = (np.arange(0) if stalls else
                 np.flatnonzero(measured != model_cycles) if len(measured) == count else np.arange(count))
    if len(measured) != count:
        errors.append(f"{len(measured)} results for {count} samples")
    elif len(cycle_bad):
        first = int(cycle_bad[0])
        got = int(measured[first]) if first < len(measured) else None
        errors.append(f"cycles differ from the cycle model on {len(cycle_bad)} samples, first sample {first}: "
                      f"{got} != {int(model_cycles[first])}")
    golden_logits = np.asarray(integer_ann(model, x_int=levels.reshape((count,) + tuple(network.input_shape)))
                               .integer_logits)

    hardware_stream = result.stream if len(measured) == count and count > 1 else None
    model_stream = cycles_out.get("stream")
    if not stalls and hardware_stream is not None and hardware_stream != model_stream:
        errors.append(f"throughput differs from the cycle model: {hardware_stream} != {model_stream}")
    ok = not errors
    matches = ("every sample matches the integer golden model, in order" if stalls else
               "every sample matches the integer golden model and the cycle model")
    echo(f"cosim {args.model} on {data.name} ({count} samples), {args.sim}: {matches if ok else 'MISMATCHES'}")
    if stalls:
        echo(f"  stalls: {args.idle:.0%} idle input cycles, result sink ready {args.ready:.0%} of cycles (seed "
             f"{args.seed}); cycles not compared with the cycle model, which assumes an ideal source and sink")
    if config.is_analog:
        echo(f"  input: analog, signed {args.input_bits}-bit pixels {config.input_min}..{config.input_levels} over "
             f"[-{bound:g}, {bound:g}], one event per nonzero pixel")
    for layer in config.layers:
        kind = {"dense": "hidden"}.get(stage_kind(layer), stage_kind(layer))
        bad = result.mismatches_per_layer.get(layer.name, count)
        echo(f"  layer {layer.name} ({kind}, {layer.out_features} neurons, {stage_lanes(layer)} lanes): "
              f"{bad} of {count} samples differ")
    ideal = config.ideal_cycles(levels)
    if len(measured) == count and not len(cycle_bad) and not stalls:
        worst = config.worst_case_cycles()
        write_cosim_cycles(folder, cycle_stats(config, levels, measured, worst), args.sim, "pascal-ref cosim")
    if len(measured):
        against = ("with stalls" if stalls else f"cycle model equal on {count - len(cycle_bad)} of {count}")
        print(f"  cycles per sample: mean {measured.mean():.1f} (min {measured.min()}, max {measured.max()}); "
              f"{against}; ideal (weight additions / lanes) "
              f"{ideal.mean():.1f}, ratio {measured.sum() / max(1.0, ideal.sum()):.3f}")
    if hardware_stream is not None and not stalls:
        echo(f"  throughput ({config.in_flight} sample(s) in flight, back to back): "
             f"{hardware_stream['cycles_per_image']:.1f} cycles per image in steady state (model "
             f"{model_stream['cycles_per_image']:.1f}), latency mean {hardware_stream['latency_mean']:.1f} "
             f"(model {model_stream['latency_mean']:.1f})")
    elif hardware_stream is not None:
        echo(f"  with stalls ({config.in_flight} sample(s) in flight): {result.simulated_cycles:,} cycles in all, "
             f"{hardware_stream['cycles_per_image']:.1f} cycles per image, latency mean "
             f"{hardware_stream['latency_mean']:.1f}")
    print(f"  speed: {result.simulated_cycles:,} cycles in {result.sim_wall_s:.2f} s = {result.cycles_per_s:,.0f} "
          f"cycles/s (build {result.build_s:.1f} s, run {result.run_s:.1f} s, build folder {folder})")
    for message in errors[:10]:
        echo(f"  {message}")
    if len(errors) > 10:
        print(f"  ... {len(errors) - 10} more")

    if args.json:
        samples = []
        for index in range(count):
            entry = {"index": index}
            if data.y is not None:
                entry["label"] = int(data.y[index])
            if index < len(result.logits):
                entry["hardware"] = {"integer_logits": result.logits[index].tolist(),
                                     "prediction": int(result.classes[index]), "cycles": int(measured[index])}
            entry["golden"] = {"integer_logits": golden_logits[index].tolist(),
                               "prediction": int(np.argmax(golden_logits[index])),
                               "cycles": None if stalls else int(model_cycles[index])}
            samples.append(entry)
        payload = {
            "model": args.model, "data": data.name, "simulator": args.sim, "samples_count": count, "ok": ok,
            "mismatches_per_layer": result.mismatches_per_layer, "errors": errors,
            "cycles": {"mean": float(measured.mean()) if len(measured) else None,
                       "min": int(measured.min()) if len(measured) else None,
                       "max": int(measured.max()) if len(measured) else None,
                       "model_equal": None if stalls else int(count - len(cycle_bad)),
                       "ideal_mean": float(ideal.mean())},
            "stalls": {"idle": args.idle, "ready": args.ready, "seed": args.seed} if stalls else None,
            "in_flight": config.in_flight,
            "input": ({"encoding": "analog", "input_bits": args.input_bits, "input_bound": bound,
                       "range": [config.input_min, config.input_levels]} if config.is_analog else
                      {"encoding": "count-coded", "levels": config.input_levels}),
            "throughput": {"hardware": hardware_stream, "model": None if stalls else model_stream},
            "speed": {"simulated_cycles": result.simulated_cycles, "sim_wall_s": result.sim_wall_s,
                      "cycles_per_s": result.cycles_per_s, "build_s": result.build_s, "run_s": result.run_s},
            "lanes": [stage_lanes(layer) for layer in config.layers], "build_folder": str(folder),
            "samples": samples,
        }
        write_json(args.json, payload)
        if args.json != "-":
            echo(f"wrote {args.json}")
    return 0 if ok else 1


def register_cosim(subparsers):
    parser = subparsers.add_parser("cosim", help="co-simulate the generated core against the integer golden model")
    parser.add_argument("model", help="model .npz file or bundled model name (digits-mlp)")
    parser.add_argument("--data", required=True, help="'digits' (test split) or an .npz with arrays x (and y)")
    parser.add_argument("--sim", required=True, choices=("icarus", "verilator"), help="simulator")
    parser.add_argument("--limit", type=_positive, default=None, help="use only the first N samples")
    parser.add_argument("--lanes", type=_positive, default=None,
                        help="neurons updated in parallel per layer (default: 8 hidden, 16 readout, capped at the size)")
    add_throughput_options(parser)   # --in-flight, --double-buffer, --layer-lanes (as for 'pascal-ref hdl')
    parser.add_argument("--weight-bits", type=_positive, default=8, help="integer weight width (default 8)")
    parser.add_argument("--per-layer-threshold", action="store_true",
                        help="one integer threshold per layer instead of per output channel")
    add_input_options(parser, "default: the largest |x| of the data, as 'pascal-ref run' takes it")
    parser.add_argument("--build-dir", default=None, metavar="DIR",
                        help="build and run folders (default: $COSIM_BUILD_DIR or ~/.cache/pascal-cosim)")
    parser.add_argument("--idle", type=_probability(False), default=0.0, metavar="P",
                        help="leave each input cycle idle with probability P (default 0)")
    parser.add_argument("--ready", type=_probability(True), default=1.0, metavar="P",
                        help="result sink ready in each cycle with probability P (default 1: no back-pressure)")
    parser.add_argument("--seed", type=_seed, default=1, help="seed of the idle and ready draws (default 1)")
    parser.add_argument("--json", metavar="OUT", help="also write the report and every sample's logits as JSON")
    parser.set_defaults(handler=_cosim)
