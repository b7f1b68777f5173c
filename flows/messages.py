"""The one classifier of portal texts: a message is found by what it says, not by where the
portal puts it (an alert, a Spring binding span, a ``window.alert()`` dialog, a modal, the body).

Texts are compared normalised (``fold``): accents, case, punctuation and whitespace folded, so
"El captcha no fue válido, favor de intentar nuevamente" and "…valido…nuevamente." are one
message, and ``&oacute;`` entities or ``<br>`` inside a message change nothing. Every pattern
the IMSS flow acts on is in ``IMSS_MESSAGES``; when the portal changes its wording, the fix goes
there.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from enum import Enum

from worker.core.statuses import Status

__all__ = ["Kind", "Pattern", "Match", "fold", "classify", "IMSS_MESSAGES"]


class Kind(Enum):
    """What the flow does with a message."""

    CAPTCHA = "captcha"
    """The captcha answer was refused (or left empty): reject it and try another image."""
    REFUSED = "refused"
    """The portal refused the query for good: the check ends with the pattern's status."""
    SUCCESS = "success"
    """The form was accepted: the confirmation email is on its way."""
    FINAL = "final"
    """The final page after the link: the constancia was generated."""
    TOKEN_INVALID = "token_invalid"  # noqa: S105 - a kind of message, not a secret
    """The confirmation link was refused (invalid, spent or of another day)."""
    TOKEN_SPENT = "token_spent"  # noqa: S105
    """The link had already been used (by this check's own earlier load)."""


@dataclass(frozen=True)
class Pattern:
    """One message: its folded fragment, what it means and (for REFUSED) the status."""

    fragment: str
    kind: Kind
    status: Status | None = None


@dataclass(frozen=True)
class Match:
    """A message found in a text."""

    pattern: Pattern
    text: str
    """The text it was found in, as shown (links kept as "text (url)" where known)."""

    @property
    def kind(self) -> Kind:
        return self.pattern.kind

    @property
    def status(self) -> Status | None:
        return self.pattern.status


def fold(text: str) -> str:
    """Lower case, accents removed, every run of punctuation and whitespace one space."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
    return " ".join(re.sub(r"[\W_]+", " ", plain).split())


def _p(fragment: str, kind: Kind, status: Status | None = None) -> Pattern:
    return Pattern(fold(fragment), kind, status)


#: The IMSS portal's messages (SPEC §3), most specific first. Fragments are the stable part of
#: each wording; several wordings of one message each get a line.
IMSS_MESSAGES: tuple[Pattern, ...] = (
    # Captcha: the controller's and the captcha utility's wordings; empty: a required field.
    _p("captcha no fue valido", Kind.CAPTCHA),
    _p("informacion del captcha no coincide", Kind.CAPTCHA),
    _p("este campo es obligatorio", Kind.CAPTCHA),
    # Business errors.
    _p("no se localizo informacion en renapo", Kind.REFUSED, Status.CURP_NOT_FOUND),
    _p("ha localizado inconsistencias en tus datos", Kind.REFUSED, Status.DATA_INCONSISTENT),
    _p("requiere actualizacion", Kind.REFUSED, Status.DATA_INCONSISTENT),
    _p("agotado el numero de consultas", Kind.REFUSED, Status.DAILY_LIMIT),
    _p("numero de intentos alcanzado", Kind.REFUSED, Status.DAILY_LIMIT),
    _p("operaciones por periodo", Kind.REFUSED, Status.DAILY_LIMIT),
    _p("dominio del correo electronico es invalido", Kind.REFUSED, Status.EMAIL_REJECTED),
    _p("relacionado a una curp distinta", Kind.REFUSED, Status.EMAIL_REJECTED),
    # The page's own email checks (window.alert) and the server's Gmail rule.
    _p("el correo no es valido", Kind.REFUSED, Status.EMAIL_REJECTED),
    _p("correos gmail no deben contener", Kind.REFUSED, Status.EMAIL_REJECTED),
    # The confirmation link.
    _p("este token ya fue utilizado", Kind.TOKEN_SPENT),
    _p("token invalido", Kind.TOKEN_INVALID),
    _p("token expirado", Kind.TOKEN_INVALID),
    _p("confirmacion invalida", Kind.TOKEN_INVALID),
    # Success of the form, and the final page.
    _p("le hemos enviado una liga de confirmacion", Kind.SUCCESS),
    _p("ha sido enviado al correo electronico", Kind.FINAL),
)


def classify(texts: list[str] | tuple[str, ...] | str,
             patterns: tuple[Pattern, ...] = IMSS_MESSAGES) -> Match | None:
    """The first pattern (in table order) found in any of ``texts``, with the shortest text
    that holds it (the message itself rather than the whole page), or ``None``."""
    candidates = [texts] if isinstance(texts, str) else list(texts)
    folded = [(fold(text), text) for text in candidates if text]
    for pattern in patterns:
        holding = [text for f, text in folded if pattern.fragment in f]
        if holding:
            return Match(pattern, _clean(min(holding, key=len)))
    return None


#: A dismissable alert's close "×" and the framework's "Error:" prefix: not part of the message.
_DECORATION = re.compile(r"^(?:\s*[×✕]\s*)?(?:error\s*:\s*)?", re.IGNORECASE)


def _clean(text: str) -> str:
    return _DECORATION.sub("", " ".join(text.split()), count=1)
