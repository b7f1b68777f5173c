"""Column layout: widths measured from the data (write-only sheets need them before the first
row) and the portal names that head the portals' columns."""

from __future__ import annotations

from collections.abc import Iterable

from flows import registry

__all__ = ["portal_name", "width"]


def width(texts: Iterable[str], header: str, *, lo: float = 6, hi: float = 50) -> float:
    """A column width that fits the longest value and the header in at most two lines."""
    longest = max((len(t) for t in texts if t), default=0)
    return float(min(max(longest + 2, _header_width(header), lo), hi))


def _header_width(header: str) -> float:
    """Narrowest width that wraps ``header`` into two lines (bold text is ~10% wider)."""
    words = header.split() or [""]
    best = min(
        max(len(" ".join(words[:cut])), len(" ".join(words[cut:])))
        for cut in range(1, len(words) + 1)
    )
    return best * 1.1 + 2


def portal_name(portal: str) -> str:
    return registry.title(portal)

