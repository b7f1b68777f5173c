"""Reading ``.xlsx`` (and ``.xlsm``) with openpyxl in read-only mode, after the checks of
``xlsx_safety``: a safer shared-string table, no whole-sheet parse to size a sheet, merged
cells filled from their top-left value, and the text of formulas that have no saved value."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, cast

from worker.core.errors import InputError
from worker.core.settings import Settings
from worker.intake.stream import SAVE_AS_XLSX, Row, SheetStream, why
from worker.intake.xlsx_safety import (
    FORMULA_MARK,
    UnsafeSheet,
    check_zip,
    read_shared_strings,
    scan_sheets,
)

__all__ = ["FormulaText", "xlsx_sheets"]

#: Distinct texts (shared strings) allowed per data row allowed (CONSTANCIAS_MAX_ROWS):
#: each costs ~60 B of memory and ~1 µs to read, whatever its length.
_SHARED_STRINGS_PER_ROW = 10


def xlsx_sheets(path: Path, settings: Settings) -> tuple[list[SheetStream], Callable[[], None]]:
    name = path.name
    check_zip(path, settings)
    merges_by_part = scan_sheets(path)
    import openpyxl  # imported here: `validate` on a CSV should not pay for it

    with_formulas = {part for part, merges in merges_by_part.items() if FORMULA_MARK in merges}
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
    except UnsafeSheet as exc:
        raise InputError(f"{name}: sus textos no se pueden leer con seguridad: {exc}") from None
    except Exception as exc:  # any parser failure of a hostile or broken file is one line
        raise InputError(f"{name} no se pudo leer como libro de Excel ({why(exc)}); "
                         f"{SAVE_AS_XLSX}") from None

    def make_rows(ws: Any, part: str,
                  formula_ws: Any = None) -> Callable[[], Iterator[tuple[int, Row]]]:
        merges = [m for m in merges_by_part.get(part.lstrip("/"), []) if m != FORMULA_MARK]

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
                                 f"({why(exc)}); {SAVE_AS_XLSX}") from None
        return rows

    sheets = []
    formula_sheets = formulas_wb.worksheets if formulas_wb is not None else []
    for i, ws in enumerate(wb.worksheets):
        part = getattr(ws, "_worksheet_path", "")
        formula_ws = (formula_sheets[i] if i < len(formula_sheets)
                      and part.lstrip("/") in with_formulas else None)
        sheets.append(SheetStream(ws.title, make_rows(ws, part, formula_ws),
                             ws.sheet_state == "visible"))

    def close() -> None:
        wb.close()
        if formulas_wb is not None:
            formulas_wb.close()

    if not sheets:
        close()
        raise InputError(f"{name} no tiene hojas de cálculo con datos")
    return sheets, close



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
    # Here, as ``import openpyxl`` above: a CSV does not pay for it.
    from openpyxl.reader.excel import ExcelReader
    from openpyxl.xml.constants import SHARED_STRINGS

    limit = settings.max_rows * _SHARED_STRINGS_PER_ROW

    class Reader(ExcelReader):
        def read_strings(self) -> None:
            part = cast(Any, self.package).find(SHARED_STRINGS)
            if part is not None:
                with self.archive.open(part.PartName[1:]) as src:
                    self.shared_strings = read_shared_strings(src, limit)

    return Reader(path, read_only=True, keep_vba=False, data_only=data_only, keep_links=False)



class _ReadOnlySizeSkipped:
    """While loading, skip openpyxl's read-only ``_get_size``.

    On a sheet without a ``<dimension>`` element it parses the whole sheet into one tree
    just to find its size — gigabytes for a large or hostile sheet. The size is not needed
    (rows are read with ``reset_dimensions``), so the class attribute is swapped for the
    duration of ``load_workbook`` only, under a lock.
    """

    _lock = threading.Lock()

    def __enter__(self) -> None:
        from openpyxl.worksheet._read_only import ReadOnlyWorksheet  # (as openpyxl above)

        self._lock.acquire()
        self._original = ReadOnlyWorksheet.__dict__["_get_size"]
        # A private method: not in openpyxl's stubs, so set by name.
        setattr(ReadOnlyWorksheet, "_get_size", lambda self: None)  # noqa: B010

    def __exit__(self, *exc: object) -> None:
        from openpyxl.worksheet._read_only import ReadOnlyWorksheet  # (as openpyxl above)

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

