"""A third portal is one module plus its simulator: this file is both, and nothing else changes.

The toy portal ("tramites de prueba") has a search page, a result and a PDF to download, like
the real ones. It is registered with ``flows.registry.register`` and then run through the
engine (``Engine.execute``, the body every executor runs), the report and ``status --json``;
``constancias doctor`` looks at it from its declaration too.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

import pytest
from fpdf import FPDF
from openpyxl import load_workbook

from flows import registry
from flows.base import CheckContext, Outcome
from flows.browser import close_shared
from flows.errors import PortalChanged
from flows.pdf import pdf_text
from tests.worker.sheets import VALID, write_csv
from worker.core.settings import Settings, load_settings
from worker.core.statuses import Status
from worker.engine.check import Decision, Engine
from worker.interfaces.cli import main
from worker.services.batches import open_storage, prepare_batch
from worker.services.doctor import run_doctor

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

KNOWN, UNKNOWN = VALID[0], VALID[1]

# --- the simulator: a search page, a result page, a PDF -------------------------------------

_SEARCH = """<!doctype html><html lang="es"><body><h1>Trámites de prueba</h1>
<form action="resultado" method="get"><label for="curp">CURP</label>
<input id="curp" name="curp" maxlength="18"><button id="buscar" type="submit">Buscar</button>
</form></body></html>"""


def _pdf(curp: str) -> bytes:
    doc = FPDF()
    doc.add_page()
    doc.set_font("helvetica", size=14)
    doc.cell(text="CONSTANCIA DE PRUEBA")
    doc.ln()
    doc.cell(text=f"CURP: {curp}")
    return bytes(doc.output())


class _Handler(BaseHTTPRequestHandler):
    #: The fault switch: the search page without its button (a portal that changed).
    no_button = False
    #: Every search asked (a CURP each): what a query spends.
    searches: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        url = urlsplit(self.path)
        curp = parse_qs(url.query).get("curp", [""])[0].upper()
        if url.path == "/resultado":
            self.searches.append(curp)
        if url.path == "/tramite":
            search = _SEARCH.replace('<button id="buscar"', '<button id="otro"'
                                     ) if self.no_button else _SEARCH
            self._send(200, "text/html; charset=utf-8", search.encode())
        elif url.path == "/resultado" and curp == KNOWN:
            body = (f'<p id="resultado">Registro encontrado para {curp}.</p>'
                    f'<a id="descargar" href="/constancia.pdf?curp={curp}">Descargar</a>')
            self._send(200, "text/html; charset=utf-8", body.encode())
        elif url.path == "/resultado":
            self._send(200, "text/html; charset=utf-8",
                       b'<p id="resultado">No existe registro con esa CURP.</p>')
        elif url.path == "/constancia.pdf":
            self._send(200, "application/pdf", _pdf(curp),
                       {"Content-Disposition": 'attachment; filename="constancia.pdf"'})
        else:
            self._send(404, "text/plain", b"no")

    def _send(self, code: int, kind: str, body: bytes, headers: dict[str, str] | None = None
              ) -> None:
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        return None


# --- the portal module: its flow and its declaration ----------------------------------------


def open_search(page: Page, settings: Settings, _retry: object = None) -> None:
    """The search page, where the procedure starts."""
    page.goto(registry.portal("toy").url(settings) + "/tramite")


def find_search(page: Page, _settings: Settings, _retry: object = None) -> str:
    """The CURP box and the button the flow uses, each found (``PortalChanged`` naming the one
    missing): what ``constancias doctor`` checks, without searching."""
    for selector, what in (("#curp", "la caja de la CURP"), ("#buscar", "el botón «Buscar»")):
        if not page.locator(selector).count():
            raise PortalChanged(f"No está {what} ({selector}) en la página de búsqueda")
    return "Están la caja de la CURP y el botón «Buscar». No se buscó ninguna CURP."


def run(ctx: CheckContext) -> Outcome:
    """The toy portal's flow: search the CURP, read the answer, download the PDF if any."""
    page = ctx.browser_context.new_page()
    open_search(page, ctx.settings)
    page.fill("#curp", ctx.person.curp)
    page.click("#buscar")
    answer = page.inner_text("#resultado")
    if "No existe" in answer:
        return Outcome(Status.CURP_NOT_FOUND, detail=answer)
    with page.expect_download() as info:
        page.click("#descargar")
    pdf = ctx.work_dir / "toy.pdf"
    info.value.save_as(pdf)
    assert ctx.person.curp in pdf_text(pdf.read_bytes())
    return Outcome(Status.NOT_ENTITLED, detail=answer, pdf_path=pdf)


def declaration(url: str) -> registry.Portal:
    """The toy portal's entry. It has no fields of its own in ``Settings``: its URL, rate and
    concurrency are the declared defaults."""
    return registry.Portal(
        name="toy", title="Prueba", procedure="Constancia de prueba", order=5, flow=run,
        url_setting="toy_url", rate_setting="rate_limit_toy",
        concurrency_setting="max_concurrency_toy", pdf_title="CONSTANCIA DE PRUEBA",
        default_url=url, default_rate_per_min=600, default_max_concurrency=2,
        doctor=registry.DoctorLook(open=open_search, page_name="Página de búsqueda",
                                   form=find_search),
    )


@pytest.fixture
def toy_portal() -> Iterator[str]:
    """The simulator on a free port and the portal registered with its URL; both gone after."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    toy = registry.register(declaration(f"http://127.0.0.1:{server.server_port}"))
    try:
        yield toy.name
    finally:
        registry.unregister(toy.name)
        server.shutdown()
        _Handler.no_button = False
        _Handler.searches.clear()


def _execute_in_own_thread(engine: Engine, check_ids: list[int]) -> list[Decision]:
    """``Engine.execute`` each check in a thread of its own, as a pool process would: the
    engine's browser is per thread (Playwright's sync API), and this test session's thread may
    already drive the ``browser`` fixture's."""
    decisions: list[Decision] = []

    def work() -> None:
        try:
            decisions.extend(engine.execute(check_id) for check_id in check_ids)
        finally:
            close_shared()

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(240)
    return decisions


@pytest.mark.browser
def test_a_toy_third_portal_runs_through_engine_report_and_status(
        toy_portal: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A portal registered from one module is listed, checked by the engine, reported in the
    Excel report under its own title, and shown by ``status --json``."""
    assert toy_portal in registry.names()
    settings = load_settings()
    storage = open_storage(settings)
    sheet = write_csv(tmp_path / "hoja.csv", [["CURP"], [KNOWN], [UNKNOWN]])
    batch_id, _ = prepare_batch(settings, storage, sheet, [toy_portal])

    pending = storage.pending_check_ids(batch_id, registry.run_order())
    assert {portal for _, portal in pending} == {toy_portal}
    decisions = _execute_in_own_thread(Engine(settings, storage), [cid for cid, _ in pending])
    assert all(d.done for d in decisions), decisions

    batch = storage.get_batch(batch_id)
    assert batch is not None and batch.state == "done" and batch.report_path
    statuses = {c.curp: c for c in storage.checks(batch_id)}
    assert statuses[KNOWN].status == Status.NOT_ENTITLED.value
    assert Path(statuses[KNOWN].pdf_path or "").read_bytes().startswith(b"%PDF-")
    assert statuses[UNKNOWN].status == Status.CURP_NOT_FOUND.value

    detail = load_workbook(batch.report_path)["Detalle"]
    header = [c.value for c in next(detail.iter_rows(max_row=1))]
    assert any("Prueba" in str(h) for h in header), header
    cells = [str(c.value) for row in detail.iter_rows(min_row=2) for c in row]
    assert Status.NOT_ENTITLED.label in cells and Status.CURP_NOT_FOUND.label in cells

    capsys.readouterr()  # the engine's log lines so far
    assert main(["status", batch_id, "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["state"] == "done" and status["total"] == 2
    assert {(r["curp"], r["portal"], r["status"]) for r in status["results"]} == {
        (KNOWN, toy_portal, "not_entitled"), (UNKNOWN, toy_portal, "curp_not_found")}


@pytest.mark.browser
def test_doctor_looks_at_a_toy_third_portal_from_its_declaration(toy_portal: str,
                                                                 browser: Browser) -> None:
    """Doctor opens the toy portal's page and finds its search controls from its registry
    entry alone (no check of doctor's own for it), and searches no CURP."""
    report = run_doctor(load_settings(), [toy_portal], browser=browser)
    checks = {c.name: c for c in report.checks}
    assert [n for n in checks if n.startswith(("toy.", "imss.", "issste."))] == [
        "toy.page", "toy.form"]
    assert checks["toy.page"].ok and "Página de búsqueda abierta" in checks["toy.page"].detail
    assert checks["toy.form"].ok and "No se buscó" in checks["toy.form"].detail
    assert _Handler.searches == []


@pytest.mark.browser
def test_doctor_reports_a_toy_portal_that_changed_as_its_form_check(toy_portal: str,
                                                                    browser: Browser) -> None:
    """The toy page without its button fails ``toy.form`` alone, saying the portal changed and
    which flow module to update (the same words as for IMSS and ISSSTE)."""
    _Handler.no_button = True
    report = run_doctor(load_settings(), [toy_portal], browser=browser)
    checks = {c.name: c for c in report.checks}
    assert checks["toy.page"].ok
    assert not checks["toy.form"].ok
    detail = checks["toy.form"].detail
    assert "«Buscar»" in detail and "cambió" in detail and "flows/toy.py" in detail, detail
    assert _Handler.searches == []


def test_the_registry_refuses_a_second_portal_with_a_taken_name() -> None:
    """Names are unique: registering "imss" again is refused, the first one stays."""
    with pytest.raises(ValueError, match="already registered"):
        registry.register(registry.Portal(name="imss", title="Otro", procedure="-", order=0,
                                          flow=run))
    assert registry.portal("imss").title == "IMSS"


def test_checks_start_in_the_registry_run_order(tmp_path: Path) -> None:
    """A batch listing ISSSTE before IMSS still starts its IMSS checks first (IMSS's order
    is lower: its checks are the long ones)."""
    settings = load_settings()
    storage = open_storage(settings)
    sheet = write_csv(tmp_path / "hoja.csv", [["CURP"], [KNOWN], [UNKNOWN]])
    batch_id, _ = prepare_batch(settings, storage, sheet, ["issste", "imss"])
    portals = [p for _, p in storage.pending_check_ids(batch_id, registry.run_order())]
    assert portals == ["imss", "imss", "issste", "issste"]
