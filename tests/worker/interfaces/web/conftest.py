"""The web app served by a real uvicorn on a free port, and helpers to log in."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from tests.conftest import free_port
from worker.core.settings import Settings, load_settings

PASSWORD = "clave-de-prueba-RH"  # noqa: S105 - a test password
SHOTS = Path("/tmp/web-shots")  # noqa: S108 - where the brief asks for them


@dataclass
class WebServer:
    url: str
    app: Any
    settings: Settings

    def client(self, *, logged_in: bool = True, user: str = "",
               password: str = PASSWORD) -> httpx.Client:
        """An HTTP client with its own cookie jar (logged in unless told otherwise; as the
        bootstrap admin, i.e. with the shared password, unless ``user`` is given)."""
        client = httpx.Client(base_url=self.url, follow_redirects=False, timeout=30)
        if logged_in:
            token = csrf_from(client.get("/entrar").text)
            r = client.post("/entrar", data={"usuario": user, "password": password,
                                             "csrf": token})
            assert r.status_code == 303, r.text
        return client


def csrf_from(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "no CSRF field on the page"
    return match.group(1)


@contextmanager
def serve(settings: Settings) -> Iterator[WebServer]:
    """``create_app(settings)`` under uvicorn in a background thread until the block ends."""
    from worker.interfaces.web.app import create_app
    from worker.interfaces.web.server import server_config

    app = create_app(settings)
    port = free_port()
    config = server_config(app, settings, host="127.0.0.1", port=port)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="web-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the web server did not start")
        time.sleep(0.02)
    try:
        yield WebServer(url=f"http://127.0.0.1:{port}", app=app, settings=settings)
    finally:
        server.should_exit = True
        thread.join(10)
        app.state.web.runner.join(60)


@pytest.fixture
def web_settings() -> Settings:
    return load_settings(web_password=PASSWORD, web_max_upload_bytes=200_000)


@pytest.fixture
def web(web_settings: Settings) -> Iterator[WebServer]:
    with serve(web_settings) as server:
        yield server


@pytest.fixture
def login(page) -> Callable[[WebServer], Any]:
    """Log the test's Chromium page in through the form."""

    def do(server: WebServer) -> Any:
        page.goto(server.url + "/")
        page.get_by_label("Contraseña").fill(PASSWORD)
        page.get_by_role("button", name="Entrar").click()
        page.wait_for_url(server.url + "/")
        return page

    return do


def shot(page, name: str) -> Path:
    """A full-page screenshot under /tmp/web-shots (looked at by a person)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
