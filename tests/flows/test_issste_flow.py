"""The ISSSTE flow in real Chromium against the sandbox: every status the portal can produce."""

from __future__ import annotations

from pathlib import Path

import pytest

from fixtures import texts as t
from fixtures.population import SCENARIOS
from flows import issste
from flows.errors import PortalUnavailable
from flows.steps import norm
from tests.flows.flowkit import (
    SHOTS,
    BrowserSpy,
    check,
    check_like_the_engine,
    evidence_files,
    flow_settings,
    fresh_curp,
)
from worker.core.statuses import Status

pytestmark = pytest.mark.browser


def _run(browser, sandbox, tmp_path: Path, curp: str, *, prepare=None, **settings):
    spy = BrowserSpy(browser, prepare)
    return check(spy, "issste", curp, flow_settings(sandbox, **settings), tmp_path)


def test_not_affiliated_gets_the_pdf_and_reads_it(browser, sandbox, tmp_path: Path) -> None:
    """The documented not-affiliated CURP ends not_affiliated with its PDF, facts read from it,
    no evidence kept."""
    curp = SCENARIOS["issste_not_affiliated"]
    outcome = _run(browser, sandbox, tmp_path, curp)
    assert outcome.status is Status.NOT_AFFILIATED, outcome.detail
    assert outcome.pdf_path == tmp_path / "issste.pdf"
    assert outcome.pdf_path.read_bytes()[:5] == b"%PDF-"
    assert outcome.facts.curp == curp and outcome.facts.result == "not_affiliated"
    assert outcome.facts.folio and outcome.facts.folio in outcome.detail
    assert "evidence" not in outcome.extra
    assert {"open", "search", "pdf", "verify"} <= set(outcome.timings)


def test_affiliated_person_has_no_pdf(browser, sandbox, tmp_path: Path) -> None:
    """An override to "affiliated" through the admin API ends affiliated, without a PDF and
    without evidence (it is a verdict)."""
    curp = fresh_curp()
    sandbox.set_person(curp, issste="affiliated")
    outcome = _run(browser, sandbox, tmp_path, curp)
    assert outcome.status is Status.AFFILIATED, outcome.detail
    assert outcome.pdf_path is None and not (tmp_path / "issste.pdf").exists()
    assert "afiliada" in outcome.detail and "evidence" not in outcome.extra


def test_unknown_curp_is_curp_not_found(browser, sandbox, tmp_path: Path) -> None:
    """The documented unknown CURP is curp_not_found, with the portal's message and evidence."""
    outcome = _run(browser, sandbox, tmp_path, SCENARIOS["issste_not_found"])
    assert outcome.status is Status.CURP_NOT_FOUND
    assert outcome.detail == t.ISSSTE_MSG_NOT_FOUND
    assert {"page-1.png", "page-1.html", "trace.zip"} <= evidence_files(outcome.extra["evidence"])


@pytest.mark.parametrize(
    "faults",
    [{"down": True}, {"maintenance": True}, {"error_rate": 1.0, "error_status": 500}],
    ids=["down", "maintenance", "http-500"],
)
def test_portal_faults_are_portal_unavailable(browser, sandbox, tmp_path, faults) -> None:
    """Down, maintenance and 5xx pages raise PortalUnavailable (retried), with evidence."""
    sandbox.set_faults("issste", **faults)
    with pytest.raises(PortalUnavailable) as info:
        _run(browser, sandbox, tmp_path, SCENARIOS["issste_not_affiliated"])
    assert {"page-1.png", "page-1.html", "trace.zip"} <= evidence_files(info.value.evidence_path)


def test_slow_portal_still_gives_the_verdict(browser, sandbox, tmp_path: Path) -> None:
    """Added latency per response only slows the check down."""
    sandbox.set_faults("issste", latency_ms=200)
    outcome = _run(browser, sandbox, tmp_path, SCENARIOS["issste_not_affiliated"])
    assert outcome.status is Status.NOT_AFFILIATED, outcome.detail
    assert outcome.facts.result == "not_affiliated"


def test_failing_search_is_portal_unavailable(browser, sandbox, tmp_path: Path) -> None:
    """When only the search request fails (HTTP 503 behind a healthy page), the page's
    "Ocurrió un error" message is PortalUnavailable."""

    def prepare(context) -> None:
        context.route(
            "**" + t.ISSSTE_SEARCH_API,
            lambda route: route.fulfill(status=503, body="Servicio no disponible"),
        )

    with pytest.raises(PortalUnavailable):
        _run(browser, sandbox, tmp_path, SCENARIOS["issste_not_affiliated"], prepare=prepare)


def test_failing_download_is_portal_unavailable(browser, sandbox, tmp_path: Path) -> None:
    """A "Descargar" that answers 503 instead of the PDF is PortalUnavailable."""

    def prepare(context) -> None:
        context.route(
            "**" + t.ISSSTE_DOWNLOAD_PATH + "*",
            lambda route: route.fulfill(
                status=503,
                content_type="text/html; charset=utf-8",
                body=f"<h1>{t.UNAVAILABLE_TITLE}</h1>",
            ),
        )

    with pytest.raises(PortalUnavailable):
        _run(browser, sandbox, tmp_path, SCENARIOS["issste_not_affiliated"], prepare=prepare,
             navigation_timeout_s=3)


def test_page_without_curp_field_is_portal_changed(browser, sandbox, tmp_path: Path) -> None:
    """A procedure page whose CURP field id changed is portal_changed naming #txtCurp."""

    def prepare(context) -> None:
        def rewrite(route) -> None:
            response = route.fetch()
            body = response.text().replace(f'id="{t.ISSSTE_CURP_ID}"', 'id="curpNueva"')
            route.fulfill(response=response, body=body)

        context.route("**/Servicios/**", rewrite)

    outcome = _run(browser, sandbox, tmp_path, fresh_curp(), prepare=prepare, element_timeout_s=1)
    assert outcome.status is Status.PORTAL_CHANGED
    assert t.ISSSTE_SEL_CURP in outcome.detail
    folder = Path(outcome.extra["evidence"])
    assert {"page-1.png", "page-1.html"} <= evidence_files(folder)
    assert "curpNueva" in (folder / "page-1.html").read_text(encoding="utf-8")


def test_result_shows_the_verdict_before_download(browser, sandbox) -> None:
    """What the flow reads: after "Buscar" the page shows the verdict and "Descargar"; the
    screenshot shows it."""
    curp = SCENARIOS["issste_not_affiliated"]
    context = browser.new_context(locale="es-MX")
    try:
        page = context.new_page()
        page.goto(sandbox.issste_url)
        page.fill(issste.PORTAL.curp, curp)
        page.click(issste.PORTAL.search)
        assert issste._wait_for_answer(page, 5)[0] == "not_affiliated"
        assert page.locator(issste.PORTAL.download).is_visible()
        SHOTS.mkdir(exist_ok=True)
        page.screenshot(path=SHOTS / "issste-result.png", full_page=True)
    finally:
        context.close()


def test_selectors_are_the_sandbox_contract() -> None:
    """The flow's selectors and texts are those the sandbox renders (fixtures/texts.py)."""
    p = issste.PORTAL
    assert (p.curp, p.search, p.result, p.verdict, p.download, p.message) == (
        t.ISSSTE_SEL_CURP, t.ISSSTE_SEL_SEARCH, t.ISSSTE_SEL_RESULT, t.ISSSTE_SEL_VERDICT,
        t.ISSSTE_SEL_DOWNLOAD, t.ISSSTE_SEL_MESSAGE)
    assert norm(t.ISSSTE_VERDICT_NOT_AFFILIATED) == p.verdict_not_affiliated
    assert norm(t.ISSSTE_VERDICT_AFFILIATED) == p.verdict_affiliated
    assert p.msg_not_found in norm(t.ISSSTE_MSG_NOT_FOUND)
    assert p.msg_affiliated in norm(t.ISSSTE_MSG_AFFILIATED)
    assert p.msg_not_affiliated in norm(t.ISSSTE_MSG_NOT_AFFILIATED)
    assert p.msg_failures[0] in norm(t.ISSSTE_MSG_SEARCH_FAILED)
    assert p.msg_curp_format in norm(t.ISSSTE_MSG_CURP_FORMAT)


def test_flaky_portals_give_every_check_right(browser, sandbox, tmp_path: Path) -> None:
    """With 30 % of responses failing on both portals (pages, the search request, downloads),
    six ISSSTE checks retried as the engine does all end with their right status."""
    wanted = ["not_affiliated", "affiliated", "not_affiliated", "not_found", "not_affiliated",
              "affiliated"]
    curps = [fresh_curp() for _ in wanted]
    for curp, outcome in zip(curps, wanted, strict=True):
        sandbox.set_person(curp, issste=outcome)
    for portal in ("imss", "issste"):
        sandbox.set_faults(portal, error_rate=0.3)
    settings = flow_settings(sandbox)
    expected = {"not_affiliated": Status.NOT_AFFILIATED, "affiliated": Status.AFFILIATED,
                "not_found": Status.CURP_NOT_FOUND}
    for curp, outcome in zip(curps, wanted, strict=True):
        result, _ = check_like_the_engine(BrowserSpy(browser), "issste", curp, settings,
                                          tmp_path / curp)
        assert result.status is expected[outcome], result.detail
        if result.facts:
            assert result.facts.curp == curp
