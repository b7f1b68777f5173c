"""Admin pages: user accounts, API tokens (with webhooks and their delivery log), audit trail."""

from __future__ import annotations

import csv
import io
from collections.abc import Awaitable, Callable, Iterable

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from worker.core.logs import mask_curp
from worker.core.roles import ROLE_LABELS, SCOPES, Permission, parse_scopes
from worker.interfaces.web.common import WebState, checked_form, csrf_refused, render, web
from worker.interfaces.web.guard import audit, current_user, guarded
from worker.interfaces.web.security import password_weakness
from worker.report.safe_text import csv_safe
from worker.storage.accounts import (
    AccountError,
    add_token,
    add_user,
    disable_user,
    list_tokens,
    list_users,
    revoke_token,
    set_password,
)
from worker.storage.audit import ACTIONS, AuditEvent, AuditFilter, events
from worker.storage.webhooks import recent_deliveries

__all__ = ["routes"]

_NOTES = {
    "creado": "Usuario creado.", "desactivado": "Usuario desactivado: sus sesiones terminaron.",
    "contrasena": "Contraseña cambiada: las sesiones de ese usuario terminaron.",
    "revocado": "Token revocado: deja de funcionar desde ahora.",
}


def _users_page(request: Request, *, error: str | None = None,
                status_code: int = 200) -> Response:
    return render(request, "users.html", {
        "nav": "usuarios", "users": list_users(web(request).storage), "roles": ROLE_LABELS,
        "error": error, "note": _NOTES.get(request.query_params.get("hecho", "")),
    }, status_code=status_code)


async def users_page(request: Request) -> Response:
    return await run_in_threadpool(_users_page, request)


async def _account_form(
        request: Request, page: Callable[..., Response],
        act: Callable[[Request, FormData, WebState, str], Awaitable[Response]]) -> Response:
    """A posted admin form: refused without its CSRF token, else ``act(request, form, state,
    name)`` answers; an ``AccountError`` it raises shows ``page`` again with the message (400)."""
    form = await checked_form(request)
    if form is None:
        return csrf_refused(request)
    try:
        return await act(request, form, web(request), str(form.get("nombre", "")).strip())
    except AccountError as err:
        message = str(err)
        return await run_in_threadpool(lambda: page(request, error=message, status_code=400))


async def users_action(request: Request) -> Response:
    """One form for the three actions: add (no name in the path), disable, new password."""
    return await _account_form(request, _users_page, _user_action)


async def _user_action(request: Request, form: FormData, st: WebState, name: str) -> Response:
    action = str(form.get("accion", ""))
    password = str(form.get("contrasena", ""))
    if action in ("crear", "contrasena"):
        weakness = password_weakness(password, st.settings.web_password_min_length)
        if weakness:
            raise AccountError(f"La contraseña es demasiado débil: {weakness}.")
    if action == "crear":
        role = str(form.get("rol", ""))
        user = await run_in_threadpool(add_user, st.storage, name, role, password)
        await audit(request, "user_add", detail=f"{user.name} ({user.role})")
        done = "creado"
    elif action == "desactivar":
        me = current_user(request)
        if me is not None and me.name.lower() == name.lower():
            raise AccountError("No puede desactivar su propia cuenta.")
        await run_in_threadpool(disable_user, st.storage, name)
        await audit(request, "user_disable", detail=name)
        done = "desactivado"
    elif action == "contrasena":
        await run_in_threadpool(set_password, st.storage, name, password)
        await audit(request, "user_password", detail=name)
        done = "contrasena"
    else:
        raise AccountError("Acción desconocida.")
    return RedirectResponse(f"/usuarios?hecho={done}", status_code=303)


def _tokens_page(request: Request, *, created: tuple[str, str] | None = None,
                 error: str | None = None, status_code: int = 200) -> Response:
    st = web(request)
    return render(request, "tokens.html", {
        "nav": "tokens", "tokens": list_tokens(st.storage), "scopes": SCOPES,
        "created": created, "error": error,
        "note": _NOTES.get(request.query_params.get("hecho", "")),
        "deliveries": recent_deliveries(st.storage),
    }, status_code=status_code)


async def tokens_page(request: Request) -> Response:
    return await run_in_threadpool(_tokens_page, request)


async def tokens_action(request: Request) -> Response:
    return await _account_form(request, _tokens_page, _token_action)


async def _token_action(request: Request, form: FormData, st: WebState, name: str) -> Response:
    if form.get("accion") == "revocar":
        await run_in_threadpool(revoke_token, st.storage, name)
        await audit(request, "token_revoke", detail=name)
        return RedirectResponse("/tokens?hecho=revocado", status_code=303)
    try:
        scopes = parse_scopes(",".join(str(v) for v in form.getlist("permisos")))
    except ValueError:
        raise AccountError("Elija al menos un permiso para el token.") from None
    me = current_user(request)
    token, secret = await run_in_threadpool(add_token, st.storage, name, scopes,
                                            me.id if me else None)
    await audit(request, "token_add", detail=f"{token.name}: {','.join(token.scopes)}")
    # Shown once, on this answer only (never stored, never in a URL).
    return await run_in_threadpool(lambda: _tokens_page(request, created=(token.name, secret)))


def _filter(request: Request) -> AuditFilter:
    q = request.query_params
    return AuditFilter(actor=q.get("quien", "")[:80], action=q.get("accion", "")[:32],
                       batch_id=q.get("lote", "")[:32], curp=q.get("curp", "")[:18])


async def audit_page(request: Request) -> Response:
    flt = _filter(request)
    rows = await run_in_threadpool(events, web(request).storage, flt)
    return render(request, "audit.html", {
        "nav": "auditoria", "rows": rows, "f": flt, "actions": ACTIONS, "mask": mask_curp,
        "query": request.url.query,
    })


async def audit_csv(request: Request) -> Response:
    st = web(request)
    rows = await run_in_threadpool(events, st.storage,
                                   AuditFilter(**{**_filter(request).__dict__, "limit": 100_000}))
    return Response(_audit_rows_csv(rows, st.settings.tz), media_type="text/csv; charset=utf-8",
                    headers={"content-disposition": 'attachment; filename="auditoria.csv"'})


def routes() -> list[Route]:
    a = Permission.ADMIN
    return [
        Route("/usuarios", guarded(a, users_page), methods=["GET"]),
        Route("/usuarios", guarded(a, users_action), methods=["POST"]),
        Route("/tokens", guarded(a, tokens_page), methods=["GET"]),
        Route("/tokens", guarded(a, tokens_action), methods=["POST"]),
        Route("/auditoria", guarded(a, audit_page), methods=["GET"]),
        Route("/auditoria.csv", guarded(a, audit_csv), methods=["GET"]),
    ]


def _audit_rows_csv(rows: Iterable[AuditEvent], tz: object) -> str:
    """The audit page's CSV download: Spanish headers, CURPs masked, times in the page's time
    zone; spreadsheet-safe."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["Fecha", "Quién", "Dirección", "Acción", "Lote", "CURP", "Detalle"])
    for e in rows:
        writer.writerow([csv_safe(v) for v in (
            e.at.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S"), e.actor,  # type: ignore[arg-type]
            e.address, ACTIONS.get(e.action, e.action), e.batch_id or "",
            mask_curp(e.curp) if e.curp else "", e.detail)])
    return out.getvalue()
