"""``pascal-ref convert``: a PASCAL/QCFS state dict (.npz or .pth) -> our model ``.npz``.

Torch-free: ``.npz`` state dicts are read with ``allow_pickle=False`` and
``.pth``/``.pt`` files with the restricted unpickler of
:mod:`pascal_ref.io.torch_pickle`.
"""
from __future__ import annotations

from pascal_ref.cli import CommandError
from pascal_ref.cli.common import check_count, echo
from pascal_ref.convert.architectures import ARCHITECTURES, NUM_CLASSES, activation_names, build
from pascal_ref.convert.levels import levels_per_activation
from pascal_ref.convert.state_dict import load_state_dict

__all__ = ["register_convert", "parse_shape", "MAX_INPUT_ELEMENTS", "MAX_INPUT_LEVELS"]

MAX_INPUT_ELEMENTS = 1 << 26
"""Most input elements per sample ``--input-shape`` may ask for (ImageNet's 3x224x224 is 150528)."""

MAX_INPUT_LEVELS = 1 << 16
"""Largest ``--input-levels`` (the count-coded input is a burst of that many steps)."""


def parse_shape(text: str | None):
    if text is None:
        return None
    try:
        shape = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise CommandError(f"--input-shape: expected C,H,W, got {text!r}") from None
    if len(shape) != 3 or min(shape) < 1:
        raise CommandError(f"--input-shape: expected C,H,W of sizes >= 1, got {text!r}")
    if shape[0] * shape[1] * shape[2] > MAX_INPUT_ELEMENTS:
        raise CommandError(f"--input-shape {text}: {shape[0] * shape[1] * shape[2]} elements per sample, more than "
                           f"the limit of {MAX_INPUT_ELEMENTS}")
    return shape


def _convert(args):
    from pascal_ref.io.fileformat import save

    check_count(args.input_levels, "--input-levels", 1, MAX_INPUT_LEVELS)
    levels = levels_per_activation(args.levels, activation_names(args.arch, args.classes), args.arch, "--levels")
    state = load_state_dict(args.state_dict, key=args.key)
    network = build(args.arch, args.classes, levels, state, input_levels=args.input_levels,
                    input_shape=parse_shape(args.input_shape), name=args.name, source=args.state_dict)
    save(network, args.output)
    if not args.quiet:
        echo(network.summary())
    echo(f"wrote {args.output}: {args.arch}, {args.classes} classes, {len(network.levels)} activations, "
          f"L = {','.join(map(str, network.levels))}")
    return 0


def register_convert(subparsers):
    parser = subparsers.add_parser(
        "convert", help="convert a PASCAL/QCFS state dict (.npz or .pth, no torch needed) to a model .npz",
        description="Build a VGG-16 / ResNet-18 / ResNet-34 (BrainSeek-Lab/PASCAL layout and key names, CIFAR "
                    "stems) from a plain state dict and save it as a model .npz.")
    parser.add_argument("state_dict", metavar="STATE_DICT", help="state dict: .npz (np.savez of state_dict()) or torch .pth/.pt")
    parser.add_argument("--arch", required=True, choices=ARCHITECTURES)
    parser.add_argument("--classes", required=True, type=int, choices=NUM_CLASSES)
    parser.add_argument("--levels", required=True,
                        help="L per activation, comma-separated in network order (vgg16: 15, resnet18: 17, "
                             "resnet34: 33), or one value for all")
    parser.add_argument("-o", "--output", required=True, metavar="MODEL.npz")
    parser.add_argument("--input-levels", type=int, default=None,
                        help="count-coded input with this many levels (default: analog input, as the reference)")
    parser.add_argument("--input-shape", default=None, help="C,H,W (default 3,32,32; 3,224,224 for 1000 classes)")
    parser.add_argument("--key", default=None, help="entry of a checkpoint dict holding the state dict (e.g. state_dict)")
    parser.add_argument("--name", default=None, help="network name (default ARCH-CLASSES)")
    parser.add_argument("-q", "--quiet", action="store_true", help="do not print the layer summary")
    parser.set_defaults(handler=_convert)
