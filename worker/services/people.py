"""People: who is re-checked nightly (active or not) and each one's latest results.

Shared by ``constancias people`` and the web page's people list.
"""

from __future__ import annotations

from typing import Any

import structlog

from worker.storage.repository import Check, Person, Storage

__all__ = ["set_people_active", "people_overview", "latest_by_person", "normalise_curps"]

log = structlog.get_logger("constancias.people")


def normalise_curps(curps: list[str]) -> list[str]:
    """Trimmed, upper case, each once, in the order given."""
    return list(dict.fromkeys(c.strip().upper() for c in curps if c.strip()))


def set_people_active(storage: Storage, curps: list[str], active: bool) -> tuple[int, list[str]]:
    """(Re)activate or deactivate people; returns (how many changed, CURPs never checked).

    Deactivated people (they left the onboarding pipeline) keep their history but are no
    longer re-checked.
    """
    wanted = normalise_curps(curps)
    known = storage.known_curps(wanted)
    unknown = [c for c in wanted if c not in known]
    changed = storage.set_active([c for c in wanted if c in known], active) if known else 0
    log.info("people_active_set", active=active, changed=changed, unknown=len(unknown))
    return changed, unknown


def latest_by_person(storage: Storage, people: list[Person]) -> dict[str, dict[str, Check]]:
    """CURP -> portal -> latest finished check, for these people (one query)."""
    return storage.latest_results([p.curp for p in people]) if people else {}


def people_overview(storage: Storage, curps: list[str] | None = None) -> list[dict[str, Any]]:
    """Everyone checked (or only ``curps``): active flag and latest result per portal."""
    wanted = set(normalise_curps(curps)) if curps else None
    people = [p for p in storage.people() if wanted is None or p.curp in wanted]
    latest = latest_by_person(storage, people)
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
