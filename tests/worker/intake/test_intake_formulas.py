"""A formula cell with no saved value (a sheet written by a program, never opened in Excel)
keeps its formula text, and `validate` names such cells in a Spanish warning."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from openpyxl import Workbook

from tests.worker.sheets import VALID
from worker.core.settings import load_settings
from worker.intake.read import read_sheet


def _program_sheet(path: Path, *, cached_b3: str | None = None) -> Path:
    """CURP, a name built by formula (no saved value, as openpyxl and many exporters write
    it), and the name's parts; optionally B3's formula saved with a value, as Excel does."""
    wb = Workbook()
    ws = wb.active
    ws.title = "Altas"
    ws.append(["CURP", "Nombre", "Nombres", "Apellido"])
    ws.append([VALID[0], '=CONCAT(C2," ",D2)', "Ana", "López"])
    ws.append([VALID[1], '=CONCAT(C3," ",D3)', "Beto", "Ruiz"])
    ws.append([VALID[2], "Carla Paz", "Carla", "Paz"])
    wb.save(path)
    if cached_b3 is None:
        return path
    # Excel saves a formula's last value next to it: <c r="B3" t="str"><f>…</f><v>…</v></c>.
    tmp = path.with_suffix(".tmp")
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(tmp, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "xl/worksheets/sheet1.xml":
                text = data.decode()
                start = text.index('<c r="B3"')
                end = text.index("</c>", start)
                cell = text[start:end].replace("<v></v>", "").replace("<v />", "")
                cell = cell.replace('<c r="B3"', '<c r="B3" t="str"', 1)
                text = text[:start] + cell + f"<v>{cached_b3}</v>" + text[end:]
                data = text.encode()
            dst.writestr(item, data)
    shutil.move(tmp, path)
    return path


def test_formula_without_saved_value_keeps_its_text_and_is_named(tmp_path: Path) -> None:
    """The name column's formulas with no saved value come through as their formula text,
    and the intake lists their cells; plain values are untouched."""
    intake = read_sheet(_program_sheet(tmp_path / "altas.xlsx"), load_settings())
    names = [r.extra["Nombre"] for r in intake.rows]
    assert names == ['=CONCAT(C2," ",D2)', '=CONCAT(C3," ",D3)', "Carla Paz"]
    assert intake.formula_cells == ["B2", "B3"]
    assert [r.curp for r in intake.rows] == VALID[:3]


def test_formula_with_a_saved_value_reads_the_value(tmp_path: Path) -> None:
    """A formula Excel saved with its value gives the value, and is not named."""
    sheet = _program_sheet(tmp_path / "altas.xlsx", cached_b3="Beto Ruiz")
    intake = read_sheet(sheet, load_settings())
    assert [r.extra["Nombre"] for r in intake.rows][1:] == ["Beto Ruiz", "Carla Paz"]
    assert intake.formula_cells == ["B2"]


def test_validate_warns_in_spanish_naming_the_formula_cells(tmp_path: Path) -> None:
    """`validate --json` keeps its JSON as it was and names the cells on stderr."""
    sheet = _program_sheet(tmp_path / "altas.xlsx")
    proc = subprocess.run([sys.executable, "-m", "worker.interfaces.cli", "validate", str(sheet), "--json"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert set(json.loads(proc.stdout)) == {"rows", "valid", "invalid", "duplicates"}
    assert proc.stderr.strip().splitlines() == [
        "Aviso: 2 celda(s) de la hoja «Altas» tienen una fórmula sin valor guardado (B2, B3); "
        "se tomó el texto de la fórmula. Abra el archivo en Excel y guárdelo para que las "
        "fórmulas se calculen."]
