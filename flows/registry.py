"""The portal registry: each portal module declares itself once; the rest of the system asks
here instead of keeping its own list of portals.

A portal module (``flows/imss.py``, ``flows/issste.py``…) ends with::

    PORTAL = register(Portal(name="imss", title="IMSS", order=0, flow=run, ...))

Every module of the ``flows`` package is imported the first time the registry is asked (that is
how a new portal module is found: no list to edit); a portal defined elsewhere (a test's toy
portal, a plugin) calls ``register`` itself. Names are unique: a second portal with a taken name
is refused.
"""

from __future__ import annotations

import pkgutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from playwright.sync_api import Page

    from flows.base import CheckContext, Outcome
    from flows.steps import StepRetry
    from worker.core.settings import Settings

__all__ = ["Portal", "MailSteps", "DoctorLook", "register", "unregister", "portal", "portals",
           "names", "title", "run_order", "get_flow", "portal_modules"]


@dataclass(frozen=True)
class MailSteps:
    """A portal whose check waits for email between browser steps (IMSS: the confirmation
    link, then the constancia), run so that a waiting check holds no browser and no worker
    slot (SPEC §7; worker/storage/waiting.py, worker/engine/mailwatch.py)."""

    send: Callable[[CheckContext], Outcome]
    """Step 1: up to the portal's acceptance; an ``Outcome`` with ``waiting`` then."""
    link: Callable[..., Outcome]
    """Step 2, ``link(ctx, link, tried_before=…)``: the email's link followed in a fresh
    context; ``waiting`` again (``stage`` ``mail2``) when the PDF must come by email."""
    pdf: Callable[..., Outcome]
    """``pdf(work_dir, curp, pdf_bytes, log)``: the emailed PDF read and verified, no browser."""
    link_in: Callable[[Any], str | None]
    """The confirmation link a message (``flows.mailbox.MailMessage``) carries, if any."""
    pdf_in: Callable[[Any], bytes | None]
    """The PDF a message carries, if any."""


@dataclass(frozen=True)
class DoctorLook:
    """What ``constancias doctor`` looks at on the portal, with the flow's own functions and
    without spending a query: the page where the procedure starts (its check
    ``<name>.page``), then the form the flow fills in (``<name>.form``), then, for a portal
    with a captcha, its image read by the solver (``<name>.captcha``). Each function raises
    the flows' errors (``PortalChanged`` naming what is missing…), as the flow would."""

    open: Callable[[Page, Settings, StepRetry], object]
    """Opens the page where the procedure starts (the flow's first step)."""
    page_name: str
    """That page, in Spanish, for the operator: ``"Página informativa"``."""
    form: Callable[[Page, Settings, StepRetry], str]
    """From the opened page, finds every control the flow uses; what was found, in Spanish,
    saying that nothing was sent."""
    captcha: Callable[[Page, Settings], bytes] | None = None
    """The form's captcha image as the browser received it (a portal with a captcha)."""
    refresh_captcha: Callable[[Page], None] | None = None
    """A new captcha image on the same form (free: only sending the form spends a query)."""


@dataclass(frozen=True)
class Portal:
    """What the rest of the system needs to know about one portal."""

    name: str
    """Stable code: stored with every check, ``--portals``, the JSON of SPEC §4."""
    title: str
    """What HR reads (report, web page, e-mails): ``"IMSS"``."""
    procedure: str
    """The document or procedure, as HR knows it: ``"Constancia de No Derechohabiencia"``."""
    order: int
    """Run order within a batch, lowest first: the longest checks start first, so a batch does
    not end on one long check with the other workers idle."""
    flow: Callable[[CheckContext], Outcome]
    """The entry function: one check, from a fresh browser context to an ``Outcome``."""
    url_setting: str = ""
    """The ``Settings`` field with the page where the procedure starts (``imss_url``)."""
    rate_setting: str = ""
    """The ``Settings`` field with the checks started per minute, across all workers."""
    concurrency_setting: str = ""
    """The ``Settings`` field with the checks running at once, across all workers."""
    pdf_title: str = ""
    """The heading every constancia of this portal prints, upper case without accents
    (``flows.pdf`` refuses a PDF without it); empty: the portal issues no PDF."""
    default_url: str = ""
    default_rate_per_min: float = 60.0
    default_max_concurrency: int = 4
    """Used when ``Settings`` has no such field (a portal added without new settings)."""
    mail_steps: MailSteps | None = None
    """Set when the check waits for email: it then runs as those steps (``IMSS_MAIL_WAIT``)."""
    real_hosts: tuple[str, ...] = ()
    """The real portal's hosts (their subdomains too): pointed there, a configuration meant
    for the sandbox only (an example e-mail domain) is an error (``doctor``)."""
    doctor: DoctorLook | None = None
    """What ``constancias doctor`` looks at; ``None``: doctor does not open this portal."""

    def is_real(self, url: str) -> bool:
        """Whether ``url`` points at the real portal (one of ``real_hosts``)."""
        host = (urlsplit(url).hostname or "").lower()
        return any(host == real or host.endswith("." + real) for real in self.real_hosts)

    def url(self, settings: Settings) -> str:
        return str(self._setting(settings, self.url_setting, self.default_url))

    def rate_limit(self, settings: Settings) -> float:
        return float(self._setting(settings, self.rate_setting, self.default_rate_per_min))

    def max_concurrency(self, settings: Settings) -> int:
        return int(self._setting(settings, self.concurrency_setting,
                                 self.default_max_concurrency))

    @staticmethod
    def _setting(settings: Settings, field: str, default: Any) -> Any:
        return getattr(settings, field) if field in type(settings).model_fields else default


_portals: dict[str, Portal] = {}
_lock = threading.Lock()
#: Held while the package is imported, never while registering: a thread importing a portal
#: module by itself (and so registering) never waits for the thread discovering them.
_discovery = threading.Lock()
_discovered = threading.Event()


def register(portal: Portal) -> Portal:
    """Add a portal; a second portal with the same name is refused (``ValueError``)."""
    with _lock:
        if portal.name in _portals:
            raise ValueError(f"portal {portal.name!r} is already registered")
        _portals[portal.name] = portal
    return portal


def unregister(name: str) -> None:
    """Remove a portal registered at run time (tests)."""
    with _lock:
        _portals.pop(name, None)


def _discover() -> None:
    """Import every module of the ``flows`` package once: portal modules register themselves."""
    if _discovered.is_set():
        return
    with _discovery:
        if _discovered.is_set():
            return
        for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
            if not info.ispkg:
                import_module(f"{__package__}.{info.name}")
        _discovered.set()


def portals() -> list[Portal]:
    """Every portal, in run order."""
    _discover()
    with _lock:
        return sorted(_portals.values(), key=lambda p: (p.order, p.name))


def names() -> list[str]:
    """Every portal's name, in run order."""
    return [p.name for p in portals()]


def portal(name: str) -> Portal:
    """The portal called ``name``; ``KeyError`` naming the known ones otherwise."""
    _discover()
    with _lock:
        found = _portals.get(name)
    if found is None:
        raise KeyError(f"unknown portal {name!r}; known: {', '.join(names())}")
    return found


def title(name: str) -> str:
    """What HR reads for portal ``name`` (an unknown name, e.g. in old data: upper case)."""
    try:
        return portal(name).title
    except KeyError:
        return name.upper()


def run_order() -> dict[str, int]:
    """Portal name -> rank to start a batch's checks in (``storage`` orders by it)."""
    return {p.name: i for i, p in enumerate(portals())}


def get_flow(name: str) -> Callable[[CheckContext], Outcome]:
    """The entry function of portal ``name``."""
    return portal(name).flow


def portal_modules() -> list[str]:
    """The modules that define the portals' flows (the embedded fork server preloads them)."""
    return sorted({p.flow.__module__ for p in portals()})
