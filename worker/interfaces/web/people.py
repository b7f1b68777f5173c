"""People (active or not for the nightly re-check) and captchas waiting for a person."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from flows import registry
from worker.interfaces.web.common import (
    checked_form,
    csrf_refused,
    not_found,
    render,
    status_view,
    web,
)
from worker.interfaces.web.guard import audit
from worker.services.people import latest_by_person

__all__ = ["people_page", "people_update"]

#: People listed at once; the search box narrows a larger population.
_PAGE = 500
_QUERY_RE = re.compile(r"[^A-Za-z0-9Ññ]")


async def people_page(request: Request) -> Response:
    query = _QUERY_RE.sub("", request.query_params.get("q", "")).upper()[:18]
    people = web(request).storage.people()
    total = len(people)
    if query:
        people = [p for p in people if query in p.curp]
    shown = people[:_PAGE]
    latest = latest_by_person(web(request).storage, shown)
    lines: list[dict[str, Any]] = []
    for person in shown:
        portals = {}
        for portal in registry.names():
            check = latest.get(person.curp, {}).get(portal)
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
