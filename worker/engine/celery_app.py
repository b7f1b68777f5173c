"""The Celery app (distributed mode): configuration only.

Tasks live in ``worker/engine/tasks.py`` (the checks) and ``worker/services/tasks.py`` (the
re-check beat fires). Celery loads both by name when a worker starts (``include``): the engine
does not import the services layer above it.
"""

from __future__ import annotations

from celery import Celery

from worker.core.settings import load_settings
from worker.engine.celeryconfig import celery_config

settings = load_settings()
app = Celery("constancias", include=["worker.engine.tasks", "worker.services.tasks"])
app.conf.update(celery_config(settings))
