"""Evidence of a check that did not end in a verdict: screenshot and HTML of every open page,
the Playwright trace, and a small JSON note of what happened.

Like crawlee's ErrorSnapshotter, but for every failed check, not only the first of a kind.
File names are sanitised and never contain a CURP (the folder is linked from the report).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from worker.core.logs import mask_text

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext

__all__ = ["safe_name", "evidence_dir", "save_pages", "save_trace", "write_note"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_SCREENSHOT_TIMEOUT_MS = 5000


def safe_name(text: str, *, max_len: int = 60) -> str:
    """A file-name-safe version of ``text``: CURP-shaped tokens masked, then anything but
    letters, digits, ``._-`` replaced by ``_``."""
    masked = mask_text(text).replace("*", "x")
    cleaned = _UNSAFE.sub("_", masked).strip("._") or "x"
    return cleaned[:max_len]


def evidence_dir(work_dir: Path, portal: str, attempt: int) -> Path:
    """``work_dir/evidence/<portal>-<attempt>``, created."""
    path = Path(work_dir) / "evidence" / safe_name(f"{portal}-{attempt}")
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_pages(context: BrowserContext, dest: Path) -> list[Path]:
    """A full-page screenshot and the HTML of every open page of ``context``; best effort:
    a page that cannot be captured (crashed, still loading) is noted, not fatal."""
    saved: list[Path] = []
    for index, page in enumerate(context.pages, start=1):
        stem = dest / f"page-{index}"
        try:
            page.screenshot(path=f"{stem}.png", full_page=True, timeout=_SCREENSHOT_TIMEOUT_MS)
            saved.append(stem.with_suffix(".png"))
        except Exception as exc:  # noqa: BLE001 - evidence must never hide the real failure
            stem.with_suffix(".png.error.txt").write_text(mask_text(str(exc)), encoding="utf-8")
        try:
            html = page.content()
            stem.with_suffix(".html").write_text(html, encoding="utf-8")
            saved.append(stem.with_suffix(".html"))
        except Exception as exc:  # noqa: BLE001
            stem.with_suffix(".html.error.txt").write_text(mask_text(str(exc)), encoding="utf-8")
    return saved


def save_trace(context: BrowserContext, dest: Path) -> Path | None:
    """Stop the context's tracing into ``dest/trace.zip`` (``None`` if it was not tracing)."""
    path = dest / "trace.zip"
    try:
        context.tracing.stop(path=str(path))
    except Exception:  # noqa: BLE001 - tracing not started, or the browser went away
        return None
    return path if path.exists() else None


def write_note(dest: Path, **fields: Any) -> Path:
    """``dest/check.json``: status, error type, message, pages' URLs — masked."""
    path = dest / "check.json"
    masked = {k: mask_text(v) if isinstance(v, str) else v for k, v in fields.items()}
    path.write_text(json.dumps(masked, ensure_ascii=False, indent=2, default=str), encoding="utf-8")
    return path
