"""The admin pages in Chromium: users, API tokens (shown once) with the delivery log, audit."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.worker.interfaces.web.conftest import WebServer, shot
from tests.worker.interfaces.web.test_accounts import USER_PASSWORD
from tests.worker.interfaces.web.test_security import _batch
from worker.engine.webhooks import add_webhook, emit

pytestmark = [pytest.mark.browser]


def test_admin_manages_users_tokens_and_reads_the_audit_trail(web: WebServer, page, login,
                                                              tmp_path: Path) -> None:
    """An admin adds a user, creates a token (its value shown once, then only its name),
    sees a webhook delivery in the log, and finds all of it, plus a download, in the audit
    page, filtered by action."""
    batch_id = _batch(web, tmp_path)
    storage = web.app.state.web.storage
    add_webhook(storage, "http://127.0.0.1:9/recibir", ["batch.done"], None)
    emit(storage, "batch.done", f"batch.done:{batch_id}", {"batch_id": batch_id})
    login(web)
    page.goto(web.url + "/usuarios")
    page.get_by_label("Usuario", exact=True).fill("marta.lopez")
    page.get_by_label("Rol").select_option("lectura")
    page.get_by_label("Contraseña inicial").fill(USER_PASSWORD)
    page.get_by_role("button", name="Agregar").click()
    expect(page.get_by_role("status")).to_have_text("Usuario creado.")
    expect(page.get_by_role("row", name=re.compile("marta.lopez"))).to_contain_text(
        "Solo lectura")
    shot(page, "usuarios")

    page.goto(web.url + "/tokens")
    page.get_by_label("Nombre (el sistema que lo usará)").fill("buk")
    page.get_by_role("checkbox", name=re.compile("batches:write")).check()
    page.get_by_role("checkbox", name=re.compile("results:read")).check()
    page.get_by_role("button", name="Crear token").click()
    secret = page.locator("#token-nuevo").inner_text()
    assert secret.startswith("cst_")
    expect(page.get_by_role("row", name=re.compile("buk"))).to_contain_text("Vigente")
    shot(page, "tokens-creado")
    # Shown once: the page read again lists the token by name only. The delivery loop has
    # tried the unreachable receiver meanwhile and logged it for a retry.
    page.goto(web.url + "/tokens")
    assert secret not in page.content()
    # The loop's first attempt may come after this read (it polls every few seconds, later
    # under load): the page is read again until the delivery row changes, with a deadline.
    deliveries = page.locator("table").last
    deadline = time.monotonic() + 60
    while ("Sin conexión con el destino" not in deliveries.inner_text()
           and time.monotonic() < deadline):
        page.wait_for_timeout(250)
        page.reload()
    expect(deliveries).to_contain_text("batch.done")
    expect(deliveries).to_contain_text("Sin conexión con el destino")
    shot(page, "tokens")

    page.request.get(web.url + f"/lotes/{batch_id}/reporte")
    page.goto(web.url + "/auditoria")
    body = page.locator("tbody")
    for text in ("Creó un usuario", "Creó un token", "Descargó un reporte"):
        expect(body).to_contain_text(text)
    shot(page, "auditoria")
    page.get_by_label("Acción").select_option("token_add")
    page.get_by_role("button", name="Filtrar").click()
    expect(body.locator("tr")).to_have_count(1)
    expect(body).to_contain_text("buk: batches:write,results:read")
