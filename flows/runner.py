"""Run one check: a fresh browser context, the portal's flow, evidence when it fails.

The engine (Celery task or embedded pool) calls ``run_check`` and gets either a ``CheckRun``
(the flow's ``Outcome`` and the files kept of it) or a ``TransientError`` to retry
(``flows.errors.retry_delay`` decides); the context is closed in every case. A check that
failed in any way while the portal's bot protection was refusing it (a page, or a sub-resource
such as the captcha image, was Incapsula's block) ends as ``PortalBlocked`` — never
``portal_changed`` — whatever the flow made of it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flows import get_flow
from flows.base import CaptchaSolver, CheckContext, Mailbox, Outcome, Person
from flows.browser import presented_user_agent
from flows.captcha import KeepRefused
from flows.errors import FlowError, PortalBlocked, TransientError
from flows.evidence import evidence_dir, save_pages, save_trace, write_note
from flows.incapsula import blocked_in_context, watch_responses
from worker.core.logs import mask_text
from worker.core.statuses import Status, StatusClass

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, ViewportSize

    from worker.core.settings import Settings

__all__ = ["CheckRun", "run_check", "new_check_context", "trace_snapshots"]

_LOCALE = "es-MX"
#: A common desktop screen (Playwright's default, 1280×720, is no real screen size).
_VIEWPORT: ViewportSize = {"width": 1366, "height": 768}


@dataclass(frozen=True)
class CheckRun:
    """One run of a check: what the flow made of it and the files kept beside its PDF."""

    outcome: Outcome
    """The verdict, refusal or failure (or, for a step, the email it waits for)."""
    evidence: Path | None = None
    """The evidence folder (pages, trace, ``check.json``, refused captchas), when kept: for every
    check that ended without a PDF and not done, and for refused captchas of one that did."""
    trace: Path | None = None
    """The trace of a settled check (inside this run's evidence folder), with
    ``KEEP_TRACES=always``; a failed check's trace is in its ``evidence`` instead."""


def new_check_context(browser: Browser, settings: Settings) -> BrowserContext:
    """A fresh context as a person in Mexico would have it on a desktop: Spanish, Mexico City
    time, a desktop viewport, the user agent this Chromium sends when headed, downloads
    accepted, the configured timeouts. Nothing else is altered (no fingerprint forgery)."""
    context = browser.new_context(
        accept_downloads=True, locale=_LOCALE, timezone_id=settings.timezone,
        viewport=_VIEWPORT, user_agent=presented_user_agent(browser),
    )
    context.set_default_navigation_timeout(settings.navigation_timeout_s * 1000)
    context.set_default_timeout(settings.element_timeout_s * 1000)
    return context


def run_check(
    browser: Browser,
    portal: str,
    person: Person,
    settings: Settings,
    work_dir: Path,
    *,
    captcha: CaptchaSolver,
    mailbox: Mailbox,
    log: Any,
    attempt: int = 0,
    flow: Any = None,
) -> CheckRun:
    """Check ``person`` on ``portal``; the PDF goes to ``work_dir/<portal>.pdf``.

    Returns a ``CheckRun`` for every verdict and for permanent failures (``portal_changed``,
    ``error``…), with its ``evidence`` when evidence was kept. Raises the flow's
    ``TransientError`` (its ``evidence`` set) so that the engine can retry it.

    ``flow``: one step of the portal's check instead of its whole flow (flows.imss
    ``send_step``/``link_step``); a step that ends waiting for mail keeps no evidence.
    """
    flow = flow or get_flow(portal)
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    context = new_check_context(browser, settings)
    blocks_seen = watch_responses(context)
    try:
        tracing = settings.keep_traces != "never"
        snapshots = tracing and trace_snapshots(settings, attempt)
        if tracing:
            context.tracing.start(screenshots=settings.trace_screenshots, snapshots=snapshots)
        # Refused captcha images go to this attempt's evidence (flows.captcha.KeepRefused).
        kept = KeepRefused(captcha, lambda: evidence_dir(work_dir, portal, attempt) / "captchas")
        ctx = CheckContext(
            browser_context=context,
            person=person,
            settings=settings,
            work_dir=work_dir,
            captcha=kept,
            mailbox=mailbox,
            log=log,
        )
        error: BaseException | None = None
        try:
            outcome = _unless_blocked(flow, ctx, blocks_seen)
        except TransientError as exc:
            path = _keep_evidence(context, work_dir, portal, attempt, exc.status, exc, tracing,
                                  snapshots)
            exc.evidence = path
            log.warning(
                "check_transient_failure",
                error=type(exc).__name__,
                detail=mask_text(str(exc)),
                evidence=str(path),
            )
            raise
        except FlowError as exc:
            error = exc
            outcome = Outcome(status=exc.status, detail=str(exc))
        except Exception as exc:  # noqa: BLE001 - anything unexpected is recorded as `error`
            error = exc
            outcome = Outcome(
                status=Status.ERROR,
                detail=f"Error inesperado ({type(exc).__name__}): {_short(exc)}",
            )
        # A constancia is its own proof (SPEC §2): evidence is for checks that ended without one
        # and not done, even when their class asks HR for attention ("Vigente").
        settled = (outcome.waiting is not None or outcome.status.has_pdf
                   or outcome.status.status_class is StatusClass.DONE)
        evidence: Path | None = None
        trace: Path | None = None
        if not settled or error is not None:
            evidence = _keep_evidence(
                context, work_dir, portal, attempt, outcome.status, error, tracing, snapshots
            )
            log.warning(
                "check_failed",
                status=outcome.status.value,
                error=type(error).__name__ if error else None,
                detail=mask_text(outcome.detail),
                evidence=str(evidence),
            )
        elif tracing:
            if settings.keep_traces == "always":
                trace = save_trace(context, evidence_dir(work_dir, portal, attempt))
            else:
                _discard_trace(context)
        if kept.saved and evidence is None:
            # A check that succeeded after refused captchas keeps those images too.
            evidence = evidence_dir(work_dir, portal, attempt)
        outcome.timings.setdefault("total", round(time.monotonic() - started, 3))
        log.info("flow_done", status="waiting" if outcome.waiting else outcome.status.value,
                 timings=outcome.timings)
        return CheckRun(outcome, evidence=evidence, trace=trace)
    finally:
        try:
            context.close()
        except Exception as exc:  # noqa: BLE001 - the browser may already be gone
            log.debug("context_close_failed", error=mask_text(str(exc)))


#: Outcomes a refused page can pass for: with a block seen, the block is what happened.
_BLOCK_LOOKALIKES = frozenset({Status.PORTAL_CHANGED, Status.PORTAL_UNAVAILABLE, Status.ERROR})


def _unless_blocked(flow: Callable[[CheckContext], Outcome], ctx: CheckContext,
                    seen: list[str]) -> Outcome:
    """Run the flow; whatever it made of a refused page (a missing element, a broken captcha
    image, an unknown text), a check that met the portal's bot protection is ``PortalBlocked``."""
    try:
        outcome = flow(ctx)
    except PortalBlocked:
        raise
    except Exception as exc:
        reason = blocked_in_context(ctx.browser_context, seen)
        if reason:
            raise PortalBlocked(reason) from exc
        raise
    if outcome.status in _BLOCK_LOOKALIKES:
        reason = blocked_in_context(ctx.browser_context, seen)
        if reason:
            raise PortalBlocked(reason)
    return outcome


def trace_snapshots(settings: Settings, attempt: int) -> bool:
    """Whether this attempt's trace records DOM snapshots (``TRACE_SNAPSHOTS``)."""
    if settings.trace_snapshots == "retries":
        return attempt > 0
    return settings.trace_snapshots == "always"


def _keep_evidence(
    context: BrowserContext,
    work_dir: Path,
    portal: str,
    attempt: int,
    status: Status,
    error: BaseException | None,
    tracing: bool,
    snapshots: bool,
) -> Path:
    dest = evidence_dir(work_dir, portal, attempt)
    save_pages(context, dest)
    if tracing:
        save_trace(context, dest)
    write_note(
        dest,
        portal=portal,
        attempt=attempt,
        status=status.value,
        error=type(error).__name__ if error else None,
        message=str(error) if error else "",
        pages=[mask_text(p.url) for p in context.pages],
        trace_snapshots=snapshots if tracing else None,
    )
    return dest


def _discard_trace(context: BrowserContext) -> None:
    try:
        context.tracing.stop()
    except Exception as exc:  # noqa: BLE001 - nothing to keep anyway
        del exc


def _short(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return mask_text(text)[:limit]
