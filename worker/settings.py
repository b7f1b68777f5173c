"""Typed settings (SPEC §5): one class, read once at start-up, passed down.

Every field is an environment variable with the ``CONSTANCIAS_`` prefix; ``.env`` is honoured.
Policy (retries, timeouts, limits) lives here as data, not as literals in code.
"""

from __future__ import annotations

import re
from functools import cached_property
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from worker.errors import ConfigError

__all__ = ["Settings", "load_settings"]

REAL_IMSS_URL = "https://www.imss.gob.mx/constancia-no-derechohabiencia"
REAL_ISSSTE_URL = (
    "https://oficinavirtual.issste.gob.mx/Servicios/Acreditaci%C3%B3n-de-no-Afiliaci%C3%B3n"
)


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
    data_dir: Path = Path("data")
    """Database, PDFs, evidence and reports live here (owner-only permissions)."""
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

    # --- browser and waits --------------------------------------------------------------
    browser_executable: str | None = None
    """Chromium binary. Unset: ``/usr/bin/chromium-headless-shell``, else ``/usr/bin/chromium``,
    else Playwright's own."""
    navigation_timeout_s: float = Field(30, gt=0)
    """One page load."""
    element_timeout_s: float = Field(10, gt=0)
    """An expected element; missing after this is ``portal_changed``."""
    email_timeout_s: float = Field(120, gt=0)
    """Waiting for an IMSS email; after this the check is retried."""
    mailbox_poll_s: float = Field(0.25, gt=0)
    """How often the mailbox is polled while waiting."""
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
    smtp_url: str | None = None
    """``smtp://user:pass@host:port`` for change notifications; unset: none sent."""
    notify_to: str | None = None
    """HR address(es), comma-separated, that receive change notifications."""
    log_format: Literal["json", "console"] = "console"
    log_level: Literal["debug", "info", "warning", "error"] = "info"

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
            raise ValueError("retry_backoff_max_s debe ser menor que la mitad de visibility_timeout_s")
        if self.lease_s >= self.visibility_timeout_s:
            raise ValueError("lease_s debe ser menor que visibility_timeout_s")
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

    def rate_limit(self, portal: str) -> float:
        return {"imss": self.rate_limit_imss, "issste": self.rate_limit_issste}[portal]

    def max_concurrency(self, portal: str) -> int:
        return {"imss": self.max_concurrency_imss, "issste": self.max_concurrency_issste}[portal]


def load_settings(**overrides: object) -> Settings:
    """Read the environment (and ``.env``); a bad value becomes one Spanish line (exit 2)."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "configuración"
        name = f"CONSTANCIAS_{field.upper()}" if first["loc"] else "configuración"
        message = str(first["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"Configuración inválida en {name}: {message}") from None
