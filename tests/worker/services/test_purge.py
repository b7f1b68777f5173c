"""Retention: purge removes personal data older than the cutoff and keeps anonymous counts."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from sqlalchemy import update

from worker.core.settings import load_settings
from worker.services.batches import open_storage
from worker.services.purge import purge
from worker.storage.repository import Batch, utcnow

CURP = "GODE561231HDFRRN09"


def _batch(storage, out: Path, curp: str = CURP) -> str:
    out.mkdir(parents=True)
    (out / "constancias").mkdir()
    (out / "constancias" / "imss.pdf").write_bytes(b"%PDF-1.4 x")
    bid = storage.create_batch(key="k", source_name="altas.xlsx", portals=["imss"],
                               columns=["Nombre"], out_dir=out,
                               rows=[{"row_number": 2, "value": curp, "curp": curp, "reason": None,
                                      "duplicate_of": None, "extra": {"Nombre": "Ana"}}])
    cid = storage.pending_check_ids(bid)[0][0]
    storage.record_result(cid, status="not_entitled", detail=f"Constancia de {curp}",
                          pdf_path=out / "constancias" / "imss.pdf", facts={"curp": curp})
    return bid


def test_old_batches_lose_personal_data_and_keep_counts(tmp_path: Path) -> None:
    """A 40-day-old batch loses its files, CURPs and columns; its status counts remain."""
    settings = load_settings()
    storage = open_storage(settings)
    old = _batch(storage, tmp_path / "old")
    new = _batch(storage, tmp_path / "new", "PEGJ900101MDFRRN05")
    with storage.session() as s:
        s.execute(update(Batch).where(Batch.id == old).values(created_at=utcnow() - timedelta(days=40)))
    counts = purge(settings, storage, 30)
    assert counts == {"batches": 1, "files": 1, "people": 1, "audit": 0}
    assert not (tmp_path / "old").exists() and (tmp_path / "new" / "constancias" / "imss.pdf").exists()
    (check,) = storage.checks(old)
    assert check.status == "not_entitled" and CURP not in repr(vars(check))
    assert check.pdf_path is None and check.facts is None
    (row,) = storage.rows(old)
    assert row.curp is None and row.extra == {} and CURP not in row.value
    assert {p.curp for p in storage.people()} == {"PEGJ900101MDFRRN05"}
    assert storage.checks(new)[0].curp == "PEGJ900101MDFRRN05"
    assert purge(settings, storage, 30)["batches"] == 0  # idempotent


def test_cli_creates_owner_only_data_folders(tmp_path: Path) -> None:
    """Folders and files written by the CLI are readable by their owner only."""
    env = {**os.environ, "CONSTANCIAS_DATA_DIR": str(tmp_path / "datos")}
    proc = subprocess.run([sys.executable, "-m", "worker.interfaces.cli", "purge", "--older-than", "30"],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    for p in [tmp_path / "datos", *(tmp_path / "datos").rglob("*")]:
        mode = stat.S_IMODE(p.stat().st_mode)
        assert mode & 0o077 == 0, (p, oct(mode))
