"""What a portal sees of the browser: Debian's full Chromium in its new headless mode (or
headed under Xvfb), its own headed user agent, Spanish (Mexico), Mexico City time, a desktop
window — and nothing forged."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from flows.browser import chromium_executable, headed_user_agent

pytestmark = pytest.mark.browser

#: Reads the sandbox's echo page in a check's context; prints what it shows as JSON.
_PROBE = r"""
import json, sys
from flows.browser import launch
from flows.runner import new_check_context
from worker.core.settings import load_settings
mode = sys.argv[2]
shell = "/usr/bin/chromium-headless-shell" if mode == "shell" else None
pw, browser = launch(shell, headed=mode == "headed")
try:
    context = new_check_context(browser, load_settings())
    page = context.new_page()
    page.goto(sys.argv[1])
    ids = ["header-ua", "header-lang", "js-ua", "js-lang", "js-tz", "js-viewport",
           "js-webdriver"]
    seen = {i: page.inner_text("#" + i) for i in ids}
    own = page.evaluate("navigator.userAgentData ? navigator.userAgentData.brands"
                        ".map(b => b.brand).join(',') : ''")
    seen["brands"] = own
    seen["plugins"] = page.evaluate("navigator.plugins.length")
    seen["own_ua"] = browser.new_browser_cdp_session().send("Browser.getVersion")["userAgent"]
    print(json.dumps(seen))
    context.close()
finally:
    browser.close()
    pw.stop()
"""


def _echo_url(sandbox) -> str:
    return sandbox.imss_origin + "/_sandbox/browser"


_ROOT = Path(__file__).resolve().parents[2]


def _probe(sandbox, mode: str, *wrapper: str) -> dict:
    """Run the probe in its own process (one Playwright per process; xvfb-run wraps it)."""
    proc = subprocess.run([*wrapper, sys.executable, "-c", _PROBE, _echo_url(sandbox), mode],
                          capture_output=True, text=True, timeout=120, cwd=_ROOT,
                          env={**os.environ, "PYTHONPATH": str(_ROOT)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _assert_presented_like_a_desktop_browser(seen: dict) -> None:
    ua = seen["header-ua"]
    assert "HeadlessChrome" not in ua and "Chrome/" in ua
    assert seen["js-ua"] == ua  # script and header agree
    assert ua == headed_user_agent(seen["own_ua"])  # the browser's own string, mode token aside
    assert seen["header-lang"].startswith("es-MX")
    assert seen["js-lang"] == "es-MX"
    assert seen["js-tz"] == "America/Mexico_City"
    assert seen["js-viewport"] == "1366x768"


def test_the_default_browser_is_debians_full_chromium() -> None:
    """Unconfigured, the flows launch /usr/bin/chromium, not the old headless shell."""
    assert chromium_executable() == "/usr/bin/chromium"


def test_new_headless_chromium_presents_its_headed_user_agent_in_spanish_mexico_time(
        sandbox) -> None:
    """In a check's context the echo page sees the headed UA (header and script), es-MX,
    America/Mexico_City and 1366×768; navigator.webdriver is left as the browser sets it."""
    seen = _probe(sandbox, "headless")
    _assert_presented_like_a_desktop_browser(seen)
    assert "HeadlessChrome" in seen["own_ua"]  # the new headless mode marks itself so
    assert seen["js-webdriver"] == "true"  # not forged away
    assert "Chromium" in seen["brands"]


@pytest.mark.skipif(not shutil.which("xvfb-run"), reason="xvfb is installed by scripts/setup.sh")
def test_headed_browser_under_xvfb_presents_the_same(sandbox) -> None:
    """The operator's headed mode (CONSTANCIAS_BROWSER_HEADED) runs under xvfb-run and sends
    the same presentation; its own user agent is already the headed one."""
    seen = _probe(sandbox, "headed", "xvfb-run", "-a")
    _assert_presented_like_a_desktop_browser(seen)
    assert "HeadlessChrome" not in seen["own_ua"]
    assert seen["header-ua"] == seen["own_ua"]


def test_the_headless_shell_if_configured_gets_the_same_context(sandbox) -> None:
    """A configured headless shell (old mode only: no --headless=new for it) still sends the
    headed user agent, es-MX, Mexico City time and the desktop viewport."""
    if not os.path.exists("/usr/bin/chromium-headless-shell"):
        pytest.skip("chromium-headless-shell is not installed")
    _assert_presented_like_a_desktop_browser(_probe(sandbox, "shell"))
