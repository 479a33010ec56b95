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

from pascal_ref.errors import PascalError, printable

__all__ = ["main", "build_parser", "CommandError", "MissingExtraError", "EXTRAS", "require_extra"]

EXTRAS = {
    "hdl": ("amaranth",),
    "board": ("amaranth", "amaranth_boards", "serial"),
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


def _tolerant_streams() -> None:
    """Names from files may hold any character: never fail to print one on a narrow terminal encoding."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            try:
                reconfigure(errors="backslashreplace")
            except (ValueError, OSError):  # pragma: no cover - a stream that cannot be reconfigured
                pass


def main(argv: list[str] | None = None) -> int:
    _tolerant_streams()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except (PascalError, OSError) as error:
        # Domain errors name the file/layer/array; a missing file or folder names the path.
        # Anything else is a bug and keeps its traceback.  The message may quote names
        # from a file: printable() keeps it one line without escape codes.
        print(f"pascal-ref {args.command}: error: {printable(error)}", file=sys.stderr)
        return 2
    except MemoryError:
        # Inputs are bounded before they are read (docs/threat-model.md); what is left is a
        # legitimate run larger than this machine.
        print(f"pascal-ref {args.command}: error: out of memory (try a smaller --batch-size or --limit)",
              file=sys.stderr)
        return 2
