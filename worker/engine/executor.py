"""Where a batch's checks run, chosen once from the settings: the embedded pool (no broker) or
the Celery workers (``CONSTANCIAS_BROKER_URL``).

Both offer the same two verbs, used by ``run``, ``recheck``, ``beat`` and the web page:

* ``submit(batch_id)`` starts the batch and returns at once (embedded: a thread of this process
  runs it; Celery: its checks are put on the broker);
* ``run_to_end(batch_id, progress=…)`` returns when every check has a status and the report is
  written (embedded: runs it here; Celery: sends it and watches storage).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol

import redis
import structlog

from worker.core.settings import Settings
from worker.engine.dispatch import enqueue_batch
from worker.engine.embedded import Progress, run_embedded
from worker.storage.repository import Storage

__all__ = ["Executor", "EmbeddedExecutor", "CeleryExecutor", "executor_for", "Progress"]

log = structlog.get_logger("constancias.executor")

ProgressCallback = Callable[[Progress], None]


class Executor(Protocol):
    """Runs stored batches; see the module docstring."""

    def submit(self, batch_id: str) -> int:
        """Start the batch without waiting; how many checks were started."""
        ...

    def run_to_end(self, batch_id: str, *, progress: ProgressCallback | None = None) -> None:
        """Run the batch and return when it is done."""
        ...

    def running(self, batch_id: str) -> bool:
        """Whether this process is running the batch now (the web page's "resume" button)."""
        ...

    def unavailable(self) -> bool:
        """Whether the place where checks run does not answer now (Redis down)."""
        ...

    def join(self, timeout: float | None = None) -> None:
        """Wait for what ``submit`` started in this process (tests, shutdown)."""
        ...


class EmbeddedExecutor:
    """No broker: this process runs the batch with K child processes (``engine.embedded``).
    ``console_level``: the least those processes show on the screen (a terminal's ``run``
    shows warnings only, under its progress line)."""

    def __init__(self, settings: Settings, storage: Storage,
                 console_level: str | None = None) -> None:
        self.settings = settings
        self.storage = storage
        self.console_level = console_level
        self._threads: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()

    def submit(self, batch_id: str) -> int:
        """At most one background run per batch in this process."""
        with self._lock:
            thread = self._threads.get(batch_id)
            if thread is not None and thread.is_alive():
                return 0
            thread = threading.Thread(target=self._background, args=(batch_id,),
                                      name=f"lote-{batch_id}", daemon=True)
            self._threads[batch_id] = thread
            thread.start()
        return len(self.storage.pending_check_ids(batch_id))

    def run_to_end(self, batch_id: str, *, progress: ProgressCallback | None = None) -> None:
        run_embedded(self.settings, self.storage, batch_id, on_progress=progress,
                     console_level=self.console_level)

    def running(self, batch_id: str) -> bool:
        with self._lock:
            thread = self._threads.get(batch_id)
            return thread is not None and thread.is_alive()

    def unavailable(self) -> bool:
        return False

    def join(self, timeout: float | None = None) -> None:
        """Wait for the background runs (tests, shutdown)."""
        with self._lock:
            threads = list(self._threads.values())
        for thread in threads:
            thread.join(timeout)

    def _background(self, batch_id: str) -> None:
        log.info("batch_started", batch_id=batch_id)
        try:
            self.run_to_end(batch_id)
        except Exception:  # noqa: BLE001 - a thread has nobody else to tell
            log.exception("batch_failed", batch_id=batch_id)
        else:
            log.info("batch_finished", batch_id=batch_id)


class CeleryExecutor:
    """A broker: the checks go to ``constancias worker`` processes; storage says when they end."""

    #: How often ``run_to_end`` looks at storage, and how often Redis is asked if it is up.
    POLL_S = 0.5
    PING_EVERY_S = 5.0

    def __init__(self, settings: Settings, storage: Storage) -> None:
        self.settings = settings
        self.storage = storage
        self._broker_seen: tuple[float, bool] = (0.0, False)

    def submit(self, batch_id: str) -> int:
        """Raises ``BrokerUnavailable`` (the batch stays stored and due) when Redis is down."""
        return enqueue_batch(self.settings, self.storage, batch_id)

    def run_to_end(self, batch_id: str, *, progress: ProgressCallback | None = None) -> None:
        self.submit(batch_id)
        while True:
            batch = self.storage.get_batch(batch_id)
            if progress:
                progress(Progress(self.storage.progress(batch_id)))
            if batch is not None and batch.state == "done":
                return
            time.sleep(self.POLL_S)

    def running(self, batch_id: str) -> bool:
        return False  # the workers run it, not this process

    def join(self, timeout: float | None = None) -> None:
        return None

    def unavailable(self) -> bool:
        """Redis does not answer (asked at most every ``PING_EVERY_S``, half a second each)."""
        at, down = self._broker_seen
        if time.monotonic() - at < self.PING_EVERY_S:
            return down
        try:
            client = redis.Redis.from_url(self.settings.broker_url or "",
                                          socket_connect_timeout=0.5, socket_timeout=0.5)
            down = not client.ping()
            client.close()
        except (redis.RedisError, OSError):
            down = True
        self._broker_seen = (time.monotonic(), down)
        return down


def executor_for(settings: Settings, storage: Storage,
                 console_level: str | None = None) -> Executor:
    """The one place that picks embedded or Celery (``CONSTANCIAS_BROKER_URL``)."""
    if settings.embedded:
        return EmbeddedExecutor(settings, storage, console_level)
    return CeleryExecutor(settings, storage)
