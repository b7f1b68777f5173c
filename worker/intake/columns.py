"""Finding the CURP column: its header (any spelling HR uses) or, with none, its content, in
whichever sheet holds it; and the names of the other columns, which the report carries."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from worker.core.errors import InputError
from worker.core.text import fold
from worker.intake.curp import cell_text, looks_like_curp, normalise_curp
from worker.intake.stream import Row, SheetStream

__all__ = ["HEADER_SEARCH_ROWS", "Target", "column_names", "find_target", "is_curp_header",
           "is_empty"]

#: The header row must be within these first rows (SPEC §4).
HEADER_SEARCH_ROWS = 20
#: Rows below a header candidate sampled to see whether the column really holds CURPs.
_SAMPLE_ROWS = 200

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



@dataclass
class Target:
    sheet: SheetStream
    header_row: int | None
    column: int  # 0-based
    header: list[Any]  # the header row's values ([] when found by content)
    first_data_row: int


def is_empty(values: Row) -> bool:
    for v in values:
        if v is not None and (not isinstance(v, str) or v.strip()):
            return False
    return True


def find_target(path: Path, sheets: list[SheetStream]) -> Target:
    """The (sheet, header row, column) that holds the CURPs, from a sample of each sheet."""
    # Candidates are ranked by: holds CURP-shaped values, header quality, how many, then
    # visible before hidden and workbook order.
    best: tuple[tuple[Any, ...], Target] | None = None
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
                target = Target(sheet, number, col, list(values), number + 1)
                if best is None or key > best[0]:
                    best = (key, target)
        if best is not None and best[0][0]:
            continue  # a header already holds CURPs; content guesses cannot beat it
        # No header: the column where most non-empty sampled values are CURP-shaped.
        widths = max((len(v) for _, v in sample), default=0)
        for col in range(widths):
            filled = [i for i, (_, values) in enumerate(sample)
                      if col < len(values) and not is_empty([values[col]])]
            shaped_rows = [i for i in filled if shaped_at[i][col]]
            if not shaped_rows or len(shaped_rows) * 2 < len(filled) - 3:
                continue
            key = (True, 0, len(shaped_rows), sheet.visible, -index, 0, -col)
            target = Target(sheet, None, col, [], sample[shaped_rows[0]][0])
            if best is None or key > best[0]:
                best = (key, target)
    if best is None:
        raise InputError(f"{path.name}: no se encontró la columna CURP; ponga el encabezado "
                         "«CURP» sobre la columna (en las primeras 20 filas)")
    return best[1]


def column_names(header: Row, sub_header: Row, raw: list[tuple[int, str, Row]],
                  curp_col: int) -> list[tuple[int, str]]:
    """``(index, name)`` of every other column that has a header or any data."""
    # Here: openpyxl is for spreadsheets (a CSV does not pay for it).
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
