"""HR reads people, not rows × portals: the CLI summary and the report count each person once
per portal, an invalid CURP and a duplicate row once each; "Vigente" asks for attention."""

from __future__ import annotations

import io
from pathlib import Path

from openpyxl import load_workbook

from tests.people import synthetic_curps
from worker.core.settings import load_settings
from worker.core.statuses import Status, StatusClass
from worker.interfaces.commands import print_summary
from worker.report.data import build_report
from worker.services.batches import batch_status, open_storage

CURPS = synthetic_curps(3, seed=21)


def _stored_batch(tmp_path: Path) -> tuple[object, object, str]:
    """Five rows: three people (one on two rows) and one invalid CURP, both portals done."""
    settings = load_settings()
    storage = open_storage(settings)
    a, b, c = CURPS
    rows = [(2, a, None), (3, b, None), (4, "NO ES CURP", "Longitud incorrecta"),
            (5, a, 2), (6, c, None)]
    bid = storage.create_batch(
        key="k", source_name="altas.xlsx", portals=["imss", "issste"], columns=[],
        out_dir=tmp_path / "salida",
        rows=[{"row_number": n, "value": v, "curp": None if reason else v, "reason": reason,
               "duplicate_of": dup if isinstance(dup, int) else None, "extra": {}}
              for n, v, reason, dup in ((n, v, r if isinstance(r, str) else None, r)
                                        for n, v, r in rows)])
    verdict = {(a, "imss"): "entitled", (b, "imss"): "not_entitled", (c, "imss"): "not_entitled",
               (a, "issste"): "not_affiliated", (b, "issste"): "not_affiliated",
               (c, "issste"): "affiliated"}
    for check in storage.checks(bid):
        storage.record_result(check.id, status=verdict[(check.curp, check.portal)], detail="")
    return settings, storage, bid


def test_cli_summary_counts_people_per_portal_and_invalid_and_duplicate_rows_once(
        tmp_path: Path) -> None:
    """Three people on four valid rows plus one invalid row: each portal counts three
    people, the invalid CURP and the duplicate row appear once each on their own lines."""
    _settings, storage, bid = _stored_batch(tmp_path)
    out = io.StringIO()
    print_summary(batch_status(storage, bid), out)
    lines = [line.strip() for line in out.getvalue().splitlines()]
    assert lines[0] == f"Lote {bid}: 3 persona(s); con resultado: IMSS 3/3, ISSSTE 3/3."
    assert lines[1:8] == ["IMSS:", "Sin derecho a servicio médico: 2", "Vigente (con derecho): 1",
                          "ISSSTE:", "No afiliado al ISSSTE: 2", "Afiliado al ISSSTE: 1",
                          "CURP inválidas (no consultadas): 1"]
    assert lines[8] == "Filas repetidas (misma CURP): 1"
    assert not any(line.startswith("CURP inválida:") for line in lines)  # never per portal


def test_report_resumen_counts_people_and_vigente_needs_attention(tmp_path: Path) -> None:
    """The report's Resumen gives the same people counts, and a "Vigente" cell wears the
    needs-attention fill, not the plain-success one."""
    settings, storage, bid = _stored_batch(tmp_path)
    wb = load_workbook(build_report(settings, storage, bid))
    rows = [[c.value for c in r] for r in wb["Resumen"].iter_rows()]
    start = next(i for i, r in enumerate(rows) if r[:2] == ["Estado", "Tipo"])
    end = next(i for i, r in enumerate(rows) if r[0] == "Personas")
    table = {r[0]: r[2:4] for r in rows[start + 1:end]}
    assert table["Sin derecho a servicio médico"] == [2, 0]
    assert table["Vigente (con derecho)"] == [1, 0]
    assert table["No afiliado al ISSSTE"] == [0, 2]
    assert "CURP inválida" not in table
    assert next(r for r in rows if r[0] == "Personas")[2:4] == [3, 3]
    assert Status.ENTITLED.status_class is StatusClass.NEEDS_ACTION
    assert "vigencia de derechos" in Status.ENTITLED.action
    detail = wb["Detalle"]
    fills = {c.value: c.fill.fgColor.rgb for r in detail.iter_rows(min_row=2) for c in r
             if c.value in (Status.ENTITLED.label, Status.NOT_ENTITLED.label,
                            Status.CURP_NOT_FOUND.label, Status.INVALID_CURP.label)}
    assert fills[Status.ENTITLED.label] == fills[Status.INVALID_CURP.label]
    assert fills[Status.ENTITLED.label] != fills[Status.NOT_ENTITLED.label]
