"""HR's whole path in Chromium against the sandbox: upload, process, watch, download."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import pytest
from openpyxl import load_workbook
from playwright.sync_api import expect

from tests.people import expected, synthetic_curps, write_sheet
from tests.worker.interfaces.web.conftest import serve, shot
from worker.core.statuses import Status
from worker.interfaces.commands import sandbox_settings

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_upload_process_watch_and_download_on_the_sandbox(sandbox, web_settings, page, login,
                                                         tmp_path: Path) -> None:
    """A sheet of three people and a bad row: findings, Procesar, live progress to
    Terminado, the per-row statuses in Spanish with PDF links, the report and the zip."""
    curps = synthetic_curps(3, seed=31)
    sheet = write_sheet(tmp_path / "altas marzo.xlsx", [*curps, "NO-ES-CURP"])
    settings = sandbox_settings(web_settings, sandbox).model_copy(update={"concurrency": 3})
    with serve(settings) as web:
        login(web)
        page.get_by_label("Hoja de cálculo").set_input_files(str(sheet))
        page.get_by_role("button", name="Revisar hoja").click()
        expect(page.locator("#n-validas")).to_have_text("3")
        expect(page.locator("#n-invalidas")).to_have_text("1")
        page.get_by_role("button", name="Procesar").click()
        expect(page).to_have_url(re.compile(r"/lotes/[0-9a-f]{12}$"))
        batch_id = page.url.rsplit("/", 1)[1]
        expect(page.get_by_role("heading", level=1)).to_have_text("Lote de «altas marzo.xlsx»")
        expect(page.locator("#progreso-imss")).to_have_attribute("max", "3")
        shot(page, "4-lote-en-proceso")
        # The page polls and reloads itself when the batch is done.
        expect(page.locator("#estado-texto")).to_have_text("Terminado", timeout=150_000)
        shot(page, "5-lote-terminado")

        rows = page.locator("#filas tr")
        expect(rows).to_have_count(4)
        # Columns: Fila, CURP, No. empleado, Nombre, IMSS, ISSSTE, Observaciones.
        for curp in curps:
            cells = page.locator("#filas tr", has_text=curp).locator("td")
            for column, portal in ((4, "imss"), (5, "issste")):
                status = Status(expected(curp)[portal])
                expect(cells.nth(column).locator(".badge")).to_have_text(status.label)
                pdf_links = cells.nth(column).get_by_role("link", name=re.compile("^PDF"))
                expect(pdf_links).to_have_count(1 if status.has_pdf else 0)
        expect(rows.nth(3)).to_contain_text(Status.INVALID_CURP.label)

        # A PDF link opens the constancia from the batch folder.
        first_pdf = page.get_by_role("link", name=re.compile("^PDF")).first
        href = first_pdf.get_attribute("href")
        assert href and href.startswith(f"/lotes/{batch_id}/archivos/")
        response = page.request.get(web.url + href)
        assert response.status == 200 and response.body()[:5] == b"%PDF-"

        with page.expect_download() as report_download:
            page.get_by_role("link", name="Descargar reporte (Excel)").click()
        report = tmp_path / "reporte-descargado.xlsx"
        report_download.value.save_as(report)
        wb = load_workbook(report)
        assert {"Resumen", "Detalle", "Errores"} <= set(wb.sheetnames)
        detail = "\n".join(str(c.value) for row in wb["Detalle"].iter_rows() for c in row)
        assert all(curp in detail for curp in curps)

        with page.expect_download() as zip_download:
            page.get_by_role("link", name=re.compile("^Descargar todo")).click()
        bundle = tmp_path / "todo.zip"
        zip_download.value.save_as(bundle)
        names = zipfile.ZipFile(bundle).namelist()
        assert "reporte.xlsx" in names
        expected_pdfs = sum(Status(c).has_pdf for curp in curps for c in expected(curp).values())
        assert len([n for n in names if n.endswith(".pdf")]) == expected_pdfs

        page.get_by_role("link", name="Lotes").click()
        expect(page.locator("tbody tr").first).to_contain_text("Terminado")
        shot(page, "5b-lotes")
        page.get_by_role("link", name="Personas").click()
        expect(page.locator("tbody tr")).to_have_count(3)
        shot(page, "6b-personas-con-resultados")
