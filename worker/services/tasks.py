"""The Celery task of the services layer: the nightly re-check that beat fires (``RECHECK_TASK``
of ``worker/services/schedule.py``). Loaded by the worker through the app's ``include``."""

from __future__ import annotations

from typing import Any

import structlog

from worker.engine.celery_app import app, settings
from worker.engine.tasks import engine
from worker.services.preflight import doctor_gate
from worker.services.recheck import select_for_recheck, start_recheck

__all__ = ["recheck"]


@app.task(bind=True, name="constancias.recheck", ignore_result=True, max_retries=None)
def recheck(self: Any, older_than_h: float | None = None, postponed: int = 0) -> str | None:
    """Fired by beat: doctor first (a failure postpones this task,
    ``worker/services/preflight.py``), then store the re-check batch of whoever is due and
    submit its checks (no waiting). With nobody due (everyone recent, or still being checked
    by the previous run) doctor is skipped: it would open both portals for nothing, and a
    schedule that fires while a re-check runs would queue one doctor after another ahead of
    that re-check's checks."""
    hours = settings.recheck_older_than_h if older_than_h is None else older_than_h
    if settings.doctor_before_recheck and select_for_recheck(engine().storage, settings, hours):
        left = settings.doctor_retries - postponed
        retry_in = settings.doctor_retry_s if left > 0 else None
        if not doctor_gate(settings, engine().storage, retry_in_s=retry_in):
            if retry_in is None:
                structlog.get_logger("constancias.preflight").warning(
                    "recheck_given_up", postponed=postponed)
                return None
            raise self.retry(countdown=retry_in, max_retries=None,
                             kwargs={"older_than_h": older_than_h, "postponed": postponed + 1})
    return start_recheck(settings, older_than_h=older_than_h)
