"""``constancias doctor``: know before a batch that configuration, storage, broker, browser,
portals, mailbox and SMTP work — without spending a portal query.

It never sends the IMSS form and never searches a CURP at ISSSTE: for each portal whose
registry entry says what to look at (``flows.registry.DoctorLook``) it opens the page, finds
every element the flow relies on with the flow's own functions, loads the captcha image and
lets the solver read it (solving is free; only submitting the form spends one of the day's
queries).

Each check is ``{"name", "ok", "detail", "seconds"}`` with a Spanish detail that says what to
do; a check that needs an earlier one (the IMSS form needs its information page) is left out
when that one failed, so a fault shows as the one check it breaks. ``--json`` prints
``{"ok": bool, "checks": […]}`` (SPEC §4); exit 0 all ok, 1 a check failed, 2 the
configuration cannot even be read.
"""

from __future__ import annotations

import shutil
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass, field
from io import BytesIO
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import redis
import structlog
from PIL import Image, UnidentifiedImageError

from flows import registry
from flows.base import CaptchaSolver
from flows.browser import shared_browser
from flows.captcha import make_solver
from flows.errors import PortalBlocked, PortalChanged, PortalUnavailable
from flows.incapsula import blocked_in_context, watch_responses
from flows.mailbox import open_mailbox
from flows.registry import Portal
from flows.runner import new_check_context
from flows.steps import StepRetry, page_text
from worker.core.errors import UserError
from worker.core.logs import mask_text
from worker.engine.notify import smtp_connection, smtp_target
from worker.storage.doctor_runs import ping, probe_write, record_run, schema_revisions
from worker.storage.repository import Storage, database_place

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page

    from worker.core.settings import Settings

__all__ = ["CheckResult", "DoctorReport", "run_doctor", "render_table", "record",
           "EXAMPLE_DOMAINS"]

log = structlog.get_logger("constancias.doctor")

#: Domains reserved for examples and tests (RFC 2606, RFC 6761): IMSS refuses them, and its
#: e-mails could never arrive there.
EXAMPLE_DOMAINS = ("example", "example.com", "example.net", "example.org", "test", "invalid",
                   "localhost")


@dataclass(frozen=True)
class CheckResult:
    name: str
    """Stable identifier (``imss.form``, ``mailbox``…)."""
    ok: bool
    detail: str
    """Spanish: what was found and, when it failed, what to do."""
    seconds: float


@dataclass
class DoctorReport:
    checks: list[CheckResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def failed(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.ok]

    def as_json(self) -> dict[str, Any]:
        """The ``doctor --json`` object (SPEC §4)."""
        return {"ok": self.ok, "checks": [asdict(c) for c in self.checks]}


class _Failed(Exception):
    """A check's failure, with its Spanish detail (what is wrong and what to do)."""


class _Checks:
    """Runs checks one by one, timing each; a failure never stops the next one."""

    def __init__(self) -> None:
        self.report = DoctorReport()

    def run(self, name: str, check: Callable[[], str]) -> bool:
        started = time.monotonic()
        try:
            detail, ok = check(), True
        except _Failed as exc:
            detail, ok = str(exc), False
        except UserError as exc:  # a ConfigError found on the way (mailbox, SMTP URL)
            detail, ok = str(exc), False
        except Exception as exc:  # noqa: BLE001 - a doctor reports, it does not crash
            detail = (f"Error inesperado ({type(exc).__name__}): {mask_text(str(exc))[:300]}. "
                      "Revise el registro (CONSTANCIAS_LOG_FILE) y avise a quien mantiene "
                      "constancias.")
            ok = False
            log.warning("doctor_check_error", check=name, error=type(exc).__name__)
        seconds = round(time.monotonic() - started, 2)
        self.report.checks.append(CheckResult(name, ok, detail, seconds))
        log.info("doctor_check", check=name, ok=ok, seconds=seconds)
        return ok


# --- configuration ---------------------------------------------------------------------------


def _is_example(domain: str) -> bool:
    domain = domain.lower().rstrip(".")
    return any(domain == d or domain.endswith("." + d) for d in EXAMPLE_DOMAINS)


def _check_email(settings: Settings) -> str:
    domain = settings.imss_email.partition("@")[2]
    if _is_example(domain):
        if registry.portal("imss").is_real(settings.imss_url):
            raise _Failed(
                f"CONSTANCIAS_IMSS_EMAIL usa el dominio de ejemplo «{domain}» y "
                "CONSTANCIAS_IMSS_URL es el portal real: el IMSS no podría enviar los correos. "
                "Use un dominio propio "
                "con buzón catch-all, p. ej. {curp}@constancias.suempresa.mx.")
        return f"Dominio de ejemplo «{domain}»: sirve solo con el simulador."
    return f"Plantilla {settings.imss_email} (un correo por CURP, dominio {domain})."


def _mailbox_place(url: str) -> str:
    """Where the mailbox is, without its credentials."""
    parts = urlsplit(url)
    if parts.scheme == "maildir":
        return f"Maildir {parts.path}"
    return f"{parts.scheme}://{parts.hostname}:{parts.port or ''}{parts.path or '/INBOX'}"


def _check_data_dir(settings: Settings) -> str:
    folder = settings.data_dir
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".doctor-") as probe:
            probe.write(b"ok")
            probe.flush()
    except OSError as exc:
        raise _Failed(f"No se puede escribir en la carpeta de datos {folder} ({exc.strerror}): "
                      "corrija sus permisos o CONSTANCIAS_DATA_DIR.") from None
    free = shutil.disk_usage(folder).free / 2**30
    return f"{folder} admite escritura ({free:.1f} GiB libres)."


def _check_broker(settings: Settings) -> str:
    if settings.embedded:
        return "Sin broker: motor embebido en este equipo (no hace falta servidor)."
    parts = urlsplit(settings.broker_url or "")
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise _Failed("CONSTANCIAS_BROKER_URL debe ser redis://host:6379/0 (o rediss://…); "
                      "déjela vacía para el motor embebido.")
    return f"Redis en {parts.hostname}:{parts.port or 6379} (modo distribuido)."


def _check_database(settings: Settings, storage: Storage) -> str:
    place = database_place(settings.effective_database_url)
    cause = ping(storage)
    if cause is not None:
        raise _Failed(f"No se pudo abrir la base de datos ({place}: {cause}): revise "
                      "CONSTANCIAS_DATABASE_URL y que el servidor esté encendido.")
    return f"{place} responde."


def _check_storage(storage: Storage) -> str:
    current, head = schema_revisions(storage)
    if current != head:
        raise _Failed(f"La base de datos no está al día (revisión {current or 'ninguna'}; esta "
                      f"versión usa {head}): arranque una vez «constancias worker» o «constancias "
                      "web», que la migran al iniciar.")
    probe_write(storage)
    return f"Migrada ({head}) y admite escritura."


# --- broker ----------------------------------------------------------------------------------


def _check_redis(settings: Settings) -> str:
    parts = urlsplit(settings.broker_url or "")
    where = f"{parts.hostname}:{parts.port or 6379}"
    try:
        client = redis.Redis.from_url(settings.broker_url or "",
                                      socket_connect_timeout=settings.doctor_timeout_s,
                                      socket_timeout=settings.doctor_timeout_s)
        client.ping()
        client.close()
    except redis.RedisError as exc:
        raise _Failed(f"Redis no responde en {where} ({type(exc).__name__}): enciéndalo o "
                      "corrija CONSTANCIAS_BROKER_URL; sin él no se encola ni se reparte nada "
                      "(no se preguntó a los workers).") from None
    return f"Redis responde en {where}."


def _check_workers(settings: Settings) -> str:
    from worker.engine.celery_app import app  # here: Celery only when a broker is configured

    replies = app.control.ping(timeout=settings.doctor_timeout_s)
    names = sorted(name for reply in replies or [] for name in reply)
    if not names:
        raise _Failed(f"Ningún worker de Celery respondió en {settings.doctor_timeout_s:g} s: "
                      "inicie «constancias worker» en al menos un equipo (los lotes esperarían "
                      "sin avanzar).")
    return f"{len(names)} worker(s) responden: {', '.join(names)}."


# --- browser ---------------------------------------------------------------------------------

_PRESENTATION_JS = """() => ({ua: navigator.userAgent, lang: navigator.language,
  tz: Intl.DateTimeFormat().resolvedOptions().timeZone, webdriver: navigator.webdriver})"""


def _check_browser(settings: Settings, browser: Browser, context: BrowserContext) -> str:
    page = context.new_page()
    try:
        seen = page.evaluate(_PRESENTATION_JS)
    finally:
        page.close()
    problems = []
    if "HeadlessChrome" in seen["ua"]:
        problems.append("su agente dice «HeadlessChrome»")
    if seen["lang"] != "es-MX":
        problems.append(f"idioma {seen['lang']} (se espera es-MX)")
    if seen["tz"] != settings.timezone:
        problems.append(f"zona horaria {seen['tz']} (se espera {settings.timezone})")
    presented = f"se presenta como «{seen['ua']}», {seen['lang']}, {seen['tz']}"
    if problems:
        raise _Failed(f"Chromium {browser.version} arrancó pero {'; '.join(problems)}: los "
                      f"portales lo verían distinto ({presented}). Revise "
                      "CONSTANCIAS_BROWSER_EXECUTABLE y CONSTANCIAS_TIMEZONE.")
    return f"Chromium {browser.version}; {presented}."


# --- portals ---------------------------------------------------------------------------------


@contextmanager
def _portal_errors(portal: str, context: BrowserContext, blocks: list[str],
                   url_setting: str) -> Iterator[None]:
    """Flow errors → a failed check whose detail says what to do. A failure while the bot
    protection answered (a page or a sub-resource) is the block, whatever it looked like."""
    name = registry.title(portal)
    try:
        yield
    except (PortalBlocked, PortalUnavailable, PortalChanged) as exc:
        reason = exc if isinstance(exc, PortalBlocked) else blocked_in_context(context, blocks)
        if reason:
            raise _Failed(f"El {name} nos bloquea: su protección contra robots (Incapsula) "
                          f"rechazó la sesión ({mask_text(str(reason))}). No lance lotes ahora: "
                          "espere a que levante el bloqueo (y revise la red o IP de salida si "
                          "sigue).") from None
        if isinstance(exc, PortalChanged):
            raise _Failed(f"{exc}: el portal del {name} cambió su página; hay que actualizar el "
                          f"flujo (flows/{portal}.py) antes del próximo lote.") from None
        raise _Failed(f"El portal del {name} no está disponible ({exc}). Vuelva a intentar más "
                      f"tarde; si sigue, revise la red y {url_setting}.") from None


def _maintenance(page: Page) -> bool:
    try:
        return "mantenimiento" in page_text(page).lower()
    except PortalBlocked:
        return False


def _solve(solver: CaptchaSolver, image: bytes, key: str) -> tuple[str, float | None]:
    """The solver's answer and, for the reader that gives one (``net``, the default), its
    confidence: the reading whatever its confidence, so the operator sees how sure it was
    even when the flow would have asked for a new image."""
    from flows.captcha import NetSolver  # with the solver doctor was given: already loaded

    if isinstance(solver, NetSolver):
        reading = solver.read(image)
        return reading.answer, reading.confidence
    return solver.solve(image, key=key).strip(), None


def _image_size(image: bytes, portal: Portal) -> str:
    try:
        with Image.open(BytesIO(image)) as img:
            return f"{img.width}×{img.height}"
    except UnidentifiedImageError:
        raise _Failed(f"La imagen del captcha del {portal.title} no es una imagen: el portal "
                      f"cambió; hay que actualizar el flujo (flows/{portal.name}.py).") from None


def _check_portal(checks: _Checks, settings: Settings, context: BrowserContext,
                  solver: CaptchaSolver | None, portal: Portal) -> None:
    """The portal's ``DoctorLook``, one check per step, each needing the one before."""
    look = portal.doctor
    assert look is not None  # run_doctor opens only the portals that declare one
    blocks = watch_responses(context)
    retry = StepRetry.from_settings(settings, log)
    page = context.new_page()
    url_setting = f"CONSTANCIAS_{portal.url_setting.upper()}"

    def errors() -> AbstractContextManager[None]:
        return _portal_errors(portal.name, context, blocks, url_setting)

    def start() -> str:
        started = time.monotonic()
        try:
            with errors():
                look.open(page, settings, retry)
        except _Failed:
            if _maintenance(page):
                raise _Failed(f"El portal del {portal.title} está en mantenimiento (HTTP 503). "
                              "Vuelva a intentar más tarde; no lance lotes mientras tanto."
                              ) from None
            raise
        return (f"{look.page_name} abierta en {time.monotonic() - started:.1f} s "
                f"({portal.url(settings).split('?', 1)[0]}); sin bloqueo.")

    def form() -> str:
        with errors():
            return look.form(page, settings, retry)

    def captcha(read: Callable[[Page, Settings], bytes],
                refresh: Callable[[Page], None] | None) -> str:
        with errors():
            image = read(page, settings)
        size = _image_size(image, portal)
        if solver is None:
            return (f"Imagen {size} cargada; solver manual: la responde una persona al "
                    "consultar (aquí no se pide).")
        tries = settings.doctor_captcha_images if refresh else 1
        for n in range(1, tries + 1):
            answer, confidence = _solve(solver, image, f"doctor-{n}")
            if answer:
                how = f"confianza {confidence:.2f}" if confidence is not None else "sin confianza"
                return (f"Imagen {size} cargada; el solver «{settings.captcha_solver}» leyó "
                        f"«{answer}» ({how}). No se envió.")
            if refresh and n < tries:
                with errors():
                    refresh(page)
                    image = read(page, settings)
        raise _Failed(f"El solver «{settings.captcha_solver}» no leyó ninguna de {tries} "
                      f"imágenes del captcha del {portal.title}: revise Tesseract o el solver "
                      f"(CONSTANCIAS_CAPTCHA_SOLVER); las consultas del {portal.title} "
                      "fallarían.")

    try:
        if (checks.run(f"{portal.name}.page", start)
                and checks.run(f"{portal.name}.form", form) and look.captcha):
            read, refresh = look.captcha, look.refresh_captcha
            checks.run(f"{portal.name}.captcha", lambda: captcha(read, refresh))
    finally:
        page.close()


# --- mail ------------------------------------------------------------------------------------


def _check_mailbox(settings: Settings) -> str:
    url = settings.effective_mailbox_url
    place = _mailbox_place(url)
    mailbox = open_mailbox(url, poll_s=settings.mailbox_poll_s)
    try:
        count = mailbox.probe()
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - every way of not reaching it says the same
        raise _Failed(f"No se pudo leer el buzón ({place}: {type(exc).__name__}: "
                      f"{mask_text(str(exc))[:160]}): revise el servidor de correo, la red y "
                      "CONSTANCIAS_MAILBOX_URL.") from None
    finally:
        mailbox.close()
    return f"{place}: sesión iniciada, {count} mensaje(s) en la carpeta."


def _check_smtp(settings: Settings) -> str:
    to = settings.operator_to or settings.notify_to
    if not to:
        raise _Failed("CONSTANCIAS_SMTP_URL está configurado pero nadie recibiría los avisos: "
                      "defina CONSTANCIAS_OPERATOR_TO o CONSTANCIAS_NOTIFY_TO.")
    target = smtp_target(settings, to)
    assert target is not None  # smtp_url and recipients are set
    try:
        with smtp_connection(target, timeout_s=settings.doctor_timeout_s) as smtp:
            smtp.noop()
    except Exception as exc:  # noqa: BLE001 - OSError, SMTPException…: all say the same
        raise _Failed(f"El servidor SMTP {target.host}:{target.port} no aceptó la conexión "
                      f"({type(exc).__name__}): revise CONSTANCIAS_SMTP_URL (servidor, usuario, "
                      "contraseña); los avisos no saldrían.") from None
    login = "con usuario" if target.username else "sin usuario"
    return f"SMTP {target.host}:{target.port} acepta la conexión ({login}); no se envió nada."


# --- the whole run ---------------------------------------------------------------------------


def run_doctor(settings: Settings, portals: list[str] | None = None, *,
               solver: CaptchaSolver | None = None, browser: Browser | None = None
               ) -> DoctorReport:
    """Every check, in order; ``portals`` limits the portal checks (default: every registered
    portal that declares what doctor looks at, its ``DoctorLook``). ``solver`` defaults to the
    configured one (none for the manual solver: nobody is asked)."""
    known = {p.name: p for p in registry.portals()}
    looked_at = [known[p] for p in (portals or known) if p in known and known[p].doctor]
    checks = _Checks()
    checks.run("config.imss_email", lambda: _check_email(settings))
    mailbox_ok = checks.run("config.mailbox_url", lambda: _parse_mailbox(settings))
    checks.run("config.data_dir", lambda: _check_data_dir(settings))
    storage = Storage(settings.effective_database_url)
    if checks.run("config.database", lambda: _check_database(settings, storage)):
        checks.run("storage", lambda: _check_storage(storage))
    broker_ok = checks.run("config.broker", lambda: _check_broker(settings))
    if not settings.embedded and broker_ok and checks.run("redis", lambda: _check_redis(settings)):
        checks.run("celery_workers", lambda: _check_workers(settings))

    held: list[Any] = []

    def start_browser() -> str:
        br = browser or shared_browser(settings.browser_executable,
                                       headed=settings.browser_headed)
        held.append((br, new_check_context(br, settings)))
        return _check_browser(settings, br, held[0][1])

    try:
        if checks.run("browser", start_browser):
            br, context = held[0]
            if (solver is None and settings.captcha_solver != "manual"
                    and any(p.doctor and p.doctor.captcha for p in looked_at)):
                solver = make_solver(settings)
            for portal in looked_at:
                # A fresh context per portal, as a check has: cookies of one never help the other.
                context.close()
                context = new_check_context(br, settings)
                held[0] = (br, context)
                _check_portal(checks, settings, context, solver, portal)
    finally:
        for _, context in held:
            try:
                context.close()
            except Exception as exc:  # noqa: BLE001 - the browser may be gone already
                log.debug("doctor_context_close_failed", error=type(exc).__name__)
    if mailbox_ok:
        checks.run("mailbox", lambda: _check_mailbox(settings))
    if settings.smtp_url:
        checks.run("smtp", lambda: _check_smtp(settings))
    return checks.report


def _parse_mailbox(settings: Settings) -> str:
    url = settings.effective_mailbox_url
    open_mailbox(url)  # parses only: IMAP connects on first use
    return f"{_mailbox_place(url)} (la sesión se prueba al final)."


def record(storage: Storage, report: DoctorReport, trigger: str) -> int | None:
    """Keep the run for the web page and the schedule; ``None`` when storage cannot take it
    (its own check says why)."""
    if any(c.name == "storage" and c.ok for c in report.checks):
        return record_run(storage, trigger=trigger, ok=report.ok,
                          checks=report.as_json()["checks"])
    return None


# --- output ----------------------------------------------------------------------------------


def render_table(report: DoctorReport, width: int | None = None) -> str:
    """The checks as a table for a terminal: name, state, seconds, the detail wrapped."""
    width = width or shutil.get_terminal_size((120, 40)).columns
    name_w = max(len("Revisión"), *(len(c.name) for c in report.checks))
    head = f"{'Revisión':<{name_w}}  {'Estado':<6}  {'Seg.':>5}  Detalle"
    indent = name_w + 2 + 6 + 2 + 5 + 2
    detail_w = max(30, width - indent - 1)
    lines = [head, "─" * min(width - 1, indent + detail_w)]
    for c in report.checks:
        state = "bien" if c.ok else "FALLA"
        wrapped = textwrap.wrap(c.detail, detail_w) or [""]
        lines.append(f"{c.name:<{name_w}}  {state:<6}  {c.seconds:>5.1f}  {wrapped[0]}")
        lines += [" " * indent + more for more in wrapped[1:]]
    failed = len(report.failed)
    lines.append("")
    lines.append("Todo en orden: se puede lanzar un lote." if not failed else
                 f"{failed} revisión(es) fallaron: atiéndalas antes del próximo lote.")
    return "\n".join(lines)
