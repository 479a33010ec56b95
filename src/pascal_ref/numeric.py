"""Integer and float limits every path shares: two's-complement widths and exact-float bounds.

One home for the small arithmetic facts the golden model, the fast engines,
the hardware widths and the formal harnesses all rely on.
"""
from __future__ import annotations

__all__ = ["signed_width", "FLOAT32_EXACT_LIMIT", "FLOAT64_EXACT_LIMIT", "INT64_LIMIT"]

FLOAT32_EXACT_LIMIT = 2 ** 24
"""Every integer of magnitude below this is exact in float32 (24-bit significand)."""

FLOAT64_EXACT_LIMIT = 2 ** 53
"""Every integer of magnitude below this is exact in float64 (53-bit significand)."""

INT64_LIMIT = 2 ** 63
"""int64 holds exactly the integers in ``[-INT64_LIMIT, INT64_LIMIT - 1]``."""


def signed_width(low: int, high: int) -> int:
    """Fewest bits of a two's-complement number holding every integer in ``[low, high]``.

    >>> signed_width(-1, 0), signed_width(0, 1), signed_width(-128, 127), signed_width(0, 128)
    (1, 2, 8, 9)
    """
    low, high = int(low), int(high)
    if low > high:
        raise ValueError(f"signed_width: empty range [{low}, {high}]")
    # n bits hold [-2^(n-1), 2^(n-1) - 1]: x >= 0 needs x.bit_length() + 1 bits, x < 0 as many as ~x = -x-1.
    return max((v if v >= 0 else ~v).bit_length() for v in (low, high)) + 1
