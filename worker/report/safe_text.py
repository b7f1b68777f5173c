"""Text safety: what the untrusted input's text becomes in a cell so that Excel and
LibreOffice show it unchanged and never evaluate it (XML-illegal characters dropped, Excel's
cell limit, OOXML escapes, formula starts), and the same for CSV fields."""

from __future__ import annotations

import re

from openpyxl.cell.cell import ERROR_CODES

__all__ = ["EXCEL_MAX_CHARS", "FORMULA_START", "clean", "csv_safe", "needs_text_cell",
           "ooxml_escape"]

EXCEL_MAX_CHARS = 32_767
"""Most characters (UTF-16 code units) one Excel cell holds."""

# openpyxl's ILLEGAL_CHARACTERS_RE covers the C0 controls; XML 1.0 also forbids lone
# surrogates (they even make the UTF-8 encoder fail) and U+FFFE/U+FFFF.
_ILLEGAL_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
# Anything that needs more than the fast path: illegal characters, CR, OOXML escapes.
_SLOW_RE = re.compile("[\x00-\x08\x0b-\x1f\ud800-\udfff\ufffe\uffff]|_x[0-9A-Fa-f]{4}_")
# OOXML reads "_xHHHH_" in cell text as the character U+HHHH (Excel all of them,
# LibreOffice the control characters), so a literal one is escaped by escaping its "_".
_OOXML_ESCAPE_RE = re.compile("_(?=x[0-9A-Fa-f]{4}_)")
# First characters that make Excel or LibreOffice evaluate a cell when it is typed/edited.
FORMULA_START = frozenset("=+-@\t\r\n\uff1d\uff0b\uff0d\uff20")
_ELLIPSIS = "…"


def clean(value: object) -> str:
    """The text HR should see: XML-legal, at most one Excel cell long."""
    text = value if isinstance(value, str) else str(value)
    if _ILLEGAL_RE.search(text):
        text = _ILLEGAL_RE.sub("", text)
    if len(text) > EXCEL_MAX_CHARS // 2 and _utf16_len(text) > EXCEL_MAX_CHARS:
        text = _truncate(text)
    return text


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _truncate(text: str) -> str:
    """Cut to Excel's limit counted in UTF-16 units (as Excel counts), never inside a pair."""
    budget = EXCEL_MAX_CHARS - 1  # room for the ellipsis that tells HR it was cut
    out: list[str] = []
    for ch in text:
        budget -= 2 if ord(ch) > 0xFFFF else 1
        if budget < 0:
            break
        out.append(ch)
    return "".join(out) + _ELLIPSIS


def needs_text_cell(text: str) -> bool:
    """True when a plain ``str`` would not come back as the same text from the file."""
    return bool(text) and (
        text[0] in FORMULA_START or text in ERROR_CODES or _SLOW_RE.search(text) is not None
    )


def csv_safe(value: object) -> str:
    """A CSV field that a spreadsheet opens as text, never as a formula (OWASP CSV injection)."""
    text = clean(value)
    return "'" + text if text and text[0] in FORMULA_START else text


def ooxml_escape(text: str) -> str:
    if "_x" in text:
        text = _OOXML_ESCAPE_RE.sub("_x005F_", text)
    return text.replace("\r", "_x000D_")

