"""``reporte.xlsx``: the consolidated report HR opens (SPEC §6).

Sheets: **Resumen** (batch facts, counts per portal × status with a native bar chart, a
legend of statuses with what to do), **Detalle** (one row per input row, in input order),
**Errores** (every row someone must act on), **Cambios** (re-check reports only).

Safety, because the input sheet is untrusted and the report is opened in Excel and
LibreOffice:

* every text cell is written as an explicit string cell, never a formula; text that a
  spreadsheet would evaluate when edited (leading ``= + - @``, tab, CR/LF) also gets the
  ``quotePrefix`` cell style, so Excel and LibreOffice keep it text and show it unchanged;
* characters XML cannot carry are dropped; CR and literal ``_xHHHH_`` sequences are written
  with the OOXML escape (``_x000D_``, ``_x005F_``) so both applications show the original;
* strings are cut to Excel's 32,767-character cell limit (ending in "…");
* hyperlinks are relative paths to files that exist, built from our own file paths and
  percent-encoded (no scheme can appear); never a URL taken from input data.

The whole workbook is streamed in openpyxl's write-only mode: memory stays flat for large
batches and one code path serves every size. Write-only sheets need their layout (widths,
frozen panes) before the first row, so widths are measured in a first pass over the data.
"""

from __future__ import annotations

import os
import re
import stat
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from copy import copy
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote, unquote
from zoneinfo import ZoneInfo

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ERROR_CODES
from openpyxl.chart import BarChart, Reference
from openpyxl.chart.label import DataLabelList
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.worksheet._write_only import WriteOnlyWorksheet
from openpyxl.worksheet.hyperlink import Hyperlink
from openpyxl.worksheet.worksheet import Worksheet

from flows import registry
from worker.core.statuses import Status, StatusClass
from worker.core.text import fold
from worker.report.counts import PeopleCounts, count_people

__all__ = ["csv_safe", "ReportCheck", "ReportRow", "ReportChange", "ReportData", "write_report",
           "name_columns", "person_name",
           "EXCEL_MAX_CHARS", "MAX_LINKS_PER_SHEET"]

EXCEL_MAX_CHARS = 32_767
"""Most characters (UTF-16 code units) one Excel cell holds."""
MAX_LINKS_PER_SHEET = 65_530
"""Most hyperlinks Excel keeps on one worksheet (its documented specification limit)."""


# --- the model the engine fills ---------------------------------------------------------


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


# --- text safety --------------------------------------------------------------------------

# openpyxl's ILLEGAL_CHARACTERS_RE covers the C0 controls; XML 1.0 also forbids lone
# surrogates (they even make the UTF-8 encoder fail) and U+FFFE/U+FFFF.
_ILLEGAL_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
# Anything that needs more than the fast path: illegal characters, CR, OOXML escapes.
_SLOW_RE = re.compile("[\x00-\x08\x0b-\x1f\ud800-\udfff\ufffe\uffff]|_x[0-9A-Fa-f]{4}_")
# OOXML reads "_xHHHH_" in cell text as the character U+HHHH (Excel all of them,
# LibreOffice the control characters), so a literal one is escaped by escaping its "_".
_OOXML_ESCAPE_RE = re.compile("_(?=x[0-9A-Fa-f]{4}_)")
# First characters that make Excel or LibreOffice evaluate a cell when it is typed/edited.
_FORMULA_START = frozenset("=+-@\t\r\n\uff1d\uff0b\uff0d\uff20")
_ELLIPSIS = "…"


def _clean(value: object) -> str:
    """The text HR should see: XML-legal, at most one Excel cell long."""
    text = value if isinstance(value, str) else str(value)
    if _ILLEGAL_RE.search(text):
        text = _ILLEGAL_RE.sub("", text)
    if len(text) > EXCEL_MAX_CHARS // 2 and _utf16_len(text) > EXCEL_MAX_CHARS:
        text = _truncate(text)
    return text


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _truncate(text: str) -> str:
    """Cut to Excel's limit counted in UTF-16 units (as Excel counts), never inside a pair."""
    budget = EXCEL_MAX_CHARS - 1  # room for the ellipsis that tells HR it was cut
    out: list[str] = []
    for ch in text:
        budget -= 2 if ord(ch) > 0xFFFF else 1
        if budget < 0:
            break
        out.append(ch)
    return "".join(out) + _ELLIPSIS


def _needs_text_cell(text: str) -> bool:
    """True when a plain ``str`` would not come back as the same text from the file."""
    return bool(text) and (
        text[0] in _FORMULA_START or text in ERROR_CODES or _SLOW_RE.search(text) is not None
    )


def csv_safe(value: object) -> str:
    """A CSV field that a spreadsheet opens as text, never as a formula (OWASP CSV injection)."""
    text = _clean(value)
    return "'" + text if text and text[0] in _FORMULA_START else text


def _ooxml_escape(text: str) -> str:
    if "_x" in text:
        text = _OOXML_ESCAPE_RE.sub("_x005F_", text)
    return text.replace("\r", "_x000D_")


# --- styles -------------------------------------------------------------------------------

def _font(**kwargs: Any) -> Font:
    """Calibri 11 unless told otherwise: a font without a name renders as a serif face in
    LibreOffice (which substitutes the metric-compatible Carlito for Calibri)."""
    return Font(**{"name": "Calibri", "size": 11, **kwargs})


_HEADER_FILL = PatternFill("solid", fgColor="1F4E78")
# Module constants: the style cache keys on their identity (hashing a Font is slow).
_HEADER_FONT = _font(bold=True, color="FFFFFF")
_BOLD_FONT = _font(bold=True)
_MUTED_FONT = _font(italic=True, color="595959")
_LINK_FONT = _font(color="0563C1", underline="single")
_SECTION_FONT = _font(bold=True, size=12, color="1F4E78")
_TITLE_FONT = _font(bold=True, size=16, color="1F4E78")
_CLASS_STYLE: dict[StatusClass | None, tuple[PatternFill | None, Font]] = {
    # Excel's own "Bueno / Neutral / Incorrecto" pairs: readable in print and on screen.
    StatusClass.DONE: (PatternFill("solid", fgColor="C6EFCE"), _font(color="006100")),
    StatusClass.NEEDS_ACTION: (PatternFill("solid", fgColor="FFEB9C"), _font(color="9C5700")),
    StatusClass.FAILED: (PatternFill("solid", fgColor="FFC7CE"), _font(color="9C0006")),
    None: (None, _MUTED_FONT),  # pending: no result yet
}
_CLASS_LABEL = {
    StatusClass.DONE: "Concluido",
    StatusClass.NEEDS_ACTION: "Requiere acción",
    StatusClass.FAILED: "Falla",
}
_DATETIME_FORMAT = "dd/mm/yyyy hh:mm"
_DATE_FORMAT = "dd/mm/yyyy"
_BLANK_ZERO = "0;-0;;@"
_WRAP_MAX = 400
_PENDING_LABEL = "Pendiente"
_PDF_TEXT = "Ver PDF"
_EVIDENCE_TEXT = "Ver evidencia"
_MISSING_FILE_TEXT = "Archivo no disponible"
_SERIES_COLORS = ("2E75B6", "C55A11", "70AD47", "7030A0")


class _Styles:
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


class _Sheet:
    """A write-only worksheet plus the helpers every sheet of the report needs."""

    def __init__(self, wb: Workbook, title: str, out_dir: Path) -> None:
        # A write-only sheet takes a Worksheet's layout attributes at run time (column
        # dimensions, page set-up, auto filter); openpyxl's stubs do not say so.
        self.ws: Any = wb.create_sheet(_safe_sheet_title(title))
        self.styles = _Styles(self.ws)
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
        style = self.styles.get(font=_HEADER_FONT, fill=_HEADER_FILL, wrap=wrap, vcenter=True)
        centred = self.styles.get(font=_HEADER_FONT, fill=_HEADER_FILL, wrap=wrap, vcenter=True,
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
        text = _clean(value)
        if not text and style is None:
            return None
        risky = _needs_text_cell(text)
        if not risky and style is None:
            return text  # plain strings are written as strings by openpyxl: the fast path
        cell = WriteOnlyCell(self.ws, _ooxml_escape(text) if risky else text)
        cell.data_type = "s"  # never a formula, never an error code
        if risky and text[0] in _FORMULA_START:
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
        fill, font = _CLASS_STYLE[status.status_class if status is not None else None]
        shown = label if label is not None else (status.label if status else _PENDING_LABEL)
        return self.text(shown, style=self.styles.get(font=font, fill=fill))

    def datetime(self, value: datetime | None, tz: ZoneInfo) -> Any:
        if value is None:
            return None
        cell = WriteOnlyCell(self.ws, _local_naive(value, tz))
        cast(Any, cell)._style = self.styles.get(number_format=_DATETIME_FORMAT,
                                                 horizontal="center")
        return cell

    def date(self, value: date | None) -> Any:
        if value is None:
            return None
        if isinstance(value, datetime):  # a datetime is a date too; keep the day only
            value = value.date()
        cell = WriteOnlyCell(self.ws, cast(Any, value))  # a date: the stubs know only datetime
        cast(Any, cell)._style = self.styles.get(number_format=_DATE_FORMAT, horizontal="center")
        return cell

    def link(self, target: Path | None, text: str) -> Any:
        """A hyperlink relative to the report's folder, or None if there is nothing to open."""
        if target is None:
            return None
        relative = _relative_link(target, self.out_dir, self.real_out_dir)
        if relative is None:
            return self.text(_MISSING_FILE_TEXT,
                             style=self.styles.get(font=_MUTED_FONT))
        if self.links_left <= 0:
            # Past Excel's per-sheet limit a link would make Excel "repair" the file: show
            # the relative path instead, which HR can still open from the folder.
            return self.text(unquote(relative))
        self.links_left -= 1
        cell = WriteOnlyCell(self.ws, text)
        cell.hyperlink = Hyperlink(ref="", target=relative, tooltip=None)
        cast(Any, cell)._style = self.styles.get(font=_LINK_FONT)
        return cell

    def number(self, value: int | None, *, bold: bool = False, horizontal: str | None = None,
               number_format: str | None = None) -> Any:
        if value is None:
            return None
        cell = WriteOnlyCell(self.ws, value)
        cast(Any, cell)._style = self.styles.get(font=_BOLD_FONT if bold else None,
                                      horizontal=horizontal, number_format=number_format)
        return cell


def _safe_sheet_title(title: str) -> str:
    """Excel refuses ``[]:*?/\\`` and more than 31 characters in a sheet name."""
    cleaned = re.sub(r"[\[\]:*?/\\]", "_", _clean(title)).strip("'") or "Hoja"
    return cleaned[:31]


def _local_naive(value: datetime, tz: ZoneInfo) -> datetime:
    """Excel has no timezones: the wall-clock time in ``tz``, to the second."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)  # storage keeps UTC; SQLite drops the tzinfo
    return value.astimezone(tz).replace(tzinfo=None, microsecond=0)


def _relative_link(target: Path, out_dir: str, real_out_dir: str) -> str | None:
    """Percent-encoded relative URI from the report's folder to an existing ``target``.

    Encoding every ``:`` makes a scheme (``file:``, ``javascript:``) impossible, whatever the
    path holds. A file outside the folder still gets a relative ``../`` link (it works where
    the report is), but only files inside survive zipping the folder.
    """
    try:
        info = os.stat(target)
        absolute = os.path.abspath(target)
        if absolute.startswith(out_dir + os.sep):  # the usual case, without relpath's work
            rel = absolute[len(out_dir) + 1:]
        else:
            rel = os.path.relpath(absolute, out_dir)
        if rel.startswith(".."):
            # Maybe the same folder reached through a symlink (/tmp, /var…): compare real
            # paths, which costs a readlink per path component, so only when needed.
            rel = os.path.relpath(os.path.realpath(absolute), real_out_dir)
    except (OSError, ValueError):  # missing, or another drive on Windows: no relative path
        return None
    posix = rel.replace(os.sep, "/")
    if stat.S_ISDIR(info.st_mode):
        posix += "/"
    return quote(posix, safe="/")


def _width(texts: Iterable[str], header: str, *, lo: float = 6, hi: float = 50) -> float:
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


def _portal_name(portal: str) -> str:
    return registry.title(portal)


def name_columns(columns: Sequence[str]) -> list[str]:
    return [c for c in columns if any(k in fold(c) for k in ("nombre", "apellido", "name"))]


def person_name(row: ReportRow, columns: Sequence[str]) -> str:
    return " ".join(v.strip() for c in columns if (v := row.extra.get(c, "")).strip())


# --- the sheets ---------------------------------------------------------------------------


def _count(data: ReportData) -> PeopleCounts[Status]:
    """People per portal and status (worker.report.counts): a duplicate row or an invalid CURP is
    counted once, on its own line, never once per portal."""
    first: dict[str, ReportRow] = {}
    for row in data.rows:
        if row.curp is not None:
            first.setdefault(row.curp, row)

    def status_of(curp: str, portal: str) -> Status | None:
        check = first[curp].checks.get(portal)
        return check.status if check else None

    return count_people((r.curp for r in data.rows), data.portals, status_of)


def _write_resumen(wb: Workbook, data: ReportData, out_dir: Path, tz: ZoneInfo) -> None:
    sheet = _Sheet(wb, "Resumen", out_dir)
    portals = data.portals
    n = len(portals)
    sheet.layout([34, 20, *([11] * n)], freeze=None, landscape=True, title_rows=False)
    bold = sheet.styles.get(font=_BOLD_FONT)
    section = sheet.styles.get(font=_SECTION_FONT)

    title = sheet.styles.get(font=_TITLE_FONT)
    sheet.append([sheet.text("Reporte de constancias IMSS / ISSSTE", style=title)])
    sheet.append([])
    zone = ("hora de la Ciudad de México" if data.timezone == "America/Mexico_City"
            else data.timezone)
    counts = _count(data)
    facts: list[tuple[str, Any]] = [
        ("Lote", sheet.text(data.batch_id)),
        ("Archivo de origen", sheet.text(data.source_name)),
        ("Generado", sheet.datetime(data.generated_at, tz)),
        ("Filas de datos", len(data.rows)),
        ("Personas (CURP válidas distintas)", counts.people),
        ("CURP inválidas (no consultadas)", counts.invalid_rows),
        ("Filas repetidas (misma CURP)", counts.duplicate_rows),
    ]
    for label, value in facts:
        if isinstance(value, int):
            value = sheet.number(value, horizontal="left")
        elif label == "Generado":
            cast(Any, value)._style = sheet.styles.get(number_format=_DATETIME_FORMAT,
                                                       horizontal="left")
        extra = [sheet.text(f"({zone})")] if label == "Generado" else []
        sheet.append([sheet.text(label, style=bold), value, *extra])
    if data.changes is not None:
        sheet.append([sheet.text("Cambios de estado", style=bold),
                      sheet.number(len(data.changes), horizontal="left")])
    sheet.append([])

    per_portal = counts.per_portal
    present = [s for s in [*Status, None] if any(per_portal[p][s] for p in portals)]
    sheet.append([sheet.text("Personas por portal y estado", style=section)])
    header_row = sheet.rows_written + 1
    sheet.table_header(["Estado", "Tipo", *[_portal_name(p) for p in portals]],
                       height=20, center_from=2)
    for status in present:
        values = [per_portal[p][status] for p in portals]
        kind = _CLASS_LABEL[status.status_class] if status else "Sin resultado aún"
        # Zero counts show blank: a quieter table, and no "0" labels on the chart's empty bars.
        sheet.append([sheet.status(status), sheet.text(kind),
                      *_centred(sheet, values, number_format=_BLANK_ZERO)])
    last_status_row = sheet.rows_written
    # Each portal's column adds up to the people: one result per person and portal.
    sheet.append([sheet.text("Personas", style=bold), None,
                  *_centred(sheet, [sum(per_portal[p].values()) for p in portals], bold=True)])
    for cls in StatusClass:
        values = [sum(c for s, c in per_portal[p].items() if s and s.status_class is cls)
                  for p in portals]
        sheet.append([sheet.status(_representative(cls), label=_CLASS_LABEL[cls]),
                      sheet.text("subtotal"), *_centred(sheet, values)])
    table_end = sheet.rows_written

    chart_rows = 0
    if present:
        chart_rows = _add_chart(sheet, portals, header_row, last_status_row)
    # The legend starts below both the table and the chart beside it.
    while sheet.rows_written < max(table_end, header_row + chart_rows) + 1:
        sheet.append([])
    sheet.append([sheet.text("Qué significa cada estado y qué hacer", style=section)])
    # The action text runs over the free columns to its right; the banner covers them too.
    sheet.table_header(["Estado", "Tipo", "Qué debe hacer Recursos Humanos"], height=20,
                       wrap=False, pad=len(portals) + 5)
    for status in Status:
        sheet.append([sheet.status(status), sheet.text(_CLASS_LABEL[status.status_class]),
                      sheet.text(status.action)])
    sheet.append([sheet.status(None), sheet.text("Sin resultado aún"),
                  sheet.text("Esperar a que termine el lote y volver a generar el reporte.")])
    # Print the tables and the chart, not a long file name spilling to the right.
    sheet.ws.print_area = f"A1:{get_column_letter(_chart_last_column(portals))}{sheet.rows_written}"


def _centred(sheet: _Sheet, values: Sequence[int], *, bold: bool = False,
             number_format: str | None = None) -> list[Any]:
    return [sheet.number(v, bold=bold, horizontal="center", number_format=number_format)
            for v in values]


def _representative(cls: StatusClass) -> Status:
    return next(s for s in Status if s.status_class is cls)


def _add_chart(sheet: _Sheet, portals: Sequence[str], header_row: int, last_row: int) -> int:
    """A horizontal bar chart of counts per status, one series per portal; returns its rows."""
    ncat = last_row - header_row
    chart = BarChart()
    chart.type = "bar"  # horizontal bars: long Spanish labels stay readable
    chart.grouping = "clustered"
    chart.title = "Personas por estado"
    chart.style = 10
    data_ref = Reference(sheet.ws, min_col=3, max_col=2 + len(portals),
                         min_row=header_row, max_row=last_row)
    cats = Reference(sheet.ws, min_col=1, min_row=header_row + 1, max_row=last_row)
    chart.add_data(data_ref, titles_from_data=True)
    chart.set_categories(cats)
    for idx, series in enumerate(chart.series):
        color = _SERIES_COLORS[idx % len(_SERIES_COLORS)]
        series.graphicalProperties.solidFill = color
        series.graphicalProperties.line.solidFill = color
    # Only the value: LibreOffice reads unset flags as "show" and piles names onto the bars.
    chart.dataLabels = DataLabelList(showVal=True, showSerName=False, showCatName=False,
                                     showLegendKey=False, showPercent=False,
                                     showLeaderLines=False)
    # openpyxl ≥ 3.1 hides axes unless told otherwise.
    chart.x_axis.delete = False
    chart.y_axis.delete = False
    chart.x_axis.scaling.orientation = "maxMin"  # first status on top, as in the table
    chart.y_axis.majorGridlines = None
    chart.y_axis.numFmt = "0"
    chart.legend.position = "b"
    chart.width = 17
    chart.height = max(7.0, 2.5 + 0.6 * ncat * max(1, len(portals)) ** 0.5)
    anchor = f"{get_column_letter(_chart_last_column(portals) - 10)}{header_row - 1}"
    sheet.ws.add_chart(chart, anchor)
    return int(chart.height / 0.53) + 1  # default row height is 15 pt ≈ 0.53 cm


def _chart_last_column(portals: Sequence[str]) -> int:
    """The chart starts two columns right of the table and spans ~10 default columns."""
    return len(portals) + 5 + 10


def _detalle_columns(data: ReportData) -> list[str]:
    headers = ["Fila", "CURP", *data.columns]
    for portal in data.portals:
        name = _portal_name(portal)
        headers += [f"{name}: Estado", f"{name}: PDF", f"{name}: Evidencia",
                    f"{name}: Consultado", f"{name}: Vigente hasta"]
    return [*headers, "Observaciones"]


def _write_detalle(wb: Workbook, data: ReportData, rows: Sequence[ReportRow], out_dir: Path,
                   tz: ZoneInfo) -> None:
    sheet = _Sheet(wb, "Detalle", out_dir)
    headers = _detalle_columns(data)
    widths = [6.0, _width((r.curp or r.value for r in rows), "CURP", lo=22, hi=30)]
    widths += [_width((r.extra.get(c, "") for r in rows), c, lo=8, hi=40) for c in data.columns]
    for portal in data.portals:
        labels = (c.status.label for r in rows if (c := r.checks.get(portal)))
        name = _portal_name(portal)
        widths += [_width(labels, f"{name}: Estado", lo=12, hi=32),
                   _width([_PDF_TEXT], f"{name}: PDF"),
                   _width([_EVIDENCE_TEXT], f"{name}: Evidencia"),
                   _width(["00/00/0000 00:00"], f"{name}: Consultado"),
                   _width(["00/00/0000"], f"{name}: Vigente hasta")]
    widths.append(_width((r.observation for r in rows), "Observaciones", lo=16, hi=50))
    sheet.layout(widths, freeze="C2")
    sheet.table_header(headers)
    sheet.table_range(len(headers), len(rows))
    for row in rows:
        cells: list[Any] = [sheet.number(row.row, horizontal="center"),
                            sheet.text(row.curp or row.value)]
        cells += [sheet.text(row.extra.get(c)) for c in data.columns]
        for portal in data.portals:
            check = row.checks.get(portal)
            if check is None:
                cells += [sheet.status(None), None, None, None, None]
                continue
            # A constancia is the proof; evidence is linked for checks that ended without one.
            failed = not check.status.has_pdf and check.status.status_class is not StatusClass.DONE
            cells += [
                sheet.status(check.status),
                sheet.link(check.pdf_path, _PDF_TEXT),
                sheet.link(check.evidence_path, _EVIDENCE_TEXT) if failed else None,
                sheet.datetime(check.checked_at, tz),
                sheet.date(check.valid_until),
            ]
        cells.append(sheet.text(row.observation))
        sheet.append(cells)


@dataclass(frozen=True)
class _Problem:
    row: ReportRow
    portals: tuple[str, ...]
    check: ReportCheck


def _problems(data: ReportData, rows: Sequence[ReportRow]) -> Iterator[_Problem]:
    """Every check not done, one line per row and (status, detail): an invalid CURP is one line."""
    for row in rows:
        groups: dict[tuple[Status, str, Path | None], list[str]] = {}
        first: dict[tuple[Status, str, Path | None], ReportCheck] = {}
        for portal in data.portals:
            check = row.checks.get(portal)
            if check is None or check.status.status_class is StatusClass.DONE:
                continue
            key = (check.status, check.detail, check.evidence_path)
            groups.setdefault(key, []).append(portal)
            first.setdefault(key, check)
        for key, portals in groups.items():
            yield _Problem(row, tuple(portals), first[key])


def _write_errores(wb: Workbook, data: ReportData, rows: Sequence[ReportRow], out_dir: Path,
                   tz: ZoneInfo) -> None:
    sheet = _Sheet(wb, "Errores", out_dir)
    problems = list(_problems(data, rows))
    name_cols = name_columns(data.columns)
    headers = ["Fila", "CURP", *(["Nombre"] if name_cols else []), "Portal", "Estado",
               "Motivo", "Qué hacer", "Evidencia", "Consultado", "Observaciones"]
    widths = [6.0, _width((p.row.curp or p.row.value for p in problems), "CURP", lo=22, hi=30)]
    if name_cols:
        widths.append(_width((person_name(p.row, name_cols) for p in problems), "Nombre",
                             lo=16, hi=40))
    widths += [
        14.0,
        _width((p.check.status.label for p in problems), "Estado", lo=14, hi=32),
        _width((p.check.detail for p in problems), "Motivo", lo=20, hi=60),
        _width((p.check.status.action for p in problems), "Qué hacer", lo=20, hi=55),
        _width([_EVIDENCE_TEXT], "Evidencia"), 17.0,
        _width((p.row.observation for p in problems), "Observaciones", lo=16, hi=40),
    ]
    sheet.layout(widths, freeze="C2")
    sheet.table_header(headers)
    sheet.table_range(len(headers), max(len(problems), 1))
    wrap = sheet.styles.get(wrap=True)

    def wrapped(text: str) -> Any:
        # Wrap what fits in a few lines; a huge text would make a page-high row.
        return sheet.text(text, style=wrap if len(text) <= _WRAP_MAX else None)
    if not problems:
        sheet.append([None, sheet.text("Ninguna fila requiere acción.")])
    for problem in problems:
        row, check = problem.row, problem.check
        cells: list[Any] = [sheet.number(row.row, horizontal="center"),
                            sheet.text(row.curp or row.value)]
        if name_cols:
            cells.append(sheet.text(person_name(row, name_cols)))
        cells += [
            sheet.text(", ".join(_portal_name(p) for p in problem.portals)),
            sheet.status(check.status),
            wrapped(check.detail or check.status.label),
            wrapped(check.status.action),
            sheet.link(check.evidence_path, _EVIDENCE_TEXT),
            sheet.datetime(check.checked_at, tz),
            # An invalid row's observation is its reason, already under "Motivo".
            sheet.text(row.observation if row.observation != check.detail else ""),
        ]
        sheet.append(cells)


def _write_cambios(wb: Workbook, data: ReportData, changes: Sequence[ReportChange],
                   out_dir: Path, tz: ZoneInfo) -> None:
    sheet = _Sheet(wb, "Cambios", out_dir)
    headers = ["CURP", "Fila", "Nombre", "Portal", "Antes", "Después", "Consulta anterior",
               "Cuándo"]
    labels = [c.after.label for c in changes] + [c.before.label for c in changes if c.before]
    status_w = _width(labels, "Después", lo=14, hi=32)
    sheet.layout([_width((c.curp for c in changes), "CURP", lo=20, hi=30), 7.0,
                  _width((c.name or "" for c in changes), "Nombre", lo=16, hi=40), 9.0,
                  status_w, status_w, 17.0, 17.0], freeze="B2")
    sheet.table_header(headers)
    sheet.table_range(len(headers), max(len(changes), 1))
    if not changes:
        sheet.append([sheet.text("Sin cambios desde la revisión anterior.")])
    for change in changes:
        before = (sheet.status(change.before) if change.before is not None
                  else sheet.text("Sin consulta previa"))
        sheet.append([
            sheet.text(change.curp), sheet.number(change.row, horizontal="center"),
            sheet.text(change.name),
            sheet.text(_portal_name(change.portal)), before, sheet.status(change.after),
            sheet.datetime(change.before_at, tz), sheet.datetime(change.after_at, tz),
        ])


# --- entry point --------------------------------------------------------------------------


def write_report(data: ReportData, path: Path, *, links_from: Path | None = None) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file in the same folder, then rename).

    Hyperlinks are relative to ``links_from`` (default ``path.parent``), so that folder can be
    zipped and moved; a report written elsewhere to be put at the top of that folder's zip
    passes the folder. Returns ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out_dir = Path(links_from) if links_from is not None else path.parent
    tz = ZoneInfo(data.timezone)
    # Input order is the source's own row order; sorted() is stable for equal numbers.
    rows = sorted(data.rows, key=lambda r: r.row)

    wb = Workbook(write_only=True)
    wb.properties.title = "Reporte de constancias"
    wb.properties.creator = "constancias"
    try:
        _write_resumen(wb, data, out_dir, tz)
        _write_detalle(wb, data, rows, out_dir, tz)
        _write_errores(wb, data, rows, out_dir, tz)
        if data.changes is not None:
            _write_cambios(wb, data, data.changes, out_dir, tz)
    except BaseException:
        _discard(wb)
        raise

    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".xlsx.tmp",
                                    dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            wb.save(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _discard(wb: Workbook) -> None:
    """Close and delete the streamed sheets of a report that failed half-way.

    Left alone, each write-only sheet keeps a temporary file until the process exits and
    complains when garbage-collected; a long-lived worker should not collect them.
    """
    for ws in wb.worksheets:
        try:
            writer = getattr(ws, "_writer", None)
            if isinstance(ws, WriteOnlyWorksheet) and writer is not None and not ws.closed:
                ws.close()
                writer.cleanup()
        except Exception:  # noqa: BLE001, S110 - best effort while another error propagates
            pass
