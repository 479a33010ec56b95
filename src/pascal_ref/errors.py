"""The one base of every domain error, :class:`PascalError`, and :func:`printable` for names from files.

Every error a user can cause with a file, an option or an argument
(an invalid network, a model file, a quantization that does not fit, a
design the hardware cannot take, ...) derives from :class:`PascalError`,
itself a :class:`ValueError`. The command line prints these as one line and
exits 2; anything else is a bug and keeps its traceback.

Names read from a file (a network or layer name, an array key, a manifest
entry) are attacker-chosen text: a carriage return, a newline or an ANSI
escape sequence in one would rewrite what the terminal shows.
:func:`printable` is the one function that makes such text safe to print
(``docs/threat-model.md``).
"""
from __future__ import annotations

__all__ = ["PascalError", "ResourceLimitError", "printable"]


class PascalError(ValueError):
    """A domain error; its message names the file, layer and array concerned."""


class ResourceLimitError(PascalError):
    """An input that would need more memory or time than a stated bound; the
    message gives the figure it would need and the bound."""


def printable(text, *, newlines: bool = False) -> str:
    """``text`` with every character that is not printable written as an escape.

    Control characters (C0 and C1: ``\\r``, ``\\x1b``, ...), line and
    paragraph separators, bidirectional overrides and every other character
    that :meth:`str.isprintable` rejects become the escapes :func:`ascii`
    writes (``\\r``, ``\\x1b``, ``\\u202e``), so the result is one line
    (with ``newlines=True``, ``\\n`` is kept: for multi-line reports) and
    cannot move the cursor or change colours.  Printable non-ASCII letters
    (``é``, ``数``) are kept.

    >>> printable("act\\x1b[2J1\\r")
    'act\\\\x1b[2J1\\\\r'
    >>> printable("a\\nb"), printable("a\\nb", newlines=True)
    ('a\\\\nb', 'a\\nb')
    """
    text = str(text)
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() or (newlines and ch == "\n") else ascii(ch)[1:-1] for ch in text)
