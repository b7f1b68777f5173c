"""Page steps both flows share: navigation and expected elements, mapped to flow errors.

The one rule they implement: a page that is the portal's bot-protection block (Incapsula,
``flows.incapsula``) is ``PortalBlocked`` (the engine pauses the portal); a page that did not
load, answered 5xx or says the service is down is ``PortalUnavailable`` (retried); a page that
loaded fine but lacks an element the flow expects is ``PortalChanged`` (the flow needs
updating).

``StepRetry`` repeats one idempotent step that was ``PortalUnavailable`` (``open_page`` is
``goto`` under it) before the whole check is given back to the engine as transient.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from flows.errors import PortalBlocked, PortalChanged, PortalUnavailable
from flows.incapsula import PROBE_JS, block_reason
from worker.core.logs import mask_text
from worker.core.text import fold

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page, Response

    from worker.core.settings import Settings

T = TypeVar("T")

__all__ = [
    "UNAVAILABLE_MARKERS",
    "norm",
    "page_text",
    "unavailable_reason",
    "goto",
    "StepRetry",
    "open_page",
    "navigating",
    "expect_visible",
    "first_visible",
    "download_by_click",
    "PdfCatcher",
    "Stopwatch",
    "SHOWN_JS",
    "InPage",
    "POLL_MS",
    "wait_in_page",
    "raise_if_unavailable",
]

#: In-page reads (``page.evaluate``) decide visibility as Playwright's ``is_visible`` does: a
#: non-empty box and not ``visibility: hidden``. A JS arrow function of one element (or null).
SHOWN_JS = ('e => !!e && e.getClientRects().length > 0 '
            '&& getComputedStyle(e).visibility !== "hidden"')

#: Texts (normalised: lower case, no accents) of pages that mean "try again later".
#: Shared by both portals: the government frameworks show the same kinds of pages.
UNAVAILABLE_MARKERS: tuple[str, ...] = (
    "servicio no disponible",
    "service unavailable",
    "en mantenimiento",
    "mantenimiento programado",
    "sitio en mantenimiento",
    "sesion ha expirado",
    "sesion expirada",
    "su sesion expiro",
    "internal server error",
    "error interno del servidor",
    "bad gateway",
    "gateway time-out",
    "gateway timeout",
)


def norm(text: str) -> str:
    """Lower case, accents removed, whitespace collapsed: messages compare by meaning, not
    by the portal's choice of accents (it writes both "valido" and "válido")."""
    return fold(text)


#: One read of the page: its visible text and, when it mentions Incapsula, its HTML.
_READ_JS = ("() => [document.body ? document.body.innerText : null,"
            f" ({PROBE_JS})()]")


def page_text(page: Page) -> str:
    """The visible text of the page (empty if the page is gone or still navigating). A page
    being replaced, or without a body yet, is given up to 2 s to load and read again.
    Raises ``PortalBlocked`` when the page is the portal's bot-protection block: a flow that
    reads a page to find the portal's answer can never take the block for an answer."""
    for attempt in range(2):
        try:
            text, markup = page.evaluate(_READ_JS)
        except PlaywrightError:
            text, markup = None, None
        reason = block_reason(markup)
        if reason:
            raise PortalBlocked(f"{reason} En {_path(page.url)}.")
        if text is not None:
            return str(text)
        if attempt == 0:
            try:
                page.wait_for_load_state("domcontentloaded", timeout=2000)
            except PlaywrightError:
                return ""
    return ""


def unavailable_reason(page: Page, response: Response | None = None) -> str | None:
    """Why this page means "the portal is down", or ``None`` if it looks like a normal page.
    A block page (any HTTP status) raises ``PortalBlocked`` instead (``page_text``)."""
    text = norm(page_text(page))
    if response is not None and response.status >= 500:
        return f"HTTP {response.status} en {_path(response.url)}"
    for marker in UNAVAILABLE_MARKERS:
        if marker in text:
            return f"El portal respondió «{marker}» en {_path(page.url)}"
    return None


def _path(url: str) -> str:
    # Query strings may carry tokens; the path is enough to tell pages apart.
    return url.split("?", 1)[0]


def raise_if_unavailable(page: Page, response: Response | None) -> None:
    reason = unavailable_reason(page, response)
    if reason:
        raise PortalUnavailable(reason)


def goto(page: Page, url: str, *, what: str) -> Response | None:
    """Open ``url``; a timeout, network error, 5xx or "down" page is ``PortalUnavailable``."""
    try:
        response = page.goto(url, wait_until="domcontentloaded")
    except PlaywrightTimeout as exc:
        raise PortalUnavailable(f"Tiempo de espera agotado al abrir {what}") from exc
    except PlaywrightError as exc:
        raise PortalUnavailable(f"No se pudo abrir {what}: {_first_line(exc)}") from exc
    raise_if_unavailable(page, response)
    return response


@dataclass(frozen=True)
class StepRetry:
    """Retries of one idempotent step inside a check (policy as data: ``step_retries``,
    ``step_backoff_s``). A flaky portal fails single responses, so repeating the one page load
    or download that failed is far likelier to succeed than repeating the whole check — and,
    on IMSS, costs none of the 2 daily queries per CURP."""

    retries: int
    """How many times a step is tried again after its first failure."""
    backoff_s: float
    """First pause; it doubles per retry."""
    log: Any
    """Where each retry is logged (``step_retry``)."""
    sleep: Callable[[float], None] = time.sleep

    @classmethod
    def from_settings(cls, settings: Settings, log: Any) -> StepRetry:
        return cls(retries=settings.step_retries, backoff_s=settings.step_backoff_s, log=log)

    def __call__(
        self, step: Callable[[], T], *, what: str, recover: Callable[[], object] | None = None
    ) -> T:
        """Run ``step``; while it raises ``PortalUnavailable`` and retries are left, wait, run
        ``recover`` (which puts the page back where ``step`` starts; its own failure counts as
        a failed try) and run ``step`` again. The last failure propagates: the engine then
        retries the whole check. Any other error propagates at once."""
        for retry in range(self.retries + 1):
            try:
                if retry and recover is not None:
                    recover()
                return step()
            except PortalUnavailable as exc:
                if retry >= self.retries:
                    raise
                self.log.info("step_retry", step=what, retry=retry + 1,
                              reason=mask_text(str(exc)))
                self.sleep(self.backoff_s * 2**retry)
        raise AssertionError("unreachable")  # the loop returns or raises


def open_page(page: Page, url: str, *, what: str, retry: StepRetry) -> Response | None:
    """``goto`` with step retries. When a redirect had taken the load elsewhere before it
    failed, the retry re-opens where it landed: the redirecting request (a single-use link)
    already did its work; only the page it led to failed."""
    target = url

    def load() -> Response | None:
        nonlocal target
        before = page.url
        try:
            return goto(page, target, what=what)
        except PortalUnavailable:
            landed = page.url
            if landed not in (target, before) and _origin(landed) == _origin(target):
                target = landed
            raise

    return retry(load, what=what)


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc


@contextmanager
def navigating(page: Page, *, what: str) -> Iterator[None]:
    """Wrap an action (a click, a submit) that makes the page navigate; the new page is checked
    like ``goto``'s."""
    try:
        with page.expect_navigation(wait_until="domcontentloaded") as nav:
            yield
        response = nav.value
    except PlaywrightTimeout as exc:
        raise_if_unavailable(page, None)
        raise PortalUnavailable(f"Tiempo de espera agotado al cargar {what}") from exc
    except PlaywrightError as exc:
        raise PortalUnavailable(f"Falló la carga de {what}: {_first_line(exc)}") from exc
    raise_if_unavailable(page, response)


def expect_visible(page: Page, selector: str, *, what: str, timeout_s: float,
                   text: str | None = None) -> InPage:
    """The first element matching ``selector`` (and containing ``text``) once visible; missing
    after ``timeout_s`` is ``PortalChanged`` naming it — unless the page turned out to be a
    "down" page."""
    element = InPage(page, selector, text)
    try:
        element.wait_visible(timeout_s)
    except PlaywrightTimeout as exc:
        raise_if_unavailable(page, None)
        raise PortalChanged(
            f"No se encontró el elemento esperado «{what}» ({element}) en {_path(page.url)}"
        ) from exc
    return element


#: Polling of in-page waits, in ms (Playwright's default polls at every animation frame, which
#: keeps the renderer and compositor busy for nothing).
POLL_MS = 50



def first_visible(
    page: Page, candidates: dict[str, str], *, timeout_s: float
) -> tuple[str, InPage] | None:
    """Wait until one of ``{name: css}`` is visible; its name and element, or ``None``."""
    arg = [[name, css] for name, css in candidates.items()]
    name = wait_in_page(page, _FIRST_SHOWN_JS, arg, timeout_s)
    return (name, InPage(page, candidates[name])) if name else None


def wait_in_page(page: Page, js: str, arg: Any, timeout_s: float) -> Any:
    """``js(arg)`` once truthy, waiting in the page (polled every 50 ms) up to ``timeout_s``;
    ``None`` on timeout. Read at once first: most waits are over before they start, and an
    in-page wait costs more than a read. A document replaced meanwhile is read again."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            found = page.evaluate(js, arg)
            if found:
                return found
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            return page.wait_for_function(js, arg=arg, polling=POLL_MS,
                                          timeout=left * 1000).json_value()
        except PlaywrightTimeout:
            return None
        except PlaywrightError:
            # The page navigated between two reads (its context was destroyed): read again —
            # until the deadline, which is a timeout like any other (the caller maps it).
            if page.is_closed():
                raise
            if time.monotonic() >= deadline:
                return None
            time.sleep(POLL_MS / 1000)


#: ``FIND(css, text)``: the first element matching ``css`` (whose text contains ``text``, when
#: given: Playwright's ``:has-text``, case and spacing aside), or null.
_FIND_JS = r"""(css, text) => {
  const all = document.querySelectorAll(css);
  if (text === null) return all[0] || null;
  const want = text.replace(/\s+/g, " ").toLowerCase();
  for (const e of all) {
    const own = (e.innerText || e.textContent || "").replace(/\s+/g, " ").toLowerCase();
    if (own.includes(want)) return e;
  }
  return null;
}"""


#: Which of ``[[name, css], …]`` shows first (its name), or null.
_FIRST_SHOWN_JS = (f"cands => {{ const find = {_FIND_JS}; const shown = {SHOWN_JS};"
                   " for (const [name, css] of cands) { if (shown(find(css, null))) return name; }"
                   " return null; }")


def _on_element(body: str) -> str:
    """A page function of ``[css, text, …args]`` whose ``body`` sees ``e`` (the element or
    null), ``shown`` and ``args``."""
    return (f"([css, text, ...args]) => {{ const find = {_FIND_JS}; const shown = {SHOWN_JS};"
            f" const e = find(css, text); {body} }}")


#: Where to click ``e``: scrolled into view, the centre of its box if the element itself (or
#: one of its children) is what is there — not covered, not disabled (itself, by a disabled
#: fieldset, or ``aria-disabled``); else null. Unlike ``Locator.click`` it does not wait for the
#: box to stop moving: the portals' buttons do not animate.
_CLICK_POINT = ("""
  if (!shown(e) || e.matches(":disabled") || e.closest('[aria-disabled="true"]')) return null;
  let r = e.getBoundingClientRect();
  if (r.top < 0 || r.left < 0 || r.bottom > innerHeight || r.right > innerWidth) {
    e.scrollIntoView({block: "center", inline: "center", behavior: "instant"});
    r = e.getBoundingClientRect();
  }
  const x = r.left + r.width / 2, y = r.top + r.height / 2;
  const hit = document.elementFromPoint(x, y);
  return hit && (hit === e || e.contains(hit)) ? {x, y} : null;""")

#: Focus ``e`` and select its text, as ``Locator.fill`` does first; false if it cannot be.
_FOCUS = ("""
  if (!shown(e) || e.matches(":disabled") || e.readOnly) return false;
  e.focus();
  if (typeof e.select === "function") e.select();
  return document.activeElement === e;""")


#: How long an ``InPage`` read is tried again while the page's document is being replaced.
_REREAD_S = 2.0


class InPage:
    """An element read in the page's own JavaScript (one ``evaluate`` per call) and driven by
    real input events (``page.mouse``, ``page.keyboard``), for the few ``Locator`` methods the
    flows use, with their meaning. They run in the page's own JavaScript world (as the flows'
    other reads do), not in Playwright's isolated one.

    Why not a ``Locator``: its first use in a document loads Playwright's selector engine into
    that document — about 37 ms of CPU, measured — and a check loads 5 to 10 documents, so it
    was a sixth of a check's CPU. ``click`` and ``fill`` keep Playwright's checks where they
    matter (visible, enabled, not covered, scrolled into view); when one fails they hand over
    to the ``Locator``, which waits and reports exactly as before."""

    def __init__(self, page: Page, css: str, text: str | None = None) -> None:
        self.page, self.css, self.text = page, css, text

    def __str__(self) -> str:
        return f"{self.css}:has-text('{self.text}')" if self.text is not None else self.css

    def _eval(self, body: str, *args: Any) -> Any:
        # A document replaced during the read (a page that reloads itself, a navigation the
        # last action started) is read again in the next one, as a Locator would: for up to
        # _REREAD_S, then the error goes up.
        deadline = time.monotonic() + _REREAD_S
        while True:
            try:
                return self.page.evaluate(_on_element(body), [self.css, self.text, *args])
            except PlaywrightError as exc:
                if (self.page.is_closed() or time.monotonic() >= deadline
                        or "context was destroyed" not in str(exc)):
                    raise
                time.sleep(POLL_MS / 1000)

    def locator(self) -> Locator:
        """The same element as a Playwright ``Locator`` (fallbacks, screenshots)."""
        return self.page.locator(str(self)).first

    def count(self) -> int:
        """1 if the element exists, else 0 (the flows ask only whether there is one)."""
        return int(self._eval("return e ? 1 : 0;"))

    def is_visible(self) -> bool:
        return bool(self._eval("return shown(e);"))

    def wait_visible(self, timeout_s: float) -> None:
        """Until it is visible; ``PlaywrightTimeout`` after ``timeout_s``."""
        if not wait_in_page(self.page, _on_element("return shown(e);"),
                             [self.css, self.text], timeout_s):
            raise PlaywrightTimeout(f"{self} no se mostró en {timeout_s:g} s")

    def get_attribute(self, name: str) -> str | None:
        value = self._eval("return e ? e.getAttribute(args[0]) : null;", name)
        return None if value is None else str(value)

    def inner_text(self) -> str:
        return self._eval("return e ? e.innerText : '';") or ""

    def visible_text(self) -> str:
        """Its text, spaces collapsed, when it is shown; else ``""``."""
        text = self._eval("return shown(e) ? e.innerText : '';") or ""
        return " ".join(text.split())

    def click(self) -> None:
        point = self._eval(_CLICK_POINT)
        if point is None:
            self.locator().click()  # Playwright waits until it can, or says why not
            return
        self.page.mouse.click(point["x"], point["y"])

    def fill(self, value: str) -> None:
        """Like ``Locator.fill``: focus, select what is there, write ``value`` as one input."""
        if not self._focus():
            self.locator().fill(value)
            return
        if value:
            self.page.keyboard.insert_text(value)
        else:
            self.page.keyboard.press("Delete")

    def press_sequentially(self, text: str) -> None:
        """Focus (selecting what is there, so it is typed over: the flows empty the field
        first), then one key press per character (keydown, keypress, input, keyup)."""
        if not self._focus():
            self.locator().press_sequentially(text)
            return
        self.page.keyboard.type(text)

    def blur(self) -> None:
        self._eval("if (e) e.blur();")

    def screenshot(self, **kwargs: Any) -> bytes:
        return self.locator().screenshot(**kwargs)

    def _focus(self) -> bool:
        return bool(self._eval(_FOCUS))


#: How long a download may still be announced after its navigation ended.
_DOWNLOAD_GRACE_S = 1.0

class PdfCatcher:
    """While open, watches every response of ``context`` (its pages, the windows they open,
    frames, embedded viewers) for a PDF, inline or attachment; ``pdf`` gives the first one.

    A Chromium with its PDF viewer (the full browser, headless or not) shows an inline PDF in
    the viewer: the page's own response then holds the viewer's wrapper, and the PDF's bytes
    arrive in a second response the viewer streams (a ``chrome-extension://`` URL, type
    ``application/pdf``). That stream's body is not always readable: now and then (a few
    checks in a hundred, more under load) the viewer ends its request as aborted once it has
    the bytes, and DevTools then keeps no body for it ("No data found for resource"). So the
    documents of the pages are also paused at their response (DevTools ``Fetch``, response
    stage, in the page's own session): a PDF answer's body is read there, from the browser's
    own request — the portal sees the one request it always did — and the answer goes on to
    the page unchanged. An attachment becomes a download as well (the caller watches those).
    """

    def __init__(self, context: Any) -> None:
        self.context = context
        self._responses: list[Response] = []
        self._bodies: list[bytes] = []
        self._sessions: list[Any] = []

    def __enter__(self) -> PdfCatcher:
        self.context.on("response", self._response)
        self.context.on("page", self._intercept)
        for page in self.context.pages:
            self._intercept(page)
        return self

    def __exit__(self, *exc: object) -> None:
        self.context.remove_listener("response", self._response)
        self.context.remove_listener("page", self._intercept)
        for session in self._sessions:
            try:
                session.send("Fetch.disable")
                session.detach()
            except PlaywrightError:  # the page is gone
                pass
        self._sessions.clear()

    def _response(self, response: Response) -> None:
        if "pdf" in (response.headers.get("content-type") or "").lower():
            self._responses.append(response)

    def _intercept(self, page: Page) -> None:
        """Pause ``page``'s documents at their response (a window opened later may have sent
        its first request already: the responses above still see it)."""
        try:
            session = self.context.new_cdp_session(page)
        except PlaywrightError:  # not a Chromium, or the page closed meanwhile
            return
        self._sessions.append(session)
        session.on("Fetch.requestPaused", lambda event: self._paused(session, event))
        try:
            session.send("Fetch.enable", {"patterns": [
                {"resourceType": "Document", "requestStage": "Response"}]})
        except PlaywrightError:
            return

    def _paused(self, session: Any, event: dict[str, Any]) -> None:
        headers = {h["name"].lower(): h["value"] for h in event.get("responseHeaders") or []}
        try:
            if "pdf" in headers.get("content-type", "").lower():
                body = session.send("Fetch.getResponseBody", {"requestId": event["requestId"]})
                data = (base64.b64decode(body["body"]) if body.get("base64Encoded")
                        else str(body["body"]).encode("latin-1"))
                if data.startswith(b"%PDF-"):
                    self._bodies.append(data)
        except PlaywrightError:  # no body (a redirect), or the page is gone
            pass
        finally:
            try:
                session.send("Fetch.continueRequest", {"requestId": event["requestId"]})
            except PlaywrightError:
                pass

    @property
    def pdf(self) -> bytes | None:
        """The first PDF body seen so far, or ``None``."""
        if self._bodies:
            return self._bodies[0]
        for response in self._responses:
            try:
                body = response.body()
            except PlaywrightError:  # became a download, or the page is gone
                continue
            if body.startswith(b"%PDF-"):
                return body
        return None


def download_by_click(page: Page, target: InPage, dest: Path, *, timeout_s: float) -> bool:
    """Click ``target`` and save the file it downloads to ``dest``; ``False`` if no download
    came within ``timeout_s`` or the page was replaced by another page (an error page) instead.

    Headless Chromium has no PDF viewer, so a PDF arrives as a download — in this page or in a
    tab the click opens (both are watched)."""
    context = page.context
    downloads: list[Any] = []
    replaced: list[str] = []

    def collect(download: Any) -> None:
        downloads.append(download)

    def watch(new_page: Page) -> None:
        new_page.on("download", collect)

    def navigated(frame: Any) -> None:
        # A download never replaces the page; an error page (5xx, network failure) does.
        if frame == page.main_frame:
            replaced.append(frame.url)

    def failed(request: Any) -> None:
        # The click's navigation failed at the network level (no page replaces this one). A
        # download also ends its navigation as "aborted", just before it is announced.
        if request.is_navigation_request() and request.frame == page.main_frame:
            replaced.append(request.url)

    page.on("download", collect)
    page.on("framenavigated", navigated)
    page.on("requestfailed", failed)
    context.on("page", watch)
    try:
        target.click()
        deadline = time.monotonic() + timeout_s
        while not downloads and not replaced and time.monotonic() < deadline:
            page.wait_for_timeout(100)
        grace = time.monotonic() + _DOWNLOAD_GRACE_S
        while replaced and not downloads and time.monotonic() < grace:
            page.wait_for_timeout(100)  # a download may still be announced just after
        if not downloads:
            return False
        downloads[0].save_as(dest)
        return dest.stat().st_size > 0
    finally:
        page.remove_listener("download", collect)
        page.remove_listener("framenavigated", navigated)
        page.remove_listener("requestfailed", failed)
        context.remove_listener("page", watch)


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__


class Stopwatch:
    """Seconds per step, for ``Outcome.timings``: ``with sw("form"): …``."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.timings: dict[str, float] = {}
        self._clock = clock

    @contextmanager
    def __call__(self, step: str) -> Iterator[None]:
        start = self._clock()
        try:
            yield
        finally:
            self.timings[step] = round(self.timings.get(step, 0.0) + self._clock() - start, 3)
