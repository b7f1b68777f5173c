"""Incapsula's block is recognised in both forms, wherever the flows meet it, and a check that
met it is PortalBlocked (then portal_blocked), never portal_changed."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from fixtures.faults import incapsula_block_page
from flows.errors import PortalBlocked, retry_delay, status_for
from flows.incapsula import block_reason, blocked_in_context, raise_if_blocked, watch_responses
from flows.steps import expect_visible, goto, page_text
from tests.flows.flowkit import check, flow_settings, fresh_curp
from worker.core.statuses import Status

STYLES = ("iframe", "script")

#: A normal page of an Incapsula-fronted site: Imperva injects its script into those too.
NORMAL_WITH_SCRIPT = (
    '<html><head><script src="/_Incapsula_Resource?SWJIYLWA=719d34d31c8e3a6e"></script>'
    "</head><body><h1>Constancia de No Derechohabiencia</h1><p>Ingrese su CURP para "
    'continuar con el trámite.</p><form><input name="curp"></form></body></html>')


@pytest.mark.parametrize("style", STYLES)
def test_both_block_forms_are_recognised(style: str) -> None:
    """The iframe page (with its incident id) and the near-empty script page are blocks."""
    markup = incapsula_block_page(style, random.Random(3))
    reason = block_reason(markup)
    assert reason and "Incapsula" in reason
    if style == "iframe":
        assert "incidente " in reason
    assert block_reason(markup.encode()) == reason


def test_real_pages_are_not_blocks_even_with_incapsulas_script() -> None:
    """A page with content (and a form) that loads Incapsula's script is let through, as is
    a page that merely names Incapsula."""
    assert block_reason(NORMAL_WITH_SCRIPT) is None
    assert block_reason("<html><body><p>Servicio de Incapsula</p></body></html>") is None
    assert block_reason("") is None and block_reason(None) is None


def test_raise_if_blocked_names_what_was_fetched() -> None:
    """A fetched body (the captcha image answered as HTML) raises PortalBlocked; bytes of a
    real image do not."""
    with pytest.raises(PortalBlocked, match="la imagen del captcha"):
        raise_if_blocked(incapsula_block_page("iframe", random.Random(1)).encode(),
                         what="la imagen del captcha")
    raise_if_blocked(b"\xff\xd8\xff\xe0JFIF", what="la imagen del captcha")


def test_blocks_are_retried_within_their_own_cap_then_portal_blocked() -> None:
    """retry_delay waits a block out for the pause without spending retry_max, up to
    blocked_retry_max; then the status is portal_blocked."""
    policy = {"retry_max": 1, "backoff_s": 1.0, "backoff_max_s": 5.0, "blocked_retry_max": 3}
    err = PortalBlocked("x")
    delays = [retry_delay(err, attempt, blocks=attempt, pause_s=30.0, **policy)
              for attempt in range(3)]
    assert all(d is not None and 30.0 <= d <= 33.0 for d in delays)
    assert retry_delay(err, 3, blocks=3, pause_s=30.0, **policy) is None
    assert status_for(err) is Status.PORTAL_BLOCKED
    # Three blocks spent none of the single ordinary retry.
    from flows.errors import PortalUnavailable
    assert retry_delay(PortalUnavailable("503"), 3, blocks=3, **policy) is not None
    assert retry_delay(PortalUnavailable("503"), 4, blocks=3, **policy) is None


@pytest.mark.browser
@pytest.mark.parametrize("style", STYLES)
def test_goto_a_blocked_page_is_portal_blocked(sandbox, page, style: str) -> None:
    """goto, page_text and a missing element on a block page raise PortalBlocked, not
    PortalUnavailable or PortalChanged."""
    sandbox.set_faults("issste", incapsula="always", incapsula_style=style)
    with pytest.raises(PortalBlocked):
        goto(page, sandbox.issste_url, what="la página del ISSSTE")
    with pytest.raises(PortalBlocked):
        page_text(page)
    with pytest.raises(PortalBlocked):
        expect_visible(page, "[id$=txtCURP]", what="campo CURP", timeout_s=0.5)


@pytest.mark.browser
def test_a_captcha_image_answered_with_the_block_is_seen_in_the_context(sandbox, browser) -> None:
    """The form loaded fine, then the block starts and the next captcha image comes back as
    Incapsula's page: the page still looks normal, the context's response watch reports it."""
    context = browser.new_context()
    try:
        seen = watch_responses(context)
        page = context.new_page()
        page.goto(sandbox.imss_url)
        page.locator("a", has_text="Tramitar Constancia").first.click()
        page.wait_for_load_state("load")
        assert blocked_in_context(context, seen) is None
        sandbox.set_faults("imss", incapsula="always")
        page.evaluate("document.querySelector('#captchaImg').src ="
                      " '/gestionAsegurados-web-externo/servlet/CaptchaServlet?' + Date.now()")
        page.wait_for_function("document.querySelector('#captchaImg').complete")
        assert page_text(page)  # the page itself is not the block
        # The response event (and the read of its body) may come a moment after the image
        # is complete; the runner asks only after a flow has failed.
        for _ in range(50):
            if seen:
                break
            page.wait_for_timeout(100)
        reason = blocked_in_context(context, seen)
        assert reason and "CaptchaServlet" in reason
    finally:
        context.close()


@pytest.mark.browser
@pytest.mark.parametrize("portal", ["imss", "issste"])
def test_a_check_met_by_the_block_is_portal_blocked_with_evidence(
        sandbox, browser, tmp_path: Path, portal: str) -> None:
    """run_check on a portal behind an `always` block raises PortalBlocked (status
    portal_blocked) with evidence holding the block page."""
    sandbox.set_faults(portal, incapsula="always")
    settings = flow_settings(sandbox)
    with pytest.raises(PortalBlocked) as info:
        check(browser, portal, fresh_curp(random.Random(7)), settings, tmp_path / "w")
    assert status_for(info.value) is Status.PORTAL_BLOCKED
    evidence = info.value.evidence
    note = json.loads((evidence / "check.json").read_text(encoding="utf-8"))
    assert note["status"] == "portal_blocked" and note["error"] == "PortalBlocked"
    assert "_Incapsula_Resource" in (evidence / "page-1.html").read_text(encoding="utf-8")
