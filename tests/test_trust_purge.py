"""Retention beyond the batch folder: evidence, files recorded elsewhere, old uploads,
temporary files and Maildir messages go; recent ones stay; `constancias purge` also
pseudonymises the record of sent change e-mails."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import update

from worker.core.settings import load_settings
from worker.interfaces.web.files import new_upload
from worker.services.batches import open_storage
from worker.services.purge import purge
from worker.storage.repository import Batch, Notification, Storage, utcnow

CURP = "CEDZ840314MOCQJC05"
DAY = 86400


def _age(path: Path, days: float) -> None:
    """Make ``path`` (and all it holds) ``days`` old."""
    when = time.time() - days * DAY
    for p in [*path.rglob("*"), path] if path.is_dir() else [path]:
        os.utime(p, (when, when), follow_symlinks=False)


def _failed_batch(storage: Storage, out: Path, report: Path, days_old: float) -> str:
    """A batch whose check failed and kept evidence, with its report written elsewhere."""
    evidence = out / "constancias" / CURP / "evidence" / "imss-0"
    evidence.mkdir(parents=True)
    for name in ("page-1.png", "page-1.html", "trace.zip", "check.json"):
        (evidence / name).write_bytes(b"x")
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_bytes(b"PK")
    bid = storage.create_batch(key=f"k{days_old}", source_name="altas.xlsx", portals=["imss"],
                               columns=[], out_dir=out,
                               rows=[{"row_number": 2, "value": CURP, "curp": CURP,
                                      "reason": None, "duplicate_of": None, "extra": {}}])
    cid = storage.pending_check_ids(bid)[0][0]
    storage.record_result(cid, status="data_inconsistent", detail="acudir a subdelegación",
                          evidence_path=evidence)
    storage.finish_batch(bid, report)
    with storage.session() as s:
        s.execute(update(Batch).where(Batch.id == bid)
                  .values(created_at=utcnow() - timedelta(days=days_old)))
    return bid


def test_purge_removes_evidence_and_a_report_written_outside_the_batch(tmp_path: Path) -> None:
    """Screenshots, HTML, trace and note of an old failed check go, and so does its report
    written with --out elsewhere; a recent batch keeps all of them."""
    settings = load_settings()
    storage = open_storage(settings)
    _failed_batch(storage, tmp_path / "old", tmp_path / "informes" / "viejo.xlsx", 40)
    _failed_batch(storage, tmp_path / "new", tmp_path / "informes" / "nuevo.xlsx", 1)

    counts = purge(settings, storage, 30)

    assert not (tmp_path / "old").exists()
    assert not (tmp_path / "informes" / "viejo.xlsx").exists()
    assert counts["files"] == 5  # four evidence files + the report elsewhere
    assert len(list((tmp_path / "new").rglob("*.*"))) == 4
    assert (tmp_path / "informes" / "nuevo.xlsx").exists()


def test_purge_removes_old_uploads_temporary_files_and_mail(tmp_path: Path) -> None:
    """Uploaded sheets never processed, the web page's leftovers in tmp/ and Maildir
    messages older than the cutoff go; newer ones stay."""
    settings = load_settings()
    data = settings.data_dir
    storage = open_storage(settings)
    uploads = []
    for _ in range(2):
        _token, sheet = new_upload(data, "altas.xlsx")
        sheet.write_bytes(b"PK hoja con CURP")
        (sheet.parent / "findings.json").write_text("{}")
        uploads.append(sheet.parent)
    (data / "tmp").mkdir(mode=0o700)
    old_tmp, new_tmp = data / "tmp" / "lote-a.zip", data / "tmp" / "reporte-b.xlsx"
    old_tmp.write_bytes(b"PK")
    new_tmp.write_bytes(b"PK")
    mails = []
    for box in (data / "mail" / ".Claimed" / "cur", data / "sandbox-mail" / "new"):
        box.mkdir(parents=True)
        for name in ("viejo", "nuevo"):
            (box / name).write_text("Subject: Constancia\n\nadjunto PDF")
        mails.append(box)
    _age(uploads[0], 45)
    _age(old_tmp, 45)
    for box in mails:
        _age(box / "viejo", 45)

    counts = purge(settings, storage, 30)

    assert not uploads[0].exists() and uploads[1].is_dir()
    assert not old_tmp.exists() and new_tmp.exists()
    for box in mails:
        assert sorted(p.name for p in box.iterdir()) == ["nuevo"]
    assert counts["files"] == 2 + 1 + 2


def test_cli_purge_pseudonymises_sent_notifications(tmp_path: Path) -> None:
    """`constancias purge` leaves no CURP or recipient address in the record of change
    e-mails sent about a purged batch."""
    settings = load_settings()
    storage = open_storage(settings)
    bid = _failed_batch(storage, tmp_path / "old", tmp_path / "old" / "reporte.xlsx", 40)
    with storage.session() as s:
        s.add(Notification(batch_id=bid, curp=CURP, portal="imss", before="not_entitled",
                           after="data_inconsistent", recipients="rh@empresa.example",
                           sent_at=utcnow()))
    proc = subprocess.run([sys.executable, "-m", "worker.interfaces.cli", "purge", "--older-than", "30"],
                          env=dict(os.environ), cwd=tmp_path, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "1 lote(s)" in proc.stdout
    with storage.session() as s:
        (note,) = s.query(Notification).all()
    assert note.curp.startswith("#") and note.curp != CURP and note.recipients == ""
    assert note.after == "data_inconsistent"
