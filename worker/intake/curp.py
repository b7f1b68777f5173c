"""CURP normalisation and validation: a cell as the text a person sees, that text cleaned into
a CURP, and why a CURP is invalid, in Spanish words that tell HR which part to fix."""

from __future__ import annotations

import datetime as dt
import re
import unicodedata

from stdnum.exceptions import ValidationError as StdnumValidationError
from stdnum.mx import curp as stdnum_curp

__all__ = ["cell_text", "looks_like_curp", "normalise_curp", "validate_curp"]

# Whitespace of every kind (NBSP, zero-width, BOM), dashes and separators people type or
# paste inside a CURP, and quotes/apostrophes Excel users add to force text.
_NOISE_RE = re.compile(r"[\s\u00a0\u200b-\u200d\u2060\ufeff\-\u2010-\u2015\u2212_.,'\"`´‘’“”]+")
_CURP_SHAPE_RE = re.compile(r"[A-ZÑ&]{4}\d{6}[A-ZÑ]{6}[A-Z0-9]\d")
_FORMAT_PARTS = (
    (0, 4, re.compile(r"[A-Z]{4}"), "las posiciones 1-4 deben ser letras (iniciales del nombre)"),
    (4, 10, re.compile(r"\d{6}"), "las posiciones 5-10 deben ser dígitos (fecha de nacimiento "
                                  "AAMMDD)"),
    (10, 11, re.compile(r"[HMX]"), "la posición 11 debe ser el sexo: H, M o X"),
    (11, 13, re.compile(r"[A-Z]{2}"), "las posiciones 12-13 deben ser letras (entidad de "
                                      "nacimiento)"),
    (13, 16, re.compile(r"[A-Z]{3}"), "las posiciones 14-16 deben ser letras (consonantes del "
                                      "nombre)"),
    (16, 17, re.compile(r"[A-Z0-9]"), "la posición 17 debe ser letra o dígito (homoclave)"),
    (17, 18, re.compile(r"\d"), "la posición 18 debe ser un dígito (dígito verificador)"),
)


def cell_text(value: object) -> str:
    """A cell as the text a person sees: integral numbers without ``.0``, dates as ISO."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "VERDADERO" if value else "FALSO"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    if isinstance(value, dt.datetime):
        if value.time() == dt.time(0):
            return value.date().isoformat()
        return value.isoformat(sep=" ", timespec="seconds")
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return str(value)


def normalise_curp(value: object) -> str:
    """Trim, drop NBSP/zero-width/inner spaces, dashes and quotes, fold width, upper-case."""
    text = unicodedata.normalize("NFKC", cell_text(value))
    return _NOISE_RE.sub("", text).upper()


def looks_like_curp(value: str) -> bool:
    """True for a normalised value shaped like a CURP (structure only, not validated)."""
    return len(value) == 18 and _CURP_SHAPE_RE.fullmatch(value) is not None


def validate_curp(curp: str) -> str | None:
    """Why a normalised CURP is invalid, in Spanish, or None if valid.

    python-stdnum decides (format, birth date, sex, state, forbidden words, check digit);
    this function only words its verdict so that HR knows which part to fix.
    """
    if not curp:
        return "falta la CURP (celda vacía)"
    if len(curp) != 18:
        return f"tiene {len(curp)} caracteres; una CURP tiene 18"
    if "Ñ" in curp:
        return "contiene Ñ; en la CURP la Ñ se escribe X"
    bad = sorted({c for c in curp if not ("A" <= c <= "Z" or "0" <= c <= "9")})
    if bad:
        return f"contiene caracteres no permitidos ({' '.join(bad)}); solo letras A-Z y dígitos"
    for start, end, pattern, message in _FORMAT_PARTS:
        part = curp[start:end]
        if not pattern.fullmatch(part):
            hint = ""
            if "O" in part and pattern.fullmatch(part.replace("O", "0")):
                hint = " (¿una letra O en lugar de un cero?)"
            return f"formato inválido: {message}{hint}"

    # stdnum knows only H/M; RENAPO also issues X (non-binary) CURPs, so X is checked as H
    # for the other parts and the check digit is computed on the real value.
    probe = curp if curp[10] != "X" else curp[:10] + "H" + curp[11:]
    try:
        stdnum_curp.validate(probe, validate_check_digits=False)
    except StdnumValidationError:
        return _component_reason(probe)
    expected = stdnum_curp.calc_check_digit(curp)
    if curp[-1] != expected:
        return (f"el dígito verificador no corresponde (termina en {curp[-1]}, debería ser "
                f"{expected}): revise que no haya un error de captura")
    return None


def _component_reason(curp: str) -> str:
    """Which component stdnum refused (it raises one exception type for all of them)."""
    try:
        stdnum_curp.get_birth_date(curp)
    except StdnumValidationError:
        return f"la fecha de nacimiento {curp[4:10]} (AAMMDD) no existe"
    # Replace the four name letters with a harmless word: if that passes, they were the
    # problem (RENAPO never issues the "palabras inconvenientes" stdnum lists).
    try:
        stdnum_curp.validate("BOXW" + curp[4:], validate_check_digits=False)
    except StdnumValidationError:
        return f"la entidad de nacimiento {curp[11:13]} (posiciones 12-13) no existe"
    return (f"las primeras cuatro letras ({curp[:4]}) forman una palabra que RENAPO no asigna "
            "(la sustituye con X en la segunda letra)")

