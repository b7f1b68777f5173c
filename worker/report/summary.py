"""The **Resumen** sheet: the batch's facts, people per portal and status with subtotals per
class and a native bar chart beside them, and a legend of what each status asks of HR."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo

from openpyxl import Workbook
from openpyxl.chart import BarChart, Reference
from openpyxl.chart.label import DataLabelList
from openpyxl.utils import get_column_letter

from worker.core.statuses import Status, StatusClass
from worker.report.counts import PeopleCounts, count_people
from worker.report.layout import portal_name
from worker.report.model import ReportData, ReportRow
from worker.report.sheet import ReportSheet
from worker.report.styles import (
    BLANK_ZERO,
    BOLD_FONT,
    CLASS_LABEL,
    DATETIME_FORMAT,
    SECTION_FONT,
    TITLE_FONT,
)

__all__ = ["write_resumen"]

_SERIES_COLORS = ("2E75B6", "C55A11", "70AD47", "7030A0")


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


def write_resumen(wb: Workbook, data: ReportData, out_dir: Path, tz: ZoneInfo) -> None:
    sheet = ReportSheet(wb, "Resumen", out_dir)
    portals = data.portals
    n = len(portals)
    sheet.layout([34, 20, *([11] * n)], freeze=None, landscape=True, title_rows=False)
    bold = sheet.styles.get(font=BOLD_FONT)
    section = sheet.styles.get(font=SECTION_FONT)

    title = sheet.styles.get(font=TITLE_FONT)
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
            cast(Any, value)._style = sheet.styles.get(number_format=DATETIME_FORMAT,
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
    sheet.table_header(["Estado", "Tipo", *[portal_name(p) for p in portals]],
                       height=20, center_from=2)
    for status in present:
        values = [per_portal[p][status] for p in portals]
        kind = CLASS_LABEL[status.status_class] if status else "Sin resultado aún"
        # Zero counts show blank: a quieter table, and no "0" labels on the chart's empty bars.
        sheet.append([sheet.status(status), sheet.text(kind),
                      *_centred(sheet, values, number_format=BLANK_ZERO)])
    last_status_row = sheet.rows_written
    # Each portal's column adds up to the people: one result per person and portal.
    sheet.append([sheet.text("Personas", style=bold), None,
                  *_centred(sheet, [sum(per_portal[p].values()) for p in portals], bold=True)])
    for cls in StatusClass:
        values = [sum(c for s, c in per_portal[p].items() if s and s.status_class is cls)
                  for p in portals]
        sheet.append([sheet.status(_representative(cls), label=CLASS_LABEL[cls]),
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
        sheet.append([sheet.status(status), sheet.text(CLASS_LABEL[status.status_class]),
                      sheet.text(status.action)])
    sheet.append([sheet.status(None), sheet.text("Sin resultado aún"),
                  sheet.text("Esperar a que termine el lote y volver a generar el reporte.")])
    # Print the tables and the chart, not a long file name spilling to the right.
    sheet.ws.print_area = f"A1:{get_column_letter(_chart_last_column(portals))}{sheet.rows_written}"


def _centred(sheet: ReportSheet, values: Sequence[int], *, bold: bool = False,
             number_format: str | None = None) -> list[Any]:
    return [sheet.number(v, bold=bold, horizontal="center", number_format=number_format)
            for v in values]


def _representative(cls: StatusClass) -> Status:
    return next(s for s in Status if s.status_class is cls)


def _add_chart(sheet: ReportSheet, portals: Sequence[str], header_row: int, last_row: int) -> int:
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

