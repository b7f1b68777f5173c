"""The recorded results of ``constancias doctor`` (table ``doctor_runs``, revision
``0006_doctor_runs``): the last one is shown on the web page; the schedule's previous one tells
a new failure (the operator is e-mailed) from one already told about."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Integer, String, Text, select, update
from sqlalchemy.orm import Mapped, mapped_column

from worker.storage import Base, Storage, utcnow

__all__ = ["DoctorRun", "record_run", "last_run", "mark_notified"]


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
