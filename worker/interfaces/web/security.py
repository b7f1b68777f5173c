"""Who may use the web page: password log-in, the signed session, CSRF tokens, headers.

The session cookie is signed (Starlette's ``SessionMiddleware``, itsdangerous) with a key
derived from the password *and* a random secret kept in the data folder: changing the password
logs everyone out, and knowing the password alone does not let anyone forge a cookie.
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

from starlette.datastructures import URL
from starlette.requests import HTTPConnection
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["session_secret", "password_ok", "csrf_token", "csrf_ok", "is_logged_in", "log_in",
           "AuthMiddleware", "SecurityHeadersMiddleware", "PUBLIC_PATHS", "safe_next"]

#: Paths reachable without a session: the log-in form and the page's own CSS/JS (no data).
PUBLIC_PATHS = ("/entrar",)
PUBLIC_PREFIXES = ("/static/",)

_SECRET_FILE = "web-secret.key"  # noqa: S105 - a file name, not a secret


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


def password_ok(given: str, expected: str) -> bool:
    """Constant-time comparison (of digests, so the length does not leak either)."""
    a = hashlib.sha256(given.encode()).digest()
    b = hashlib.sha256(expected.encode()).digest()
    return hmac.compare_digest(a, b)


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
    return conn.session.get("auth") is True


def log_in(conn: HTTPConnection) -> None:
    """A fresh session (new CSRF token) after a successful log-in: no session fixation."""
    conn.session.clear()
    conn.session["auth"] = True
    csrf_token(conn)


def safe_next(value: str | None) -> str:
    """Where to go after log-in: a local path only (never ``//host`` or ``http://…``)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


class AuthMiddleware:
    """Every request but the public paths needs a logged-in session.

    Reading pages redirects to the log-in form; anything else (form posts, scripts) gets 403.
    Sits inside ``SessionMiddleware`` so ``scope["session"]`` is there.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        conn = HTTPConnection(scope)
        if path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES) or is_logged_in(conn):
            await self.app(scope, receive, send)
            return
        response: Response
        if scope.get("method") in ("GET", "HEAD"):
            target = URL(scope=scope)
            here = target.path + (f"?{target.query}" if target.query else "")
            response = RedirectResponse(f"/entrar?siguiente={quote(here, safe='')}",
                                        status_code=303)
        else:
            response = PlainTextResponse("Sesión requerida.", status_code=403)
        await response(scope, receive, send)


#: Scripts and styles come only from /static (no inline code), so the policy can be strict.
_CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")


class SecurityHeadersMiddleware:
    """Headers that make the pages harder to abuse: CSP, no framing, no sniffing, no cache."""

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
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
