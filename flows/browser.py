"""Chromium for the flows: one browser per process, launched lazily (never before a fork),
a fresh context per check.

What a portal sees: Debian's full Chromium in its new headless mode (the same browser as the
desktop one, without a window), or headed under Xvfb (``CONSTANCIAS_BROWSER_HEADED``), sending
the user agent that same Chromium sends when headed — its own string with only the
"HeadlessChrome" token, which marks the mode, written "Chrome". Nothing else is faked: no
stealth plugins, no forged plugins, WebGL or navigator properties.

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

__all__ = ["CHROMIUM_ARGS", "chromium_executable", "launch", "shared_browser", "close_shared",
           "presented_user_agent", "headed_user_agent"]

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


#: Debian's full Chromium. Its sibling ``chromium-headless-shell`` (the "old headless", without
#: the desktop browser's per-profile services) is lighter — see the README's Rendimiento — but
#: is another browser to a portal's bot protection; it stays available through
#: ``CONSTANCIAS_BROWSER_EXECUTABLE``.
DEBIAN_CHROMIUMS = ("/usr/bin/chromium",)

#: The new headless mode, named explicitly (Playwright passes a bare ``--headless``; a later
#: switch wins). The headless shell has only the old mode and is left to its default.
_NEW_HEADLESS = "--headless=new"


def chromium_executable(configured: str | None = None) -> str | None:
    """The Chromium to launch: the configured one, else Debian's chromium, else Playwright's
    own (``None``: let Playwright find its bundled browser)."""
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


def launch(executable: str | None = None, *, headed: bool = False,
           **kwargs: Any) -> tuple[Playwright, Browser]:
    """Start Playwright and Chromium (new headless mode, or ``headed``: a window, which needs
    a display such as Xvfb's); the caller closes both."""
    from playwright.sync_api import sync_playwright  # here: only a check's process pays for it

    path = chromium_executable(executable)
    args = list(CHROMIUM_ARGS)
    if not headed and "headless-shell" not in os.path.basename(path or ""):
        args.append(_NEW_HEADLESS)
    pw = sync_playwright().start()
    try:
        browser = pw.chromium.launch(
            executable_path=path,
            headless=not headed,
            args=args,
            **kwargs,
        )
    except Exception:
        pw.stop()
        raise
    log.info("browser_started", browser_version=browser.version, headed=headed,
             executable=path or "playwright", pid=os.getpid())
    return pw, browser


def headed_user_agent(user_agent: str) -> str:
    """The user agent the same Chromium sends headed: only "HeadlessChrome" becomes "Chrome"."""
    return user_agent.replace("HeadlessChrome/", "Chrome/")


#: Browser -> the user agent its contexts send (read once per browser).
_user_agents: dict[int, tuple[Any, str]] = {}


def presented_user_agent(browser: Browser) -> str:
    """The user agent contexts of ``browser`` send: its own (``Browser.getVersion`` over CDP,
    no page needed), as headed."""
    cached = _user_agents.get(id(browser))
    if cached is not None and cached[0] is browser:
        return cached[1]
    session = browser.new_browser_cdp_session()
    try:
        own = str(session.send("Browser.getVersion")["userAgent"])
    finally:
        session.detach()
    agent = headed_user_agent(own)
    _user_agents[id(browser)] = (browser, agent)
    return agent


_local = threading.local()


def shared_browser(executable: str | None = None, *, headed: bool = False) -> Browser:
    """This process's (and thread's) browser, launched on first use, relaunched if it died."""
    handle: _Handle | None = getattr(_local, "handle", None)
    if handle is not None and (handle.pid != os.getpid() or not handle.browser.is_connected()):
        # Inherited through a fork, or crashed: never reuse it.
        if handle.pid == os.getpid():
            close_shared()
        handle = None
    if handle is None:
        pw, browser = launch(executable, headed=headed)
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
    _user_agents.pop(id(handle.browser), None)
    for closer in (handle.browser.close, handle.playwright.stop):
        try:
            closer()
        except Exception as exc:  # noqa: BLE001 - best effort at shutdown
            log.debug("browser_close_failed", error=str(exc))
