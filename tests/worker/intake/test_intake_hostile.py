"""Hostile and broken files: each is one Spanish line (exit 2), fast, small, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.worker import sheets as s
from worker.core.errors import InputError
from worker.core.settings import load_settings
from worker.intake.read import read_sheet

ROOT = Path(__file__).resolve().parents[3]
SAMPLE = ROOT / "fixtures" / "sample" / "onboarding.xlsx"
CLI = Path(sys.executable).with_name("constancias")


def _write(data: bytes) -> Callable[[Path], Path]:
    def make(path: Path) -> Path:
        path.write_bytes(data)
        return path
    return make


# name -> (builder(path) -> path, words the message must contain)
HOSTILE: dict[str, tuple[Callable[[Path], Path], str]] = {
    "empty.xlsx": (_write(b""), "vacío"),
    "empty.csv": (_write(b""), "vacío"),
    "blank.csv": (_write(b"\r\n \r\n;;;\r\n"), "CURP"),
    "pdf-named.xlsx": (_write(b"%PDF-1.7\n" + b"0" * 200), "PDF"),
    "png-named.csv": (_write(b"\x89PNG\r\n\x1a\n" + b"\0" * 100), "imagen"),
    "notes.csv": (_write("Reunión del lunes\nTemas: presupuesto\n".encode()), "columna CURP"),
    "truncated.xlsx": (lambda p: s.truncated(SAMPLE, p), "incompleto"),
    "encrypted.xlsx": (lambda p: s.encrypted(SAMPLE, p), "contraseña"),
    "garbage.csv": (s.garbage, "binarios"),
    "garbage.xls": (lambda p: s.garbage(p, seed=3), "binarios"),
    "ole-garbage.xls": (_write(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 2000), ".xls"),
    "html-named.xls": (_write(b"<html><body><table><tr><td>CURP</td></tr></table></body></html>"),
                       "HTML"),
    "binary.xlsb": (lambda p: s.office_zip(p, "xlsb"), ".xlsb"),
    "calc.ods": (lambda p: s.office_zip(p, "ods"), "OpenDocument"),
    "word.docx": (lambda p: s.office_zip(p, "docx"), "Word"),
    "laughs-sheet.xlsx": (s.billion_laughs_in_sheet, "entidades"),
    "laughs-strings.xlsx": (s.billion_laughs_in_strings, "entidades"),
    "quadratic.xlsx": (s.quadratic_blowup, "entidades"),
    "zip-bomb.xlsx": (s.zip_bomb, "bomba ZIP"),
    "lying-zip.xlsx": (s.lying_zip, "bomba ZIP"),
    "broken-xml.xlsx": (lambda p: s.write_raw_xlsx(p, s.SHEET_HEAD + "<row r='1'><c"),
                        "dañada"),
    "no-curp-column.xlsx": (lambda p: s.write_xlsx(p, {"Hoja1": [["Nombre", "RFC"],
                                                                 ["Ana", "XAXX010101000"]]}),
                            "columna CURP"),
    "header-no-rows.xlsx": (lambda p: s.write_xlsx(p, {"Hoja1": [["Altas"], ["Nombre", "CURP"]]}),
                            "ninguna fila"),
    "header-no-rows.csv": (_write(b"Nombre;CURP\r\n;\r\n"), "ninguna fila"),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_file_is_refused_with_one_spanish_line(tmp_path, name):
    """read_sheet raises InputError (never anything else) with a one-line, specific message."""
    make, words = HOSTILE[name]
    path = make(tmp_path / name)
    with pytest.raises(InputError) as info:
        read_sheet(path, load_settings())
    message = str(info.value)
    assert "\n" not in message and words in message, message


def test_missing_file_is_an_input_error(tmp_path):
    """A path that does not exist is the user's to fix, not a crash."""
    with pytest.raises(InputError, match="No existe"):
        read_sheet(tmp_path / "nada.xlsx", load_settings())


def test_file_over_the_size_limit_is_refused_before_reading(tmp_path):
    """``CONSTANCIAS_MAX_FILE_BYTES`` is checked on disk first."""
    with pytest.raises(InputError, match="límite"):
        read_sheet(SAMPLE, load_settings(max_file_bytes=1000))


def test_declared_uncompressed_size_is_checked_against_the_setting(tmp_path):
    """An ordinary file bigger than ``CONSTANCIAS_MAX_UNCOMPRESSED_BYTES`` unzipped is refused."""
    with pytest.raises(InputError, match="sin comprimir"):
        read_sheet(SAMPLE, load_settings(max_uncompressed_bytes=1000))


def test_junk_elements_that_would_exhaust_memory_are_refused(tmp_path):
    """Millions of tiny unknown elements between rows are stopped by the pre-scan."""
    def chunks():
        yield (s.SHEET_HEAD + s.inline_row(1, ["CURP"]) + s.inline_row(2, [s.VALID[0]])).encode()
        for _ in range(100):
            yield b"<q/><w/><e/><r/>" * 2500
        yield s.SHEET_TAIL.encode()
    path = s.write_raw_xlsx(tmp_path / "junk.xlsx", chunks())
    with pytest.raises(InputError, match="demasiados elementos"):
        read_sheet(path, load_settings())


def test_one_row_with_too_many_cells_is_refused(tmp_path):
    """A single row of hundreds of thousands of cells is stopped before openpyxl builds it."""
    cells = "".join(f'<c r="A1"><v>{i}</v></c>' for i in range(70_000))
    path = s.write_raw_xlsx(tmp_path / "wide.xlsx", s.SHEET_HEAD + f'<row r="1">{cells}</row>'
                            + s.SHEET_TAIL)
    with pytest.raises(InputError, match="demasiadas celdas"):
        read_sheet(path, load_settings())


#: Runs the CLI's main() and, at exit, writes its own peak RSS (VmHWM, kB). The kernel's
#: ru_maxrss of a child also counts the parent's pages it had before exec (a fork of a big
#: pytest process), so the child reports its own high-water mark instead.
_PEAK_MAIN = """
import atexit, os, sys
def _peak():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                with open(os.environ["PEAK_FILE"], "w") as out:
                    out.write(line.split()[1])
atexit.register(_peak)
from worker.interfaces.cli import main
sys.exit(main())
"""


def _run_cli(path: Path, cwd: Path) -> tuple[int, str, str, int]:
    """Run ``constancias validate`` and return (exit code, stdout, stderr, peak RSS in MB)."""
    out, err, peak = cwd / "out.txt", cwd / "err.txt", cwd / "peak.txt"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONSTANCIAS_")}
    env["PEAK_FILE"] = str(peak)
    python = CLI.parent / "python"
    with out.open("wb") as fo, err.open("wb") as fe:
        proc = subprocess.run([str(python), "-c", _PEAK_MAIN, "validate", str(path)],
                              stdout=fo, stderr=fe, cwd=cwd, env=env, check=False)
    return proc.returncode, out.read_text(), err.read_text(), int(peak.read_text()) // 1024


@pytest.mark.parametrize("name", ["empty.csv", "truncated.xlsx", "encrypted.xlsx",
                                  "garbage.csv", "laughs-sheet.xlsx", "quadratic.xlsx",
                                  "zip-bomb.xlsx", "lying-zip.xlsx", "no-curp-column.xlsx",
                                  "header-no-rows.xlsx", "ole-garbage.xls"])
def test_cli_prints_one_line_and_exits_2_within_500_mb(tmp_path, name):
    """``constancias validate`` on a hostile file: exit 2, one stderr line, no traceback."""
    make, words = HOSTILE[name]
    path = make(tmp_path / name)
    code, out, err, peak_mb = _run_cli(path, tmp_path)
    assert code == 2, (out, err)
    assert err.count("\n") == 1 and err.startswith("constancias: ") and words in err, err
    assert "Traceback" not in err and out == ""
    assert peak_mb < 500, peak_mb


def test_too_many_distinct_texts_are_refused_before_building_them(tmp_path):
    """The shared-string table is bounded by CONSTANCIAS_MAX_ROWS (ten texts per row)."""
    ns = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
    strings = f'<?xml version="1.0"?>\n<sst xmlns="{ns}">' + "<si><t>x</t></si>" * 200 + "</sst>"
    path = s.write_raw_xlsx(tmp_path / "textos.xlsx", s.simple_sheet([["CURP"], [s.VALID[0]]]),
                            shared_strings=strings)
    with pytest.raises(InputError, match="textos distintos"):
        read_sheet(path, load_settings(max_rows=10))
