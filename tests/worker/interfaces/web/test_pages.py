"""The HR web page in real Chromium: log in, upload, findings, people, captchas, limits."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

import fixtures
from tests.people import synthetic_curps, write_sheet
from tests.worker.interfaces.web.conftest import PASSWORD, WebServer, serve, shot
from worker.services.batches import prepare_batch

pytestmark = pytest.mark.browser

SAMPLE = Path(fixtures.__file__).parent / "sample" / "onboarding.xlsx"


def test_log_in_with_wrong_then_right_password(web: WebServer, page) -> None:
    """The log-in form says a wrong password is wrong, and the right one opens the page."""
    page.goto(web.url + "/lotes")
    expect(page).to_have_url(re.compile(r"/entrar\?siguiente=%2Flotes$"))
    assert page.locator("html").get_attribute("lang") == "es"
    shot(page, "1-entrar")
    page.get_by_label("Contraseña").fill("no-es-la-clave")
    page.get_by_role("button", name="Entrar").click()
    expect(page.get_by_role("alert")).to_have_text("Usuario o contraseña incorrectos.")
    shot(page, "1b-entrar-error")
    page.get_by_label("Contraseña").fill(PASSWORD)
    page.keyboard.press("Enter")  # the keyboard alone is enough
    expect(page).to_have_url(web.url + "/lotes")
    expect(page.get_by_role("heading", level=1)).to_have_text("Lotes")


def test_upload_shows_the_findings_first(web: WebServer, page, login) -> None:
    """Uploading the sample sheet shows its rows, valid CURPs, the invalid row with its
    reason and the duplicate, with the portals to choose before anything is sent."""
    login(web)
    shot(page, "2-cargar")
    page.get_by_label("Hoja de cálculo").set_input_files(str(SAMPLE))
    page.get_by_role("button", name="Revisar hoja").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Revisión de «onboarding.xlsx»")
    expect(page.locator("#n-filas")).to_have_text("14")
    expect(page.locator("#n-validas")).to_have_text("12")
    expect(page.locator("#n-invalidas")).to_have_text("1")
    expect(page.locator("#n-duplicadas")).to_have_text("1")
    invalid = page.locator("#tabla-invalidas tbody tr")
    expect(invalid).to_have_count(1)
    expect(invalid.first).to_contain_text("dígito verificador")
    expect(page.locator("#tabla-duplicadas tbody tr").first).to_contain_text("fila 7")
    expect(page.get_by_label(re.compile("IMSS —"))).to_be_checked()
    expect(page.get_by_label(re.compile("ISSSTE —"))).to_be_checked()
    shot(page, "3-hallazgos")
    # No portal chosen: asked again, nothing started.
    page.get_by_label(re.compile("IMSS —")).uncheck()
    page.get_by_label(re.compile("ISSSTE —")).uncheck()
    page.get_by_role("button", name="Procesar").click()
    expect(page.get_by_role("alert")).to_contain_text("Elija al menos un portal")
    assert web.app.state.web.storage.list_batches() == []


def test_unusable_file_gets_its_reason_on_the_page(web: WebServer, page, login,
                                                    tmp_path: Path) -> None:
    """A file that is not a sheet comes back to the upload form with the reason in Spanish."""
    login(web)
    bad = tmp_path / "contrato.xlsx"
    bad.write_bytes(b"%PDF-1.7\nnot a sheet")
    page.get_by_label("Hoja de cálculo").set_input_files(str(bad))
    page.get_by_role("button", name="Revisar hoja").click()
    expect(page.get_by_role("alert")).to_contain_text("contrato.xlsx")
    expect(page.get_by_role("alert")).to_contain_text("PDF")
    shot(page, "3b-hoja-invalida")


def test_oversized_upload_is_refused_in_the_browser(web: WebServer, page, login,
                                                    tmp_path: Path) -> None:
    """A file over the limit is flagged as soon as it is chosen, and if sent anyway the
    server answers with the 413 page and its Spanish message."""
    login(web)
    big = tmp_path / "enorme.csv"
    big.write_bytes(b"CURP\n" + b"A" * (web.settings.web_max_upload_bytes + 10))
    page.get_by_label("Hoja de cálculo").set_input_files(str(big))
    expect(page.locator("#hoja-grande")).to_be_visible()
    # Bypass the page's own check, as an old browser or a script would.
    with page.expect_response(lambda r: r.url.endswith("/subir")) as sent:
        page.evaluate("document.getElementById('form-carga').submit()")
    assert sent.value.status == 413
    expect(page.locator("#error-carga")).to_contain_text("demasiado grande")
    shot(page, "3c-demasiado-grande")


def test_people_can_be_deactivated_and_reactivated(web: WebServer, page, login,
                                                   tmp_path: Path) -> None:
    """The people page lists everyone checked; Desactivar takes one out of the nightly
    re-check and Reactivar puts them back."""
    curps = synthetic_curps(3, seed=21)
    storage = web.app.state.web.storage
    prepare_batch(web.settings, storage, write_sheet(tmp_path / "altas.xlsx", curps), ["imss"])
    login(web)
    page.get_by_role("link", name="Personas").click()
    expect(page.locator("tbody tr")).to_have_count(3)
    row = page.locator(f"#p-{curps[1]}")
    row.get_by_role("button", name=f"Desactivar {curps[1]}").click()
    expect(page.get_by_role("status")).to_contain_text("desactivada")
    expect(page.locator(f"#p-{curps[1]}")).to_contain_text("Inactiva")
    active = {p.curp: p.active for p in storage.people()}
    assert active == {curps[0]: True, curps[1]: False, curps[2]: True}
    shot(page, "6-personas")
    page.locator(f"#p-{curps[1]}").get_by_role("button", name=f"Reactivar {curps[1]}").click()
    expect(page.locator(f"#p-{curps[1]}")).to_contain_text("Activa")
    assert all(p.active for p in storage.people())
    page.get_by_label("Buscar por CURP").fill(curps[2][:8].lower())
    page.get_by_role("button", name="Buscar").click()
    expect(page.locator("tbody tr")).to_have_count(1)


def test_captchas_page_says_when_the_solver_is_automatic(web: WebServer, page, login) -> None:
    """With the OCR solver the captchas page explains it is not needed (and is not in the
    menu)."""
    login(web)
    expect(page.get_by_role("link", name="Captchas")).to_have_count(0)
    page.goto(web.url + "/captchas")
    expect(page.locator("main")).to_contain_text("automáticamente")


def test_manual_captcha_is_answered_from_the_page(web_settings, page, login) -> None:
    """With the manual solver, a captcha the engine is waiting on appears with its image; the
    answer typed on the page is what the solver hands back to the flow."""
    import threading

    from fixtures.captcha_image import render
    from flows.captcha import ManualSolver

    settings = web_settings.model_copy(update={"captcha_solver": "manual"})
    solver = ManualSolver(settings.data_dir, timeout_s=60, poll_s=0.05)
    got: list[str] = []
    with serve(settings) as web:
        login(web)
        page.get_by_role("link", name="Captchas").click()
        expect(page.locator("main")).to_contain_text("No hay captchas esperando")
        waiting = threading.Thread(target=lambda: got.append(
            solver.solve(render("Hm4tR"), key="lote1-imss-7")), daemon=True)
        waiting.start()
        # The empty page refreshes itself; reloading here only saves the wait.
        image = page.get_by_role("img", name=re.compile("Captcha 1"))
        for _ in range(100):
            page.reload()
            if image.count():
                break
        expect(image).to_be_visible()
        assert page.evaluate("document.querySelector('main img').naturalWidth") > 0
        shot(page, "7-captchas")
        page.get_by_label("Texto del captcha 1").fill("Hm4tR")
        page.get_by_role("button", name="Enviar").click()
        expect(page.get_by_role("status")).to_contain_text("Respuesta enviada")
        waiting.join(30)
    assert got == ["Hm4tR"]
