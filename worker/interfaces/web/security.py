"""Who may use the web page: password log-in, server-side sessions, CSRF tokens, headers.

The session cookie is signed (Starlette's ``SessionMiddleware``, itsdangerous) with a key
derived from the password *and* a random secret kept in the data folder: changing the password
logs everyone out, and knowing the password alone does not let anyone forge a cookie. Signed is
not enough to end a session, though: a logged-in cookie carries a random token whose hash must
be in storage (``web_sessions``), so logging out, the idle timeout and the maximum age hold
against a copy of the cookie, across restarts.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import URL
from starlette.requests import HTTPConnection
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from worker.core.settings import Settings
from worker.storage.accounts import UserView, get_user
from worker.storage.repository import Storage

__all__ = ["session_secret", "password_weakness", "csrf_token", "csrf_ok",
           "is_logged_in", "log_in", "log_out", "AuthMiddleware", "SecurityHeadersMiddleware",
           "PUBLIC_PATHS", "safe_next", "SESSION_ENDED", "USER_SCOPE_KEY"]

#: Paths reachable without a session: the log-in form and the page's own CSS/JS (no data).
PUBLIC_PATHS = ("/entrar",)
PUBLIC_PREFIXES = ("/static/",)

_SECRET_FILE = "web-secret.key"  # noqa: S105 - a file name, not a secret
#: ``scope`` key set by ``AuthMiddleware`` when the request has a live session (of an active user).
_SCOPE_KEY = "constancias.web_session"
#: ``scope`` key where ``AuthMiddleware`` leaves the session's user (``UserView``).
USER_SCOPE_KEY = "constancias.user"
#: Paths that answer for themselves (the API: bearer tokens, problem details).
SELF_AUTH_PREFIXES = ("/api/",)
#: ``/entrar?…&motivo=`` value when a cookie's session had ended (logged out, idle, too old).
SESSION_ENDED = "sesion-terminada"


def session_secret(data_dir: Path, password: str) -> str:
    """HMAC(random per-data-dir secret, password): the key that signs session cookies."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = data_dir / _SECRET_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raw = secrets.token_bytes(32)
        # O_EXCL: two processes starting at once must agree on one secret.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raw = path.read_bytes()
        else:
            with os.fdopen(fd, "wb") as fh:
                fh.write(raw)
    return hmac.new(raw, password.encode(), hashlib.sha256).hexdigest()


def password_weakness(password: str, min_length: int) -> str | None:
    """Why ``password`` is too weak for a page with personal data, in Spanish; ``None`` if not.

    Length is what resists guessing; a long run of one or two characters is not long."""
    if len(password) < min_length or len(set(password)) < min(min_length // 2, 6):
        return (f"use al menos {min_length} caracteres variados, por ejemplo cuatro palabras "
                "al azar separadas por guiones")
    return None


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def csrf_token(conn: HTTPConnection) -> str:
    """The session's CSRF token, created on first use."""
    token = conn.session.get("csrf")
    if not isinstance(token, str) or len(token) < 32:
        token = secrets.token_urlsafe(32)
        conn.session["csrf"] = token
    return token


def csrf_ok(conn: HTTPConnection, submitted: object) -> bool:
    expected = conn.session.get("csrf")
    if not isinstance(expected, str) or not isinstance(submitted, str) or not submitted:
        return False
    return hmac.compare_digest(expected.encode(), submitted.encode())


def is_logged_in(conn: HTTPConnection) -> bool:
    """Whether ``AuthMiddleware`` found this request's session alive in storage."""
    return conn.scope.get(_SCOPE_KEY) is not None


def log_in(conn: HTTPConnection, storage: Storage, user_id: int | None = None) -> None:
    """A fresh session (new token, new CSRF token) after a successful log-in: no fixation."""
    conn.session.clear()
    token = secrets.token_urlsafe(32)
    storage.create_web_session(_token_hash(token), user_id=user_id)
    conn.session["sid"] = token
    csrf_token(conn)


def log_out(conn: HTTPConnection, storage: Storage) -> None:
    """End the session in storage (every copy of the cookie stops working) and in the cookie."""
    token = conn.session.get("sid")
    if isinstance(token, str):
        storage.end_web_session(_token_hash(token))
    conn.session.clear()


def safe_next(value: str | None) -> str:
    """Where to go after log-in: a local path only (never ``//host`` or ``http://…``)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


class AuthMiddleware:
    """Every request but the public paths needs a session alive in storage.

    Reading pages redirects to the log-in form (saying so when the cookie's session had ended);
    anything else (form posts, scripts) gets 403. Sits inside ``SessionMiddleware`` so
    ``scope["session"]`` is there.
    """

    def __init__(self, app: ASGIApp, storage: Storage, settings: Settings) -> None:
        self.app = app
        self.storage = storage
        self.idle_s = settings.web_session_idle_s
        self.max_age_s = settings.web_session_max_age_s
        # Last use is written at most this often, and often enough for the idle timeout.
        self.refresh_after_s = min(30.0, self.idle_s / 10)

    def _live_user(self, token_hash: str) -> UserView | None:
        """The active user of a live session; a session of a disabled (or deleted) user, or
        one from before accounts existed, ends here."""
        row = self.storage.touch_web_session(token_hash, idle_s=self.idle_s,
                                             max_age_s=self.max_age_s,
                                             refresh_after_s=self.refresh_after_s)
        if row is None:
            return None
        user = get_user(self.storage, row.user_id) if row.user_id is not None else None
        if user is None or not user.active:
            self.storage.end_web_session(token_hash)
            return None
        return user

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        conn = HTTPConnection(scope)
        token = conn.session.get("sid")
        ended = False
        if isinstance(token, str):
            user = await run_in_threadpool(self._live_user, _token_hash(token))
            if user is None:
                conn.session.clear()  # the cookie is rewritten without the dead token
                ended = True
            else:
                scope[_SCOPE_KEY] = user
                scope[USER_SCOPE_KEY] = user
        path = scope.get("path", "")
        if (path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)
                or path.startswith(SELF_AUTH_PREFIXES) or is_logged_in(conn)):
            await self.app(scope, receive, send)
            return
        response: Response
        if scope.get("method") in ("GET", "HEAD"):
            target = URL(scope=scope)
            here = target.path + (f"?{target.query}" if target.query else "")
            why = f"&motivo={SESSION_ENDED}" if ended else ""
            response = RedirectResponse(f"/entrar?siguiente={quote(here, safe='')}{why}",
                                        status_code=303)
        else:
            response = PlainTextResponse("Sesión requerida.", status_code=403)
        await response(scope, receive, send)


#: Scripts and styles come only from /static (no inline code), so the policy can be strict.
_CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")


class SecurityHeadersMiddleware:
    """Headers that make the pages harder to abuse: CSP, no framing, no sniffing, no cache;
    ``Secure`` on cookies when the request came over HTTPS."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope.get("path", "").startswith("/static/")

        async def send_with_headers(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                pdf = any(k.lower() == b"content-type" and v.startswith(b"application/pdf")
                          for k, v in headers)
                extra = {
                    b"x-content-type-options": b"nosniff",
                    b"x-frame-options": b"DENY",
                    b"referrer-policy": b"same-origin",
                }
                if not pdf:
                    extra[b"content-security-policy"] = _CSP.encode()
                if not static:
                    # Personal data: never keep pages or files in shared caches.
                    extra[b"cache-control"] = b"no-store"
                headers += [(k, v) for k, v in extra.items() if k not in names]
                if scope.get("scheme") == "https":
                    # Served over HTTPS (directly, or behind a trusted proxy that says so):
                    # the cookie must never travel over plain HTTP.
                    headers = [(k, v + b"; Secure") if k.lower() == b"set-cookie"
                               and b"secure" not in v.lower() else (k, v) for k, v in headers]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
