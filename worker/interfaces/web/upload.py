"""Upload a sheet → its findings → "Procesar" starts the batch."""

from __future__ import annotations

import json
import shutil
from typing import Any

import structlog
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import ClientDisconnect, Request
from starlette.responses import RedirectResponse, Response

from flows import registry
from worker.core.errors import InputError
from worker.intake.read import read_sheet
from worker.intake.result import Intake
from worker.interfaces.web.common import checked_form, csrf_refused, not_found, render, web
from worker.interfaces.web.files import UPLOAD_TOKEN_RE, new_upload, upload_dir
from worker.interfaces.web.guard import audit
from worker.interfaces.web.security import csrf_ok
from worker.services.batches import prepare_batch
from worker.storage.doctor_runs import last_run

__all__ = ["home", "upload", "findings", "process"]

log = structlog.get_logger("constancias.web")

_FINDINGS = "hallazgos.json"
#: Room for the multipart envelope around the file itself.
_ENVELOPE = 64 * 1024
#: Rows of each list shown on the findings page (the report has them all).
_SHOWN = 300


def _mb(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MB" if n >= 1024 * 1024 else f"{n / 1024:.0f} KB"


async def home(request: Request) -> Response:
    st = web(request)
    batches = st.storage.list_batches(limit=5)
    return render(request, "home.html", {
        "nav": "home", "batches": batches, "limit": _mb(st.settings.web_max_upload_bytes),
        "limit_bytes": st.settings.web_max_upload_bytes,
        "doctor": last_run(st.storage),
    })


def _upload_error(request: Request, message: str, status_code: int) -> Response:
    st = web(request)
    return render(request, "home.html", {
        "nav": "home", "batches": st.storage.list_batches(limit=5), "error": message,
        "limit": _mb(st.settings.web_max_upload_bytes),
        "limit_bytes": st.settings.web_max_upload_bytes,
    }, status_code=status_code)


def _too_large(request: Request) -> Response:
    limit = _mb(web(request).settings.web_max_upload_bytes)
    return _upload_error(request, f"El archivo es demasiado grande: el límite es {limit}. "
                                  "Divida la hoja en partes más pequeñas.", 413)


async def _read_limited(request: Request, limit: int) -> bytes | None:
    """The request body, or ``None`` once it passes ``limit``.

    A browser that is cut off mid-upload shows a network error instead of our message, so a
    modest overflow is read and discarded; a huge one is not worth reading."""
    declared = request.headers.get("content-length", "")
    drain_cap = 2 * limit + 8 * 1024 * 1024
    if declared.isdigit() and int(declared) > drain_cap:
        return None
    body = bytearray()
    too_big = declared.isdigit() and int(declared) > limit
    async for chunk in request.stream():
        if too_big:
            continue
        body += chunk
        if len(body) > limit:
            too_big = True
            body.clear()
    return None if too_big else bytes(body)


async def upload(request: Request) -> Response:
    st = web(request)
    limit = st.settings.web_max_upload_bytes
    try:
        body = await _read_limited(request, limit + _ENVELOPE)
    except ClientDisconnect:
        return Response(status_code=400)
    if body is None:
        return _too_large(request)

    async def replay() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    form = await Request(request.scope, replay).form(max_files=1, max_fields=10,
                                                    max_part_size=64 * 1024)
    if not csrf_ok(request, form.get("csrf")):
        return csrf_refused(request)
    sheet = form.get("hoja")
    if not isinstance(sheet, UploadFile) or not sheet.filename:
        return _upload_error(request, "Elija un archivo .xlsx o .csv para cargar.", 400)
    data = await sheet.read()
    if len(data) > limit:
        return _too_large(request)
    if not data:
        return _upload_error(request, f"El archivo «{sheet.filename}» está vacío.", 400)
    token, path = new_upload(st.settings.data_dir, sheet.filename)
    path.write_bytes(data)
    try:
        intake = await run_in_threadpool(read_sheet, path, st.settings)
    except InputError as err:
        shutil.rmtree(path.parent, ignore_errors=True)
        # The reader names the file by its stored (sanitised) name; HR knows the original.
        message = str(err).replace(path.name, f"«{sheet.filename}»")
        return _upload_error(request, message, 400)
    _save_findings(path.parent, sheet.filename, path.name, intake)
    log.info("web_upload", token=token, rows=len(intake.rows), bytes=len(data))
    await audit(request, "upload", detail=sheet.filename)
    return RedirectResponse(f"/subir/{token}", status_code=303)


def _save_findings(folder: Any, original: str, stored: str, intake: Intake) -> None:
    data = intake.to_json()
    data.update({
        "original_name": original, "stored_name": stored, "sheet": intake.sheet_name,
        "header_row": intake.header_row, "curp_header": intake.curp_header,
        "columns": intake.columns,
        "preview": [{"row": r.row, "curp": r.curp, "extra": list(r.extra.values())[:2]}
                    for r in intake.rows if r.curp is not None and r.duplicate_of is None][:5],
        "preview_columns": intake.columns[:2],
    })
    (folder / _FINDINGS).write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")


def _load_upload(request: Request) -> tuple[Any, dict[str, Any]] | None:
    token = request.path_params["token"]
    if not UPLOAD_TOKEN_RE.fullmatch(token):
        return None
    folder = upload_dir(web(request).settings.data_dir) / token
    try:
        data = json.loads((folder / _FINDINGS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return folder, data


def _findings_page(request: Request, data: dict[str, Any], *, error: str | None = None,
                   portals: list[str] | None = None, status_code: int = 200) -> Response:
    return render(request, "findings.html", {
        "nav": "home", "token": request.path_params["token"], "f": data, "shown": _SHOWN,
        "error": error, "portals": portals if portals is not None else registry.names(),
    }, status_code=status_code)


async def findings(request: Request) -> Response:
    loaded = _load_upload(request)
    if loaded is None:
        return not_found(request, "Esa carga no existe o ya se procesó.")
    return _findings_page(request, loaded[1])


async def process(request: Request) -> Response:
    st = web(request)
    form = await checked_form(request)
    if form is None:
        return csrf_refused(request)
    loaded = _load_upload(request)
    if loaded is None:
        return not_found(request, "Esa carga no existe o ya se procesó.")
    folder, data = loaded
    portals = [p for p in registry.names() if p in form.getlist("portales")]
    if not portals:
        return _findings_page(request, data, portals=[], status_code=400,
                              error="Elija al menos un portal (IMSS o ISSSTE).")
    if data["valid"] == 0:
        return _findings_page(request, data, status_code=400,
                              error="La hoja no tiene ninguna CURP válida que consultar.")
    sheet = folder / data["stored_name"]
    try:
        batch_id, resumed = await run_in_threadpool(prepare_batch, st.settings, st.storage,
                                                    sheet, portals)
    except InputError as err:
        return _findings_page(request, data, status_code=400, error=str(err))
    # The batch keeps its own copy of the sheet (entrada.*); the upload is no longer needed.
    shutil.rmtree(folder, ignore_errors=True)
    st.runner.start(batch_id)
    await audit(request, "process", batch_id=batch_id, detail=data["original_name"])
    suffix = "?reanudado=1" if resumed else ""
    return RedirectResponse(f"/lotes/{batch_id}{suffix}", status_code=303)
