"""Distributed mode: put a batch's pending checks on the broker."""

from __future__ import annotations

from worker.settings import Settings
from worker.storage import Storage

__all__ = ["enqueue_batch"]


def enqueue_batch(settings: Settings, storage: Storage, batch_id: str) -> int:
    """Send one task per pending check (ids only). Sending twice is harmless: a check that
    already has a status is skipped by the engine."""
    from worker.tasks import check, finish_batch

    pending = storage.pending_check_ids(batch_id)
    for check_id, _portal in pending:
        check.apply_async(kwargs={"check_id": check_id, "attempt": 0})
    if not pending:
        finish_batch.apply_async(kwargs={"batch_id": batch_id})
    return len(pending)
