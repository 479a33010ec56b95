"""``pascal-ref`` command line.

Subcommands are plugins: each is a function ``register(subparsers)`` listed
under the entry-point group ``pascal_ref.commands`` in ``pyproject.toml``.
That keeps imports pointing one way: the hardware package adds its own
commands (``hdl``, ``synth``) without the golden model importing it, and a
command's optional dependencies are imported only when it runs, so a core-only
install (``pip install .``) has a working ``--help`` and golden-model commands.
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
from importlib.metadata import entry_points

from pascal_ref.errors import PascalError

__all__ = ["main", "build_parser", "CommandError", "MissingExtraError", "EXTRAS", "require_extra"]

EXTRAS = {
    "hdl": ("amaranth",),
    "torch": ("torch",),
    "plot": ("matplotlib",),
    "dist": ("distributed",),
}
"""Optional extras of ``pyproject.toml`` and the modules that show each one is installed."""


class CommandError(PascalError):
    """A user-facing error: printed as one line, exit status 2."""


class MissingExtraError(CommandError):
    """A command or option needs an optional extra that is not installed."""


def require_extra(extra: str, what: str) -> None:
    """Raise :class:`MissingExtraError` naming the extra unless its modules are importable."""
    missing = [module for module in EXTRAS[extra] if importlib.util.find_spec(module) is None]
    if missing:
        raise MissingExtraError(f"{what} needs the '{extra}' extra ({', '.join(missing)} is not installed): "
                                f"pip install 'pascal-ref[{extra}]'")


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
    except (PascalError, OSError) as error:
        # Domain errors name the file/layer/array; a missing file or folder names the path.
        # Anything else is a bug and keeps its traceback.
        print(f"pascal-ref {args.command}: error: {error}", file=sys.stderr)
        return 2
