"""WAL positions (``pg_lsn``) as integers, so they compare and sort."""

from __future__ import annotations

__all__ = ["format_lsn", "parse_lsn"]


def parse_lsn(text: str | None) -> int | None:
    """``"16/B374D848"`` as an integer; None for None or anything that is not a position."""
    if not text or text.count("/") != 1:
        return None
    high, low = text.split("/")
    try:
        high_value, low_value = int(high, 16), int(low, 16)
    except ValueError:
        return None
    if not (0 <= high_value <= 0xFFFFFFFF and 0 <= low_value <= 0xFFFFFFFF):
        return None
    return (high_value << 32) | low_value


def format_lsn(position: int) -> str:
    """The ``pg_lsn`` text of an integer position."""
    return f"{position >> 32:X}/{position & 0xFFFFFFFF:X}"
