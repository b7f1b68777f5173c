"""Starting batches from the web page, through the executor the settings choose
(``worker.engine.executor``): embedded, the web process runs the batch in a background thread
(with its own worker processes, one browser each); with a broker, the checks go to the Celery
workers and the page only watches storage."""

from __future__ import annotations

import structlog

from worker.core.settings import Settings
from worker.engine.dispatch import BrokerUnavailable
from worker.engine.executor import executor_for
from worker.storage.repository import Storage

__all__ = ["BatchRunner"]

log = structlog.get_logger("constancias.web")


class BatchRunner:
    """The web page's view of the executor."""

    def __init__(self, settings: Settings, storage: Storage) -> None:
        self.settings = settings
        self.executor = executor_for(settings, storage)

    def broker_down(self) -> bool:
        """With a broker: Redis does not answer. Embedded: never."""
        return self.executor.unavailable()

    def running(self, batch_id: str) -> bool:
        return self.executor.running(batch_id)

    def can_resume(self, batch_id: str, state: str) -> bool:
        """An unfinished embedded batch with nobody running it (e.g. the server restarted)."""
        return self.settings.embedded and state != "done" and not self.running(batch_id)

    def start(self, batch_id: str) -> None:
        try:
            n = self.executor.submit(batch_id)
        except BrokerUnavailable as err:
            # The batch is stored and its checks due: the workers' sweeper sends them.
            log.warning("web_batch_not_enqueued", batch_id=batch_id, error=str(err))
            return
        log.info("web_batch_started" if self.settings.embedded else "web_batch_enqueued",
                 batch_id=batch_id, checks=n)

    def join(self, timeout: float | None = None) -> None:
        """Wait for the background runs (tests, shutdown)."""
        self.executor.join(timeout)
