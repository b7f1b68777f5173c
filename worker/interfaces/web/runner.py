"""Starting batches from the web page.

Embedded (no broker): the web process runs the batch itself, in a background thread that calls
``run_embedded`` (which spawns its own worker processes, one browser each). With a broker: the
checks go to the Celery workers and the page only watches storage.
"""

from __future__ import annotations

import threading
import time

import structlog

from worker.core.settings import Settings
from worker.storage.repository import Storage

__all__ = ["BatchRunner"]

log = structlog.get_logger("constancias.web")


class BatchRunner:
    """At most one background run per batch in this process."""

    def __init__(self, settings: Settings, storage: Storage) -> None:
        self.settings = settings
        self.storage = storage
        self._threads: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()
        self._broker_seen: tuple[float, bool] = (0.0, False)

    def broker_down(self) -> bool:
        """With a broker: Redis does not answer (asked at most every 5 s, half a second
        each). Embedded: never."""
        if self.settings.embedded:
            return False
        at, down = self._broker_seen
        if time.monotonic() - at < 5:
            return down
        import redis

        try:
            client = redis.Redis.from_url(self.settings.broker_url or "",
                                          socket_connect_timeout=0.5, socket_timeout=0.5)
            down = not client.ping()
            client.close()
        except (redis.RedisError, OSError):
            down = True
        self._broker_seen = (time.monotonic(), down)
        return down

    def running(self, batch_id: str) -> bool:
        with self._lock:
            thread = self._threads.get(batch_id)
            return thread is not None and thread.is_alive()

    def can_resume(self, batch_id: str, state: str) -> bool:
        """An unfinished embedded batch with nobody running it (e.g. the server restarted)."""
        return self.settings.embedded and state != "done" and not self.running(batch_id)

    def start(self, batch_id: str) -> None:
        if not self.settings.embedded:
            from worker.engine.dispatch import BrokerUnavailable, enqueue_batch

            try:
                n = enqueue_batch(self.settings, self.storage, batch_id)
            except BrokerUnavailable as err:
                # The batch is stored and its checks due: the workers' sweeper sends them.
                log.warning("web_batch_not_enqueued", batch_id=batch_id, error=str(err))
                return
            log.info("web_batch_enqueued", batch_id=batch_id, checks=n)
            return
        with self._lock:
            thread = self._threads.get(batch_id)
            if thread is not None and thread.is_alive():
                return
            thread = threading.Thread(target=self._run, args=(batch_id,),
                                      name=f"lote-{batch_id}", daemon=True)
            self._threads[batch_id] = thread
            thread.start()

    def _run(self, batch_id: str) -> None:
        from worker.engine.embedded import run_embedded

        log.info("web_batch_started", batch_id=batch_id)
        try:
            run_embedded(self.settings, self.storage, batch_id)
        except Exception:  # noqa: BLE001 - a thread has nobody else to tell
            log.exception("web_batch_failed", batch_id=batch_id)
        else:
            log.info("web_batch_finished", batch_id=batch_id)

    def join(self, timeout: float | None = None) -> None:
        """Wait for the background runs (tests, shutdown)."""
        with self._lock:
            threads = list(self._threads.values())
        for thread in threads:
            thread.join(timeout)
