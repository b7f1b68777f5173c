"""The Celery task of the services layer: the nightly re-check that beat fires (``RECHECK_TASK``
of ``worker/services/schedule.py``). Loaded by the worker through the app's ``include``."""

from __future__ import annotations

from worker.engine.celery_app import app, settings
from worker.services.recheck import start_recheck

__all__ = ["recheck"]


@app.task(name="constancias.recheck", ignore_result=True)
def recheck(older_than_h: float | None = None) -> str | None:
    """Store the re-check batch of whoever is due and submit its checks (no waiting)."""
    return start_recheck(settings, older_than_h=older_than_h)
