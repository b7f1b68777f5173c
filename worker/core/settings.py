"""Typed settings (SPEC §5): one class, read once at start-up, passed down.

Every field is an environment variable with the ``CONSTANCIAS_`` prefix; ``.env`` is honoured.
Policy (retries, timeouts, limits) lives here as data, not as literals in code.
"""

from __future__ import annotations

import re
from functools import cached_property
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from platformdirs import user_data_path
from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from worker.core.errors import ConfigError

__all__ = ["Settings", "load_settings"]

REAL_IMSS_URL = "https://www.imss.gob.mx/constancia-no-derechohabiencia"
REAL_ISSSTE_URL = (
    "https://oficinavirtual.issste.gob.mx/Servicios/Acreditaci%C3%B3n-de-no-Afiliaci%C3%B3n"
)


def _default_data_dir() -> Path:
    """The platform's per-user data folder: the same whichever folder a command runs in."""
    return Path(user_data_path("constancias", appauthor=False))


class Settings(BaseSettings):
    """Configuration of every constancias process (CLI, workers, beat, web)."""

    model_config = SettingsConfigDict(
        env_prefix="CONSTANCIAS_", env_file=".env", extra="ignore", frozen=True
    )

    # --- where things are ---------------------------------------------------------------
    broker_url: str | None = None
    """Celery broker (``redis://…``). Unset: the embedded engine, no server needed."""
    database_url: str | None = None
    """SQLAlchemy URL. Unset: SQLite at ``DATA_DIR/constancias.db``."""
    data_dir: Path = Field(default_factory=_default_data_dir)
    """Database, PDFs, evidence and reports live here (owner-only permissions). Unset: the
    user's data folder (``$XDG_DATA_HOME/constancias``, else ``~/.local/share/constancias``),
    whatever the current folder; the Docker image sets ``/data``."""
    imss_url: str = REAL_IMSS_URL
    """IMSS information page where the procedure starts."""
    issste_url: str = REAL_ISSSTE_URL
    """ISSSTE procedure page."""
    imss_email: str = "constancias+{curp}@empresa.example"
    """Per-CURP address template: ``{curp}`` is replaced (IMSS binds an email to one CURP)."""
    mailbox_url: str | None = None
    """Where IMSS emails arrive: ``maildir:///path``, ``imap://user:pass@host:port/INBOX``,
    ``imaps://…``. Unset: ``maildir://DATA_DIR/mail``."""

    # --- captcha ------------------------------------------------------------------------
    captcha_solver: Literal["net", "ocr", "manual"] = "net"
    """``net`` (a small network trained on the IMSS captcha's generator), ``ocr`` (Tesseract,
    a fallback) or ``manual`` (a person types it: terminal or web page)."""
    captcha_min_confidence: float = Field(0.5, ge=0, le=1)
    """``net``: a reading less sure than this is not sent; the flow takes a fresh image."""
    captcha_attempts: int = Field(12, ge=1, le=50)
    """Captcha answers tried per check before ``captcha_unsolved``."""
    manual_captcha_timeout_s: float = Field(600, gt=0)
    """How long a manual captcha waits for a person."""

    # --- politeness ---------------------------------------------------------------------
    rate_limit_imss: float = Field(60, gt=0)
    """IMSS checks started per minute, across all workers."""
    rate_limit_issste: float = Field(120, gt=0)
    """ISSSTE checks started per minute, across all workers."""
    max_concurrency_imss: int = Field(8, ge=1)
    """IMSS checks running at once, across all workers."""
    max_concurrency_issste: int = Field(8, ge=1)
    """ISSSTE checks running at once, across all workers."""

    # --- engine -------------------------------------------------------------------------
    concurrency: int = Field(4, ge=1, le=64)
    """Parallel checks of the embedded engine (one browser each)."""
    retry_max: int = Field(4, ge=0, le=20)
    """Retries of a transient failure before its status is recorded."""
    retry_backoff_s: float = Field(2.0, ge=0)
    """First retry delay; doubles per attempt, with full jitter."""
    retry_backoff_max_s: float = Field(120.0, ge=0)
    """Cap of one retry delay (kept far below the broker's visibility timeout)."""
    step_retries: int = Field(3, ge=0, le=10)
    """Retries, inside a check, of one idempotent portal step (a page load, the captcha image,
    the confirmation link, a download) that answered 5xx or "Servicio no disponible"; only
    when they run out does the whole check fail as transient (``retry_max``)."""
    step_backoff_s: float = Field(0.5, ge=0)
    """First pause before a step retry; doubles per retry."""
    task_time_limit_s: int = Field(600, ge=30)
    """Hard limit of one check; the task is killed and retried after it."""
    visibility_timeout_s: int = Field(3600, ge=5)
    """Redis redelivers an unacknowledged task after this; above the longest task."""
    lease_s: int = Field(60, ge=5)
    """Distributed mode: a running check is leased this long and the lease is renewed while the
    flow runs (every third of it). A worker killed mid-check stops renewing, so its check is
    free again within this time — not after the broker's visibility timeout."""
    sweep_interval_s: int = Field(30, ge=1)
    """Distributed mode: how often one of the workers looks for checks nobody will run (their
    worker died, or Redis lost its queue) and sends them again."""
    worker_max_tasks_per_child: int = Field(200, ge=1)
    """Recycle a worker process (and its Chromium) after this many checks."""
    max_redeliveries: int = Field(3, ge=1)
    """A check started this many times without finishing ends as ``error`` (poison task)."""
    block_pause_s: float = Field(60, gt=0)
    """When a portal's bot protection (Incapsula) refuses a check, the whole portal is paused,
    cluster-wide, this long: a block belongs to the portal, not to one check."""
    block_pause_factor: float = Field(2.0, ge=1)
    """Each block met again right after a pause multiplies the next pause by this."""
    block_pause_max_s: float = Field(900, gt=0)
    """Longest pause of a blocked portal (kept below half the broker's visibility timeout)."""
    blocked_retry_max: int = Field(10, ge=0, le=100)
    """Blocks one check may meet (each waits for the portal's pause; they do not spend
    ``retry_max``) before it is recorded as ``portal_blocked``."""

    # --- browser and waits --------------------------------------------------------------
    browser_executable: str | None = None
    """Chromium binary. Unset: Debian's full ``/usr/bin/chromium`` (in its new headless mode),
    else Playwright's own. ``/usr/bin/chromium-headless-shell`` (the old headless mode) is
    lighter but shows the portal a different browser."""
    browser_headed: bool = False
    """Run a headed (windowed) browser instead of the headless mode. Needs a display: start
    the worker under Xvfb (``xvfb-run -a constancias worker``)."""
    navigation_timeout_s: float = Field(30, gt=0)
    """One page load."""
    element_timeout_s: float = Field(10, gt=0)
    """An expected element; missing after this is ``portal_changed``."""
    email_timeout_s: float = Field(86400, gt=0)
    """Waiting for an IMSS email; after this the check is retried. Real IMSS mail takes from
    seconds to many minutes (public guides: up to three days), and its link works only on the
    day it was sent, so by default a wait lasts until the end of that Mexico City day (a day
    is more than any day has left); a waiting check holds no browser (worker/storage/waiting.py).
    With ``IMSS_MAIL_WAIT=page`` the check sits in its page for all of it: set it low there."""
    imss_mail_wait: Literal["watch", "page"] = "watch"
    """How an IMSS check waits for its emails: ``watch`` (the default, SPEC §7): two browser
    steps, the wait between them a row in storage and the mailbox watcher's business; ``page``:
    the check keeps its page, browser context and worker slot while it waits (the design
    before, kept selectable for ``bench/throughput.py --email-delay-s``)."""
    mailbox_poll_s: float = Field(0.25, gt=0)
    """How often the mailbox is polled while waiting."""
    mailbox_folders: str | None = None
    """Folders the mailbox watcher reads, comma-separated (IMAP names, or Maildir++ folders
    such as ``.Junk``). Unset: the inbox and the junk folder (IMAP SPECIAL-USE ``\\Junk``; in a
    Maildir ``.Junk`` or ``.Spam`` when present): IMSS mail sometimes lands in spam."""
    keep_traces: Literal["failed", "always", "never"] = "failed"
    """Playwright traces are recorded and kept for failed checks."""
    trace_snapshots: Literal["retries", "always", "never"] = "retries"
    """When traces also hold DOM snapshots (the page before and after every action, to browse
    in ``playwright show-trace``). They are most of a trace's cost — about a fifth of a check's
    CPU — so by default only a retried check (attempt 2 on, where failures gather) records them,
    as Playwright's own ``trace: "on-first-retry"``. Every trace holds the actions, their
    timings and the network with its bodies; every failed check also keeps the screenshot and
    HTML of its pages."""
    trace_screenshots: bool = False
    """Traces also film the page (a screencast): about 1.5 s more CPU per check. The DOM
    snapshots and the full-page screenshot of every failed check usually tell enough."""

    # --- schedule -----------------------------------------------------------------------
    recheck_cron: str = "0 2 * * *"
    """Nightly re-check (cron, in ``TIMEZONE``)."""
    recheck_every_s: float | None = Field(None, gt=0)
    """Re-check every this many seconds instead of ``RECHECK_CRON`` (tests and demos only)."""
    recheck_older_than_h: float = Field(20, ge=0)
    """The nightly re-check takes people whose latest result is older than this."""
    timezone: str = "America/Mexico_City"
    doctor_before_recheck: bool = True
    """The schedule runs ``constancias doctor`` before each re-check batch; a failure postpones
    the batch (``DOCTOR_RETRY_S``) and tells the operator once per new failure."""
    doctor_retry_s: float = Field(900, gt=0)
    """A batch postponed by a failed doctor is tried again this long after (the next tick)."""
    doctor_retries: int = Field(8, ge=0, le=100)
    """Postponements of one night's batch; when spent, that night is given up (the next
    scheduled time starts afresh)."""
    doctor_timeout_s: float = Field(5, gt=0)
    """Doctor's wait for Redis, the Celery workers' ping and the SMTP server."""
    doctor_captcha_images: int = Field(3, ge=1, le=10)
    """Captcha images (refreshing is free) doctor lets the solver try before saying it reads
    none."""
    retention_days: int | None = Field(None, ge=1)
    """If set, the nightly schedule purges personal data older than this."""

    # --- intake limits ------------------------------------------------------------------
    max_file_bytes: int = Field(20 * 1024 * 1024, gt=0)
    """Largest spreadsheet accepted (bytes on disk)."""
    max_uncompressed_bytes: int = Field(200 * 1024 * 1024, gt=0)
    """Largest declared uncompressed size of an .xlsx (zip-bomb guard)."""
    max_rows: int = Field(200_000, gt=0)
    """Most data rows read from one sheet."""

    # --- web, notifications, logs -------------------------------------------------------
    web_password: str | None = None
    """Password of the HR web page (required by ``constancias web``)."""
    web_max_upload_bytes: int = Field(10 * 1024 * 1024, gt=0)
    web_password_min_length: int = Field(12, ge=8)
    """``constancias web`` refuses to start with a shorter ``WEB_PASSWORD`` (or one of very few
    different characters): the page holds personal data and may be reachable from a network."""
    web_session_idle_s: float = Field(3600, gt=0)
    """A web session unused this long ends (the password is asked again)."""
    web_session_max_age_s: float = Field(12 * 3600, gt=0)
    """A web session ends this long after log-in however much it is used (a working day)."""
    web_login_delay_s: float = Field(1.0, gt=0)
    """After a wrong password, the client address and the account wait this long before the next
    try is even looked at; the wait doubles with every further failure."""
    web_login_delay_max_s: float = Field(60, gt=0)
    """Cap of that growing wait."""
    web_login_lock_after: int = Field(10, ge=1)
    """After this many failures in a row, the address (or the account) is locked..."""
    web_login_lock_s: float = Field(900, gt=0)
    """...for this long: even the right password is refused until the lock ends."""
    web_proxy_headers: bool = True
    """Trust ``X-Forwarded-For``/``X-Forwarded-Proto`` from ``WEB_FORWARDED_ALLOW_IPS``: behind
    an HTTPS proxy the page then knows the client's address and sets ``Secure`` cookies."""
    web_forwarded_allow_ips: str = "127.0.0.1"
    """Comma-separated addresses (or ``*``) of the proxies whose forwarded headers are trusted."""
    api_rate_per_minute: int = Field(120, ge=1)
    """Requests one API token may make per minute; beyond it the API answers 429."""
    api_max_people: int = Field(50_000, ge=1)
    """Most people in one ``POST /api/v1/batches`` JSON body (413 beyond it)."""
    webhook_attempts: int = Field(6, ge=1)
    """Deliveries of one webhook event tried before it is given up (logged as failed)."""
    webhook_backoff_s: float = Field(30, gt=0)
    """Wait before the second delivery try; it doubles after every further failure."""
    webhook_backoff_max_s: float = Field(3600, gt=0)
    """Cap of that growing wait."""
    webhook_timeout_s: float = Field(10, gt=0)
    """How long one delivery waits for the receiver's answer."""
    webhook_poll_s: float = Field(2, gt=0)
    """How often the web server looks for deliveries that are due."""
    smtp_url: str | None = None
    """``smtp://user:pass@host:port`` for change notifications; unset: none sent."""
    notify_to: str | None = None
    """HR address(es), comma-separated, that receive change notifications."""
    operator_to: str | None = None
    """Operator address(es), comma-separated, told when a portal blocks the checks (once per
    episode, by ``SMTP_URL``). Unset: ``NOTIFY_TO``."""
    log_format: Literal["json", "console"] = "console"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_file: Path | None = None
    """Also write the whole log (from ``LOG_LEVEL`` up) to this file, appending. On a terminal,
    ``run`` and ``demo`` show only warnings on screen (unless ``LOG_LEVEL`` is set): the rest
    goes here."""

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"zona horaria desconocida: {value}") from exc
        return value

    @field_validator("imss_email")
    @classmethod
    def _email_template(cls, value: str) -> str:
        if "{curp}" not in value:
            raise ValueError("debe contener {curp} (el IMSS liga cada correo a una sola CURP)")
        local, _, domain = value.partition("@")
        if not domain or "." not in domain:
            raise ValueError("no es una dirección de correo válida")
        if domain.lower() in {"gmail.com", "googlemail.com"} and re.search(r"[+-]", local):
            raise ValueError(
                "el IMSS rechaza correos Gmail con '+' o '-'; use un dominio propio con "
                "catch-all, p. ej. {curp}@constancias.empresa.example"
            )
        return value

    @field_validator("mailbox_url")
    @classmethod
    def _mailbox_scheme(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in {"maildir", "imap", "imaps"}:
            raise ValueError("use maildir:///ruta, imap://usuario:clave@host:puerto/INBOX o imaps://…")
        return value

    @field_validator("recheck_cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        if len(value.split()) != 5:
            raise ValueError("expresión cron de 5 campos, p. ej. '0 2 * * *'")
        return value

    @model_validator(mode="after")
    def _backoff(self) -> Settings:
        if self.retry_backoff_max_s * 2 >= self.visibility_timeout_s:
            raise ValueError("la espera más larga entre reintentos debe ser menor que la mitad "
                             "del plazo en que Redis reentrega una tarea "
                             "(CONSTANCIAS_RETRY_BACKOFF_MAX_S, CONSTANCIAS_VISIBILITY_TIMEOUT_S)")
        if self.block_pause_max_s * 2 >= self.visibility_timeout_s:
            raise ValueError("la pausa más larga de un portal que nos bloquea debe ser menor que "
                             "la mitad del plazo en que Redis reentrega una tarea "
                             "(CONSTANCIAS_BLOCK_PAUSE_MAX_S, CONSTANCIAS_VISIBILITY_TIMEOUT_S)")
        if self.doctor_retry_s * 2 >= self.visibility_timeout_s:
            raise ValueError("la espera antes de reintentar una revisión pospuesta por «doctor» "
                             "debe ser menor que la mitad del plazo en que Redis reentrega una "
                             "tarea (CONSTANCIAS_DOCTOR_RETRY_S, CONSTANCIAS_VISIBILITY_TIMEOUT_S)")
        if self.lease_s >= self.visibility_timeout_s:
            raise ValueError("la reserva de una consulta en curso debe durar menos que el plazo "
                             "en que Redis reentrega una tarea "
                             "(CONSTANCIAS_LEASE_S, CONSTANCIAS_VISIBILITY_TIMEOUT_S)")
        return self

    # --- derived ------------------------------------------------------------------------
    @cached_property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir.resolve() / 'constancias.db'}"

    @property
    def effective_mailbox_url(self) -> str:
        return self.mailbox_url or f"maildir://{(self.data_dir / 'mail').resolve()}"

    @property
    def embedded(self) -> bool:
        return not self.broker_url

    def email_for(self, curp: str) -> str:
        """The address IMSS gets for this CURP (lower case: mail systems fold it anyway)."""
        return self.imss_email.format(curp=curp.lower())


#: pydantic's error types -> what the value must be, in Spanish (its own texts are English).
_MUST_BE = {
    "int_parsing": "un número entero", "int_from_float": "un número entero",
    "float_parsing": "un número", "bool_parsing": "true o false",
    "greater_than": "mayor que {gt}", "greater_than_equal": "{ge} o más",
    "less_than": "menor que {lt}", "less_than_equal": "{le} o menos",
    "literal_error": "uno de estos: {expected}", "url_parsing": "una URL válida",
}


def _spanish_error(error: Any) -> str:
    """What is wrong with one value, in Spanish: our validators' own message, or what pydantic
    expected (its English text only when the catalogue lacks the case)."""
    template = _MUST_BE.get(error["type"])
    if template is None:
        return str(error["msg"]).removeprefix("Value error, ")
    expected = template.format(**{k: str(v).replace("'", "").replace(" or ", " o ")
                                  for k, v in (error.get("ctx") or {}).items()})
    return f"el valor {error.get('input')!r} no sirve, debe ser {expected}"


def load_settings(**overrides: object) -> Settings:
    """Read the environment (and ``.env``); a bad value becomes one Spanish line (exit 2): what
    to fix first, the setting's name last, in parentheses."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        where = f" (CONSTANCIAS_{field.upper()})" if field else ""
        raise ConfigError(f"Corrija la configuración, en el entorno o en .env: "
                          f"{_spanish_error(first)}{where}.") from None
