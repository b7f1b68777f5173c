"""Celery tasks: thin, like web views. They take ids (never a CURP: Celery logs arguments),
call the engine, and decide retry from its ``Decision``."""

from __future__ import annotations

from typing import Any

import redis
import structlog
from celery import signals

from flows import registry
from flows.browser import close_shared
from worker.core.logs import configure_logging
from worker.engine.celery_app import app, settings
from worker.engine.celeryconfig import STEP_PRIORITY
from worker.engine.check import Engine
from worker.engine.limits import BlockWatch, PausePolicy, RedisLimiter, RedisPause
from worker.engine.mailwatch import MailWatcher
from worker.engine.notify import notify_portal_blocked
from worker.engine.sweeper import Sweeper
from worker.storage.repository import configure_models

__all__ = ["check", "finish_batch", "send_step"]

_engine: Engine | None = None


def engine() -> Engine:
    """This process's engine, created after the fork (the browser launches on first check)."""
    global _engine
    if _engine is None:
        limiter = blocks = None
        if settings.broker_url and settings.broker_url.startswith("redis"):
            client = redis.Redis.from_url(settings.broker_url)
            limiter = RedisLimiter(client, lambda p: registry.portal(p).rate_limit(settings),
                                   lambda p: registry.portal(p).max_concurrency(settings),
                                   settings.task_time_limit_s + 60)
            # A portal's block pauses it for every worker (one record in Redis).
            blocks = BlockWatch(
                RedisPause(client, PausePolicy.from_settings(settings)),
                lambda portal, pause, reason: notify_portal_blocked(settings, portal, pause,
                                                                    reason),
                structlog.get_logger("constancias.engine"),
            )
        # A redelivered copy of a running check's task (the worker was lost, or the visibility
        # timeout passed) waits on the lease instead of running alongside. The lease is short
        # and renewed while the flow runs, so a dead worker's check is free again soon.
        _engine = Engine(settings, limiter=limiter, lease_s=settings.lease_s, blocks=blocks)
    return _engine


@app.task(bind=True, name="constancias.check", max_retries=None)
def check(self: Any, check_id: int, attempt: int = 0, blocks: int = 0) -> str | None:
    decision = engine().execute(check_id, attempt=attempt, task_id=self.request.id,
                                blocks=blocks)
    if decision.waiting:
        return None  # waits for its email: the mailbox watcher sends its next step
    if decision.retry_in is not None and not decision.done:
        # Recorded so that the sweeper can tell a pending retry from a lost one.
        engine().storage.set_due([check_id], decision.retry_in)
        raise self.retry(countdown=decision.retry_in, max_retries=None,
                         kwargs={"check_id": check_id, "attempt": decision.attempt,
                                 "blocks": decision.blocks})
    return decision.status


@app.task(name="constancias.finish_batch")
def finish_batch(batch_id: str) -> None:
    engine().finish_if_complete(batch_id)


@signals.setup_logging.connect
def _logging(**_: Any) -> None:
    # Connecting this stops Celery from configuring loggers itself.
    configure_logging(settings.log_format, settings.log_level, log_file=settings.log_file)


@signals.task_prerun.connect
def _bind(task_id: str | None = None, task: Any = None, kwargs: Any = None, **_: Any) -> None:
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(task_id=task_id, task=getattr(task, "name", None))


@signals.task_postrun.connect
def _unbind(**_: Any) -> None:
    structlog.contextvars.clear_contextvars()


_sweeper: Any = None


@signals.worker_ready.connect
def _start_sweeper(**_: Any) -> None:
    """In the worker's main process: watch for checks nobody will run (worker/engine/sweeper.py)."""
    global _sweeper
    # Before any thread (the sweeper's, the mailbox watcher's): a pool process forked while a
    # thread configures the mappers would inherit their lock held.
    configure_models()
    if settings.broker_url and settings.broker_url.startswith("redis"):
        _sweeper = Sweeper(
            settings,
            send_check=lambda check_id, attempt: check.apply_async(
                kwargs={"check_id": check_id, "attempt": attempt}),
            send_finish=lambda batch_id: finish_batch.apply_async(kwargs={"batch_id": batch_id}),
        )
        _sweeper.start()
    _start_mailwatch()


_mailwatch: Any = None


def _start_mailwatch() -> None:
    """In the worker's main process: the mailbox watcher of this process group
    (worker/engine/mailwatch.py); it sends the next step of each IMSS check whose email came."""
    global _mailwatch
    if settings.imss_mail_wait != "watch":
        return

    _mailwatch = MailWatcher(settings, send_step).start()


def send_step(check_id: int, attempts: int, **options: Any) -> None:
    """The task of a check's next step (its email came, or its wait ended): ahead of the
    queued step 1s (``STEP_PRIORITY``)."""
    check.apply_async(kwargs={"check_id": check_id, "attempt": attempts},
                      priority=STEP_PRIORITY, **options)


@signals.worker_shutdown.connect
def _stop_sweeper(**_: Any) -> None:
    if _sweeper is not None:
        _sweeper.stop()
    if _mailwatch is not None:
        _mailwatch.stop(2.0)


@signals.worker_process_shutdown.connect
def _close_browser(**_: Any) -> None:
    close_shared()
