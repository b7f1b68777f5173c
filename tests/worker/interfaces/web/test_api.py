"""The JSON API (SPEC §9) through a real HTTP client against the running app; webhooks to a
real local receiver; batches run on the sandbox."""

from __future__ import annotations

import hashlib
import hmac
import http.server
import io
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from openapi_spec_validator import validate
from openpyxl import load_workbook
from starlette.routing import Mount

from tests.conftest import free_port
from tests.people import expected, synthetic_curps
from tests.worker.interfaces.web.conftest import WebServer, serve
from tests.worker.interfaces.web.test_security import _batch, _fill
from worker.core.roles import SCOPES
from worker.core.statuses import Status
from worker.interfaces.commands import sandbox_settings
from worker.services.batches import batch_status
from worker.storage.accounts import add_token, revoke_token
from worker.storage.audit import AuditFilter, events

PROBLEM = "application/problem+json"


def _token(web: WebServer, name: str, *scopes: str) -> dict[str, str]:
    _, secret = add_token(web.app.state.web.storage, name, list(scopes))
    return {"authorization": f"Bearer {secret}"}


def _is_problem(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    body = r.json()
    assert body["status"] == status and body["title"] and body["detail"]
    assert "Traceback" not in r.text
    return body


def test_a_tokens_scopes_decide_what_it_may_do(web: WebServer, tmp_path: Path) -> None:
    """A token reaches only the routes of its scopes (403 on every other API route, in
    Spanish); a revoked or made-up token is 401; the batch route answers the ``status --json``
    object."""
    batch_id = _batch(web, tmp_path)
    client = httpx.Client(base_url=web.url, timeout=30)
    read = _token(web, "lector", "batches:read")
    results = _token(web, "resultados", "results:read")
    body = _is_problem(client.post("/api/v1/batches", headers=read,
                                   json={"people": [{"curp": "X"}]}), 403)
    assert body["detail"] == "El token no tiene el permiso batches:write."
    _is_problem(client.post("/api/v1/webhooks", headers=results,
                            json={"url": "http://x", "events": ["batch.done"]}), 403)
    _is_problem(client.get(f"/api/v1/batches/{batch_id}/report", headers=read), 403)
    _is_problem(client.get(f"/api/v1/batches/{batch_id}", headers=results), 403)

    r = client.get(f"/api/v1/batches/{batch_id}", headers=read)
    assert r.status_code == 200
    status = batch_status(web.app.state.web.storage, batch_id)
    assert json.loads(json.dumps(status, default=str)).items() <= r.json().items()
    assert r.json()["state"] == "queued" and r.json()["total"] == 6

    r = client.get(f"/api/v1/batches/{batch_id}/report", headers=results)
    assert r.status_code == 200 and r.content[:2] == b"PK"
    assert load_workbook(io.BytesIO(r.content)).sheetnames
    _is_problem(client.get("/api/v1/batches/nohay", headers=read), 404)
    _is_problem(client.get("/api/v1/people/GODE561231HDFRRN09", headers=results), 404)
    _is_problem(client.get("/api/v1/checks/99999/pdf", headers=results), 404)
    _is_problem(client.get("/api/v1/no-existe", headers=read), 404)

    # Every API route: a token with every scope but the route's own is refused.
    api = next(r for r in web.app.routes if isinstance(r, Mount) and r.path == "/api/v1")
    walked = 0
    lacking: dict[str, dict[str, str]] = {}
    for route in api.routes:
        scope = route.endpoint.scope  # type: ignore[attr-defined]
        if scope is None:
            continue  # the document and its page: any valid token (or a page session)
        if scope not in lacking:
            lacking[scope] = _token(web, f"sin-{scope}", *(s for s in SCOPES if s != scope))
        others = lacking[scope]
        method = sorted(set(route.methods or ()) - {"HEAD"})[0]
        url = "/api/v1" + _fill(route.path, batch_id)
        body = _is_problem(client.request(method, url, headers=others, json={}), 403)
        assert scope in body["detail"]
        walked += 1
    assert walked == 6

    revoke_token(web.app.state.web.storage, "lector")
    _is_problem(client.get(f"/api/v1/batches/{batch_id}", headers=read), 401)
    body = _is_problem(client.get(f"/api/v1/batches/{batch_id}",
                                  headers={"authorization": "Bearer cst_inventado"}), 401)
    assert "no es válido" in body["detail"]


def test_openapi_document_validates_and_has_a_readable_page(web: WebServer) -> None:
    """``/api/v1/openapi.json`` is a valid OpenAPI 3.1 document naming every API route; the
    docs page lists them; both need a token or a session."""
    client = httpx.Client(base_url=web.url, timeout=30)
    _is_problem(client.get("/api/v1/openapi.json"), 401)
    doc = client.get("/api/v1/openapi.json", headers=_token(web, "doc", "batches:read")).json()
    validate(doc)
    assert doc["openapi"].startswith("3.1")
    assert set(doc["paths"]) == {"/batches", "/batches/{batch_id}", "/batches/{batch_id}/report",
                                 "/people/{curp}", "/checks/{check_id}/pdf", "/webhooks"}
    page = web.client().get("/api/v1/docs")
    assert page.status_code == 200 and "/api/v1/checks/{check_id}/pdf" in page.text


def test_each_token_has_its_own_rate_limit(web_settings) -> None:
    """Past ``API_RATE_PER_MINUTE`` a token gets 429 with Retry-After; another token does not."""
    with serve(web_settings.model_copy(update={"api_rate_per_minute": 3})) as web:
        client = httpx.Client(base_url=web.url, timeout=30)
        busy, calm = _token(web, "busy", "batches:read"), _token(web, "calm", "batches:read")
        codes = [client.get("/api/v1/batches/x", headers=busy).status_code for _ in range(4)]
        assert codes == [404, 404, 404, 429]
        r = client.get("/api/v1/batches/x", headers=busy)
        assert int(_is_problem(r, 429) and r.headers["retry-after"]) >= 1
        assert client.get("/api/v1/batches/x", headers=calm).status_code == 404


class _Receiver(http.server.BaseHTTPRequestHandler):
    answers: list[int] = []
    received: list[tuple[int, dict[str, str], bytes]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["content-length"]))
        code = self.answers.pop(0) if self.answers else 200
        self.received.append((code, {k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(code)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def _receiver(answers: list[int]) -> Iterator[tuple[str, list]]:
    """A webhook receiver on a free port answering ``answers`` in turn (then 200)."""
    handler = type("Receiver", (_Receiver,), {"answers": list(answers), "received": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", handler.received
    finally:
        server.shutdown()


@pytest.mark.slow
def test_batches_from_json_are_idempotent_and_batch_done_is_signed_and_retried(
        sandbox, web_settings) -> None:
    """POST /batches with an Idempotency-Key gives the same batch twice (409 for the key with
    another body, 422 in Spanish for bad input); when the batch finishes, the webhook
    receiver gets ``batch.done`` signed with the secret returned at creation, again after it
    answered 500; results, people and the PDF are then readable, and the audit trail names
    the token for each read."""
    settings = sandbox_settings(web_settings, sandbox).model_copy(update={
        "webhook_backoff_s": 0.3, "webhook_poll_s": 0.1})
    curp = next(c for c in synthetic_curps(40, seed=41)
                if Status(expected(c)["issste"]).has_pdf)
    want = expected(curp)["issste"]
    with serve(settings) as web, _receiver([500]) as (url, received):
        client = httpx.Client(base_url=web.url, timeout=60)
        auth = _token(web, "buk", "batches:write", "batches:read", "results:read",
                      "webhooks:write")
        hook = client.post("/api/v1/webhooks", headers=auth,
                           json={"url": url, "events": ["batch.done"]})
        assert hook.status_code == 201
        secret = hook.json()["secret"]

        body = {"people": [{"curp": curp.lower(), "external_id": "E-17"}],
                "portals": ["issste"]}
        keyed = {**auth, "idempotency-key": "alta-17"}
        first = client.post("/api/v1/batches", headers=keyed, json=body)
        assert first.status_code == 202
        batch_id = first.json()["batch_id"]
        again = client.post("/api/v1/batches", headers=keyed, json=body)
        assert again.status_code == 202 and again.json() == {"batch_id": batch_id}
        other = {"people": [{"curp": curp, "external_id": "E-18"}], "portals": ["issste"]}
        assert "Idempotency-Key" in _is_problem(
            client.post("/api/v1/batches", headers=keyed, json=other), 409)["detail"]
        assert "CURP válida" in _is_problem(client.post(
            "/api/v1/batches", headers=auth, json={"people": [{"curp": "NO-ES"}]}), 422)["detail"]
        assert _is_problem(client.post("/api/v1/batches", headers=auth, json={"people": []}),
                           422)["detail"] == "people: está vacío."
        assert _is_problem(client.post(
            "/api/v1/batches", headers={**auth, "content-type": "application/json"},
            content=b"{no"), 422)["detail"] == "cuerpo: no es JSON válido."
        wrong_portal = {"people": [{"curp": curp}], "portals": ["sat"]}
        assert "portals: use imss, issste" in _is_problem(client.post(
            "/api/v1/batches", headers=auth, json=wrong_portal), 422)["detail"]
        _is_problem(client.post("/api/v1/batches", headers=auth, content=b"x"), 415)

        deadline = time.monotonic() + 150
        while len(received) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert [code for code, _, _ in received] == [500, 200]
        for _, headers, raw in received:
            stamp = headers["x-constancias-timestamp"]
            mac = hmac.new(secret.encode(), stamp.encode() + b"." + raw, hashlib.sha256)
            assert headers["x-constancias-signature"] == "sha256=" + mac.hexdigest()
            assert abs(int(stamp) - time.time()) < 300
        event = json.loads(received[-1][2])
        assert event["event"] == "batch.done" and event["data"]["batch_id"] == batch_id

        status = client.get(f"/api/v1/batches/{batch_id}", headers=auth).json()
        assert status["state"] == "done" and status["results"][0]["status"] == want
        person = client.get(f"/api/v1/people/{curp}", headers=auth).json()
        check = person["latest"]["issste"]
        assert check["status"] == want and person["history"][0] == check
        pdf = client.get(check["pdf"], headers=auth)
        assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")

        storage = web.app.state.web.storage
        rows = events(storage, AuditFilter(actor="token:buk"))
        assert {"process", "view_batch", "view_person", "download_pdf",
                "webhook_add"} <= {e.action for e in rows}
        (download,) = [e for e in rows if e.action == "download_pdf"]
        assert download.curp == curp and download.batch_id == batch_id
        assert download.address == "127.0.0.1"
        log = web.client().get("/tokens").text
        assert "Entregada" in log and url in log and "HTTP 200" in log

        # The same person in an uploaded sheet (multipart): the same intake, its own batch.
        sheet = f"No. empleado,CURP\nE-17,{curp}\n".encode()
        uploaded = client.post("/api/v1/batches", headers=auth, data={"portals": "issste"},
                               files={"file": ("altas.csv", sheet, "text/csv")})
        assert uploaded.status_code == 202 and uploaded.json()["batch_id"] != batch_id
        assert "CURP" in _is_problem(client.post(
            "/api/v1/batches", headers=auth,
            files={"file": ("vacia.csv", b"nada,aqui\n", "text/csv")}), 422)["detail"]
        while len(received) < 3 and time.monotonic() < deadline + 60:
            time.sleep(0.2)
        assert json.loads(received[2][2])["data"]["batch_id"] == uploaded.json()["batch_id"]
