"""IMSS — Constancia de No Derechohabiencia.

Information page → "Tramitar Constancia" → form (CURP, the per-CURP email twice, captcha) →
the server's message → confirmation email → its link (it needs no session) → final page → the
report's POST (answered inline or as an attachment) → the verdict read from the PDF; the second
email, which carries the same PDF, when the page gives none.

The portal's answers are found by what they say, wherever they are shown (an alert, a Spring
binding span under the captcha, a ``window.alert()`` dialog, a modal): ``flows.messages`` is the
one table of those texts; this module only says where to look and what to do.

A flaky portal (5xx, "Servicio no disponible", a broken captcha image) costs a retry of the one
step that failed (``flows.steps.StepRetry``), not of the whole check: after the form is
accepted, a whole-check retry would spend the second of the 2 daily queries per CURP.

Every selector the flow depends on is in ``PORTAL`` below: when the portal changes, that is
where the fix goes (and in ``flows.messages`` for its texts).
"""

from __future__ import annotations

import base64
import itertools
import secrets
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urljoin

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from flows.base import CheckContext, FirstMail, ImssPdfSource, Outcome, SecondMail
from flows.errors import (
    CaptchaUnsolved,
    EmailNotReceived,
    FlowError,
    PortalChanged,
    PortalUnavailable,
)
from flows.messages import Kind, Match, classify, fold
from flows.pdf import InvalidConstancia, read_constancia
from flows.registry import DoctorLook, MailSteps, Portal, register
from flows.runner import new_check_context
from flows.steps import (
    POLL_MS,
    SHOWN_JS,
    InPage,
    PdfCatcher,
    StepRetry,
    Stopwatch,
    expect_visible,
    goto,
    open_page,
    unavailable_reason,
)
from worker.core.logs import mask_text
from worker.core.statuses import Status

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, Response

    from worker.core.settings import Settings

__all__ = ["DECLARATION", "PORTAL", "ImssPortal", "run", "send_step", "link_step",
           "pdf_step", "pdf_attachment", "confirmation_link_in", "classify_message",
           "open_info_page", "follow_info_link", "FORM_ELEMENTS", "expect_form", "captcha_image",
           "refresh_captcha"]


@dataclass(frozen=True)
class ImssPortal:
    """Selectors of the IMSS portal (SPEC §3 [V], verbatim). Plain CSS: they are read inside
    the page (``document.querySelector``, flows.steps.InPage); the information page's link is
    the ``info_link`` whose text contains ``info_link_text``. Texts live in flows.messages."""

    info_link: str = "a"
    info_link_text: str = "Tramitar Constancia"
    #: The form itself: only ``doctor`` looks for it (``FORM_ELEMENTS``); the flow fills its
    #: fields.
    form: str = "#registroAseguradoDatosBasicosForm"
    curp: str = "#registroCurp"
    email: str = "#correoInput"
    email_confirm: str = "#correoConfirmacionInput"
    captcha_img: str = "img#captchaImg"
    captcha_refresh: str = "#refreshCaptcha"
    captcha_input: str = "input[name=captcha]"
    submit: str = "#continuar"
    #: Where the page's script writes its paste refusal (inside the hidden #errorWrapperAux).
    paste_error: str = "#mailConfirmacionErrors"
    #: The final page's report control is found by its words ([A]: its markup is not known):
    #: the first visible button, submit or link whose folded text holds one of these.
    report_labels: tuple[str, ...] = ("ver reporte", "descargar", "reporte", "constancia",
                                      "imprimir")
    confirm_link_fragment: str = "confirmacionUrl"
    #: Subjects are [A]: any subject will do; email 1 is told by its link, email 2 by its PDF.
    mail1_subject: str = ""
    mail2_subject: str = ""
    #: The confirmation refused text that was not typed (its anti-paste script).
    paste_refused: str = "no se permite copiar pegar"


PORTAL = ImssPortal()

#: Retries of the confirmation link, as a multiple of ``step_retries``: once the form is
#: accepted, giving up means a whole-check retry, which spends the second of the day's 2 queries.
CONFIRM_RETRY_FACTOR = 2

#: How long to wait for the second email (which carries the same PDF) once the PDF came from
#: the final page: only to claim it so it does not pile up in the mailbox; never fails a check.
EMAIL2_GRACE_S = 5.0


def classify_message(text: str) -> tuple[bool, Status | None]:
    """``(known, status)`` for a portal message: ``(True, None)`` means "wrong captcha" (or
    another message that ends no check); ``(False, None)`` an unknown text."""
    found = classify(text)
    if found is None:
        return False, None
    return True, found.status if found.kind is Kind.REFUSED else None


class _Dialogs:
    """The page's ``window.alert()`` messages, recorded and accepted as they come (an open
    dialog blocks the page's script; Playwright would otherwise dismiss it unseen)."""

    def __init__(self, page: Page) -> None:
        self.seen: list[str] = []
        page.on("dialog", self._on_dialog)

    def _on_dialog(self, dialog: Any) -> None:
        self.seen.append(dialog.message)
        try:
            dialog.accept()
        except PlaywrightError:
            pass  # the page went away with its dialog

    def since(self, mark: int) -> list[str]:
        return self.seen[mark:]


def run(ctx: CheckContext) -> Outcome:
    """Check ``ctx.person`` on IMSS in one browser step, waiting for the emails in the page
    (``IMSS_MAIL_WAIT=page``, today's design kept for comparison); see the module docstring.
    The default two-step check is ``send_step`` then ``link_step`` (worker/storage/waiting.py)."""
    sw = Stopwatch()
    retry = StepRetry.from_settings(ctx.settings, ctx.log)
    page = ctx.browser_context.new_page()
    dialogs = _Dialogs(page)
    crashed: list[bool] = []
    page.on("crash", lambda _page: crashed.append(True))
    email = ctx.settings.email_for(ctx.person.curp)
    ended, submitted_at = _submit(ctx, page, dialogs, sw, retry, email)
    if ended is not None:
        return ended

    # From here on the query is spent: every step is retried on its own, and when the page
    # cannot give the PDF the second email (sent once the link is followed) still can.
    with sw("email"):
        link = _confirmation_link(ctx, email, submitted_at)
    ctx.log.info("imss_confirmation_received", seconds=sw.timings["email"])

    confirmed_at = time.time()
    # The link needs no session (people open it on their phone): when the form's page is gone
    # (closed, its renderer crashed) it is followed in a fresh context of its own.
    fresh = None
    if page.is_closed() or crashed:
        ctx.log.warning("imss_link_in_fresh_context")
        fresh = new_check_context(cast("Browser", ctx.browser_context.browser), ctx.settings)
        page = fresh.new_page()
    try:
        ended, facts = _follow_link(ctx, page, link, sw, retry)
    finally:
        if fresh is not None:
            fresh.close()
    if ended is not None:
        return ended
    pdf_path = Path(ctx.work_dir) / "imss.pdf"
    source: ImssPdfSource = "page"
    with sw("email2"):
        # Always claimed, even when the page gave the PDF, so it does not pile up.
        mail2 = _second_email(ctx, email, confirmed_at, need=facts is None)
    if facts is None:
        if mail2 is None:
            raise EmailNotReceived(
                "No se obtuvo la constancia: la página final no dio el PDF y el segundo correo "
                "del IMSS no llegó."
            )
        _save_attachment(mail2, pdf_path)
        source = "email"
        with sw("verify"):
            facts = read_constancia(pdf_path, portal="imss", curp=ctx.person.curp)
    return _verdict(ctx, facts, pdf_path, source, sw)


def send_step(ctx: CheckContext) -> Outcome:
    """Step 1 of the two-step check: open the form, solve the captcha, send. An accepted form
    is an ``Outcome`` whose ``waiting`` holds the address and when it was sent (the engine
    stores it and lets the browser go); a refusal is the check's result."""
    sw = Stopwatch()
    retry = StepRetry.from_settings(ctx.settings, ctx.log)
    page = ctx.browser_context.new_page()
    dialogs = _Dialogs(page)
    email = ctx.settings.email_for(ctx.person.curp)
    ended, submitted_at = _submit(ctx, page, dialogs, sw, retry, email)
    if ended is not None:
        return ended
    return Outcome(status=Status.ERROR, detail="", timings=sw.timings,
                   waiting=FirstMail(address=email, sent_at=submitted_at))


def link_step(ctx: CheckContext, link: str, *, tried_before: bool = False) -> Outcome:
    """Step 2: follow email 1's link in this fresh context, get the PDF from the final page.
    No PDF from the page is an ``Outcome`` waiting (``stage`` ``mail2``) for the second email,
    which carries it (``pdf_step``). ``tried_before``: an earlier step 2 opened the link (and
    may have spent its token before it died): a refused token then means "wait for email 2",
    never a new query."""
    sw = Stopwatch()
    retry = StepRetry.from_settings(ctx.settings, ctx.log)
    page = ctx.browser_context.new_page()
    ended, facts = _follow_link(ctx, page, link, sw, retry, tried_before=tried_before)
    if ended is not None:
        return ended
    if facts is None:
        ctx.log.info("imss_waiting_second_email")
        return Outcome(status=Status.ERROR, detail="", timings=sw.timings,
                       waiting=SecondMail())
    return _verdict(ctx, facts, Path(ctx.work_dir) / "imss.pdf", "page", sw)


def pdf_step(work_dir: Path, curp: str, pdf: bytes, log: Any) -> Outcome:
    """Step 3, when the page gave none: the second email's PDF (claimed by the watcher) read
    and verified; no browser."""
    sw = Stopwatch()
    pdf_path = Path(work_dir) / "imss.pdf"
    pdf_path.write_bytes(pdf)
    with sw("verify"):
        facts = read_constancia(pdf_path, portal="imss", curp=curp)
    status = Status(facts.result)
    log.info("imss_verdict", status=status.value, source="email")
    return Outcome(status=status, detail=_detail(status, facts), pdf_path=pdf_path, facts=facts,
                   timings=sw.timings, pdf_source="email")


def _submit(ctx: CheckContext, page: Page, dialogs: _Dialogs, sw: Stopwatch, retry: StepRetry,
            email: str) -> tuple[Outcome | None, float]:
    """Open the form and send it until the portal accepts it: ``(None, when it was sent)``;
    ``(outcome, 0)`` when the portal's refusal ends the check."""
    settings, log = ctx.settings, ctx.log
    with sw("open"):
        open_info_page(page, settings, retry)
        form_url = follow_info_link(page, settings, retry)
    log.info("imss_form_opened", seconds=sw.timings["open"])

    # Captcha keys name one image for the solver (a manual solver files it under this key):
    # unique per check, never a CURP.
    check_key = secrets.token_hex(4)
    solves = itertools.count(1)
    for attempt in range(1, settings.captcha_attempts + 1):
        submitted_at = time.time()
        # A form whose sending failed (5xx, expired session) is done again with a fresh
        # captcha. The sandbox's 5xx comes from its front (fixtures/faults.py), before the CURP
        # lookup, so no daily query is spent; were a real portal's 5xx to come after the
        # lookup, repeating the whole check instead would spend that same query.
        found, key = retry(
            lambda: _send_form(ctx, page, dialogs, sw, retry, form_url, email,
                               f"imss-{check_key}-{next(solves)}"),
            what="el formulario del IMSS",
            recover=lambda: open_page(page, form_url, what="el formulario del IMSS", retry=retry),
        )
        if found is None:
            log.info("imss_captcha_no_answer", attempt=attempt)
            continue
        if found.kind is Kind.SUCCESS:
            log.info("imss_query_accepted", attempt=attempt)
            return None, submitted_at
        if found.kind is Kind.CAPTCHA:
            ctx.captcha.reject(key)
            log.info("imss_captcha_refused", attempt=attempt)
            continue
        if found.kind is Kind.REFUSED and found.status is not None:
            log.info("imss_portal_refused", status=found.status.value)
            return Outcome(status=found.status, detail=found.text, timings=sw.timings), 0.0
        raise FlowError(f"Respuesta inesperada del portal del IMSS: «{found.text}»")
    raise CaptchaUnsolved(
        f"El captcha del IMSS no se resolvió en {settings.captcha_attempts} intento(s)."
    )


def _follow_link(ctx: CheckContext, page: Page, link: str, sw: Stopwatch, retry: StepRetry,
                 *, tried_before: bool = False) -> tuple[Outcome | None, Any]:
    """The link followed and the final page's PDF read: ``(None, facts)``; ``(None, None)``
    when the page gave no (valid) PDF — the second email brings it; ``(outcome, None)`` when
    the link answered with a refusal that ends the check."""
    settings, log = ctx.settings, ctx.log
    pdf_path = Path(ctx.work_dir) / "imss.pdf"
    with sw("confirm"):
        patient = replace(retry, retries=retry.retries * CONFIRM_RETRY_FACTOR)
        final_url, refusal = _confirm(page, link, patient, settings.element_timeout_s, log,
                                      tried_before=tried_before)
    if refusal is not None:
        # The link itself answered with a business error (the daily limit is met at the
        # link): the constancia was not generated, so no second email will come.
        assert refusal.status is not None
        log.info("imss_link_refused", status=refusal.status.value)
        return Outcome(status=refusal.status, detail=refusal.text, timings=sw.timings), None
    downloaded = False
    if final_url is not None:
        with sw("pdf"):
            downloaded = _download_report(page, final_url, pdf_path, settings, retry, log)
    if downloaded:
        with sw("verify"):
            try:
                return None, read_constancia(pdf_path, portal="imss", curp=ctx.person.curp)
            except InvalidConstancia as exc:
                log.warning("imss_page_pdf_invalid", detail=str(exc))
    return None, None


def _verdict(ctx: CheckContext, facts: Any, pdf_path: Path, source: ImssPdfSource,
             sw: Stopwatch) -> Outcome:
    if facts is None:  # unreachable: read_constancia raises instead
        raise FlowError("La constancia del IMSS no se pudo leer.")
    status = Status(facts.result)
    ctx.log.info("imss_verdict", status=status.value, source=source)
    return Outcome(
        status=status,
        detail=_detail(status, facts),
        pdf_path=pdf_path,
        facts=facts,
        timings=sw.timings,
        pdf_source=source,
    )


# --- steps (the public ones are also what ``constancias doctor`` checks) -----------------


def open_info_page(page: Page, settings: Settings, retry: StepRetry) -> None:
    """The information page where the procedure starts (``IMSS_URL``)."""
    open_page(page, settings.imss_url, what="la página informativa del IMSS", retry=retry)


def follow_info_link(page: Page, settings: Settings, retry: StepRetry) -> str:
    """From the information page, the "Tramitar Constancia" link's target opened: the form's
    URL (followed, never hard-coded: SPEC §3 [A])."""
    link = expect_visible(page, PORTAL.info_link, text=PORTAL.info_link_text,
                          what="liga Tramitar Constancia", timeout_s=settings.element_timeout_s)
    href = link.get_attribute("href")
    if not href:
        raise PortalChanged("La liga «Tramitar Constancia» no tiene destino (href).")
    # Follow the link's target instead of clicking: it may open a new tab.
    form_url = urljoin(page.url, href)
    open_page(page, form_url, what="el formulario del IMSS", retry=retry)
    return form_url


#: The form's elements the flow drives, with the names its errors give them.
FORM_ELEMENTS: tuple[tuple[str, str], ...] = (
    (PORTAL.form, "formulario"),
    (PORTAL.curp, "campo CURP"),
    (PORTAL.email, "campo correo"),
    (PORTAL.email_confirm, "campo confirmación de correo"),
    (PORTAL.captcha_input, "campo captcha"),
    (PORTAL.submit, "botón Continuar"),
)


def expect_form(page: Page, settings: Settings) -> None:
    """Every element of the form the flow fills and clicks is shown; ``PortalChanged`` naming
    the first one missing."""
    for selector, what in FORM_ELEMENTS:
        expect_visible(page, selector, what=what, timeout_s=settings.element_timeout_s)


def captcha_image(page: Page, settings: Settings) -> bytes:
    """The form's captcha image as the browser received it (see ``_captcha_image``)."""
    return _captcha_image(page, settings)


def refresh_captcha(page: Page, form_url: str) -> None:
    """A new captcha image on the form (free: only sending the form spends a query)."""
    _refresh_captcha(page, form_url)


def _send_form(
    ctx: CheckContext,
    page: Page,
    dialogs: _Dialogs,
    sw: Stopwatch,
    retry: StepRetry,
    form_url: str,
    email: str,
    key: str,
) -> tuple[Match | None, str]:
    """One captcha round: image → solver → form → the portal's answer, as ``(message, key)``;
    ``None`` when the solver had no reading (rejected and refreshed here, nothing sent)."""
    timeout = ctx.settings.element_timeout_s
    with sw("captcha"):
        image = retry(
            lambda: _captcha_image(page, ctx.settings),
            what="la imagen del captcha del IMSS",
            recover=lambda: _refresh_captcha(page, form_url),
        )
        answer = ctx.captcha.solve(image, key=key).strip()
    if not answer:
        ctx.captcha.reject(key)
        _refresh_captcha(page, form_url)
        return None, key
    with sw("form"):
        mark = len(dialogs.seen)
        _fill_form(page, ctx.person.curp, email, answer, timeout)
        # The page's own email checks are window.alert() dialogs, raised on leaving the field.
        if refused := _refusal(dialogs.since(mark)):
            return refused, key
        button = expect_visible(page, PORTAL.submit, what="botón Continuar", timeout_s=timeout)
    with sw("submit"):
        mark = len(dialogs.seen)
        response = _click_and_wait(page, button, dialogs, ctx.settings.navigation_timeout_s)
        if refused := _refusal(dialogs.since(mark)):
            return refused, key
        if response is None:
            raise PortalUnavailable("El formulario del IMSS no respondió al enviarlo.")
        if reason := unavailable_reason(page, response):
            raise PortalUnavailable(reason)
        found = _read_answer(page, timeout)
    return found, key


def _refusal(texts: list[str]) -> Match | None:
    """A dialog's text that ends the check (the Gmail rule, a malformed address)."""
    found = classify(texts) if texts else None
    return found if found is not None and found.kind is Kind.REFUSED else None


def _click_and_wait(page: Page, button: InPage, dialogs: _Dialogs,
                    timeout_s: float) -> Response | None:
    """Click and wait until the page has loaded its next document (its response), or a
    dialog said why the page's script did not send the form; ``None`` then (or on timeout)."""
    responses: list[Response] = []
    loaded: list[bool] = []
    mark = len(dialogs.seen)

    def answered(response: Response) -> None:
        if response.request.is_navigation_request() and response.frame == page.main_frame:
            responses.append(response)

    def ready(_page: Any) -> None:
        loaded.append(True)

    page.on("response", answered)
    page.on("domcontentloaded", ready)
    try:
        button.click()
        deadline = time.monotonic() + timeout_s
        while not loaded and len(dialogs.seen) == mark and time.monotonic() < deadline:
            page.wait_for_timeout(POLL_MS)
    except PlaywrightError as exc:
        raise PortalUnavailable(f"Falló el envío del formulario del IMSS: {exc}") from exc
    finally:
        page.remove_listener("response", answered)
        page.remove_listener("domcontentloaded", ready)
    return responses[-1] if loaded and responses else None


#: Reads the form in one round trip: each field's value, or ``None`` when it is missing or not
#: visible (then ``expect_visible`` waits for it and names it), and the paste refusal if shown.
_FORM_STATE_JS = """sels => {
  const shown = SHOWN_JS;
  const fields = sels.fields.map(s => {
    const e = document.querySelector(s);
    return shown(e) ? e.value : null;
  });
  const paste = document.querySelector(sels.paste);
  return {fields, paste: shown(paste) ? paste.innerText.trim() : ""};
}""".replace("SHOWN_JS", SHOWN_JS)


def _form_state(page: Page) -> tuple[list[str | None], str]:
    fields = [PORTAL.curp, PORTAL.email, PORTAL.email_confirm, PORTAL.captcha_input]
    state = page.evaluate(_FORM_STATE_JS, {"fields": fields, "paste": PORTAL.paste_error})
    return state["fields"], state["paste"]


def _fill_form(page: Page, curp: str, email: str, answer: str, timeout: float) -> None:
    """Fill every field that does not already hold its value (after a refused captcha the
    portal keeps CURP and emails, but it may clear them). Every call is a round trip to the
    browser, and a check refills the form once per captcha attempt, so the form is read in one
    call and only what differs is written.

    The portal blocks pasting into the confirmation. Text written at once (``fill``: an input
    event, as autofill makes) is not a paste and passes that block; a portal that refuses it
    too (it clears the field and shows its paste message) gets it typed key by key. Typing is
    kept as the fallback only: its ~50 key events were a tenth of an IMSS check's CPU."""
    expect_visible(page, PORTAL.curp, what="campo CURP", timeout_s=timeout)
    values, _ = _form_state(page)
    names = ("campo CURP", "campo correo", "campo confirmación de correo", "campo captcha")
    selectors = (PORTAL.curp, PORTAL.email, PORTAL.email_confirm, PORTAL.captcha_input)
    for value, what, selector in zip(values, names, selectors, strict=True):
        if value is None:  # missing or hidden: wait for it, else it is portal_changed
            expect_visible(page, selector, what=what, timeout_s=timeout)
    if values[0] != curp:
        curp_box = InPage(page, PORTAL.curp)
        curp_box.fill(curp)
        curp_box.blur()
    if values[1] != email:
        email_box = InPage(page, PORTAL.email)
        email_box.fill(email)
        email_box.blur()  # the page checks the address on blur (window.alert)
    if values[2] != email:
        _write_confirmation(page, email, typed=False)
    InPage(page, PORTAL.captcha_input).fill(answer)
    values, paste = _form_state(page)
    if values[2] != email or PORTAL.paste_refused in fold(paste):
        _write_confirmation(page, email, typed=True)


def _write_confirmation(page: Page, email: str, *, typed: bool) -> None:
    """The email confirmation, written at once or (``typed``) key by key, then left (the
    portal checks it on ``change``)."""
    confirm = InPage(page, PORTAL.email_confirm)
    if typed:
        confirm.fill("")
        confirm.press_sequentially(email)
    else:
        confirm.fill(email)
    confirm.blur()


#: Every shown block of the page with its text, links written out as "text (url)": the
#: candidates in which the classifier looks for the portal's message.
_TEXTS_JS = """() => {
  const shown = SHOWN_JS;
  const out = [];
  const blocks = document.body ? document.body.querySelectorAll(
    "div,span,p,li,td,th,strong,b,label,h1,h2,h3,h4,h5,font,center,em,section") : [];
  for (const e of blocks) {
    if (!shown(e)) continue;
    let text = e.innerText || "";
    if (!text.trim() || text.length > 4000) continue;
    for (const a of e.querySelectorAll("a[href]")) {
      const label = (a.innerText || "").trim();
      const href = a.href || "";
      if (label && /^https?:/.test(href) && !href.includes("#")) {
        text = text.replace(label, label + " (" + href + ")");
      }
    }
    out.push(text);
  }
  return out;
}""".replace("SHOWN_JS", SHOWN_JS)


def _page_messages(page: Page) -> list[str]:
    try:
        return list(page.evaluate(_TEXTS_JS))
    except PlaywrightError:
        return []  # the page is being replaced: read again


def _read_answer(page: Page, timeout: float) -> Match:
    """The portal's message on this page, in whatever container, waited for up to ``timeout``
    (a script may fill it, a modal may open); none known is ``PortalChanged``."""
    deadline = time.monotonic() + timeout
    while True:
        found = classify(_page_messages(page))
        if found is not None:
            return found
        if time.monotonic() >= deadline:
            raise PortalChanged(
                f"La respuesta del IMSS no muestra un mensaje conocido en {_path(page.url)}."
            )
        page.wait_for_timeout(POLL_MS * 2)


#: Waits in the page until the captcha image has a ``src`` (the page's script sets it on
#: document ready) and has loaded (``complete``; a broken image is complete too, with
#: ``naturalWidth`` 0), then returns it drawn onto a canvas at its natural size: one round trip.
#: ``"tainted"`` when the canvas may not be read (an image from another origin).
_CAPTCHA_JS = """sel => {
  const i = document.querySelector(sel);
  if (!i) return {state: "missing"};
  if (!i.getAttribute("src") || !i.complete) return null;
  if (!(i.naturalWidth > 0)) return {state: "broken"};
  try {
    const c = document.createElement("canvas");
    c.width = i.naturalWidth; c.height = i.naturalHeight;
    c.getContext("2d").drawImage(i, 0, 0);
    return {state: "ok", data: c.toDataURL("image/png")};
  } catch (e) {
    return {state: "tainted"};
  }
}"""


def _captcha_image(page: Page, settings: Settings) -> bytes:
    """The captcha exactly as the browser received it (fetching the servlet again would change
    the session's answer). An image that failed to load (the servlet answered 5xx) is
    ``PortalUnavailable``: a refresh gives another one."""
    img = expect_visible(
        page, PORTAL.captcha_img, what="imagen del captcha", timeout_s=settings.element_timeout_s
    )
    try:
        handle = page.wait_for_function(
            _CAPTCHA_JS,
            arg=PORTAL.captcha_img,
            polling=POLL_MS,
            timeout=settings.navigation_timeout_s * 1000,
        )
        found = handle.json_value()
    except PlaywrightTimeout as exc:
        raise PortalUnavailable("La imagen del captcha del IMSS no terminó de cargar.") from exc
    except PlaywrightError as exc:  # the page navigated away meanwhile
        raise PortalUnavailable(f"La imagen del captcha del IMSS no se pudo leer: {exc}") from exc
    state = found.get("state")
    if state == "ok":
        return base64.b64decode(found["data"].split(",", 1)[1])
    if state == "tainted":
        return img.screenshot()  # the rendered pixels will do
    if state == "missing":
        raise PortalUnavailable("La imagen del captcha del IMSS desapareció de la página.")
    raise PortalUnavailable(f"La imagen del captcha del IMSS no cargó ({PORTAL.captcha_img}).")


def _refresh_captcha(page: Page, form_url: str) -> None:
    """A new captcha image: a click on the refresh control (an ``<img>``), else loading the
    form again (a failed load shows up as a missing image, which the next captcha step
    reports)."""
    img = InPage(page, PORTAL.captcha_img)
    refresh = InPage(page, PORTAL.captcha_refresh)
    try:
        if img.count() and refresh.count() and refresh.is_visible():
            old = img.get_attribute("src")
            refresh.click()
            page.wait_for_function(
                "([sel, old]) => { const i = document.querySelector(sel);"
                " return i && i.getAttribute('src') && i.getAttribute('src') !== old"
                " && i.complete; }",
                arg=[PORTAL.captcha_img, old],
                polling=POLL_MS,
            )
            return
    except (PlaywrightTimeout, PlaywrightError):
        pass
    # Not a reload: after an answer the page is the POST's result.
    goto(page, form_url, what="el formulario del IMSS")


def _confirmation_link(ctx: CheckContext, email: str, since: float) -> str:
    """The link of email 1 (told by its link: the subject is not known); an email without it
    (a late email 2 of an earlier attempt) is claimed and skipped."""
    deadline = time.monotonic() + ctx.settings.email_timeout_s
    while True:
        mail = ctx.mailbox.wait_for(to=email, subject_contains=PORTAL.mail1_subject,
                                    since=since - 1,
                                    timeout_s=max(0.1, deadline - time.monotonic()))
        link = confirmation_link_in(mail)
        if link is not None:
            return link
        ctx.log.info("imss_skipped_email_without_link")
        if time.monotonic() >= deadline:
            raise PortalChanged(
                "El correo de confirmación del IMSS no trae la liga confirmacionUrl.")


def _confirm(page: Page, link: str, retry: StepRetry, timeout: float,
             log: Any, *, tried_before: bool = False) -> tuple[str | None, Match | None]:
    """Follow the confirmation link to the final page: ``(its URL, None)``; ``(None, None)``
    when the token was spent but its page never showed — the constancia was generated all the
    same and comes by the second email; ``(None, message)`` when the link answered with a
    business refusal (the daily limit). The link needs no session: it works in this context
    as in any other."""
    spent: list[int] = []
    loads: list[str] = []

    def answered(response: Response) -> None:
        # The link redirects to the final page only after it has used its token.
        if _path(response.url) == _path(link) and 300 <= response.status < 400:
            spent.append(response.status)

    def sent(request: Any) -> None:
        # A load that timed out may still have reached the portal and used the token.
        if _path(request.url) == _path(link):
            loads.append(request.url)

    page.on("response", answered)
    page.on("request", sent)
    try:
        open_page(page, link, what="la liga de confirmación del IMSS", retry=retry)
    except PortalUnavailable as exc:
        if not spent:
            raise  # the token is still good: the engine's retry may use it… or a new one
        log.warning("imss_final_page_unavailable", detail=mask_text(str(exc)))
        return None, None
    finally:
        page.remove_listener("response", answered)
        page.remove_listener("request", sent)
    if _report_control(page):
        return page.url, None
    found = classify(_page_messages(page))
    if found is not None and found.kind is Kind.REFUSED and found.status is not None:
        return None, found
    # A refusal after an earlier load of this same link (sent to the portal): that load may
    # have used the token before its page failed (the portal may call a spent token "invalido").
    # Waiting for the second email is right then; were it wrong, the email does not come and
    # the check is retried as unavailable — never a second query spent for nothing.
    if found is not None and (found.kind is Kind.TOKEN_SPENT
                              or (found.kind is Kind.TOKEN_INVALID
                                  and (spent or len(loads) > 1 or tried_before))):
        log.warning("imss_token_already_used")
        return None, None
    if found is not None and found.kind is Kind.TOKEN_INVALID:
        raise PortalUnavailable(f"La liga de confirmación del IMSS no funcionó: «{found.text}».")
    try:
        _wait_report_control(page, timeout)
    except PortalChanged:
        if found is not None and found.kind is Kind.FINAL:
            return page.url, None  # a final page without a control: email 2 brings the PDF
        raise
    return page.url, None


def _path(url: str) -> str:
    return url.split("?", 1)[0].split(";", 1)[0]


#: Marks the final page's report control (the first visible button, submit or link whose
#: folded text holds one of the labels) with ``data-constancias-report``; true if there is one.
_REPORT_CONTROL_JS = """labels => {
  const shown = SHOWN_JS;
  const fold = s => (s || "").normalize("NFKD").replace(/[\u0300-\u036f]/g, "")
    .toLowerCase().replace(/[^a-z0-9]+/g, " ").trim();
  const all = document.querySelectorAll(
    "button, input[type=submit], input[type=button], input[type=image], a[href]");
  for (const e of all) {
    if (!shown(e)) continue;
    const text = fold(e.innerText || e.value || e.alt || e.title);
    if (labels.some(l => text.includes(l))) {
      e.setAttribute("data-constancias-report", "1");
      return true;
    }
  }
  return false;
}""".replace("SHOWN_JS", SHOWN_JS)
_REPORT_MARK = "[data-constancias-report]"


def _report_control(page: Page) -> bool:
    try:
        return bool(page.evaluate(_REPORT_CONTROL_JS, list(PORTAL.report_labels)))
    except PlaywrightError:
        return False


def _wait_report_control(page: Page, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not _report_control(page):
        if time.monotonic() >= deadline:
            if reason := unavailable_reason(page):
                raise PortalUnavailable(reason)
            raise PortalChanged(
                f"No se encontró el botón del reporte en la página final ({_path(page.url)}).")
        page.wait_for_timeout(POLL_MS * 2)


def _download_report(
    page: Page, final_url: str, dest: Path, settings: Settings, retry: StepRetry, log: Any
) -> bool:
    """Press the final page's report control and save the PDF, retried from the final page;
    ``False`` if no PDF came (the caller falls back to the second email)."""

    def fetch() -> None:
        _wait_report_control(page, settings.element_timeout_s)
        data = _report_bytes(page, InPage(page, _REPORT_MARK), settings.navigation_timeout_s)
        if not data:
            raise PortalUnavailable(unavailable_reason(page) or "El reporte no dio el PDF.")
        dest.write_bytes(data)

    try:
        retry(
            fetch,
            what="el reporte del IMSS",
            recover=lambda: open_page(
                page, final_url, what="la página final del IMSS", retry=retry
            ),
        )
    except (PortalUnavailable, PortalChanged) as exc:
        log.warning("imss_view_report_failed", detail=mask_text(str(exc)))
        return False
    return True


def _report_bytes(page: Page, control: InPage, timeout_s: float) -> bytes | None:
    """Click ``control`` and return the PDF its request is answered with, whether the answer
    is inline or an attachment: a browser with a PDF viewer shows an inline PDF (its bytes are
    read from the response), one without (headless Chromium) downloads it, as it does any
    attachment (read from the download). ``None`` when the request failed or answered 5xx."""
    context = page.context
    responses: list[Response] = []
    failed: list[str] = []
    downloads: list[Any] = []

    def answered(response: Response) -> None:
        if response.request.is_navigation_request():
            responses.append(response)

    def lost(request: Any) -> None:
        # A download also ends its navigation as "aborted", just before it is announced.
        if request.is_navigation_request():
            failed.append(request.url)

    def download(item: Any) -> None:
        downloads.append(item)

    def watch(new_page: Page) -> None:
        new_page.on("download", download)
        new_page.on("response", answered)

    page.on("response", answered)
    page.on("requestfailed", lost)
    page.on("download", download)
    context.on("page", watch)
    try:
        with PdfCatcher(context) as caught:
            control.click()
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline and not downloads:
                data = caught.pdf or _pdf_body(responses)
                if data is not None:
                    return data
                if failed or any(r.status >= 500 for r in responses):
                    grace = time.monotonic() + 1.0  # a download may still be announced
                    while not downloads and time.monotonic() < grace:
                        page.wait_for_timeout(100)
                    break
                page.wait_for_timeout(100)
            if caught.pdf is not None:
                return caught.pdf
        if downloads:
            path = downloads[0].path()
            return Path(path).read_bytes() if path else None
        return None
    except PlaywrightError as exc:
        raise PortalUnavailable(f"El reporte del IMSS falló ({type(exc).__name__}).") from exc
    finally:
        page.remove_listener("response", answered)
        page.remove_listener("requestfailed", lost)
        page.remove_listener("download", download)
        context.remove_listener("page", watch)


def _pdf_body(responses: list[Response]) -> bytes | None:
    """The body of the first PDF response shown in a page (one that became a download has no
    body to read: the download gives it)."""
    for response in responses:
        if "pdf" not in (response.headers.get("content-type") or ""):
            continue
        try:
            body = response.body()
        except PlaywrightError:
            continue
        if body.startswith(b"%PDF-"):
            return body
    return None


def _second_email(ctx: CheckContext, email: str, since: float, *, need: bool) -> Any | None:
    """The email with the PDF attached: waited for fully when it is the only PDF left,
    briefly otherwise (only to claim it). Its subject is not known ([A]): any email to this
    address is looked at, and one without a PDF (a late first email) is claimed and skipped."""
    settings = ctx.settings
    timeout = settings.email_timeout_s if need else min(EMAIL2_GRACE_S, settings.email_timeout_s)
    deadline = time.monotonic() + timeout
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            message = ctx.mailbox.wait_for(
                to=email,
                subject_contains=PORTAL.mail2_subject,
                since=since - 1,
                timeout_s=remaining,
            )
        except EmailNotReceived:
            break
        if pdf_attachment(message) is not None:
            return message
        ctx.log.info("imss_skipped_email_without_pdf")
    ctx.log.info("imss_second_email_missing", waited_s=timeout)
    return None


def confirmation_link_in(message: Any) -> str | None:
    """Email 1's link (``confirmacionUrl``) in a message, if it has one."""
    link = next((u for u in message.links if PORTAL.confirm_link_fragment in u), None)
    return str(link) if link is not None else None


def pdf_attachment(message: Any) -> bytes | None:
    for filename, content_type, data in message.attachments:
        if content_type == "application/pdf" or str(filename).lower().endswith(".pdf"):
            return bytes(data)
    return None


def _save_attachment(message: Any, dest: Path) -> None:
    data = pdf_attachment(message)
    if data is None:
        raise PortalChanged("El segundo correo del IMSS no trae la constancia en PDF adjunta.")
    dest.write_bytes(data)


def _detail(status: Status, facts: Any) -> str:
    until = facts.valid_until.strftime("%d/%m/%Y") if facts.valid_until else "un día"
    if status is Status.ENTITLED:
        nss = f" con NSS {facts.nss}" if facts.nss else ""
        return f"Vigente{nss}: tiene derecho a servicio médico. Constancia válida hasta {until}."
    return f"Sin derecho a servicio médico. Constancia válida hasta {until}."


# --- the registry's entry (flows/registry.py): all the rest of the system knows of this portal
# Started first in a batch: an IMSS check (captcha rounds, two e-mails, a download) takes two
# to three times an ISSSTE one.
def _doctor_form(page: Page, settings: Settings, retry: StepRetry) -> str:
    """``constancias doctor``'s look at the form: the information page's link followed and
    every element the flow fills and clicks found; nothing sent."""
    follow_info_link(page, settings, retry)
    expect_form(page, settings)
    names = ", ".join(what for _, what in FORM_ELEMENTS)
    return (f"La liga «{PORTAL.info_link_text}» lleva al formulario; están: {names}. "
            "No se envió (no se gastó ninguna consulta).")


DECLARATION = register(Portal(
    name="imss", title="IMSS", procedure="Constancia de No Derechohabiencia", order=0, flow=run,
    url_setting="imss_url", rate_setting="rate_limit_imss",
    concurrency_setting="max_concurrency_imss", pdf_title="CONSTANCIA DE NO DERECHOHABIENCIA",
    mail_steps=MailSteps(send=send_step, link=link_step, pdf=pdf_step,
                         link_in=confirmation_link_in, pdf_in=pdf_attachment),
    real_hosts=("imss.gob.mx",),
    # Doctor never sends the form: the page it refreshes the captcha on is the form itself.
    doctor=DoctorLook(open=open_info_page, page_name="Página informativa", form=_doctor_form,
                      captcha=captcha_image,
                      refresh_captcha=lambda page: refresh_captcha(page, page.url)),
))
