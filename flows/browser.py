"""Chromium for the flows: one browser per process, launched lazily (never before a fork),
a fresh context per check.

Playwright objects belong to the thread that created them (playwright-python#1207); the
browser here is created on first use in the process (and thread) that uses it.
"""

from __future__ import annotations

import atexit
import os
import shutil
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Playwright

__all__ = ["CHROMIUM_ARGS", "chromium_executable", "launch", "shared_browser", "close_shared"]

log = structlog.get_logger(__name__)

#: Flags for a closed network: without them Chromium phones home at every start.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--disable-dev-shm-usage",
    # Debian's wrapper gives Chromium Google API keys, and with them it asks Google about the
    # portals' forms (autofill), the account (GAIA) and component updates, despite the flags
    # above (seen with strace; tests/test_trust_network.py). Pointing those services at a
    # closed local port keeps every byte between us, the portals and the mailbox. (Not
    # --disable-features: a second one would replace Playwright's own list.)
    "--autofill-server-url=http://127.0.0.1:9/",
    "--gaia-url=http://127.0.0.1:9/",
    "--component-updater=url-source=http://127.0.0.1:9/",
]


#: Debian's Chromium builds, lightest first. ``chromium-headless-shell`` (same source package,
#: the "old headless" without the desktop browser's per-profile services) costs a sixth of the
#: CPU of full ``chromium --headless`` for each fresh context and page — 0.35 s against 2.3 s
#: measured here — and on a small machine the checks are CPU-bound (bench/throughput.py).
DEBIAN_CHROMIUMS = ("/usr/bin/chromium-headless-shell", "/usr/bin/chromium")


def chromium_executable(configured: str | None = None) -> str | None:
    """The Chromium to launch: the configured one, else Debian's headless shell, else Debian's
    chromium, else Playwright's own (``None``: let Playwright find its bundled browser)."""
    if configured:
        return configured
    env = os.environ.get("CONSTANCIAS_BROWSER_EXECUTABLE")
    if env:
        return env
    on_path = (shutil.which("chromium"), shutil.which("chromium-browser"))
    for candidate in (*DEBIAN_CHROMIUMS, *on_path):
        if candidate and os.path.exists(candidate):
            return candidate
    return None


@dataclass
class _Handle:
    playwright: Playwright
    browser: Browser
    pid: int
    thread: int


def launch(executable: str | None = None, **kwargs: Any) -> tuple[Playwright, Browser]:
    """Start Playwright and a headless Chromium; the caller closes both."""
    from playwright.sync_api import sync_playwright

    path = chromium_executable(executable)
    pw = sync_playwright().start()
    try:
        browser = pw.chromium.launch(
            executable_path=path,
            headless=True,
            args=CHROMIUM_ARGS,
            **kwargs,
        )
    except Exception:
        pw.stop()
        raise
    log.info("browser_started", browser_version=browser.version,
             executable=path or "playwright", pid=os.getpid())
    return pw, browser


_local = threading.local()


def shared_browser(executable: str | None = None) -> Browser:
    """This process's (and thread's) browser, launched on first use, relaunched if it died."""
    handle: _Handle | None = getattr(_local, "handle", None)
    if handle is not None and (handle.pid != os.getpid() or not handle.browser.is_connected()):
        # Inherited through a fork, or crashed: never reuse it.
        if handle.pid == os.getpid():
            close_shared()
        handle = None
    if handle is None:
        pw, browser = launch(executable)
        handle = _Handle(pw, browser, os.getpid(), threading.get_ident())
        _local.handle = handle
        atexit.register(close_shared)
    return handle.browser


def close_shared() -> None:
    """Close this thread's browser and Playwright (worker shutdown, atexit)."""
    handle: _Handle | None = getattr(_local, "handle", None)
    _local.handle = None
    if handle is None or handle.pid != os.getpid():
        return
    for closer in (handle.browser.close, handle.playwright.stop):
        try:
            closer()
        except Exception as exc:  # noqa: BLE001 - best effort at shutdown
            log.debug("browser_close_failed", error=str(exc))
