"""The Celery app (distributed mode): configuration only; tasks live in worker/engine/tasks.py."""

from __future__ import annotations

from celery import Celery

from worker.core.settings import load_settings
from worker.engine.celeryconfig import celery_config

settings = load_settings()
app = Celery("constancias", include=["worker.engine.tasks"])
app.conf.update(celery_config(settings))
