"""ISSSTE — Acreditación de No Afiliación (Oficina Virtual: DotNetNuke on ASP.NET WebForms).

Procedure page → CURP → "Buscar" (a postback: the whole page, or an UpdatePanel's partial
postback) → the verdict on the page → not affiliated: "Descargar" gives the PDF (as a download,
in a window the click opens, or in an embedded viewer), whose text is verified; affiliated: no
document; unknown CURP: not found.

The real page's ids carry a module prefix that differs between deployments
(``dnn_ctr<N>_View_…``) and its messages are not known (SPEC §3, ISSSTE [A]), so the flow finds
controls by id suffix, label and visible text, never by a full id, and reads the answer as the
text the postback added to the page. An ASP.NET error page or a refused (stale) viewstate is
``PortalUnavailable``: the search is made again on a freshly loaded page. A captcha, which the
portal is not known to have, is ``portal_changed``.

Every selector and portal text the flow depends on is in ``PORTAL`` below.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from flows.base import CheckContext, IssstePdfSource, Outcome
from flows.errors import FlowError, PortalChanged, PortalUnavailable
from flows.pdf import read_constancia
from flows.registry import DoctorLook, Portal, register
from flows.steps import (
    POLL_MS,
    SHOWN_JS,
    InPage,
    StepRetry,
    Stopwatch,
    goto,
    norm,
    open_page,
    page_text,
    wait_in_page,
)
from flows.steps import (
    raise_if_unavailable as _raise_if_down,
)
from worker.core.statuses import Status

if TYPE_CHECKING:
    from playwright.sync_api import Page, Response

    from worker.core.settings import Settings

__all__ = ["DECLARATION", "PORTAL", "Control", "IssstePortal", "run", "open_procedure_page",
           "find_search_controls"]

_TEXT_INPUT = ('input:not([type]), input[type="text" i], input[type="search" i], '
               'input[type="tel" i]')
_BUTTON = ('a, button, input[type="submit" i], input[type="button" i], input[type="image" i], '
           '[role="button"]')


@dataclass(frozen=True)
class Control:
    """How one control is found: the first visible element of ``kind`` whose id or name ends
    with one of ``suffixes`` (case-insensitive), else the one a ``<label>`` containing one of
    ``labels`` points at, else one whose text, value, title or placeholder starts with one of
    ``texts``. Texts are normalised (lower case, no accents)."""

    what: str
    """Its Spanish name, for messages."""
    tag: str
    """The value of ``_MARK`` the flow gives the element it found."""
    kind: str
    suffixes: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    texts: tuple[str, ...] = ()


@dataclass(frozen=True)
class IssstePortal:
    """Selectors and texts of the ISSSTE portal. Texts are normalised fragments or regular
    expressions over normalised text (lower case, no accents, spaces collapsed)."""

    curp: Control = Control("campo CURP", "curp", _TEXT_INPUT, suffixes=("txtCURP", "CURP"),
                            labels=("curp",), texts=("curp",))
    search: Control = Control("botón Buscar", "buscar", _BUTTON,
                              suffixes=("btnBuscar", "lnkBuscar"), texts=("buscar", "consultar"))
    download: Control = Control(
        "botón Descargar", "descargar", _BUTTON,
        suffixes=("btnDescargar", "lnkDescargar", "Descargar", "btnImprimir", "btnPDF"),
        texts=("descargar", "imprimir constancia", "imprimir acreditacion", "ver constancia",
               "obtener constancia", "generar constancia"))
    #: An embedded PDF viewer: its source URL is fetched in the check's context.
    viewer: str = "iframe[src], embed[src], object[data]"
    #: While one of these shows, a partial postback is running (UpdateProgress, Telerik's
    #: loading panel, common overlays).
    busy: str = ('[id*="UpdateProgress" i], .RadAjax .raDiv, .raDiv, [id*="LoadingPanel" i], '
                 '.loading-overlay, .blockUI, [aria-busy="true"]')
    #: A captcha (none is known on this portal): its appearance is portal_changed.
    captcha: str = ('img[id*="captcha" i], img[src*="captcha" i], img[alt*="captcha" i], '
                    'input[name*="captcha" i], input[id*="captcha" i], .g-recaptcha, '
                    'iframe[src*="recaptcha"], iframe[src*="hcaptcha"], [data-sitekey]')

    verdict_not_affiliated: tuple[str, ...] = (
        r"\bno afiliad[oa]s?\b", r"\bsin afiliacion\b",
        r"\bno (?:se encuentra|esta|cuenta con|tiene) (?:afiliad[oa]|afiliacion|registro)",
        r"\bno (?:se encontr(?:o|aron)|existen?|hay) (?:ningun )?registros? de afiliacion",
        r"\bsin registros? de afiliacion",
        r"\bno (?:es|eres) (?:derechohabiente|afiliad)",
    )
    verdict_affiliated: tuple[str, ...] = (
        r"(?<!no )\bafiliad[oa]\b", r"\bcuenta con (?:una )?afiliacion vigente",
        r"(?<!no )(?<!no es )\bderechohabiente\b",
    )
    msg_not_found: tuple[str, ...] = (
        "no se encontr", "no encontrad", "no se localiz", "no localizad", "no existe",
        "no esta registrad", "no se encuentra registrad", "sin resultados",
        "no hay resultados", "no hay informacion",
    )
    msg_curp_format: tuple[str, ...] = ("formato valido", "formato invalido", "curp invalida",
                                        "curp no es valida", "curp incorrecta")
    #: Messages that mean "try again later".
    msg_failures: tuple[str, ...] = ("error al realizar la consulta", "ocurrio un error",
                                     "intenta mas tarde", "intente mas tarde")
    #: The ASP.NET error page and refused page state (normalised): a retry of the search.
    aspnet_errors: tuple[str, ...] = (
        "invalid postback or callback argument",
        "the state information is invalid for this page",
        "validation of viewstate mac failed",
        "server error in '/' application",
        "runtime error",
        "la pagina ha expirado",
    )
    detail_affiliated: str = "Afiliado al ISSSTE: el ISSSTE no emite la acreditación."


PORTAL = IssstePortal()

#: How long one in-page wait for the answer lasts before the flow looks at the postback's
#: responses again (a refused partial postback changes nothing in the page).
_SLICE_MS = 500
#: The attribute the flow marks the controls it found with (the page's ids are not stable).
_MARK = "data-constancias"


def run(ctx: CheckContext) -> Outcome:
    """Check ``ctx.person`` on ISSSTE; see the module docstring."""
    settings, log = ctx.settings, ctx.log
    curp = ctx.person.curp
    sw = Stopwatch()
    retry = StepRetry.from_settings(settings, log)
    page = ctx.browser_context.new_page()

    def reload() -> None:
        # A fresh page: a fresh viewstate (a refused or expired one would be refused again).
        goto(page, settings.issste_url, what="la página del ISSSTE")

    def search() -> tuple[str, str]:
        return _search(page, curp, settings)

    with sw("open"):
        open_procedure_page(page, settings, retry)
        find_search_controls(page, settings)
    with sw("search"):
        verdict, message = retry(search, what="la búsqueda del ISSSTE", recover=reload)
    log.info("issste_answer", verdict=verdict, seconds=sw.timings["search"])

    if verdict == "not_found":
        return Outcome(Status.CURP_NOT_FOUND, detail=message, timings=sw.timings)
    if verdict == "affiliated":
        return Outcome(Status.AFFILIATED, detail=message or PORTAL.detail_affiliated,
                       timings=sw.timings)

    def search_again() -> None:
        # "Descargar" exists only on a search's answer, under that page's viewstate.
        reload()
        again, text = search()
        if again != "not_affiliated":
            raise FlowError(f"El ISSSTE cambió su respuesta entre dos búsquedas: «{text}»")

    pdf_path = Path(ctx.work_dir) / "issste.pdf"
    with sw("pdf"):
        via = retry(lambda: _download(page, pdf_path, settings), what="la descarga del ISSSTE",
                    recover=search_again)
    log.info("issste_pdf", via=via)
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
        pdf_source=via,
    )


def open_procedure_page(page: Page, settings: Settings, retry: StepRetry) -> None:
    """The procedure page (``ISSSTE_URL``)."""
    open_page(page, settings.issste_url, what="la página del ISSSTE", retry=retry)


def find_search_controls(page: Page, settings: Settings) -> None:
    """The CURP box and "Buscar", found as the search finds them (also what ``constancias
    doctor`` checks, without searching); ``PortalChanged`` naming the one missing."""
    _find(page, PORTAL.curp, settings.element_timeout_s)
    _find(page, PORTAL.search, settings.element_timeout_s)


# --- finding controls ---------------------------------------------------------------------

#: Marks the control described by ``spec`` (see ``Control``) with ``_MARK=tag``; true once
#: found. Suffix matches come first (the ids' stable part), then labels, then texts.
_MARK_JS = f"""([tag, spec]) => {{
  const shown = {SHOWN_JS};
  const key = s => (s || "").normalize("NFD").replace(/[\\u0300-\\u036f]/g, "")
    .replace(/\\s+/g, " ").trim().toLowerCase();
  const ok = e => e && e.matches(spec.kind) && shown(e);
  let found = null;
  for (const suffix of spec.suffixes) {{
    const css = `[id$="${{suffix}}" i], [name$="${{suffix}}" i]`;
    found = [...document.querySelectorAll(css)].find(ok);
    if (found) break;
  }}
  if (!found) {{
    for (const label of document.querySelectorAll("label")) {{
      const text = key(label.innerText).replace(/[*:]/g, " ").trim();
      if (!spec.labels.some(l => text === l || text.split(" ").includes(l))) continue;
      const target = label.control
        || (label.htmlFor && document.getElementById(label.htmlFor));
      if (ok(target)) {{ found = target; break; }}
    }}
  }}
  if (!found && spec.texts.length) {{
    found = [...document.querySelectorAll(spec.kind)].find(e => {{
      if (!shown(e)) return false;
      const own = key(e.innerText || e.value || e.getAttribute("aria-label") || e.title
        || e.getAttribute("placeholder") || e.getAttribute("alt"));
      return spec.texts.some(t => own === t || own.startsWith(t + " "));
    }});
  }}
  if (!found) return false;
  for (const other of document.querySelectorAll(`[{_MARK}="${{tag}}"]`))
    if (other !== found) other.removeAttribute("{_MARK}");
  found.setAttribute("{_MARK}", tag);
  return true;
}}"""


def _spec(control: Control) -> dict[str, Any]:
    return {"kind": control.kind, "suffixes": list(control.suffixes),
            "labels": list(control.labels), "texts": list(control.texts)}


def _find(page: Page, control: Control, timeout_s: float) -> InPage:
    """The control once visible (marked, so that it can be driven as ``InPage``); missing
    after ``timeout_s`` is ``PortalChanged`` naming it — unless the page is a "down" page or
    shows a captcha."""
    if not wait_in_page(page, _MARK_JS, [control.tag, _spec(control)], timeout_s):
        _raise_if_unavailable(page)
        _refuse_captcha(page)
        raise PortalChanged(
            f"No se encontró el elemento esperado «{control.what}» (id terminado en "
            f"{' / '.join(control.suffixes)}, o por su etiqueta o texto) en "
            f"{page.url.split('?', 1)[0]}")
    return InPage(page, f'[{_MARK}="{control.tag}"]')


def _present(page: Page, control: Control) -> bool:
    """Whether the control is shown now (no wait)."""
    try:
        return bool(page.evaluate(_MARK_JS, [control.tag, _spec(control)]))
    except PlaywrightError:  # navigating
        return False


#: The first captcha element shown (its markup, for the evidence note), or null.
_CAPTCHA_JS = f"""css => {{ const shown = {SHOWN_JS};
  const e = [...document.querySelectorAll(css)].find(shown);
  return e ? e.outerHTML.slice(0, 160) : null; }}"""


def _refuse_captcha(page: Page) -> None:
    """A captcha is ``PortalChanged``: none is known on this portal, and none is solved."""
    try:
        found = page.evaluate(_CAPTCHA_JS, PORTAL.captcha)
    except PlaywrightError:
        return
    if found:
        raise PortalChanged(f"El ISSSTE muestra un captcha, que el flujo no resuelve: {found}")


def _raise_if_unavailable(page: Page) -> None:
    """The shared "down page" checks (flows.steps: 5xx texts, maintenance…), then an ASP.NET
    error page: both ``PortalUnavailable``."""
    _raise_if_down(page, None)
    reason = _aspnet_error(norm(page_text(page)))
    if reason:
        raise PortalUnavailable(reason)


def _aspnet_error(text: str) -> str | None:
    """The refusal message when normalised ``text`` is (or holds) an ASP.NET error."""
    for marker in PORTAL.aspnet_errors:
        if marker in text:
            return f"El ISSSTE rechazó la operación: error de ASP.NET «{marker}»."
    return None


# --- postbacks ------------------------------------------------------------------------------

class _Postbacks:
    """The postbacks a click starts (a full one: a POST navigation of the page; a partial one:
    a POST with ``X-MicrosoftAjax``) and what refused them: HTTP 5xx, or an ``error`` entry of
    a delta. Responses are read after the click, not in the event handler. WebForms pages
    often answer with a startup script's ``alert()``: those messages are kept (and the dialog
    accepted) as part of the answer."""

    _DELTA_ERROR = re.compile(r"^(\d+)\|error\|[^|]*\|")
    _DELTA = re.compile(r"^\d+\|")

    def __init__(self, page: Page) -> None:
        self.page = page
        self.responses: list[tuple[Response, bool]] = []
        self.dialogs: list[str] = []
        self._checked = 0

    def __enter__(self) -> _Postbacks:
        self.page.on("response", self._seen)
        self.page.on("dialog", self._dialog)
        return self

    def __exit__(self, *exc: object) -> None:
        self.page.remove_listener("response", self._seen)
        self.page.remove_listener("dialog", self._dialog)

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(" ".join(dialog.message.split()))
        try:
            dialog.accept()
        except PlaywrightError:  # already closed with its page
            pass

    def _seen(self, response: Response) -> None:
        request = response.request
        if request.method != "POST":
            return
        partial = "x-microsoftajax" in request.headers
        if partial or (request.is_navigation_request() and request.frame == self.page.main_frame):
            self.responses.append((response, partial))

    def raise_if_refused(self) -> None:
        """``PortalUnavailable`` when a postback seen since the last call was refused."""
        while self._checked < len(self.responses):
            response, partial = self.responses[self._checked]
            self._checked += 1
            if response.status >= 500:
                raise PortalUnavailable(
                    _aspnet_error(norm(_body(response)))
                    or f"El ISSSTE rechazó la operación (HTTP {response.status}).")
            if partial:
                body = _body(response)
                match = self._DELTA_ERROR.match(body)
                if match:
                    message = body[match.end():match.end() + int(match.group(1))]
                    raise PortalUnavailable(
                        _aspnet_error(norm(message))
                        or f"El ISSSTE rechazó la operación: error del servidor «{message[:200]}».")
                if body and not self._DELTA.match(body):
                    # A page where the delta should be (a gateway's or a proxy's): the page's
                    # script cannot apply it, so nothing would ever change on screen.
                    raise PortalUnavailable("El ISSSTE respondió la actualización parcial con "
                                            "una página en lugar de la respuesta esperada.")


def _body(response: Response) -> str:
    try:
        return response.text()
    except PlaywrightError:  # the document was replaced meanwhile
        return ""


# --- the search -----------------------------------------------------------------------------

#: The keys (normalised lines) of the page's text, to tell what a postback added.
_LINES_JS = """() => document.body ? document.body.innerText.split("\\n")
  .map(s => s.normalize("NFD").replace(/[\\u0300-\\u036f]/g, "").replace(/\\s+/g, " ")
  .trim().toLowerCase()).filter(Boolean) : []"""

#: The lines the page shows that were not there before (as shown), once no postback is running
#: and they differ from ``last``; null otherwise.
_NEW_LINES_JS = f"""([before, last, busy]) => {{
  const shown = {SHOWN_JS};
  if (!document.body || document.readyState === "loading") return null;
  if ([...document.querySelectorAll(busy)].some(shown)) return null;
  const seen = new Set(before);
  const key = s => s.normalize("NFD").replace(/[\\u0300-\\u036f]/g, "").toLowerCase();
  const lines = document.body.innerText.split("\\n").map(s => s.replace(/\\s+/g, " ").trim())
    .filter(s => s && !seen.has(key(s)));
  const sig = JSON.stringify(lines);
  return sig === last ? null : {{lines, sig}};
}}"""


def _search(page: Page, curp: str, settings: Settings) -> tuple[str, str]:
    """Type the CURP, press "Buscar" and wait for the postback's answer: ``(verdict, message)``
    with verdict ``not_affiliated``, ``affiliated`` or ``not_found``."""
    timeout = settings.element_timeout_s
    box = _find(page, PORTAL.curp, timeout)
    button = _find(page, PORTAL.search, timeout)
    _refuse_captcha(page)
    before = page.evaluate(_LINES_JS)
    box.fill(curp)
    with _Postbacks(page) as postbacks:
        button.click()
        return _wait_for_answer(page, before, postbacks, settings)


def _wait_for_answer(page: Page, before: list[str], postbacks: _Postbacks,
                     settings: Settings) -> tuple[str, str]:
    """Wait until the postback is over (the new document loaded, or the delta applied and the
    loading overlay gone) and what it added to the page is a verdict."""
    deadline = time.monotonic() + settings.navigation_timeout_s
    last: str | None = None
    lines: list[str] = []
    undecided_since: float | None = None
    while True:
        postbacks.raise_if_refused()
        changed = _new_lines(page, before, last, deadline)
        if changed is not None:
            lines, last = changed
        if lines or postbacks.dialogs:
            answer = _classify(page, [*postbacks.dialogs, *lines])
            if answer is not None:
                if answer[0] != "not_affiliated_text":
                    return answer
                # Said "not affiliated" but no "Descargar" yet: give it the element timeout.
                undecided_since = undecided_since or time.monotonic()
                if time.monotonic() - undecided_since >= settings.element_timeout_s:
                    raise PortalChanged(
                        f"El ISSSTE dice «{answer[1]}» pero no muestra "
                        f"«{PORTAL.download.what}».")
            elif changed is not None and lines:
                _raise_if_unavailable(page)
                _refuse_captcha(page)
        if time.monotonic() >= deadline:
            break
    postbacks.raise_if_refused()
    if lines or postbacks.dialogs:
        said = " / ".join([*postbacks.dialogs, *lines])
        raise FlowError(f"Respuesta desconocida del ISSSTE: «{said[:300]}»")
    _raise_if_unavailable(page)
    _refuse_captcha(page)
    if postbacks.responses:
        raise PortalChanged("La búsqueda del ISSSTE respondió, pero la página no muestra ningún "
                            "resultado ni mensaje.")
    raise PortalUnavailable(
        f"El ISSSTE no respondió la búsqueda en {settings.navigation_timeout_s:g} s.")


def _new_lines(page: Page, before: list[str], last: str | None,
               deadline: float) -> tuple[list[str], str] | None:
    """What the page added and its signature, once it changed from ``last`` (``None`` after
    one slice without a change)."""
    wait_ms = max(1.0, min(_SLICE_MS, (deadline - time.monotonic()) * 1000))
    try:
        handle = page.wait_for_function(_NEW_LINES_JS, arg=[before, last, PORTAL.busy],
                                        polling=POLL_MS, timeout=wait_ms)
        found = handle.json_value()
        return list(found["lines"]), str(found["sig"])
    except PlaywrightTimeout:
        return None
    except PlaywrightError:
        if page.is_closed():
            raise
        time.sleep(POLL_MS / 1000)  # a full postback is replacing the document
        return None


def _classify(page: Page, lines: list[str]) -> tuple[str, str] | None:
    """``_read_answer`` of the new lines, knowing whether "Descargar" is shown now."""
    return _read_answer(lines, download=_present(page, PORTAL.download))


def _read_answer(lines: list[str], *, download: bool) -> tuple[str, str] | None:
    """The verdict the lines a postback added give, with the line that says it:
    ``not_affiliated`` (with "Descargar"), ``not_affiliated_text`` (it says so, but no
    "Descargar" is shown yet), ``affiliated``, ``not_found``; ``None`` when they say none of
    those. An ASP.NET error or a "try later" message is ``PortalUnavailable``; a refused CURP
    format a ``FlowError``."""
    keyed = [(line, norm(line)) for line in lines]
    aspnet = _aspnet_error(" ".join(k for _, k in keyed))
    if aspnet:
        raise PortalUnavailable(aspnet)

    def line_of(patterns: tuple[str, ...], *, regex: bool) -> str | None:
        for line, key in keyed:
            if any((re.search(p, key) if regex else p in key) for p in patterns):
                return line
        return None

    # "Not affiliated" first: its sentences also hold the words "afiliación" and "no se
    # encontró" that the other verdicts look for.
    said_not = line_of(PORTAL.verdict_not_affiliated, regex=True)
    said = line_of(PORTAL.verdict_affiliated, regex=True)
    if said and not said_not:
        # Affiliated, even if the page shows a (useless) "Descargar" anyway.
        return "affiliated", said
    if download:
        return "not_affiliated", said_not or ""
    if said_not:
        return "not_affiliated_text", said_not
    not_found = line_of(PORTAL.msg_not_found, regex=False)
    if not_found:
        return "not_found", not_found
    bad = line_of(PORTAL.msg_curp_format, regex=False)
    if bad:
        raise FlowError(f"El ISSSTE rechazó el formato de la CURP: «{bad}»")
    failed = line_of(PORTAL.msg_failures, regex=False)
    if failed:
        raise PortalUnavailable(f"El ISSSTE no pudo hacer la consulta: «{failed}»")
    return None


# --- the download ---------------------------------------------------------------------------

#: The viewer sources shown now (absolute URLs).
_VIEWERS_JS = f"""css => {{ const shown = {SHOWN_JS};
  return [...document.querySelectorAll(css)].filter(shown)
    .map(e => e.src || e.data || "").filter(Boolean); }}"""


class _PdfCatch:
    """Every way a click can deliver the PDF: a download (this page or a window it opens), a
    PDF response anywhere in the context (a window answering inline, a viewer's frame)."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.context = page.context
        self.downloads: list[Any] = []
        self.pdf_responses: list[Response] = []
        self.popups: list[Page] = []
        self.failed: list[str] = []

    def __enter__(self) -> _PdfCatch:
        self.page.on("download", self._download)
        self.context.on("page", self._popup)
        self.context.on("response", self._response)
        return self

    def __exit__(self, *exc: object) -> None:
        self.page.remove_listener("download", self._download)
        self.context.remove_listener("page", self._popup)
        self.context.remove_listener("response", self._response)
        for popup in self.popups:
            try:
                popup.close()
            except PlaywrightError:
                pass

    def _download(self, download: Any) -> None:
        self.downloads.append(download)

    def _popup(self, popup: Page) -> None:
        self.popups.append(popup)
        popup.on("download", self._download)

    def _response(self, response: Response) -> None:
        kind = (response.headers.get("content-type") or "").split(";")[0].strip().lower()
        if response.ok and kind == "application/pdf":
            self.pdf_responses.append(response)
        elif response.status >= 500 and response.request.is_navigation_request():
            # A window or frame the click opened got an error page instead of the PDF.
            self.failed.append(f"HTTP {response.status} en {response.url.split('?', 1)[0]}")

    def raise_if_failed(self) -> None:
        if self.failed:
            raise PortalUnavailable(f"La descarga del ISSSTE falló: {self.failed[0]}.")

    def pdf(self) -> tuple[bytes, IssstePdfSource] | None:
        """The PDF and how it came (``download`` / ``response``), if one arrived."""
        for download in self.downloads:
            try:
                path = download.path()
            except PlaywrightError:
                continue
            if path:
                data = Path(path).read_bytes()
                if data.startswith(b"%PDF-"):
                    return data, "download"
        for response in self.pdf_responses:
            try:
                data = response.body()
            except PlaywrightError:  # became a download (that path delivers it), or below
                data = b""
            if data.startswith(b"%PDF-"):
                return data, "response"
        for response in self.pdf_responses:
            # A PDF answer whose bytes the browser kept to itself: the full Chromium shows an
            # inline PDF in its viewer, whose stream request interception hides. A GET (the
            # handler's download link, not a search) is asked again, as a viewer's source is.
            if response.request.method == "GET":
                fetched = _fetch_pdf(self.context, response.url)
                if fetched is not None:
                    return fetched, "response"
        return None


def _fetch_pdf(context: Any, url: str) -> bytes | None:
    """The PDF at ``url`` (a GET with the context's cookies), or ``None``."""
    if not url.startswith(("http://", "https://")):
        return None  # a window still blank
    try:
        data = context.request.get(url, timeout=10_000).body()
    except PlaywrightError:
        return None
    return data if data.startswith(b"%PDF-") else None


def _download(page: Page, dest: Path, settings: Settings) -> IssstePdfSource:
    """Click "Descargar" and save the PDF, however the portal delivers it: how it came
    (``download``, ``response`` — a window or frame answering inline — or ``viewer``). A
    failure to get it (a refused postback, an error page, nothing within the timeout) is
    ``PortalUnavailable``."""
    link = _find(page, PORTAL.download, settings.element_timeout_s)
    viewers_before = set(page.evaluate(_VIEWERS_JS, PORTAL.viewer))
    deadline = time.monotonic() + settings.navigation_timeout_s
    got: tuple[bytes, IssstePdfSource] | None = None
    with _PdfCatch(page) as catch, _Postbacks(page) as postbacks:
        try:
            link.click()
            while got is None and time.monotonic() < deadline:
                page.wait_for_timeout(POLL_MS * 2)
                got = catch.pdf()
                if got is None:
                    postbacks.raise_if_refused()
                    catch.raise_if_failed()
                    got = _viewer_pdf(page, viewers_before, catch, settings)
        except PlaywrightTimeout as exc:
            raise PortalUnavailable("Tiempo de espera agotado en la descarga del ISSSTE.") from exc
        except PlaywrightError as exc:
            if page.is_closed():
                raise
            raise PortalUnavailable(f"La descarga del ISSSTE falló: {type(exc).__name__}") from exc
    if got is None:
        _raise_if_unavailable(page)
        raise PortalUnavailable("La descarga de la acreditación del ISSSTE no se completó.")
    dest.write_bytes(got[0])
    return got[1]


def _viewer_pdf(page: Page, before: set[str], catch: _PdfCatch,
                settings: Settings) -> tuple[bytes, IssstePdfSource] | None:
    """The PDF of a viewer the click embedded, fetched in the check's context (its cookies);
    ``None`` while there is none. A viewer's own load may deliver it first (``catch``)."""
    try:
        sources = [s for s in page.evaluate(_VIEWERS_JS, PORTAL.viewer) if s not in before]
    except PlaywrightError:  # navigating
        return None
    for source in sources:
        url = urljoin(page.url, source)
        if not url.startswith(("http://", "https://")):
            continue
        page.wait_for_timeout(POLL_MS * 4)  # the frame's own load usually brings it
        got = catch.pdf()
        if got:
            return got
        response = page.context.request.get(url, timeout=settings.navigation_timeout_s * 1000)
        if response.status >= 500:
            raise PortalUnavailable(f"El visor del ISSSTE respondió HTTP {response.status}.")
        body = response.body()
        if body.startswith(b"%PDF-"):
            return body, "viewer"
    return None


# --- the registry's entry (flows/registry.py): all the rest of the system knows of this portal
def _doctor_form(page: Page, settings: Settings, _retry: StepRetry) -> str:
    """``constancias doctor``'s look at the search: its controls found; no CURP searched."""
    find_search_controls(page, settings)
    return (f"Están {PORTAL.curp.what} y {PORTAL.search.what}, hallados como los halla la "
            "búsqueda. No se buscó ninguna CURP.")


DECLARATION = register(Portal(
    name="issste", title="ISSSTE", procedure="Acreditación de No Afiliación", order=1,
    flow=run,
    url_setting="issste_url", rate_setting="rate_limit_issste",
    concurrency_setting="max_concurrency_issste", pdf_title="NO AFILIACION",
    real_hosts=("issste.gob.mx",),
    doctor=DoctorLook(open=open_procedure_page, page_name="Página del trámite",
                      form=_doctor_form),
))
