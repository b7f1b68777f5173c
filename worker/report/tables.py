"""The table sheets: **Detalle** (one row per input row, in input order), **Errores** (every
check someone must act on, one line per row and problem) and **Cambios** (a re-check's status
changes)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from openpyxl import Workbook

from worker.core.statuses import Status, StatusClass
from worker.report.layout import portal_name, width
from worker.report.model import (
    ReportChange,
    ReportCheck,
    ReportData,
    ReportRow,
    name_columns,
    person_name,
)
from worker.report.sheet import ReportSheet

__all__ = ["write_cambios", "write_detalle", "write_errores"]

_WRAP_MAX = 400
_PDF_TEXT = "Ver PDF"
_EVIDENCE_TEXT = "Ver evidencia"


def _detalle_columns(data: ReportData) -> list[str]:
    headers = ["Fila", "CURP", *data.columns]
    for portal in data.portals:
        name = portal_name(portal)
        headers += [f"{name}: Estado", f"{name}: PDF", f"{name}: Evidencia",
                    f"{name}: Consultado", f"{name}: Vigente hasta"]
    return [*headers, "Observaciones"]


def write_detalle(wb: Workbook, data: ReportData, rows: Sequence[ReportRow], out_dir: Path,
                   tz: ZoneInfo) -> None:
    sheet = ReportSheet(wb, "Detalle", out_dir)
    headers = _detalle_columns(data)
    widths = [6.0, width((r.curp or r.value for r in rows), "CURP", lo=22, hi=30)]
    widths += [width((r.extra.get(c, "") for r in rows), c, lo=8, hi=40) for c in data.columns]
    for portal in data.portals:
        labels = (c.status.label for r in rows if (c := r.checks.get(portal)))
        name = portal_name(portal)
        widths += [width(labels, f"{name}: Estado", lo=12, hi=32),
                   width([_PDF_TEXT], f"{name}: PDF"),
                   width([_EVIDENCE_TEXT], f"{name}: Evidencia"),
                   width(["00/00/0000 00:00"], f"{name}: Consultado"),
                   width(["00/00/0000"], f"{name}: Vigente hasta")]
    widths.append(width((r.observation for r in rows), "Observaciones", lo=16, hi=50))
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


def write_errores(wb: Workbook, data: ReportData, rows: Sequence[ReportRow], out_dir: Path,
                   tz: ZoneInfo) -> None:
    sheet = ReportSheet(wb, "Errores", out_dir)
    problems = list(_problems(data, rows))
    name_cols = name_columns(data.columns)
    headers = ["Fila", "CURP", *(["Nombre"] if name_cols else []), "Portal", "Estado",
               "Motivo", "Qué hacer", "Evidencia", "Consultado", "Observaciones"]
    widths = [6.0, width((p.row.curp or p.row.value for p in problems), "CURP", lo=22, hi=30)]
    if name_cols:
        widths.append(width((person_name(p.row, name_cols) for p in problems), "Nombre",
                             lo=16, hi=40))
    widths += [
        14.0,
        width((p.check.status.label for p in problems), "Estado", lo=14, hi=32),
        width((p.check.detail for p in problems), "Motivo", lo=20, hi=60),
        width((p.check.status.action for p in problems), "Qué hacer", lo=20, hi=55),
        width([_EVIDENCE_TEXT], "Evidencia"), 17.0,
        width((p.row.observation for p in problems), "Observaciones", lo=16, hi=40),
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
            sheet.text(", ".join(portal_name(p) for p in problem.portals)),
            sheet.status(check.status),
            wrapped(check.detail or check.status.label),
            wrapped(check.status.action),
            sheet.link(check.evidence_path, _EVIDENCE_TEXT),
            sheet.datetime(check.checked_at, tz),
            # An invalid row's observation is its reason, already under "Motivo".
            sheet.text(row.observation if row.observation != check.detail else ""),
        ]
        sheet.append(cells)


def write_cambios(wb: Workbook, data: ReportData, changes: Sequence[ReportChange],
                   out_dir: Path, tz: ZoneInfo) -> None:
    sheet = ReportSheet(wb, "Cambios", out_dir)
    headers = ["CURP", "Fila", "Nombre", "Portal", "Antes", "Después", "Consulta anterior",
               "Cuándo"]
    labels = [c.after.label for c in changes] + [c.before.label for c in changes if c.before]
    status_w = width(labels, "Después", lo=14, hi=32)
    sheet.layout([width((c.curp for c in changes), "CURP", lo=20, hi=30), 7.0,
                  width((c.name or "" for c in changes), "Nombre", lo=16, hi=40), 9.0,
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
            sheet.text(portal_name(change.portal)), before, sheet.status(change.after),
            sheet.datetime(change.before_at, tz), sheet.datetime(change.after_at, tz),
        ])

