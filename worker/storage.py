"""Storage (SQLAlchemy 2): batches, their input rows, people, and checks with history.

SQLite by default, PostgreSQL through ``CONSTANCIAS_DATABASE_URL``; schema managed by Alembic
(``worker/migrations``). Writes that decide who does something (recording a result, producing
the report) are compare-and-set ``UPDATE … WHERE`` statements, so that a task delivered twice,
or two workers racing, change nothing the second time.
"""

from __future__ import annotations

import hashlib
import os
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    case,
    create_engine,
    delete,
    event,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.pool import NullPool
from sqlalchemy.types import TypeDecorator

__all__ = ["Base", "Batch", "Row", "Person", "Check", "Notification", "WebSession", "Storage",
           "utcnow", "new_batch_id"]


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_batch_id() -> str:
    return uuid.uuid4().hex[:12]


#: The order a batch's checks are started in. An IMSS check takes two to three times an
#: ISSSTE one (captcha rounds, two emails, a download): started first, the long checks overlap
#: the short ones, and the end of a batch is short checks filling the workers, not a few long
#: ones with the other workers idle (longest-first scheduling). Per-portal limits still apply:
#: a slot IMSS may not take goes to the next ISSSTE check.
RUN_ORDER = {"imss": 0, "issste": 1}


class _UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on SQLite too (it stores naive text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC)
            if dialect.name == "sqlite":
                value = value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    type_annotation_map = {datetime: _UTCDateTime, dict[str, Any]: JSON, list[Any]: JSON}


class Batch(Base):
    __tablename__ = "batches"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    key: Mapped[str] = mapped_column(String(64), index=True)
    """Hash of the input file and portals: the same sheet started again resumes its batch."""
    kind: Mapped[str] = mapped_column(String(16), default="upload")  # upload | recheck
    source_name: Mapped[str] = mapped_column(String(255))
    portals: Mapped[list[Any]] = mapped_column(JSON)
    columns: Mapped[list[Any]] = mapped_column(JSON, default=list)
    out_dir: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default="queued")  # queued|running|reporting|done
    report_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    reporting_since: Mapped[datetime | None] = mapped_column(nullable=True)
    """When the report was claimed: a claim far older than a task may last is a dead writer's."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(nullable=True)


class Row(Base):
    """One non-empty data row of the input sheet, with its other columns."""

    __tablename__ = "rows"
    __table_args__ = (UniqueConstraint("batch_id", "row_number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    batch_id: Mapped[str] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"), index=True)
    row_number: Mapped[int] = mapped_column(Integer)
    value: Mapped[str] = mapped_column(Text, default="")
    curp: Mapped[str | None] = mapped_column(String(18), nullable=True, index=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    duplicate_of: Mapped[int | None] = mapped_column(Integer, nullable=True)
    extra: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Person(Base):
    """Everyone who has been checked; ``active`` people are re-checked nightly."""

    __tablename__ = "people"

    curp: Mapped[str] = mapped_column(String(18), primary_key=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    first_seen: Mapped[datetime] = mapped_column(default=utcnow)
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_batch_id: Mapped[str | None] = mapped_column(String(32), nullable=True)


class Check(Base):
    """One (batch, CURP, portal) check. Rows are never overwritten across batches: history."""

    __tablename__ = "checks"
    __table_args__ = (
        UniqueConstraint("batch_id", "curp", "portal"),
        Index("ix_checks_curp_portal_finished", "curp", "portal", "finished_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    batch_id: Mapped[str] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"), index=True)
    curp: Mapped[str] = mapped_column(String(18))
    portal: Mapped[str] = mapped_column(String(16))
    status: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    detail: Mapped[str] = mapped_column(Text, default="")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    """Runs of the flow (retries of transient failures included)."""
    deliveries: Mapped[int] = mapped_column(Integer, default=0)
    """Times a worker started this check (redeliveries after a crash included)."""
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    pdf_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    pdf_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    facts: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    evidence_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    timings: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    task_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    reused_from: Mapped[int | None] = mapped_column(Integer, nullable=True)
    valid_until: Mapped[date | None] = mapped_column(Date, nullable=True)
    duration_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    queued_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(nullable=True)
    """While a worker runs the check (distributed mode): a redelivered copy of the task waits
    instead of running the flow a second time alongside it. Renewed while the flow runs."""
    due_at: Mapped[datetime | None] = mapped_column(nullable=True)
    """Distributed mode: when the broker task of this check is next due (sent, or a retry's
    countdown). Past due, not leased and not in the queue: nobody will run it (the sweeper)."""


class Notification(Base):
    """A change notification e-mailed to HR (worker/notify.py): one row per change, claimed
    before sending, so a report rebuilt or a batch finished twice never sends it again."""

    __tablename__ = "notifications"
    __table_args__ = (UniqueConstraint("batch_id", "curp", "portal"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    batch_id: Mapped[str] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"), index=True)
    curp: Mapped[str] = mapped_column(String(18))
    portal: Mapped[str] = mapped_column(String(16))
    before: Mapped[str | None] = mapped_column(String(32), nullable=True)
    after: Mapped[str] = mapped_column(String(32))
    recipients: Mapped[str] = mapped_column(Text, default="")
    claimed_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(nullable=True)


class WebSession(Base):
    """A log-in to the web page. The cookie holds a random token; only its SHA-256 is kept
    here, so a copy of the database opens no session. Deleting the row ends the session (log
    out, revocation), whatever copies of the cookie exist and however often the server restarts.
    """

    __tablename__ = "web_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    """Who logged in, once the page has user accounts; ``None``: the shared HR password."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


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


def _after_fork_in_child() -> None:
    """A forked process (a Celery pool process) must not use its parent's pooled connections:
    drop them without closing the parent's sockets (SQLAlchemy's multiprocessing recipe)."""
    global _engines_lock
    _engines_lock = threading.Lock()
    for engine in _engines.values():
        engine.dispose(close=False)


os.register_at_fork(after_in_child=_after_fork_in_child)


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
                    event.listen(engine, "connect", _sqlite_pragmas)
                else:
                    engine = create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)
                _engines[url] = engine
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    # --- schema -------------------------------------------------------------------------
    def migrate(self) -> None:
        """Bring the schema to the latest Alembic revision (idempotent)."""
        from worker.migrate import upgrade

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

    def set_batch_state(self, batch_id: str, state: str, *, only_from: str | None = None) -> bool:
        with self.session() as s:
            stmt = update(Batch).where(Batch.id == batch_id)
            if only_from is not None:
                stmt = stmt.where(Batch.state == only_from)
            return s.execute(stmt.values(state=state)).rowcount == 1

    def rows(self, batch_id: str) -> list[Row]:
        with self.session() as s:
            return list(s.scalars(select(Row).where(Row.batch_id == batch_id)
                                  .order_by(Row.row_number)))

    def checks(self, batch_id: str) -> list[Check]:
        with self.session() as s:
            return list(s.scalars(select(Check).where(Check.batch_id == batch_id)
                                  .order_by(Check.id)))

    def pending_check_ids(self, batch_id: str) -> list[tuple[int, str]]:
        """(check id, portal) of the checks of a batch that have no status yet."""
        return self._pending(batch_id, Check.portal)

    def _pending(self, batch_id: str, column: Any) -> list[tuple[int, Any]]:
        """(check id, ``column``) of a batch's checks without a status, in the order to run
        them: the slower portal's first (``RUN_ORDER``), then in sheet order."""
        with self.session() as s:
            return [(i, v) for i, v in s.execute(
                select(Check.id, column).where(Check.batch_id == batch_id,
                                               Check.status.is_(None))
                .order_by(case(RUN_ORDER, value=Check.portal, else_=len(RUN_ORDER)),
                          Check.id))]

    def progress(self, batch_id: str) -> dict[str, dict[str, int]]:
        """Per portal: total, done (checks with a status) and waiting (IMSS checks waiting
        for their email, worker/waiting.py)."""
        from worker.waiting import Waits

        out: dict[str, dict[str, int]] = {}
        with self.session() as s:
            for portal, total, done in s.execute(
                select(Check.portal, func.count(), func.count(Check.status))
                .where(Check.batch_id == batch_id).group_by(Check.portal)
            ):
                out[portal] = {"total": int(total), "done": int(done), "waiting": 0}
        for portal, waiting in Waits(self).waiting_by_portal(batch_id).items():
            if portal in out:
                out[portal]["waiting"] = waiting
        return out

    # --- checks -------------------------------------------------------------------------
    def get_check(self, check_id: int) -> Check | None:
        with self.session() as s:
            return s.get(Check, check_id)

    def start_check(self, check_id: int, task_id: str | None, lease_s: float | None = None,
                    attempt: int | None = None) -> tuple[Check, Batch] | None | float:
        """Mark a delivery of a check; ``None`` if there is nothing to do: it already has a
        status, or (with ``attempt``) it has already run that attempt — this delivery is a
        stale copy (a task sent again while the first was only late), whose run would spend
        a portal query for nothing.

        With ``lease_s``, the check is also leased to this caller; while another caller's lease
        runs, the seconds left on it are returned instead (come back then). Without (the
        embedded engine), the check stops being a broker task (``due_at`` cleared).
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
            if res.rowcount != 1:
                current = s.get(Check, check_id)
                if current is None or current.status is not None or current.lease_until is None:
                    return None
                if attempt is not None and current.attempts > attempt:
                    return None
                return max(0.5, (current.lease_until - now).total_seconds())
            check = s.get(Check, check_id)
            batch = s.get(Batch, check.batch_id) if check else None
            if check is None or batch is None:
                return None
            if batch.state == "queued":
                batch.state = "running"
            return check, batch

    def renew_lease(self, check_id: int, task_id: str | None, lease_s: float) -> bool:
        """Extend this caller's lease on a running check (the heartbeat); ``False`` when the
        check has a status or another caller holds it now."""
        with self.session() as s:
            res = s.execute(update(Check).where(
                Check.id == check_id, Check.status.is_(None), Check.task_id == task_id,
                Check.lease_until.is_not(None),
            ).values(lease_until=utcnow() + timedelta(seconds=lease_s)))
            return res.rowcount == 1

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
                if res.rowcount == 1:
                    taken.append(check_id)
        return taken

    def pending_attempts(self, batch_id: str) -> list[tuple[int, int]]:
        """``(check id, attempts)`` of a batch's checks without a status: what to send."""
        return self._pending(batch_id, Check.attempts)

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
            return res.rowcount == 1

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
            return res.rowcount == 1

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
            return s.execute(update(Batch).where(Batch.id == batch_id, Batch.state == "reporting")
                             .values(state="running", reporting_since=None)).rowcount == 1

    def reclaim_stale_reports(self, older_than_s: float) -> list[str]:
        """Batches whose report claim is older than any task may last (the process writing it
        died): back to ``running``, so that the next claim writes it. Their ids."""
        cutoff = utcnow() - timedelta(seconds=older_than_s)
        with self.session() as s:
            stale = list(s.scalars(select(Batch.id).where(Batch.state == "reporting",
                                                          Batch.reporting_since < cutoff)))
            return [batch_id for batch_id in stale if s.execute(
                update(Batch).where(Batch.id == batch_id, Batch.state == "reporting",
                                    Batch.reporting_since < cutoff)
                .values(state="running", reporting_since=None)).rowcount == 1]

    # --- people -------------------------------------------------------------------------
    def set_active(self, curps: list[str], active: bool) -> int:
        with self.session() as s:
            return s.execute(update(Person).where(Person.curp.in_(curps))
                             .values(active=active, changed_at=utcnow())).rowcount

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
            return s.execute(delete(WebSession)
                             .where(WebSession.token_hash == token_hash)).rowcount == 1

    def end_idle_web_sessions(self, *, idle_s: float, max_age_s: float) -> int:
        """Delete sessions past their idle timeout or their maximum age."""
        now = utcnow()
        with self.session() as s:
            return s.execute(delete(WebSession).where(or_(
                WebSession.last_seen_at < now - timedelta(seconds=idle_s),
                WebSession.created_at < now - timedelta(seconds=max_age_s)))).rowcount
