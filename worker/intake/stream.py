"""What every format reader hands over: each worksheet as a re-startable stream of
``(row_number, values)``, and the wording their Spanish messages share."""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["EXCEL_MAX_ROWS", "SAVE_AS_XLSX", "Row", "SheetStream", "mb", "why"]

#: Excel's own last row: no real sheet scans further, empty rows included.
EXCEL_MAX_ROWS = 1_048_576

SAVE_AS_XLSX = "ábralo en Excel y guárdelo como «Libro de Excel (.xlsx)» o CSV"


Row = list[Any]


@dataclass
class SheetStream:
    """One worksheet as a re-startable stream of ``(row_number, values)``."""

    name: str | None
    rows: Callable[[], Iterator[tuple[int, Row]]]
    visible: bool = True


def mb(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MB"


def why(exc: BaseException) -> str:
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
