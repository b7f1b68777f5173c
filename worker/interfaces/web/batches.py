"""Batches: the list, one batch's live page, its files, the report and the zip."""

from __future__ import annotations

import mimetypes
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response

from worker.interfaces.web.common import (
    checked_form,
    csrf_refused,
    not_found,
    render,
    status_view,
    web,
)
from worker.interfaces.web.files import build_zip, inside
from worker.interfaces.web.guard import audit
from worker.report.data import build_report
from worker.services.batches import batch_results, captchas_waiting, captchas_waiting_text
from worker.storage.files import REPORT_NAME, batch_files
from worker.storage.repository import Batch

__all__ = ["batch_list", "batch_page", "batch_state", "batch_table", "batch_file",
           "batch_report", "batch_zip", "batch_resume", "report_file", "recorded_files",
           "send_file"]

#: Other columns of the sheet shown next to the CURP (employee number, name…).
_EXTRA_SHOWN = 2
#: Files shown inline in the browser; everything else (evidence HTML, traces) downloads.
_INLINE = {".pdf", ".png", ".jpg", ".jpeg", ".txt", ".json"}
_FILE_CSP = "sandbox; default-src 'none'; img-src 'self'; style-src 'unsafe-inline'"


def _batch(request: Request) -> Batch | None:
    batch_id = request.path_params["batch_id"]
    if not batch_id.isalnum() or len(batch_id) > 32:
        return None
    return web(request).storage.get_batch(batch_id)


async def batch_list(request: Request) -> Response:
    storage = web(request).storage
    batches = storage.list_batches(limit=200)
    progress = {b.id: _totals(storage.progress(b.id)) for b in batches}
    return render(request, "batches.html", {"nav": "lotes", "batches": batches,
                                            "progress": progress})


def _totals(progress: dict[str, dict[str, int]]) -> dict[str, int]:
    return {"total": sum(p["total"] for p in progress.values()),
            "done": sum(p["done"] for p in progress.values()),
            "waiting": sum(p.get("waiting", 0) for p in progress.values())}


def recorded_files(request: Request, batch: Batch) -> list[Path]:
    """The files constancias wrote for this batch: the only ones the page serves or zips."""
    return batch_files(batch, web(request).storage.checks(batch.id))


def _file_url(batch: Batch, path: str | None) -> str | None:
    """The download URL of a file of this batch, or ``None`` if it is missing or elsewhere."""
    if not path:
        return None
    base = Path(os.path.abspath(batch.out_dir))
    target = Path(os.path.abspath(path))
    if not target.exists() or not target.is_relative_to(base) or target == base:
        return None
    return f"/lotes/{batch.id}/archivos/{target.relative_to(base).as_posix()}"


def _table(request: Request, batch: Batch) -> list[dict[str, Any]]:
    """One line per input row; per portal its status, PDF and evidence."""
    storage = web(request).storage
    checks = {(c.curp, c.portal): c for c in storage.checks(batch.id)}
    extras = {r.row_number: r.extra or {} for r in storage.rows(batch.id)}
    columns = list(batch.columns or [])[:_EXTRA_SHOWN]
    lines: dict[int, dict[str, Any]] = {}
    for result in batch_results(storage, batch.id):
        line = lines.setdefault(result["row"], {
            "row": result["row"], "curp": result["curp"], "portals": {}, "detail": "",
            "extra": [extras.get(result["row"], {}).get(c, "") for c in columns],
        })
        check = checks.get((result["curp"], result["portal"]))
        view = status_view(result["status"])
        view["pdf"] = _file_url(batch, result["pdf"])
        view["evidence"] = _file_url(batch, check.evidence_path) if check else None
        detail = result["detail"] or ""
        # The duplicate/invalid note is the same for every portal: show it once per row.
        if detail.startswith("Duplicada") or view["code"] == "invalid_curp":
            line["detail"] = detail.split(". ")[0] if view["code"] != "invalid_curp" else detail
            detail = detail.partition(". ")[2] if detail.startswith("Duplicada") else ""
        view["detail"] = detail
        line["portals"][result["portal"]] = view
    return list(lines.values())


def _state(request: Request, batch: Batch) -> dict[str, Any]:
    storage = web(request).storage
    progress = storage.progress(batch.id)
    totals = _totals(progress)
    state = {"reporting": "running"}.get(batch.state, batch.state)
    waiting = captchas_waiting(web(request).settings) if state != "done" else 0
    return {"batch_id": batch.id, "state": state, **totals,
            "progress": {p: progress[p] for p in batch.portals if p in progress},
            "running": web(request).runner.running(batch.id),
            "captchas": waiting, "captchas_text": captchas_waiting_text(waiting)}


async def batch_page(request: Request) -> Response:
    batch = _batch(request)
    if batch is None:
        return not_found(request, "Ese lote no existe.")
    st = web(request)
    broker_down = batch.state != "done" and await run_in_threadpool(st.runner.broker_down)
    return render(request, "batch.html", {
        "nav": "lotes", "batch": batch, "state": _state(request, batch),
        "broker_down": broker_down,
        "lines": _table(request, batch), "columns": list(batch.columns or [])[:_EXTRA_SHOWN],
        "can_resume": st.runner.can_resume(batch.id, batch.state),
        "resumed": request.query_params.get("reanudado") == "1",
    })


async def batch_state(request: Request) -> Response:
    batch = _batch(request)
    if batch is None:
        return JSONResponse({"error": "no existe"}, status_code=404)
    return JSONResponse(_state(request, batch))


async def batch_table(request: Request) -> Response:
    """The table body alone: the page swaps it in while the batch runs."""
    batch = _batch(request)
    if batch is None:
        return not_found(request, "Ese lote no existe.")
    return render(request, "batch_rows.html", {"batch": batch, "lines": _table(request, batch)})


async def batch_resume(request: Request) -> Response:
    form = await checked_form(request)
    if form is None:
        return csrf_refused(request)
    batch = _batch(request)
    if batch is None:
        return not_found(request, "Ese lote no existe.")
    if batch.state != "done":
        web(request).runner.start(batch.id)
    return RedirectResponse(f"/lotes/{batch.id}", status_code=303)


async def batch_file(request: Request) -> Response:
    batch = _batch(request)
    if batch is None:
        return not_found(request, "Ese lote no existe.")
    relative = request.path_params["path"]
    if inside(batch.out_dir, relative) is None:
        return not_found(request, "Ese archivo no existe en este lote.")
    base = Path(os.path.abspath(batch.out_dir))
    wanted = Path(os.path.normpath(base / relative))
    # Only what constancias recorded: a file of the list, or a folder holding some of them.
    recorded = [f for f in await run_in_threadpool(recorded_files, request, batch)
                if f.is_relative_to(base)]
    if wanted in recorded:
        checks = await run_in_threadpool(web(request).storage.checks, batch.id)
        owner = next((c.curp for c in checks
                      if str(wanted) in (c.pdf_path, c.evidence_path)), None)
        await audit(request, "download_pdf" if wanted.suffix.lower() == ".pdf"
                    else "download_file", batch_id=batch.id, curps=[owner],
                    detail=relative)
        return send_file(wanted, wanted.name, inline=wanted.suffix.lower() in _INLINE)
    below = [f for f in recorded if f.is_relative_to(wanted) and f != wanted]
    if not below or wanted == base:
        return not_found(request, "Ese archivo no existe en este lote.")
    children = {wanted / f.relative_to(wanted).parts[0] for f in below}
    entries = sorted(children, key=lambda p: (p not in recorded, p.name))
    return render(request, "folder.html", {
        "nav": "lotes", "batch": batch, "folder": wanted.relative_to(base).as_posix(),
        "entries": [{"name": p.name + ("" if p in recorded else "/"),
                     "url": f"/lotes/{batch.id}/archivos/{p.relative_to(base).as_posix()}",
                     "size": p.stat().st_size if p in recorded else None} for p in entries],
    })


def send_file(path: Path, filename: str, *, inline: bool = False,
          background: BackgroundTask | None = None) -> Response:
    media_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
    if media_type == "text/html":
        media_type = "application/octet-stream"  # captured portal pages never run here
    # A file is data, not a page of this site: no scripts, no same-origin access. (PDFs are
    # exempt: Chromium's viewer refuses to render inside a sandboxed document.)
    headers = {} if media_type == "application/pdf" else {"Content-Security-Policy": _FILE_CSP}
    return FileResponse(path, filename=filename, media_type=media_type, background=background,
                        content_disposition_type="inline" if inline else "attachment",
                        headers=headers)


def report_file(request: Request, batch: Batch) -> tuple[Path, bool]:
    """(report file, temporary?): the batch's own report, built now if it is missing; a
    partial one (temporary file) while the batch still runs."""
    st = web(request)
    base = Path(os.path.abspath(batch.out_dir))
    if batch.state == "done":
        if batch.report_path:
            stored = Path(os.path.abspath(batch.report_path))
            if stored in recorded_files(request, batch) and stored.is_relative_to(base):
                return stored, False
        return build_report(st.settings, st.storage, batch.id, base / REPORT_NAME), False
    tmp = _tmp_dir(request)
    handle = tempfile.NamedTemporaryFile(prefix="reporte-", suffix=".xlsx", dir=tmp, delete=False)
    handle.close()
    # Written in tmp/, but it goes to the top of the batch's zip: links from the batch folder.
    return build_report(st.settings, st.storage, batch.id, Path(handle.name),
                        links_from=base), True


def _tmp_dir(request: Request) -> Path:
    path = web(request).settings.data_dir / "tmp"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


async def batch_report(request: Request) -> Response:
    batch = _batch(request)
    if batch is None:
        return not_found(request, "Ese lote no existe.")
    path, temporary = await run_in_threadpool(report_file, request, batch)
    name = f"reporte-{batch.id}.xlsx" if not temporary else f"reporte-parcial-{batch.id}.xlsx"
    cleanup = BackgroundTask(path.unlink, missing_ok=True) if temporary else None
    return send_file(path, name, background=cleanup)


async def batch_zip(request: Request) -> Response:
    batch = _batch(request)
    if batch is None:
        return not_found(request, "Ese lote no existe.")

    def make() -> tuple[Path, Path | None]:
        report, temporary = report_file(request, batch)
        if temporary:
            # Inside the zip the report must sit at the top, named as the finished one.
            staged = report.with_name(f"staged-{report.name}")
            shutil.move(report, staged)
            out = _zip_with_partial(batch, staged)
            return out, staged
        return build_zip(Path(batch.out_dir), report, recorded_files(request, batch),
                         _tmp_dir(request)), None

    def _zip_with_partial(batch: Batch, report: Path) -> Path:
        path = build_zip(Path(batch.out_dir), None, recorded_files(request, batch),
                         _tmp_dir(request))
        with zipfile.ZipFile(path, "a") as zf:
            zf.write(report, "reporte.xlsx")
        return path

    path, extra = await run_in_threadpool(make)

    def cleanup() -> None:
        path.unlink(missing_ok=True)
        if extra is not None:
            extra.unlink(missing_ok=True)

    return send_file(path, f"constancias-{batch.id}.zip", background=BackgroundTask(cleanup))
