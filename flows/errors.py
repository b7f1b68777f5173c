"""Errors a flow raises, each documented by what the engine does with it.

A flow *returns* an ``Outcome`` for every verdict the portal gives (including refusals such as
``daily_limit``); it *raises* only when it could not get a verdict. ``retry_delay`` is the one
function that decides whether and when a check is tried again.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from worker.core.statuses import Status

if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "FlowError",
    "TransientError",
    "PortalUnavailable",
    "EmailNotReceived",
    "CaptchaUnsolved",
    "PortalBlocked",
    "PermanentError",
    "PortalChanged",
    "classify",
    "retry_delay",
    "status_for",
]


class FlowError(Exception):
    """Base of everything a flow raises on purpose. ``status`` is recorded if it is not retried."""

    status: Status = Status.ERROR
    transient: bool = False


class TransientError(FlowError):
    """The portal may answer later: **retried with exponential backoff and jitter**; when the
    retries run out, ``status`` is recorded."""

    status = Status.PORTAL_UNAVAILABLE
    transient = True
    evidence: Path | None = None
    """The evidence folder ``flows.runner.run_check`` kept of the failed run (``None`` when
    raised outside one): the engine keeps it beside the PDFs and records it if no retry is left."""


class PortalUnavailable(TransientError):
    """HTTP 5xx, "Servicio no disponible", maintenance page, timeouts, expired session:
    retried; finally ``portal_unavailable``."""


class EmailNotReceived(TransientError):
    """The IMSS email did not arrive in time: retried (the portal query is repeated, so it
    counts against the daily limit); finally ``portal_unavailable``."""


class CaptchaUnsolved(TransientError):
    """The solver used up its attempts: retried later; finally ``captcha_unsolved``."""

    status = Status.CAPTCHA_UNSOLVED


class PortalBlocked(TransientError):
    """The portal's bot protection (Imperva/Incapsula) refused the session. A property of the
    portal, not of one check: the engine **pauses that portal cluster-wide** (a growing pause,
    the operator told once per episode) and puts the check back to wait for the pause — without
    spending one of its ``retry_max`` retries, up to ``blocked_retry_max`` blocks; then
    ``portal_blocked``. Never retried in place (``StepRetry``): hammering a block prolongs it."""

    status = Status.PORTAL_BLOCKED


class PermanentError(FlowError):
    """Trying again would give the same answer: **recorded, not retried**."""


class PortalChanged(PermanentError):
    """An expected page element is missing: the flow needs updating. Recorded as
    ``portal_changed`` with evidence, not retried."""

    status = Status.PORTAL_CHANGED


def classify(error: BaseException) -> tuple[Status, bool]:
    """``(status, transient)``: the status recorded for ``error`` when it is not (or no longer)
    retried, and whether it is worth another try. Anything that is not a ``FlowError`` is an
    unexpected ``error``, not retried."""
    if isinstance(error, FlowError):
        return error.status, error.transient
    return Status.ERROR, False


def status_for(error: BaseException) -> Status:
    """The status recorded for an error that is not (or no longer) retried."""
    return classify(error)[0]


def retry_delay(
    error: BaseException,
    attempt: int,
    *,
    retry_max: int,
    backoff_s: float,
    backoff_max_s: float,
    rng: random.Random | None = None,
    blocks: int = 0,
    blocked_retry_max: int = 0,
    pause_s: float = 0.0,
) -> float | None:
    """Seconds to wait before attempt ``attempt + 1``, or ``None`` to record the status now.

    ``attempt`` counts runs already made (0 on the first run), ``blocks`` how many of them met
    a ``PortalBlocked``: those do not count against ``retry_max``. Exponential backoff with
    "full jitter" (uniform in [cap/2, cap]) so that a fleet of workers does not retry in step.
    A block waits for the portal's pause (``pause_s``, from the engine's pause record) plus up
    to a tenth of it, so that the checks waiting on it do not all come back at one instant.
    """
    if not classify(error)[1]:
        return None
    if isinstance(error, PortalBlocked):
        if blocks >= blocked_retry_max:
            return None
        return pause_s + (rng or random).uniform(0, max(pause_s, 1.0) / 10)
    failures = attempt - blocks
    if failures >= retry_max:
        return None
    cap = min(backoff_max_s, backoff_s * (2**failures))
    return (rng or random).uniform(cap / 2, cap)
