"""ISSSTE — Acreditación de No Afiliación (Oficina Virtual, SINAVID).

Procedure page → CURP → "Buscar" → the verdict shown on the page → not affiliated: "Descargar"
gives the PDF, whose text is verified; affiliated: no document; unknown CURP: not found.

Every selector and portal text the flow depends on is in ``PORTAL`` below.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from flows.base import CheckContext, Outcome
from flows.errors import FlowError, PortalChanged, PortalUnavailable
from flows.pdf import read_constancia
from flows.registry import Portal, register
from flows.steps import (
    SHOWN_JS,
    InPage,
    StepRetry,
    Stopwatch,
    download_by_click,
    expect_visible,
    goto,
    norm,
    open_page,
    unavailable_reason,
)
from worker.core.statuses import Status

if TYPE_CHECKING:
    from playwright.sync_api import Page

    from worker.core.settings import Settings

__all__ = ["DECLARATION", "PORTAL", "IssstePortal", "run"]

#: Polling of the in-page wait for the answer, in ms (an answer takes a round trip or more).
_POLL_MS = 100


@dataclass(frozen=True)
class IssstePortal:
    """Selectors and texts of the ISSSTE portal. Texts are normalised fragments (lower case,
    no accents). Selectors are plain CSS: the answer is read inside the page
    (``document.querySelector``)."""

    curp: str = "#txtCurp"
    search: str = "#btnBuscar"
    result: str = "#resultado"
    verdict: str = "#resultadoDictamen"
    download: str = "#btnDescargar"
    message: str = "#mensaje"

    verdict_not_affiliated: str = "no afiliado"
    verdict_affiliated: str = "afiliado"
    msg_not_found: str = "no se encontro informacion con la curp"
    msg_affiliated: str = "se encuentra afiliada al issste"
    msg_not_affiliated: str = "no se encontro registro de afiliacion vigente"
    #: Messages that mean "try again later".
    msg_failures: tuple[str, ...] = ("error al realizar la consulta", "intenta mas tarde")
    msg_curp_format: str = "la curp no tiene un formato valido"


PORTAL = IssstePortal()


def run(ctx: CheckContext) -> Outcome:
    """Check ``ctx.person`` on ISSSTE; see the module docstring."""
    settings, log = ctx.settings, ctx.log
    curp = ctx.person.curp
    timeout = settings.element_timeout_s
    sw = Stopwatch()
    retry = StepRetry.from_settings(settings, log)
    page = ctx.browser_context.new_page()

    def search() -> tuple[str, str]:
        # Searching is idempotent (no daily limit on ISSSTE): a failed search is made again,
        # on the same page when it is still there (its script clears the old answer).
        if not _shown(page, PORTAL.curp):
            goto(page, settings.issste_url, what="la página del ISSSTE")
        return _search(page, curp, settings)

    with sw("open"):
        open_page(page, settings.issste_url, what="la página del ISSSTE", retry=retry)
        expect_visible(page, PORTAL.curp, what="campo CURP", timeout_s=timeout)
        expect_visible(page, PORTAL.search, what="botón Buscar", timeout_s=timeout)
    with sw("search"):
        verdict, message = retry(search, what="la búsqueda del ISSSTE")
    log.info("issste_answer", verdict=verdict, seconds=sw.timings["search"])

    if verdict == "not_found":
        return Outcome(Status.CURP_NOT_FOUND, detail=message, timings=sw.timings)
    if verdict == "affiliated":
        return Outcome(
            Status.AFFILIATED,
            detail=message or "Afiliado al ISSSTE: el ISSSTE no emite la acreditación.",
            timings=sw.timings,
        )

    def search_again() -> None:
        # A failed download replaced the page: the link exists only on a search's answer.
        open_page(page, settings.issste_url, what="la página del ISSSTE", retry=retry)
        again, text = retry(search, what="la búsqueda del ISSSTE")
        if again != "not_affiliated":
            raise FlowError(f"El ISSSTE cambió su respuesta entre dos búsquedas: «{text}»")

    pdf_path = Path(ctx.work_dir) / "issste.pdf"
    with sw("pdf"):
        retry(
            lambda: _download(page, pdf_path, settings),
            what="la descarga del ISSSTE",
            recover=search_again,
        )
    with sw("verify"):
        facts = read_constancia(pdf_path, portal="issste", curp=curp)
    status = Status(facts.result)
    log.info("issste_verdict", status=status.value)
    folio = f" (folio {facts.folio})" if facts.folio else ""
    return Outcome(
        status,
        detail=f"No afiliado al ISSSTE: acreditación de no afiliación obtenida{folio}.",
        pdf_path=pdf_path,
        facts=facts,
        timings=sw.timings,
    )


def _search(page: Page, curp: str, settings: Settings) -> tuple[str, str]:
    """Type the CURP, press "Buscar" and wait for the answer (see ``_wait_for_answer``)."""
    timeout = settings.element_timeout_s
    box = expect_visible(page, PORTAL.curp, what="campo CURP", timeout_s=timeout)
    button = expect_visible(page, PORTAL.search, what="botón Buscar", timeout_s=timeout)
    box.fill(curp)
    button.click()
    return _wait_for_answer(page, settings.navigation_timeout_s)


def _download(page: Page, dest: Path, settings: Settings) -> None:
    """Click "Descargar" and save the PDF; a failure to get it is ``PortalUnavailable``."""
    link = expect_visible(
        page, PORTAL.download, what="botón Descargar", timeout_s=settings.element_timeout_s
    )
    try:
        saved = download_by_click(page, link, dest, timeout_s=settings.navigation_timeout_s)
    except PlaywrightError as exc:
        raise PortalUnavailable(f"La descarga del ISSSTE falló: {type(exc).__name__}") from exc
    if not saved:
        raise PortalUnavailable(
            unavailable_reason(page) or "La descarga de la acreditación del ISSSTE no se completó."
        )


#: The answer's texts as the page shows them (``""`` when hidden or missing), returned as soon
#: as they differ from ``last``: the flow waits in the page, not in a loop of round trips.
_ANSWER_JS = """([sels, last]) => {
  const shown = SHOWN_JS;
  const text = s => {
    const e = document.querySelector(s);
    return shown(e) ? e.innerText.split(/\\s+/).filter(Boolean).join(" ") : "";
  };
  const now = sels.map(text);
  return now.some((t, i) => t !== last[i]) ? now : null;
}""".replace("SHOWN_JS", SHOWN_JS)

#: How long the flow waits in the page for the answer to change before it looks for a "down"
#: page again (a navigation away also ends the wait).
_RECHECK_MS = 1000


def _wait_for_answer(page: Page, timeout_s: float) -> tuple[str, str]:
    """Wait for the search to answer: ``(verdict, message)`` with verdict ``not_affiliated``,
    ``affiliated`` or ``not_found``. The answer is rendered by the page's script: the flow
    waits in the page for the message or the verdict to change, then reads them."""
    deadline = time.monotonic() + timeout_s
    message = verdict_text = ""
    seen: list[str | None] = [None, None]  # nothing seen yet: the first read returns at once
    while True:
        message, verdict_text = _answer_texts(page, seen, deadline)
        seen = [message, verdict_text]
        normalised = norm(message)
        if PORTAL.msg_not_found in normalised:
            return "not_found", message
        if PORTAL.msg_curp_format in normalised:
            raise FlowError(f"El ISSSTE rechazó el formato de la CURP: «{message}»")
        failed = any(fragment in normalised for fragment in PORTAL.msg_failures)
        if failed and PORTAL.msg_not_affiliated not in normalised:
            raise PortalUnavailable(f"El ISSSTE no pudo hacer la consulta: «{message}»")
        verdict = norm(verdict_text)
        if verdict in (PORTAL.verdict_not_affiliated, PORTAL.verdict_affiliated) and not message:
            # A page whose script shows the verdict first and its message a moment later.
            message = _visible_text(page, PORTAL.message)
            normalised = norm(message)
        if verdict == PORTAL.verdict_not_affiliated:
            return "not_affiliated", message
        if verdict == PORTAL.verdict_affiliated or PORTAL.msg_affiliated in normalised:
            return "affiliated", message
        if verdict:
            raise FlowError(f"Dictamen desconocido del ISSSTE: «{verdict_text}»")
        reason = unavailable_reason(page)
        if reason:
            raise PortalUnavailable(reason)
        if time.monotonic() >= deadline:
            break
    if message:
        raise FlowError(f"Mensaje desconocido del ISSSTE: «{message}»")
    if not (InPage(page, PORTAL.result).count() or InPage(page, PORTAL.message).count()):
        raise PortalChanged(
            f"La página del ISSSTE no tiene dónde mostrar el resultado "
            f"({PORTAL.result} / {PORTAL.message})."
        )
    raise PortalUnavailable(f"El ISSSTE no respondió la búsqueda en {timeout_s:g} s.")


def _answer_texts(page: Page, seen: list[str | None], deadline: float) -> tuple[str, str]:
    """``(message, verdict)`` once either differs from ``seen`` (at once on the first call), or
    as they were after ``_RECHECK_MS`` without a change. A page that navigated meanwhile (an
    error page replaced it) reads as empty; the caller then looks for a "down" page."""
    wait_ms = max(1.0, min(_RECHECK_MS, (deadline - time.monotonic()) * 1000))
    try:
        handle = page.wait_for_function(
            _ANSWER_JS, arg=[[PORTAL.message, PORTAL.verdict], seen],
            polling=_POLL_MS, timeout=wait_ms,
        )
        message, verdict = handle.json_value()
        return message, verdict
    except PlaywrightTimeout:
        return seen[0] or "", seen[1] or ""
    except PlaywrightError:
        if page.is_closed():
            raise
        time.sleep(_POLL_MS / 1000)  # navigating: the next round reads the new page
        return "", ""


def _visible_text(page: Page, selector: str) -> str:
    try:
        return InPage(page, selector).visible_text()
    except PlaywrightError:  # navigating
        return ""


def _shown(page: Page, selector: str) -> bool:
    try:
        return InPage(page, selector).is_visible()
    except PlaywrightError:  # navigating
        return False


# --- the registry's entry (flows/registry.py): all the rest of the system knows of this portal
DECLARATION = register(Portal(
    name="issste", title="ISSSTE", procedure="Acreditación de No Afiliación", order=1,
    flow=run,
    url_setting="issste_url", rate_setting="rate_limit_issste",
    concurrency_setting="max_concurrency_issste", pdf_title="NO AFILIACION",
))
