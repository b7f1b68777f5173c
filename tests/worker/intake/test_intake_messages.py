"""Intake's refusals say what to do, in HR's words: the sheet's tab name rather than the part
inside the file, the remedy before the setting's name."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.worker import sheets as s
from worker.core.errors import InputError
from worker.core.settings import load_settings
from worker.intake.read import read_sheet

SAMPLE = Path(__file__).resolve().parents[3] / "fixtures" / "sample" / "onboarding.xlsx"


def _refusal(path: Path, **settings: object) -> str:
    with pytest.raises(InputError) as info:
        read_sheet(path, load_settings(**settings))
    return str(info.value)


def test_a_damaged_sheet_is_named_by_its_tab(tmp_path: Path) -> None:
    """A sheet with broken XML is named as on its tab («Altas de enero»), never sheet1.xml."""
    workbook = s.WORKBOOK.replace('name="Hoja1"', 'name="Altas de enero"')
    path = s.write_raw_xlsx(tmp_path / "rota.xlsx", s.SHEET_HEAD + "<row r='1'><c",
                            workbook=workbook)
    message = _refusal(path)
    assert "la hoja «Altas de enero»" in message and "dañada" in message
    assert ".xml" not in message.replace("XML mal formado", "")


def test_an_unsafe_sheet_is_named_by_its_tab(tmp_path: Path) -> None:
    """A sheet refused for its DTD is named by its tab too."""
    path = s.billion_laughs_in_sheet(tmp_path / "risa.xlsx")
    message = _refusal(path)
    assert "la hoja «Hoja1»" in message and "sheet1.xml" not in message


def test_size_limits_say_what_to_do_before_the_setting(tmp_path: Path) -> None:
    """Over a size limit, the message says how to make the file acceptable; the setting's
    name comes last, in parentheses."""
    for limit in ({"max_uncompressed_bytes": 1000}, {"max_file_bytes": 1000}):
        message = _refusal(SAMPLE, **limit)
        assert "reparta las personas en varios archivos" in message, message
        setting = f"CONSTANCIAS_{next(iter(limit)).upper()}"
        assert message.index("reparta") < message.index(setting)
        assert message.rstrip().endswith(f"{setting})")
