"""What goes into a flow and what comes out of it.

A flow is one function ``flow(ctx: CheckContext) -> Outcome``. It never imports Celery, the
database or global settings: everything it needs is in the frozen context.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

from worker.core.statuses import Status

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext

    from worker.core.settings import Settings

__all__ = [
    "Person",
    "PdfFacts",
    "PdfSource",
    "ImssPdfSource",
    "IssstePdfSource",
    "FirstMail",
    "SecondMail",
    "MailAwaited",
    "Outcome",
    "CheckContext",
    "CaptchaSolver",
    "Mailbox",
]


@dataclass(frozen=True)
class Person:
    curp: str
    """Normalised, validated CURP (upper case)."""
    row: int | None = None
    """Row number in the source sheet, for messages only."""


@dataclass(frozen=True)
class PdfFacts:
    """What was read from the constancia PDF itself (never from the page)."""

    curp: str
    result: str
    """``entitled`` / ``not_entitled`` (IMSS) or ``not_affiliated`` (ISSSTE)."""
    name: str | None = None
    nss: str | None = None
    folio: str | None = None
    issued_on: date | None = None
    valid_until: date | None = None


#: How IMSS gave the PDF: from its final ``page``, or attached to the second ``email``.
ImssPdfSource = Literal["page", "email"]
#: How ISSSTE gave the PDF: a browser ``download``, a PDF ``response`` (a window or frame
#: answering inline), or fetched from an embedded ``viewer``'s source.
IssstePdfSource = Literal["download", "response", "viewer"]
#: How a check's PDF was obtained (logged by the flows as ``source`` / ``via``).
PdfSource = ImssPdfSource | IssstePdfSource


@dataclass(frozen=True)
class FirstMail:
    """Step 1 (flows.imss ``send_step``) ended with the form accepted: the engine stores the
    wait for email 1 (worker/storage/waiting.py ``Waits.start``)."""

    stage: ClassVar[Literal["mail1"]] = "mail1"
    address: str
    """Where the portal sends its emails."""
    sent_at: float
    """When the form was sent (epoch seconds): older messages are not this check's."""


@dataclass(frozen=True)
class SecondMail:
    """Step 2 (flows.imss ``link_step``) followed the link but the page gave no PDF: the engine
    waits for email 2, which carries it (``Waits.wait_second``)."""

    stage: ClassVar[Literal["mail2"]] = "mail2"


#: A step that ends waiting for an email.
MailAwaited = FirstMail | SecondMail


@dataclass
class Outcome:
    """The result of one check."""

    status: Status
    detail: str = ""
    """Spanish, for HR (the portal's own message when there is one)."""
    pdf_path: Path | None = None
    facts: PdfFacts | None = None
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds per step (``form``, ``captcha``, ``email``, ``pdf``…)."""
    pdf_source: PdfSource | None = None
    """How ``pdf_path`` was obtained (``None`` without a PDF)."""
    waiting: MailAwaited | None = None
    """Set by a step that ends waiting for an email (flows.imss ``send_step``/``link_step``):
    nothing is recorded, the engine stores the wait (worker/storage/waiting.py); ``status`` is
    unused."""


class CaptchaSolver(Protocol):
    """Turns a captcha image into a guess. ``reject`` tells it the last guess was wrong."""

    def solve(self, image: bytes, *, key: str) -> str: ...

    def reject(self, key: str) -> None: ...


class Mailbox(Protocol):
    """Where IMSS emails arrive (flows/mailbox.py)."""

    def wait_for(
        self, *, to: str, subject_contains: str, since: float, timeout_s: float
    ) -> Any: ...


@dataclass(frozen=True)
class CheckContext:
    """Everything one check may use. Built by the engine, fresh for each check."""

    browser_context: BrowserContext
    """A fresh Playwright context (downloads accepted); closed by the engine afterwards."""
    person: Person
    """Whose status is checked."""
    settings: Settings
    """Portal URLs, timeouts, attempts, email template."""
    work_dir: Path
    """Where the PDF goes (``<dir>/<portal>.pdf``); evidence is added by the engine."""
    captcha: CaptchaSolver
    """The configured captcha solver."""
    mailbox: Mailbox
    """The configured mailbox (only IMSS uses it)."""
    log: Any
    """A structlog logger bound to batch, portal and task."""

