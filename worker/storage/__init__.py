"""Storage: the models, the one repository with every query (``Storage``), the migrations."""

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
