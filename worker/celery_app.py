"""The Celery app (distributed mode): configuration only; tasks live in worker/tasks.py."""

from __future__ import annotations

from celery import Celery

from worker.celeryconfig import celery_config
from worker.settings import load_settings

settings = load_settings()
app = Celery("constancias", include=["worker.tasks"])
app.conf.update(celery_config(settings))
