"""The IMSS check as two browser steps (SPEC §7: the wait for mail holds no browser), each
step run as the engine runs it (``run_check`` with the step as its flow) against the sandbox:
the form sent, then the link followed in a fresh context; the constancia from the page, or from
the second email when the page gives none; a step 2 run again after a crash spends nothing."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import structlog

from flows import imss
from flows.base import FirstMail, Outcome, Person, SecondMail
from flows.mailbox import open_mailbox
from flows.runner import run_check
from tests.flows.flowkit import BrowserSpy, OracleSolver, flow_settings, fresh_curp
from worker.core.statuses import Status

pytestmark = pytest.mark.browser

log = structlog.get_logger("test")


def _step(spy, sandbox, settings, mailbox, curp: str, work: Path, flow) -> Outcome:
    run = run_check(spy, "imss", Person(curp), settings, work, captcha=OracleSolver(sandbox, spy),
                    mailbox=mailbox, log=log, flow=flow)
    if run.outcome.waiting is not None:
        assert run.evidence is None and run.trace is None  # a step that waits keeps nothing
    return run.outcome


def test_steps_give_the_constancia_from_the_page(browser, sandbox, tmp_path: Path) -> None:
    """Step 1 ends waiting (address, sent at) with its browser context closed; step 2, in a
    context of its own, gets the PDF from the final page: one query."""
    curp = fresh_curp()
    sandbox.set_person(curp, imss="entitled")
    settings = flow_settings(sandbox)
    spy = BrowserSpy(browser)
    with open_mailbox(settings.effective_mailbox_url, poll_s=0.1) as mailbox:
        sent = _step(spy, sandbox, settings, mailbox, curp, tmp_path / "1", imss.send_step)
        assert isinstance(sent.waiting, FirstMail), sent.detail
        assert sent.waiting.address == settings.email_for(curp)
        first_context = spy.context
        mail = mailbox.wait_for(to=sent.waiting.address, subject_contains="",
                                since=sent.waiting.sent_at - 1, timeout_s=30)
        link = imss.confirmation_link_in(mail)
        assert link and "confirmacionUrl" in link
        done = _step(spy, sandbox, settings, mailbox, curp, tmp_path / "2",
                     lambda ctx: imss.link_step(ctx, link))
    assert spy.context is not first_context  # a fresh context for step 2
    assert done.waiting is None and done.status is Status.ENTITLED, done.detail
    assert done.pdf_source == "page" and done.facts.curp == curp
    assert sandbox.stats("imss")["queries"][curp] == 1


def test_no_pdf_on_the_page_waits_for_the_second_email_and_a_rerun_spends_nothing(
        browser, sandbox, tmp_path: Path) -> None:
    """The report control gives no PDF: step 2 ends waiting for email 2 (``mail2``); run again
    (as after a crash once the link was opened) it finds the token spent and waits again,
    sending nothing; email 2's PDF then gives the verdict with no browser. One query, one
    constancia."""
    curp = fresh_curp()
    sandbox.set_person(curp, imss="not_entitled")
    settings = flow_settings(sandbox)

    def no_report(context) -> None:
        context.route(re.compile(r".*/(viewReport|downloadReport)"), lambda route: route.abort())

    spy = BrowserSpy(browser, no_report)
    with open_mailbox(settings.effective_mailbox_url, poll_s=0.1) as mailbox:
        sent = _step(spy, sandbox, settings, mailbox, curp, tmp_path / "1", imss.send_step)
        assert isinstance(sent.waiting, FirstMail), sent.detail
        address = sent.waiting.address
        mail1 = mailbox.wait_for(to=address, subject_contains="",
                                 since=sent.waiting.sent_at - 1, timeout_s=30)
        link = imss.confirmation_link_in(mail1)
        assert link
        second = _step(spy, sandbox, settings, mailbox, curp, tmp_path / "2",
                       lambda ctx: imss.link_step(ctx, link))
        assert second.waiting == SecondMail(), second.detail
        again = _step(spy, sandbox, settings, mailbox, curp, tmp_path / "3",
                      lambda ctx: imss.link_step(ctx, link, tried_before=True))
        assert again.waiting == SecondMail(), again.detail
        mail2 = mailbox.wait_for(to=address, subject_contains="",
                                 since=sent.waiting.sent_at - 1, timeout_s=30)
    pdf = imss.pdf_attachment(mail2)
    assert pdf is not None and pdf.startswith(b"%PDF-")
    work = tmp_path / "4"
    work.mkdir()
    out = imss.pdf_step(work, curp, pdf, log)
    assert out.status is Status.NOT_ENTITLED and out.pdf_source == "email"
    assert out.facts.curp == curp and out.pdf_path.is_file()
    stats = sandbox.stats("imss")
    assert stats["queries"][curp] == 1 and stats["constancias"][curp] == 1
