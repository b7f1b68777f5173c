"""The sweeper (distributed mode): sends again the checks nobody is going to run.

Celery on Redis gives a task back to the queue when a pool process dies under it
(``task_reject_on_worker_lost``), but the tasks a whole worker held when it was killed — the
ones running, and the retries waiting for their countdown — stay unacknowledged in Redis until
the visibility timeout (an hour by default), and a Redis restarted without its data has lost
every queued task. Waiting that long, or forever, is not an answer for a batch.

Storage knows better: a running check's lease is renewed while its flow runs
(worker/engine/check.py), and every broker task's due time is recorded
(worker/engine/dispatch.py, worker/engine/tasks.py). One worker at a time (a Redis lock), every
``sweep_interval_s``, sends a new task for each check

* whose lease ran out (by half a lease more, for clocks and slow renewals): its worker died
  mid-check; or
* that is overdue by ``lease_s + sweep_interval_s`` with no lease, when the queue is empty (so
  its task is not waiting there): its worker died holding it for a retry, or Redis lost it;

and finishes batches whose checks all ended but whose report nobody claimed, or whose claim is
older than a task may last (a worker died in between, or while writing it). A check sent twice
is harmless: the engine skips it once it has a status, its lease keeps two copies from running
the flow at once, and a copy of an attempt already run is dropped (the task carries its
attempt), so a late copy never spends a portal query.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

import structlog

from worker.core.logs import mask_text
from worker.core.settings import Settings
from worker.storage.repository import Storage

__all__ = ["Sweeper", "queue_length", "sweep_once"]

log = structlog.get_logger("constancias.sweeper")

LOCK_KEY = "constancias:sweeper"
#: kombu's Redis transport keeps a queue's priority levels in sibling lists.
_PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")


def queue_length(client: Any, queue: str = "celery") -> int:
    """Messages waiting in the broker's queue (every priority level)."""
    return sum(int(client.llen(queue + suffix)) for suffix in _PRIORITY_SUFFIXES)


def sweep_once(settings: Settings, storage: Storage, client: Any,
               send_check: Callable[[int, int], Any],
               send_finish: Callable[[str], Any]) -> list[int]:
    """One pass, if no other worker made one in this interval; the ids sent again."""
    if not client.set(LOCK_KEY, os.getpid(), nx=True, ex=max(1, settings.sweep_interval_s - 1)):
        return []
    empty = queue_length(client) == 0
    found = dict(storage.orphans(grace_s=settings.lease_s + settings.sweep_interval_s,
                                 queue_empty=empty, lease_margin_s=settings.lease_s / 2))
    # Recorded before sending: if the broker fails now, they are overdue again next time.
    ids = storage.requeue(list(found))
    for check_id in ids:
        # With the attempt it is at: a late copy of an earlier attempt is then a stale one.
        send_check(check_id, found[check_id])
    if ids:
        log.warning("checks_requeued", count=len(ids), queue_empty=empty)
    for batch_id in storage.reclaim_stale_reports(settings.task_time_limit_s + 60):
        log.warning("batch_report_reclaimed", batch_id=batch_id)
        send_finish(batch_id)
    if empty:
        for batch_id in storage.unreported_complete_batches():
            log.warning("batch_finish_requeued", batch_id=batch_id)
            send_finish(batch_id)
    return ids


class Sweeper:
    """A daemon thread in the worker's main process running ``sweep_once`` periodically.

    ``send_check(check_id, attempt)`` and ``send_finish(batch_id)`` put the tasks on the
    broker (the task module passes them: the sweeper does not import the tasks it sends)."""

    def __init__(self, settings: Settings, send_check: Callable[[int, int], None],
                 send_finish: Callable[[str], None]) -> None:
        self.settings = settings
        self.send_check, self.send_finish = send_check, send_finish
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="constancias-sweeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        import redis  # here: the sweeper runs in broker mode only

        client = redis.Redis.from_url(self.settings.broker_url or "", socket_timeout=10)
        storage = Storage(self.settings.effective_database_url)
        while not self._stop.wait(self.settings.sweep_interval_s):
            try:
                sweep_once(self.settings, storage, client, self.send_check, self.send_finish)
            except Exception as exc:  # noqa: BLE001 - Redis or the database down: next time
                log.warning("sweep_failed", error=mask_text(str(exc)),
                            error_type=type(exc).__name__)
