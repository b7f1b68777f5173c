"""Re-checks (SPEC §8): who is due and the re-check batch.

A re-check is an ordinary batch of kind ``"recheck"``: the engine runs it like any other, except
that it never reuses today's verdict (the point is to ask the portals again), so every check is a
new history row and every IMSS constancia a new PDF. Its report's **Cambios** sheet compares each
check with the previous result of the same CURP and portal (``worker.report.data``).

Who is due: every *active* person whose latest result on a portal is older than the threshold, or
is not final (``worker.core.statuses.RETRYABLE``: daily limit, portal unavailable, captcha
unsolved).
People already being checked (a pending check in an unfinished batch started in the last
``BUSY_WINDOW``) are left out, so a schedule that fires while a re-check still runs does not
queue them twice.

The same ``start_recheck`` serves ``constancias recheck`` (waits, like ``run``), the Celery
task fired by beat (submits and returns) and the embedded scheduler loop
(``worker.services.schedule``, waits).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime, timedelta

import structlog

from flows import registry
from worker.core.settings import Settings
from worker.core.statuses import RETRYABLE
from worker.engine.executor import ProgressCallback, executor_for
from worker.services.batches import open_storage
from worker.services.purge import purge
from worker.storage.repository import Check, Storage, new_batch_id, utcnow

__all__ = ["select_for_recheck", "create_recheck_batch", "start_recheck", "BUSY_WINDOW"]

log = structlog.get_logger("constancias.recheck")

#: A pending check younger than this means "being checked now"; older ones were abandoned
#: (an interrupted embedded run) and do not block the person's re-check forever.
BUSY_WINDOW = timedelta(hours=24)

_RETRYABLE_CODES = frozenset(s.value for s in RETRYABLE)


# --- who is due -----------------------------------------------------------------------------


def _is_due(check: Check, cutoff: datetime) -> bool:
    if check.status in _RETRYABLE_CODES:
        return True
    return check.finished_at is None or check.finished_at <= cutoff


def select_for_recheck(storage: Storage, settings: Settings, older_than_h: float) -> list[str]:
    """CURPs of the active people due for a re-check, in the order they were first seen."""
    cutoff = utcnow() - timedelta(hours=max(0.0, older_than_h))
    active = storage.active_curps()
    if not active:
        return []
    latest = storage.latest_results()
    busy = storage.busy_curps(utcnow() - BUSY_WINDOW)
    due = [
        curp for curp in active
        if curp not in busy and any(_is_due(c, cutoff) for c in latest.get(curp, {}).values())
    ]
    log.info("recheck_selected", active=len(active), due=len(due), busy=len(busy),
             older_than_h=older_than_h)
    return due


# --- the batch ------------------------------------------------------------------------------


def create_recheck_batch(settings: Settings, storage: Storage, curps: list[str]) -> str | None:
    """Store a re-check batch for ``curps`` (None when there is nobody to re-check).

    Each person is checked on every portal any of them has a result on (normally both), with
    their other columns (name, employee number…) copied from their latest input row so the
    report reads like the original sheet; row numbers are sequential.
    """
    curps = list(dict.fromkeys(curps))
    if not curps:
        return None
    latest = storage.latest_results(curps)
    seen = {portal for per in latest.values() for portal in per}
    portals = [p for p in registry.names() if p in seen] or registry.names()
    last_rows, columns = storage.latest_rows(curps)
    rows = []
    for number, curp in enumerate(curps, start=1):
        source = last_rows.get(curp)
        extra = dict(source.extra or {}) if source else {}
        rows.append({"row_number": number, "value": curp, "curp": curp, "reason": None,
                     "duplicate_of": None, "extra": extra})
    batch_id = new_batch_id()
    out = (settings.data_dir / "lotes" / batch_id).resolve()
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    now_local = datetime.now(settings.tz)
    # A key no sheet can have: a re-check is never "resumed" as an upload.
    key = hashlib.sha256(f"recheck|{batch_id}".encode()).hexdigest()
    storage.create_batch(key=key, source_name=f"Revisión del {now_local:%Y-%m-%d %H:%M}",
                         portals=portals, columns=columns, out_dir=out, rows=rows,
                         kind="recheck", batch_id=batch_id)
    log.info("recheck_batch_created", batch_id=batch_id, people=len(curps), portals=portals)
    return batch_id


def _purge_if_configured(settings: Settings, storage: Storage) -> None:
    """The nightly schedule first forgets personal data older than ``RETENTION_DAYS``."""
    if not settings.retention_days:
        return
    purge(settings, storage, settings.retention_days)


def start_recheck(settings: Settings, storage: Storage | None = None,
                  older_than_h: float | None = None, *, wait: bool = False,
                  progress: ProgressCallback | None = None, nightly: bool = True,
                  on_batch: Callable[[str, int], None] | None = None) -> str | None:
    """Select and store a re-check batch, then hand it to the executor the settings choose:
    ``wait=False`` submits it and returns (the Celery task fired by beat), ``wait=True`` runs it
    to the end (``constancias recheck``, the embedded scheduler loop). Returns the batch id, or
    None if nobody is due.

    ``nightly`` (the schedule's runs) first purges data older than ``RETENTION_DAYS`` when it is
    set. ``on_batch(batch_id, people)`` is told about the batch before it runs. The engine
    writes the report and sends the change notifications when the last check ends.
    """
    storage = storage or open_storage(settings)
    if nightly:
        _purge_if_configured(settings, storage)
    hours = settings.recheck_older_than_h if older_than_h is None else older_than_h
    curps = select_for_recheck(storage, settings, hours)
    batch_id = create_recheck_batch(settings, storage, curps)
    if batch_id is None:
        return None
    if on_batch is not None:
        on_batch(batch_id, len(curps))
    executor = executor_for(settings, storage)
    if wait:
        executor.run_to_end(batch_id, progress=progress)
    else:
        executor.submit(batch_id)
    return batch_id
