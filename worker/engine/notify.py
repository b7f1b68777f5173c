"""Change notifications: one e-mail to HR per status change found by a re-check (optional);
and the operator's notice when a portal's bot protection blocks the checks (once per episode).

Configured by ``CONSTANCIAS_SMTP_URL`` (``smtp://user:pass@host:port``; ``smtps://`` for TLS
from the start, ``?starttls=1`` to upgrade a plain connection; ``?from=addr`` sets the sender)
and ``CONSTANCIAS_NOTIFY_TO`` (comma-separated). Unset: nothing is sent.

Sent once per change: before sending, the change is *claimed* by inserting its row in the
``notifications`` table (unique per batch × CURP × portal). Whoever inserts it sends it; a
second call — a report rebuilt, a batch finished twice, two workers racing — finds it claimed
and sends nothing. A send that fails releases its claim, so the next call retries it.

The changes are the report's own Cambios list (``worker.report.data.report_data``): one
definition of "a change" for the sheet and the e-mails.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import structlog

from flows import registry
from worker.core.errors import ConfigError
from worker.core.logs import mask_curp
from worker.core.settings import Settings
from worker.report.data import report_data
from worker.storage.repository import Storage

__all__ = ["SmtpTarget", "smtp_target", "smtp_connection", "notify_batch", "change_message",
           "forget_purged", "notify_portal_blocked", "notify_doctor_failed"]

log = structlog.get_logger("constancias.notify")


@dataclass(frozen=True)
class SmtpTarget:
    """Where and how to send: parsed from ``CONSTANCIAS_SMTP_URL``."""

    host: str
    port: int
    username: str | None
    password: str | None
    ssl: bool
    starttls: bool
    sender: str
    recipients: list[str]


def smtp_target(settings: Settings, recipients: str | None = None) -> SmtpTarget | None:
    """The SMTP target (to ``recipients``, default ``NOTIFY_TO``), or None when notifications
    are not configured."""
    to = recipients if recipients is not None else settings.notify_to
    if not settings.smtp_url or not to:
        return None
    parts = urlsplit(settings.smtp_url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ConfigError("Configuración inválida en CONSTANCIAS_SMTP_URL: use "
                          "smtp://usuario:clave@host:puerto o smtps://…")
    query = parse_qs(parts.query)
    username = unquote(parts.username) if parts.username else None
    default_sender = username if username and "@" in username else f"constancias@{parts.hostname}"
    addresses = [a.strip() for a in to.split(",") if a.strip()]
    return SmtpTarget(
        host=parts.hostname,
        port=parts.port or (465 if parts.scheme == "smtps" else 25),
        username=username,
        password=unquote(parts.password) if parts.password else None,
        ssl=parts.scheme == "smtps",
        starttls=query.get("starttls", ["0"])[0].lower() in ("1", "true", "yes"),
        sender=query.get("from", [default_sender])[0],
        recipients=addresses,
    )


def change_message(change: Any, *, batch_id: str, sender: str, recipients: list[str],
                   extra: dict[str, Any], tz: Any) -> EmailMessage:
    """The Spanish e-mail HR receives for one change (a ``worker.report.model.ReportChange``)."""
    portal = registry.title(change.portal)
    before = change.before.label if change.before is not None else "Sin consulta previa"
    after = change.after.label
    who = f"{change.name} ({change.curp})" if change.name else change.curp
    msg = EmailMessage()
    msg["Subject"] = f"Cambio en {portal}: {change.curp} — {before} → {after}"
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = make_msgid(domain="constancias.local")
    when = change.after_at.astimezone(tz).strftime("%d/%m/%Y %H:%M")
    prior = (change.before_at.astimezone(tz).strftime("%d/%m/%Y %H:%M")
             if change.before_at else "—")
    lines = [
        "La revisión de constancias encontró un cambio de estado.",
        "",
        f"Persona: {who}",
    ]
    # The input sheet's other columns (employee number, area…), as HR wrote them.
    lines += [f"{k}: {v}" for k, v in extra.items() if v and str(v) not in (change.name or "")]
    lines += [
        f"Portal: {portal}",
        f"Antes: {before} (consulta del {prior})",
        f"Ahora: {after} (consulta del {when})",
        f"Qué hacer: {change.after.action}",
        "",
        f"Revisión {batch_id}; el detalle está en la hoja «Cambios» de su reporte.",
    ]
    msg.set_content("\n".join(lines))
    return msg


@contextmanager
def smtp_connection(target: SmtpTarget, timeout_s: float = 30) -> Iterator[smtplib.SMTP]:
    """A connected, logged-in SMTP session (TLS as the URL asks); also what ``doctor`` tries."""
    cls = smtplib.SMTP_SSL if target.ssl else smtplib.SMTP
    kwargs: dict[str, Any] = {"timeout": timeout_s}
    if target.ssl:
        kwargs["context"] = ssl.create_default_context()
    with cls(target.host, target.port, **kwargs) as smtp:
        if target.starttls:
            smtp.starttls(context=ssl.create_default_context())
        if target.username and target.password:
            smtp.login(target.username, target.password)
        yield smtp


def _send(target: SmtpTarget, messages: list[EmailMessage]) -> None:
    with smtp_connection(target) as smtp:
        for msg in messages:
            smtp.send_message(msg)


def notify_batch(settings: Settings, storage: Storage, batch_id: str) -> int:
    """E-mail every not-yet-notified change of a finished re-check batch; returns how many
    were sent now. A no-op (0) when notifications are off or the batch is not a re-check."""
    target = smtp_target(settings)
    batch = storage.get_batch(batch_id)
    if target is None or batch is None or batch.kind != "recheck":
        return 0
    data = report_data(settings, storage, batch_id)
    extras = {r.curp: r.extra for r in data.rows if r.curp}
    sent = 0
    for change in data.changes or []:
        claim = storage.claim_notification(
            batch_id, change.curp, change.portal,
            change.before.value if change.before else None, change.after.value,
            ", ".join(target.recipients))
        if claim is None:
            continue
        msg = change_message(change, batch_id=batch_id, sender=target.sender,
                             recipients=target.recipients, extra=extras.get(change.curp, {}),
                             tz=settings.tz)
        try:
            _send(target, [msg])
        except (OSError, smtplib.SMTPException) as err:
            # Release the claim: the next call (a report rebuilt, the next run) retries it.
            storage.release_notification(claim)
            log.warning("notify_failed", batch_id=batch_id, curp=mask_curp(change.curp),
                        portal=change.portal, error=type(err).__name__)
            continue
        storage.notification_sent(claim)
        sent += 1
        log.info("notify_sent", batch_id=batch_id, curp=mask_curp(change.curp),
                 portal=change.portal, before=change.before.value if change.before else None,
                 after=change.after.value)
    return sent


def notify_portal_blocked(settings: Settings, portal: str, pause_s: float, reason: str) -> bool:
    """Tell the operator that ``portal`` blocks the checks: one warning log line, and an e-mail
    to ``OPERATOR_TO`` (else ``NOTIFY_TO``) when SMTP is configured. Called once per block
    episode (``worker.engine.limits.BlockWatch``); True if the e-mail went out. Never raises: a mail
    problem must not stop the checks."""
    name = registry.title(portal)
    log.warning("portal_blocked", portal=portal, pause_s=round(pause_s, 1), reason=reason)
    return _tell_operator(settings, f"constancias: el portal del {name} bloqueó las consultas", [
        f"La protección contra robots del portal del {name} (Incapsula) rechazó una consulta.",
        "",
        f"Detalle: {reason}",
        f"Las consultas del {name} se pausaron {pause_s:.0f} s en todos los trabajadores; la "
        "pausa crece si el bloqueo sigue, y se reanudan solas. El otro portal continúa.",
        "Este aviso se envía una sola vez por episodio.",
    ], portal=portal)


def notify_doctor_failed(settings: Settings, failed: list[tuple[str, str]],
                         retry_in_s: float | None) -> bool:
    """Tell the operator that ``constancias doctor`` failed before a re-check (``failed``:
    ``(check name, Spanish detail)``), so the batch was postponed (``retry_in_s``) or, with
    no postponement left, given up for the night. Called once per new failure
    (``worker.services.preflight``); True if the e-mail went out. Never raises."""
    log.warning("doctor_failed", checks=[name for name, _ in failed], retry_in_s=retry_in_s)
    when = (f"Se volverá a intentar en {retry_in_s / 60:.0f} min." if retry_in_s is not None
            else "No quedan reintentos: la revisión de esta noche no se hará; la próxima "
                 "programada empieza de nuevo.")
    return _tell_operator(settings, "constancias: la revisión nocturna se pospuso", [
        "«constancias doctor» falló antes de la revisión nocturna, y la revisión se pospuso "
        "para no gastar consultas que fallarían.",
        "",
        *[f"- {name}: {detail}" for name, detail in failed],
        "",
        when,
        "Este aviso se envía una sola vez por falla nueva; ejecute «constancias doctor» para "
        "ver el estado actual.",
    ])


def _tell_operator(settings: Settings, subject: str, lines: list[str], **log_fields: Any) -> bool:
    """E-mail the operator (``OPERATOR_TO``, else ``NOTIFY_TO``) by ``SMTP_URL``; False when
    not configured or the mail failed (logged). Never raises."""
    try:
        target = smtp_target(settings, settings.operator_to or settings.notify_to)
    except ConfigError as err:
        log.warning("operator_notice_failed", error=str(err), **log_fields)
        return False
    if target is None:
        return False
    msg = EmailMessage()
    msg["Subject"] = subject
    msg["From"] = target.sender
    msg["To"] = ", ".join(target.recipients)
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = make_msgid(domain="constancias.local")
    msg.set_content("\n".join(lines))
    try:
        _send(target, [msg])
    except (OSError, smtplib.SMTPException) as err:
        log.warning("operator_notice_failed", error=type(err).__name__, **log_fields)
        return False
    log.info("operator_notice_sent", subject=subject, **log_fields)
    return True


def forget_purged(storage: Storage) -> int:
    """Replace the CURPs of notifications of purged batches by their pseudonym (what
    ``worker.services.purge`` does to checks), so the record of what was sent outlives no
    personal data. Returns how many rows changed."""
    return storage.forget_purged_notifications()
