"""``constancias doctor`` before each nightly re-check: a batch that cannot succeed (a portal
that blocks us, a changed page, a mailbox that refuses its password) is not started.

A failed doctor postpones the batch: it is tried again ``DOCTOR_RETRY_S`` later (the next
tick), up to ``DOCTOR_RETRIES`` times; then that night is given up and the next scheduled time
starts afresh. Every run is recorded (``doctor_runs``, trigger ``schedule``; the web page shows
the last one). The operator is e-mailed once per *new* failure: a run whose failed checks are
the same as the previous scheduled run's, already told, sends nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog

from flows.browser import close_shared
from worker.core.settings import Settings
from worker.engine.notify import notify_doctor_failed
from worker.services.doctor import DoctorReport, record, run_doctor
from worker.storage.doctor_runs import last_run, mark_notified
from worker.storage.repository import Storage

__all__ = ["doctor_gate", "gated_recheck", "doctor_in_own_browser"]

log = structlog.get_logger("constancias.preflight")


def doctor_in_own_browser(settings: Settings) -> DoctorReport:
    """Doctor for a process that runs no check itself (the embedded ``beat``): its browser is
    closed afterwards, so it holds no Chromium while the batch's own processes run."""
    try:
        return run_doctor(settings)
    finally:
        close_shared()


def doctor_gate(settings: Settings, storage: Storage, *, retry_in_s: float | None,
                doctor: Callable[[Settings], DoctorReport] = run_doctor) -> bool:
    """Run doctor, record it, tell the operator if its failure is new; True when all is ok.
    ``retry_in_s`` is what the notice says about the postponed batch (None: given up)."""
    report = doctor(settings)
    run_id = record(storage, report, "schedule")
    if report.ok:
        log.info("doctor_passed", checks=len(report.checks))
        return True
    failed = [(c.name, c.detail) for c in report.failed]
    key = ",".join(sorted(name for name, _ in failed))
    previous = last_run(storage, trigger="schedule", before_id=run_id) if run_id else None
    told = (previous is not None and not previous.ok and previous.failed == key
            and previous.notified)
    if told:
        log.info("doctor_failed_again", checks=key)
    else:
        told = notify_doctor_failed(settings, failed, retry_in_s)
    if told and run_id is not None:
        # Carried along, so the next identical failure knows the operator already knows.
        mark_notified(storage, run_id)
    return False


def gated_recheck(settings: Settings, storage: Storage, run: Callable[[], Any], *,
                  wait: Callable[[float], bool],
                  doctor: Callable[[Settings], DoctorReport] = run_doctor) -> Any:
    """``run()`` once doctor passes (at once when ``DOCTOR_BEFORE_RECHECK`` is off). Between
    tries ``wait(seconds)`` sleeps and returns True when the scheduler is stopping. None when
    the night is given up."""
    if not settings.doctor_before_recheck:
        return run()
    for attempt in range(settings.doctor_retries + 1):
        left = settings.doctor_retries - attempt
        retry_in = settings.doctor_retry_s if left else None
        if doctor_gate(settings, storage, retry_in_s=retry_in, doctor=doctor):
            return run()
        if not left:
            log.warning("recheck_given_up", postponed=attempt)
            return None
        log.warning("recheck_postponed", retry_in_s=settings.doctor_retry_s,
                    postponed=attempt + 1)
        if wait(settings.doctor_retry_s):
            return None
    return None  # unreachable: the last attempt returns above
