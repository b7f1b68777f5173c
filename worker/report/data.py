"""From stored results to the report model (worker/report/model.py; worker/report/workbook.py
writes the file)."""

from __future__ import annotations

from pathlib import Path

from worker.core.settings import Settings
from worker.core.statuses import Status
from worker.report.model import (
    ReportChange,
    ReportCheck,
    ReportData,
    ReportRow,
    name_columns,
    person_name,
)
from worker.report.workbook import write_report
from worker.storage.repository import Check, Row, Storage, utcnow

__all__ = ["build_report", "report_data"]


def report_data(settings: Settings, storage: Storage, batch_id: str) -> ReportData:
    batch = storage.get_batch(batch_id)
    if batch is None:
        raise KeyError(batch_id)
    checks: dict[tuple[str, str], Check] = {(c.curp, c.portal): c for c in storage.checks(batch_id)}
    rows: list[ReportRow] = []
    for row in storage.rows(batch_id):
        per_portal: dict[str, ReportCheck] = {}
        for portal in batch.portals:
            rc = _report_check(row, portal, checks.get((row.curp or "", portal)))
            if rc is not None:  # a check still running is left out: the report says "Pendiente"
                per_portal[portal] = rc
        rows.append(ReportRow(row=row.row_number, value=row.value, curp=row.curp,
                              extra=dict(row.extra or {}), checks=per_portal,
                              observation=_observation(row)))
    changes = None
    if batch.kind == "recheck":
        names = name_columns(list(batch.columns or []))  # one notion of "the name"
        by_curp = {r.curp: r for r in rows if r.curp}
        changes = []
        for check in sorted(checks.values(), key=lambda c: (c.curp, c.portal)):
            if check.status is None:
                continue
            before = storage.previous_result(check.curp, check.portal, check.id)
            if before is not None and before.status != check.status:
                changes.append(ReportChange(
                    curp=check.curp, portal=check.portal, before=Status(before.status),
                    after=Status(check.status), before_at=before.finished_at,
                    after_at=check.finished_at or utcnow(),
                    row=by_curp[check.curp].row if check.curp in by_curp else None,
                    name=(person_name(by_curp[check.curp], names) or None)
                    if check.curp in by_curp else None,
                ))
    return ReportData(batch_id=batch.id, source_name=batch.source_name, generated_at=utcnow(),
                      portals=list(batch.portals), columns=list(batch.columns or []), rows=rows,
                      changes=changes, timezone=settings.timezone)


def _report_check(row: Row, portal: str, check: Check | None) -> ReportCheck | None:
    if row.curp is None:
        return ReportCheck(portal=portal, status=Status.INVALID_CURP, detail=row.reason or "",
                           pdf_path=None, evidence_path=None, checked_at=None, valid_until=None)
    if check is None or check.status is None:
        return None
    return ReportCheck(
        portal=portal, status=Status(check.status), detail=check.detail or "",
        pdf_path=Path(check.pdf_path) if check.pdf_path else None,
        evidence_path=Path(check.evidence_path) if check.evidence_path else None,
        checked_at=check.finished_at, valid_until=check.valid_until,
    )


def _observation(row: Row) -> str:
    if row.curp is None:
        return row.reason or "CURP inválida"
    if row.duplicate_of is not None:
        return f"Duplicada de la fila {row.duplicate_of}"
    return ""


def build_report(settings: Settings, storage: Storage, batch_id: str,
                 path: Path | None = None, *, links_from: Path | None = None) -> Path:
    """Write ``reporte.xlsx`` (or ``path``) for a batch from what is stored now; links are
    relative to ``links_from`` (default: the report's folder)."""
    batch = storage.get_batch(batch_id)
    if batch is None:
        raise KeyError(batch_id)
    target = path or Path(batch.out_dir) / "reporte.xlsx"
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    return write_report(report_data(settings, storage, batch_id), target, links_from=links_from)
