"""Intake: a spreadsheet in (xlsx, xls, csv; hostile files refused), its rows and CURPs out.

``read`` reads a file (its format decided by its bytes) into the result types of ``result``;
``xlsx`` (with the checks of ``xlsx_safety``), ``xls`` and ``delimited`` read each format into
the row streams of ``stream``; ``columns`` finds the CURP column; ``curp`` normalises and
validates CURPs.
"""

from __future__ import annotations

from worker.intake.curp import normalise_curp, validate_curp
from worker.intake.read import read_sheet
from worker.intake.result import Intake, SheetRow

__all__ = ["Intake", "SheetRow", "normalise_curp", "read_sheet", "validate_curp"]
