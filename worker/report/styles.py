"""The report's look: fonts, fills and number formats, the colours of each status class, and
the cache that builds each cell style once for a write-only sheet."""

from __future__ import annotations

from typing import Any, cast

from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.worksheet._write_only import WriteOnlyWorksheet

from worker.core.statuses import StatusClass

__all__ = ["BLANK_ZERO", "BOLD_FONT", "CLASS_LABEL", "CLASS_STYLE", "DATETIME_FORMAT",
           "DATE_FORMAT", "HEADER_FILL", "HEADER_FONT", "LINK_FONT", "MUTED_FONT",
           "SECTION_FONT", "TITLE_FONT", "Styles"]


def _font(**kwargs: Any) -> Font:
    """Calibri 11 unless told otherwise: a font without a name renders as a serif face in
    LibreOffice (which substitutes the metric-compatible Carlito for Calibri)."""
    return Font(**{"name": "Calibri", "size": 11, **kwargs})


HEADER_FILL = PatternFill("solid", fgColor="1F4E78")
# Module constants: the style cache keys on their identity (hashing a Font is slow).
HEADER_FONT = _font(bold=True, color="FFFFFF")
BOLD_FONT = _font(bold=True)
MUTED_FONT = _font(italic=True, color="595959")
LINK_FONT = _font(color="0563C1", underline="single")
SECTION_FONT = _font(bold=True, size=12, color="1F4E78")
TITLE_FONT = _font(bold=True, size=16, color="1F4E78")
CLASS_STYLE: dict[StatusClass | None, tuple[PatternFill | None, Font]] = {
    # Excel's own "Bueno / Neutral / Incorrecto" pairs: readable in print and on screen.
    StatusClass.DONE: (PatternFill("solid", fgColor="C6EFCE"), _font(color="006100")),
    StatusClass.NEEDS_ACTION: (PatternFill("solid", fgColor="FFEB9C"), _font(color="9C5700")),
    StatusClass.FAILED: (PatternFill("solid", fgColor="FFC7CE"), _font(color="9C0006")),
    None: (None, MUTED_FONT),  # pending: no result yet
}
CLASS_LABEL = {
    StatusClass.DONE: "Concluido",
    StatusClass.NEEDS_ACTION: "Requiere acción",
    StatusClass.FAILED: "Falla",
}
DATETIME_FORMAT = "dd/mm/yyyy hh:mm"
DATE_FORMAT = "dd/mm/yyyy"
BLANK_ZERO = "0;-0;;@"


class Styles:
    """Cell style arrays built once and shared by cells (far cheaper than per-cell styling).

    openpyxl only reads a cell's style array when it writes the cell, so sharing is safe as
    long as nobody mutates a cached array (``_with_quote`` copies before changing one).
    """

    def __init__(self, ws: WriteOnlyWorksheet) -> None:
        self._ws = ws
        self._cache: dict[tuple[Any, ...], Any] = {}

    def get(self, *, font: Font | None = None, fill: PatternFill | None = None,
            number_format: str | None = None, wrap: bool = False, quote: bool = False,
            vcenter: bool = False, horizontal: str | None = None) -> Any:
        key = (id(font), id(fill), number_format, wrap, quote, vcenter, horizontal)
        style = self._cache.get(key)
        if style is None:
            cell = WriteOnlyCell(self._ws)
            if font is not None:
                cell.font = font
            if fill is not None:
                cell.fill = fill
            if number_format is not None:
                cell.number_format = number_format
            if wrap or vcenter or horizontal:
                vertical = "center" if vcenter else "top" if wrap else None
                cell.alignment = Alignment(wrap_text=wrap or None, vertical=vertical,
                                           horizontal=horizontal)
            if quote:
                cell.quotePrefix = True
            style = self._cache[key] = cast(Any, cell)._style
        return style
