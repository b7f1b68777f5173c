"""The ISSSTE flow in real Chromium against the WebForms sandbox: every verdict on every markup
variant and download style, the faults, refused postbacks retried, a captcha refused."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fixtures import texts as t
from fixtures.issste_app import DOWNLOADS, MARKUPS
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

COMBINATIONS = [(m, d) for m in sorted(MARKUPS) for d in DOWNLOADS]
IDS = [f"{m}-{d}" for m, d in COMBINATIONS]
#: How each download style's PDF reaches the flow in headless Chromium (no PDF viewer): the
#: attachment and the handler's window arrive as downloads; the viewer's source is fetched, or
#: its frame's own load (a download or an inline response) comes first.
VIA = {"postback": {"download"}, "handler": {"download", "response"},
       "viewer": {"viewer", "download", "response"}}


def _run(browser, sandbox, tmp_path: Path, curp: str, *, prepare=None, **settings):
    spy = BrowserSpy(browser, prepare)
    return check(spy, "issste", curp, flow_settings(sandbox, **settings), tmp_path)


@pytest.mark.parametrize(("markup", "download"), COMBINATIONS, ids=IDS)
def test_not_affiliated_gets_the_verified_pdf_on_every_variant(
        browser, sandbox, tmp_path: Path, markup: str, download: str) -> None:
    """Not affiliated ends not_affiliated with the PDF, whose CURP and verdict flows/pdf.py
    read, on every markup variant and download style; no evidence is kept."""
    sandbox.set_faults("issste", markup=markup, download=download)
    curp = SCENARIOS["issste_not_affiliated"]
    run = _run(browser, sandbox, tmp_path, curp)
    outcome = run.outcome
    assert outcome.status is Status.NOT_AFFILIATED, outcome.detail
    assert outcome.pdf_path == tmp_path / "issste.pdf"
    assert outcome.facts.curp == curp and outcome.facts.result == "not_affiliated"
    assert outcome.facts.folio and outcome.facts.folio in outcome.detail
    assert outcome.pdf_source in VIA[download]
    assert run.evidence is None
    assert {"open", "search", "pdf", "verify"} <= set(outcome.timings)
    assert sandbox.stats("issste")["queries"] == {curp: 1}


@pytest.mark.parametrize(("markup", "download"), COMBINATIONS, ids=IDS)
def test_affiliated_has_no_pdf_on_every_variant(browser, sandbox, tmp_path: Path, markup: str,
                                                download: str) -> None:
    """An affiliated person ends affiliated, with the portal's message, no PDF and no
    evidence, on every variant."""
    sandbox.set_faults("issste", markup=markup, download=download)
    curp = fresh_curp()
    sandbox.set_person(curp, issste="affiliated")
    run = _run(browser, sandbox, tmp_path, curp)
    outcome = run.outcome
    assert outcome.status is Status.AFFILIATED, outcome.detail
    assert outcome.detail == t.ISSSTE_MSG_AFFILIATED
    assert outcome.pdf_path is None and not (tmp_path / "issste.pdf").exists()
    assert run.evidence is None


@pytest.mark.parametrize(("markup", "download"), COMBINATIONS, ids=IDS)
def test_unknown_curp_is_curp_not_found_on_every_variant(browser, sandbox, tmp_path: Path,
                                                         markup: str, download: str) -> None:
    """The documented unknown CURP is curp_not_found with the portal's message (and evidence),
    on every variant."""
    sandbox.set_faults("issste", markup=markup, download=download)
    run = _run(browser, sandbox, tmp_path, SCENARIOS["issste_not_found"])
    outcome = run.outcome
    assert outcome.status is Status.CURP_NOT_FOUND, outcome.detail
    assert outcome.detail == t.ISSSTE_MSG_NOT_FOUND
    assert {"page-1.png", "page-1.html", "trace.zip"} <= evidence_files(run.evidence)


@pytest.mark.parametrize(
    "faults",
    [{"down": True}, {"maintenance": True}, {"error_rate": 1.0, "error_status": 500},
     {"error_rate": 1.0, "error_status": 503}],
    ids=["down", "maintenance", "http-500", "http-503"],
)
def test_portal_faults_are_portal_unavailable(browser, sandbox, tmp_path, faults) -> None:
    """Down, maintenance and 500/503 pages raise PortalUnavailable (retried), with evidence."""
    sandbox.set_faults("issste", markup="b", **faults)
    with pytest.raises(PortalUnavailable) as info:
        _run(browser, sandbox, tmp_path, SCENARIOS["issste_not_affiliated"])
    assert {"page-1.png", "page-1.html", "trace.zip"} <= evidence_files(info.value.evidence)


def _spoil_first(what: str):
    """A context preparation that alters ``__VIEWSTATE`` in the first postback naming
    ``what`` (as a stale or corrupted page state would arrive), leaving the rest alone."""
    spoiled: list[str] = []

    def prepare(context) -> None:
        def spoil(route) -> None:
            body = route.request.post_data or ""
            if spoiled or route.request.method != "POST" or what not in body:
                route.continue_()
                return
            spoiled.append(route.request.url)
            # A full postback posts multipart/form-data (DNN's form), a partial one urlencoded.
            body = re.sub(r'(name="__VIEWSTATE"\r\n\r\n[^\r]*)', r"\1x", body, count=1)
            body = re.sub(r"(__VIEWSTATE=[^&]*)", r"\1x", body, count=1)
            route.continue_(post_data=body)

        context.route("**/Servicios/**", spoil)

    return prepare, spoiled


@pytest.mark.parametrize("markup", ["a", "b"], ids=["full-postback", "update-panel"])
def test_refused_search_postback_is_retried_on_a_fresh_page(browser, sandbox, tmp_path: Path,
                                                           markup: str) -> None:
    """A search whose viewstate the server refuses (the ASP.NET error page in a full postback,
    an error delta in a partial one) is made again on a freshly loaded page and ends with the
    right status; only the accepted search reached the lookup."""
    sandbox.set_faults("issste", markup=markup)
    prepare, spoiled = _spoil_first("btnBuscar")
    curp = SCENARIOS["issste_not_affiliated"]
    outcome = _run(browser, sandbox, tmp_path, curp, prepare=prepare).outcome
    assert spoiled, "the first search was not altered"
    assert outcome.status is Status.NOT_AFFILIATED, outcome.detail
    assert outcome.facts.curp == curp
    assert sandbox.stats("issste")["queries"] == {curp: 1}


def test_refused_download_postback_is_retried_after_a_new_search(browser, sandbox,
                                                                 tmp_path: Path) -> None:
    """A "Descargar" postback answered with the ASP.NET error page is retried: a fresh page,
    the search again, the download again; the check ends not_affiliated with its PDF."""
    sandbox.set_faults("issste", markup="d", download="postback")
    prepare, spoiled = _spoil_first("btnDescargar")
    curp = SCENARIOS["issste_not_affiliated"]
    outcome = _run(browser, sandbox, tmp_path, curp, prepare=prepare).outcome
    assert spoiled and outcome.status is Status.NOT_AFFILIATED, outcome.detail
    assert sandbox.stats("issste")["queries"] == {curp: 2}


@pytest.mark.parametrize("markup", ["a", "b"], ids=["full-postback", "update-panel"])
def test_always_expired_viewstate_is_portal_unavailable(browser, sandbox, tmp_path: Path,
                                                        markup: str) -> None:
    """When every page state has expired by the time it is posted (session TTL 0) the search
    is retried and finally PortalUnavailable — never a verdict."""
    sandbox.set_faults("issste", markup=markup, session_ttl_s=0)
    with pytest.raises(PortalUnavailable) as info:
        _run(browser, sandbox, tmp_path, SCENARIOS["issste_not_affiliated"], step_retries=1)
    assert "error de ASP.NET" in str(info.value)
    assert sandbox.stats("issste")["queries"] == {}


def test_a_captcha_is_portal_changed_with_evidence(browser, sandbox, tmp_path: Path) -> None:
    """A captcha appearing on the page (none is known) is portal_changed, with evidence of it,
    and nothing is searched."""

    def prepare(context) -> None:
        def add_captcha(route) -> None:
            response = route.fetch()
            if not response.headers.get("content-type", "").startswith("text/html"):
                route.fulfill(response=response)
                return
            captcha = ('<div class="dnnFormItem"><img id="dnn_ctr439_View_imgCaptcha" '
                       'src="/Captcha.ashx" alt="Captcha" width="180" height="50">'
                       '<input name="dnn$ctr439$View$txtCaptcha" id="dnn_ctr439_View_txtCaptcha">'
                       '</div></fieldset>')
            body = response.text().replace("</fieldset>", captcha, 1)
            route.fulfill(response=response, body=body)

        context.route("**/Servicios/**", add_captcha)

    run = _run(browser, sandbox, tmp_path, fresh_curp(), prepare=prepare)
    outcome = run.outcome
    assert outcome.status is Status.PORTAL_CHANGED
    assert "captcha" in outcome.detail
    folder = run.evidence
    assert {"page-1.png", "page-1.html"} <= evidence_files(folder)
    assert "imgCaptcha" in (folder / "page-1.html").read_text(encoding="utf-8")
    assert sandbox.stats("issste")["queries"] == {}


def test_page_without_a_curp_box_is_portal_changed(browser, sandbox, tmp_path: Path) -> None:
    """A page whose CURP box lost its id suffix and its label is portal_changed, naming the
    control, with evidence."""

    def prepare(context) -> None:
        def rewrite(route) -> None:
            response = route.fetch()
            if not response.headers.get("content-type", "").startswith("text/html"):
                route.fulfill(response=response)
                return
            body = (response.text().replace("txtCURP", "txtClave")
                    .replace(">CURP<", ">Clave<"))
            route.fulfill(response=response, body=body)

        context.route("**/Servicios/**", rewrite)

    run = _run(browser, sandbox, tmp_path, fresh_curp(), prepare=prepare, element_timeout_s=1)
    outcome = run.outcome
    assert outcome.status is Status.PORTAL_CHANGED
    assert issste.PORTAL.curp.what in outcome.detail
    folder = run.evidence
    assert "txtClave" in (folder / "page-1.html").read_text(encoding="utf-8")


def test_controls_are_found_by_label_and_text_without_their_ids(browser, sandbox,
                                                                tmp_path: Path) -> None:
    """With every control id renamed (so no id suffix matches) the flow still finds the CURP
    box by its label and the buttons by their text, and ends not_affiliated."""

    def prepare(context) -> None:
        def rewrite(route) -> None:
            response = route.fetch()
            if not response.headers.get("content-type", "").startswith("text/html"):
                route.fulfill(response=response)
                return
            body = re.sub(r'id="dnn_ctr439_View_(txtCURP|btnBuscar|btnDescargar)"',
                          lambda m: f'id="ctl00_{m.group(1)[::-1]}"', response.text())
            body = body.replace('for="dnn_ctr439_View_txtCURP"', 'for="ctl00_PRUCtxt"')
            route.fulfill(response=response, body=body)

        context.route("**/Servicios/**", rewrite)

    sandbox.set_faults("issste", markup="a", download="handler")
    curp = SCENARIOS["issste_not_affiliated"]
    outcome = _run(browser, sandbox, tmp_path, curp, prepare=prepare).outcome
    assert outcome.status is Status.NOT_AFFILIATED, outcome.detail
    assert outcome.facts.curp == curp


def test_a_page_instead_of_a_delta_is_portal_unavailable(browser, sandbox,
                                                         tmp_path: Path) -> None:
    """A partial postback answered with an HTML page (a proxy's or a gateway's) instead of a
    delta is PortalUnavailable at once, not a wait for a change that never comes."""

    def prepare(context) -> None:
        def answer(route) -> None:
            if "x-microsoftajax" in route.request.headers:
                route.fulfill(status=200, content_type="text/html",
                              body="<html><body><p>Request unsuccessful.</p></body></html>")
            else:
                route.continue_()

        context.route("**/Servicios/**", answer)

    sandbox.set_faults("issste", markup="b")
    with pytest.raises(PortalUnavailable) as info:
        _run(browser, sandbox, tmp_path, SCENARIOS["issste_not_affiliated"], prepare=prepare,
             step_retries=0)
    assert "actualización parcial" in str(info.value)


def test_an_alert_answer_is_read(browser, sandbox, tmp_path: Path) -> None:
    """A portal that answers "not found" in a startup script's alert() instead of a label
    (common on WebForms sites) still ends curp_not_found with that message."""

    def prepare(context) -> None:
        def rewrite(route) -> None:
            response = route.fetch()
            body = re.sub(r'<span id="[^"]*lblMensaje"[^>]*>([^<]*)</span>',
                          lambda m: f"<script>alert({m.group(1)!r});</script>", response.text())
            route.fulfill(response=response, body=body)

        context.route("**/Servicios/**", rewrite)

    sandbox.set_faults("issste", markup="d")
    run = _run(browser, sandbox, tmp_path, SCENARIOS["issste_not_found"], prepare=prepare)
    outcome = run.outcome
    assert outcome.status is Status.CURP_NOT_FOUND, outcome.detail
    assert outcome.detail == t.ISSSTE_MSG_NOT_FOUND


def test_failing_handler_download_is_portal_unavailable(browser, sandbox, tmp_path: Path) -> None:
    """A Descarga.ashx that answers 503 instead of the PDF is PortalUnavailable."""

    def prepare(context) -> None:
        context.route(
            "**" + t.ISSSTE_HANDLER_PATH + "*",
            lambda route: route.fulfill(status=503, content_type="text/html; charset=utf-8",
                                        body=f"<h1>{t.UNAVAILABLE_TITLE}</h1>"))

    sandbox.set_faults("issste", markup="c", download="handler")
    with pytest.raises(PortalUnavailable) as info:
        _run(browser, sandbox, tmp_path, SCENARIOS["issste_not_affiliated"], prepare=prepare,
             step_retries=1)
    assert "HTTP 503" in str(info.value)


def test_slow_portal_still_gives_the_verdict(browser, sandbox, tmp_path: Path) -> None:
    """Added latency per response (the UpdatePanel's overlay stays up longer) only slows the
    check down."""
    sandbox.set_faults("issste", markup="b", download="viewer", latency_ms=300)
    outcome = _run(browser, sandbox, tmp_path, SCENARIOS["issste_not_affiliated"]).outcome
    assert outcome.status is Status.NOT_AFFILIATED, outcome.detail


@pytest.mark.parametrize("markup", sorted(MARKUPS))
def test_result_page_screenshot_per_variant(browser, sandbox, markup: str) -> None:
    """What the flow reads: after "Buscar" each variant shows the verdict and "Descargar"
    (screenshots in /tmp/flow-shots for review)."""
    sandbox.set_faults("issste", markup=markup, download="viewer")
    context = browser.new_context(locale="es-MX")
    try:
        page = context.new_page()
        page.goto(sandbox.issste_url)
        settings = flow_settings(sandbox)
        assert issste._search(page, SCENARIOS["issste_not_affiliated"], settings)[0] == \
            "not_affiliated"
        SHOTS.mkdir(exist_ok=True)
        page.screenshot(path=SHOTS / f"issste-{markup}-result.png", full_page=True)
    finally:
        context.close()


def test_portal_texts_match_the_sandbox_messages() -> None:
    """The flow's fragments and patterns recognise the sandbox's messages and verdicts
    (fixtures/texts.py), and its id suffixes the sandbox's control names."""
    p = issste.PORTAL

    def said(patterns, text) -> bool:
        return any(re.search(pattern, norm(text)) for pattern in patterns)

    assert said(p.verdict_not_affiliated, t.ISSSTE_VERDICT_NOT_AFFILIATED)
    assert said(p.verdict_not_affiliated, t.ISSSTE_MSG_NOT_AFFILIATED)
    assert not said(p.verdict_not_affiliated, t.ISSSTE_MSG_AFFILIATED)
    assert not said(p.verdict_not_affiliated, t.ISSSTE_VERDICT_AFFILIATED)
    assert said(p.verdict_affiliated, t.ISSSTE_MSG_AFFILIATED)
    assert said(p.verdict_affiliated, t.ISSSTE_VERDICT_AFFILIATED)
    assert any(f in norm(t.ISSSTE_MSG_NOT_FOUND) for f in p.msg_not_found)
    assert any(f in norm(t.ISSSTE_MSG_CURP_FORMAT) for f in p.msg_curp_format)
    assert any(f in norm(t.ASPNET_INVALID_POSTBACK) for f in p.aspnet_errors)
    assert any(f in norm(t.ASPNET_INVALID_VIEWSTATE) for f in p.aspnet_errors)
    assert t.ISSSTE_CTL_CURP in p.curp.suffixes and t.ISSSTE_CTL_SEARCH in p.search.suffixes
    assert t.ISSSTE_CTL_DOWNLOAD in p.download.suffixes


@pytest.mark.parametrize(("lines", "download", "verdict"), [
    ([t.ISSSTE_MSG_NOT_AFFILIATED, "Resultado:", t.ISSSTE_VERDICT_NOT_AFFILIATED], True,
     "not_affiliated"),
    (["No se encontraron registros de afiliación al ISSSTE."], True, "not_affiliated"),
    (["Situación: Sin registro de afiliación"], False, "not_affiliated_text"),
    (["La C.U.R.P. no cuenta con afiliación vigente."], False, "not_affiliated_text"),
    ([t.ISSSTE_MSG_AFFILIATED, "Resultado:", t.ISSSTE_VERDICT_AFFILIATED], False, "affiliated"),
    (["Estatus: AFILIADO", "Descargar"], True, "affiliated"),
    (["El trabajador es derechohabiente del ISSSTE."], False, "affiliated"),
    ([t.ISSSTE_MSG_NOT_FOUND], False, "not_found"),
    (["La CURP no se encuentra registrada en RENAPO."], False, "not_found"),
    (["CURP no localizada"], False, "not_found"),
    (["Fecha de consulta: 03/12/2026"], False, None),
])
def test_answers_are_read_by_meaning_not_by_wording(lines, download, verdict) -> None:
    """The verdict is read from what the postback added, in wordings a portal might use: "not
    affiliated" phrasings (which also say "no se encontró…") never read as not found, an
    affiliated verdict wins over a stray "Descargar", unrelated lines are no verdict."""
    answer = issste._read_answer(lines, download=download)
    assert (answer[0] if answer else None) == verdict


def test_error_and_failure_answers_are_retried_not_verdicts() -> None:
    """An ASP.NET error or a "try later" message among the new lines is PortalUnavailable."""
    for lines in ([t.ASPNET_ERROR_HEADING, t.ASPNET_INVALID_POSTBACK],
                  ["Ocurrió un error al realizar la consulta. Intenta más tarde."]):
        with pytest.raises(PortalUnavailable):
            issste._read_answer(lines, download=False)


def test_flaky_portal_gives_every_check_right(browser, sandbox, tmp_path: Path) -> None:
    """With 30 % of responses failing (pages, postbacks, scripts, downloads) on an UpdatePanel
    variant, six ISSSTE checks retried as the engine does all end with their right status."""
    wanted = ["not_affiliated", "affiliated", "not_affiliated", "not_found", "not_affiliated",
              "affiliated"]
    curps = [fresh_curp() for _ in wanted]
    for curp, outcome in zip(curps, wanted, strict=True):
        sandbox.set_person(curp, issste=outcome)
    sandbox.set_faults("issste", markup="c", download="handler", error_rate=0.3)
    settings = flow_settings(sandbox)
    expected = {"not_affiliated": Status.NOT_AFFILIATED, "affiliated": Status.AFFILIATED,
                "not_found": Status.CURP_NOT_FOUND}
    for curp, outcome in zip(curps, wanted, strict=True):
        result, _ = check_like_the_engine(BrowserSpy(browser), "issste", curp, settings,
                                          tmp_path / curp)
        assert result.status is expected[outcome], result.detail
        if result.facts:
            assert result.facts.curp == curp
