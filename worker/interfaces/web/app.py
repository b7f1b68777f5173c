"""The HR web page: a Starlette app, server-rendered Jinja2 pages in Spanish.

``create_app(settings)`` wires the routes, the signed session, log-in and security headers.
Handlers live by concern: ``upload`` (sheet → findings → batch), ``batches`` (progress, files,
report, zip), ``people`` (nightly re-check on/off), ``captchas`` (manual solver).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from worker.core.errors import ConfigError
from worker.core.settings import Settings
from worker.interfaces.web import batches, captchas, people, upload
from worker.interfaces.web.common import (
    WebState,
    checked_form,
    csrf_refused,
    render,
    templates_for,
    web,
)
from worker.interfaces.web.runner import BatchRunner
from worker.interfaces.web.security import (
    AuthMiddleware,
    SecurityHeadersMiddleware,
    csrf_ok,
    is_logged_in,
    log_in,
    password_ok,
    safe_next,
    session_secret,
)
from worker.services.batches import open_storage

__all__ = ["create_app"]

STATIC_DIR = Path(__file__).parent / "static"
#: A session lasts a working day; after it the password is asked again.
SESSION_MAX_AGE_S = 12 * 3600
#: Slows password guessing without bothering a person who mistyped.
_WRONG_PASSWORD_DELAY_S = 0.5


async def login_form(request: Request) -> Response:
    if is_logged_in(request):
        return RedirectResponse(safe_next(request.query_params.get("siguiente")), status_code=303)
    return render(request, "login.html", {"next": safe_next(request.query_params.get("siguiente"))})


async def login(request: Request) -> Response:
    form = await request.form(max_files=0, max_fields=10)
    target = safe_next(str(form.get("siguiente", "")))
    if not csrf_ok(request, form.get("csrf")):
        return render(request, "login.html", {
            "next": target, "error": "La página de acceso venció. Escriba la contraseña de nuevo.",
        }, status_code=403)
    expected = web(request).settings.web_password or ""
    if not expected or not password_ok(str(form.get("password", "")), expected):
        await asyncio.sleep(_WRONG_PASSWORD_DELAY_S)
        return render(request, "login.html", {"next": target,
                                              "error": "Contraseña incorrecta."}, status_code=401)
    log_in(request)
    return RedirectResponse(target, status_code=303)


async def logout(request: Request) -> Response:
    form = await checked_form(request)
    if form is None:
        return csrf_refused(request)
    request.session.clear()
    return RedirectResponse("/entrar", status_code=303)


async def _http_error(request: Request, exc: Exception) -> Response:
    code = exc.status_code if isinstance(exc, HTTPException) else 500
    titles = {404: "No encontrado", 405: "Acción no permitida", 413: "Archivo demasiado grande"}
    messages = {404: "No encontramos lo que busca.",
                405: "Esa dirección no acepta esta acción."}
    return render(request, "error.html", {
        "title": titles.get(code, "Error"),
        "message": messages.get(code, "No se pudo completar la solicitud."),
    }, status_code=code)


async def _server_error(request: Request, exc: Exception) -> Response:
    return render(request, "error.html", {
        "title": "Error interno",
        "message": "Algo falló de nuestro lado. Lo ya procesado quedó guardado; inténtelo de "
                   "nuevo en unos minutos o avise a soporte técnico.",
    }, status_code=500)


def routes() -> list[Route | Mount]:
    return [
        Route("/entrar", login_form, methods=["GET"]),
        Route("/entrar", login, methods=["POST"]),
        Route("/salir", logout, methods=["POST"]),
        Route("/", upload.home, methods=["GET"]),
        Route("/subir", upload.upload, methods=["POST"]),
        Route("/subir/{token}", upload.findings, methods=["GET"]),
        Route("/subir/{token}/procesar", upload.process, methods=["POST"]),
        Route("/lotes", batches.batch_list, methods=["GET"]),
        Route("/lotes/{batch_id}", batches.batch_page, methods=["GET"]),
        Route("/lotes/{batch_id}/estado", batches.batch_state, methods=["GET"]),
        Route("/lotes/{batch_id}/tabla", batches.batch_table, methods=["GET"]),
        Route("/lotes/{batch_id}/reanudar", batches.batch_resume, methods=["POST"]),
        Route("/lotes/{batch_id}/reporte", batches.batch_report, methods=["GET"]),
        Route("/lotes/{batch_id}/zip", batches.batch_zip, methods=["GET"]),
        Route("/lotes/{batch_id}/archivos/{path:path}", batches.batch_file, methods=["GET"]),
        Route("/personas", people.people_page, methods=["GET"]),
        Route("/personas", people.people_update, methods=["POST"]),
        Route("/captchas", captchas.captcha_page, methods=["GET"]),
        Route("/captchas", captchas.captcha_answer, methods=["POST"]),
        Route("/captchas/{key}/imagen", captchas.captcha_image, methods=["GET"]),
        Mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static"),
    ]


def create_app(settings: Settings) -> Starlette:
    """The web app over ``settings`` (storage migrated, session key ready).

    Raises ``ConfigError`` without ``CONSTANCIAS_WEB_PASSWORD``: the page holds personal data.
    """
    if not settings.web_password:
        raise ConfigError("CONSTANCIAS_WEB_PASSWORD no está configurado: la página web necesita "
                          "una contraseña (defínala en el entorno o en .env).")
    storage = open_storage(settings)
    secret = session_secret(settings.data_dir, settings.web_password)
    app = Starlette(
        routes=routes(),
        middleware=[
            Middleware(SecurityHeadersMiddleware),
            Middleware(SessionMiddleware, secret_key=secret, session_cookie="constancias_sesion",
                       max_age=SESSION_MAX_AGE_S, same_site="lax", https_only=False),
            Middleware(AuthMiddleware),
        ],
        exception_handlers={HTTPException: _http_error, 500: _server_error},
    )
    app.state.web = WebState(settings=settings, storage=storage,
                             runner=BatchRunner(settings, storage),
                             templates=templates_for(settings))
    return app

