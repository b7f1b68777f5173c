"""The status taxonomy of SPEC §2: stable codes, Spanish labels, what HR must do.

Codes are API (CLI JSON, database); labels and actions are what HR reads.
"""

from __future__ import annotations

from enum import Enum

__all__ = ["Status", "StatusClass", "RETRYABLE", "PDF_BEARING", "REUSABLE", "label_of"]


class StatusClass(str, Enum):
    """How the report colours a status."""

    DONE = "done"
    NEEDS_ACTION = "needs_action"
    FAILED = "failed"


class Status(str, Enum):
    NOT_ENTITLED = "not_entitled"
    ENTITLED = "entitled"
    NOT_AFFILIATED = "not_affiliated"
    AFFILIATED = "affiliated"
    INVALID_CURP = "invalid_curp"
    CURP_NOT_FOUND = "curp_not_found"
    DATA_INCONSISTENT = "data_inconsistent"
    DAILY_LIMIT = "daily_limit"
    EMAIL_REJECTED = "email_rejected"
    CAPTCHA_UNSOLVED = "captcha_unsolved"
    PORTAL_UNAVAILABLE = "portal_unavailable"
    PORTAL_BLOCKED = "portal_blocked"
    PORTAL_CHANGED = "portal_changed"
    ERROR = "error"

    @property
    def label(self) -> str:
        return _LABELS[self][0]

    @property
    def action(self) -> str:
        """What HR (or the operator) must do next, in Spanish."""
        return _LABELS[self][1]

    @property
    def status_class(self) -> StatusClass:
        return _LABELS[self][2]

    @property
    def has_pdf(self) -> bool:
        return self in PDF_BEARING


_D, _A, _F = StatusClass.DONE, StatusClass.NEEDS_ACTION, StatusClass.FAILED

#: Label, next action (SPEC §2's "what happens next", from the seed guide) and report class.
_LABELS: dict[Status, tuple[str, str, StatusClass]] = {
    Status.NOT_ENTITLED: (
        "Sin derecho a servicio médico",
        "Ninguna: constancia obtenida. Para tener servicio médico, la persona puede "
        "afiliarse al IMSS-Bienestar o a otra institución.",
        _D,
    ),
    # Not a plain success: the person has IMSS rights, and proving them (if HR needs to) is
    # another procedure, the "Constancia de vigencia de derechos" (SPEC §2).
    Status.ENTITLED: (
        "Vigente (con derecho)",
        "Constancia obtenida: la persona tiene derechos vigentes en el IMSS. Si necesita "
        "comprobarlos, es otro trámite: la Constancia de vigencia de derechos del IMSS.",
        _A,
    ),
    Status.NOT_AFFILIATED: ("No afiliado al ISSSTE", "Ninguna: constancia obtenida.", _D),
    Status.AFFILIATED: (
        "Afiliado al ISSSTE",
        "Ninguna: el ISSSTE no emite constancia en línea. En persona: Departamentos de "
        "Afiliación y Prestaciones Económicas, de lunes a viernes de 09:00 a 18:00.",
        _D,
    ),
    Status.INVALID_CURP: ("CURP inválida", "Corregir la CURP en la hoja y volver a cargarla.", _A),
    Status.CURP_NOT_FOUND: (
        "CURP no localizada en RENAPO",
        "Verificar la CURP con la persona o en RENAPO.",
        _A,
    ),
    Status.DATA_INCONSISTENT: (
        "Datos inconsistentes en el IMSS",
        "La persona debe acudir a su subdelegación del IMSS para regularizar sus datos.",
        _A,
    ),
    Status.DAILY_LIMIT: (
        "Límite diario de consultas",
        "Se reintentará en la revisión nocturna.",
        _F,
    ),
    Status.EMAIL_REJECTED: (
        "Correo rechazado por el IMSS",
        "Revisar la configuración de correo (CONSTANCIAS_IMSS_EMAIL).",
        _A,
    ),
    Status.CAPTCHA_UNSOLVED: (
        "Captcha no resuelto",
        "Se reintentará más tarde, o resolverlo manualmente.",
        _F,
    ),
    Status.PORTAL_UNAVAILABLE: (
        "Portal no disponible",
        "Se reintentará más tarde (revisión nocturna).",
        _F,
    ),
    Status.PORTAL_BLOCKED: (
        "Portal bloqueó la consulta",
        "La protección contra robots del portal rechazó la sesión: las consultas se "
        "espaciaron y se reintentará más tarde; el operador ya fue avisado.",
        _F,
    ),
    Status.PORTAL_CHANGED: (
        "El portal cambió",
        "Avisar a soporte técnico: el flujo debe actualizarse.",
        _F,
    ),
    Status.ERROR: ("Error inesperado", "Avisar a soporte técnico con la evidencia.", _F),
}

#: Statuses the nightly re-check picks up again even if they are recent.
RETRYABLE = frozenset(
    {Status.DAILY_LIMIT, Status.PORTAL_UNAVAILABLE, Status.PORTAL_BLOCKED, Status.CAPTCHA_UNSOLVED}
)

#: Statuses that come with a constancia PDF.
PDF_BEARING = frozenset({Status.NOT_ENTITLED, Status.ENTITLED, Status.NOT_AFFILIATED})

#: Verdicts that may be reused the same day instead of querying the portal again.
REUSABLE = frozenset(
    {
        Status.NOT_ENTITLED,
        Status.ENTITLED,
        Status.NOT_AFFILIATED,
        Status.AFFILIATED,
        Status.CURP_NOT_FOUND,
        Status.DATA_INCONSISTENT,
    }
)


def label_of(code: str) -> str:
    """The Spanish label of a stored status code (the code itself if this version lacks it)."""
    try:
        return Status(code).label
    except ValueError:
        return code
