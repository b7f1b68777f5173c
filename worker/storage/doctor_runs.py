"""The recorded results of ``constancias doctor`` (table ``doctor_runs``, revision
``0006_doctor_runs``): the last one is shown on the web page; the schedule's previous one tells
a new failure (the operator is e-mailed) from one already told about."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Boolean, Integer, String, Text, insert, select, text, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Mapped, mapped_column

from worker.storage.migrate import alembic_config
from worker.storage.repository import Base, Storage, utcnow

__all__ = ["DoctorRun", "record_run", "last_run", "mark_notified", "ping", "schema_revisions",
           "probe_write"]


class DoctorRun(Base):
    """One doctor run: when, who started it, and its checks as ``doctor --json`` lists them."""

    __tablename__ = "doctor_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ran_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    trigger: Mapped[str] = mapped_column(String(16))
    """``cli`` (``constancias doctor``) or ``schedule`` (before a re-check batch)."""
    ok: Mapped[bool] = mapped_column(Boolean)
    failed: Mapped[str] = mapped_column(Text, default="")
    """The failed checks' names, sorted, comma-separated: what makes a failure "new"."""
    checks: Mapped[list[Any]] = mapped_column()
    notified: Mapped[bool] = mapped_column(Boolean, default=False)
    """The operator was e-mailed about this run's failure."""


def record_run(storage: Storage, *, trigger: str, ok: bool, checks: list[dict[str, Any]]) -> int:
    """Store one run; its id."""
    failed = ",".join(sorted(c["name"] for c in checks if not c["ok"]))
    with storage.session() as s:
        row = DoctorRun(ran_at=utcnow(), trigger=trigger, ok=ok, failed=failed, checks=checks,
                        notified=False)
        s.add(row)
        s.flush()
        return row.id


def last_run(storage: Storage, *, trigger: str | None = None,
             before_id: int | None = None) -> DoctorRun | None:
    """The latest run (of ``trigger`` when given; older than ``before_id`` when given)."""
    query = select(DoctorRun).order_by(DoctorRun.id.desc()).limit(1)
    if trigger is not None:
        query = query.where(DoctorRun.trigger == trigger)
    if before_id is not None:
        query = query.where(DoctorRun.id < before_id)
    with storage.session() as s:
        return s.scalars(query).first()


def mark_notified(storage: Storage, run_id: int) -> None:
    with storage.session() as s:
        s.execute(update(DoctorRun).where(DoctorRun.id == run_id).values(notified=True))


# --- what doctor asks the database (its ``storage`` checks) --------------------------------


def ping(storage: Storage) -> str | None:
    """``SELECT 1``: ``None`` when the database answers, else the name of the driver's error
    (``OperationalError``…: what the operator can look up)."""
    try:
        with storage.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        return type(getattr(exc, "orig", None) or exc).__name__
    return None


def schema_revisions(storage: Storage) -> tuple[str | None, str | None]:
    """(the database's alembic revision, this version's head)."""
    head = ScriptDirectory.from_config(alembic_config(storage.url)).get_current_head()
    with storage.engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
    return current, head


def probe_write(storage: Storage) -> None:
    """A doctor run written and rolled back: proves the database takes writes, leaves
    nothing."""
    with storage.engine.connect() as conn:
        trans = conn.begin()
        try:
            conn.execute(insert(DoctorRun).values(
                ran_at=utcnow(), trigger="probe", ok=True, failed="", checks=[],
                notified=False))
        finally:
            trans.rollback()
