"""Spreadsheet intake (SPEC §4 "FILE"): read the sheet HR sends and find its CURPs.

``read_sheet(path, settings)`` accepts ``.xlsx`` (and ``.xlsm``), legacy ``.xls`` (through
xlrd) and ``.csv`` in UTF-8, UTF-8 with BOM, UTF-16 with BOM or Windows-1252, separated by
``,`` ``;`` tab or ``|``. The format is decided by the file's bytes, not its name. The header
row may be anywhere in the first 20 rows; the CURP column is found by its header
(case-, accent- and punctuation-insensitive) or, with no header, by its content, in whichever
sheet holds it. Row numbers are the file's own (as Excel shows them).

Anything unusable — empty, broken, encrypted, hostile, too big, no CURP column — raises
``InputError`` with one Spanish line. Hostile files are stopped before parsing: sizes are
checked on disk and in the zip directory (declared uncompressed sizes and ratios), and
openpyxl parses XML through defusedxml, which refuses entity declarations outright.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
import re
import threading
import unicodedata
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from stdnum.exceptions import ValidationError as StdnumValidationError
from stdnum.mx import curp as stdnum_curp

from worker.core.errors import InputError
from worker.core.settings import Settings
from worker.core.text import fold

__all__ = ["SheetRow", "Intake", "FormulaText", "read_sheet", "normalise_curp", "validate_curp",
           "looks_like_curp", "is_curp_header"]

#: The header row must be within these first rows (SPEC §4).
HEADER_SEARCH_ROWS = 20
#: Rows below a header candidate sampled to see whether the column really holds CURPs.
_SAMPLE_ROWS = 200
#: Excel's own last row: no real sheet scans further, empty rows included.
_EXCEL_MAX_ROWS = 1_048_576
#: Parts bigger than this and compressed more than _MAX_RATIO times are zip bombs: real
#: spreadsheet XML compresses 5-30x; deflate's ceiling is ~1000x.
_RATIO_MIN_BYTES = 8 * 1024 * 1024
_MAX_RATIO = 150
#: Distinct texts (shared strings) allowed per data row allowed (CONSTANCIAS_MAX_ROWS):
#: each costs ~60 B of memory and ~1 µs to read, whatever its length.
_SHARED_STRINGS_PER_ROW = 10

_SAVE_AS_XLSX = "ábralo en Excel y guárdelo como «Libro de Excel (.xlsx)» o CSV"


# --------------------------------------------------------------------------------------------
# Public data
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SheetRow:
    """One non-empty data row of the sheet."""

    row: int
    """The file's own row number (as Excel or a text editor shows it)."""
    value: str
    """The CURP cell as found (text, unnormalised), for the report."""
    curp: str | None
    """Normalised upper-case CURP if valid, else None."""
    reason: str | None
    """Spanish reason if invalid, else None."""
    duplicate_of: int | None
    """Row number of the first occurrence, if this valid CURP repeats."""
    extra: dict[str, str] = field(default_factory=dict)
    """The other columns of this row, by header name, in column order."""


@dataclass(frozen=True)
class Intake:
    """What ``read_sheet`` found in a spreadsheet."""

    path: Path
    sheet_name: str | None
    """Worksheet that holds the CURPs (None for CSV)."""
    header_row: int | None
    """Row of the header; None when the column was found by content."""
    curp_header: str | None
    """The CURP column's header text as written."""
    columns: list[str]
    """The other columns' headers in order ("Columna C" when a column has none)."""
    rows: list[SheetRow]
    """Every non-empty data row, in file order."""
    formula_cells: list[str] = field(default_factory=list)
    """Cells (``B7``) of the data rows holding a formula with no saved value: their formula
    text was kept (``FormulaText``); ``validate`` names them in a warning."""

    @property
    def valid_curps(self) -> list[str]:
        """Distinct valid CURPs, in first-seen order."""
        return [r.curp for r in self.rows if r.curp is not None and r.duplicate_of is None]

    @property
    def invalid(self) -> list[SheetRow]:
        return [r for r in self.rows if r.reason is not None]

    @property
    def duplicates(self) -> list[SheetRow]:
        return [r for r in self.rows if r.duplicate_of is not None]

    def to_json(self) -> dict[str, Any]:
        """The ``validate --json`` object of SPEC §4."""
        return {
            "rows": len(self.rows),
            "valid": len(self.valid_curps),
            "invalid": [{"row": r.row, "value": r.value, "reason": r.reason}
                        for r in self.invalid],
            "duplicates": [{"row": r.row, "curp": r.curp, "first_row": r.duplicate_of}
                           for r in self.duplicates],
        }


# --------------------------------------------------------------------------------------------
# CURP normalisation and validation
# --------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------
# Header recognition
# --------------------------------------------------------------------------------------------

_TOKEN_RE = re.compile(r"[a-z0-9]+")


def is_curp_header(value: object) -> int:
    """How well a cell reads as the CURP column's header: 0 not at all, 1 a variant, 2 exact.

    "CURP", "C.U.R.P.", " curp " are exact; "curp del trabajador", "Clave CURP", "No. CURP",
    "Clave Única de Registro de Población" are variants.
    """
    if not isinstance(value, str) or len(value) > 80:
        return 0
    folded = fold(value)
    squashed = re.sub(r"[^a-z0-9]", "", folded)
    if squashed in ("curp", "lacurp"):
        return 2
    tokens = _TOKEN_RE.findall(folded)
    if len(tokens) > 6:  # a sentence ("Capture la CURP de cada persona…"), not a header
        return 0
    if "curp" in tokens:
        return 1
    if "registro" in tokens and ("poblacion" in tokens or "unica" in tokens):
        return 1
    return 0


# --------------------------------------------------------------------------------------------
# Reading: format detection and the three readers
# --------------------------------------------------------------------------------------------

Row = list[Any]


@dataclass
class _Sheet:
    """One worksheet as a re-startable stream of ``(row_number, values)``."""

    name: str | None
    rows: Callable[[], Iterator[tuple[int, Row]]]
    visible: bool = True


_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_OTHER_MAGIC = {
    b"%PDF": "un PDF",
    b"\x89PNG": "una imagen PNG",
    b"\xff\xd8\xff": "una imagen JPEG",
    b"GIF8": "una imagen GIF",
    b"\x1f\x8b": "un archivo comprimido gzip",
    b"Rar!": "un archivo comprimido RAR",
    b"7z\xbc\xaf": "un archivo comprimido 7z",
    b"{\\rtf": "un documento RTF",
}


def read_sheet(path: str | Path, settings: Settings) -> Intake:
    """Read a spreadsheet and validate its CURPs; ``InputError`` if the file is unusable."""
    path = Path(path)
    name = path.name
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise InputError(f"{name}: no es un archivo")
        with path.open("rb") as fh:
            head = fh.read(8)
    except FileNotFoundError:
        raise InputError(f"No existe el archivo {path}") from None
    except OSError as exc:
        raise InputError(f"No se puede abrir {name}: {exc.strerror or exc}") from None
    if size == 0:
        raise InputError(f"{name} está vacío (0 bytes)")
    if size > settings.max_file_bytes:
        raise InputError(f"{name} pesa {_mb(size)}, más de los {_mb(settings.max_file_bytes)} "
                         "que se aceptan: quite imágenes u hojas que no hagan falta, o reparta "
                         "las personas en varios archivos (límite CONSTANCIAS_MAX_FILE_BYTES)")

    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        sheets, closer = _xlsx_sheets(path, settings)
    elif head.startswith(_OLE_MAGIC):
        sheets, closer = _ole_sheets(path), None
    else:
        for magic, kind in _OTHER_MAGIC.items():
            if head.startswith(magic):
                raise InputError(f"{name} es {kind}, no una hoja de cálculo (.xlsx o .csv)")
        sheets, closer = _text_sheets(path), None
    try:
        return _intake(path, sheets, settings)
    finally:
        if closer is not None:
            closer()


def _mb(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MB"


# --- .xlsx ----------------------------------------------------------------------------------


def _xlsx_sheets(path: Path, settings: Settings) -> tuple[list[_Sheet], Callable[[], None]]:
    name = path.name
    _check_zip(path, settings)
    merges_by_part = _scan_sheets(path)
    import openpyxl  # imported here: `validate` on a CSV should not pay for it

    with_formulas = {part for part, merges in merges_by_part.items() if _FORMULA_MARK in merges}
    try:
        with _ReadOnlySizeSkipped():
            reader = _excel_reader(openpyxl, path, settings)
            reader.read()
            wb = reader.wb
            # Formulas without a saved value read as empty cells: a second, formula-text
            # view of the same parts gives their text (only for sheets that have formulas).
            formulas_wb = None
            if with_formulas:
                second = _excel_reader(openpyxl, path, settings, data_only=False)
                second.read()
                formulas_wb = second.wb
    except InputError:
        raise
    except _UnsafeSheet as exc:
        raise InputError(f"{name}: sus textos no se pueden leer con seguridad: {exc}") from None
    except Exception as exc:  # any parser failure of a hostile or broken file is one line
        raise InputError(f"{name} no se pudo leer como libro de Excel ({_why(exc)}); "
                         f"{_SAVE_AS_XLSX}") from None

    def make_rows(ws: Any, part: str,
                  formula_ws: Any = None) -> Callable[[], Iterator[tuple[int, Row]]]:
        merges = [m for m in merges_by_part.get(part.lstrip("/"), []) if m != _FORMULA_MARK]

        def rows() -> Iterator[tuple[int, Row]]:
            # Dimensions written by other tools may be wrong or hostile ("A1:XFD1048576"
            # pads every row to 16 384 cells); without them openpyxl yields each row as is.
            ws.reset_dimensions()
            try:
                values: Iterable[Any] = ws.iter_rows(values_only=True)
                if formula_ws is not None:
                    formula_ws.reset_dimensions()
                    # Both views parse the same XML: their rows pair up one to one.
                    values = map(_formula_texts, values,
                                 formula_ws.iter_rows(values_only=True))
                stream = enumerate(values, start=1)
                yield from _fill_merged(stream, merges) if merges else (
                    (n, list(v)) for n, v in stream)
            except InputError:
                raise
            except Exception as exc:  # truncated XML, bad CRC, entity declarations…
                raise InputError(f"{name}: la hoja «{ws.title}» está dañada o no es segura "
                                 f"({_why(exc)}); {_SAVE_AS_XLSX}") from None
        return rows

    sheets = []
    formula_sheets = formulas_wb.worksheets if formulas_wb is not None else []
    for i, ws in enumerate(wb.worksheets):
        part = getattr(ws, "_worksheet_path", "")
        formula_ws = (formula_sheets[i] if i < len(formula_sheets)
                      and part.lstrip("/") in with_formulas else None)
        sheets.append(_Sheet(ws.title, make_rows(ws, part, formula_ws),
                             ws.sheet_state == "visible"))

    def close() -> None:
        wb.close()
        if formulas_wb is not None:
            formulas_wb.close()

    if not sheets:
        close()
        raise InputError(f"{name} no tiene hojas de cálculo con datos")
    return sheets, close


def _check_zip(path: Path, settings: Settings) -> None:
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
        raise InputError(f"{name} es {kind}; {_SAVE_AS_XLSX}")
    total = sum(i.file_size for i in infos)
    if total > settings.max_uncompressed_bytes:
        raise InputError(
            f"{name} ocupa {_mb(total)} sin comprimir, más de los "
            f"{_mb(settings.max_uncompressed_bytes)} que se aceptan: quite imágenes u hojas que "
            "no hagan falta y guárdelo de nuevo, o reparta las personas en varios archivos "
            "(posible bomba ZIP; límite CONSTANCIAS_MAX_UNCOMPRESSED_BYTES)")
    for info in infos:
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > _RATIO_MIN_BYTES and ratio > _MAX_RATIO:
            raise InputError(f"{name} contiene una parte comprimida {ratio:.0f} veces "
                             "(posible bomba ZIP); no se procesa")



class _UnsafeSheet(Exception):
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

    The pass builds no tree, so it costs no memory. With ``_refuse_dtd`` it refuses DTDs
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
                raise _UnsafeSheet("una fila tiene demasiadas celdas")
            if not formulas and name[-1] == "f" and (len(name) == 1 or name[-2] == ":"):
                # A formula: the sheet is read a second time for the texts of those that
                # have no saved value (_xlsx_sheets). None here: no second read.
                formulas = True
                merges.append(_FORMULA_MARK)
            return
        local = name.rpartition(":")[2]
        if local == "row":
            row_depth, in_row = depth, 0
            rows += 1
            if rows > _EXCEL_MAX_ROWS:
                raise _UnsafeSheet("tiene más filas de las que Excel permite")
            return
        outside += 1
        if outside > _MAX_ELEMENTS_OUTSIDE_ROWS + rows:
            raise _UnsafeSheet("su XML tiene demasiados elementos fuera de las filas")
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
_FORMULA_MARK = (0, 0, 0, 0)


def _add_merge(merges: list[tuple[int, int, int, int]], ref: str) -> None:
    from openpyxl.utils.cell import range_boundaries

    try:
        c1, r1, c2, r2 = range_boundaries(ref)
    except (ValueError, TypeError):
        return
    if None not in (c1, r1, c2, r2):
        merges.append((r1, c1, r2, c2))  # type: ignore[arg-type]


def _refuse_dtd(*_: Any) -> Any:
    raise _UnsafeSheet("contiene declaraciones XML (DTD o entidades), no permitidas por seguridad")


def _scan_sheets(path: Path) -> dict[str, list[tuple[int, int, int, int]]]:
    """Pre-scan every worksheet part (see ``_sheet_scanner``); merged ranges by part (with
    ``_FORMULA_MARK`` among them when the part holds formulas)."""
    from xml.parsers import expat

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
            parser.StartDoctypeDeclHandler = _refuse_dtd
            parser.EntityDeclHandler = _refuse_dtd
            parser.ExternalEntityRefHandler = _refuse_dtd
            # The name HR sees on the sheet's tab, not the part inside the file.
            title = titles.get(part)
            where = f"{path.name}: la hoja «{title}»" if title else f"{path.name}: una hoja"
            try:
                with zf.open(info) as fh:
                    parser.ParseFile(fh)
            except _UnsafeSheet as exc:
                raise InputError(f"{where} no se puede leer con seguridad: {exc}") from None
            except expat.ExpatError as exc:
                raise InputError(f"{where} está dañada (XML mal formado: "
                                 f"{expat.ErrorString(exc.code)}); {_SAVE_AS_XLSX}") from None
            except (zipfile.BadZipFile, EOFError, OSError, ValueError):
                raise InputError(f"{where} está dañada o incompleta; {_SAVE_AS_XLSX}") from None
            found[part] = merges
    return found


def _sheet_titles(zf: zipfile.ZipFile) -> dict[str, str]:
    """Worksheet part (``xl/worksheets/sheet1.xml``) -> the name on its tab, from the workbook
    and its relationships; parsed with DTDs refused, and ``{}`` for anything unexpected (the
    names only make messages clearer)."""
    from xml.parsers import expat

    def attributes(part: str, tag: str) -> list[dict[str, str]]:
        found: list[dict[str, str]] = []
        parser = expat.ParserCreate(namespace_separator=" ")
        parser.StartElementHandler = lambda name, attrs: (
            found.append({k.rsplit(" ", 1)[-1]: v for k, v in attrs.items()})
            if name.rsplit(" ", 1)[-1] == tag else None)
        parser.StartDoctypeDeclHandler = _refuse_dtd
        parser.EntityDeclHandler = _refuse_dtd
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
    except (KeyError, OSError, ValueError, EOFError, zipfile.BadZipFile, _UnsafeSheet,
            expat.ExpatError):
        return {}


class FormulaText(str):
    """The text of a formula cell that has no saved value (a sheet written by a program and
    never opened in Excel): kept as written, e.g. ``=CONCAT(B2," ",C2)``, and reported."""


def _formula_texts(values: tuple[Any, ...], formulas: tuple[Any, ...]) -> Row:
    """``values`` with each empty cell that holds a formula given that formula's text."""
    row = list(values)
    for i, value in enumerate(row):
        if value is None and i < len(formulas) and formulas[i] is not None:
            text = getattr(formulas[i], "text", formulas[i])  # ArrayFormula keeps it in .text
            if isinstance(text, str) and text.startswith("=") and len(text) > 1:
                row[i] = FormulaText(text)
    return row


def _excel_reader(openpyxl: Any, path: Path, settings: Settings, *,
                  data_only: bool = True) -> Any:
    """openpyxl's own ``ExcelReader`` (what ``load_workbook`` uses), with a safer string table.

    openpyxl builds an object per shared string (~20 µs each, and keeps each XML element
    until the end): a workbook of a million tiny texts takes tens of seconds. The table is
    read here with a streaming expat pass instead, bounded in count, with DTDs refused.
    """
    from openpyxl.reader.excel import ExcelReader
    from openpyxl.xml.constants import SHARED_STRINGS

    limit = settings.max_rows * _SHARED_STRINGS_PER_ROW

    class Reader(ExcelReader):
        def read_strings(self) -> None:
            part = cast(Any, self.package).find(SHARED_STRINGS)
            if part is not None:
                with self.archive.open(part.PartName[1:]) as src:
                    self.shared_strings = _read_shared_strings(src, limit)

    return Reader(path, read_only=True, keep_vba=False, data_only=data_only, keep_links=False)


def _read_shared_strings(src: Any, limit: int) -> list[str]:
    """Texts of ``sharedStrings.xml``: each ``<si>``'s ``<t>`` and rich-run ``<r><t>`` text,
    without phonetic runs, as openpyxl's ``Text.content`` gives them."""
    from xml.parsers import expat

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
                raise _UnsafeSheet(f"tiene más de {limit} textos distintos")

    def text(data: str) -> None:
        if capture:
            parts.append(data)

    parser = expat.ParserCreate()
    parser.buffer_text = True
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text
    parser.StartDoctypeDeclHandler = _refuse_dtd
    parser.EntityDeclHandler = _refuse_dtd
    parser.ExternalEntityRefHandler = _refuse_dtd
    try:
        parser.ParseFile(src)
    except expat.ExpatError as exc:
        raise _UnsafeSheet(f"XML mal formado ({expat.ErrorString(exc.code)})") from None
    return strings


class _ReadOnlySizeSkipped:
    """While loading, skip openpyxl's read-only ``_get_size``.

    On a sheet without a ``<dimension>`` element it parses the whole sheet into one tree
    just to find its size — gigabytes for a large or hostile sheet. The size is not needed
    (rows are read with ``reset_dimensions``), so the class attribute is swapped for the
    duration of ``load_workbook`` only, under a lock.
    """

    _lock = threading.Lock()

    def __enter__(self) -> None:
        from openpyxl.worksheet._read_only import ReadOnlyWorksheet

        self._lock.acquire()
        self._original = ReadOnlyWorksheet.__dict__["_get_size"]
        # A private method: not in openpyxl's stubs, so set by name.
        setattr(ReadOnlyWorksheet, "_get_size", lambda self: None)  # noqa: B010

    def __exit__(self, *exc: object) -> None:
        from openpyxl.worksheet._read_only import ReadOnlyWorksheet

        setattr(ReadOnlyWorksheet, "_get_size", self._original)  # noqa: B010
        self._lock.release()


def _fill_merged(stream: Iterable[tuple[int, Any]],
                 merges: list[tuple[int, int, int, int]]) -> Iterator[tuple[int, Row]]:
    """Copy each merged range's top-left value into the other cells of the range."""
    by_start: dict[int, list[tuple[int, int, int, int]]] = {}
    for m in merges:
        if m[2] > m[0] or m[3] > m[1]:
            by_start.setdefault(m[0], []).append(m)
    active: list[tuple[int, int, int, object]] = []  # (last_row, min_col, max_col, value)
    for number, values in stream:
        row = list(values)
        active = [a for a in active if a[0] >= number]
        for _r1, c1, r2, c2 in by_start.get(number, ()):
            value = row[c1 - 1] if c1 - 1 < len(row) else None
            if value is not None:
                active.append((r2, c1, c2, value))
        for _, c1, c2, value in active:
            if c2 > len(row):
                row.extend([None] * (c2 - len(row)))
            for c in range(c1 - 1, c2):
                if row[c] is None:
                    row[c] = value
        yield number, row


def _why(exc: BaseException) -> str:
    """A short, non-personal description of a parser failure."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(chain) < 10:  # openpyxl re-raises as ValueError
        chain.append(current)
        current = current.__cause__ or current.__context__
    for item in chain:
        kind = type(item).__name__
        if "Entities" in kind or "DTD" in kind or "Forbidden" in kind:
            return "contiene declaraciones de entidades XML, no permitidas por seguridad"
        if isinstance(item, zipfile.BadZipFile | EOFError) or "CRC" in str(item):
            return "archivo incompleto o dañado"
        if "ParseError" in kind:
            return "XML mal formado"
    return type(chain[-1]).__name__


# --- legacy .xls and encrypted OOXML (OLE compound files) -----------------------------------


def _ole_sheets(path: Path) -> list[_Sheet]:
    name = path.name
    data = path.read_bytes()
    # An encrypted .xlsx is an OLE file holding these streams (names stored as UTF-16LE).
    if "EncryptedPackage".encode("utf-16-le") in data or "EncryptionInfo".encode(
            "utf-16-le") in data:
        raise InputError(f"{name} está protegido con contraseña; quite la contraseña en Excel "
                         "(Archivo > Información > Proteger libro) y vuelva a guardarlo")
    import xlrd

    try:
        book = xlrd.open_workbook(file_contents=data, on_demand=True)
    except Exception as exc:  # xlrd raises many types on broken input
        text = str(exc).lower()
        if "encrypt" in text or "password" in text:
            raise InputError(f"{name} está protegido con contraseña; quite la contraseña y "
                             "vuelva a guardarlo") from None
        raise InputError(f"{name} no se pudo leer como libro de Excel 97-2003 (.xls); "
                         f"{_SAVE_AS_XLSX}") from None

    def make_rows(index: int) -> Callable[[], Iterator[tuple[int, Row]]]:
        def rows() -> Iterator[tuple[int, Row]]:
            try:
                sheet = book.sheet_by_index(index)
                for r in range(sheet.nrows):
                    values: Row = []
                    for cell in sheet.row(r):
                        if cell.ctype == xlrd.XL_CELL_DATE:
                            try:
                                values.append(xlrd.xldate_as_datetime(cell.value, book.datemode))
                            except (ValueError, OverflowError, xlrd.xldate.XLDateError):
                                values.append(cell.value)
                        elif cell.ctype in (xlrd.XL_CELL_EMPTY, xlrd.XL_CELL_BLANK):
                            values.append(None)
                        elif cell.ctype == xlrd.XL_CELL_ERROR:
                            values.append(xlrd.error_text_from_code.get(cell.value, "#ERROR"))
                        else:
                            values.append(cell.value)
                    yield r + 1, values
            except Exception as exc:
                raise InputError(f"{name}: la hoja {index + 1} está dañada ({_why(exc)}); "
                                 f"{_SAVE_AS_XLSX}") from None
        return rows

    try:
        names = book.sheet_names()
        visibility = [book.sheet_by_index(i).visibility == 0 for i in range(len(names))]
    except Exception:
        raise InputError(f"{name} no se pudo leer como libro de Excel 97-2003 (.xls); "
                         f"{_SAVE_AS_XLSX}") from None
    return [_Sheet(n, make_rows(i), visibility[i]) for i, n in enumerate(names)]


# --- text (.csv / .txt) ---------------------------------------------------------------------

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


def _text_sheets(path: Path) -> list[_Sheet]:
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
                         f"{_SAVE_AS_XLSX}")
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
    return [_Sheet(None, rows)]


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


# --------------------------------------------------------------------------------------------
# Finding the CURP column and reading the rows
# --------------------------------------------------------------------------------------------


@dataclass
class _Target:
    sheet: _Sheet
    header_row: int | None
    column: int  # 0-based
    header: list[Any]  # the header row's values ([] when found by content)
    first_data_row: int


def _is_empty(values: Row) -> bool:
    for v in values:
        if v is not None and (not isinstance(v, str) or v.strip()):
            return False
    return True


def _find_target(path: Path, sheets: list[_Sheet]) -> _Target:
    """The (sheet, header row, column) that holds the CURPs, from a sample of each sheet."""
    # Candidates are ranked by: holds CURP-shaped values, header quality, how many, then
    # visible before hidden and workbook order.
    best: tuple[tuple[Any, ...], _Target] | None = None
    for index, sheet in enumerate(sheets):
        sample: list[tuple[int, Row]] = []
        for number, values in sheet.rows():
            if number > HEADER_SEARCH_ROWS + _SAMPLE_ROWS:
                break
            sample.append((number, values))
        shaped_at = [[looks_like_curp(normalise_curp(v)) if isinstance(v, str) else False
                      for v in values] for _, values in sample]
        for i, (number, values) in enumerate(sample):
            if number > HEADER_SEARCH_ROWS:
                break
            for col, value in enumerate(values):
                quality = is_curp_header(value)
                if not quality:
                    continue
                shaped = sum(1 for flags in shaped_at[i + 1:] if col < len(flags) and flags[col])
                key = (shaped > 0, quality, shaped, sheet.visible, -index, -number, -col)
                target = _Target(sheet, number, col, list(values), number + 1)
                if best is None or key > best[0]:
                    best = (key, target)
        if best is not None and best[0][0]:
            continue  # a header already holds CURPs; content guesses cannot beat it
        # No header: the column where most non-empty sampled values are CURP-shaped.
        widths = max((len(v) for _, v in sample), default=0)
        for col in range(widths):
            filled = [i for i, (_, values) in enumerate(sample)
                      if col < len(values) and not _is_empty([values[col]])]
            shaped_rows = [i for i in filled if shaped_at[i][col]]
            if not shaped_rows or len(shaped_rows) * 2 < len(filled) - 3:
                continue
            key = (True, 0, len(shaped_rows), sheet.visible, -index, 0, -col)
            target = _Target(sheet, None, col, [], sample[shaped_rows[0]][0])
            if best is None or key > best[0]:
                best = (key, target)
    if best is None:
        raise InputError(f"{path.name}: no se encontró la columna CURP; ponga el encabezado "
                         "«CURP» sobre la columna (en las primeras 20 filas)")
    return best[1]


def _intake(path: Path, sheets: list[_Sheet], settings: Settings) -> Intake:
    target = _find_target(path, sheets)
    col = target.column
    header = target.header
    sub_header: list[Any] = []
    header_text = header[col] if col < len(header) else None
    raw: list[tuple[int, str, Row]] = []  # (row, CURP cell text, values)
    scanned = 0
    for number, values in target.sheet.rows():
        scanned += 1
        if scanned > _EXCEL_MAX_ROWS:
            break
        if number < target.first_data_row or _is_empty(values):
            continue
        value = values[col] if col < len(values) else None
        if isinstance(value, str) and (is_curp_header(value) == 2 or value == header_text):
            # A header repeated below (pasted blocks), or the second line of a two-line
            # header whose "CURP" cell is merged downwards: not a person.
            if not raw and target.header_row is not None and number == target.header_row + 1:
                sub_header = values
            continue
        raw.append((number, cell_text(value), values))
        if len(raw) > settings.max_rows:
            raise InputError(f"{path.name} tiene más de {settings.max_rows} filas de datos; "
                             "divídalo en archivos más pequeños (CONSTANCIAS_MAX_ROWS)")
    if not raw:
        where = f" (fila {target.header_row})" if target.header_row else ""
        raise InputError(f"{path.name}: la hoja tiene el encabezado CURP{where} pero ninguna "
                         "fila de datos debajo")

    from openpyxl.utils import get_column_letter

    columns = _column_names(header, sub_header, raw, col)
    formula_cells: list[str] = []
    first_seen: dict[str, int] = {}
    rows: list[SheetRow] = []
    for number, text, values in raw:
        curp = normalise_curp(text)
        reason = validate_curp(curp)
        duplicate_of = None
        if reason is None:
            duplicate_of = first_seen.setdefault(curp, number)
            if duplicate_of == number:
                duplicate_of = None
        extra = {label: cell_text(values[i]) if i < len(values) else ""
                 for i, label in columns}
        formula_cells += [f"{get_column_letter(i + 1)}{number}"
                          for i, v in enumerate(values) if isinstance(v, FormulaText)]
        rows.append(SheetRow(row=number, value=text, curp=curp if reason is None else None,
                             reason=reason, duplicate_of=duplicate_of, extra=extra))
    curp_header = cell_text(header[col]).strip() if header and col < len(header) else None
    return Intake(path=path, sheet_name=target.sheet.name, header_row=target.header_row,
                  curp_header=curp_header, columns=[label for _, label in columns], rows=rows,
                  formula_cells=formula_cells)


def _column_names(header: Row, sub_header: Row, raw: list[tuple[int, str, Row]],
                  curp_col: int) -> list[tuple[int, str]]:
    """``(index, name)`` of every other column that has a header or any data."""
    from openpyxl.utils import get_column_letter

    width = max([len(header), len(sub_header)] + [len(v) for _, _, v in raw])
    used = [False] * width
    for _, _, values in raw:
        for i, v in enumerate(values):
            if not used[i] and v is not None and (not isinstance(v, str) or v.strip()):
                used[i] = True
    names: list[tuple[int, str]] = []
    seen: set[str] = set()
    for i in range(width):
        if i == curp_col:
            continue
        top = cell_text(header[i]).strip() if i < len(header) else ""
        sub = cell_text(sub_header[i]).strip() if i < len(sub_header) else ""
        label = " ".join(p for p in dict.fromkeys([top, sub]) if p)
        label = " ".join(label.split())
        if not label and not used[i]:
            continue
        label = label or f"Columna {get_column_letter(i + 1)}"
        unique, n = label, 2
        while unique in seen:
            unique, n = f"{label} ({n})", n + 1
        seen.add(unique)
        names.append((i, unique))
    return names
