"""``constancias validate``: the JSON contract of SPEC §4 and the table HR reads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.worker.sheets import VALID, write_xlsx

ROOT = Path(__file__).resolve().parents[3]
SAMPLE = ROOT / "fixtures" / "sample" / "onboarding.xlsx"
CLI = Path(sys.executable).with_name("constancias")


def _validate(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CLI), "validate", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


def test_json_output_has_exactly_the_spec_shape(tmp_path):
    """``--json`` prints one object with rows, valid, invalid[] and duplicates[] and exits 0."""
    done = _validate(str(SAMPLE), "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert set(data) == {"rows", "valid", "invalid", "duplicates"}
    assert (data["rows"], data["valid"]) == (14, 12)
    assert data["invalid"] == [{"row": 16, "value": "TOSM930512HDFRNR05",
                                "reason": data["invalid"][0]["reason"]}]
    assert set(data["duplicates"][0]) == {"row", "curp", "first_row"}
    assert data["duplicates"][0]["row"] == 17 and data["duplicates"][0]["first_row"] == 7


def test_table_output_names_the_column_counts_and_problem_rows(tmp_path):
    """Without ``--json`` HR gets a Spanish summary listing invalid and duplicate rows."""
    done = _validate(str(SAMPLE), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert "columna «CURP» (encabezado en la fila 3)" in text
    assert "CURP válidas distintas: 12" in text
    assert "dígito verificador" in text and "fila 7" in text


def test_sheet_with_only_invalid_rows_still_exits_0(tmp_path):
    """Invalid rows are results, not errors: exit code 0."""
    path = write_xlsx(tmp_path / "malas.xlsx", {"Hoja1": [["CURP"], ["XXXX"], ["1234"]]})
    done = _validate(str(path), "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["valid"] == 0


def test_values_in_the_json_are_the_cells_as_typed(tmp_path):
    """``value`` is the cell text unnormalised; ``curp`` in duplicates is normalised."""
    path = write_xlsx(tmp_path / "d.xlsx", {"Hoja1": [["curp"], [VALID[0]],
                                                      [" " + VALID[0].lower()]]})
    data = json.loads(_validate(str(path), "--json", cwd=tmp_path).stdout)
    assert data["duplicates"] == [{"row": 3, "curp": VALID[0], "first_row": 2}]
