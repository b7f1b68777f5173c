"""Webhooks for HR systems (SPEC §9): ``batch.done`` and ``check.changed``, POSTed signed.

Events become rows of ``webhook_deliveries`` in whatever process finishes a batch (one row per
webhook and event, unique, so a batch finished twice emits once). ``DeliveryLoop`` — run by
``constancias web`` — POSTs due rows: ``X-Constancias-Timestamp`` and
``X-Constancias-Signature: sha256=HEX`` (HMAC-SHA256 of ``timestamp + "." + body``), retried
with a doubling wait (``WEBHOOK_BACKOFF_S`` … ``WEBHOOK_BACKOFF_MAX_S``) up to
``WEBHOOK_ATTEMPTS`` tries. A 2xx answer is delivered; anything else, or no answer, is retried.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import structlog
from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, Text, UniqueConstraint, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from worker.settings import Settings
from worker.storage import Base, Storage, utcnow

__all__ = ["Webhook", "WebhookDelivery", "EVENTS", "add_webhook", "emit", "emit_batch_events",
           "deliver_due", "DeliveryLoop", "sign", "recent_deliveries", "DeliveryView"]

log = structlog.get_logger("constancias.webhooks")

EVENTS = ("batch.done", "check.changed")


class Webhook(Base):
    __tablename__ = "webhooks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    token_id: Mapped[int | None] = mapped_column(
        ForeignKey("api_tokens.id", ondelete="SET NULL"), nullable=True)
    url: Mapped[str] = mapped_column(Text)
    events: Mapped[list[Any]] = mapped_column(JSON)
    secret: Mapped[str] = mapped_column(String(128))
    """Kept: signing needs it. Shown once, in the answer that created the webhook."""
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookDelivery(Base):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (UniqueConstraint("webhook_id", "event_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(String(32))
    event_key: Mapped[str] = mapped_column(String(128))
    payload: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default="pending")  # pending|delivered|failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_at: Mapped[datetime | None] = mapped_column(nullable=True, index=True)
    last_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(nullable=True)


@dataclass(frozen=True)
class DeliveryView:
    url: str
    event: str
    state: str
    attempts: int
    last_status: int | None
    last_error: str | None
    created_at: datetime
    next_at: datetime | None


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=HEX``: HMAC-SHA256 of ``timestamp + "." + body`` (SPEC §9)."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def add_webhook(storage: Storage, url: str, events: list[str],
                token_id: int | None) -> tuple[int, str]:
    """Register a webhook; returns (id, secret). The secret is not shown again."""
    secret = "whsec_" + secrets.token_urlsafe(32)
    with storage.session() as s:
        row = Webhook(url=url, events=list(events), secret=secret, token_id=token_id)
        s.add(row)
        s.flush()
        return row.id, secret


def emit(storage: Storage, event: str, key: str, data: dict[str, Any]) -> int:
    """Queue ``event`` for every active webhook that wants it; once per (webhook, key)."""
    body = json.dumps({"event": event, "data": data}, ensure_ascii=False, default=str)
    with storage.session() as s:
        hooks = [h.id for h in s.scalars(select(Webhook).where(Webhook.active.is_(True)))
                 if event in h.events]
    queued = 0
    for hook_id in hooks:
        try:
            with storage.session() as s:
                s.add(WebhookDelivery(webhook_id=hook_id, event=event, event_key=key[:128],
                                      payload=body, next_at=utcnow()))
            queued += 1
        except IntegrityError:
            pass  # emitted already (a batch finished twice): nothing new to deliver
    return queued


def emit_batch_events(settings: Settings, storage: Storage, batch_id: str) -> int:
    """``batch.done`` for a finished batch, and ``check.changed`` for each status change a
    re-check found (the same changes the report's «Cambios» sheet and the e-mails show)."""
    from worker.reporting import report_data

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
    return min(settings.webhook_backoff_s * 2 ** (attempts - 1), settings.webhook_backoff_max_s)


def deliver_due(settings: Settings, storage: Storage, client: httpx.Client) -> int:
    """One pass: POST every delivery that is due; returns how many were tried."""
    now = utcnow()
    with storage.session() as s:
        due = [(d.id, d.payload, h.url, h.secret, d.attempts) for d, h in s.execute(
            select(WebhookDelivery, Webhook).join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
            .where(WebhookDelivery.state == "pending", WebhookDelivery.next_at <= now)
            .order_by(WebhookDelivery.next_at).limit(100))]
    for delivery_id, payload, url, secret, attempts in due:
        body = payload.encode()
        timestamp = str(int(time.time()))
        status: int | None = None
        error: str | None = None
        try:
            response = client.post(url, content=body, timeout=settings.webhook_timeout_s,
                                   headers={"content-type": "application/json",
                                            "x-constancias-timestamp": timestamp,
                                            "x-constancias-signature": sign(secret, timestamp,
                                                                            body)})
            status = response.status_code
        except httpx.HTTPError as err:
            error = type(err).__name__
        attempts += 1
        ok = status is not None and 200 <= status < 300
        with storage.session() as s:
            d = s.get(WebhookDelivery, delivery_id)
            if d is None:
                continue
            d.attempts, d.last_status, d.last_error = attempts, status, error
            if ok:
                d.state, d.delivered_at, d.next_at = "delivered", utcnow(), None
            elif attempts >= settings.webhook_attempts:
                d.state, d.next_at = "failed", None
            else:
                d.next_at = utcnow() + timedelta(seconds=_backoff(settings, attempts))
        log.info("webhook_delivery", delivery=delivery_id, status=status, error=error,
                 attempts=attempts, delivered=ok)
    return len(due)


def recent_deliveries(storage: Storage, limit: int = 50) -> list[DeliveryView]:
    with storage.session() as s:
        return [DeliveryView(url=h.url, event=d.event, state=d.state, attempts=d.attempts,
                             last_status=d.last_status, last_error=d.last_error,
                             created_at=d.created_at, next_at=d.next_at)
                for d, h in s.execute(
                    select(WebhookDelivery, Webhook)
                    .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
                    .order_by(WebhookDelivery.id.desc()).limit(limit))]


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
