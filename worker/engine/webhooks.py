"""Webhooks for HR systems (SPEC §9): ``batch.done`` and ``check.changed``, POSTed signed.

Events become rows of ``webhook_deliveries`` (``worker.storage.webhooks``) in whatever process
finishes a batch (one row per webhook and event, unique, so a batch finished twice emits once).
``DeliveryLoop`` — run by ``constancias web`` — POSTs due rows: ``X-Constancias-Timestamp`` and
``X-Constancias-Signature: sha256=HEX`` (HMAC-SHA256 of ``timestamp + "." + body``), retried
with a doubling wait (``WEBHOOK_BACKOFF_S`` … ``WEBHOOK_BACKOFF_MAX_S``) up to
``WEBHOOK_ATTEMPTS`` tries. A 2xx answer is delivered; anything else, or no answer, is retried.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections import Counter

import httpx
import structlog

from worker.core.settings import Settings
from worker.report.data import report_data
from worker.storage.repository import Storage
from worker.storage.webhooks import (
    DeliveryView,
    add_webhook,
    due_deliveries,
    emit,
    recent_deliveries,
    record_attempt,
)

__all__ = ["EVENTS", "add_webhook", "emit", "emit_batch_events", "deliver_due", "DeliveryLoop",
           "sign", "recent_deliveries", "DeliveryView"]

log = structlog.get_logger("constancias.webhooks")

EVENTS = ("batch.done", "check.changed")


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=HEX``: HMAC-SHA256 of ``timestamp + "." + body`` (SPEC §9)."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def emit_batch_events(settings: Settings, storage: Storage, batch_id: str) -> int:
    """``batch.done`` for a finished batch, and ``check.changed`` for each status change a
    re-check found (the same changes the report's «Cambios» sheet and the e-mails show)."""
    batch = storage.get_batch(batch_id)
    if batch is None:
        return 0
    checks = storage.checks(batch_id)
    n = emit(storage, "batch.done", f"batch.done:{batch_id}", {
        "batch_id": batch_id, "kind": batch.kind, "checks": len(checks),
        "by_status": dict(Counter(c.status for c in checks if c.status is not None)),
        "status_url": f"/api/v1/batches/{batch_id}",
        "report_url": f"/api/v1/batches/{batch_id}/report",
    })
    if batch.kind == "recheck":
        data = report_data(settings, storage, batch_id)
        for change in data.changes or []:
            n += emit(storage, "check.changed",
                      f"check.changed:{batch_id}:{change.curp}:{change.portal}", {
                          "batch_id": batch_id, "curp": change.curp, "portal": change.portal,
                          "before": change.before.value if change.before else None,
                          "after": change.after.value,
                      })
    return n


def _backoff(settings: Settings, attempts: int) -> float:
    return float(min(settings.webhook_backoff_s * 2 ** (attempts - 1),
                     settings.webhook_backoff_max_s))


def deliver_due(settings: Settings, storage: Storage, client: httpx.Client) -> int:
    """One pass: POST every delivery that is due; returns how many were tried."""
    due = due_deliveries(storage)
    for d in due:
        body = d.payload.encode()
        timestamp = str(int(time.time()))
        status: int | None = None
        error: str | None = None
        try:
            response = client.post(d.url, content=body, timeout=settings.webhook_timeout_s,
                                   headers={"content-type": "application/json",
                                            "x-constancias-timestamp": timestamp,
                                            "x-constancias-signature": sign(d.secret, timestamp,
                                                                            body)})
            status = response.status_code
        except httpx.HTTPError as err:
            error = type(err).__name__
        attempts = d.attempts + 1
        ok = status is not None and 200 <= status < 300
        retry_in = (None if ok or attempts >= settings.webhook_attempts
                    else _backoff(settings, attempts))
        record_attempt(storage, d.id, attempts=attempts, status=status, error=error,
                       delivered=ok, retry_in_s=retry_in)
        log.info("webhook_delivery", delivery=d.id, status=status, error=error,
                 attempts=attempts, delivered=ok)
    return len(due)


class DeliveryLoop:
    """A thread that runs ``deliver_due`` every ``WEBHOOK_POLL_S`` until ``stop()``."""

    def __init__(self, settings: Settings, storage: Storage) -> None:
        self.settings = settings
        self.storage = storage
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="webhooks", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(self.settings.webhook_timeout_s + 5)

    def _run(self) -> None:
        with httpx.Client(follow_redirects=False) as client:
            while not self._stop.is_set():
                try:
                    deliver_due(self.settings, self.storage, client)
                except Exception:  # noqa: BLE001 - one bad pass must not stop later deliveries
                    log.exception("webhook_loop_failed")
                self._stop.wait(self.settings.webhook_poll_s)
