"""What the CLI and the web page share: turning a sheet into a batch, and reading a batch back.

Status JSON shapes are SPEC §4 contracts.
"""

from __future__ import annotations

import hashlib
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

from worker.core.settings import Settings
from worker.core.statuses import Status
from worker.intake.read import read_sheet
from worker.intake.result import Intake
from worker.storage.files import input_copy_name, own_out_dir
from worker.storage.repository import Storage, database_missing, new_batch_id

__all__ = ["open_storage", "existing_storage", "prepare_batch", "batch_status", "batch_results",
           "batch_key", "captchas_waiting", "captchas_waiting_text"]


def open_storage(settings: Settings) -> Storage:
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    storage = Storage(settings.effective_database_url)
    storage.migrate()
    return storage


def existing_storage(settings: Settings) -> Storage | None:
    """Storage for a command that only reads: ``None`` when there is none yet (a SQLite file
    that does not exist), so that asking about a batch never creates an empty data folder or
    database as a side effect."""
    if database_missing(settings.effective_database_url):
        return None
    storage = Storage(settings.effective_database_url)
    storage.migrate()
    return storage


def captchas_waiting(settings: Settings) -> int:
    """Captchas the manual solver published and nobody has answered yet (0 with OCR).

    Pending captchas live in the data folder, not under a batch: while a batch runs, they are
    the ones its checks wait for."""
    if settings.captcha_solver != "manual":
        return 0
    # Imported here: the captcha module loads the solvers' libraries (numpy, Tesseract), for
    # the manual solver only.
    from flows.captcha import pending

    return len(pending(settings.data_dir))


def captchas_waiting_text(n: int) -> str:
    """"3 captchas esperan respuesta" (the CLI and the batch page say it alike)."""
    return "1 captcha espera respuesta" if n == 1 else f"{n} captchas esperan respuesta"


def batch_key(path: Path, portals: list[str], kind: str = "upload") -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    digest.update(("|" + ",".join(sorted(portals)) + "|" + kind).encode())
    return digest.hexdigest()


def prepare_batch(
    settings: Settings,
    storage: Storage,
    path: str | Path,
    portals: list[str],
    *,
    out_dir: str | Path | None = None,
    intake: Intake | None = None,
    resume: bool = True,
) -> tuple[str, bool]:
    """Read the sheet and store a batch; returns (batch id, resumed).

    The same file with the same portals, whose earlier batch never finished, resumes that
    batch: finished checks are not repeated.
    """
    path = Path(path)
    intake = intake or read_sheet(path, settings)
    key = batch_key(path, portals)
    if resume:
        existing = storage.find_resumable(key)
        if existing is not None:
            return existing.id, True
    batch_id = new_batch_id()
    # A folder that already holds files (HR's own, or an earlier batch's) gets a subfolder:
    # ours never mix with theirs (worker.storage.files).
    out = (own_out_dir(Path(out_dir), batch_id) if out_dir
           else settings.data_dir / "lotes" / batch_id)
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    out = out.resolve()
    # Keep the input next to the results: the batch can be re-read and audited later.
    shutil.copyfile(path, out / input_copy_name(path))
    rows = [
        {"row_number": r.row, "value": r.value, "curp": r.curp, "reason": r.reason,
         "duplicate_of": r.duplicate_of, "extra": dict(r.extra)}
        for r in intake.rows
    ]
    storage.create_batch(key=key, source_name=path.name, portals=portals,
                         columns=list(intake.columns), out_dir=out, rows=rows,
                         batch_id=batch_id)
    return batch_id, False


def batch_results(storage: Storage, batch_id: str) -> list[dict[str, Any]]:
    """One entry per (input row, portal), in input order, shaped as ``run --json`` results."""
    batch = storage.get_batch(batch_id)
    if batch is None:
        return []
    checks = {(c.curp, c.portal): c for c in storage.checks(batch_id)}
    out: list[dict[str, Any]] = []
    for row in storage.rows(batch_id):
        for portal in batch.portals:
            if row.curp is None:
                out.append({"row": row.row_number, "curp": row.value, "portal": portal,
                            "status": Status.INVALID_CURP.value, "pdf": None,
                            "detail": row.reason or ""})
                continue
            check = checks.get((row.curp, portal))
            detail = check.detail if check else ""
            if row.duplicate_of is not None:
                detail = f"Duplicada de la fila {row.duplicate_of}. {detail}".strip()
            out.append({
                "row": row.row_number, "curp": row.curp, "portal": portal,
                "status": check.status if check else None,
                "pdf": check.pdf_path if check else None, "detail": detail,
            })
    return out


def batch_status(storage: Storage, batch_id: str) -> dict[str, Any] | None:
    """``status --json``: state, totals and results of a batch (None if unknown)."""
    batch = storage.get_batch(batch_id)
    if batch is None:
        return None
    results = batch_results(storage, batch_id)
    progress = storage.progress(batch_id)
    done = [r for r in results if r["status"] is not None]
    state = {"reporting": "running"}.get(batch.state, batch.state)
    return {
        "batch_id": batch.id,
        "state": state,
        "total": len(results),
        "done": len(done),
        # IMSS checks waiting for their email (no browser held: worker/storage/waiting.py).
        "waiting": sum(p.get("waiting", 0) for p in progress.values()),
        "by_status": dict(Counter(r["status"] for r in done)),
        "report": batch.report_path,
        "results": results,
        "progress": progress,
        "kind": batch.kind,
        "source": batch.source_name,
        "created_at": batch.created_at.isoformat(),
    }
