"""``constancias validate FILE [--json]``: check a sheet without querying any portal.

Exit 0 even when rows are invalid (they are results, not errors); an unusable file raises
``InputError``, which ``worker/interfaces/cli.py`` prints as one Spanish line with exit code 2.
"""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from worker.core.settings import load_settings
from worker.intake.read import read_sheet
from worker.intake.result import Intake

__all__ = ["cmd_validate", "render_table", "formula_warning"]

#: Cells named in the formula warning; the rest are counted.
_CELLS_NAMED = 10


def formula_warning(intake: Intake) -> str | None:
    """One Spanish line naming the cells whose formula had no saved value (their formula text
    is what was read), or ``None``."""
    cells = intake.formula_cells
    if not cells:
        return None
    named = ", ".join(cells[:_CELLS_NAMED])
    more = f" y {len(cells) - _CELLS_NAMED} más" if len(cells) > _CELLS_NAMED else ""
    where = f" de la hoja «{intake.sheet_name}»" if intake.sheet_name else ""
    return (f"Aviso: {len(cells)} celda(s){where} tienen una fórmula sin valor guardado "
            f"({named}{more}); se tomó el texto de la fórmula. Abra el archivo en Excel y "
            "guárdelo para que las fórmulas se calculen.")


def cmd_validate(args: Any) -> int:
    """Read ``args.file`` and print its summary: JSON (SPEC §4) or a table for people."""
    settings = load_settings()
    intake = read_sheet(args.file, settings)
    warning = formula_warning(intake)
    if warning:
        print(warning, file=sys.stderr)
    if getattr(args, "json", False):
        json.dump(intake.to_json(), sys.stdout, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        render_table(intake, sys.stdout)
    return 0


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def render_table(intake: Intake, out: TextIO) -> None:
    """A readable Spanish summary: where the CURPs were found, counts, then the problems."""
    where = f"hoja «{intake.sheet_name}», " if intake.sheet_name else ""
    if intake.header_row is not None:
        where += f"columna «{intake.curp_header}» (encabezado en la fila {intake.header_row})"
    else:
        where += "columna CURP reconocida por su contenido (sin encabezado)"
    data = intake.to_json()
    out.write(f"Archivo: {intake.path.name}\n")
    out.write(f"CURP en: {where}\n")
    if intake.columns:
        out.write(f"Otras columnas: {', '.join(intake.columns)}\n")
    out.write(f"Filas con datos: {data['rows']}\n")
    out.write(f"CURP válidas distintas: {data['valid']}\n")
    out.write(f"CURP inválidas: {len(data['invalid'])}\n")
    out.write(f"Duplicadas: {len(data['duplicates'])}\n")
    if data["invalid"]:
        out.write("\nCURP inválidas (corríjalas en la hoja):\n")
        out.write(f"  {'Fila':>6}  {'Valor':<22}  Motivo\n")
        for item in data["invalid"]:
            value = _clip(item["value"], 22) or "(vacía)"
            out.write(f"  {item['row']:>6}  {value:<22}  {item['reason']}\n")
    if data["duplicates"]:
        out.write("\nDuplicadas (se consultan una sola vez):\n")
        out.write(f"  {'Fila':>6}  {'CURP':<18}  Primera aparición\n")
        for item in data["duplicates"]:
            out.write(f"  {item['row']:>6}  {item['curp']:<18}  fila {item['first_row']}\n")
    if not data["invalid"] and not data["duplicates"]:
        out.write("\nTodas las CURP son válidas.\n")
