"""Files written whole or not at all.

:func:`replace_file` writes beside the destination and renames onto it, so
a reader never sees a half-written file: not after a failed write, and not
while another process writes the same file (two ``pascal-ref cosim`` runs of
one design generate the same build folder at once).
"""
from __future__ import annotations

import contextlib
import os
import threading

__all__ = ["replace_file"]


def replace_file(path, data: str | bytes) -> None:
    """Write ``data`` (text as UTF-8) to ``path`` through a temporary file beside it and ``os.replace``:
    the file at ``path`` is always the old one or the whole new one. A symbolic link at ``path`` is
    replaced, never written through."""
    target = os.fspath(path)
    temporary = f"{target}.{os.getpid()}.{threading.get_ident()}.tmp"
    try:
        with open(temporary, "wb") as handle:
            handle.write(data.encode() if isinstance(data, str) else data)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)
        raise
