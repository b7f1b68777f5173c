"""People (active or not for the nightly re-check) and captchas waiting for a person."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from sqlalchemy import func, select
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from worker.storage import Check
from worker.web.common import checked_form, csrf_refused, not_found, render, status_view, web
from worker.web.guard import audit

__all__ = ["people_page", "people_update"]

#: People listed at once; the search box narrows a larger population.
_PAGE = 500
_QUERY_RE = re.compile(r"[^A-Za-z0-9Ññ]")


def _latest_by_person(request: Request, curps: list[str]) -> dict[tuple[str, str], Check]:
    """Latest finished check per (CURP, portal), in one query."""
    storage = web(request).storage
    if not curps:
        return {}
    latest = (select(func.max(Check.id)).where(Check.status.is_not(None),
                                               Check.curp.in_(curps))
              .group_by(Check.curp, Check.portal))
    with storage.session() as s:
        return {(c.curp, c.portal): c for c in s.scalars(select(Check).where(Check.id.in_(latest)))}


async def people_page(request: Request) -> Response:
    query = _QUERY_RE.sub("", request.query_params.get("q", "")).upper()[:18]
    people = web(request).storage.people()
    total = len(people)
    if query:
        people = [p for p in people if query in p.curp]
    shown = people[:_PAGE]
    latest = _latest_by_person(request, [p.curp for p in shown])
    lines: list[dict[str, Any]] = []
    for person in shown:
        portals = {}
        for portal in ("imss", "issste"):
            check = latest.get((person.curp, portal))
            view = status_view(check.status) if check else None
            if view is not None and check is not None:
                view["at"] = check.finished_at
            portals[portal] = view
        lines.append({"person": person, "portals": portals})
    return render(request, "people.html", {
        "nav": "personas", "lines": lines, "query": query, "total": total,
        "matching": len(people), "page": _PAGE,
        "changed": request.query_params.get("cambio", ""),
    })


async def people_update(request: Request) -> Response:
    form = await checked_form(request)
    if form is None:
        return csrf_refused(request)
    curp = str(form.get("curp", "")).upper()
    action = form.get("accion")
    if action not in ("activar", "desactivar") or not re.fullmatch(r"[A-Z0-9Ñ]{18}", curp):
        return not_found(request, "Esa persona no existe.")
    changed = web(request).storage.set_active([curp], action == "activar")
    if not changed:
        return not_found(request, "Esa persona no existe.")
    await audit(request, "recheck_on" if action == "activar" else "recheck_off", curps=[curp])
    query = _QUERY_RE.sub("", str(form.get("q", "")))[:18]
    # The CURP goes in the fragment only: fragments never reach server logs.
    back = f"/personas?cambio={action}" + (f"&q={quote(query)}" if query else "")
    return RedirectResponse(f"{back}#p-{curp}", status_code=303)
