"""``pascal-ref hdl`` and ``pascal-ref synth``: plugins of the golden model's CLI.

    pascal-ref hdl MODEL -o DIR [--lanes N] [--layer-lanes NAME=K,...|auto] [--in-flight D]
                   [--double-buffer [NAME,...]] [--weight-bits B] [--name TOP]
    pascal-ref hdl MODEL --estimate --target PART [the same options] [--data DATA [--limit N]] [--json OUT]
    pascal-ref synth DIR --target ice40-up5k|ecp5-25k|ecp5-85k [--freq MHz] [--json OUT]

``MODEL`` is a model ``.npz`` or a bundled model name (``digits-mlp``, ``digits-cnn``).
``--layer-lanes act1=4,act2=6,fc=5`` puts the digits CNN into the iCE40 UP5K
(:data:`pascal_hdl.model.chain.UP5K_DIGITS_CNN_LANES`). ``--layer-lanes auto`` balances the stages
(:func:`pascal_hdl.model.chain.balance_lanes`: lanes where they shorten the slowest stage, within the
default design's total of lanes). ``--in-flight 2 --double-buffer`` double-buffers every stage (or
``--double-buffer act1``: the named ones): each accumulates the next sample while it drains the last.
``--estimate --target PART`` prints the resource and cycle estimate of the same core on the part instead of
writing it (:mod:`pascal_hdl.flow.estimate`; ``docs/estimator.md``).
"""
from __future__ import annotations

import json
import math

__all__ = ["MAX_MODEL_BYTES", "MAX_ESTIMATE_MODEL_BYTES", "register_hdl", "register_synth"]

MAX_MODEL_BYTES = 256 * 2 ** 20
"""Largest model file ``hdl`` reads (a core's weights fit in FPGA block RAM: a few hundred kB)."""

MAX_ESTIMATE_MODEL_BYTES = 2 ** 30
"""Largest model file ``hdl --estimate`` reads: the reference networks (a random-weight CIFAR VGG-16 in
float64 is 269 MB), whose weights the estimate places off chip."""


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(f"expected an integer >= 1, got {text}")
    return value


def _layer_lanes(text: str):
    """``NAME=K[,NAME=K...]``: lanes per golden layer name; ``auto``: balanced (returned as the string)."""
    if text.strip() == "auto":
        return "auto"
    lanes = {}
    for item in text.split(","):
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"expected NAME=K[,NAME=K...], got {text!r}")
        lanes[name.strip()] = _positive(value.strip())
    return lanes


def _stage_names(text: str):
    """``--double-buffer`` or ``--mac`` alone: True (every stage); ``NAME[,NAME...]``: those stages."""
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise ValueError(f"expected NAME[,NAME...], got {text!r}")
    return tuple(names)


def add_throughput_options(parser) -> None:
    """``--in-flight``, ``--double-buffer``, ``--mac`` and ``--layer-lanes`` (shared by ``pascal-ref hdl`` and
    ``cosim``)."""
    parser.add_argument("--in-flight", type=_positive, default=1, metavar="D",
                        help="samples the core holds at once: 1 (default) takes a sample after the previous result "
                             "left; D > 1 lets each stage work on its own sample (throughput, more logic)")
    parser.add_argument("--double-buffer", type=_stage_names, nargs="?", const=True, default=None,
                        metavar="NAME,...",
                        help="double-buffered stages (two accumulator banks: a stage accumulates the next sample "
                             "while it drains the last); alone: every stage; needs --in-flight 2 or more")
    parser.add_argument("--mac", type=_stage_names, nargs="?", const=True, default=None, metavar="NAME,...",
                        help="stages that multiply: each input event is issued once (each kernel tap of a conv stage) "
                             "and adds count x weight (shifts and adders per lane, or DSP blocks with --multiplier dsp) "
                             "instead of once per spike; alone: every conv stage; name a Linear layer to include it")
    parser.add_argument("--multiplier", choices=("logic", "dsp"), default=None,
                        help="how the stages that multiply (--mac, an analog first layer) form count x weight: logic "
                             "(shifts and adders, any part, any number of lanes) or dsp (one DSP block per lane: iCE40 "
                             "SB_MAC16, ECP5 MULT18X18D; their lanes must not exceed the part's blocks); default: dsp "
                             "if 'pascal-ref hdl --target' has a block for each lane, else logic")
    parser.add_argument("--layer-lanes", type=_layer_lanes, default=None, metavar="NAME=K,...|auto",
                        help="lanes of named layers, overriding --lanes (e.g. act1=4,act2=6,fc=5: the digits CNN on the "
                             "iCE40 UP5K); auto: balanced stage periods within the default design's total of lanes")


def _bound(text: str) -> float:
    value = float(text)
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"expected a positive finite number, got {text!r}")
    return value


def add_input_options(parser, bound_default: str) -> None:
    """``--input-bits`` and ``--input-bound``: the quantization of an analog input (shared by ``pascal-ref hdl``
    and ``cosim``); ``bound_default`` says what happens without ``--input-bound``."""
    parser.add_argument("--input-bits", type=_positive, default=8,
                        help="analog input: signed width of the integer pixels (default 8; pascal_ref quantize)")
    parser.add_argument("--input-bound", type=_bound, default=None,
                        help=f"analog input: the largest |x| the integer pixels represent ({bound_default})")


def _read_model(args, limit: int = MAX_MODEL_BYTES):
    """``(network, model bytes)`` of ``args.model`` (a file or a bundled name, at most ``limit`` bytes), read once."""
    from pascal_ref.cli import CommandError
    from pascal_ref.errors import printable
    from pascal_ref.io.bundled import resolve_model_path
    from pascal_ref.io.fileformat import load
    from pascal_ref.io.npzio import open_regular_file

    path = resolve_model_path(args.model)
    # Opened without blocking and checked to be a regular file (a FIFO or /dev/zero is refused, not read);
    # load() reads the same bytes (from memory), so the digest in the manifest is the model generated from.
    handle, size = open_regular_file(path, CommandError, "model")
    with handle:
        if size > limit:
            raise CommandError(f"{printable(args.model)}: {size} bytes, more than the limit of {limit} for "
                               "a model the core can take" + (" (--estimate reads up to "
                               f"{MAX_ESTIMATE_MODEL_BYTES})" if limit < MAX_ESTIMATE_MODEL_BYTES else ""))
        model_bytes = handle.read(size + 1)
    if len(model_bytes) != size:
        raise CommandError(f"{printable(args.model)}: the file changed while it was read")
    return load(model_bytes, source=str(path)), model_bytes


def _check_target(args, known, what: str) -> None:
    from pascal_ref.cli import CommandError
    from pascal_ref.errors import printable
    if args.target is not None and args.target not in known:
        raise CommandError(f"unknown part {printable(args.target)!r} for --target ({what}); choose one of "
                           f"{', '.join(sorted(known))}")


def _hdl(args) -> int:
    from pascal_ref.cli import CommandError, require_extra
    require_extra("hdl", "this command")
    from pascal_hdl.config import HardwareError
    from pascal_ref.errors import printable
    from pascal_ref.golden.quantize import QuantizationError

    if args.estimate:
        return _estimate(args)
    from pascal_hdl.flow.generate import generate_from_network
    from pascal_hdl.flow.synth import TARGETS
    if args.output is None:
        raise CommandError("the following arguments are required: -o/--output (or --estimate --target PART)")
    for option in ("json", "data"):
        if getattr(args, option) is not None:
            raise CommandError(f"--{option} belongs to --estimate (the build folder has manifest.json)")
    _check_target(args, TARGETS, "the parts 'pascal-ref synth' builds for")
    network, model_bytes = _read_model(args)
    try:
        manifest = generate_from_network(network, args.output, lanes=args.lanes, weight_bits=args.weight_bits,
                                         per_channel=not args.per_layer_threshold, name=args.name,
                                         model_bytes=model_bytes, layer_lanes=args.layer_lanes,
                                         in_flight=args.in_flight, double_buffer=args.double_buffer,
                                         mac=args.mac, multiplier=args.multiplier, input_bits=args.input_bits,
                                         input_bound=args.input_bound, target=args.target)
    except (HardwareError, QuantizationError) as error:
        raise CommandError(f"the core cannot take model {printable(args.model)!r}: {error}") from None
    layers = ", ".join(f"{l['name']} {l['in_features']}->{l['out_features']} x{l['lanes']} lanes"
                       for l in manifest["layers"])
    print(f"wrote {args.output}/{manifest['verilog'][0]} ({manifest['top']}): {layers}; "
          f"{manifest['memory_bits']} weight bits")
    return 0


def _estimate(args) -> int:
    """``pascal-ref hdl MODEL --estimate --target PART``: the core ``hdl`` would write, estimated, not written."""
    import dataclasses

    from pascal_ref.cli import CommandError
    from pascal_ref.errors import printable
    from pascal_ref.golden.quantize import QuantizationError
    from pascal_ref.io.data import DataError, load_data
    from pascal_hdl.config import HardwareError
    from pascal_hdl.flow.estimate import PARTS, estimate, format_estimate
    from pascal_hdl.flow.generate import choose_multiplier, core_config_from_network
    from pascal_hdl.model.chain import with_mac

    if args.target is None:
        raise CommandError(f"--estimate needs --target PART (one of {', '.join(PARTS)})")
    _check_target(args, PARTS, "the parts the estimator knows")
    if args.output is not None:
        raise CommandError("--estimate writes no build folder; drop -o/--output (use --json OUT for the figures)")
    network, _ = _read_model(args, MAX_ESTIMATE_MODEL_BYTES)
    try:
        config, model = core_config_from_network(network, args.lanes, args.weight_bits, not args.per_layer_threshold,
                                                 args.name, args.layer_lanes, args.in_flight, args.double_buffer,
                                                 args.mac, args.multiplier or "logic", args.input_bits,
                                                 args.input_bound)
        if args.multiplier is None:     # as 'pascal-ref hdl --target' chooses: DSP blocks when the part has enough
            multiplier = choose_multiplier(config, args.target, PARTS[args.target].dsp)
            config = dataclasses.replace(config, layers=with_mac(config.layers, None, multiplier))
        levels, source = None, None
        if args.data is not None:
            data = load_data(args.data, limit=args.limit, network=network)
            levels, source = model.encode_input(data.x), f"{len(data.x)} samples of {printable(args.data)}"
        result = estimate(config, args.target, model=model, levels=levels, levels_source=source)
    except (HardwareError, QuantizationError, DataError) as error:
        raise CommandError(f"cannot estimate model {printable(args.model)!r}: {error}") from None
    print(format_estimate(result))
    if args.json:
        from pascal_ref.cli.common import write_json
        write_json(args.json, result)
    return 0


def register_hdl(subparsers):
    from pascal_hdl.flow.synth import TARGETS   # plain data (no Amaranth), as 'pascal-ref synth' reads it

    from pascal_hdl.flow.estimate import PARTS   # plain data too

    parser = subparsers.add_parser("hdl", help="generate the spiking core's Verilog, memory images and manifest "
                                               "(or, with --estimate, its resources and cycles on a part)")
    parser.add_argument("model", help="model .npz file or bundled model name (digits-mlp, digits-cnn, digits-resnet)")
    parser.add_argument("-o", "--output", default=None, metavar="DIR",
                        help="build folder to write (required unless --estimate)")
    parser.add_argument("--estimate", action="store_true",
                        help="print the core's LUT4, FF, block RAM, DSP, cycles, us/image and external weight "
                             "bandwidth on --target PART instead of writing it (no Verilog, no synthesis)")
    parser.add_argument("--lanes", type=_positive, default=None,
                        help="neurons updated in parallel per layer (default: 8 hidden, 16 readout, capped at the size)")
    add_throughput_options(parser)
    parser.add_argument("--weight-bits", type=_positive, default=8, help="integer weight width (default 8)")
    parser.add_argument("--per-layer-threshold", action="store_true",
                        help="one integer threshold per layer instead of per output channel")
    parser.add_argument("--name", default=None, help="top module name (default: from the model name)")
    parser.add_argument("--target", default=None, metavar="PART",
                        help="the part the core is for (" + ", ".join(sorted(TARGETS)) + "; with --estimate also "
                             + ", ".join(sorted(set(PARTS) - set(TARGETS))) + "): without --multiplier, the stages "
                             "that multiply use its DSP blocks when it has one per lane (else shifts and adders)")
    parser.add_argument("--data", default=None, metavar="DATA",
                        help="--estimate: samples for the typical cycles (digits or an .npz with x; default: the "
                             "digits test split if the model takes its shape, else random input)")
    parser.add_argument("--limit", type=_positive, default=16, help="--estimate: samples of --data (default 16)")
    parser.add_argument("--json", default=None, metavar="OUT", help="--estimate: also write the figures as JSON")
    add_input_options(parser, "required for a model with analog input")
    parser.set_defaults(handler=_hdl)


def _synth(args) -> int:
    from pascal_ref.cli import CommandError, require_extra
    require_extra("hdl", "this command")
    from pascal_hdl.flow.synth import SynthError, format_report, synthesize

    try:
        result = synthesize(args.dir, args.target, freq_mhz=args.freq, seed=args.seed)
    except SynthError as error:
        raise CommandError(str(error)) from None
    print(format_report(result))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2, sort_keys=True)
    return 0 if result["fits"] else 1


def register_synth(subparsers):
    from pascal_hdl.flow.synth import TARGETS

    parser = subparsers.add_parser("synth", help="synthesize a generated core (yowasp yosys + nextpnr)")
    parser.add_argument("dir", help="build folder written by 'pascal-ref hdl'")
    parser.add_argument("--target", required=True, choices=sorted(TARGETS))
    parser.add_argument("--freq", type=float, default=None, help="target clock in MHz (report only; Fmax is measured)")
    parser.add_argument("--seed", type=int, default=1, help="nextpnr placement seed")
    parser.add_argument("--json", metavar="OUT", help="also write the report as JSON")
    parser.set_defaults(handler=_synth)
