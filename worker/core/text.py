"""Text folding, written once: what the intake's header search, the report's name columns, the
flows' message matching, the mailbox's subjects and the PDF reader all compare."""

from __future__ import annotations

import unicodedata

__all__ = ["fold"]


def fold(text: str) -> str:
    """Case-, accent- and spacing-insensitive form: ``" Confirmación  IMSS "`` →
    ``"confirmacion imss"`` (Ñ becomes n). Portals write "valido" and "válido", sheets
    "Nombre(s)" and "NOMBRE": they compare by meaning, not by spelling."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(plain.casefold().split())
