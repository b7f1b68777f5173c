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

from pathlib import Path
from typing import Any

from worker.core.errors import InputError
from worker.core.settings import Settings
from worker.intake.columns import column_names, find_target, is_curp_header, is_empty
from worker.intake.curp import cell_text, normalise_curp, validate_curp
from worker.intake.delimited import text_sheets
from worker.intake.result import Intake, SheetRow
from worker.intake.stream import EXCEL_MAX_ROWS, Row, SheetStream, mb
from worker.intake.xls import ole_sheets
from worker.intake.xlsx import FormulaText, xlsx_sheets

__all__ = ["read_sheet"]


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
        raise InputError(f"{name} pesa {mb(size)}, más de los {mb(settings.max_file_bytes)} "
                         "que se aceptan: quite imágenes u hojas que no hagan falta, o reparta "
                         "las personas en varios archivos (límite CONSTANCIAS_MAX_FILE_BYTES)")

    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        sheets, closer = xlsx_sheets(path, settings)
    elif head.startswith(_OLE_MAGIC):
        sheets, closer = ole_sheets(path), None
    else:
        for magic, kind in _OTHER_MAGIC.items():
            if head.startswith(magic):
                raise InputError(f"{name} es {kind}, no una hoja de cálculo (.xlsx o .csv)")
        sheets, closer = text_sheets(path), None
    try:
        return _intake(path, sheets, settings)
    finally:
        if closer is not None:
            closer()



def _intake(path: Path, sheets: list[SheetStream], settings: Settings) -> Intake:
    target = find_target(path, sheets)
    col = target.column
    header = target.header
    sub_header: list[Any] = []
    header_text = header[col] if col < len(header) else None
    raw: list[tuple[int, str, Row]] = []  # (row, CURP cell text, values)
    scanned = 0
    for number, values in target.sheet.rows():
        scanned += 1
        if scanned > EXCEL_MAX_ROWS:
            break
        if number < target.first_data_row or is_empty(values):
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

    # Here: openpyxl is for spreadsheets (a CSV does not pay for it).
    from openpyxl.utils import get_column_letter

    columns = column_names(header, sub_header, raw, col)
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

