"""Storage: the models, the one repository with every query (``Storage``), the migrations.

The tables of the features beside the checks keep their queries in their own modules, loaded
by whoever uses them (not here: ``accounts`` brings Argon2): ``accounts`` (users, API tokens,
idempotency keys), ``audit`` (the audit trail), ``webhooks`` (webhooks and their deliveries),
``doctor_runs`` (doctor's recorded results)."""

from __future__ import annotations

from worker.storage.repository import (
    PURGED,
    Batch,
    Check,
    Notification,
    Person,
    Row,
    Storage,
    new_batch_id,
    pseudonym,
    utcnow,
)

__all__ = ["PURGED", "Batch", "Check", "Notification", "Person", "Row", "Storage",
           "new_batch_id", "pseudonym", "utcnow"]
