"""Core subcommands: ``demo``, ``verify``, ``run``, ``info``.

``verify`` and ``run`` run the integer paths on the fast engines
(:mod:`pascal_ref.fast`) and re-run the readable engines on the first
``--reference-samples`` samples (:mod:`pascal_ref.analysis.verify`); a
progress bar goes to stderr when it is a terminal.
"""
from __future__ import annotations

import re
import sys

import numpy as np

from pascal_ref.analysis.verify import (
    PATHS,
    REFERENCE_SAMPLES,
    check_run_size,
    default_input_bound,
    evaluate,
    format_report,
    verify,
)
from pascal_ref.cli import CommandError
from pascal_ref.cli.common import add_model_argument, check_count, echo, load_model, write_json
from pascal_ref.golden.quantize import quantize
from pascal_ref.io.bundled import BUNDLED
from pascal_ref.io.data import load_data

__all__ = ["register_demo", "register_verify", "register_run", "register_info", "check_scheduler_address",
           "DEFAULT_WAIT_SECONDS"]

DEFAULT_WAIT_SECONDS = 60.0
"""How long ``--scheduler ... --workers N`` waits for the cluster to have N workers (``--wait``)."""

_ADDRESS = re.compile(r"^(tcp|tls)://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]{0,252}[A-Za-z0-9])?)(:[0-9]{1,5})?$")


def check_scheduler_address(address: str) -> str:
    """A ``tcp://`` or ``tls://`` address of host (name, IPv4 or [IPv6]) and optional port; nothing else."""
    match = _ADDRESS.match(address)
    port = match and match.group(4)
    if not match or (port and not 1 <= int(port[1:]) <= 65535):
        raise CommandError(f"--scheduler {address!r}: expected tcp://HOST:PORT or tls://HOST:PORT "
                           "(see docs/distributed.md)")
    return address


def _add_model_options(parser, data_required=True):
    add_model_argument(parser)
    parser.add_argument("--data", required=data_required, default="digits",
                        help="'digits' (the bundled digits test split) or an .npz with arrays x (and y)")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N samples")
    parser.add_argument("--weight-bits", type=int, default=8, help="integer weight width (default 8)")
    parser.add_argument("--per-layer-threshold", action="store_true",
                        help="one integer threshold per layer instead of per output channel")
    parser.add_argument("--engine", choices=("timestep", "count"), default="timestep",
                        help="integer SNN engine (with timestep, the count engine is checked against it)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--reference-samples", type=int, default=REFERENCE_SAMPLES,
                        help=f"samples on which the readable engines re-run the integer paths and must equal the "
                             f"fast engines (default {REFERENCE_SAMPLES}; 0 skips)")
    parser.add_argument("--workers", type=int, default=None,
                        help="shard the data over a local dask.distributed cluster of N worker processes")
    parser.add_argument("--scheduler", metavar="ADDRESS", default=None,
                        help="use an existing dask.distributed cluster (tcp://host:8786); only one you trust: "
                             "see docs/distributed.md and docs/threat-model.md")
    parser.add_argument("--wait", type=float, default=DEFAULT_WAIT_SECONDS, metavar="SECONDS",
                        help=f"with --scheduler and --workers N: seconds to wait for N workers (default "
                             f"{DEFAULT_WAIT_SECONDS:g})")


def _check_options(args) -> None:
    check_count(args.limit, "--limit")
    check_count(args.batch_size, "--batch-size")
    check_count(args.reference_samples, "--reference-samples", 0)
    check_count(args.workers, "--workers")
    check_count(args.weight_bits, "--weight-bits", 2, 24)
    if not (args.wait > 0 and np.isfinite(args.wait)):
        raise CommandError(f"--wait must be a positive number of seconds, got {args.wait}")
    if args.scheduler is not None:
        check_scheduler_address(args.scheduler)


def _evaluate(args, network, data, model):
    """One process, or sharded over a dask cluster: the same batches, the same results."""
    progress = sys.stderr.isatty()
    if args.workers is None and args.scheduler is None:
        return evaluate(network, data.x, model, args.engine, args.batch_size, progress=progress,
                        reference_samples=args.reference_samples)
    from pascal_ref.parallel import DistributedError, evaluate_sharded
    try:
        return evaluate_sharded(network, data.x, model, args.engine, args.batch_size, workers=args.workers,
                                scheduler=args.scheduler, progress=progress,
                                reference_samples=args.reference_samples, timeout=args.wait)
    except DistributedError as error:
        raise CommandError(str(error)) from None


def _prepare(args):
    _check_options(args)
    network = load_model(args.model)
    data = load_data(args.data, limit=args.limit, network=network)
    check_run_size(network, min(args.batch_size, len(data.x)), args.engine)
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
        echo(format_report(report))
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
    payload = {"model": network.name, "data": data.name, "engine": args.engine, "paths": list(PATHS),
               "reference": ev.reference, "samples": samples}
    write_json(args.json, payload)
    reference_ok = ev.reference.get("mismatched_neurons", 0) == 0 and ev.reference.get("logits_identical", True)
    if args.json != "-":
        summary = ", ".join(f"{path} {100 * np.mean(ev.predictions(path) == data.y):.2f}%" for path in PATHS) if data.y is not None else ""
        echo(f"wrote {len(samples)} samples x {len(PATHS)} paths to {args.json}" + (f"; accuracy: {summary}" if summary else ""))
    if not reference_ok:
        echo(f"pascal-ref run: the fast engines differ from the readable reference on "
             f"{ev.reference['samples']} samples ({ev.reference['mismatched_neurons']} neurons)", file=sys.stderr)
        return 1
    return 0


def register_run(subparsers):
    parser = subparsers.add_parser("run", help="per-sample logits and predictions of every path, as JSON")
    _add_model_options(parser)
    parser.add_argument("--json", metavar="OUT", required=True, help="output JSON file ('-' for stdout)")
    parser.set_defaults(handler=_run)


def _demo(args):
    check_count(args.limit, "--limit")
    names = args.models or list(BUNDLED)
    status = 0
    for name in names:
        network = load_model(name)
        data = load_data("digits", limit=args.limit, network=network)
        model = quantize(network, input_bound=default_input_bound(network, data.x))
        echo(network.summary())
        echo(model.summary())
        report = verify(network, data.x, data.y, model, "timestep", progress=True)
        echo(format_report(report))
        echo()
        status |= 0 if report["ok"] else 1
    return status


def register_demo(subparsers):
    parser = subparsers.add_parser("demo", help="the main job: every path of the bundled digits models on the digits test split")
    parser.add_argument("models", nargs="*", help=f"models to run (default: {', '.join(BUNDLED)}; a bundled name "
                                                  "is always the bundled model, a file needs a path such as ./m.npz)")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N test images")
    parser.set_defaults(handler=_demo)


def _info(args):
    check_count(args.weight_bits, "--weight-bits", 2, 24)
    if args.input_bound is not None and not (args.input_bound > 0 and np.isfinite(args.input_bound)):
        raise CommandError(f"--input-bound must be a positive finite number, got {args.input_bound}")
    network = load_model(args.model)
    echo(network.summary())
    if network.input_levels is not None or args.input_bound:
        echo(quantize(network, weight_bits=args.weight_bits, input_bound=args.input_bound).summary())


def register_info(subparsers):
    parser = subparsers.add_parser("info", help="describe a model file and its integer model")
    add_model_argument(parser)
    parser.add_argument("--weight-bits", type=int, default=8)
    parser.add_argument("--input-bound", type=float, default=None, help="analog input range for the integer model")
    parser.set_defaults(handler=_info)
