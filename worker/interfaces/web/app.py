"""The HR web page: a Starlette app, server-rendered Jinja2 pages in Spanish.

``create_app(settings)`` wires the routes, the sessions (signed cookie, kept in storage), log-in
with throttling, and security headers.
Handlers live by concern: ``upload`` (sheet → findings → batch), ``batches`` (progress, files,
report, zip), ``people`` (nightly re-check on/off), ``captchas`` (manual solver).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from worker.core.errors import ConfigError
from worker.core.roles import BOOTSTRAP_ADMIN, Permission
from worker.core.settings import Settings
from worker.engine.limits import LocalLimiter
from worker.engine.webhooks import DeliveryLoop
from worker.interfaces.web import admin, api, batches, captchas, people, upload
from worker.interfaces.web.api import problem
from worker.interfaces.web.common import (
    WebState,
    checked_form,
    csrf_refused,
    render,
    templates_for,
    web,
)
from worker.interfaces.web.guard import guarded
from worker.interfaces.web.runner import BatchRunner
from worker.interfaces.web.security import (
    SESSION_ENDED,
    AuthMiddleware,
    SecurityHeadersMiddleware,
    csrf_ok,
    is_logged_in,
    log_in,
    log_out,
    password_weakness,
    safe_next,
    session_secret,
)
from worker.interfaces.web.throttle import LoginThrottle
from worker.services.batches import open_storage
from worker.storage.accounts import authenticate, ensure_bootstrap_admin, has_own_admin

__all__ = ["create_app"]

STATIC_DIR = Path(__file__).parent / "static"
_NOTES = {
    SESSION_ENDED: "Su sesión terminó (salió de la página, pasó mucho tiempo sin usarla o "
                   "cambió su cuenta). Escriba su contraseña para entrar de nuevo.",
    "salio": "Salió de la página. Escriba su contraseña para entrar de nuevo.",
}


async def login_form(request: Request) -> Response:
    target = safe_next(request.query_params.get("siguiente"))
    if is_logged_in(request):
        return RedirectResponse(target, status_code=303)
    return render(request, "login.html", {
        "next": target, "note": _NOTES.get(request.query_params.get("motivo", "")),
    })


def _wait_text(seconds: float) -> str:
    if seconds < 90:
        n = max(1, math.ceil(seconds))
        return f"{n} segundo{'s' if n != 1 else ''}"
    n = math.ceil(seconds / 60)
    return f"{n} minutos"


async def login(request: Request) -> Response:
    form = await request.form(max_files=0, max_fields=10)
    target = safe_next(str(form.get("siguiente", "")))
    if not csrf_ok(request, form.get("csrf")):
        return render(request, "login.html", {
            "next": target, "error": "La página de acceso venció. Escriba la contraseña de nuevo.",
        }, status_code=403)
    state = web(request)
    # No user name: the bootstrap admin, i.e. today's single password keeps working as it did.
    name = str(form.get("usuario", "")).strip()[:64] or BOOTSTRAP_ADMIN
    keys = [("address", request.client.host if request.client else "?"),
            ("account", name.lower())]
    # A try inside the first, short wait (a person retyping) is held until the wait ends;
    # inside a longer one it is refused. The password check is slow (Argon2, in a thread), so
    # checks run one at a time under a lock and the wait is looked at again inside it: parallel
    # tries always see each other's failures.
    while True:
        while 0 < (wait := state.throttle.wait_s(keys)) <= state.settings.web_login_delay_s:
            await asyncio.sleep(wait)
        if wait > 0:
            state.throttle.refused(keys, wait)
            response = render(request, "login.html", {
                "next": target,
                "error": f"Demasiados intentos fallidos. Espere {_wait_text(wait)} y vuelva a "
                         "escribir la contraseña.",
            }, status_code=429)
            response.headers["retry-after"] = str(math.ceil(wait))
            return response
        async with state.login_lock:
            if state.throttle.wait_s(keys) > 0:
                continue  # a try that held the lock just failed: wait as it says
            user = await run_in_threadpool(authenticate, state.storage, name,
                                           str(form.get("password", "")),
                                           state.settings.web_password)
            if user is None:
                state.throttle.failed(keys)
            break
    if user is None:
        return render(request, "login.html", {
            "next": target, "user_name": str(form.get("usuario", ""))[:64],
            "error": "Usuario o contraseña incorrectos."}, status_code=401)
    state.throttle.succeeded(keys)
    await run_in_threadpool(log_in, request, state.storage, user.id)
    return RedirectResponse(target, status_code=303)


async def logout(request: Request) -> Response:
    form = await checked_form(request)
    if form is None:
        return csrf_refused(request)
    await run_in_threadpool(log_out, request, web(request).storage)
    return RedirectResponse("/entrar?motivo=salio", status_code=303)


async def _http_error(request: Request, exc: Exception) -> Response:
    code = exc.status_code if isinstance(exc, HTTPException) else 500
    if request.url.path.startswith("/api/"):
        return problem(code, {404: "Esa ruta no existe en la API.",
                              405: "Esa ruta no acepta este método."}.get(
                                  code, "No se pudo completar la solicitud."))
    titles = {404: "No encontrado", 405: "Acción no permitida", 413: "Archivo demasiado grande"}
    messages = {404: "No encontramos lo que busca.",
                405: "Esa dirección no acepta esta acción."}
    return render(request, "error.html", {
        "title": titles.get(code, "Error"),
        "message": messages.get(code, "No se pudo completar la solicitud."),
    }, status_code=code)


async def _server_error(request: Request, exc: Exception) -> Response:
    if request.url.path.startswith("/api/"):
        return problem(500, "Algo falló de nuestro lado; inténtelo de nuevo en unos minutos.")
    return render(request, "error.html", {
        "title": "Error interno",
        "message": "Algo falló de nuestro lado. Lo ya procesado quedó guardado; inténtelo de "
                   "nuevo en unos minutos o avise a soporte técnico.",
    }, status_code=500)


V, D, U = Permission.VIEW, Permission.DOWNLOAD, Permission.UPLOAD


def routes() -> list[Route | Mount]:
    return [
        Route("/entrar", login_form, methods=["GET"]),
        Route("/entrar", login, methods=["POST"]),
        Route("/salir", logout, methods=["POST"]),
        Route("/", guarded(V, upload.home), methods=["GET"]),
        Route("/subir", guarded(U, upload.upload), methods=["POST"]),
        Route("/subir/{token}", guarded(U, upload.findings), methods=["GET"]),
        Route("/subir/{token}/procesar", guarded(U, upload.process), methods=["POST"]),
        Route("/lotes", guarded(V, batches.batch_list), methods=["GET"]),
        Route("/lotes/{batch_id}", guarded(V, batches.batch_page, audit_as="view_batch"),
              methods=["GET"]),
        Route("/lotes/{batch_id}/estado", guarded(V, batches.batch_state), methods=["GET"]),
        Route("/lotes/{batch_id}/tabla", guarded(V, batches.batch_table), methods=["GET"]),
        Route("/lotes/{batch_id}/reanudar", guarded(U, batches.batch_resume,
                                                    audit_as="resume"), methods=["POST"]),
        Route("/lotes/{batch_id}/reporte", guarded(D, batches.batch_report,
                                                   audit_as="download_report"), methods=["GET"]),
        Route("/lotes/{batch_id}/zip", guarded(D, batches.batch_zip, audit_as="download_zip"),
              methods=["GET"]),
        Route("/lotes/{batch_id}/archivos/{path:path}", guarded(D, batches.batch_file),
              methods=["GET"]),
        Route("/personas", guarded(V, people.people_page), methods=["GET"]),
        Route("/personas", guarded(U, people.people_update), methods=["POST"]),
        Route("/captchas", guarded(V, captchas.captcha_page), methods=["GET"]),
        Route("/captchas", guarded(U, captchas.captcha_answer), methods=["POST"]),
        Route("/captchas/{key}/imagen", guarded(V, captchas.captcha_image), methods=["GET"]),
        *admin.routes(),
        Mount("/api/v1", routes=api.routes()),
        Mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static"),
    ]


def create_app(settings: Settings) -> Starlette:
    """The web app over ``settings`` (storage migrated, session key ready).

    Raises ``ConfigError`` with a weak ``CONSTANCIAS_WEB_PASSWORD``, or without one while no
    admin account has a password of its own: the page holds personal data.
    """
    if settings.web_password:
        weakness = password_weakness(settings.web_password, settings.web_password_min_length)
        if weakness:
            raise ConfigError(f"La contraseña de la página web es demasiado débil: {weakness} "
                              "(CONSTANCIAS_WEB_PASSWORD).")
    storage = open_storage(settings)
    if settings.web_password:
        ensure_bootstrap_admin(storage)
    elif not has_own_admin(storage):
        raise ConfigError("Falta la contraseña de la página web: defínala en el entorno o en "
                          ".env (CONSTANCIAS_WEB_PASSWORD), o cree una cuenta con «constancias "
                          "usuarios agregar NOMBRE --rol admin».")
    # Sessions that ended while the page was down are not kept any longer than needed.
    storage.end_idle_web_sessions(idle_s=settings.web_session_idle_s,
                                  max_age_s=settings.web_session_max_age_s)
    secret = session_secret(settings.data_dir, settings.web_password or "")
    # Webhook deliveries are sent by the web server, whichever process emitted them.
    deliveries = DeliveryLoop(settings, storage)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        deliveries.start()
        try:
            yield
        finally:
            await run_in_threadpool(deliveries.stop)

    app = Starlette(
        lifespan=lifespan,
        routes=routes(),
        middleware=[
            Middleware(SecurityHeadersMiddleware),
            # The cookie outlives the session row by design: the row decides (AuthMiddleware).
            Middleware(SessionMiddleware, secret_key=secret, session_cookie="constancias_sesion",
                       max_age=math.ceil(settings.web_session_max_age_s), same_site="lax",
                       https_only=False),
            Middleware(AuthMiddleware, storage=storage, settings=settings),
        ],
        exception_handlers={HTTPException: _http_error, 500: _server_error},
    )
    app.state.web = WebState(settings=settings, storage=storage,
                             runner=BatchRunner(settings, storage),
                             templates=templates_for(settings),
                             throttle=LoginThrottle(settings),
                             api_limiter=LocalLimiter(
                                 rate_per_min=lambda _: settings.api_rate_per_minute,
                                 # The bucket holds one minute's allowance (the burst).
                                 max_concurrency=lambda _: settings.api_rate_per_minute))
    app.state.deliveries = deliveries
    return app
