"""Reliability settings of Celery (NOTES: late ack, prefetch 1, visibility timeout, recycling)."""

from __future__ import annotations

from typing import Any

from worker.core.settings import Settings

__all__ = ["CHECK_PRIORITY", "STEP_PRIORITY", "celery_config"]

#: Priorities on Redis (kombu keeps one list per level and reads the lowest number first).
#: Every task goes at ``CHECK_PRIORITY``; the next step of a check whose email came (the
#: mailbox watcher's) at ``STEP_PRIORITY``, before every queued step 1: it ends a check and its
#: wait, where a step 1 behind it would start one more (issue 22).
CHECK_PRIORITY = 6
STEP_PRIORITY = 0


def celery_config(settings: Settings) -> dict[str, Any]:
    return {
        "broker_url": settings.broker_url or "memory://",
        # Completion is derived from storage, not from task results.
        "task_ignore_result": True,
        "result_backend": None,
        "task_serializer": "json",
        "accept_content": ["json"],
        "timezone": settings.timezone,
        "enable_utc": True,
        # A worker killed mid-check must not lose it: acknowledge after the run, and requeue
        # when the worker is lost (storage caps redeliveries of a poison check).
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # An exception escaping the engine (database or Redis down) makes Celery drop the
        # message (reject, no requeue); a hard time limit requeues it. Either way the check
        # keeps no status, and the sweeper (worker/engine/sweeper.py) sends it again; storage caps
        # how often a check may crash (max_redeliveries).
        "task_acks_on_failure_or_timeout": False,
        "worker_prefetch_multiplier": 1,
        "task_default_priority": CHECK_PRIORITY,
        "task_time_limit": settings.task_time_limit_s,
        "task_soft_time_limit": max(30, settings.task_time_limit_s - 30),
        "broker_transport_options": {"visibility_timeout": settings.visibility_timeout_s},
        "broker_connection_retry_on_startup": True,
        # Chromium's memory is not the child's: recycle by task count (NOTES).
        "worker_max_tasks_per_child": settings.worker_max_tasks_per_child,
        "worker_hijack_root_logger": False,
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "beat_scheduler": "redbeat.RedBeatScheduler",
        "redbeat_redis_url": settings.broker_url,
        "redbeat_lock_timeout": 300,
    }
