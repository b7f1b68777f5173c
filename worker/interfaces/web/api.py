"""The JSON API for HR systems under ``/api/v1`` (SPEC §9), mounted in the web app.

Every request carries ``Authorization: Bearer TOKEN``; each route needs one scope. Errors are
RFC 9457 problem details (``application/problem+json``) with a Spanish ``detail``; nothing
ever answers with a traceback. The work itself is the page's: the same intake
(``read_sheet``), the same batch creation (``prepare_batch``), the same runner, the same
``status --json`` object, the same report and file checks.
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from collections.abc import Awaitable, Callable
from functools import wraps
from pathlib import Path
from typing import Any

import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from flows import registry
from worker.core.errors import InputError
from worker.engine.limits import LocalLimiter
from worker.engine.webhooks import EVENTS
from worker.intake.read import read_sheet
from worker.interfaces.web.batches import recorded_files, report_file, send_file
from worker.interfaces.web.common import web
from worker.interfaces.web.files import inside, new_upload
from worker.interfaces.web.guard import client_address
from worker.interfaces.web.openapi import DOCS_HTML, openapi_document
from worker.interfaces.web.security import is_logged_in
from worker.services.batches import batch_status, captchas_waiting, prepare_batch
from worker.storage.accounts import (
    AccountError,
    TokenView,
    remember_batch,
    remembered_batch,
    token_owner,
)
from worker.storage.audit import record
from worker.storage.webhooks import add_webhook

__all__ = ["routes", "problem", "TOKEN_SCOPE_KEY"]

log = structlog.get_logger("constancias.api")

PROBLEM = "application/problem+json"
#: ``scope`` key where the authenticated token of an API request is left (``TokenView``).
TOKEN_SCOPE_KEY = "constancias.api_token"  # noqa: S105 - a dict key, not a secret
_TITLES = {400: "Solicitud inválida", 401: "Falta autenticación", 403: "Sin permiso",
           404: "No encontrado", 405: "Método no permitido", 409: "Conflicto",
           413: "Demasiado grande", 415: "Tipo de contenido no admitido",
           422: "Datos no procesables", 429: "Demasiadas solicitudes", 500: "Error interno"}


def problem(status: int, detail: str, *, headers: dict[str, str] | None = None,
            **extra: Any) -> JSONResponse:
    """An RFC 9457 problem details answer."""
    body = {"type": "about:blank", "title": _TITLES.get(status, "Error"), "status": status,
            "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


Endpoint = Callable[[Request], Awaitable[Response]]


def _token(request: Request) -> TokenView | None:
    return request.scope.get(TOKEN_SCOPE_KEY)


def needs(scope: str | None) -> Callable[[Endpoint], Endpoint]:
    """A valid bearer token with ``scope`` (``None``: any valid token, or a page session),
    within its rate limit; and never a traceback."""

    def wrap(handler: Endpoint) -> Endpoint:
        @wraps(handler)
        async def endpoint(request: Request) -> Response:
            st = web(request)
            header = request.headers.get("authorization", "")
            kind, _, secret = header.partition(" ")
            token = None
            if kind.lower() == "bearer" and secret.strip():
                token = await run_in_threadpool(token_owner, st.storage, secret.strip())
            if token is None:
                if scope is None and is_logged_in(request):
                    return await handler(request)
                why = ("El token no es válido o fue revocado." if header else
                       "Falta el encabezado Authorization: Bearer TOKEN.")
                return problem(401, why, headers={"www-authenticate": 'Bearer realm="api"'})
            if scope is not None and scope not in token.scopes:
                return problem(403, f"El token no tiene el permiso {scope}.")
            limiter: LocalLimiter = st.api_limiter
            key = f"token:{token.id}"
            if limiter.acquire(key) is None:
                wait = max(1, round(limiter.wait_hint(key)))
                return problem(429, f"Demasiadas solicitudes con este token: espere {wait} s.",
                               headers={"retry-after": str(wait)})
            limiter.release(key, "local")
            request.scope[TOKEN_SCOPE_KEY] = token
            try:
                return await handler(request)
            except ClientDisconnect:
                return Response(status_code=400)
            except Exception:  # noqa: BLE001 - an API answers problem details, never a trace
                log.exception("api_failed", path=request.url.path)
                return problem(500, "Algo falló de nuestro lado; lo ya procesado quedó "
                                    "guardado. Inténtelo de nuevo en unos minutos.")

        endpoint.scope = scope  # type: ignore[attr-defined]
        return endpoint

    return wrap


async def _audit(request: Request, action: str, *, batch_id: str | None = None,
                 curps: list[str | None] | None = None, detail: str = "") -> None:
    token = _token(request)
    await run_in_threadpool(record, web(request).storage,
                            actor=f"token:{token.name}" if token else "?", action=action,
                            address=client_address(request), batch_id=batch_id,
                            curps=curps or [None], detail=detail)


# --- POST /batches ------------------------------------------------------------------------
class _Person(BaseModel):
    model_config = ConfigDict(extra="allow")

    curp: str = Field(max_length=64)
    external_id: str | None = Field(None, max_length=255)


class _BatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    people: list[_Person] = Field(min_length=1)
    portals: list[str] = Field(default_factory=registry.names)

    @field_validator("portals")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        names = [p.strip().lower() for p in value]
        if not names or any(p not in registry.names() for p in names):
            raise ValueError("use imss, issste o ambos")
        return [p for p in registry.names() if p in names]


def _people_csv(people: list[_Person], path: Path) -> None:
    """The JSON people as a sheet, so they go through the very intake HR's uploads do."""
    extra = list(dict.fromkeys(k for p in people for k in (p.model_extra or {})))
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["CURP", "external_id", *extra])
        for p in people:
            more = p.model_extra or {}
            writer.writerow([p.curp, p.external_id or "",
                             *("" if more.get(k) is None else str(more[k]) for k in extra)])


#: Pydantic error type -> what it means, in Spanish (the API's ``detail`` is for people).
_ERROR_TEXTS = {
    "json_invalid": "no es JSON válido", "json_type": "no es JSON válido",
    "missing": "falta", "extra_forbidden": "no es un campo admitido",
    "too_short": "está vacío", "too_long": "tiene demasiados elementos",
    "string_too_long": "es demasiado largo", "string_type": "debe ser texto",
    "list_type": "debe ser una lista", "model_type": "debe ser un objeto",
    "model_attributes_type": "debe ser un objeto",
    "string_pattern_mismatch": "no tiene un formato válido",
}


def _validation_detail(err: ValidationError) -> str:
    first = err.errors()[0]
    where = ".".join(str(x) for x in first["loc"]) or "cuerpo"
    if first["type"] == "value_error":  # our own validators speak Spanish already
        text = str(first.get("ctx", {}).get("error", "valor no válido"))
    else:
        text = _ERROR_TEXTS.get(first["type"], "tiene un valor no válido")
    return f"{where}: {text}."


async def create_batch(request: Request) -> Response:
    st = web(request)
    limit = st.settings.web_max_upload_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit + 64 * 1024:
        return problem(413, f"La solicitud pasa del límite de {limit} bytes.")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit + 64 * 1024:
            return problem(413, f"La solicitud pasa del límite de {limit} bytes.")
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    token = _token(request)
    assert token is not None
    key = request.headers.get("idempotency-key", "").strip()[:255]
    digest = hashlib.sha256(ctype.encode() + b"|" + bytes(body)).hexdigest()
    if key:
        try:
            earlier = await run_in_threadpool(remembered_batch, st.storage, token.id, key, digest)
        except AccountError as err:
            return problem(409, str(err))
        if earlier is not None:
            return JSONResponse({"batch_id": earlier}, status_code=202)

    async def replay() -> dict[str, Any]:
        return {"type": "http.request", "body": bytes(body), "more_body": False}

    if ctype == "application/json":
        try:
            data = _BatchIn.model_validate_json(bytes(body))
        except ValidationError as err:
            return problem(422, _validation_detail(err))
        if len(data.people) > st.settings.api_max_people:
            return problem(413, f"Más de {st.settings.api_max_people} personas en una "
                                "solicitud: divídala.")
        upload_token, sheet = new_upload(st.settings.data_dir, "personas.csv")
        await run_in_threadpool(_people_csv, data.people, sheet)
        portals = data.portals
        source = "API (JSON)"
    elif ctype == "multipart/form-data":
        try:
            form = await Request(request.scope, replay).form(max_files=1, max_fields=10)
        except (MultiPartException, HTTPException):
            return problem(422, "El formulario multipart no se pudo leer: envíe el archivo "
                                "en el campo «file».")
        upload = form.get("file")
        if not isinstance(upload, UploadFile) or not upload.filename:
            return problem(422, "Falta el archivo: envíelo en el campo «file».")
        raw_portals = str(form.get("portals", ",".join(registry.names())))
        try:
            portals = _BatchIn.model_validate({"people": [{"curp": "-"}],
                                               "portals": raw_portals.split(",")}).portals
        except ValidationError as err:
            return problem(422, _validation_detail(err))
        upload_token, sheet = new_upload(st.settings.data_dir, upload.filename)
        sheet.write_bytes(await upload.read())
        source = upload.filename
    else:
        return problem(415, "Envíe JSON (application/json) o un archivo "
                            "(multipart/form-data, campo «file»).")
    try:
        try:
            intake = await run_in_threadpool(read_sheet, sheet, st.settings)
        except InputError as err:
            return problem(422, str(err).replace(sheet.name, f"«{source}»"))
        if intake.to_json()["valid"] == 0:
            return problem(422, "No hay ninguna CURP válida que consultar.",
                           invalid=intake.to_json()["invalid"][:100])
        batch_id, _ = await run_in_threadpool(prepare_batch, st.settings, st.storage, sheet,
                                              portals, intake=intake)
    finally:
        shutil.rmtree(sheet.parent, ignore_errors=True)
    if key:
        batch_id = await run_in_threadpool(remember_batch, st.storage, token.id, key, digest,
                                           batch_id)
    st.runner.start(batch_id)
    await _audit(request, "process", batch_id=batch_id, detail=source)
    log.info("api_batch", batch_id=batch_id, token=token.name, upload=upload_token)
    return JSONResponse({"batch_id": batch_id}, status_code=202,
                        headers={"location": f"/api/v1/batches/{batch_id}"})


# --- reading ------------------------------------------------------------------------------
async def get_batch(request: Request) -> Response:
    st = web(request)
    batch_id = request.path_params["batch_id"]
    status = await run_in_threadpool(batch_status, st.storage, batch_id)
    if status is None:
        return problem(404, f"No existe el lote {batch_id}.")
    waiting = captchas_waiting(st.settings) if status["state"] != "done" else 0
    await _audit(request, "view_batch", batch_id=batch_id)
    return Response(json.dumps({**status, "captchas_waiting": waiting}, ensure_ascii=False,
                               default=str), media_type="application/json")


async def get_report(request: Request) -> Response:
    st = web(request)
    batch = await run_in_threadpool(st.storage.get_batch, request.path_params["batch_id"])
    if batch is None:
        return problem(404, f"No existe el lote {request.path_params['batch_id']}.")
    path, temporary = await run_in_threadpool(report_file, request, batch)
    await _audit(request, "download_report", batch_id=batch.id)
    name = f"reporte-{batch.id}.xlsx" if not temporary else f"reporte-parcial-{batch.id}.xlsx"
    return send_file(path, name, background=BackgroundTask(path.unlink, missing_ok=True)
                     if temporary else None)


def _check_json(c: Any) -> dict[str, Any]:
    return {"check_id": c.id, "batch_id": c.batch_id, "portal": c.portal, "status": c.status,
            "detail": c.detail, "valid_until": c.valid_until.isoformat() if c.valid_until
            else None, "finished_at": c.finished_at.isoformat() if c.finished_at else None,
            "pdf": f"/api/v1/checks/{c.id}/pdf" if c.pdf_path else None}


async def get_person(request: Request) -> Response:
    st = web(request)
    curp = request.path_params["curp"].strip().upper()
    history = await run_in_threadpool(st.storage.history, curp)
    if not history:
        return problem(404, "No hay resultados de esa CURP.")
    latest: dict[str, dict[str, Any]] = {}
    for c in history:  # oldest first: the last one per portal wins
        latest[c.portal] = _check_json(c)
    await _audit(request, "view_person", curps=[curp])
    return JSONResponse({"curp": curp, "latest": latest,
                         "history": [_check_json(c) for c in reversed(history)]})


async def get_check_pdf(request: Request) -> Response:
    st = web(request)
    raw = request.path_params["check_id"]
    check = await run_in_threadpool(st.storage.get_check, int(raw)) if raw.isdigit() else None
    batch = await run_in_threadpool(st.storage.get_batch, check.batch_id) if check else None
    if check is None or batch is None or not check.pdf_path:
        return problem(404, "Esa consulta no existe o no tiene constancia en PDF.")
    base = Path(batch.out_dir)
    pdf = Path(check.pdf_path)
    recorded = await run_in_threadpool(recorded_files, request, batch)
    try:
        relative = pdf.relative_to(base).as_posix()
    except ValueError:
        relative = ""
    if not relative or inside(base, relative) is None or pdf not in recorded:
        return problem(404, "La constancia en PDF de esa consulta ya no está.")
    await _audit(request, "download_pdf", batch_id=batch.id, curps=[check.curp])
    return send_file(pdf, pdf.name)


# --- webhooks -----------------------------------------------------------------------------
class _WebhookIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=2000, pattern=r"^https?://[^\s/]+")
    events: list[str] = Field(min_length=1)

    @field_validator("events")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        if any(e not in EVENTS for e in value):
            raise ValueError(f"use {', '.join(EVENTS)}")
        return list(dict.fromkeys(value))


async def create_webhook(request: Request) -> Response:
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        return problem(415, "Envíe JSON (application/json).")
    body = await request.body()
    if len(body) > 64 * 1024:
        return problem(413, "La solicitud es demasiado grande.")
    try:
        data = _WebhookIn.model_validate_json(body)
    except ValidationError as err:
        return problem(422, _validation_detail(err))
    token = _token(request)
    hook_id, secret = await run_in_threadpool(add_webhook, web(request).storage, data.url,
                                              data.events, token.id if token else None)
    await _audit(request, "webhook_add", detail=f"{data.url} {','.join(data.events)}")
    return JSONResponse({"id": hook_id, "url": data.url, "events": data.events,
                         "secret": secret}, status_code=201)


# --- the document -------------------------------------------------------------------------
async def openapi_json(request: Request) -> Response:
    return JSONResponse(openapi_document())


async def docs_page(request: Request) -> Response:
    return HTMLResponse(DOCS_HTML)


def routes() -> list[Route]:
    return [
        Route("/batches", needs("batches:write")(create_batch), methods=["POST"]),
        Route("/batches/{batch_id}", needs("batches:read")(get_batch), methods=["GET"]),
        Route("/batches/{batch_id}/report", needs("results:read")(get_report),
              methods=["GET"]),
        Route("/people/{curp}", needs("results:read")(get_person), methods=["GET"]),
        Route("/checks/{check_id}/pdf", needs("results:read")(get_check_pdf),
              methods=["GET"]),
        Route("/webhooks", needs("webhooks:write")(create_webhook), methods=["POST"]),
        Route("/openapi.json", needs(None)(openapi_json), methods=["GET"]),
        Route("/docs", needs(None)(docs_page), methods=["GET"]),
    ]
