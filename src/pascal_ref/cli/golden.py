"""Core subcommands: ``demo``, ``verify``, ``run``, ``info``."""
from __future__ import annotations

import sys

import numpy as np

from pascal_ref.analysis.verify import PATHS, default_input_bound, evaluate, format_report, verify
from pascal_ref.cli import CommandError
from pascal_ref.cli.common import add_model_argument, load_model, write_json
from pascal_ref.golden.quantize import quantize
from pascal_ref.io.bundled import BUNDLED
from pascal_ref.io.data import load_data

__all__ = ["register_demo", "register_verify", "register_run", "register_info"]


def _add_model_options(parser, data_required=True):
    add_model_argument(parser)
    parser.add_argument("--data", required=data_required, default="digits",
                        help="'digits' (the bundled digits test split) or an .npz with arrays x (and y)")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N samples")
    parser.add_argument("--weight-bits", type=int, default=8, help="integer weight width (default 8)")
    parser.add_argument("--per-layer-threshold", action="store_true",
                        help="one integer threshold per layer instead of per output channel")
    parser.add_argument("--engine", choices=("timestep", "count"), default="timestep",
                        help="SNN engine (the other integer engine is checked against it)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=None,
                        help="shard the data over a local dask.distributed cluster of N worker processes")
    parser.add_argument("--scheduler", metavar="ADDRESS", default=None,
                        help="use an existing dask.distributed cluster (e.g. tcp://host:8786); see docs/distributed.md")


def _evaluate(args, network, data, model):
    """One process, or sharded over a dask cluster: the same batches, the same results."""
    progress = sys.stderr.isatty()
    if args.workers is None and args.scheduler is None:
        return evaluate(network, data.x, model, args.engine, args.batch_size, progress=progress)
    if args.workers is not None and args.workers < 1:
        raise CommandError(f"--workers must be >= 1, got {args.workers}")
    from pascal_ref.parallel import DistributedError, evaluate_sharded
    try:
        return evaluate_sharded(network, data.x, model, args.engine, args.batch_size, workers=args.workers,
                                scheduler=args.scheduler, progress=progress)
    except DistributedError as error:
        raise CommandError(str(error)) from None


def _prepare(args):
    network = load_model(args.model)
    data = load_data(args.data, network.input_shape, limit=args.limit)
    model = quantize(network, weight_bits=args.weight_bits, per_channel=not args.per_layer_threshold,
                     input_bound=default_input_bound(network, data.x))
    return network, data, model


def _verify(args):
    network, data, model = _prepare(args)
    report = verify(network, data.x, data.y, model, args.engine, args.batch_size,
                    evaluation=_evaluate(args, network, data, model))
    report["data"] = data.name
    if args.json:
        write_json(args.json, report)
    if args.json != "-":
        print(format_report(report))
    return 0 if report["ok"] else 1


def register_verify(subparsers):
    parser = subparsers.add_parser("verify", help="check SNN == ANN per layer (integer exact, float reported)")
    _add_model_options(parser)
    parser.add_argument("--json", metavar="OUT", help="write the report as JSON to OUT ('-' for stdout)")
    parser.set_defaults(handler=_verify)


def _run(args):
    network, data, model = _prepare(args)
    ev = _evaluate(args, network, data, model)
    samples = []
    for index in range(len(data.x)):
        entry = {"index": index}
        if data.y is not None:
            entry["label"] = int(data.y[index])
        for path in PATHS:
            entry[path] = {"logits": ev.logits[path][index].tolist(), "prediction": int(ev.predictions(path)[index])}
            if path in ev.integer_logits:
                entry[path]["integer_logits"] = ev.integer_logits[path][index].tolist()
        samples.append(entry)
    payload = {"model": network.name, "data": data.name, "engine": args.engine, "paths": list(PATHS), "samples": samples}
    write_json(args.json, payload)
    if args.json != "-":
        summary = ", ".join(f"{path} {100 * np.mean(ev.predictions(path) == data.y):.2f}%" for path in PATHS) if data.y is not None else ""
        print(f"wrote {len(samples)} samples x {len(PATHS)} paths to {args.json}" + (f"; accuracy: {summary}" if summary else ""))
    return 0


def register_run(subparsers):
    parser = subparsers.add_parser("run", help="per-sample logits and predictions of every path, as JSON")
    _add_model_options(parser)
    parser.add_argument("--json", metavar="OUT", required=True, help="output JSON file ('-' for stdout)")
    parser.set_defaults(handler=_run)


def _demo(args):
    names = args.models or list(BUNDLED)
    status = 0
    for name in names:
        network = load_model(name)
        data = load_data("digits", network.input_shape, limit=args.limit)
        model = quantize(network, input_bound=default_input_bound(network, data.x))
        print(network.summary())
        print(model.summary())
        report = verify(network, data.x, data.y, model, "timestep", progress=True)
        print(format_report(report))
        print()
        status |= 0 if report["ok"] else 1
    return status


def register_demo(subparsers):
    parser = subparsers.add_parser("demo", help="the main job: every path of the bundled digits models on the digits test split")
    parser.add_argument("models", nargs="*", help=f"models to run (default: {', '.join(BUNDLED)})")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N test images")
    parser.set_defaults(handler=_demo)


def _info(args):
    network = load_model(args.model)
    print(network.summary())
    if network.input_levels is not None or args.input_bound:
        print(quantize(network, weight_bits=args.weight_bits, input_bound=args.input_bound).summary())


def register_info(subparsers):
    parser = subparsers.add_parser("info", help="describe a model file and its integer model")
    add_model_argument(parser)
    parser.add_argument("--weight-bits", type=int, default=8)
    parser.add_argument("--input-bound", type=float, default=None, help="analog input range for the integer model")
    parser.set_defaults(handler=_info)
