"""Distributed mode: put a batch's pending checks on the broker."""

from __future__ import annotations

from urllib.parse import urlsplit

from flows import registry
from worker.core.errors import UserError
from worker.core.settings import Settings
from worker.storage.repository import Storage

__all__ = ["BrokerUnavailable", "enqueue_batch"]


class BrokerUnavailable(UserError):
    """Redis did not take the batch's tasks; the batch itself is stored."""


def enqueue_batch(settings: Settings, storage: Storage, batch_id: str) -> int:
    """Send one task per pending check (ids only). Sending twice is harmless: a check that
    already has a status is skipped by the engine."""
    # Imported here: the tasks load the Celery app (Celery, the settings), for broker mode only.
    from worker.engine.tasks import check, finish_batch

    pending = storage.pending_attempts(batch_id, registry.run_order())
    # Due now: from here on the sweeper (worker/engine/sweeper.py) watches that each one gets run.
    storage.set_due([check_id for check_id, _attempts in pending])
    # Here, like the tasks: Celery's messaging library and its Redis client, for broker mode only.
    from kombu.exceptions import OperationalError
    from redis.exceptions import RedisError

    try:
        for check_id, attempts in pending:
            # At the attempt it is at (a batch resumed after failed attempts): an older attempt
            # number would be taken for a stale copy and dropped.
            check.apply_async(kwargs={"check_id": check_id, "attempt": attempts})
        if not pending:
            finish_batch.apply_async(kwargs={"batch_id": batch_id})
    except (OperationalError, RedisError, OSError) as exc:
        # Nothing is lost: the checks are stored and due, and the workers' sweeper sends
        # whatever is missing from the queue once Redis answers again.
        where = urlsplit(settings.broker_url or "")
        raise BrokerUnavailable(
            f"Redis no responde en {where.hostname}:{where.port or 6379} "
            f"(CONSTANCIAS_BROKER_URL). El lote {batch_id} quedó guardado: los workers lo "
            "enviarán cuando Redis vuelva."
        ) from exc
    return len(pending)
