"""Who may use the web page, and what it will hand out: real uvicorn, real HTTP."""

from __future__ import annotations

import http.client
import io
import re
import time
import zipfile
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from starlette.routing import Mount, Route

from tests.people import synthetic_curps, write_sheet
from tests.worker.interfaces.web.conftest import PASSWORD, WebServer, csrf_from, serve
from worker.core.settings import load_settings
from worker.interfaces.cli import main
from worker.services.batches import prepare_batch


def _batch(web: WebServer, tmp_path: Path) -> str:
    """A stored batch (not run) of three people, so routes have something real to refuse."""
    sheet = write_sheet(tmp_path / "altas.xlsx", synthetic_curps(3, seed=5))
    batch_id, _ = prepare_batch(web.settings, web.app.state.web.storage, sheet, ["imss", "issste"])
    return batch_id


def _fill(path: str, batch_id: str) -> str:
    values = {"batch_id": batch_id, "token": "0" * 24, "key": "abc", "path": "entrada.xlsx",
              "curp": "GODE561231HDFRRN09", "check_id": "1"}
    return re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: values[m.group(1)], path)


def test_every_route_refuses_requests_without_a_session(web: WebServer, tmp_path: Path) -> None:
    """Every route but the log-in form answers a request without a session with a redirect to
    the log-in form (reading) or 403 (writing), every API route with a 401 problem detail, and
    none shows data."""
    batch_id = _batch(web, tmp_path)
    client = web.client(logged_in=False)
    checked = 0
    api_checked = 0
    for route in web.app.routes:
        if isinstance(route, Mount) and route.path == "/api/v1":
            for api_route in route.routes:
                assert isinstance(api_route, Route)
                url = "/api/v1" + _fill(api_route.path, batch_id)
                for method in sorted(set(api_route.methods or ()) - {"HEAD"}):
                    response = client.request(method, url, json={})
                    assert response.status_code == 401, (method, url)
                    assert response.headers["content-type"] == "application/problem+json"
                    assert response.json()["detail"].startswith("Falta el encabezado")
                    assert batch_id not in response.text
                    api_checked += 1
            continue
        if isinstance(route, Mount):
            assert route.path == "/static"  # the page's own CSS and JS: no data in there
            continue
        assert isinstance(route, Route)
        if route.path == "/entrar":
            continue
        url = _fill(route.path, batch_id)
        for method in sorted(route.methods or ()):
            if method == "HEAD":
                continue
            response = client.request(method, url, data={"csrf": "x"})
            checked += 1
            if method == "GET":
                assert response.status_code == 303, (method, url)
                assert response.headers["location"].startswith("/entrar?siguiente=")
            else:
                assert response.status_code == 403, (method, url)
            assert batch_id not in response.text and "CURP" not in response.text
    assert checked >= 24 and api_checked >= 8
    # ...and the log-in page itself leaks nothing either.
    assert batch_id not in client.get("/entrar").text


def test_wrong_password_is_refused_and_right_one_lets_in(web: WebServer) -> None:
    """A wrong password gets 401 with a Spanish message and no session; the right one opens
    the pages; logging out closes them again."""
    client = web.client(logged_in=False)
    token = csrf_from(client.get("/entrar").text)
    r = client.post("/entrar", data={"password": PASSWORD + "x", "csrf": token})
    assert r.status_code == 401 and "Usuario o contraseña incorrectos" in r.text
    assert client.get("/lotes").status_code == 303
    r = client.post("/entrar", data={"password": PASSWORD, "csrf": token,
                                     "siguiente": "/lotes"})
    assert r.status_code == 303 and r.headers["location"] == "/lotes"
    page = client.get("/lotes")
    assert page.status_code == 200 and "<h1>Lotes</h1>" in page.text
    r = client.post("/salir", data={"csrf": csrf_from(page.text)})
    assert r.status_code == 303
    assert client.get("/lotes").status_code == 303


def test_log_in_never_redirects_to_another_site(web: WebServer) -> None:
    """``siguiente`` pointing elsewhere (//host, http://…) lands on the home page instead."""
    client = web.client(logged_in=False)
    token = csrf_from(client.get("/entrar").text)
    for target in ("//evil.example/", "http://evil.example/", "/\\evil.example"):
        r = client.post("/entrar", data={"password": PASSWORD, "csrf": token,
                                         "siguiente": target})
        assert r.headers["location"] == "/", target
        token = csrf_from(client.get("/").text)


def test_session_cookie_signed_with_another_key_is_refused(web: WebServer, tmp_path: Path) -> None:
    """A session signed by another installation (other secret file) does not open the page,
    and changing the password logs everybody out."""
    client = web.client()
    cookie = client.cookies.get("constancias_sesion")
    assert cookie
    other = load_settings(web_password=PASSWORD, data_dir=tmp_path / "otra")
    with serve(other) as elsewhere:
        stranger = elsewhere.client(logged_in=False)
        stranger.cookies.set("constancias_sesion", cookie)
        assert stranger.get("/lotes").status_code == 303
    changed = web.settings.model_copy(update={"web_password": "otra-clave-distinta"})
    with serve(changed) as after_change:
        old = after_change.client(logged_in=False)
        old.cookies.set("constancias_sesion", cookie)
        assert old.get("/lotes").status_code == 303


def test_posts_without_a_valid_csrf_token_are_refused(web: WebServer, tmp_path: Path) -> None:
    """Logged in, every form post with a missing or wrong CSRF token is refused (403) and
    changes nothing."""
    batch_id = _batch(web, tmp_path)
    client = web.client()
    storage = web.app.state.web.storage
    curp = storage.people()[0].curp
    for token in (None, "", "no-es-el-token"):
        data = {"curp": curp, "accion": "desactivar"} | ({"csrf": token} if token is not None
                                                         else {})
        r = client.post("/personas", data=data)
        assert r.status_code == 403 and "venció" in r.text
        files = {"hoja": ("altas.csv", b"CURP\n" + curp.encode() + b"\n", "text/csv")}
        r = client.post("/subir", data={} if token is None else {"csrf": token}, files=files)
        assert r.status_code == 403
        assert client.post(f"/lotes/{batch_id}/reanudar", data=data).status_code == 403
        assert client.post("/salir", data=data).status_code == 403
    assert all(p.active for p in storage.people())
    assert not (web.settings.data_dir / "uploads").exists() or not any(
        (web.settings.data_dir / "uploads").iterdir())
    assert client.get("/lotes").status_code == 200  # still logged in
    # The same post with the token works.
    token = csrf_from(client.get("/personas").text)
    r = client.post("/personas", data={"curp": curp, "accion": "desactivar", "csrf": token})
    assert r.status_code == 303
    assert not next(p for p in storage.people() if p.curp == curp).active


def test_oversized_upload_is_refused_with_a_spanish_message(web: WebServer) -> None:
    """A file over CONSTANCIAS_WEB_MAX_UPLOAD_BYTES gets a 413 page that says the limit, and
    nothing is kept."""
    client = web.client()
    token = csrf_from(client.get("/").text)
    limit = web.settings.web_max_upload_bytes
    for size in (limit + 1, limit * 3):
        files = {"hoja": ("grande.csv", b"CURP\n" + b"X" * size, "text/csv")}
        r = client.post("/subir", data={"csrf": token}, files=files)
        assert r.status_code == 413
        assert "demasiado grande" in r.text and "195 KB" in r.text
    uploads = web.settings.data_dir / "uploads"
    assert not uploads.exists() or not any(uploads.iterdir())


def test_unusable_sheet_shows_the_intake_message(web: WebServer) -> None:
    """A file that is not a spreadsheet, or has no CURP column, is refused with the intake's
    Spanish reason on the upload page, under the name HR gave it."""
    client = web.client()
    token = csrf_from(client.get("/").text)
    r = client.post("/subir", data={"csrf": token},
                    files={"hoja": ("nómina enero.xlsx", b"%PDF-1.4 not a sheet", "text/csv")})
    assert r.status_code == 400
    assert "nómina enero.xlsx" in r.text and "PDF" in r.text
    r = client.post("/subir", data={"csrf": token},
                    files={"hoja": ("vacía.csv", b"Nombre,Puesto\nAna,Analista\n", "text/csv")})
    assert r.status_code == 400 and 'class="alert error"' in r.text


def _raw_get(web: WebServer, raw_path: str, cookie: str) -> tuple[int, bytes]:
    """GET with the path sent byte for byte (no client-side normalisation of ``..``)."""
    host = urlsplit(web.url)
    conn = http.client.HTTPConnection(host.hostname, host.port, timeout=10)
    conn.putrequest("GET", raw_path, skip_accept_encoding=True)
    conn.putheader("Cookie", f"constancias_sesion={cookie}")
    conn.endheaders()
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, body


def test_path_traversal_on_downloads_is_refused(web: WebServer, tmp_path: Path) -> None:
    """Downloads serve only files inside the batch's folder: ``..``, encoded ``..``, absolute
    paths, backslashes and symlinks that leave it all get 404; the sheet copy inside works."""
    batch_id = _batch(web, tmp_path)
    out_dir = Path(web.app.state.web.storage.get_batch(batch_id).out_dir)
    (out_dir / "fuga").symlink_to("/etc/passwd")
    (out_dir / "fuga-dir").symlink_to(web.settings.data_dir.resolve())
    client = web.client()
    cookie = client.cookies.get("constancias_sesion")
    base = f"/lotes/{batch_id}/archivos/"
    attempts = [
        "../../etc/passwd", "../../../../../../etc/passwd", "..%2f..%2f..%2fetc%2fpasswd",
        "%2e%2e/%2e%2e/%2e%2e/etc/passwd", "%2e%2e%2f%2e%2e%2fconstancias.db",
        "..%252f..%252fetc%252fpasswd", "/etc/passwd", "%2fetc%2fpasswd", "%2Fetc%2Fpasswd",
        "..%5c..%5cetc%5cpasswd", "..\\..\\etc\\passwd", "../../constancias.db",
        "../../web-secret.key", "fuga", "fuga-dir/constancias.db", "entrada.xlsx%00.pdf",
        "..", ".", "",
    ]
    for attempt in attempts:
        status, body = _raw_get(web, base + attempt, cookie)
        assert status == 404, (attempt, status)
        assert b"root:" not in body and b"SQLite" not in body
    status, body = _raw_get(web, base + "entrada.xlsx", cookie)
    assert status == 200 and body[:2] == b"PK"
    # The batch id itself cannot climb out either.
    for attempt in ("/lotes/..%2f..%2fetc/archivos/passwd", "/lotes/%2e%2e/reporte"):
        status, _ = _raw_get(web, attempt, cookie)
        assert status == 404, attempt


def test_report_and_zip_download_before_the_batch_runs(web: WebServer, tmp_path: Path) -> None:
    """A batch not yet run still offers a partial report (built on demand) and a zip with it."""
    batch_id = _batch(web, tmp_path)
    client = web.client()
    r = client.get(f"/lotes/{batch_id}/reporte")
    assert r.status_code == 200 and r.content[:2] == b"PK"
    assert "reporte-parcial" in r.headers["content-disposition"]
    r = client.get(f"/lotes/{batch_id}/zip")
    assert r.status_code == 200
    assert zipfile.ZipFile(io.BytesIO(r.content)).namelist() == ["reporte.xlsx"]
    # Temporary files are removed once sent (a background task: it may lag the response).
    tmp = web.settings.data_dir / "tmp"
    deadline = time.monotonic() + 10
    while any(tmp.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(tmp.iterdir()), list(tmp.iterdir())


def test_pages_carry_security_headers(web: WebServer) -> None:
    """Pages forbid framing, inline scripts and caching; the session cookie is HttpOnly."""
    client = web.client(logged_in=False)
    r = client.get("/entrar")
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["cache-control"] == "no-store"
    assert "httponly" in r.headers["set-cookie"].lower()
    assert "samesite=lax" in r.headers["set-cookie"].lower()


def test_web_refuses_to_start_without_a_password(capsys: pytest.CaptureFixture[str]) -> None:
    """`constancias web` without CONSTANCIAS_WEB_PASSWORD exits 2 with one Spanish line."""
    code = main(["web", "--port", "0"])
    err = capsys.readouterr().err
    assert code == 2
    assert "CONSTANCIAS_WEB_PASSWORD" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_access_log_masks_curps(web: WebServer, tmp_path: Path,
                                capfd: pytest.CaptureFixture[str]) -> None:
    """uvicorn's access log goes through the masking logging set-up: a CURP in a URL is never
    written whole."""
    from worker.interfaces.web import configure_web_logging

    configure_web_logging("json", "info")
    curp = synthetic_curps(1, seed=9)[0]
    client = web.client()
    assert client.get(f"/personas?q={curp}").status_code == 200
    client.get(f"/lotes/{curp}")
    captured = capfd.readouterr()
    logs = captured.err + captured.out
    assert "/personas?q=" in logs
    assert curp not in logs


def test_evidence_pages_are_listed_and_downloaded_never_rendered(web: WebServer,
                                                                  tmp_path: Path) -> None:
    """An evidence folder is listed with links; a captured portal page (HTML that may carry
    scripts) downloads as an attachment under a sandbox policy instead of running here."""
    batch_id = _batch(web, tmp_path)
    storage = web.app.state.web.storage
    out_dir = Path(storage.get_batch(batch_id).out_dir)
    evidence = out_dir / "constancias" / "X" / "evidence" / "imss-1"
    evidence.mkdir(parents=True)
    (evidence / "page-1.html").write_text("<script>alert(document.cookie)</script>")
    (evidence / "check.json").write_text('{"status": "error"}')
    # Only recorded evidence is served: record it as the engine does for a failed check.
    storage.record_result(storage.pending_check_ids(batch_id)[0][0], status="error",
                          detail="x", evidence_path=evidence)
    client = web.client()
    listing = client.get(f"/lotes/{batch_id}/archivos/constancias/X/evidence/imss-1")
    assert listing.status_code == 200
    assert f'href="/lotes/{batch_id}/archivos/constancias/X/evidence/imss-1/page-1.html"' \
        in listing.text
    r = client.get(f"/lotes/{batch_id}/archivos/constancias/X/evidence/imss-1/page-1.html")
    assert r.status_code == 200
    assert r.headers["content-disposition"].startswith("attachment")
    assert r.headers["content-type"].startswith("application/octet-stream")
    assert r.headers["content-security-policy"].startswith("sandbox")
    r = client.get(f"/lotes/{batch_id}/archivos/constancias/X/evidence/imss-1/check.json")
    assert r.json() == {"status": "error"}
