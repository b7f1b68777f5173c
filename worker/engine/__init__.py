"""The engine: one check (``check.Engine``), the politeness limits, and where checks run —
the embedded pool or the Celery workers, chosen once (``executor.executor_for``).

``notify`` sends the e-mails (HR's change notices, the operator's), ``webhooks`` the HR
systems' webhooks.

The Celery app and its tasks (``celery_app``, ``tasks``) are not imported here: loading them
reads the settings and starts Celery's machinery, which only a worker needs.
"""

from __future__ import annotations

from worker.engine.check import Decision, Engine
from worker.engine.executor import CeleryExecutor, EmbeddedExecutor, Executor, executor_for

__all__ = ["Decision", "Engine", "CeleryExecutor", "EmbeddedExecutor", "Executor",
           "executor_for"]
