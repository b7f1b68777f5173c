"""Re-checks (SPEC §8): who is due, the re-check batch, and the ``recheck`` / ``people`` commands.

A re-check is an ordinary batch of kind ``"recheck"``: the engine runs it like any other, except
that it never reuses today's verdict (the point is to ask the portals again), so every check is a
new history row and every IMSS constancia a new PDF. Its report's **Cambios** sheet compares each
check with the previous result of the same CURP and portal (``worker.reporting``).

Who is due: every *active* person whose latest result on a portal is older than the threshold, or
is not final (``worker.statuses.RETRYABLE``: daily limit, portal unavailable, captcha unsolved).
People already being checked (a pending check in an unfinished batch started in the last
``BUSY_WINDOW``) are left out, so a schedule that fires while a re-check still runs does not
queue them twice.

The same ``run_recheck`` serves ``constancias recheck`` (waits, like ``run``), the Celery task
fired by beat (distributed: enqueue and return) and the embedded scheduler loop
(``worker.schedule``).
"""

from __future__ import annotations

import hashlib
import json
import sys
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import func, select

from worker.errors import UserError
from worker.settings import Settings
from worker.statuses import PORTALS, RETRYABLE, label_of
from worker.storage import Batch, Check, Person, Row, Storage, new_batch_id, utcnow

__all__ = [
    "select_for_recheck", "create_recheck_batch", "start_recheck", "run_recheck",
    "set_people_active", "people_overview", "cmd_recheck", "cmd_people", "BUSY_WINDOW",
]

log = structlog.get_logger("constancias.recheck")

#: A pending check younger than this means "being checked now"; older ones were abandoned
#: (an interrupted embedded run) and do not block the person's re-check forever.
BUSY_WINDOW = timedelta(hours=24)

_RETRYABLE_CODES = frozenset(s.value for s in RETRYABLE)


# --- who is due -----------------------------------------------------------------------------


def _latest_results(storage: Storage,
                    curps: list[str] | None = None) -> dict[str, dict[str, Check]]:
    """CURP -> portal -> latest check with a status (the same order ``previous_result`` uses)."""
    with storage.session() as s:
        latest = (
            select(func.max(Check.id).label("id"))
            .where(Check.status.is_not(None))
            .group_by(Check.curp, Check.portal)
        )
        if curps is not None:
            latest = latest.where(Check.curp.in_(curps))
        rows = s.scalars(select(Check).where(Check.id.in_(latest.scalar_subquery())))
        out: dict[str, dict[str, Check]] = {}
        for check in rows:
            out.setdefault(check.curp, {})[check.portal] = check
        return out


def _busy_curps(storage: Storage) -> set[str]:
    """People with a check in flight (pending, in an unfinished batch started recently)."""
    since = utcnow() - BUSY_WINDOW
    with storage.session() as s:
        return set(s.scalars(
            select(Check.curp).join(Batch, Batch.id == Check.batch_id)
            .where(Check.status.is_(None), Batch.state != "done", Batch.created_at >= since)
            .distinct()
        ))


def _is_due(check: Check, cutoff: datetime) -> bool:
    if check.status in _RETRYABLE_CODES:
        return True
    return check.finished_at is None or check.finished_at <= cutoff


def select_for_recheck(storage: Storage, settings: Settings, older_than_h: float) -> list[str]:
    """CURPs of the active people due for a re-check, in the order they were first seen."""
    cutoff = utcnow() - timedelta(hours=max(0.0, older_than_h))
    with storage.session() as s:
        active = list(s.scalars(select(Person.curp).where(Person.active.is_(True))
                                .order_by(Person.first_seen, Person.curp)))
    if not active:
        return []
    latest = _latest_results(storage)
    busy = _busy_curps(storage)
    due = [
        curp for curp in active
        if curp not in busy and any(_is_due(c, cutoff) for c in latest.get(curp, {}).values())
    ]
    log.info("recheck_selected", active=len(active), due=len(due), busy=len(busy),
             older_than_h=older_than_h)
    return due


# --- the batch ------------------------------------------------------------------------------


def _latest_rows(storage: Storage, curps: list[str]) -> tuple[dict[str, Row], list[str]]:
    """Each CURP's latest input row (for its other columns) and the union of those columns."""
    rows: dict[str, Row] = {}
    columns: list[str] = []
    with storage.session() as s:
        found = s.execute(
            select(Row, Batch.columns).join(Batch, Batch.id == Row.batch_id)
            .where(Row.curp.in_(curps), Row.duplicate_of.is_(None))
            .order_by(Batch.created_at.desc(), Row.id.desc())
        )
        for row, batch_columns in found:
            if row.curp in rows:
                continue
            rows[row.curp] = row
            for col in batch_columns or []:
                if col not in columns and col in (row.extra or {}):
                    columns.append(col)
    return rows, columns


def create_recheck_batch(settings: Settings, storage: Storage, curps: list[str]) -> str | None:
    """Store a re-check batch for ``curps`` (None when there is nobody to re-check).

    Each person is checked on every portal any of them has a result on (normally both), with
    their other columns (name, employee number…) copied from their latest input row so the
    report reads like the original sheet; row numbers are sequential.
    """
    curps = list(dict.fromkeys(curps))
    if not curps:
        return None
    latest = _latest_results(storage, curps)
    seen = {portal for per in latest.values() for portal in per}
    portals = [p for p in PORTALS if p in seen] or list(PORTALS)
    last_rows, columns = _latest_rows(storage, curps)
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
    from worker.notify import forget_purged
    from worker.purge import purge

    purge(settings, storage, settings.retention_days)
    forget_purged(storage)


def start_recheck(settings: Settings, storage: Storage | None = None,
                  older_than_h: float | None = None) -> str | None:
    """Select and store a re-check batch and, with a broker, enqueue it (no waiting).

    What the Celery task fired by beat does (after the retention purge, when
    ``RETENTION_DAYS`` is set); returns the batch id, or None if nobody is due.
    """
    from worker.service import open_storage

    storage = storage or open_storage(settings)
    _purge_if_configured(settings, storage)
    hours = settings.recheck_older_than_h if older_than_h is None else older_than_h
    batch_id = create_recheck_batch(settings, storage,
                                    select_for_recheck(storage, settings, hours))
    if batch_id is not None and not settings.embedded:
        from worker.dispatch import enqueue_batch

        enqueue_batch(settings, storage, batch_id)
    return batch_id


def run_recheck(settings: Settings, storage: Storage | None = None,
                older_than_h: float | None = None, *, progress: Any = None) -> str | None:
    """Select, store and run a re-check to completion (embedded pool or Celery workers).

    What the embedded scheduler loop does (after the retention purge, when ``RETENTION_DAYS``
    is set). The engine writes the report and sends the change notifications when the last
    check ends.
    """
    from worker.commands import execute_batch
    from worker.service import open_storage

    storage = storage or open_storage(settings)
    _purge_if_configured(settings, storage)
    hours = settings.recheck_older_than_h if older_than_h is None else older_than_h
    batch_id = create_recheck_batch(settings, storage,
                                    select_for_recheck(storage, settings, hours))
    if batch_id is not None:
        execute_batch(settings, storage, batch_id, progress=progress)
    return batch_id


# --- people -----------------------------------------------------------------------------------


def _normalise(curps: list[str]) -> list[str]:
    return list(dict.fromkeys(c.strip().upper() for c in curps if c.strip()))


def set_people_active(storage: Storage, curps: list[str], active: bool) -> tuple[int, list[str]]:
    """(Re)activate or deactivate people; returns (how many changed, CURPs never checked).

    Deactivated people (they left the onboarding pipeline) keep their history but are no
    longer re-checked. Shared by ``constancias people`` and the web page.
    """
    wanted = _normalise(curps)
    with storage.session() as s:
        known = set(s.scalars(select(Person.curp).where(Person.curp.in_(wanted))))
    unknown = [c for c in wanted if c not in known]
    changed = storage.set_active([c for c in wanted if c in known], active) if known else 0
    log.info("people_active_set", active=active, changed=changed, unknown=len(unknown))
    return changed, unknown


def people_overview(storage: Storage, curps: list[str] | None = None) -> list[dict[str, Any]]:
    """Everyone checked (or only ``curps``): active flag and latest result per portal."""
    wanted = set(_normalise(curps)) if curps else None
    people = [p for p in storage.people() if wanted is None or p.curp in wanted]
    latest = _latest_results(storage, [p.curp for p in people]) if people else {}
    out = []
    for p in people:
        per = latest.get(p.curp, {})
        out.append({
            "curp": p.curp,
            "active": bool(p.active),
            "first_seen": p.first_seen.isoformat(),
            "changed_at": p.changed_at.isoformat(),
            "last_batch_id": p.last_batch_id,
            "latest": {
                portal: {"status": c.status,
                         "checked_at": c.finished_at.isoformat() if c.finished_at else None,
                         "batch_id": c.batch_id}
                for portal, c in sorted(per.items())
            },
        })
    return out


# --- commands -------------------------------------------------------------------------------


def _empty_status() -> dict[str, Any]:
    """``status --json`` shape for "nobody was due": nothing ran, nothing pending."""
    return {"batch_id": None, "state": "done", "total": 0, "done": 0, "by_status": {},
            "report": None, "results": [], "kind": "recheck"}


def cmd_recheck(args: Any) -> int:
    """``constancias recheck [--older-than HOURS] [--json]``: re-check now and wait."""
    from worker.commands import _settings, _TerminalProgress, print_summary
    from worker.service import batch_status, open_storage

    settings = _settings()
    storage = open_storage(settings)
    hours = settings.recheck_older_than_h if args.older_than is None else args.older_than
    if hours < 0:
        raise UserError("--older-than debe ser un número de horas mayor o igual a cero.")
    curps = select_for_recheck(storage, settings, hours)
    batch_id = create_recheck_batch(settings, storage, curps)
    if batch_id is None:
        if args.json:
            print(json.dumps(_empty_status(), ensure_ascii=False))
        else:
            print(f"Nadie que revisar: ninguna persona activa tiene resultados de más de "
                  f"{hours:g} h ni pendientes de reintento.")
        return 0
    if not args.json:
        print(f"Revisión {batch_id}: {len(curps)} persona(s) activas.", file=sys.stderr)
    progress = _TerminalProgress(sys.stderr.isatty() and not args.json)
    from worker.commands import execute_batch

    try:
        execute_batch(settings, storage, batch_id, progress=progress)
    finally:
        progress.close()
    status = batch_status(storage, batch_id)
    assert status is not None
    if args.json:
        print(json.dumps(status, ensure_ascii=False, default=str))
    else:
        print_summary(status)
    return 0


def cmd_people(args: Any) -> int:
    """``constancias people {list,deactivate,activate} [CURPS...] [--json]``."""
    from worker.cli import PEOPLE_ACTIONS
    from worker.commands import _settings
    from worker.service import existing_storage, open_storage

    settings = _settings()
    if args.action == "list":
        # Listing only reads: no database yet means nobody, not a new empty one.
        storage = existing_storage(settings)
        people = people_overview(storage, args.curps or None) if storage is not None else []
        if args.json:
            print(json.dumps(people, ensure_ascii=False))
            return 0
        if not people:
            print("No hay personas registradas.")
            return 0
        for p in people:
            state = "activa" if p["active"] else "inactiva"
            latest = ", ".join(f"{portal.upper()}: {label_of(r['status'])}"
                               for portal, r in p["latest"].items()) or "sin resultados"
            print(f"{p['curp']}  {state:<8}  {latest}")
        return 0
    if not args.curps:
        raise UserError("Indique al menos una CURP, p. ej. «constancias personas "
                        f"{PEOPLE_ACTIONS[args.action][0]} CURP1 CURP2».")
    storage = open_storage(settings)
    active = args.action == "activate"
    changed, unknown = set_people_active(storage, args.curps, active)
    if args.json:
        print(json.dumps({"action": args.action, "changed": changed, "unknown": unknown},
                         ensure_ascii=False))
        return 0
    verb = "Activadas" if active else "Desactivadas"
    print(f"{verb}: {changed} persona(s).")
    for curp in unknown:
        print(f"  {curp}: nunca se ha consultado; no se cambió.", file=sys.stderr)
    return 0
