"""The tables (SQLAlchemy 2 models): batches, their input rows, people, and checks with history,
the change notifications, the web page's log-in sessions, and the IMSS checks waiting for mail
with the messages claimed for them. Their schema is managed by Alembic
(``worker/storage/migrations``); the queries are in the storage modules (``repository.py``,
and one module a concept: ``waiting.py``, ``accounts.py``, ``audit.py``…)."""

from __future__ import annotations

from datetime import UTC, date, datetime
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
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

__all__ = ["Base", "Batch", "Row", "Person", "Check", "Notification", "WebSession", "MailWait",
           "MailClaim", "WAITING_STAGES", "utcnow"]


def utcnow() -> datetime:
    return datetime.now(UTC)


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
    state: Mapped[str] = mapped_column(String(16), default="queued")
    """queued | running | reporting | done"""
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
    """A change notification e-mailed to HR (worker/engine/notify.py): one row per change, claimed
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


#: Stages in which a check waits for mail (counted as ``waiting`` in the progress).
WAITING_STAGES = ("mail1", "mail2")


class MailWait(Base):
    """One IMSS check between its two browser steps (revision ``0008_mail_waits``)."""

    __tablename__ = "mail_waits"

    check_id: Mapped[int] = mapped_column(ForeignKey("checks.id", ondelete="CASCADE"),
                                          primary_key=True)
    batch_id: Mapped[str] = mapped_column(String(32), index=True)
    address: Mapped[str] = mapped_column(String(255), index=True)
    """The per-CURP address the form was sent with (lower case)."""
    sent_at: Mapped[datetime] = mapped_column()
    attempt: Mapped[int] = mapped_column(Integer)
    expires_at: Mapped[datetime] = mapped_column()
    stage: Mapped[str] = mapped_column(String(16), index=True)
    link: Mapped[str | None] = mapped_column(Text, nullable=True)
    link_tried_at: Mapped[datetime | None] = mapped_column(nullable=True)
    """When a step 2 first opened the link: a later step 2 (after a crash) knows the token
    may be spent, and the second email may be what brings the PDF."""
    pdf: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class MailClaim(Base):
    """A message a watcher took (its Message-ID, else a hash of it): inserted once."""

    __tablename__ = "mail_claims"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    check_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    claimed_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
