"""One worksheet of the report: its page layout, its header row and filter, and every kind of
cell it holds (safe text, status, date, number, link), each with a shared style."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from copy import copy
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, cast
from urllib.parse import unquote
from zoneinfo import ZoneInfo

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.hyperlink import Hyperlink
from openpyxl.worksheet.worksheet import Worksheet

from worker.core.statuses import Status
from worker.report.links import relative_link
from worker.report.safe_text import FORMULA_START, clean, needs_text_cell, ooxml_escape
from worker.report.styles import (
    BOLD_FONT,
    CLASS_STYLE,
    DATE_FORMAT,
    DATETIME_FORMAT,
    HEADER_FILL,
    HEADER_FONT,
    LINK_FONT,
    MUTED_FONT,
    Styles,
)

__all__ = ["MAX_LINKS_PER_SHEET", "ReportSheet"]

MAX_LINKS_PER_SHEET = 65_530
"""Most hyperlinks Excel keeps on one worksheet (its documented specification limit)."""

_PENDING_LABEL = "Pendiente"
_MISSING_FILE_TEXT = "Archivo no disponible"


class ReportSheet:
    """A write-only worksheet plus the helpers every sheet of the report needs."""

    def __init__(self, wb: Workbook, title: str, out_dir: Path) -> None:
        # A write-only sheet takes a Worksheet's layout attributes at run time (column
        # dimensions, page set-up, auto filter); openpyxl's stubs do not say so.
        self.ws: Any = wb.create_sheet(_safe_sheet_title(title))
        self.styles = Styles(self.ws)
        self._quoted: dict[int, Any] = {}  # id(style) -> same style with quotePrefix
        self.out_dir = os.path.abspath(out_dir)
        self.real_out_dir = os.path.realpath(out_dir)
        self.rows_written = 0
        self.links_left = MAX_LINKS_PER_SHEET

    # -- layout, before the first row --------------------------------------------------------

    def layout(self, widths: Sequence[float], *, freeze: str | None, landscape: bool = True,
               title_rows: bool = True) -> None:
        ws = self.ws
        for idx, width in enumerate(widths, 1):
            ws.column_dimensions[get_column_letter(idx)].width = width
        if freeze:
            ws.freeze_panes = freeze
        ws.page_setup.orientation = "landscape" if landscape else "portrait"
        ws.page_setup.paperSize = Worksheet.PAPERSIZE_LETTER  # the usual paper in Mexican offices
        ws.page_setup.fitToWidth = 1
        ws.page_setup.fitToHeight = 0
        ws.sheet_properties.pageSetUpPr.fitToPage = True
        ws.page_margins.left = ws.page_margins.right = 0.4
        ws.page_margins.top = ws.page_margins.bottom = 0.5
        ws.print_options.horizontalCentered = True
        if title_rows:
            ws.print_title_rows = "1:1"

    def table_header(self, headers: Sequence[str], *, height: float = 32, wrap: bool = True,
                     pad: int = 0, center_from: int | None = None) -> None:
        """The styled header row; ``pad`` more filled cells make a banner over free columns;
        headers from index ``center_from`` on are centred (over centred numbers)."""
        self.ws.row_dimensions[self.rows_written + 1].height = height
        style = self.styles.get(font=HEADER_FONT, fill=HEADER_FILL, wrap=wrap, vcenter=True)
        centred = self.styles.get(font=HEADER_FONT, fill=HEADER_FILL, wrap=wrap, vcenter=True,
                                  horizontal="center")
        cells = [self.text(h, style=centred if center_from is not None and i >= center_from
                           else style) for i, h in enumerate(headers)]
        self.append([*cells, *(self.text("", style=style) for _ in range(pad))])

    def table_range(self, ncols: int, nrows: int) -> None:
        """Autofilter over the table, and print exactly it: a long text in the last column
        would otherwise spill to the right, widen the printed range and shrink the page."""
        ref = f"A1:{get_column_letter(max(ncols, 1))}{max(nrows, 1) + 1}"
        self.ws.auto_filter.ref = ref
        self.ws.print_area = ref

    def append(self, cells: Iterable[Any]) -> None:
        self.ws.append(list(cells))
        self.rows_written += 1

    # -- cells ---------------------------------------------------------------------------------

    def text(self, value: object, *, style: Any = None) -> Any:
        """A string cell that shows ``value`` as typed, whatever it contains."""
        if value is None:
            return None
        text = clean(value)
        if not text and style is None:
            return None
        risky = needs_text_cell(text)
        if not risky and style is None:
            return text  # plain strings are written as strings by openpyxl: the fast path
        cell = WriteOnlyCell(self.ws, ooxml_escape(text) if risky else text)
        cell.data_type = "s"  # never a formula, never an error code
        if risky and text[0] in FORMULA_START:
            cast(Any, cell)._style = self._with_quote(style)
        elif style is not None:
            cast(Any, cell)._style = style
        return cell

    def _with_quote(self, style: Any) -> Any:
        if style is None:
            return self.styles.get(quote=True)
        quoted = self._quoted.get(id(style))
        if quoted is None:
            quoted = self._quoted[id(style)] = copy(style)
            quoted.quotePrefix = 1
        return quoted

    def status(self, status: Status | None, label: str | None = None) -> Any:
        fill, font = CLASS_STYLE[status.status_class if status is not None else None]
        shown = label if label is not None else (status.label if status else _PENDING_LABEL)
        return self.text(shown, style=self.styles.get(font=font, fill=fill))

    def datetime(self, value: datetime | None, tz: ZoneInfo) -> Any:
        if value is None:
            return None
        cell = WriteOnlyCell(self.ws, _local_naive(value, tz))
        cast(Any, cell)._style = self.styles.get(number_format=DATETIME_FORMAT,
                                                 horizontal="center")
        return cell

    def date(self, value: date | None) -> Any:
        if value is None:
            return None
        if isinstance(value, datetime):  # a datetime is a date too; keep the day only
            value = value.date()
        cell = WriteOnlyCell(self.ws, cast(Any, value))  # a date: the stubs know only datetime
        cast(Any, cell)._style = self.styles.get(number_format=DATE_FORMAT, horizontal="center")
        return cell

    def link(self, target: Path | None, text: str) -> Any:
        """A hyperlink relative to the report's folder, or None if there is nothing to open."""
        if target is None:
            return None
        relative = relative_link(target, self.out_dir, self.real_out_dir)
        if relative is None:
            return self.text(_MISSING_FILE_TEXT,
                             style=self.styles.get(font=MUTED_FONT))
        if self.links_left <= 0:
            # Past Excel's per-sheet limit a link would make Excel "repair" the file: show
            # the relative path instead, which HR can still open from the folder.
            return self.text(unquote(relative))
        self.links_left -= 1
        cell = WriteOnlyCell(self.ws, text)
        cell.hyperlink = Hyperlink(ref="", target=relative, tooltip=None)
        cast(Any, cell)._style = self.styles.get(font=LINK_FONT)
        return cell

    def number(self, value: int | None, *, bold: bool = False, horizontal: str | None = None,
               number_format: str | None = None) -> Any:
        if value is None:
            return None
        cell = WriteOnlyCell(self.ws, value)
        cast(Any, cell)._style = self.styles.get(font=BOLD_FONT if bold else None,
                                      horizontal=horizontal, number_format=number_format)
        return cell


def _safe_sheet_title(title: str) -> str:
    """Excel refuses ``[]:*?/\\`` and more than 31 characters in a sheet name."""
    cleaned = re.sub(r"[\[\]:*?/\\]", "_", clean(title)).strip("'") or "Hoja"
    return cleaned[:31]


def _local_naive(value: datetime, tz: ZoneInfo) -> datetime:
    """Excel has no timezones: the wall-clock time in ``tz``, to the second."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)  # storage keeps UTC; SQLite drops the tzinfo
    return value.astimezone(tz).replace(tzinfo=None, microsecond=0)

