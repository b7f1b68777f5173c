"""Counts HR can read: people per portal and status, not rows × portals.

One function serves the report's Resumen and the CLI summary. A CURP that appears on several
rows is one person (its later rows are counted once, as duplicates); a row whose CURP is
invalid was never sent to any portal, so it is counted once, as an invalid row, not once per
portal.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

__all__ = ["PeopleCounts", "count_people"]

S = TypeVar("S")


@dataclass
class PeopleCounts(Generic[S]):
    """What a batch holds, counted the way HR counts it."""

    per_portal: dict[str, Counter[S | None]] = field(default_factory=dict)
    """Per portal: distinct people by status (``None``: no result yet)."""
    people: int = 0
    """Distinct valid CURPs."""
    invalid_rows: int = 0
    """Rows whose CURP is invalid (never queried)."""
    duplicate_rows: int = 0
    """Rows repeating a CURP of an earlier row (counted with that one)."""


def count_people(rows: Iterable[str | None], portals: Sequence[str],
                 status_of: Callable[[str, str], S | None]) -> PeopleCounts[S]:
    """Count ``rows`` (each row's normalised CURP, ``None`` when invalid) in input order;
    ``status_of(curp, portal)`` gives a person's status on a portal."""
    counts: PeopleCounts[S] = PeopleCounts(per_portal={p: Counter() for p in portals})
    seen: set[str] = set()
    for curp in rows:
        if curp is None:
            counts.invalid_rows += 1
        elif curp in seen:
            counts.duplicate_rows += 1
        else:
            seen.add(curp)
            for portal in portals:
                counts.per_portal[portal][status_of(curp, portal)] += 1
    counts.people = len(seen)
    return counts
