"""The report's model, as the engine fills it: one ``ReportData`` per report, a ``ReportRow``
per input row with a ``ReportCheck`` per portal, and the ``ReportChange`` list of a re-check;
plus which input columns hold a person's name."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from worker.core.statuses import Status
from worker.core.text import fold

__all__ = ["ReportChange", "ReportCheck", "ReportData", "ReportRow", "name_columns",
           "person_name"]


@dataclass(frozen=True)
class ReportCheck:
    """One (person, portal) result as the report shows it."""

    portal: str
    """``"imss"`` or ``"issste"``."""
    status: Status
    detail: str
    """Spanish detail or the portal's own message."""
    pdf_path: Path | None
    """Absolute path of the constancia PDF, if any."""
    evidence_path: Path | None
    """Absolute path of the evidence folder (screenshot, HTML, trace) of a failed check."""
    checked_at: datetime | None
    """Timezone-aware UTC (naive values are taken as UTC); shown in the report's timezone."""
    valid_until: date | None


@dataclass(frozen=True)
class ReportRow:
    """One row of the input sheet."""

    row: int
    """Row number in the source sheet (as Excel shows it)."""
    value: str
    """The CURP cell as found."""
    curp: str | None
    """Normalised CURP, or None when invalid."""
    extra: dict[str, str]
    """The input's other columns, by header."""
    checks: dict[str, ReportCheck]
    """By portal; invalid rows carry an ``INVALID_CURP`` check per portal."""
    observation: str = ""
    """E.g. "Duplicada de la fila 7" or why the CURP is invalid."""


@dataclass(frozen=True)
class ReportChange:
    """A status change found by a re-check."""

    curp: str
    portal: str
    before: Status | None
    after: Status
    before_at: datetime | None
    after_at: datetime
    row: int | None = None
    name: str | None = None


@dataclass(frozen=True)
class ReportData:
    """Everything one report shows."""

    batch_id: str
    source_name: str
    generated_at: datetime
    portals: list[str]
    columns: list[str]
    """Headers of the input's other columns, in input order (keys of ``ReportRow.extra``)."""
    rows: list[ReportRow]
    changes: list[ReportChange] | None = None
    """Not None: a re-check report, with a "Cambios" sheet."""
    timezone: str = "America/Mexico_City"

def name_columns(columns: Sequence[str]) -> list[str]:
    return [c for c in columns if any(k in fold(c) for k in ("nombre", "apellido", "name"))]


def person_name(row: ReportRow, columns: Sequence[str]) -> str:
    return " ".join(v.strip() for c in columns if (v := row.extra.get(c, "")).strip())

