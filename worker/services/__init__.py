"""Services, what the interfaces ask for: batches from sheets, re-checks, people, purge, the
nightly schedule, ``doctor`` and the nightly gate that runs it first (``preflight``).
(``tasks``, the beat's Celery task, is loaded by the Celery app only; ``doctor`` is not
imported here: it brings the browser checks, Pillow and alembic.)"""

from __future__ import annotations

from worker.services.batches import batch_results, batch_status, open_storage, prepare_batch
from worker.services.people import people_overview, set_people_active
from worker.services.purge import purge
from worker.services.recheck import create_recheck_batch, select_for_recheck, start_recheck
from worker.services.schedule import run_beat

__all__ = ["batch_results", "batch_status", "open_storage", "prepare_batch", "people_overview",
           "set_people_active", "purge", "create_recheck_batch", "select_for_recheck",
           "start_recheck", "run_beat"]
