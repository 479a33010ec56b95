"""``pascal-ref`` command line.

Subcommands are plugins: each is a function ``register(subparsers)`` listed
under the entry-point group ``pascal_ref.commands`` in ``pyproject.toml``.
That keeps imports pointing one way: the hardware package adds its own
commands (``hdl``, ``synth``) without the golden model importing it.
"""
from __future__ import annotations

import argparse
import sys
from importlib.metadata import entry_points

__all__ = ["main", "build_parser", "CommandError"]


class CommandError(ValueError):
    """A user-facing error: printed as one line, exit status 2.

    A ValueError so that it is caught even when ``python -m pascal_ref.cli``
    loads a second copy of this module."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pascal-ref", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for entry in sorted(entry_points(group="pascal_ref.commands"), key=lambda e: e.name):
        entry.load()(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except (ValueError, TypeError, OSError, KeyError) as error:
        # Library errors are written to name the layer/array/file; show them plainly.
        print(f"pascal-ref {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
