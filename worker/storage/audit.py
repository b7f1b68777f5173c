"""The audit trail: who uploaded, processed, viewed, downloaded, changed a re-check or created a
token — when, from which address, about which batch and person (LFPDPPP: who saw whose data).

Append-only: this module only adds rows and reads them; the one deletion is the retention purge
(``purge_before``). The CURP is kept whole so an admin can filter by a person; the page and the
CSV show it masked.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Integer, String, Text, delete, select
from sqlalchemy.orm import Mapped, mapped_column

from worker.storage.repository import Base, Storage, changed, utcnow

__all__ = ["AuditEvent", "AuditFilter", "ACTIONS", "record", "events", "purge_before"]

#: Action code -> its Spanish name on the page and in the CSV.
ACTIONS: dict[str, str] = {
    "upload": "Cargó una hoja",
    "process": "Procesó un lote",
    "resume": "Reanudó un lote",
    "view_batch": "Vio un lote",
    "view_person": "Consultó una persona",
    "download_report": "Descargó un reporte",
    "download_pdf": "Descargó un PDF",
    "download_file": "Descargó un archivo",
    "download_zip": "Descargó el zip",
    "recheck_on": "Activó la revisión nocturna",
    "recheck_off": "Desactivó la revisión nocturna",
    "token_add": "Creó un token",
    "token_revoke": "Revocó un token",
    "user_add": "Creó un usuario",
    "user_disable": "Desactivó un usuario",
    "user_password": "Cambió una contraseña",
    "webhook_add": "Registró un webhook",
}


class AuditEvent(Base):
    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(80))
    """A user name, ``token:NAME`` for the API, ``cli`` for the command line."""
    address: Mapped[str] = mapped_column(String(64), default="")
    action: Mapped[str] = mapped_column(String(32), index=True)
    batch_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    curp: Mapped[str | None] = mapped_column(String(18), nullable=True, index=True)
    detail: Mapped[str] = mapped_column(Text, default="")


@dataclass(frozen=True)
class AuditFilter:
    """What the admin page asks for; empty fields match everything."""

    actor: str = ""
    action: str = ""
    batch_id: str = ""
    curp: str = ""
    limit: int = 500


def record(storage: Storage, *, actor: str, action: str, address: str = "",
           batch_id: str | None = None, curps: Iterable[str | None] = (None,),
           detail: str = "") -> None:
    """Append one row per person concerned (one row without a person when there is none)."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    now = utcnow()
    with storage.session() as s:
        s.add_all(AuditEvent(at=now, actor=actor[:80], address=address[:64], action=action,
                             batch_id=batch_id, curp=curp, detail=detail) for curp in curps)


def events(storage: Storage, flt: AuditFilter = AuditFilter()) -> list[AuditEvent]:
    """Newest first."""
    q = select(AuditEvent).order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
    if flt.actor:
        q = q.where(AuditEvent.actor == flt.actor)
    if flt.action:
        q = q.where(AuditEvent.action == flt.action)
    if flt.batch_id:
        q = q.where(AuditEvent.batch_id == flt.batch_id)
    if flt.curp:
        q = q.where(AuditEvent.curp == flt.curp.strip().upper())
    with storage.session() as s:
        return list(s.scalars(q.limit(flt.limit)))


def purge_before(storage: Storage, cutoff: datetime) -> int:
    """The retention purge: rows older than ``cutoff`` go (the only deletion there is)."""
    with storage.session() as s:
        return changed(s.execute(delete(AuditEvent).where(AuditEvent.at < cutoff)))
