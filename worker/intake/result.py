"""What intake hands over (SPEC §4): the sheet's rows (``SheetRow``) and what was found in the
file (``Intake``), with the ``validate --json`` object HR and scripts read."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Intake", "SheetRow"]


@dataclass(frozen=True)
class SheetRow:
    """One non-empty data row of the sheet."""

    row: int
    """The file's own row number (as Excel or a text editor shows it)."""
    value: str
    """The CURP cell as found (text, unnormalised), for the report."""
    curp: str | None
    """Normalised upper-case CURP if valid, else None."""
    reason: str | None
    """Spanish reason if invalid, else None."""
    duplicate_of: int | None
    """Row number of the first occurrence, if this valid CURP repeats."""
    extra: dict[str, str] = field(default_factory=dict)
    """The other columns of this row, by header name, in column order."""


@dataclass(frozen=True)
class Intake:
    """What ``read_sheet`` found in a spreadsheet."""

    path: Path
    sheet_name: str | None
    """Worksheet that holds the CURPs (None for CSV)."""
    header_row: int | None
    """Row of the header; None when the column was found by content."""
    curp_header: str | None
    """The CURP column's header text as written."""
    columns: list[str]
    """The other columns' headers in order ("Columna C" when a column has none)."""
    rows: list[SheetRow]
    """Every non-empty data row, in file order."""
    formula_cells: list[str] = field(default_factory=list)
    """Cells (``B7``) of the data rows holding a formula with no saved value: their formula
    text was kept (``FormulaText``); ``validate`` names them in a warning."""

    @property
    def valid_curps(self) -> list[str]:
        """Distinct valid CURPs, in first-seen order."""
        return [r.curp for r in self.rows if r.curp is not None and r.duplicate_of is None]

    @property
    def invalid(self) -> list[SheetRow]:
        return [r for r in self.rows if r.reason is not None]

    @property
    def duplicates(self) -> list[SheetRow]:
        return [r for r in self.rows if r.duplicate_of is not None]

    def to_json(self) -> dict[str, Any]:
        """The ``validate --json`` object of SPEC §4."""
        return {
            "rows": len(self.rows),
            "valid": len(self.valid_curps),
            "invalid": [{"row": r.row, "value": r.value, "reason": r.reason}
                        for r in self.invalid],
            "duplicates": [{"row": r.row, "curp": r.curp, "first_row": r.duplicate_of}
                           for r in self.duplicates],
        }

