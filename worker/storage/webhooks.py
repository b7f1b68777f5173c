"""The webhooks' tables (``webhooks``, ``webhook_deliveries``) and every query on them. The
delivery itself — signing, POSTing, the loop that runs in ``constancias web`` — is
``worker.engine.webhooks``."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, Text, UniqueConstraint, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from worker.storage.repository import Base, Storage, utcnow

__all__ = ["Webhook", "WebhookDelivery", "DueDelivery", "DeliveryView", "add_webhook", "emit",
           "due_deliveries", "record_attempt", "recent_deliveries"]


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


@dataclass(frozen=True)
class DueDelivery:
    """A pending delivery whose time has come, with what its POST needs."""

    id: int
    payload: str
    url: str
    secret: str
    attempts: int


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


def due_deliveries(storage: Storage, limit: int = 100) -> list[DueDelivery]:
    """The pending deliveries that are due, oldest first."""
    now = utcnow()
    with storage.session() as s:
        return [DueDelivery(d.id, d.payload, h.url, h.secret, d.attempts) for d, h in s.execute(
            select(WebhookDelivery, Webhook).join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
            .where(WebhookDelivery.state == "pending", WebhookDelivery.next_at <= now)
            .order_by(WebhookDelivery.next_at).limit(limit))]


def record_attempt(storage: Storage, delivery_id: int, *, attempts: int, status: int | None,
                   error: str | None, delivered: bool, retry_in_s: float | None) -> None:
    """One POST's result: delivered; failed for good (``retry_in_s`` None); or due again in
    ``retry_in_s`` seconds."""
    with storage.session() as s:
        d = s.get(WebhookDelivery, delivery_id)
        if d is None:
            return
        d.attempts, d.last_status, d.last_error = attempts, status, error
        if delivered:
            d.state, d.delivered_at, d.next_at = "delivered", utcnow(), None
        elif retry_in_s is None:
            d.state, d.next_at = "failed", None
        else:
            d.next_at = utcnow() + timedelta(seconds=retry_in_s)


def recent_deliveries(storage: Storage, limit: int = 50) -> list[DeliveryView]:
    with storage.session() as s:
        return [DeliveryView(url=h.url, event=d.event, state=d.state, attempts=d.attempts,
                             last_status=d.last_status, last_error=d.last_error,
                             created_at=d.created_at, next_at=d.next_at)
                for d, h in s.execute(
                    select(WebhookDelivery, Webhook)
                    .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
                    .order_by(WebhookDelivery.id.desc()).limit(limit))]
