"""What an ``.xlsx`` must pass before openpyxl parses any of it: a sound, unencrypted Excel
zip without bomb-like sizes, and worksheet and shared-string XML read in streaming expat
passes that refuse DTDs and entities and element counts that would blow openpyxl's memory up
(collecting, on the way, the merged ranges read-only openpyxl ignores)."""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any
from xml.parsers import expat

from worker.core.errors import InputError
from worker.core.settings import Settings
from worker.intake.stream import EXCEL_MAX_ROWS, SAVE_AS_XLSX, mb

__all__ = ["FORMULA_MARK", "UnsafeSheet", "check_zip", "read_shared_strings", "refuse_dtd",
           "scan_sheets"]

#: Parts bigger than this and compressed more than _MAX_RATIO times are zip bombs: real
#: spreadsheet XML compresses 5-30x; deflate's ceiling is ~1000x.
_RATIO_MIN_BYTES = 8 * 1024 * 1024
_MAX_RATIO = 150


def check_zip(path: Path, settings: Settings) -> None:
    """Refuse broken, encrypted, non-Excel and bomb-like zips before any XML is parsed."""
    name = path.name
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError):
        raise InputError(f"{name} está dañado o incompleto (¿se cortó la descarga o la copia?); "
                         "vuelva a guardarlo desde Excel") from None
    names = {i.filename for i in infos}
    if any(i.flag_bits & 0x1 for i in infos):
        raise InputError(f"{name} está protegido con contraseña; quite la contraseña y vuelva a "
                         "guardarlo")
    if "xl/workbook.xml" not in names:
        if "xl/workbook.bin" in names:
            kind = "un libro binario de Excel (.xlsb)"
        elif "content.xml" in names and "mimetype" in names:
            kind = "un documento de OpenDocument (.ods)"
        elif "word/document.xml" in names:
            kind = "un documento de Word"
        elif "ppt/presentation.xml" in names:
            kind = "una presentación de PowerPoint"
        else:
            kind = "un archivo ZIP que no es un libro de Excel"
        raise InputError(f"{name} es {kind}; {SAVE_AS_XLSX}")
    total = sum(i.file_size for i in infos)
    if total > settings.max_uncompressed_bytes:
        raise InputError(
            f"{name} ocupa {mb(total)} sin comprimir, más de los "
            f"{mb(settings.max_uncompressed_bytes)} que se aceptan: quite imágenes u hojas que "
            "no hagan falta y guárdelo de nuevo, o reparta las personas en varios archivos "
            "(posible bomba ZIP; límite CONSTANCIAS_MAX_UNCOMPRESSED_BYTES)")
    for info in infos:
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > _RATIO_MIN_BYTES and ratio > _MAX_RATIO:
            raise InputError(f"{name} contiene una parte comprimida {ratio:.0f} veces "
                             "(posible bomba ZIP); no se procesa")



class UnsafeSheet(Exception):
    """The pre-scan refused a worksheet part; the message is the Spanish reason."""


#: Elements one row may hold (Excel's 16 384 columns x a few elements per cell): openpyxl
#: builds a whole row in memory before handing it over.
_MAX_ELEMENTS_PER_ROW = 120_000
#: Elements outside rows (columns, merges, formats, validations, links) beyond one per row:
#: openpyxl keeps every one of them in memory until the sheet ends.
_MAX_ELEMENTS_OUTSIDE_ROWS = 200_000


def _sheet_scanner() -> tuple[Callable[..., None], Callable[[str], None],
                              list[tuple[int, int, int, int]]]:
    """Expat handlers for a streaming pass over a worksheet part before openpyxl parses it.

    The pass builds no tree, so it costs no memory. With ``refuse_dtd`` it refuses DTDs
    and entities (as defusedxml does); it refuses element counts that would make openpyxl's
    parse blow up, and it collects the merged ranges that read-only openpyxl ignores.
    Closures over plain ints: this runs twice per XML element, so every lookup counts.
    """
    depth = row_depth = in_row = rows = outside = 0
    formulas = False
    merges: list[tuple[int, int, int, int]] = []

    def start(name: str, attrs: dict[str, str]) -> None:
        nonlocal depth, row_depth, in_row, rows, outside, formulas
        depth += 1
        if row_depth:
            in_row += 1
            if in_row > _MAX_ELEMENTS_PER_ROW:
                raise UnsafeSheet("una fila tiene demasiadas celdas")
            if not formulas and name[-1] == "f" and (len(name) == 1 or name[-2] == ":"):
                # A formula: the sheet is read a second time for the texts of those that
                # have no saved value (xlsx_sheets). None here: no second read.
                formulas = True
                merges.append(FORMULA_MARK)
            return
        local = name.rpartition(":")[2]
        if local == "row":
            row_depth, in_row = depth, 0
            rows += 1
            if rows > EXCEL_MAX_ROWS:
                raise UnsafeSheet("tiene más filas de las que Excel permite")
            return
        outside += 1
        if outside > _MAX_ELEMENTS_OUTSIDE_ROWS + rows:
            raise UnsafeSheet("su XML tiene demasiados elementos fuera de las filas")
        if local == "mergeCell":
            _add_merge(merges, attrs.get("ref", ""))

    def end(name: str) -> None:
        nonlocal depth, row_depth
        if depth == row_depth:
            row_depth = 0
        depth -= 1

    return start, end, merges


#: Put among a part's merged ranges by the scan when the part holds a formula (a range no
#: sheet can have: row 0), so that the scan keeps its one list and its fast path.
FORMULA_MARK = (0, 0, 0, 0)


def _add_merge(merges: list[tuple[int, int, int, int]], ref: str) -> None:
    # Here: openpyxl is for spreadsheets (a CSV does not pay for it).
    from openpyxl.utils.cell import range_boundaries

    try:
        c1, r1, c2, r2 = range_boundaries(ref)
    except (ValueError, TypeError):
        return
    if None not in (c1, r1, c2, r2):
        merges.append((r1, c1, r2, c2))  # type: ignore[arg-type]


def refuse_dtd(*_: Any) -> Any:
    raise UnsafeSheet("contiene declaraciones XML (DTD o entidades), no permitidas por seguridad")


def scan_sheets(path: Path) -> dict[str, list[tuple[int, int, int, int]]]:
    """Pre-scan every worksheet part (see ``_sheet_scanner``); merged ranges by part (with
    ``FORMULA_MARK`` among them when the part holds formulas)."""
    found: dict[str, list[tuple[int, int, int, int]]] = {}
    with zipfile.ZipFile(path) as zf:
        titles = _sheet_titles(zf)
        for info in zf.infolist():
            part = info.filename
            if not (part.startswith("xl/worksheets/") and part.endswith(".xml")):
                continue
            start, end, merges = _sheet_scanner()
            parser = expat.ParserCreate()
            parser.StartElementHandler = start
            parser.EndElementHandler = end
            parser.StartDoctypeDeclHandler = refuse_dtd
            parser.EntityDeclHandler = refuse_dtd
            parser.ExternalEntityRefHandler = refuse_dtd
            # The name HR sees on the sheet's tab, not the part inside the file.
            title = titles.get(part)
            where = f"{path.name}: la hoja «{title}»" if title else f"{path.name}: una hoja"
            try:
                with zf.open(info) as fh:
                    parser.ParseFile(fh)
            except UnsafeSheet as exc:
                raise InputError(f"{where} no se puede leer con seguridad: {exc}") from None
            except expat.ExpatError as exc:
                raise InputError(f"{where} está dañada (XML mal formado: "
                                 f"{expat.ErrorString(exc.code)}); {SAVE_AS_XLSX}") from None
            except (zipfile.BadZipFile, EOFError, OSError, ValueError):
                raise InputError(f"{where} está dañada o incompleta; {SAVE_AS_XLSX}") from None
            found[part] = merges
    return found


def _sheet_titles(zf: zipfile.ZipFile) -> dict[str, str]:
    """Worksheet part (``xl/worksheets/sheet1.xml``) -> the name on its tab, from the workbook
    and its relationships; parsed with DTDs refused, and ``{}`` for anything unexpected (the
    names only make messages clearer)."""
    def attributes(part: str, tag: str) -> list[dict[str, str]]:
        found: list[dict[str, str]] = []
        parser = expat.ParserCreate(namespace_separator=" ")
        parser.StartElementHandler = lambda name, attrs: (
            found.append({k.rsplit(" ", 1)[-1]: v for k, v in attrs.items()})
            if name.rsplit(" ", 1)[-1] == tag else None)
        parser.StartDoctypeDeclHandler = refuse_dtd
        parser.EntityDeclHandler = refuse_dtd
        with zf.open(part) as fh:
            parser.ParseFile(fh)
        return found

    try:
        targets = {r.get("Id"): r.get("Target", "")
                   for r in attributes("xl/_rels/workbook.xml.rels", "Relationship")}
        titles = {}
        for sheet in attributes("xl/workbook.xml", "sheet"):
            target = targets.get(sheet.get("id"), "")
            part = target.lstrip("/") if target.startswith("/") else f"xl/{target}"
            if sheet.get("name"):
                titles[part] = sheet["name"]
        return titles
    except (KeyError, OSError, ValueError, EOFError, zipfile.BadZipFile, UnsafeSheet,
            expat.ExpatError):
        return {}


def read_shared_strings(src: Any, limit: int) -> list[str]:
    """Texts of ``sharedStrings.xml``: each ``<si>``'s ``<t>`` and rich-run ``<r><t>`` text,
    without phonetic runs, as openpyxl's ``Text.content`` gives them."""
    strings: list[str] = []
    parts: list[str] = []
    stack: list[str] = []
    capture = False

    def start(name: str, attrs: dict[str, str]) -> None:
        nonlocal capture
        local = name.rpartition(":")[2]
        stack.append(local)
        if local == "si":
            parts.clear()
        elif local == "t" and len(stack) >= 2 and stack[-2] in ("si", "r"):
            capture = True

    def end(name: str) -> None:
        nonlocal capture
        local = stack.pop() if stack else ""
        if local == "t":
            capture = False
        elif local == "si":
            strings.append("".join(parts).replace("x005F_", ""))
            if len(strings) > limit:
                raise UnsafeSheet(f"tiene más de {limit} textos distintos")

    def text(data: str) -> None:
        if capture:
            parts.append(data)

    parser = expat.ParserCreate()
    parser.buffer_text = True
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text
    parser.StartDoctypeDeclHandler = refuse_dtd
    parser.EntityDeclHandler = refuse_dtd
    parser.ExternalEntityRefHandler = refuse_dtd
    try:
        parser.ParseFile(src)
    except expat.ExpatError as exc:
        raise UnsafeSheet(f"XML mal formado ({expat.ErrorString(exc.code)})") from None
    return strings
