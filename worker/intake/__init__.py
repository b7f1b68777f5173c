"""Intake: a spreadsheet in (xlsx, xls, csv; hostile files refused), its rows and CURPs out."""

from __future__ import annotations

from worker.intake.sheet import Intake, SheetRow, normalise_curp, read_sheet, validate_curp

__all__ = ["Intake", "SheetRow", "normalise_curp", "read_sheet", "validate_curp"]
