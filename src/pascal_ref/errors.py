"""The one base of every domain error: :class:`PascalError`.

Every error a user can cause with a file, an option or an argument
(an invalid network, a model file, a quantization that does not fit, a
design the hardware cannot take, ...) derives from :class:`PascalError`,
itself a :class:`ValueError`. The command line prints these as one line and
exits 2; anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

__all__ = ["PascalError"]


class PascalError(ValueError):
    """A domain error; its message names the file, layer and array concerned."""
