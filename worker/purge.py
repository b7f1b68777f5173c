"""``constancias purge --older-than DAYS``: personal data has a retention period (LFPDPPP).

Batches older than the cutoff lose their folder on disk (PDFs, evidence, input copy, report)
and their personal fields in storage (CURP cell, other columns, PDF facts, details); checks keep
portal, status and dates under a pseudonym, so anonymous counts survive. People not seen since
the cutoff are forgotten.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import delete, select, update

from worker.settings import Settings
from worker.storage import Batch, Check, Person, Row, Storage, utcnow

__all__ = ["purge", "cmd_purge", "pseudonym"]

log = structlog.get_logger("constancias.purge")
PURGED = "[purgado]"


def pseudonym(curp: str) -> str:
    """A stable, non-reversible stand-in for a CURP (18 characters, never a valid CURP)."""
    return "#" + hashlib.sha256(curp.encode()).hexdigest()[:17].upper()


def purge(settings: Settings, storage: Storage, older_than_days: float) -> dict[str, int]:
    """Purge everything older than the cutoff; returns what was removed (counts only)."""
    cutoff = utcnow() - timedelta(days=older_than_days)
    counts = {"batches": 0, "files": 0, "people": 0}
    with storage.session() as s:
        batches = list(s.scalars(select(Batch).where(Batch.created_at < cutoff,
                                                     Batch.source_name != PURGED)))
        for batch in batches:
            out = Path(batch.out_dir)
            if out.is_dir():
                counts["files"] += sum(1 for p in out.rglob("*") if p.is_file())
                shutil.rmtree(out, ignore_errors=True)
            s.execute(update(Row).where(Row.batch_id == batch.id).values(
                value=PURGED, curp=None, reason=PURGED, extra={}))
            for check in s.scalars(select(Check).where(Check.batch_id == batch.id)):
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
        counts["people"] = s.execute(delete(Person).where(Person.curp.not_in(recent))).rowcount
    log.info("purged", **counts, older_than_days=older_than_days)
    return counts


def cmd_purge(args: Any) -> int:
    from worker.commands import _settings
    from worker.service import open_storage

    settings = _settings()
    counts = purge(settings, open_storage(settings), args.older_than)
    print(json.dumps(counts) if getattr(args, "json", False) else
          f"Depurado: {counts['batches']} lote(s), {counts['files']} archivo(s), "
          f"{counts['people']} persona(s).", file=sys.stdout)
    return 0
