"""The audit trail: what page downloads write, the admin page and its CSV, the retention purge."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.exc import DatabaseError

from tests.worker.interfaces.web.conftest import WebServer, csrf_from
from tests.worker.interfaces.web.test_accounts import USER_PASSWORD
from tests.worker.interfaces.web.test_security import _batch
from worker.core.logs import mask_curp
from worker.services.purge import purge
from worker.storage.accounts import add_user
from worker.storage.audit import AuditEvent, AuditFilter, events, record
from worker.storage.repository import utcnow


def test_downloads_write_audit_rows_with_who_where_and_which_batch(web: WebServer,
                                                                  tmp_path: Path) -> None:
    """A report, the zip and a file downloaded by an ``rh`` user each write one row naming the
    user, the address and the batch; viewing the batch writes one too; failed requests none."""
    batch_id = _batch(web, tmp_path)
    storage = web.app.state.web.storage
    add_user(storage, "marta", "rh", USER_PASSWORD)
    client = web.client(user="marta", password=USER_PASSWORD)
    for url in (f"/lotes/{batch_id}", f"/lotes/{batch_id}/reporte", f"/lotes/{batch_id}/zip",
                f"/lotes/{batch_id}/archivos/entrada.xlsx", "/lotes/nohay/reporte"):
        client.get(url)
    rows = events(storage, AuditFilter(actor="marta"))
    assert sorted(e.action for e in rows) == ["download_file", "download_report",
                                              "download_zip", "view_batch"]
    assert {e.batch_id for e in rows} == {batch_id}
    assert {e.address for e in rows} == {"127.0.0.1"}
    (file_row,) = [e for e in rows if e.action == "download_file"]
    assert file_row.detail == "entrada.xlsx"


def test_audit_page_filters_masks_curps_and_exports_csv(web: WebServer) -> None:
    """The admin's audit page filters by action and CURP, shows the CURP masked, and the CSV
    export holds the same rows, masked too, with Spanish headers."""
    storage = web.app.state.web.storage
    curp = "GODE561231HDFRRN09"
    record(storage, actor="ana", action="recheck_off", address="10.0.0.7", curps=[curp])
    record(storage, actor="ana", action="download_report", address="10.0.0.7", batch_id="b1")
    admin = web.client()
    page = admin.get("/auditoria", params={"accion": "recheck_off"}).text
    assert curp not in page
    page = page.split("<tbody>", 1)[1]  # the table, not the filter's list of actions
    assert mask_curp(curp) in page and curp not in page
    assert "Desactivó la revisión nocturna" in page and "Descargó un reporte" not in page
    assert mask_curp(curp) in admin.get("/auditoria", params={"curp": curp.lower()}).text
    exported = admin.get("/auditoria.csv", params={"quien": "ana"})
    assert exported.headers["content-type"].startswith("text/csv")
    table = list(csv.reader(io.StringIO(exported.text)))
    assert table[0] == ["Fecha", "Quién", "Dirección", "Acción", "Lote", "CURP", "Detalle"]
    assert sorted(r[3] for r in table[1:]) == ["Desactivó la revisión nocturna",
                                               "Descargó un reporte"]
    assert curp not in exported.text and mask_curp(curp) in exported.text


def test_recheck_switch_is_audited_and_old_rows_are_purged(web: WebServer,
                                                           tmp_path: Path) -> None:
    """Switching a person's nightly re-check off on the page writes a row with the CURP; rows
    cannot be rewritten (the database refuses); the retention purge removes rows older than
    its cutoff and keeps newer ones."""
    _batch(web, tmp_path)
    storage = web.app.state.web.storage
    curp = storage.people()[0].curp
    admin = web.client()
    csrf = csrf_from(admin.get("/personas").text)
    r = admin.post("/personas", data={"csrf": csrf, "curp": curp, "accion": "desactivar"})
    assert r.status_code == 303
    (row,) = events(storage, AuditFilter(action="recheck_off"))
    assert row.curp == curp and row.actor == "admin"
    with pytest.raises(DatabaseError, match="append-only"), storage.session() as s:
        s.execute(update(AuditEvent).values(actor="otro"))
    with storage.session() as s:  # a row written 40 days ago
        s.add(AuditEvent(at=utcnow() - timedelta(days=40), actor="viejo",
                         action="download_zip", batch_id="b0"))
    counts = purge(web.settings, storage, 30)
    assert counts["audit"] == 1
    assert [e.actor for e in events(storage)] == ["admin"]
