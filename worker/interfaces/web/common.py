"""What every page handler shares: the app's state, rendering, CSRF-checked forms, errors."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from flows import registry
from worker.core.roles import Permission, role_allows
from worker.core.settings import Settings
from worker.core.statuses import Status
from worker.engine.limits import LocalLimiter
from worker.interfaces.web.runner import BatchRunner
from worker.interfaces.web.security import USER_SCOPE_KEY, csrf_ok, csrf_token, is_logged_in
from worker.interfaces.web.throttle import LoginThrottle
from worker.storage.repository import Storage

__all__ = ["WebState", "web", "render", "checked_form", "not_found", "templates_for",
           "status_view", "csrf_refused"]

TEMPLATES_DIR = Path(__file__).parent / "templates"

_STATE_LABELS = {"queued": "En cola", "running": "En proceso", "reporting": "Generando reporte",
                 "done": "Terminado"}
_KIND_LABELS = {"upload": "Carga de hoja", "recheck": "Revisión nocturna"}


@dataclass
class WebState:
    settings: Settings
    storage: Storage
    runner: BatchRunner
    templates: Jinja2Templates
    throttle: LoginThrottle
    api_limiter: LocalLimiter
    """Requests per API token and minute (``API_RATE_PER_MINUTE``), in this process."""
    login_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    """One password check at a time (worker/interfaces/web/app.py: log-in throttling)."""


def web(request: Request) -> WebState:
    return request.app.state.web  # type: ignore[no-any-return]


def templates_for(settings: Settings) -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
    env = templates.env

    def fecha(value: datetime | None) -> str:
        if value is None:
            return "—"
        return value.astimezone(settings.tz).strftime("%d/%m/%Y %H:%M")

    def dia(value: Any) -> str:
        return value.strftime("%d/%m/%Y") if value is not None else "—"

    env.filters["fecha"] = fecha
    env.filters["dia"] = dia
    env.filters["estado_lote"] = lambda s: _STATE_LABELS.get(s, s)
    env.filters["tipo_lote"] = lambda s: _KIND_LABELS.get(s, s)
    env.filters["portal"] = registry.title
    env.globals["all_portals"] = registry.portals
    env.globals["portal_names"] = registry.names
    env.globals["manual_captcha"] = settings.captcha_solver == "manual"
    return templates


def status_view(code: str | None) -> dict[str, Any]:
    """Spanish label and CSS class of a status code (``None``: not finished yet)."""
    if code is None:
        return {"code": "", "label": "Pendiente", "cls": "pending", "action": ""}
    try:
        status = Status(code)
    except ValueError:
        return {"code": code, "label": code, "cls": "failed", "action": ""}
    return {"code": code, "label": status.label, "cls": status.status_class.value,
            "action": status.action}


def render(request: Request, name: str, context: dict[str, Any] | None = None,
           status_code: int = 200) -> Response:
    user = request.scope.get(USER_SCOPE_KEY)
    ctx = {"csrf": csrf_token(request), "nav": "", "logged_in": is_logged_in(request),
           "user": user,
           # Templates show only what the role may use (the routes enforce it anyway).
           "can": lambda p: user is not None and role_allows(user.role, Permission(p)),
           **(context or {})}
    return web(request).templates.TemplateResponse(request, name, ctx, status_code=status_code)


def not_found(request: Request, message: str = "No encontramos lo que busca.") -> Response:
    return render(request, "error.html", {"title": "No encontrado", "message": message},
                  status_code=404)


async def checked_form(request: Request) -> FormData | None:
    """The posted form if its CSRF token matches the session's, else ``None``."""
    form = await request.form(max_files=0, max_fields=50)
    return form if csrf_ok(request, form.get("csrf")) else None


def csrf_refused(request: Request) -> Response:
    return render(request, "error.html", {
        "title": "Formulario vencido",
        "message": "El formulario venció o no vino de esta página. Vuelva a cargar la página "
                   "e inténtelo de nuevo.",
    }, status_code=403)
