"""Role checks on page routes, and the audit rows page handlers write.

Every page route is wrapped by ``guarded(permission, handler)``: the session's user (put in
the scope by ``AuthMiddleware``) must have a role that allows ``permission`` (``worker.core.roles``,
the same table the API's scopes use). The permission stays readable on the wrapper
(``.permission``), so a test can walk every route and check each one is enforced.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from functools import wraps

from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection, Request
from starlette.responses import PlainTextResponse, Response

from worker.core.roles import Permission, role_allows
from worker.interfaces.web.common import render, web
from worker.interfaces.web.security import USER_SCOPE_KEY
from worker.storage.accounts import UserView
from worker.storage.audit import record

__all__ = ["guarded", "current_user", "audit", "client_address", "allowed"]

Handler = Callable[[Request], Awaitable[Response]]


def current_user(conn: HTTPConnection) -> UserView | None:
    return conn.scope.get(USER_SCOPE_KEY)


def allowed(conn: HTTPConnection, permission: Permission) -> bool:
    user = current_user(conn)
    return user is not None and role_allows(user.role, permission)


def client_address(conn: HTTPConnection) -> str:
    return conn.client.host if conn.client else ""


def guarded(permission: Permission, handler: Handler, *, audit_as: str | None = None) -> Handler:
    """``handler`` for users whose role allows ``permission``; others get 403. With
    ``audit_as``, a successful answer is recorded under that action (batch from the path)."""

    @wraps(handler)
    async def endpoint(request: Request) -> Response:
        if not allowed(request, permission):
            if request.method in ("GET", "HEAD"):
                return render(request, "error.html", {
                    "title": "Sin permiso",
                    "message": "Su cuenta no tiene permiso para esto. Pídalo a quien administra "
                               "la página.",
                }, status_code=403)
            return PlainTextResponse("Sin permiso.", status_code=403)
        response = await handler(request)
        if audit_as is not None and response.status_code < 400:
            await audit(request, audit_as, batch_id=request.path_params.get("batch_id"))
        return response

    endpoint.permission = permission  # type: ignore[attr-defined]
    return endpoint


async def audit(conn: HTTPConnection, action: str, *, batch_id: str | None = None,
                curps: Iterable[str | None] = (None,), detail: str = "",
                actor: str | None = None) -> None:
    """Append an audit row for this request (who, from where)."""
    user = current_user(conn)
    who = actor or (user.name if user is not None else "?")
    await run_in_threadpool(record, web(conn).storage, actor=who, action=action,  # type: ignore[arg-type]
                            address=client_address(conn), batch_id=batch_id,
                            curps=list(curps), detail=detail)
