"""Who may do what: the roles of web accounts and the scopes of API tokens (SPEC §9).

One table serves the page and the API: a page route and an API route that do the same thing
need the same permission, whether it comes from a session's role or a token's scopes.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Permission", "ROLES", "ROLE_LABELS", "SCOPES", "role_allows", "parse_scopes",
           "BOOTSTRAP_ADMIN"]


class Permission(StrEnum):
    """What a route needs."""

    VIEW = "view"
    """See batches, their progress and people."""
    DOWNLOAD = "download"
    """Download a report, a PDF, the zip."""
    UPLOAD = "upload"
    """Upload a sheet, start or resume a batch, switch a person's re-check, answer captchas."""
    ADMIN = "admin"
    """Users, tokens, the audit trail, purge and settings."""


#: Role -> what it may do. ``admin`` can do everything HR can: the bootstrap admin is today's
#: single shared account and keeps all it could do.
ROLES: dict[str, frozenset[Permission]] = {
    "admin": frozenset(Permission),
    "rh": frozenset({Permission.VIEW, Permission.DOWNLOAD, Permission.UPLOAD}),
    "lectura": frozenset({Permission.VIEW, Permission.DOWNLOAD}),
}
ROLE_LABELS = {"admin": "Administración", "rh": "Recursos Humanos", "lectura": "Solo lectura"}

#: API scope -> what it lets a token do, in Spanish (SPEC §9).
SCOPES: dict[str, str] = {
    "batches:write": "crear lotes",
    "batches:read": "ver el avance de los lotes",
    "results:read": "ver resultados y descargar reportes y PDFs",
    "webhooks:write": "registrar webhooks",
}

#: Name of the account ``CONSTANCIAS_WEB_PASSWORD`` opens (created on first start).
BOOTSTRAP_ADMIN = "admin"


def role_allows(role: str | None, permission: Permission) -> bool:
    return role is not None and permission in ROLES.get(role, frozenset())


def parse_scopes(value: str) -> list[str]:
    """``"batches:write, results:read"`` -> the scopes, in SPEC order; ``ValueError`` (Spanish)
    on an unknown or empty list."""
    names = [s.strip().lower() for s in value.split(",") if s.strip()]
    unknown = [s for s in names if s not in SCOPES]
    if unknown or not names:
        raise ValueError(f"permiso desconocido: {', '.join(unknown) or value!r} (use "
                         f"{', '.join(SCOPES)}, separados por comas)")
    return [s for s in SCOPES if s in names]
