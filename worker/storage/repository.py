"""The repository: every query of constancias, on the tables of ``worker/storage/models.py``.

SQLite by default, PostgreSQL through ``CONSTANCIAS_DATABASE_URL``; schema managed by Alembic
(``worker/storage/migrations``). Writes that decide who does something (recording a result,
producing the report) are compare-and-set ``UPDATE … WHERE`` statements, so that a task
delivered twice, or two workers racing, change nothing the second time.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from sqlalchemy import (
    case,
    create_engine,
    delete,
    event,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.engine import CursorResult, Engine, Result, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, configure_mappers, sessionmaker
from sqlalchemy.pool import NullPool

from worker.storage.files import remove_batch_files
from worker.storage.models import (
    WAITING_STAGES,
    Base,
    Batch,
    Check,
    MailWait,
    Notification,
    Person,
    Row,
    WebSession,
    utcnow,
)

# The models are re-exported: callers ask the repository for both.
__all__ = ["Base", "Batch", "Row", "Person", "Check", "Notification", "WebSession", "Storage",
           "utcnow", "new_batch_id", "PURGED", "pseudonym", "changed", "Started", "Busy",
           "Skipped", "StartResult", "database_place", "database_missing", "configure_models"]


def changed(result: Result[Any]) -> int:
    """How many rows an UPDATE or DELETE changed (``Session.execute`` is typed as returning a
    plain ``Result``; for those statements it is a ``CursorResult``, which counts them)."""
    return int(cast(CursorResult[Any], result).rowcount)


def database_place(url: str) -> str:
    """Where a database URL points, without its password: ``SQLite <file>`` or
    ``<backend> host:port/name``."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return f"SQLite {parsed.database}"
    return f"{parsed.get_backend_name()} {parsed.host}:{parsed.port or ''}/{parsed.database}"


def database_missing(url: str) -> bool:
    """A SQLite URL whose file does not exist yet (opening it would create it)."""
    parsed = make_url(url)
    return parsed.get_backend_name() == "sqlite" and (
        not parsed.database or parsed.database == ":memory:"
        or not Path(parsed.database).is_file())


def configure_models() -> None:
    """Configure the ORM's mappers now, in this thread (SQLAlchemy does it on first use, under a
    lock that a process forked meanwhile would inherit held)."""
    configure_mappers()


def new_batch_id() -> str:
    return uuid.uuid4().hex[:12]


#: What a purged batch keeps in place of personal text (worker/services/purge.py).
PURGED = "[purgado]"


def pseudonym(curp: str) -> str:
    """A stable, non-reversible stand-in for a CURP (18 characters, never a valid CURP)."""
    return "#" + hashlib.sha256(curp.encode()).hexdigest()[:17].upper()


@dataclass(frozen=True)
class Started:
    """``start_check``: this caller runs the check now."""

    check: Check
    batch: Batch


@dataclass(frozen=True)
class Busy:
    """``start_check``: another caller holds the check's lease; come back in ``retry_in`` s."""

    retry_in: float


@dataclass(frozen=True)
class Skipped:
    """``start_check``: nothing to do (a status is recorded, or this attempt already ran)."""


StartResult = Started | Busy | Skipped


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # WAL lets the web page and several worker processes read while one writes.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def _chunks(ids: list[int], size: int = 500) -> Iterator[list[int]]:
    """Id lists small enough for one ``IN (…)`` (SQLite caps bound parameters)."""
    for i in range(0, len(ids), size):
        yield ids[i:i + size]


class _ForkGuard:
    """No SQLite connection is open in this process when it forks.

    SQLite keeps per-process lock state for every open database file, and a forked child
    shares it: a child forked while another thread of its parent had the database open (the
    Celery worker's sweeper or mailbox watcher, as Celery replaces a pool process that died)
    then gets "database is locked" or "disk I/O error" from every connection it opens, for
    good (https://www.sqlite.org/howtocorrupt.html, section 2.6). So opening a SQLite
    connection waits while a fork is under way, and a fork waits, at most ``WAIT_S``, until
    the connections open in this process are closed (SQLite's are never pooled: NullPool)."""

    WAIT_S = 10.0

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._open = 0
        self._forking = False

    def opening(self) -> None:
        with self._cond:
            self._cond.wait_for(lambda: not self._forking)
            self._open += 1

    def closed(self) -> None:
        with self._cond:
            self._open = max(0, self._open - 1)
            self._cond.notify_all()

    def before_fork(self) -> None:
        with self._cond:
            self._forking = True
            # (a fork from a thread that has a connection open itself goes ahead after WAIT_S)
            self._cond.wait_for(lambda: self._open == 0, timeout=self.WAIT_S)

    def after_fork_in_parent(self) -> None:
        with self._cond:
            self._forking = False
            self._cond.notify_all()


_fork_guard = _ForkGuard()


class _CountedConnection(sqlite3.Connection):
    """A SQLite connection the fork guard counts until it is really closed (SQLAlchemy's
    pool ``close`` event comes just before the close: too early for a fork to go ahead)."""

    _counted = False

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._uncount()

    def __del__(self) -> None:
        self._uncount()

    def _uncount(self) -> None:
        if self._counted:
            self._counted = False
            _fork_guard.closed()


def _sqlite_connect(dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
    _fork_guard.opening()
    try:
        conn = dialect.connect(*cargs, **{**cparams, "factory": _CountedConnection})
    except BaseException:
        _fork_guard.closed()
        raise
    conn._counted = True
    return conn


def _after_fork_in_child() -> None:
    """A forked process (a Celery pool process) must not use its parent's pooled connections:
    drop them without closing the parent's sockets (SQLAlchemy's multiprocessing recipe)."""
    global _engines_lock, _fork_guard
    _engines_lock = threading.Lock()
    _fork_guard = _ForkGuard()
    for engine in _engines.values():
        engine.dispose(close=False)


os.register_at_fork(before=lambda: _fork_guard.before_fork(),
                    after_in_parent=lambda: _fork_guard.after_fork_in_parent(),
                    after_in_child=_after_fork_in_child)


class Storage:
    """A database handle; cheap to create, one engine per URL and process."""

    def __init__(self, url: str) -> None:
        self.url = url
        with _engines_lock:
            engine = _engines.get(url)
            if engine is None:
                if url.startswith("sqlite"):
                    path = url.split("///", 1)[-1]
                    if path and path != ":memory:":
                        Path(path).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                    engine = create_engine(url, poolclass=NullPool)
                    event.listen(engine, "do_connect", _sqlite_connect)
                    event.listen(engine, "connect", _sqlite_pragmas)
                else:
                    engine = create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)
                _engines[url] = engine
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    # --- schema -------------------------------------------------------------------------
    def migrate(self) -> None:
        """Bring the schema to the latest Alembic revision (idempotent)."""
        # Imported here: Alembic is needed only by the processes that migrate.
        from worker.storage.migrate import upgrade

        upgrade(self.engine)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions() as s, s.begin():
            yield s

    # --- batches ------------------------------------------------------------------------
    def create_batch(
        self,
        *,
        key: str,
        source_name: str,
        portals: list[str],
        columns: list[str],
        out_dir: Path,
        rows: list[dict[str, Any]],
        kind: str = "upload",
        batch_id: str | None = None,
    ) -> str:
        """Store a batch, its rows and one pending check per (valid distinct CURP, portal)."""
        batch_id = batch_id or new_batch_id()
        now = utcnow()
        with self.session() as s:
            s.add(Batch(id=batch_id, key=key, kind=kind, source_name=source_name,
                        portals=list(portals), columns=list(columns), out_dir=str(out_dir),
                        state="queued", created_at=now))
            s.flush()
            curps: list[str] = []
            for r in rows:
                s.add(Row(batch_id=batch_id, **r))
                if r.get("curp") and r.get("duplicate_of") is None and r["curp"] not in curps:
                    curps.append(r["curp"])
            for curp in curps:
                person = s.get(Person, curp)
                if person is None:
                    s.add(Person(curp=curp, active=True, first_seen=now, changed_at=now,
                                 last_batch_id=batch_id))
                else:
                    person.last_batch_id = batch_id
                for portal in portals:
                    s.add(Check(batch_id=batch_id, curp=curp, portal=portal, queued_at=now))
        return batch_id

    def find_resumable(self, key: str) -> Batch | None:
        """The latest unfinished batch of the same sheet and portals, if any."""
        with self.session() as s:
            return s.scalars(
                select(Batch).where(Batch.key == key, Batch.state != "done")
                .order_by(Batch.created_at.desc()).limit(1)
            ).first()

    def get_batch(self, batch_id: str) -> Batch | None:
        with self.session() as s:
            return s.get(Batch, batch_id)

    def list_batches(self, limit: int = 100) -> list[Batch]:
        with self.session() as s:
            return list(s.scalars(select(Batch).order_by(Batch.created_at.desc()).limit(limit)))

    def rows(self, batch_id: str) -> list[Row]:
        with self.session() as s:
            return list(s.scalars(select(Row).where(Row.batch_id == batch_id)
                                  .order_by(Row.row_number)))

    def checks(self, batch_id: str) -> list[Check]:
        with self.session() as s:
            return list(s.scalars(select(Check).where(Check.batch_id == batch_id)
                                  .order_by(Check.id)))

    def pending_check_ids(self, batch_id: str,
                          order: Mapping[str, int] | None = None) -> list[tuple[int, str]]:
        """(check id, portal) of the checks of a batch that have no status yet."""
        return self._pending(batch_id, Check.portal, order)

    def _pending(self, batch_id: str, column: Any,
                 order: Mapping[str, int] | None) -> list[tuple[int, Any]]:
        """(check id, ``column``) of a batch's checks without a status, in the order to run
        them: by portal as ``order`` ranks them (the registry's run order: longest checks
        first; per-portal limits still apply, a slot one portal may not take goes to the
        next check of another), then in sheet order."""
        by_portal = [case(dict(order), value=Check.portal, else_=len(order))] if order else []
        with self.session() as s:
            return [(i, v) for i, v in s.execute(
                select(Check.id, column).where(Check.batch_id == batch_id,
                                               Check.status.is_(None))
                .order_by(*by_portal, Check.id))]

    def progress(self, batch_id: str) -> dict[str, dict[str, int]]:
        """Per portal: total, done (checks with a status) and waiting (IMSS checks waiting
        for their email, worker/storage/waiting.py)."""
        out: dict[str, dict[str, int]] = {}
        with self.session() as s:
            for portal, total, done in s.execute(
                select(Check.portal, func.count(), func.count(Check.status))
                .where(Check.batch_id == batch_id).group_by(Check.portal)
            ):
                out[portal] = {"total": int(total), "done": int(done), "waiting": 0}
            for portal, waiting in s.execute(
                select(Check.portal, func.count())
                .join(MailWait, MailWait.check_id == Check.id)
                .where(MailWait.batch_id == batch_id, MailWait.stage.in_(WAITING_STAGES),
                       Check.status.is_(None))
                .group_by(Check.portal)
            ):
                if portal in out:
                    out[portal]["waiting"] = int(waiting)
        return out

    # --- checks -------------------------------------------------------------------------
    def get_check(self, check_id: int) -> Check | None:
        with self.session() as s:
            return s.get(Check, check_id)

    def start_check(self, check_id: int, task_id: str | None, lease_s: float | None = None,
                    attempt: int | None = None) -> StartResult:
        """Mark a delivery of a check: ``Started`` with the check and its batch, or ``Skipped``
        if there is nothing to do — it already has a status, or (with ``attempt``) it has
        already run that attempt: this delivery is a stale copy (a task sent again while the
        first was only late), whose run would spend a portal query for nothing.

        With ``lease_s``, the check is also leased to this caller; while another caller's lease
        runs, ``Busy`` says how long is left on it (come back then). Without (the embedded
        engine), the check stops being a broker task (``due_at`` cleared).
        """
        now = utcnow()
        with self.session() as s:
            stmt = update(Check).where(Check.id == check_id, Check.status.is_(None))
            values: dict[str, Any] = {"deliveries": Check.deliveries + 1, "task_id": task_id,
                                      "started_at": func.coalesce(Check.started_at, now)}
            if attempt is not None:
                stmt = stmt.where(Check.attempts <= attempt)
            if lease_s is not None:
                stmt = stmt.where(or_(Check.lease_until.is_(None), Check.lease_until < now))
                values["lease_until"] = now + timedelta(seconds=lease_s)
            else:
                values["due_at"] = None
            res = s.execute(stmt.values(**values))
            if changed(res) != 1:
                current = s.get(Check, check_id)
                if current is None or current.status is not None or current.lease_until is None:
                    return Skipped()
                if attempt is not None and current.attempts > attempt:
                    return Skipped()
                return Busy(max(0.5, (current.lease_until - now).total_seconds()))
            check = s.get(Check, check_id)
            batch = s.get(Batch, check.batch_id) if check else None
            if check is None or batch is None:
                return Skipped()
            if batch.state == "queued":
                batch.state = "running"
            return Started(check, batch)

    def renew_lease(self, check_id: int, task_id: str | None, lease_s: float) -> bool:
        """Extend this caller's lease on a running check (the heartbeat); ``False`` when the
        check has a status or another caller holds it now."""
        with self.session() as s:
            res = s.execute(update(Check).where(
                Check.id == check_id, Check.status.is_(None), Check.task_id == task_id,
                Check.lease_until.is_not(None),
            ).values(lease_until=utcnow() + timedelta(seconds=lease_s)))
            return changed(res) == 1

    def set_due(self, check_ids: list[int], in_s: float = 0.0) -> None:
        """The broker task of these checks is due in ``in_s`` seconds (sent now, or retried)."""
        due = utcnow() + timedelta(seconds=in_s)
        with self.session() as s:
            for chunk in _chunks(check_ids):
                s.execute(update(Check).where(Check.id.in_(chunk), Check.status.is_(None))
                          .values(due_at=due))

    def orphans(self, *, grace_s: float, queue_empty: bool, lease_margin_s: float = 0.0,
                limit: int = 1000) -> list[tuple[int, int]]:
        """``(check id, attempts)`` of broker checks nobody will run: a lease that ran out
        (its worker died mid-check: the heartbeat stopped), or — only when the broker's queue
        is empty, so it cannot be waiting there — a task overdue by ``grace_s`` with no lease
        (its worker died holding it for a retry, or Redis lost it). Embedded checks never have
        ``due_at`` and are never orphans. A lease counts as run out ``lease_margin_s`` after
        its end (clocks of different machines, a renewal delayed by a slow database)."""
        now = utcnow()
        running = (Check.lease_until.is_not(None)
                   & (Check.lease_until < now - timedelta(seconds=lease_margin_s)))
        condition = running
        if queue_empty:
            overdue = (Check.due_at.is_not(None) & (Check.due_at < now - timedelta(seconds=grace_s))
                       & (Check.lease_until.is_(None) | (Check.lease_until < now)))
            condition = running | overdue
        with self.session() as s:
            return [(i, a) for i, a in s.execute(
                select(Check.id, Check.attempts).join(Batch, Batch.id == Check.batch_id)
                .where(Check.status.is_(None), Batch.state != "done", condition)
                .order_by(Check.id).limit(limit))]

    def requeue(self, check_ids: list[int]) -> list[int]:
        """Before the sweeper sends these again: drop their run-out leases and make them due
        now. Returns those still to send (not recorded or leased again meanwhile)."""
        now = utcnow()
        taken: list[int] = []
        with self.session() as s:
            for check_id in check_ids:
                res = s.execute(update(Check).where(
                    Check.id == check_id, Check.status.is_(None),
                    Check.lease_until.is_(None) | (Check.lease_until < now),
                ).values(lease_until=None, due_at=now))
                if changed(res) == 1:
                    taken.append(check_id)
        return taken

    def pending_attempts(self, batch_id: str,
                         order: Mapping[str, int] | None = None) -> list[tuple[int, int]]:
        """``(check id, attempts)`` of a batch's checks without a status: what to send."""
        return self._pending(batch_id, Check.attempts, order)

    def note_attempt(self, check_id: int, error: str, due_in: float | None = None) -> None:
        """An attempt failed and will be retried; with ``due_in`` (distributed mode) its retry
        is due then — in the same write that drops the lease, so the sweeper never sees the
        check unleased and overdue in between."""
        values: dict[str, Any] = {"attempts": Check.attempts + 1, "last_error": error[:2000],
                                  "lease_until": None}
        if due_in is not None:
            values["due_at"] = utcnow() + timedelta(seconds=due_in)
        with self.session() as s:
            s.execute(update(Check).where(Check.id == check_id, Check.status.is_(None))
                      .values(**values))

    def record_result(
        self,
        check_id: int,
        *,
        status: str,
        detail: str,
        pdf_path: Path | None = None,
        pdf_sha256: str | None = None,
        facts: dict[str, Any] | None = None,
        evidence_path: Path | None = None,
        timings: dict[str, Any] | None = None,
        valid_until: date | None = None,
        reused_from: int | None = None,
        count_attempt: bool = True,
    ) -> bool:
        """Record the status of a check once; a second call (a redelivered task) is a no-op."""
        sha = pdf_sha256
        if sha is None and pdf_path is not None:
            sha = hashlib.sha256(pdf_path.read_bytes()).hexdigest()
        now = utcnow()
        with self.session() as s:
            check = s.get(Check, check_id)
            started = check.started_at if check else None
            res = s.execute(
                update(Check).where(Check.id == check_id, Check.status.is_(None)).values(
                    status=status, detail=detail[:4000],
                    pdf_path=str(pdf_path) if pdf_path else None, pdf_sha256=sha,
                    facts=facts, evidence_path=str(evidence_path) if evidence_path else None,
                    timings=timings, valid_until=valid_until, reused_from=reused_from,
                    attempts=Check.attempts + (1 if count_attempt else 0),
                    finished_at=now, lease_until=None,
                    duration_s=(now - started).total_seconds() if started else None,
                )
            )
            return changed(res) == 1

    def reusable_result(self, curp: str, portal: str, since: datetime,
                        statuses: frozenset[str]) -> Check | None:
        """The latest result for this CURP and portal since ``since`` with one of ``statuses``."""
        with self.session() as s:
            return s.scalars(
                select(Check).where(
                    Check.curp == curp, Check.portal == portal, Check.status.in_(statuses),
                    Check.finished_at >= since, Check.reused_from.is_(None),
                ).order_by(Check.finished_at.desc()).limit(1)
            ).first()

    def history(self, curp: str, portal: str | None = None) -> list[Check]:
        with self.session() as s:
            stmt = select(Check).where(Check.curp == curp, Check.status.is_not(None))
            if portal:
                stmt = stmt.where(Check.portal == portal)
            return list(s.scalars(stmt.order_by(Check.finished_at, Check.id)))

    def previous_result(self, curp: str, portal: str, before_check_id: int) -> Check | None:
        """The latest result of this CURP and portal recorded before a given check."""
        with self.session() as s:
            return s.scalars(
                select(Check).where(Check.curp == curp, Check.portal == portal,
                                    Check.status.is_not(None), Check.id < before_check_id)
                .order_by(Check.id.desc()).limit(1)
            ).first()

    # --- completion ---------------------------------------------------------------------
    def claim_report(self, batch_id: str) -> bool:
        """True for exactly one caller, once every check of the batch has a status."""
        with self.session() as s:
            pending = s.scalar(select(func.count()).select_from(Check).where(
                Check.batch_id == batch_id, Check.status.is_(None)))
            if pending:
                return False
            res = s.execute(update(Batch).where(Batch.id == batch_id,
                                                Batch.state.in_(("queued", "running")))
                            .values(state="reporting", reporting_since=utcnow()))
            return changed(res) == 1

    def finish_batch(self, batch_id: str, report_path: Path | None) -> None:
        with self.session() as s:
            s.execute(update(Batch).where(Batch.id == batch_id).values(
                state="done", report_path=str(report_path) if report_path else None,
                finished_at=utcnow()))

    def unreported_complete_batches(self) -> list[str]:
        """Batches whose checks all have a status but whose report nobody claimed (the worker
        that recorded the last one died before it could)."""
        pending = (select(Check.id).where(Check.batch_id == Batch.id, Check.status.is_(None))
                   .exists())
        with self.session() as s:
            return list(s.scalars(select(Batch.id).where(
                Batch.state.in_(("queued", "running")), ~pending)))

    def reclaim_report(self, batch_id: str) -> bool:
        """An unfinished report claim of this batch goes back to ``running`` (the embedded
        engine, the batch's only runner, resuming after its writer was killed)."""
        with self.session() as s:
            return changed(s.execute(
                update(Batch).where(Batch.id == batch_id, Batch.state == "reporting")
                .values(state="running", reporting_since=None))) == 1

    def reclaim_stale_reports(self, older_than_s: float) -> list[str]:
        """Batches whose report claim is older than any task may last (the process writing it
        died): back to ``running``, so that the next claim writes it. Their ids."""
        cutoff = utcnow() - timedelta(seconds=older_than_s)
        with self.session() as s:
            stale = list(s.scalars(select(Batch.id).where(Batch.state == "reporting",
                                                          Batch.reporting_since < cutoff)))
            return [batch_id for batch_id in stale if changed(s.execute(
                update(Batch).where(Batch.id == batch_id, Batch.state == "reporting",
                                    Batch.reporting_since < cutoff)
                .values(state="running", reporting_since=None))) == 1]

    # --- change notifications (worker/engine/notify.py) -------------------------------------
    def claim_notification(self, batch_id: str, curp: str, portal: str, before: str | None,
                           after: str, recipients: str) -> int | None:
        """Insert a change's row: its id if this caller claimed it, None if already claimed
        (unique per batch × CURP × portal)."""
        try:
            with self.session() as s:
                row = Notification(batch_id=batch_id, curp=curp, portal=portal, before=before,
                                   after=after, recipients=recipients, claimed_at=utcnow())
                s.add(row)
                s.flush()
                return row.id
        except IntegrityError:
            return None

    def release_notification(self, notification_id: int) -> None:
        """A send failed: drop the claim, so that the next call retries it."""
        with self.session() as s:
            s.execute(delete(Notification).where(Notification.id == notification_id))

    def notification_sent(self, notification_id: int) -> None:
        with self.session() as s:
            s.execute(update(Notification).where(Notification.id == notification_id)
                      .values(sent_at=utcnow()))

    def forget_purged_notifications(self) -> int:
        """Notifications of purged batches keep a pseudonym instead of the CURP, and no
        recipients. Returns how many rows changed."""
        with self.session() as s:
            rows = list(s.scalars(
                select(Notification).join(Batch, Batch.id == Notification.batch_id)
                .where(Batch.source_name == PURGED, Notification.curp.not_like("#%"))
            ))
            for row in rows:
                row.curp = pseudonym(row.curp)
                row.recipients = ""
        return len(rows)

    # --- retention (worker/services/purge.py) --------------------------------------------
    def purge_batches(self, cutoff: datetime) -> dict[str, int]:
        """Batches created before ``cutoff`` lose their recorded files and personal fields
        (checks keep portal, status and dates under a pseudonym); people in no batch since the
        cutoff are forgotten. Counts of ``batches``, ``files`` and ``people``."""
        counts = {"batches": 0, "files": 0, "people": 0}
        with self.session() as s:
            batches = list(s.scalars(select(Batch).where(Batch.created_at < cutoff,
                                                         Batch.source_name != PURGED)))
            for batch in batches:
                checks = list(s.scalars(select(Check).where(Check.batch_id == batch.id)))
                counts["files"] += remove_batch_files(batch, checks)
                s.execute(update(Row).where(Row.batch_id == batch.id).values(
                    value=PURGED, curp=None, reason=PURGED, extra={}))
                for check in checks:
                    if not check.curp.startswith("#"):
                        check.curp = pseudonym(check.curp)
                    check.pdf_path = check.evidence_path = None
                    check.facts = None
                    check.detail = ""
                    check.last_error = None
                batch.source_name = PURGED
                batch.report_path = None
                batch.columns = []
                counts["batches"] += 1
            # Whoever appears in no batch newer than the cutoff is forgotten.
            recent = select(Row.curp).join(Batch, Row.batch_id == Batch.id).where(
                Batch.created_at >= cutoff, Row.curp.is_not(None))
            counts["people"] = changed(s.execute(delete(Person)
                                                 .where(Person.curp.not_in(recent))))
        return counts

    # --- people -------------------------------------------------------------------------
    def latest_results(self, curps: list[str] | None = None) -> dict[str, dict[str, Check]]:
        """CURP -> portal -> latest check with a status (the order ``previous_result`` uses),
        for everyone or only ``curps``."""
        with self.session() as s:
            latest = (select(func.max(Check.id).label("id")).where(Check.status.is_not(None))
                      .group_by(Check.curp, Check.portal))
            if curps is not None:
                latest = latest.where(Check.curp.in_(curps))
            out: dict[str, dict[str, Check]] = {}
            for check in s.scalars(select(Check).where(Check.id.in_(latest.scalar_subquery()))):
                out.setdefault(check.curp, {})[check.portal] = check
            return out

    def busy_curps(self, since: datetime) -> set[str]:
        """People with a check in flight: pending, in an unfinished batch created since."""
        with self.session() as s:
            return set(s.scalars(
                select(Check.curp).join(Batch, Batch.id == Check.batch_id)
                .where(Check.status.is_(None), Batch.state != "done", Batch.created_at >= since)
                .distinct()
            ))

    def active_curps(self) -> list[str]:
        """Active people (re-checked nightly), in the order they were first seen."""
        with self.session() as s:
            return list(s.scalars(select(Person.curp).where(Person.active.is_(True))
                                  .order_by(Person.first_seen, Person.curp)))

    def known_curps(self, curps: list[str]) -> set[str]:
        """Which of ``curps`` have ever been checked."""
        with self.session() as s:
            return set(s.scalars(select(Person.curp).where(Person.curp.in_(curps))))

    def latest_rows(self, curps: list[str]) -> tuple[dict[str, Row], list[str]]:
        """Each CURP's latest input row (for its other columns) and the union of those
        columns, in the order the batches listed them."""
        rows: dict[str, Row] = {}
        columns: list[str] = []
        with self.session() as s:
            found = s.execute(
                select(Row, Batch.columns).join(Batch, Batch.id == Row.batch_id)
                .where(Row.curp.in_(curps), Row.duplicate_of.is_(None))
                .order_by(Batch.created_at.desc(), Row.id.desc())
            )
            for row, batch_columns in found:
                if row.curp is None or row.curp in rows:
                    continue
                rows[row.curp] = row
                for col in batch_columns or []:
                    if col not in columns and col in (row.extra or {}):
                        columns.append(col)
        return rows, columns

    def set_active(self, curps: list[str], active: bool) -> int:
        with self.session() as s:
            return changed(s.execute(update(Person).where(Person.curp.in_(curps))
                                     .values(active=active, changed_at=utcnow())))

    def people(self) -> list[Person]:
        with self.session() as s:
            return list(s.scalars(select(Person).order_by(Person.curp)))

    # --- web sessions -------------------------------------------------------------------
    def create_web_session(self, token_hash: str, user_id: int | None = None) -> None:
        with self.session() as s:
            s.add(WebSession(token_hash=token_hash, user_id=user_id))

    def touch_web_session(self, token_hash: str, *, idle_s: float, max_age_s: float,
                          refresh_after_s: float = 30.0) -> WebSession | None:
        """The live session with this token, or ``None`` (unknown, idle too long, too old;
        an expired one is deleted). Its last use is written at most every ``refresh_after_s``:
        a page polling its progress must not turn every read into a write."""
        now = utcnow()
        with self.session() as s:
            row = s.get(WebSession, token_hash)
            if row is None:
                return None
            if (now - row.last_seen_at > timedelta(seconds=idle_s)
                    or now - row.created_at > timedelta(seconds=max_age_s)):
                s.delete(row)
                return None
            if now - row.last_seen_at > timedelta(seconds=refresh_after_s):
                row.last_seen_at = now
            return row

    def end_web_session(self, token_hash: str) -> bool:
        with self.session() as s:
            return changed(s.execute(delete(WebSession)
                                     .where(WebSession.token_hash == token_hash))) == 1

    def end_idle_web_sessions(self, *, idle_s: float, max_age_s: float) -> int:
        """Delete sessions past their idle timeout or their maximum age."""
        now = utcnow()
        with self.session() as s:
            return changed(s.execute(delete(WebSession).where(or_(
                WebSession.last_seen_at < now - timedelta(seconds=idle_s),
                WebSession.created_at < now - timedelta(seconds=max_age_s)))))
