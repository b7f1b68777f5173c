"""Reading text files (``.csv`` / ``.txt``): the encoding (BOMs, UTF-8, Windows-1252), the
delimiter (``,`` ``;`` tab ``|`` or Excel's ``sep=`` line) and Excel's ``="0123"`` text, with
binary, HTML and XML files refused."""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Iterator
from pathlib import Path

from worker.core.errors import InputError
from worker.intake.stream import SAVE_AS_XLSX, Row, SheetStream

__all__ = ["text_sheets"]

_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_EXCEL_TEXT_RE = re.compile(r'^="(.*)"$', re.S)


def _decode(path: Path, data: bytes) -> str:
    """Text of a CSV: BOMs first, then strict UTF-8, then Windows-1252."""
    name = path.name
    for bom, encoding in ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"),
                          (codecs.BOM_UTF16_BE, "utf-16-be")):
        if data.startswith(bom):
            try:
                return data[len(bom):].decode(encoding)
            except UnicodeDecodeError:
                raise InputError(f"{name}: el texto no es {encoding.upper()} válido aunque lo "
                                 "anuncia; vuelva a exportarlo") from None
    if b"\x00" in data[:65536]:
        raise InputError(f"{name} no es una hoja de cálculo ni un CSV de texto "
                         "(contiene datos binarios)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1252")
    except UnicodeDecodeError:
        raise InputError(f"{name} no es un CSV de texto legible (ni UTF-8 ni Windows-1252)"
                         ) from None


def text_sheets(path: Path) -> list[SheetStream]:
    name = path.name
    text = _decode(path, path.read_bytes())
    if not text.strip():
        raise InputError(f"{name} no contiene datos")
    sample = text[:65536]
    if len(_CONTROL_RE.findall(sample)) > max(2, len(sample) // 200):
        raise InputError(f"{name} no es una hoja de cálculo ni un CSV de texto "
                         "(contiene datos binarios)")
    if sample.lstrip()[:1] == "<" and re.match(r"\s*<(\?xml|!doctype|html|table|workbook)",
                                               sample, re.I):
        raise InputError(f"{name} es una página HTML o XML con nombre de hoja de cálculo; "
                         f"{SAVE_AS_XLSX}")
    lines = text.splitlines()
    delimiter = _sniff_delimiter(lines[:60])
    if lines and re.fullmatch(r"\s*sep=(.)\s*", lines[0]):  # Excel's delimiter hint line
        delimiter = re.fullmatch(r"\s*sep=(.)\s*", lines[0]).group(1)  # type: ignore[union-attr]

    def rows() -> Iterator[tuple[int, Row]]:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        try:
            # Excel numbers CSV records, so a quoted field spanning lines is still one row.
            for number, record in enumerate(reader, start=1):
                yield number, [_unwrap_excel_text(v) for v in record]
        except csv.Error as exc:
            raise InputError(f"{name}: CSV mal formado cerca de la línea {reader.line_num} "
                             f"({exc})") from None
    return [SheetStream(None, rows)]


def _unwrap_excel_text(value: str) -> str:
    """``="0123"`` is how tools force Excel to keep text; keep the text."""
    m = _EXCEL_TEXT_RE.match(value)
    return m.group(1) if m else value


def _sniff_delimiter(lines: list[str]) -> str:
    """The delimiter that splits most lines into the same number (>1) of fields."""
    lines = [ln for ln in lines if ln.strip()]
    best, best_score = ",", (0.0, 0)
    for delimiter in (",", ";", "\t", "|"):
        counts: dict[int, int] = {}
        try:
            for record in csv.reader(lines, delimiter=delimiter):
                counts[len(record)] = counts.get(len(record), 0) + 1
        except csv.Error:
            continue
        width, hits = max(counts.items(), key=lambda kv: (kv[1], kv[0]), default=(1, 0))
        if width < 2:
            continue
        score = (hits / max(len(lines), 1), width)
        if score > best_score:
            best, best_score = delimiter, score
    return best

