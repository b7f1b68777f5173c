"""IMSS — Constancia de No Derechohabiencia.

Information page → "Tramitar Constancia" → form (CURP, the per-CURP email twice, captcha) →
the server's message → confirmation email → its link, in the same browser context → final
page → the PDF from "Ver reporte" (else from the second email) → the verdict read from the PDF.

A flaky portal (5xx, "Servicio no disponible", a broken captcha image) costs a retry of the one
step that failed (``flows.steps.StepRetry``), not of the whole check: after the form is
accepted, a whole-check retry would spend the second of the 2 daily queries per CURP.

Every selector and portal text the flow depends on is in ``PORTAL`` below: when the portal
changes, that is where the fix goes.
"""

from __future__ import annotations

import base64
import itertools
import secrets
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from flows.base import CheckContext, Outcome
from flows.errors import (
    CaptchaUnsolved,
    EmailNotReceived,
    FlowError,
    PortalChanged,
    PortalUnavailable,
)
from flows.pdf import InvalidConstancia, read_constancia
from flows.registry import Portal, register
from flows.steps import (
    POLL_MS,
    SHOWN_JS,
    InPage,
    StepRetry,
    Stopwatch,
    download_by_click,
    expect_visible,
    first_visible,
    goto,
    navigating,
    norm,
    open_page,
    page_text,
    unavailable_reason,
)
from worker.core.logs import mask_text
from worker.core.statuses import Status

if TYPE_CHECKING:
    from playwright.sync_api import Page, Response

    from worker.core.settings import Settings

__all__ = ["DECLARATION", "PORTAL", "ImssPortal", "run", "classify_message"]


@dataclass(frozen=True)
class ImssPortal:
    """Selectors and texts of the IMSS portal (SPEC §3, verbatim). Messages are matched on
    normalised fragments (lower case, no accents), so "válido"/"valido" both match. The form's
    and the captcha's selectors are plain CSS: they are read inside the page
    (``document.querySelector``, flows.steps.InPage); the information page's link is the
    ``info_link`` whose text contains ``info_link_text``."""

    info_link: str = "a"
    info_link_text: str = "Tramitar Constancia"
    curp: str = "#registroCurp"
    email: str = "#correoInput"
    email_confirm: str = "#correoConfirmacionInput"
    captcha_img: str = "img#captchaImg"
    captcha_refresh: str = "#refreshCaptcha"
    captcha_input: str = "input[name=captcha]"
    submit: str = "#continuar"
    error: str = ".alert.alert-danger"
    success: str = ".alert.alert-success"
    field_error: str = ".help-block.error"
    view_report: str = "#btnVerReporte"

    success_fragment: str = "le hemos enviado una liga de confirmacion"
    confirm_link_fragment: str = "confirmacionUrl"
    mail1_subject: str = "Confirmación de correo electrónico"
    mail2_subject: str = "Constancia de No Derechohabiencia"

    #: Server messages → status. ``None``: the captcha was refused, try another one.
    messages: tuple[tuple[str, Status | None], ...] = (
        ("captcha no fue valido", None),
        ("este campo es obligatorio", None),
        ("no se localizo informacion en renapo", Status.CURP_NOT_FOUND),
        ("ha localizado inconsistencias en tus datos", Status.DATA_INCONSISTENT),
        ("agotado el numero de consultas", Status.DAILY_LIMIT),
        ("dominio del correo electronico es invalido", Status.EMAIL_REJECTED),
        ("relacionado a una curp distinta", Status.EMAIL_REJECTED),
        # Client-side messages (next to the field): the configured address is refused.
        ("el correo no es valido", Status.EMAIL_REJECTED),
        ("correos gmail no deben contener", Status.EMAIL_REJECTED),
    )
    #: The confirmation link did not work: the whole query must be made again (retried).
    token_errors: tuple[str, ...] = ("confirmacion invalida", "token expirado")
    #: The link was already used — by this check's own earlier load, whose page then failed:
    #: the constancia exists and the second email brings it.
    token_spent: str = "este token ya fue utilizado"  # noqa: S105 - a portal message
    #: The confirmation refused text that was not typed (its anti-paste script).
    paste_refused: str = "no se permite copiar-pegar"


PORTAL = ImssPortal()

#: Retries of the confirmation link, as a multiple of ``step_retries``: once the form is
#: accepted, giving up means a whole-check retry, which spends the second of the day's 2 queries.
CONFIRM_RETRY_FACTOR = 2

#: How long to wait for the second email (which carries the same PDF) once the PDF came from
#: "Ver reporte": only to claim it so it does not pile up in the mailbox; never fails a check.
EMAIL2_GRACE_S = 5.0


def classify_message(text: str) -> tuple[bool, Status | None]:
    """``(known, status)`` for a portal message: ``(True, None)`` means "wrong captcha"."""
    normalised = norm(text)
    for fragment, status in PORTAL.messages:
        if fragment in normalised:
            return True, status
    return False, None


def run(ctx: CheckContext) -> Outcome:
    """Check ``ctx.person`` on IMSS; see the module docstring."""
    settings, log = ctx.settings, ctx.log
    curp = ctx.person.curp
    email = settings.email_for(curp)
    timeout = settings.element_timeout_s
    sw = Stopwatch()
    retry = StepRetry.from_settings(settings, log)
    page = ctx.browser_context.new_page()

    with sw("open"):
        open_page(page, settings.imss_url, what="la página informativa del IMSS", retry=retry)
        link = expect_visible(page, PORTAL.info_link, text=PORTAL.info_link_text,
                              what="liga Tramitar Constancia", timeout_s=timeout)
        href = link.get_attribute("href")
        if not href:
            raise PortalChanged("La liga «Tramitar Constancia» no tiene destino (href).")
        # Follow the link's target instead of clicking: it may open a new tab.
        form_url = urljoin(page.url, href)
        open_page(page, form_url, what="el formulario del IMSS", retry=retry)
    log.info("imss_form_opened", seconds=sw.timings["open"])

    message = ""
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
        kind, message, key = retry(
            lambda: _send_form(
                ctx, page, sw, retry, form_url, email, f"imss-{check_key}-{next(solves)}"
            ),
            what="el formulario del IMSS",
            recover=lambda: open_page(page, form_url, what="el formulario del IMSS", retry=retry),
        )
        if kind == "no_answer":
            log.info("imss_captcha_no_answer", attempt=attempt)
            continue
        if kind == "success":
            log.info("imss_query_accepted", attempt=attempt)
            break
        known, status = classify_message(message)
        if known and status is None:
            ctx.captcha.reject(key)
            log.info("imss_captcha_refused", attempt=attempt)
            continue
        if known and status is not None:
            log.info("imss_portal_refused", status=status.value)
            return Outcome(status=status, detail=message, timings=sw.timings)
        raise FlowError(f"Mensaje desconocido del portal del IMSS: «{message}»")
    else:
        raise CaptchaUnsolved(
            f"El captcha del IMSS no se resolvió en {settings.captcha_attempts} intento(s)."
        )

    # From here on the query is spent: every step is retried on its own, and when the page
    # cannot give the PDF the second email (sent once the link is followed) still can.
    with sw("email"):
        mail1 = ctx.mailbox.wait_for(
            to=email,
            subject_contains=PORTAL.mail1_subject,
            since=submitted_at - 1,
            timeout_s=settings.email_timeout_s,
        )
    confirm_url = next((u for u in mail1.links if PORTAL.confirm_link_fragment in u), None)
    if confirm_url is None:
        raise PortalChanged("El correo de confirmación del IMSS no trae la liga confirmacionUrl.")
    log.info("imss_confirmation_received", seconds=sw.timings["email"])

    confirmed_at = time.time()
    with sw("confirm"):
        patient = replace(retry, retries=retry.retries * CONFIRM_RETRY_FACTOR)
        final_url = _confirm(page, confirm_url, patient, timeout, log)

    pdf_path = Path(ctx.work_dir) / "imss.pdf"
    facts = None
    source = "page"
    downloaded = False
    if final_url is not None:
        with sw("pdf"):
            downloaded = _download_report(page, final_url, pdf_path, settings, retry, log)
    if downloaded:
        with sw("verify"):
            try:
                facts = read_constancia(pdf_path, portal="imss", curp=curp)
            except InvalidConstancia as exc:
                log.warning("imss_page_pdf_invalid", detail=str(exc))
    with sw("email2"):
        # Always claimed, even when the page gave the PDF, so it does not pile up.
        mail2 = _second_email(ctx, email, confirmed_at, need=facts is None)
    if facts is None:
        if mail2 is None:
            raise EmailNotReceived(
                "No se obtuvo la constancia: «Ver reporte» falló y el segundo correo "
                "del IMSS no llegó."
            )
        _save_attachment(mail2, pdf_path)
        source = "email"
        with sw("verify"):
            facts = read_constancia(pdf_path, portal="imss", curp=curp)
    if facts is None:  # unreachable: read_constancia raises instead
        raise FlowError("La constancia del IMSS no se pudo leer.")
    status = Status(facts.result)
    log.info("imss_verdict", status=status.value, source=source)
    return Outcome(
        status=status,
        detail=_detail(status, facts),
        pdf_path=pdf_path,
        facts=facts,
        timings=sw.timings,
        extra={"pdf_source": source},
    )


# --- steps --------------------------------------------------------------------------------


def _send_form(
    ctx: CheckContext,
    page: Page,
    sw: Stopwatch,
    retry: StepRetry,
    form_url: str,
    email: str,
    key: str,
) -> tuple[str, str, str]:
    """One captcha round: image → solver → form → the portal's answer, as
    ``(kind, message, key)`` with kind ``success``, ``error`` or ``no_answer`` (the solver had
    no reading: rejected and refreshed here, nothing sent)."""
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
        return "no_answer", "", key
    with sw("form"):
        _fill_form(page, ctx.person.curp, email, answer, timeout)
        button = expect_visible(page, PORTAL.submit, what="botón Continuar", timeout_s=timeout)
    with sw("submit"):
        with navigating(page, what="la respuesta del formulario del IMSS"):
            button.click()
        kind, message = _read_answer(page, timeout)
    return kind, message, key



#: Reads the form in one round trip: each field's value, or ``None`` when it is missing or not
#: visible (then ``expect_visible`` waits for it and names it), and the page's own field errors.
_FORM_STATE_JS = """sels => {
  const shown = SHOWN_JS;
  const fields = sels.fields.map(s => {
    const e = document.querySelector(s);
    return shown(e) ? e.value : null;
  });
  const errors = Array.from(document.querySelectorAll(sels.errors))
    .filter(shown).map(e => e.innerText.trim()).filter(t => t);
  return {fields, errors};
}""".replace("SHOWN_JS", SHOWN_JS)


def _form_state(page: Page) -> tuple[list[str | None], list[str]]:
    fields = [PORTAL.curp, PORTAL.email, PORTAL.email_confirm, PORTAL.captcha_input]
    state = page.evaluate(_FORM_STATE_JS, {"fields": fields, "errors": PORTAL.field_error})
    return state["fields"], state["errors"]


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
        InPage(page, PORTAL.email).fill(email)
    if values[2] != email:
        _write_confirmation(page, email, typed=False)
    InPage(page, PORTAL.captcha_input).fill(answer)
    values, errors = _form_state(page)
    if values[2] != email or any(PORTAL.paste_refused in norm(text) for text in errors):
        _write_confirmation(page, email, typed=True)
        values, errors = _form_state(page)
    # The page's own checks (email format, Gmail rule) show their message next to the field
    # and keep the form from being sent: report it instead of waiting for a navigation.
    for text in errors:
        known, status = classify_message(text)
        if known and status is not None:
            raise _ClientRefusal(status, text)


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


class _ClientRefusal(FlowError):
    """The page's script refused the data before sending it (e.g. the email format)."""

    def __init__(self, status: Status, message: str) -> None:
        super().__init__(message)
        self.status = status


def _read_answer(page: Page, timeout: float) -> tuple[str, str]:
    """``("success"|"error", text)`` of the page the form led to."""
    found = first_visible(
        page, {"error": PORTAL.error, "success": PORTAL.success}, timeout_s=timeout
    )
    if found is None:
        raise PortalChanged(
            f"La respuesta del IMSS no muestra mensaje ({PORTAL.error} / {PORTAL.success})."
        )
    kind, locator = found
    text = " ".join(locator.inner_text().split())
    if kind == "success" and PORTAL.success_fragment not in norm(text):
        raise FlowError(f"Mensaje de éxito desconocido del portal del IMSS: «{text}»")
    return kind, text


#: Waits in the page until the captcha image has loaded (``complete``; a broken image is complete
#: too, with ``naturalWidth`` 0), then returns it drawn onto a canvas at its natural size: one
#: round trip. ``"tainted"`` when the canvas may not be read (an image from another origin).
_CAPTCHA_JS = """sel => {
  const i = document.querySelector(sel);
  if (!i) return {state: "missing"};
  if (!i.complete) return null;
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
    """A new captcha image: the refresh icon, else loading the form again (a failed load shows
    up as a missing image, which the next captcha step reports)."""
    img = InPage(page, PORTAL.captcha_img)
    refresh = InPage(page, PORTAL.captcha_refresh)
    try:
        if img.count() and refresh.count() and refresh.is_visible():
            old = img.get_attribute("src")
            refresh.click()
            page.wait_for_function(
                "([sel, old]) => { const i = document.querySelector(sel);"
                " return i && i.getAttribute('src') !== old && i.complete; }",
                arg=[PORTAL.captcha_img, old],
                polling=POLL_MS,
            )
            return
    except (PlaywrightTimeout, PlaywrightError):
        pass
    # Not a reload: after an answer the page is the POST's result.
    goto(page, form_url, what="el formulario del IMSS")


def _confirm(page: Page, link: str, retry: StepRetry, timeout: float, log: Any) -> str | None:
    """Follow the confirmation link (in this context: the portal expects its own session) to
    the final page; its URL, or ``None`` when the token was spent but its page never showed —
    the constancia was generated all the same and comes by the second email."""
    spent: list[int] = []

    def answered(response: Response) -> None:
        # The link redirects to the final page only after it has used its token.
        if _path(response.url) == _path(link) and 300 <= response.status < 400:
            spent.append(response.status)

    page.on("response", answered)
    try:
        open_page(page, link, what="la liga de confirmación del IMSS", retry=retry)
    except PortalUnavailable as exc:
        if not spent:
            raise  # the token is still good: the engine's retry may use it… or a new one
        log.warning("imss_final_page_unavailable", detail=mask_text(str(exc)))
        return None
    finally:
        page.remove_listener("response", answered)
    text = norm(page_text(page))
    if PORTAL.token_spent in text:
        # An earlier load of this same link used it before its page failed.
        log.warning("imss_token_already_used")
        return None
    for fragment in PORTAL.token_errors:
        if fragment in text:
            raise PortalUnavailable(f"La liga de confirmación del IMSS no funcionó: «{fragment}».")
    expect_visible(page, PORTAL.view_report, what="botón Ver reporte", timeout_s=timeout)
    return page.url


def _path(url: str) -> str:
    return url.split("?", 1)[0]


def _download_report(
    page: Page, final_url: str, dest: Path, settings: Settings, retry: StepRetry, log: Any
) -> bool:
    """Click "Ver reporte" and save the PDF, retried from the final page; ``False`` if no PDF
    came (the caller falls back to the second email)."""

    def fetch() -> None:
        button = expect_visible(
            page, PORTAL.view_report, what="botón Ver reporte", timeout_s=settings.element_timeout_s
        )
        try:
            saved = download_by_click(page, button, dest, timeout_s=settings.navigation_timeout_s)
        except PlaywrightError as exc:
            raise PortalUnavailable(f"«Ver reporte» falló ({type(exc).__name__}).") from exc
        if not saved:
            raise PortalUnavailable(unavailable_reason(page) or "«Ver reporte» no dio el PDF.")

    try:
        retry(
            fetch,
            what="el reporte del IMSS",
            recover=lambda: open_page(
                page, final_url, what="la página final del IMSS", retry=retry
            ),
        )
    except PortalUnavailable as exc:
        log.warning("imss_view_report_failed", detail=mask_text(str(exc)))
        return False
    return True


def _second_email(ctx: CheckContext, email: str, since: float, *, need: bool) -> Any | None:
    """The email with the PDF attached: waited for fully when it is the only PDF left,
    briefly otherwise (only to claim it). Its subject is part of the first email's subject,
    so a late first email (from an earlier attempt) is claimed and skipped on the way."""
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
        if _pdf_attachment(message) is not None:
            return message
        ctx.log.info("imss_skipped_email_without_pdf")
    ctx.log.info("imss_second_email_missing", waited_s=timeout)
    return None


def _pdf_attachment(message: Any) -> bytes | None:
    for filename, content_type, data in message.attachments:
        if content_type == "application/pdf" or str(filename).lower().endswith(".pdf"):
            return bytes(data)
    return None


def _save_attachment(message: Any, dest: Path) -> None:
    data = _pdf_attachment(message)
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
DECLARATION = register(Portal(
    name="imss", title="IMSS", procedure="Constancia de No Derechohabiencia", order=0, flow=run,
    url_setting="imss_url", rate_setting="rate_limit_imss",
    concurrency_setting="max_concurrency_imss", pdf_title="CONSTANCIA DE NO DERECHOHABIENCIA",
))
