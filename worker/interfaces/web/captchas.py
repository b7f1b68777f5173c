"""Captchas waiting for a person, when ``CONSTANCIAS_CAPTCHA_SOLVER=manual``.

The manual solver (``flows.captcha``) leaves each captcha it cannot read in the data folder;
this page shows them and hands the typed answer back with ``flows.captcha.answer``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from worker.interfaces.web.common import checked_form, csrf_refused, not_found, render, web

__all__ = ["captcha_page", "captcha_answer", "captcha_image", "pending_captchas"]

_KEY_RE = re.compile(r"[A-Za-z0-9_-]{1,80}")
_MEDIA = {b"\x89PNG": "image/png", b"\xff\xd8\xff": "image/jpeg", b"GIF8": "image/gif"}


def _field(item: Any, *names: str) -> Any:
    for name in names:
        if isinstance(item, dict) and name in item:
            return item[name]
        if hasattr(item, name):
            return getattr(item, name)
    return None


def pending_captchas(data_dir: Path) -> list[dict[str, Any]]:
    """The pending captchas as plain dicts: key, portal, created_at, image (bytes or path)."""
    try:
        # Imported here: the captcha module loads the OCR libraries, for this page only.
        from flows.captcha import pending
    except ImportError:  # a deployment without the manual solver: nothing can be pending
        return []
    out = []
    for item in pending(data_dir):
        key = str(_field(item, "key", "id") or "")
        if not _KEY_RE.fullmatch(key):
            continue
        out.append({"key": key, "portal": _field(item, "portal"),
                    "created_at": _field(item, "created_at", "created"),
                    "image": _field(item, "image", "image_path", "png", "path")})
    return out


def _manual(request: Request) -> bool:
    return web(request).settings.captcha_solver == "manual"


async def captcha_page(request: Request) -> Response:
    st = web(request)
    items = pending_captchas(st.settings.data_dir) if _manual(request) else []
    return render(request, "captchas.html", {
        "nav": "captchas", "manual": _manual(request), "items": items,
        "answered": request.query_params.get("respondido") == "1",
    })


async def captcha_image(request: Request) -> Response:
    key = request.path_params["key"]
    if not _manual(request) or not _KEY_RE.fullmatch(key):
        return not_found(request)
    for item in pending_captchas(web(request).settings.data_dir):
        if item["key"] != key:
            continue
        image = item["image"]
        data = image if isinstance(image, bytes) else Path(image).read_bytes() if image else b""
        media = next((m for magic, m in _MEDIA.items() if data.startswith(magic)), None)
        if media is None:
            break
        return Response(data, media_type=media, headers={"Cache-Control": "no-store"})
    return not_found(request, "Ese captcha ya no está pendiente.")


async def captcha_answer(request: Request) -> Response:
    form = await checked_form(request)
    if form is None:
        return csrf_refused(request)
    key = str(form.get("key", ""))
    text = str(form.get("respuesta", "")).strip()
    if not _manual(request) or not _KEY_RE.fullmatch(key):
        return not_found(request)
    if not text or len(text) > 20:
        return RedirectResponse("/captchas", status_code=303)
    from flows.captcha import answer  # as above: the OCR libraries, for this page only

    answer(web(request).settings.data_dir, key, text)
    return RedirectResponse("/captchas?respondido=1", status_code=303)
