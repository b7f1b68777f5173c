"""The IMSS flow in real Chromium against the sandbox: every status the portal can produce, on
every markup variant of the simulator (the ``markup`` fixture runs each test once per variant)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest

from fixtures import texts as t
from fixtures.population import SCENARIOS
from flows import imss
from flows.captcha import make_solver
from flows.errors import CaptchaUnsolved, EmailNotReceived, PortalBlocked, PortalUnavailable
from flows.steps import norm
from tests.flows.flowkit import (
    SHOTS,
    BrowserSpy,
    OracleSolver,
    WrongSolver,
    check,
    check_like_the_engine,
    evidence_files,
    flow_settings,
    fresh_curp,
)
from worker.core.statuses import Status

pytestmark = pytest.mark.browser


@pytest.fixture(autouse=True, params=t.IMSS_MARKUPS, ids=lambda v: f"markup-{v}")
def markup(request, sandbox) -> str:
    """Every test runs against each markup variant of the IMSS simulator."""
    sandbox.set_faults("imss", markup=request.param)
    return request.param


def _run(browser, sandbox, tmp_path: Path, curp: str, *, solver=None, prepare=None,
         shots: str | None = None, **settings):
    spy = BrowserSpy(browser, prepare)
    solver = solver or OracleSolver(sandbox, spy)
    if isinstance(solver, OracleSolver):
        solver.spy = spy

    waits: list[str] = []

    def before_mail(subject: str) -> None:
        # The flow waits for email 1 on the "liga enviada" page, for email 2 on the final page.
        waits.append(subject)
        if shots:
            step = "2-link-sent" if len(waits) == 1 else "3-final-page"
            SHOTS.mkdir(exist_ok=True)
            spy.context.pages[0].screenshot(path=SHOTS / f"{shots}-{step}.png", full_page=True)

    run = check(spy, "imss", curp, flow_settings(sandbox, **settings), tmp_path,
                solver=solver, before_mail=before_mail)
    return run, solver


def _refused(browser, sandbox, tmp_path, curp, status: Status, **kw):
    run, _ = _run(browser, sandbox, tmp_path, curp, **kw)
    outcome = run.outcome
    assert outcome.status is status, outcome.detail
    assert outcome.pdf_path is None and outcome.facts is None
    assert {"page-1.png", "page-1.html", "trace.zip"} <= evidence_files(run.evidence)
    return outcome


# --- verdicts ---------------------------------------------------------------------------------


def test_not_entitled_constancia_is_downloaded_and_read_from_the_pdf(
    browser, sandbox, tmp_path: Path, markup: str
) -> None:
    """With the configured (default: net) solver on the sandbox's default captcha, the
    documented not-entitled CURP ends not_entitled, with its PDF and the facts read from it;
    no evidence is kept but the images of refused captchas, and both emails are claimed."""
    curp = SCENARIOS["imss_not_entitled"]
    solver = make_solver(flow_settings(sandbox))
    run, _ = _run(browser, sandbox, tmp_path, curp, solver=solver, shots="imss-not-entitled")
    outcome = run.outcome
    assert outcome.status is Status.NOT_ENTITLED, outcome.detail
    assert outcome.pdf_path == tmp_path / "imss.pdf"
    assert outcome.pdf_path.read_bytes()[:5] == b"%PDF-"
    assert outcome.facts.curp == curp and outcome.facts.result == "not_entitled"
    assert outcome.facts.valid_until
    # The folio is read where the layout keeps it beside its label (variant b's table does not).
    assert bool(outcome.facts.folio) == (markup == "a")
    assert outcome.pdf_source == "page"
    if solver.rejected:  # rare with the net solver: only the refused images are kept
        kept = run.evidence
        assert {p.parent.name for p in kept.rglob("*.*")} == {"captchas"}
    else:
        assert run.evidence is None
    assert "Sin derecho" in outcome.detail
    assert {"open", "captcha", "form", "submit", "email", "confirm", "pdf"} <= set(outcome.timings)
    assert solver.rejected == solver.solved - 1  # every refused answer was reported
    # Both emails for this address were claimed: nothing is left in the inbox for it.
    assert not [p for p in (sandbox.maildir / "new").iterdir() if curp.lower() in p.read_text(
        errors="ignore").lower()]
    assert (SHOTS / "imss-not-entitled-3-final-page.png").exists()


@pytest.mark.parametrize("wrong", ["zzzzzz", ""], ids=["refused-by-portal", "no-reading"])
def test_entitled_after_a_failed_captcha(browser, sandbox, tmp_path: Path, wrong: str) -> None:
    """A wrong answer (refused by the portal) or no reading at all (never sent; the image is
    refreshed) is rejected to the solver and a new captcha tried; an entitled person ends
    entitled with the NSS read from the PDF."""
    curp = fresh_curp()
    sandbox.set_person(curp, imss="entitled")
    solver = OracleSolver(sandbox, None, wrong_first=1, wrong_answer=wrong)  # type: ignore[arg-type]
    run, _ = _run(browser, sandbox, tmp_path, curp, solver=solver, shots="imss-entitled")
    outcome = run.outcome
    assert outcome.status is Status.ENTITLED, outcome.detail
    assert len(solver.rejected) == 1 and len(solver.solved) == 2
    assert solver.images[0] != solver.images[1]  # a fresh image for the second try
    # The refused image is kept in the check's evidence, with the answer tried (as the flow
    # read it from the page: the canvas's PNG of the JPEG's pixels).
    kept = run.evidence / "captchas"
    (image,) = kept.glob("*.png")
    assert image.read_bytes() == solver.images[0]
    note = json.loads(image.with_suffix(".json").read_text())
    assert note == {"answer": wrong, "confidence": None,
                    "refused_by": "portal" if wrong else "solver"}
    assert outcome.facts.nss and len(outcome.facts.nss) == 11
    assert outcome.facts.nss in outcome.detail
    assert (SHOTS / "imss-entitled-3-final-page.png").exists()


def test_pdf_comes_from_the_second_email_when_ver_reporte_fails(
    browser, sandbox, tmp_path: Path
) -> None:
    """When "Ver reporte" gives no PDF, the constancia attached to the second email is used."""
    curp = fresh_curp()
    sandbox.set_person(curp, imss="not_entitled")

    def prepare(context) -> None:
        context.route(re.compile(r".*/(viewReport|downloadReport)"), lambda route: route.abort())

    run, _ = _run(browser, sandbox, tmp_path, curp, prepare=prepare)
    outcome = run.outcome
    assert outcome.status is Status.NOT_ENTITLED, outcome.detail
    assert outcome.pdf_source == "email"
    assert outcome.facts.curp == curp


@pytest.mark.parametrize("strict", [False, True], ids=["paste-blocked", "keystrokes-only"])
def test_form_is_filled_and_the_confirmation_accepted(browser, sandbox, strict: bool) -> None:
    """The flow fills CURP, email and the confirmation, and the page's own checks accept them.
    The confirmation is written at once, which the paste block lets through (no key events);
    a portal that only takes keystrokes (``keystrokes_only``) clears it with its paste message,
    and the flow then types it, one key event per character."""
    sandbox.set_faults("imss", keystrokes_only=strict)
    curp = fresh_curp()
    address = flow_settings(sandbox).email_for(curp)
    context = browser.new_context(locale="es-MX")
    try:
        page = context.new_page()
        page.goto(sandbox.imss_origin + t.IMSS_FORM_PATH)
        page.evaluate("""sel => { window.keydowns = 0; document.querySelector(sel)
            .addEventListener("keydown", () => { window.keydowns += 1; }); }""",
                      t.IMSS_SEL_EMAIL_CONFIRM)
        imss._fill_form(page, curp, address, "Ab3dE", timeout=5)
        assert page.input_value(t.IMSS_SEL_CURP) == curp
        assert page.input_value(t.IMSS_SEL_EMAIL_CONFIRM) == address
        assert not page.is_visible("#" + t.IMSS_PASTE_WRAPPER_ID)
        keydowns = page.evaluate("window.keydowns")
        assert keydowns >= len(address) if strict else keydowns == 0
        SHOTS.mkdir(exist_ok=True)
        page.screenshot(path=SHOTS / "imss-1-form-filled.png", full_page=True)
    finally:
        context.close()


def test_portal_that_only_takes_keystrokes_still_gives_the_verdict(
    browser, sandbox, tmp_path: Path
) -> None:
    """With a confirmation field that refuses anything not typed, the whole check still ends
    with its verdict (not email_rejected for an emptied field)."""
    sandbox.set_faults("imss", keystrokes_only=True)
    curp = fresh_curp()
    sandbox.set_person(curp, imss="not_entitled")
    run, _ = _run(browser, sandbox, tmp_path, curp)
    outcome = run.outcome
    assert outcome.status is Status.NOT_ENTITLED, outcome.detail
    assert outcome.facts.curp == curp


# --- refusals ---------------------------------------------------------------------------------


def test_unknown_curp_is_curp_not_found(browser, sandbox, tmp_path: Path) -> None:
    """RENAPO's "No se localizó información" is curp_not_found, with the portal's message."""
    outcome = _refused(
        browser, sandbox, tmp_path, SCENARIOS["imss_not_found"], Status.CURP_NOT_FOUND
    )
    assert "RENAPO" in outcome.detail
    # The message's link is kept for HR.
    assert f"consúltala aquí ({t.IMSS_RENAPO_URL})" in outcome.detail


def test_inconsistent_data_is_data_inconsistent(browser, sandbox, tmp_path: Path,
                                                markup: str) -> None:
    """An override to "inconsistent" gives data_inconsistent, whether the portal says so in an
    alert (variant a) or with "REQUIERE ACTUALIZACION" in its modal (variant b)."""
    curp = fresh_curp()
    sandbox.set_person(curp, imss="inconsistent")
    outcome = _refused(browser, sandbox, tmp_path, curp, Status.DATA_INCONSISTENT)
    wording = "subdelegación" if markup == "a" else t.IMSS_MSG_REQUIRES_UPDATE
    assert wording in outcome.detail


def test_third_query_of_the_day_is_daily_limit(browser, sandbox, tmp_path: Path) -> None:
    """The documented daily-limit CURP (today's queries used up) gives daily_limit."""
    outcome = _refused(
        browser, sandbox, tmp_path, SCENARIOS["imss_daily_limit"], Status.DAILY_LIMIT
    )
    wordings = [norm(w) for w in t.IMSS_MSG_DAILY_LIMIT_SUBMIT.values()]
    assert norm(outcome.detail) in wordings


def test_daily_limit_met_at_the_link_is_daily_limit(browser, sandbox, tmp_path: Path) -> None:
    """When the day's two constancias were generated while the email travelled, the link says
    "Has agotado el número de consultas permitidas por día.": daily_limit, no PDF."""
    curp = fresh_curp()
    sandbox.set_person(curp, imss="not_entitled")
    waits: list[str] = []

    def before_mail(subject: str) -> None:
        waits.append(subject)
        if len(waits) == 1:
            for n in range(2):  # two constancias by someone else, meanwhile
                _constancia_over_http(sandbox, curp, f"otra{n}-{curp.lower()}@empresa.example")

    spy = BrowserSpy(browser)
    outcome = check(spy, "imss", curp, flow_settings(sandbox), tmp_path,
                    solver=OracleSolver(sandbox, spy), before_mail=before_mail).outcome
    assert outcome.status is Status.DAILY_LIMIT, outcome.detail
    assert outcome.detail == t.IMSS_MSG_DAILY_LIMIT and outcome.pdf_path is None
    assert sandbox.stats("imss")["constancias"] == {curp: 2}


def test_link_is_followed_in_a_fresh_context_when_the_forms_page_is_gone(
    browser, sandbox, tmp_path: Path
) -> None:
    """The form's page closed while the email travelled: the link (which needs no session)
    is followed in a fresh context and the check still ends with its verdict from the page."""
    curp = fresh_curp()
    sandbox.set_person(curp, imss="not_entitled")
    spy = BrowserSpy(browser)
    waits: list[str] = []

    def before_mail(subject: str) -> None:
        waits.append(subject)
        if len(waits) == 1:
            spy.context.pages[0].close()

    outcome = check(spy, "imss", curp, flow_settings(sandbox), tmp_path,
                    solver=OracleSolver(sandbox, spy), before_mail=before_mail).outcome
    assert outcome.status is Status.NOT_ENTITLED, outcome.detail
    assert outcome.pdf_source == "page"
    assert sandbox.stats("imss")["constancias"] == {curp: 1}


def _constancia_over_http(sandbox, curp: str, address: str) -> None:
    """Send the form and follow its link over plain HTTP: one constancia for ``curp``."""
    _bind_email(sandbox, curp, address)
    links = [m["link"] for m in httpx.get(sandbox.imss_origin + "/_sandbox/emails").json()
             if m["to"] == address and m["link"]]
    assert links
    httpx.get(links[-1], follow_redirects=True, timeout=10).raise_for_status()


def test_invalid_email_domain_is_email_rejected(browser, sandbox, tmp_path: Path) -> None:
    """A domain the IMSS refuses gives email_rejected with its message."""
    outcome = _refused(
        browser, sandbox, tmp_path, fresh_curp(), Status.EMAIL_REJECTED,
        imss_email="{curp}@dominio-invalido.example",
    )
    assert "dominio" in outcome.detail


def test_email_bound_to_another_curp_is_email_rejected(browser, sandbox, tmp_path: Path) -> None:
    """An address the IMSS already tied to a different CURP gives email_rejected."""
    curp, other = fresh_curp(), fresh_curp()
    address = flow_settings(sandbox).email_for(curp)
    _bind_email(sandbox, other, address)
    outcome = _refused(browser, sandbox, tmp_path, curp, Status.EMAIL_REJECTED)
    assert "CURP distinta" in outcome.detail


@pytest.mark.parametrize(("template", "message"), [
    ("constancias+{curp}@gmail.com", t.IMSS_MSG_GMAIL),
    ("constancias {curp}@empresa.example", t.IMSS_MSG_EMAIL_INVALID),
], ids=["gmail-rule", "malformed"])
def test_address_refused_by_the_pages_dialog_is_email_rejected(
    browser, sandbox, tmp_path: Path, template: str, message: str
) -> None:
    """The page's own email check (a window.alert dialog: the Gmail "+"/"-" rule, a malformed
    address) gives email_rejected with the dialog's text; the form is never sent."""
    settings = flow_settings(sandbox)
    # Settings refuse these templates; the flow must still recognise the portal's answer.
    settings = settings.model_copy(update={"imss_email": template})
    spy = BrowserSpy(browser)
    outcome = check(spy, "imss", fresh_curp(), settings, tmp_path,
                    solver=OracleSolver(sandbox, spy)).outcome
    assert outcome.status is Status.EMAIL_REJECTED, outcome.detail
    assert outcome.detail == message
    assert sandbox.stats("imss")["queries"] == {}


def _bind_email(sandbox, curp: str, address: str) -> None:
    """Use ``address`` for ``curp`` directly over HTTP (as another person would have)."""
    with httpx.Client(base_url=sandbox.imss_origin, timeout=10) as client:
        client.get(t.IMSS_FORM_PATH).raise_for_status()
        client.get(t.IMSS_CAPTCHA_PATH + "?1").raise_for_status()
        answer = sandbox.captcha_answer(client.cookies[t.IMSS_SESSION_COOKIE])
        page = client.post(t.IMSS_SUBMIT_PATH, data={
            t.IMSS_CURP_NAME: curp, t.IMSS_EMAIL_NAME: address,
            t.IMSS_EMAIL_CONFIRM_NAME: address, t.IMSS_CAPTCHA_NAME: answer,
        })
    assert t.IMSS_MSG_SUCCESS in page.text


# --- failures ---------------------------------------------------------------------------------


def test_captcha_never_solved_is_captcha_unsolved(browser, sandbox, tmp_path: Path) -> None:
    """A solver that is always wrong uses up captcha_attempts: CaptchaUnsolved (retried by the
    engine, finally captcha_unsolved), each wrong answer reported back, evidence kept."""
    solver = WrongSolver()
    with pytest.raises(CaptchaUnsolved) as info:
        _run(browser, sandbox, tmp_path, fresh_curp(), solver=solver, captcha_attempts=2)
    assert info.value.status is Status.CAPTCHA_UNSOLVED
    assert len(solver.rejected) == 2 and solver.rejected == solver.solved
    assert {"page-1.png", "page-1.html", "trace.zip"} <= evidence_files(info.value.evidence)


@pytest.mark.parametrize(
    "faults",
    [
        {"down": True},
        {"maintenance": True},
        {"error_rate": 1.0, "error_status": 500},
    ],
    ids=["down", "maintenance", "http-500"],
)
def test_portal_faults_are_portal_unavailable(browser, sandbox, tmp_path, faults) -> None:
    """Down, maintenance and 5xx pages raise PortalUnavailable (retried), with evidence that
    shows the failure page."""
    sandbox.set_faults("imss", **faults)
    with pytest.raises(PortalUnavailable) as info:
        _run(browser, sandbox, tmp_path, fresh_curp())
    assert info.value.status is Status.PORTAL_UNAVAILABLE
    folder = info.value.evidence
    assert {"page-1.png", "page-1.html", "trace.zip", "check.json"} <= evidence_files(folder)
    html = (folder / "page-1.html").read_text(encoding="utf-8")
    assert any(title in html for title in (t.UNAVAILABLE_TITLE, t.MAINTENANCE_TITLE, t.ERROR_TITLE))


@pytest.mark.parametrize("style", ["iframe", "script"])
def test_incapsula_block_is_portal_blocked_never_portal_changed(
    browser, sandbox, tmp_path, style: str
) -> None:
    """Either form of Incapsula's block page (SPEC §3), on every URL, ends the check as
    portal_blocked with the block page in its evidence, on every markup variant."""
    sandbox.set_faults("imss", incapsula="always", incapsula_style=style)
    with pytest.raises(PortalBlocked) as info:
        _run(browser, sandbox, tmp_path, fresh_curp())
    assert info.value.status is Status.PORTAL_BLOCKED
    html = (info.value.evidence / "page-1.html").read_text(encoding="utf-8")
    assert "_Incapsula_Resource" in html
    assert sandbox.stats("imss")["queries"] == {}


def test_expired_session_is_portal_unavailable(browser, sandbox, tmp_path: Path) -> None:
    """A session that expires before the form is sent ("Tu sesión ha expirado") is retried."""
    sandbox.set_faults("imss", session_ttl_s=0)
    with pytest.raises(PortalUnavailable) as info:
        _run(browser, sandbox, tmp_path, fresh_curp())
    assert "sesion" in norm(str(info.value))


def test_lost_email_is_email_not_received(browser, sandbox, tmp_path: Path) -> None:
    """When the confirmation email never arrives, EmailNotReceived (portal_unavailable once
    retries run out) is raised after email_timeout_s, with evidence."""
    sandbox.set_faults("imss", email_loss_rate=1.0)
    with pytest.raises(EmailNotReceived) as info:
        _run(browser, sandbox, tmp_path, fresh_curp(), email_timeout_s=1.5)
    assert info.value.status is Status.PORTAL_UNAVAILABLE
    note = json.loads((info.value.evidence / "check.json").read_text("utf-8"))
    assert note["error"] == "EmailNotReceived"


def test_confirmation_link_of_another_day_is_portal_unavailable(
    browser, sandbox, tmp_path: Path
) -> None:
    """A confirmation link followed after midnight (refused: "Token invalido" / "Token
    expirado") is retried."""
    spy = BrowserSpy(browser)
    waits: list[str] = []

    def before_mail(subject: str) -> None:
        waits.append(subject)
        if len(waits) == 1:
            sandbox.set_clock(86400, "imss")  # the link is opened "tomorrow"

    with pytest.raises(PortalUnavailable) as info:
        check(spy, "imss", fresh_curp(), flow_settings(sandbox), tmp_path,
              solver=OracleSolver(sandbox, spy), before_mail=before_mail)
    assert "token" in norm(str(info.value))


def test_slow_portal_and_late_email_still_give_the_verdict(
    browser, sandbox, tmp_path: Path
) -> None:
    """Added latency and a late email (within email_timeout_s) only slow the check down."""
    curp = fresh_curp()
    sandbox.set_person(curp, imss="not_entitled")
    sandbox.set_faults("imss", latency_ms=50, email_delay_s=1.0)
    run, _ = _run(browser, sandbox, tmp_path, curp)
    outcome = run.outcome
    assert outcome.status is Status.NOT_ENTITLED, outcome.detail
    assert outcome.facts.curp == curp


def test_missing_link_on_the_information_page_is_portal_changed(
    browser, sandbox, tmp_path: Path
) -> None:
    """An information page without "Tramitar Constancia" is portal_changed naming the element,
    recorded (not raised) with evidence."""

    def prepare(context) -> None:
        context.route(
            "**" + t.IMSS_INFO_PATH,
            lambda route: route.fulfill(
                status=200,
                content_type="text/html; charset=utf-8",
                body="<html><body><h1>Constancia de No Derechohabiencia</h1>"
                "<p>Nuevo portal: inicia sesión con tu Llave MX.</p></body></html>",
            ),
        )

    run, _ = _run(browser, sandbox, tmp_path, fresh_curp(), prepare=prepare,
                  element_timeout_s=1)
    outcome = run.outcome
    assert outcome.status is Status.PORTAL_CHANGED
    assert "Tramitar Constancia" in outcome.detail
    assert {"page-1.png", "page-1.html"} <= evidence_files(run.evidence)


def test_form_without_captcha_image_is_portal_changed(browser, sandbox, tmp_path: Path) -> None:
    """A form whose captcha image id changed is portal_changed naming img#captchaImg."""

    def prepare(context) -> None:
        def rewrite(route) -> None:
            response = route.fetch()
            body = response.text().replace('id="captchaImg"', 'id="captchaImagen"')
            route.fulfill(response=response, body=body)

        context.route("**" + t.IMSS_FORM_PATH, rewrite)

    run, _ = _run(browser, sandbox, tmp_path, fresh_curp(), prepare=prepare,
                  element_timeout_s=1)
    outcome = run.outcome
    assert outcome.status is Status.PORTAL_CHANGED
    assert "captchaImg" in outcome.detail


def test_messages_map_to_statuses() -> None:
    """Every message of SPEC §3 maps to its status (or to "retry the captcha"), whatever its
    accents, case and final punctuation; the flow's selectors are the contract's."""
    cases = {
        t.IMSS_MSG_CAPTCHA_INVALID: None,
        t.IMSS_MSG_CAPTCHA_MISMATCH: None,
        "La informacion del captcha no coincide, favor de intentar nuevamente": None,
        t.IMSS_MSG_REQUIRED: None,
        t.IMSS_MSG_CURP_NOT_FOUND: Status.CURP_NOT_FOUND,
        t.IMSS_MSG_INCONSISTENT: Status.DATA_INCONSISTENT,
        t.IMSS_MSG_REQUIRES_UPDATE: Status.DATA_INCONSISTENT,
        t.IMSS_MSG_DAILY_LIMIT: Status.DAILY_LIMIT,
        **{wording: Status.DAILY_LIMIT for wording in t.IMSS_MSG_DAILY_LIMIT_SUBMIT.values()},
        t.IMSS_MSG_DOMAIN_INVALID: Status.EMAIL_REJECTED,
        t.IMSS_MSG_EMAIL_BOUND.format(correo="a@b.example"): Status.EMAIL_REJECTED,
        t.IMSS_MSG_EMAIL_INVALID: Status.EMAIL_REJECTED,
        t.IMSS_MSG_GMAIL: Status.EMAIL_REJECTED,
        "Error: El dominio del correo electr&oacute;nico es inv&aacute;lido.".replace(
            "&oacute;", "ó").replace("&aacute;", "á"): Status.EMAIL_REJECTED,
    }
    for message, status in cases.items():
        assert imss.classify_message(message) == (True, status), message
    assert imss.classify_message("Algo nuevo") == (False, None)
    p = imss.PORTAL
    assert (p.curp, p.email, p.email_confirm) == (
        t.IMSS_SEL_CURP, t.IMSS_SEL_EMAIL, t.IMSS_SEL_EMAIL_CONFIRM)
    assert (p.captcha_img, p.captcha_input) == (t.IMSS_SEL_CAPTCHA_IMG, t.IMSS_SEL_CAPTCHA)
    assert p.captcha_refresh == "#" + t.IMSS_CAPTCHA_REFRESH_ID
    assert p.submit == "#" + t.IMSS_CONTINUE_ID


# --- a flaky portal (step retries) -------------------------------------------------------------


def test_flaky_portals_give_every_check_right_within_the_daily_limit(
    browser, sandbox, tmp_path: Path
) -> None:
    """With 30 % of responses failing on both portals, six IMSS checks retried as the engine
    does all end with their right status, each CURP queried at most twice (the daily limit)."""
    wanted = ["not_entitled", "entitled", "not_entitled", "entitled", "not_entitled",
              "inconsistent"]
    curps = [fresh_curp() for _ in wanted]
    for curp, outcome in zip(curps, wanted, strict=True):
        sandbox.set_person(curp, imss=outcome)
    for portal in ("imss", "issste"):
        sandbox.set_faults(portal, error_rate=0.3)
    settings = flow_settings(sandbox)
    expected = {"not_entitled": Status.NOT_ENTITLED, "entitled": Status.ENTITLED,
                "inconsistent": Status.DATA_INCONSISTENT}
    for curp, outcome in zip(curps, wanted, strict=True):
        spy = BrowserSpy(browser)
        result, _ = check_like_the_engine(spy, "imss", curp, settings, tmp_path / curp,
                                          solver=OracleSolver(sandbox, spy))
        assert result.status is expected[outcome], result.detail
        if result.facts:
            assert result.facts.curp == curp
    queries = sandbox.stats("imss")["queries"]
    assert all(1 <= queries[curp] <= 2 for curp in curps), queries


def test_captcha_image_that_failed_to_load_is_refreshed(browser, sandbox, tmp_path: Path) -> None:
    """A captcha image answered with HTTP 500 (a broken image, not a missing one) is refreshed
    and the check goes on to its verdict — never portal_changed."""
    curp = fresh_curp()
    sandbox.set_person(curp, imss="not_entitled")
    served: list[str] = []

    def prepare(context) -> None:
        # Only the first image request is intercepted (times=1), then the route is gone: the
        # rest of the check runs as it would without a test route (a route also hides the PDF
        # viewer's stream; the report step reads the PDF at its response all the same).
        context.on("request", lambda request: served.append(request.url)
                   if t.IMSS_CAPTCHA_PATH in request.url else None)
        context.route("**" + t.IMSS_CAPTCHA_PATH + "*",
                      lambda route: route.fulfill(status=500, content_type="text/html",
                                                  body="<h1>Error</h1>"), times=1)

    run, solver = _run(browser, sandbox, tmp_path, curp, prepare=prepare)
    outcome = run.outcome
    assert outcome.status is Status.NOT_ENTITLED, outcome.detail
    assert len(served) >= 2 and len(solver.solved) == 1  # the broken image was never solved


def test_captcha_image_failing_every_time_is_portal_unavailable(
    browser, sandbox, tmp_path: Path
) -> None:
    """A captcha servlet that keeps answering 500 is PortalUnavailable (retried later), not
    portal_changed: the image element is there, the server is not."""

    def prepare(context) -> None:
        context.route("**" + t.IMSS_CAPTCHA_PATH + "*",
                      lambda route: route.fulfill(status=500, body="<h1>Error</h1>"))

    with pytest.raises(PortalUnavailable) as info:
        _run(browser, sandbox, tmp_path, fresh_curp(), prepare=prepare, step_retries=0)
    assert "captcha" in str(info.value)
    assert sandbox.stats("imss")["queries"] == {}


def test_spent_link_whose_page_failed_gives_the_pdf_of_the_second_email(
    browser, sandbox, tmp_path: Path
) -> None:
    """When the confirmation link uses its token but its answer fails (500), the retried link
    is refused ("Token invalido" / "Este token ya fue utilizado"): the constancia comes from
    the second email, and the CURP was queried once."""
    curp = fresh_curp()
    sandbox.set_person(curp, imss="not_entitled")
    loads: list[int] = []

    def prepare(context) -> None:
        def spend_then_fail(route) -> None:
            loads.append(1)
            if len(loads) == 1:
                route.fetch(max_redirects=0)  # the portal uses the token…
                route.fulfill(status=500, content_type="text/html; charset=utf-8",
                              body=f"<h1>{t.ERROR_TITLE}</h1>")  # …but its page fails
            else:
                route.continue_()

        context.route("**" + t.IMSS_CONFIRM_PATH + "*", spend_then_fail)

    run, _ = _run(browser, sandbox, tmp_path, curp, prepare=prepare)
    outcome = run.outcome
    assert outcome.status is Status.NOT_ENTITLED, outcome.detail
    assert outcome.pdf_source == "email" and len(loads) == 2
    assert sandbox.stats("imss")["queries"] == {curp: 1}


def test_confirmation_link_gets_extra_retries_before_spending_a_query(
    browser, sandbox, tmp_path: Path
) -> None:
    """A confirmation link that answers 503 more often than step_retries allows is still tried
    (it is unused until it works): the verdict comes with one daily query spent, not two."""
    curp = fresh_curp()
    sandbox.set_person(curp, imss="not_entitled")
    loads: list[int] = []

    def prepare(context) -> None:
        def flaky(route) -> None:
            loads.append(1)
            if len(loads) <= 5:
                route.fulfill(status=503, content_type="text/html; charset=utf-8",
                              body=f"<h1>{t.UNAVAILABLE_TITLE}</h1>")
            else:
                route.continue_()
                # The fault is over: stop intercepting, so the rest of the check runs as it
                # would without a test route (Chromium's PDF viewer streams an inline PDF in a
                # response of its own, which request interception hides; the report step reads
                # the PDF at its response all the same).
                context.unroute(pattern, flaky)

        pattern = "**" + t.IMSS_CONFIRM_PATH + "*"
        context.route(pattern, flaky)

    run, _ = _run(browser, sandbox, tmp_path, curp, prepare=prepare, step_retries=3)
    outcome = run.outcome
    assert outcome.status is Status.NOT_ENTITLED, outcome.detail
    assert len(loads) == 6 and outcome.pdf_source == "page"
    assert sandbox.stats("imss")["queries"] == {curp: 1}


def test_report_pdf_is_read_at_its_response_when_the_viewer_keeps_it(
    browser, sandbox, tmp_path: Path, markup: str
) -> None:
    """The report's PDF comes from the page with the one POST a person makes, even when the
    PDF viewer's stream has no body to read. The full Chromium's viewer now and then ends its
    stream request as aborted (DevTools then keeps no body: a few checks in a hundred, each
    waiting out every step retry before the second e-mail); a route on the context hides that
    stream every time, which makes the case deterministic. Variant a answers inline (the
    viewer), variant b as an attachment (a download)."""
    curp = fresh_curp()
    sandbox.set_person(curp, imss="not_entitled")
    posts: list[str] = []
    report_paths = (t.IMSS_VIEW_REPORT_PATH, t.IMSS_DOWNLOAD_REPORT_PATH)

    def prepare(context) -> None:
        context.on("request", lambda request: posts.append(request.url)
                   if request.method == "POST" and any(p in request.url for p in report_paths)
                   else None)
        context.route("**/*", lambda route: route.continue_())

    run, _ = _run(browser, sandbox, tmp_path, curp, prepare=prepare)
    outcome = run.outcome
    assert outcome.status is Status.NOT_ENTITLED, outcome.detail
    assert outcome.pdf_source == "page"
    assert outcome.pdf_path.read_bytes()[:5] == b"%PDF-"
    assert len(posts) == 1, posts  # no step retry: the report was asked once
    assert sandbox.stats("imss")["queries"] == {curp: 1}
