"""User accounts with roles on the page: real uvicorn, real HTTP, the real command line."""

from __future__ import annotations

import io
import json
import sqlite3
from pathlib import Path

import pytest
from starlette.routing import Mount, Route

from tests.worker.interfaces.web.conftest import PASSWORD, WebServer, csrf_from, serve
from tests.worker.interfaces.web.test_security import _batch, _fill
from worker.core.roles import ROLES, Permission
from worker.core.settings import Settings
from worker.interfaces.cli import main
from worker.interfaces.web.security import SESSION_ENDED
from worker.storage.accounts import add_user

USER_PASSWORD = "otra-clave-de-prueba-larga"  # noqa: S105 - a test password
NEW_PASSWORD = "una-clave-nueva-muy-larga"  # noqa: S105 - a test password


def _users(web: WebServer) -> dict[str, str]:
    """One account per role (besides the bootstrap admin): role -> name."""
    storage = web.app.state.web.storage
    for role in ROLES:
        add_user(storage, f"u-{role}", role, USER_PASSWORD)
    return {role: f"u-{role}" for role in ROLES}


def _page_routes(web: WebServer) -> list[tuple[Route, str]]:
    out = []
    for route in web.app.routes:
        if isinstance(route, Mount) or route.path in ("/entrar", "/salir"):
            continue
        out += [(route, m) for m in sorted(set(route.methods or ()) - {"HEAD"})]
    return out


def test_every_page_route_enforces_its_role(web: WebServer, tmp_path: Path) -> None:
    """Every page route declares a permission; each role gets 403 on the routes its role does
    not allow and gets past the check on those it does (admin everything, rh no admin pages,
    lectura neither admin pages nor uploads)."""
    batch_id = _batch(web, tmp_path)
    names = _users(web)
    routes = _page_routes(web)
    assert len(routes) >= 23
    for role, name in names.items():
        client = web.client(user=name, password=USER_PASSWORD)
        for route, method in routes:
            permission = route.endpoint.permission  # type: ignore[attr-defined]
            assert isinstance(permission, Permission), route.path
            url = _fill(route.path, batch_id)
            # A wrong CSRF token: an allowed post stops at the form check, never does work.
            r = client.request(method, url, data={"csrf": "x"})
            if permission in ROLES[role]:
                assert r.status_code != 403 or "Sin permiso" not in r.text, (role, method, url)
            else:
                assert r.status_code == 403, (role, method, url)
                assert "Sin permiso" in r.text and batch_id not in r.text.replace(
                    f"/lotes/{batch_id}", "")
    lectura = web.client(user=names["lectura"], password=USER_PASSWORD)
    home = lectura.get("/").text
    assert "Revisar hoja" not in home and "solo lectura" in home
    assert "/usuarios" not in home
    assert "/usuarios" in web.client().get("/").text  # the admin sees the admin pages


def test_user_and_password_log_in_and_wrong_ones_are_refused(web_settings: Settings) -> None:
    """A user logs in with name and password; a wrong password or an unknown name get the
    same 401 message; a blank name is the bootstrap admin (today's password)."""
    quick = web_settings.model_copy(update={"web_login_delay_s": 0.01,
                                            "web_login_delay_max_s": 0.02})
    with serve(quick) as web:
        _log_ins(web)


def _log_ins(web: WebServer) -> None:
    _users(web)
    client = web.client(logged_in=False)
    token = csrf_from(client.get("/entrar").text)
    for user, password in (("u-rh", "mala-clave-de-prueba"), ("nadie", USER_PASSWORD)):
        r = client.post("/entrar", data={"usuario": user, "password": password, "csrf": token})
        assert r.status_code == 401 and "Usuario o contraseña incorrectos" in r.text
    assert web.client(user="U-RH", password=USER_PASSWORD).get("/lotes").status_code == 200
    assert web.client(user="", password=PASSWORD).get("/usuarios").status_code == 200
    assert web.client(user="admin", password=PASSWORD).get("/usuarios").status_code == 200


def test_disable_and_password_change_end_the_sessions(web: WebServer,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """``users password`` and ``users disable`` on the command line end that user's open
    sessions at once; the other users' sessions go on; a disabled user cannot log in again."""
    _users(web)
    rh = web.client(user="u-rh", password=USER_PASSWORD)
    other = web.client(user="u-lectura", password=USER_PASSWORD)
    assert rh.get("/lotes").status_code == 200
    monkeypatch.setattr("sys.stdin", io.StringIO(NEW_PASSWORD + "\n"))
    assert main(["users", "password", "u-rh", "--password-stdin"]) == 0
    r = rh.get("/lotes")
    assert r.status_code == 303 and f"motivo={SESSION_ENDED}" in r.headers["location"]
    assert other.get("/lotes").status_code == 200
    again = web.client(user="u-rh", password=NEW_PASSWORD)
    assert main(["usuarios", "desactivar", "u-rh"]) == 0
    assert again.get("/lotes").status_code == 303
    client = web.client(logged_in=False)
    r = client.post("/entrar", data={"usuario": "u-rh", "password": NEW_PASSWORD,
                                     "csrf": csrf_from(client.get("/entrar").text)})
    assert r.status_code == 401
    assert other.get("/lotes").status_code == 200


def test_admin_adds_and_disables_users_on_the_users_page(web: WebServer) -> None:
    """The users page adds an account (weak passwords refused, in Spanish), disables it, and
    writes both to the audit trail."""
    admin = web.client()
    csrf = csrf_from(admin.get("/usuarios").text)
    r = admin.post("/usuarios", data={"csrf": csrf, "accion": "crear", "nombre": "luisa",
                                      "rol": "lectura", "contrasena": "corta"})
    assert r.status_code == 400 and "demasiado débil" in r.text
    r = admin.post("/usuarios", data={"csrf": csrf, "accion": "crear", "nombre": "luisa",
                                      "rol": "lectura", "contrasena": USER_PASSWORD})
    assert r.status_code == 303
    page = admin.get("/usuarios").text
    assert "luisa" in page and "Solo lectura" in page
    luisa = web.client(user="luisa", password=USER_PASSWORD)
    assert luisa.get("/usuarios").status_code == 403
    r = admin.post("/usuarios", data={"csrf": csrf, "accion": "desactivar", "nombre": "luisa"})
    assert r.status_code == 303
    assert luisa.get("/lotes").status_code == 303
    audit = admin.get("/auditoria").text
    assert "Creó un usuario" in audit and "Desactivó un usuario" in audit


def test_users_and_tokens_commands(capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """``users add/list/disable`` and ``tokens add/list/revoke`` (and their Spanish names):
    Argon2id hashes and SHA-256 token hashes in the database, the token printed once on the
    last line, bad input refused with one Spanish line and exit 2."""
    monkeypatch.setattr("sys.stdin", io.StringIO(USER_PASSWORD + "\n"))
    assert main(["usuarios", "agregar", "ana", "--rol", "rh", "--password-stdin"]) == 0
    assert main(["users", "list", "--json"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert json.loads(out[-1]) == [{"name": "ana", "role": "rh", "active": True,
                                    "created_at": json.loads(out[-1])[0]["created_at"]}]
    assert main(["tokens", "add", "sap", "--scopes", "results:read,batches:write"]) == 0
    captured = capsys.readouterr()
    secret = captured.out.strip().splitlines()[-1]
    assert secret.startswith("cst_") and len(secret) > 40 and "no se vuelve a mostrar" in \
        captured.err
    assert main(["tokens", "list", "--json"]) == 0
    listed = capsys.readouterr().out
    assert secret not in listed
    assert json.loads(listed)[0]["scopes"] == ["batches:write", "results:read"]
    db = sqlite3.connect(tmp_path / "data" / "constancias.db")
    (hashed,) = db.execute("SELECT password_hash FROM users WHERE name='ana'").fetchone()
    assert hashed.startswith("$argon2id$") and USER_PASSWORD not in hashed
    assert db.execute("SELECT count(*) FROM api_tokens WHERE token_hash=?",
                      (secret,)).fetchone() == (0,)
    assert main(["tokens", "revocar", "sap"]) == 0
    assert main(["users", "disable", "ana"]) == 0
    capsys.readouterr()
    for argv in (["tokens", "add", "x", "--scopes", "todo"], ["users", "disable", "nadie"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err
    monkeypatch.setattr("sys.stdin", io.StringIO("corta\n"))
    assert main(["users", "add", "b", "--role", "lectura", "--password-stdin"]) == 2
    assert "demasiado débil" in capsys.readouterr().err
