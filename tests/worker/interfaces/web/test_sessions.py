"""Sessions that end, log-in throttling, Secure cookies and the start-up checks of `web`:
real uvicorn, real HTTP, real storage."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tests.worker.interfaces.web.conftest import PASSWORD, WebServer, csrf_from, serve
from worker.core.settings import load_settings
from worker.interfaces.cli import main
from worker.interfaces.web.security import SESSION_ENDED

COOKIE = "constancias_sesion"


def _replay(server: WebServer, cookie: str) -> httpx.Client:
    """A client of its own that only has a copy of someone's session cookie."""
    client = server.client(logged_in=False)
    client.cookies.set(COOKIE, cookie)
    return client


def _try(client: httpx.Client, password: str, **headers: str) -> httpx.Response:
    token = csrf_from(client.get("/entrar").text)
    return client.post("/entrar", data={"password": password, "csrf": token}, headers=headers)


def test_a_cookie_replayed_after_logout_is_refused(web: WebServer) -> None:
    """"Salir" ends the session in storage: a copy of the cookie taken before logging out opens
    neither the pages nor the downloads afterwards, and the log-in page says why."""
    client = web.client()
    cookie = client.cookies.get(COOKIE)
    assert cookie and _replay(web, cookie).get("/lotes").status_code == 200
    page = client.get("/lotes")
    assert client.post("/salir", data={"csrf": csrf_from(page.text)}).status_code == 303
    copy = _replay(web, cookie)
    r = copy.get("/lotes")
    assert r.status_code == 303 and f"motivo={SESSION_ENDED}" in r.headers["location"]
    assert copy.get("/lotes/abc/reporte").status_code == 303
    assert "Su sesión terminó" in copy.get(r.headers["location"]).text


def test_revocation_and_sessions_survive_a_restart(web_settings, tmp_path: Path) -> None:
    """A live session still works after the server restarts; one ended before a restart stays
    ended after it (the cookie is still validly signed: storage decides)."""
    with serve(web_settings) as first:
        kept = first.client()
        ended = first.client()
        kept_cookie, ended_cookie = kept.cookies.get(COOKIE), ended.cookies.get(COOKIE)
        ended.post("/salir", data={"csrf": csrf_from(ended.get("/lotes").text)})
    with serve(web_settings) as second:
        assert _replay(second, kept_cookie).get("/lotes").status_code == 200
        assert _replay(second, ended_cookie).get("/lotes").status_code == 303


def test_an_idle_session_ends_after_the_idle_timeout(tmp_path: Path) -> None:
    """A session unused for longer than CONSTANCIAS_WEB_SESSION_IDLE_S is refused; one in use
    is kept alive by its requests."""
    settings = load_settings(web_password=PASSWORD, web_session_idle_s=1.5)
    with serve(settings) as server:
        busy, idle = server.client(), server.client()
        for _ in range(5):  # 2.5 s of use, a request every 0.5 s
            time.sleep(0.5)
            assert busy.get("/lotes").status_code == 200
        r = idle.get("/lotes")
        assert r.status_code == 303 and f"motivo={SESSION_ENDED}" in r.headers["location"]


def test_parallel_wrong_guesses_are_held_back(web: WebServer) -> None:
    """Twenty wrong passwords sent at once: at most the first two are even checked (each
    failure makes the next wait), the rest are refused with 429 and a Spanish message."""
    clients = [web.client(logged_in=False) for _ in range(20)]
    tokens = [csrf_from(c.get("/entrar").text) for c in clients]
    results: list[httpx.Response] = []
    start = threading.Barrier(len(clients))

    def guess(i: int) -> None:
        start.wait()
        results.append(clients[i].post("/entrar", data={"password": f"adivina-{i}",
                                                        "csrf": tokens[i]}))

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(len(clients))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    codes = sorted(r.status_code for r in results)
    assert len(codes) == 20
    assert codes.count(401) <= 2 and codes.count(429) >= 18, codes
    refused = next(r for r in results if r.status_code == 429)
    assert "Demasiados intentos fallidos" in refused.text
    assert int(refused.headers["retry-after"]) >= 1


def test_right_password_is_refused_until_the_lock_ends(tmp_path: Path,
                                                       capfd: pytest.CaptureFixture[str]) -> None:
    """After WEB_LOGIN_LOCK_AFTER failures the address is locked: the right password is refused
    too until WEB_LOGIN_LOCK_S has passed, then accepted; failures and the lock are logged."""
    from worker.interfaces.web import configure_web_logging

    configure_web_logging("json", "info")
    settings = load_settings(web_password=PASSWORD, web_login_delay_s=0.05,
                             web_login_delay_max_s=0.1, web_login_lock_after=4,
                             web_login_lock_s=2.0)
    with serve(settings) as server:
        client = server.client(logged_in=False)
        for _ in range(4):
            assert _try(client, "no-es-la-clave").status_code == 401
            time.sleep(0.15)  # past the growing wait, so each guess is really checked
        locked = _try(client, PASSWORD)
        assert locked.status_code == 429 and "Demasiados intentos" in locked.text
        assert client.get("/lotes").status_code == 303
        time.sleep(2.1)
        assert _try(client, PASSWORD).status_code == 303
        assert client.get("/lotes").status_code == 200
    logs = capfd.readouterr()
    text = logs.out + logs.err
    assert '"event": "web_login_failed"' in text and '"event": "web_login_locked"' in text
    assert '"event": "web_login_throttled"' in text


def test_many_addresses_taking_turns_lock_the_account(tmp_path: Path) -> None:
    """Guesses from many client addresses (as a trusted proxy reports them) add up per account:
    a new address is refused once the account is locked."""
    settings = load_settings(web_password=PASSWORD, web_login_delay_s=0.01,
                             web_login_delay_max_s=0.01, web_login_lock_after=5,
                             web_login_lock_s=600)
    with serve(settings) as server:
        client = server.client(logged_in=False)
        for i in range(5):
            r = _try(client, "otra-cosa", **{"x-forwarded-for": f"198.51.100.{i + 1}"})
            assert r.status_code == 401
            time.sleep(0.05)
        r = _try(client, PASSWORD, **{"x-forwarded-for": "203.0.113.9"})
        assert r.status_code == 429 and "10 minutos" in r.text


def test_cookie_is_secure_when_the_proxy_says_https(web: WebServer) -> None:
    """Behind a trusted proxy that forwards ``X-Forwarded-Proto: https`` the session cookie is
    ``Secure``; over plain HTTP it is not (it would never be sent back)."""
    plain = web.client(logged_in=False).get("/entrar").headers["set-cookie"].lower()
    secure = web.client(logged_in=False).get(
        "/entrar", headers={"x-forwarded-proto": "https"}).headers["set-cookie"]
    assert "secure" not in plain
    assert "; secure" in secure.lower() and "httponly" in secure.lower()


def test_web_refuses_a_weak_password(monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    """A short (or one-character-repeated) CONSTANCIAS_WEB_PASSWORD stops `web` with one
    Spanish line and exit 2."""
    for weak in ("a", "clave123", "aaaaaaaaaaaaaaaaaaaa"):
        monkeypatch.setenv("CONSTANCIAS_WEB_PASSWORD", weak)
        code = main(["web", "--port", "0"])
        err = capsys.readouterr().err
        assert code == 2, weak
        assert "demasiado débil" in err and "12 caracteres" in err and "Traceback" not in err
        assert len(err.strip().splitlines()) == 1


def _start_web(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[str], list[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONSTANCIAS_")}
    env |= {"CONSTANCIAS_WEB_PASSWORD": PASSWORD, "CONSTANCIAS_DATA_DIR": str(tmp_path / "d")}
    proc = subprocess.Popen([sys.executable, "-m", "worker.interfaces.cli", "web", *args],
                            cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    assert proc.stderr is not None
    deadline = time.monotonic() + 60  # a page that never says where it is fails, not hangs
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stderr], [], [], deadline - time.monotonic())
        line = proc.stderr.readline() if ready else ""
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if line.startswith("Abra "):
            break
    return proc, lines


def test_web_says_where_to_open_it_and_warns_beyond_loopback(tmp_path: Path) -> None:
    """`web --host 0.0.0.0` over plain HTTP prints a Spanish warning and then "Abra http://…"
    with the real port, instead of uvicorn's English start-up lines; on 127.0.0.1 no warning."""
    port = free_port()
    proc, lines = _start_web(tmp_path, "--host", "0.0.0.0", "--port", str(port))  # noqa: S104
    try:
        assert lines[-1].startswith(f"Abra http://127.0.0.1:{port} en su navegador"), lines
        assert any(line.startswith("Aviso:") and "sin HTTPS" in line for line in lines), lines
        assert not any("Uvicorn running" in line or "Started server" in line for line in lines)
        assert httpx.get(f"http://127.0.0.1:{port}/entrar").status_code == 200
    finally:
        proc.terminate()
        proc.wait(10)
    proc, lines = _start_web(tmp_path, "--port", "0")
    try:
        assert lines and lines[-1].startswith("Abra http://127.0.0.1:"), lines
        assert not lines[-1].startswith("Abra http://127.0.0.1:0 ")
        assert not any(line.startswith("Aviso:") for line in lines), lines
    finally:
        proc.terminate()
        proc.wait(10)


def test_browser_sees_why_it_must_log_in_again(web: WebServer, login, page) -> None:
    """In Chromium: after "Salir" the log-in page says so; a copy of the old cookie lands on
    the log-in page saying the session ended, not on the batches."""
    from tests.worker.interfaces.web.conftest import shot

    login(web)
    cookie = next(c for c in page.context.cookies() if c["name"] == COOKIE)
    page.get_by_role("button", name="Salir").click()
    page.wait_for_url("**/entrar?motivo=salio")
    assert "Salió de la página" in page.text_content("main")
    shot(page, "sesion-salio")
    page.context.add_cookies([cookie])
    page.goto(web.url + "/lotes")
    assert page.url.startswith(web.url + "/entrar?siguiente=%2Flotes")
    assert "Su sesión terminó" in page.text_content("main")
    assert page.get_by_role("button", name="Salir").count() == 0
    shot(page, "sesion-terminada")
