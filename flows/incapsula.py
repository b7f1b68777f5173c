"""Recognise the Imperva/Incapsula block that fronts a portal (SPEC §3, "In front of the
portal"): one function, ``block_reason``, decides from a page's or a response's HTML.

A refused client gets, on any URL (the captcha image included), one of two answers:

* a 200 page whose body is ``<iframe id="main-iframe" src="/_Incapsula_Resource?…">`` with the
  fallback text "Request unsuccessful. Incapsula incident ID: …";
* a near-empty page whose only script loads ``/_Incapsula_Resource?…`` (a challenge).

Incapsula also injects its script into pages it lets through, so the script alone is not a
block: only a page with almost no text and nothing to fill in is.

Where it is used: ``flows.steps`` (``goto``, ``navigating``, page reads, missing elements),
flows on a body they fetched themselves (``raise_if_blocked``), and the runner on a failed
check (``blocked_in_context``: the pages and the sub-resources, such as an image, that came
back as HTML).
"""

from __future__ import annotations

import html as html_lib
import re
from typing import TYPE_CHECKING

from flows.errors import PortalBlocked

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, Response

__all__ = [
    "RESOURCE_PATH",
    "PROBE_JS",
    "block_reason",
    "raise_if_blocked",
    "watch_responses",
    "blocked_in_context",
]

RESOURCE_PATH = "/_Incapsula_Resource"

#: A page with fewer visible characters than this, whose script is Incapsula's, is its
#: challenge page: every real portal page shows far more (headings, labels, a footer).
_NEAR_EMPTY_CHARS = 40

_INCIDENT = re.compile(r"incapsula\s+incident\s+id\s*:?\s*([\w-]*)", re.I)
_MAIN_IFRAME = re.compile(
    r"<iframe\b(?=[^>]*\bid\s*=\s*[\"']?main-iframe\b)(?=[^>]*\bsrc\s*=\s*[\"']?[^\"'>]*"
    r"_Incapsula_Resource)[^>]*>", re.I)
_RESOURCE_SCRIPT = re.compile(
    r"<script\b[^>]*\bsrc\s*=\s*[\"']?[^\"'>]*_Incapsula_Resource[^>]*>", re.I)
_INVISIBLE = re.compile(r"<(script|style|noscript|template|iframe)\b.*?</\1\s*>", re.I | re.S)
_FIELD = re.compile(r"<(input|select|textarea|button|form)\b", re.I)
_TAG = re.compile(r"<[^>]+>")

#: In-page probe (one ``evaluate``): the document's HTML when it mentions Incapsula at all,
#: else null — so a normal page costs a regex test in the page, not a copy of its DOM.
PROBE_JS = ('() => { const d = document.documentElement; if (!d) return null;'
            ' const h = d.outerHTML; return /_Incapsula_Resource|incapsula incident/i.test(h)'
            ' ? h : null; }')


def block_reason(markup: str | bytes | None) -> str | None:
    """Why this HTML is Incapsula's block (a Spanish sentence naming the incident when there is
    one), or ``None`` when it is not."""
    if not markup:
        return None
    text = markup.decode("utf-8", "replace") if isinstance(markup, bytes) else markup
    if "incapsula" not in text.lower():
        return None  # the cheap test first: almost every page
    incident = _INCIDENT.search(html_lib.unescape(text))
    if incident:
        found = incident.group(1)
        return ("La protección contra robots del portal (Incapsula) rechazó la consulta"
                + (f" (incidente {found})." if found else "."))
    if _MAIN_IFRAME.search(text):
        return "La protección contra robots del portal (Incapsula) rechazó la consulta."
    if _RESOURCE_SCRIPT.search(text) and not _FIELD.search(text):
        visible = " ".join(html_lib.unescape(_TAG.sub(" ", _INVISIBLE.sub(" ", text))).split())
        if len(visible) < _NEAR_EMPTY_CHARS:
            return ("La protección contra robots del portal (Incapsula) respondió con su página "
                    "de verificación.")
    return None


def raise_if_blocked(body: str | bytes | None, *, what: str) -> None:
    """For a body a flow fetched itself (an image, a download, a script's request): raise
    ``PortalBlocked`` naming ``what`` when the portal answered with its block page."""
    reason = block_reason(body)
    if reason:
        raise PortalBlocked(f"{reason} Al pedir {what}.")


def watch_responses(context: BrowserContext) -> list[str]:
    """Keep, for ``blocked_in_context``, the reason of every sub-resource (an image, a script,
    a script's request) answered with Incapsula's block page. Only responses that came back as
    HTML where a page would not (not documents) are read: normally none."""
    seen: list[str] = []

    def on_response(response: Response) -> None:
        try:
            if response.request.resource_type == "document":
                return  # pages are read through the page itself
            if "html" not in (response.headers.get("content-type") or ""):
                return
            reason = block_reason(response.body())
        except Exception:  # noqa: BLE001 - a response gone with its page tells nothing
            return
        if reason:
            seen.append(f"{reason} Al pedir {_path(response.url)}.")

    context.on("response", on_response)
    return seen


def blocked_in_context(context: BrowserContext, seen: list[str]) -> str | None:
    """The reason this context met a block (a sub-resource seen by ``watch_responses``, or an
    open page, frames included, showing the block), or ``None``."""
    if seen:
        return seen[-1]
    for page in context.pages:
        try:
            for frame in page.frames:
                reason = block_reason(frame.evaluate(PROBE_JS))
                if reason:
                    return f"{reason} En {_path(page.url)}."
        except Exception as exc:  # noqa: BLE001 - a page closing meanwhile is not a block
            del exc
    return None


def _path(url: str) -> str:
    # Query strings may carry tokens; the path is enough to tell pages apart.
    return url.split("?", 1)[0]

