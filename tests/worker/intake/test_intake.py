"""Intake of the sheets HR really sends: where the CURPs are, what they say, row numbers."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from tests.worker.sheets import INVALID_KINDS, VALID, curp, write_csv, write_xlsx
from worker.core.errors import InputError
from worker.core.settings import load_settings
from worker.intake.columns import is_curp_header
from worker.intake.curp import normalise_curp, validate_curp
from worker.intake.read import read_sheet

SAMPLE = Path(__file__).resolve().parents[3] / "fixtures" / "sample" / "onboarding.xlsx"
SAMPLE_CSV = SAMPLE.with_suffix(".csv")


@pytest.fixture
def settings():
    return load_settings()


# --- normalisation and validation --------------------------------------------------------------


def test_lowercase_curp_with_spaces_nbsp_and_dashes_is_normalised():
    """Trim, NBSP, zero-width, inner spaces and dashes go; letters are upper-cased."""
    raw = "\u00a0 feqa-950314 mdf\u200brnn0" + VALID[0][-1] + " \t"
    assert normalise_curp(raw) == VALID[0]


def test_full_width_and_quoted_curp_is_normalised():
    """Full-width characters fold to ASCII and Excel's forcing apostrophe is dropped."""
    wide = "".join(chr(ord(c) + 0xFEE0) for c in VALID[1])
    assert normalise_curp(wide) == VALID[1]
    assert normalise_curp("'" + VALID[1]) == VALID[1]


def test_valid_synthetic_curps_pass():
    """CURPs with a correct stdnum check digit are valid, for people born before and after 2000."""
    for value in VALID:
        assert validate_curp(value) is None, value


@pytest.mark.parametrize(("value", "words"), INVALID_KINDS)
def test_each_kind_of_invalid_curp_gets_its_own_spanish_reason(value, words):
    """Length, Ñ, symbols, date digits, O-for-zero, date, sex, state, bad word, check digit."""
    reason = validate_curp(normalise_curp(value))
    assert reason is not None and words in reason, reason


def test_empty_curp_is_reported_as_missing():
    """An empty CURP cell says the CURP is missing."""
    assert "falta" in validate_curp("")


def test_non_binary_x_curp_is_checked_like_the_others():
    """RENAPO's X sex marker is accepted; its check digit is still verified."""
    good = curp("GODE561231XDFRRN0")
    assert validate_curp(good) is None
    assert "verificador" in validate_curp(good[:-1] + str((int(good[-1]) + 1) % 10))


@pytest.mark.parametrize("text", ["CURP", "curp", " C.U.R.P. ", "curp del trabajador",
                                  "Clave CURP", "No. CURP", "CURP:", "Clave Única de Registro "
                                  "de Población", "CURP (18 caracteres)", "Curp_Trabajador"])
def test_header_variants_are_recognised(text):
    """Case, accents and punctuation do not matter."""
    assert is_curp_header(text)


@pytest.mark.parametrize("text", ["Nombre", "RFC", "Capture la CURP de cada trabajador en la "
                                  "columna de abajo por favor", VALID[0], "CURP850101HDFRRN09"])
def test_other_cells_are_not_headers(text):
    """Names, sentences and CURP values are not CURP headers."""
    assert not is_curp_header(text)


# --- the sample sheet --------------------------------------------------------------------------


@pytest.mark.parametrize("path", [SAMPLE, SAMPLE_CSV], ids=["xlsx", "csv-cp1252-semicolon"])
def test_sample_sheet_has_twelve_people_one_invalid_one_duplicate(path, settings):
    """The committed sample: title above the header, 12 valid, 1 invalid, 1 duplicate."""
    intake = read_sheet(path, settings)
    assert intake.header_row == 3
    assert intake.curp_header == "CURP"
    assert intake.columns == ["No. empleado", "Nombre", "Puesto", "Fecha de ingreso"]
    data = intake.to_json()
    assert (data["rows"], data["valid"]) == (14, 12)
    assert [i["row"] for i in data["invalid"]] == [16]
    assert data["duplicates"] == [{"row": 17, "curp": intake.rows[3].curp, "first_row": 7}]
    first = intake.rows[0]
    assert first.row == 4 and first.extra["Nombre"] == "Ana Lucía Ferrer Quintana"
    assert first.extra["No. empleado"] == "1001"


def test_sample_xlsx_dates_and_numbers_read_as_people_see_them(settings):
    """Employee numbers have no ".0" and dates come out as ISO dates."""
    row = read_sheet(SAMPLE, settings).rows[0]
    assert row.extra["Fecha de ingreso"] == "2025-01-06"


# --- messy sheets ------------------------------------------------------------------------------


def test_title_rows_merged_cells_and_blank_rows_keep_excel_row_numbers(tmp_path, settings):
    """Rows above the header are skipped, empty rows too, and numbers are Excel's own."""
    rows = [["Empresa Ficticia S.A. de C.V."], ["Altas de enero"], [],
            ["Nombre", "Clave CURP", "Área"],
            ["Ana", VALID[0], "Ventas"], [], [None, None, None],
            ["Bruno", VALID[1], "Almacén"], ["   ", "", None], ["Carmen", VALID[2], "RH"]]
    path = write_xlsx(tmp_path / "altas.xlsx", {"Hoja1": rows}, merges={"Hoja1": ["A1:C1"]})
    intake = read_sheet(path, settings)
    assert intake.header_row == 4 and intake.curp_header == "Clave CURP"
    assert [r.row for r in intake.rows] == [5, 8, 10]
    assert intake.valid_curps == VALID[:3]
    assert intake.rows[1].extra == {"Nombre": "Bruno", "Área": "Almacén"}


def test_vertically_merged_values_are_copied_into_each_row(tmp_path, settings):
    """A department merged down three rows belongs to each of the three people."""
    rows = [["CURP", "Departamento"], [VALID[0], "Ventas"], [VALID[1], None], [VALID[2], None]]
    path = write_xlsx(tmp_path / "m.xlsx", {"Hoja1": rows}, merges={"Hoja1": ["B2:B4"]})
    intake = read_sheet(path, settings)
    assert [r.extra["Departamento"] for r in intake.rows] == ["Ventas"] * 3


def test_two_line_header_with_merged_curp_cell_is_not_a_person(tmp_path, settings):
    """A "CURP" header merged over two header lines; the sub-header names the columns."""
    rows = [["CURP", "Nombre", None], [None, "Paterno", "Materno"],
            [VALID[0], "Ferrer", "Quintana"], [VALID[1], "Iturbide", "Salas"]]
    path = write_xlsx(tmp_path / "h.xlsx", {"Hoja1": rows},
                      merges={"Hoja1": ["A1:A2", "B1:C1"]})
    intake = read_sheet(path, settings)
    assert [r.row for r in intake.rows] == [3, 4]
    assert intake.columns == ["Nombre Paterno", "Nombre Materno"]
    assert intake.rows[0].extra == {"Nombre Paterno": "Ferrer", "Nombre Materno": "Quintana"}


def test_curp_column_is_found_on_a_later_sheet(tmp_path, settings):
    """Instructions first, people on the second sheet: the second sheet is read."""
    sheets = {"Instrucciones": [["Capture la CURP de cada persona en la hoja Datos"],
                                ["CURP"], ["Ejemplo: la clave de 18 caracteres"]],
              "Datos": [["Nombre", "C.U.R.P."], ["Ana", VALID[0]], ["Bruno", VALID[1]]]}
    intake = read_sheet(write_xlsx(tmp_path / "dos.xlsx", sheets), settings)
    assert intake.sheet_name == "Datos"
    assert intake.valid_curps == VALID[:2]


def test_sheet_without_header_is_read_by_content(tmp_path, settings):
    """No header at all: the column full of CURP-shaped values is the CURP column."""
    rows = [["Ana", VALID[0], 1], ["Bruno", VALID[1], 2], ["Carmen", "GODE561231HDFRRN08", 3]]
    intake = read_sheet(write_xlsx(tmp_path / "sin.xlsx", {"Hoja1": rows}), settings)
    assert intake.header_row is None and intake.curp_header is None
    assert [r.row for r in intake.rows] == [1, 2, 3]
    assert intake.columns == ["Columna A", "Columna C"]
    assert len(intake.invalid) == 1


def test_duplicates_point_to_their_first_row_even_when_written_differently(tmp_path, settings):
    """The same CURP in lower case with spaces is a duplicate of the first occurrence."""
    rows = [["CURP"], [VALID[0]], [VALID[1]], [VALID[0].lower()], [" " + VALID[1][:9] + " "
                                                                   + VALID[1][9:]]]
    intake = read_sheet(write_xlsx(tmp_path / "d.xlsx", {"Hoja1": rows}), settings)
    assert intake.to_json()["duplicates"] == [
        {"row": 4, "curp": VALID[0], "first_row": 2}, {"row": 5, "curp": VALID[1], "first_row": 3}]
    assert intake.valid_curps == VALID[:2]


def test_every_kind_of_invalid_curp_in_a_sheet_is_reported_with_its_row(tmp_path, settings):
    """Each invalid row is reported with its value as typed and a reason; valid ones are not."""
    rows = [["Nombre", "CURP"], ["Válida", VALID[0]]]
    rows += [[f"Persona {i}", value] for i, (value, _) in enumerate(INVALID_KINDS)]
    rows += [["Sin CURP", None], ["Con nota", "Sin CURP"]]
    intake = read_sheet(write_xlsx(tmp_path / "inv.xlsx", {"Hoja1": rows}), settings)
    invalid = intake.to_json()["invalid"]
    assert [i["row"] for i in invalid] == list(range(3, 3 + len(INVALID_KINDS) + 2))
    assert [i["value"] for i in invalid][: len(INVALID_KINDS)] == [v for v, _ in INVALID_KINDS]
    assert all(i["reason"] for i in invalid)
    assert intake.to_json()["valid"] == 1


def test_dates_and_numbers_in_other_columns_keep_their_meaning(tmp_path, settings):
    """Dates become ISO dates and whole numbers lose their ".0" in the other columns."""
    rows = [["CURP", "Ingreso", "Sueldo", "Empleado"],
            [VALID[0], dt.datetime(2025, 3, 1), 12345.5, 1001.0]]
    row = read_sheet(write_xlsx(tmp_path / "t.xlsx", {"Hoja1": rows}), settings).rows[0]
    assert row.extra == {"Ingreso": "2025-03-01", "Sueldo": "12345.5", "Empleado": "1001"}


# --- CSV ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-bom", "cp1252", "utf-16-le-bom"])
@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_csv_in_each_encoding_and_delimiter_reads_the_same(tmp_path, settings, encoding,
                                                           delimiter):
    """UTF-8, UTF-8 with BOM, Windows-1252 and UTF-16; comma, semicolon, tab and pipe."""
    rows = [["Reporte de altas"], ["Núm", "Nombre", "CURP", "Dirección"],
            ["1", "Begoña Muñoz", VALID[0], "Calle 5, Col. Centro"],
            ["2", "José Ñúñez", VALID[1], "Av. Juárez 10; int 2"]]
    enc = encoding.removesuffix("-bom")
    path = write_csv(tmp_path / "a.csv", rows, encoding=enc, delimiter=delimiter,
                     bom=encoding.endswith("-bom"))
    intake = read_sheet(path, settings)
    assert intake.header_row == 2
    assert intake.columns == ["Núm", "Nombre", "Dirección"]
    assert intake.valid_curps == VALID[:2]
    assert intake.rows[0].extra["Nombre"] == "Begoña Muñoz"
    assert intake.rows[1].extra["Dirección"] == "Av. Juárez 10; int 2"


def test_csv_of_bare_curps_one_per_line_is_read(tmp_path, settings):
    """A plain list of CURPs, no header, no delimiter, blank lines in between."""
    path = tmp_path / "lista.csv"
    path.write_text(f"{VALID[0]}\n\n{VALID[1].lower()}\n{VALID[2]}\n", encoding="utf-8")
    intake = read_sheet(path, settings)
    assert [r.row for r in intake.rows] == [1, 3, 4]
    assert intake.valid_curps == VALID[:3]


def test_csv_with_excel_text_formula_and_sep_hint_is_read(tmp_path, settings):
    """``="…"`` wrappers and Excel's ``sep=;`` first line are understood."""
    path = tmp_path / "excel.csv"
    path.write_text(f'sep=;\nCURP;Nombre\n="{VALID[0]}";Ana\n', encoding="utf-8")
    intake = read_sheet(path, settings)
    assert intake.valid_curps == [VALID[0]] and intake.rows[0].row == 3


def test_legacy_xls_is_read(tmp_path, settings):
    """A real Excel 97-2003 file (converted by LibreOffice) is read through xlrd."""
    import shutil
    import subprocess

    soffice = shutil.which("soffice") or shutil.which("libreoffice")
    assert soffice, "LibreOffice is installed by scripts/setup.sh"
    source = write_xlsx(tmp_path / "viejo.xlsx",
                        {"Hoja1": [["Título"], ["Nombre", "CURP"], ["Ana", VALID[0]],
                                   ["Bruno", "GODE561231HDFRRN08"]]})
    subprocess.run([soffice, "--headless", f"-env:UserInstallation=file://{tmp_path}/lo",
                    "--convert-to", "xls", "--outdir", str(tmp_path), str(source)],
                   check=True, capture_output=True, timeout=120)
    intake = read_sheet(tmp_path / "viejo.xls", settings)
    assert intake.header_row == 2 and intake.valid_curps == [VALID[0]]
    assert [i["row"] for i in intake.to_json()["invalid"]] == [4]


def test_more_rows_than_the_limit_is_refused(tmp_path):
    """``CONSTANCIAS_MAX_ROWS`` bounds the data rows of one sheet."""
    rows = [["CURP"]] + [[v] for v in VALID]
    path = write_xlsx(tmp_path / "muchas.xlsx", {"Hoja1": rows})
    with pytest.raises(InputError, match="más de 3 filas"):
        read_sheet(path, load_settings(max_rows=3))


def test_shared_strings_with_rich_text_and_phonetic_runs_read_as_plain_text(tmp_path, settings):
    """A CURP typed with partial formatting (rich runs) reads as its plain text."""
    from tests.worker.sheets import write_raw_xlsx

    ns = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
    strings = (f'<?xml version="1.0" encoding="UTF-8"?>\n<sst xmlns="{ns}">'
               "<si><t>CURP</t></si>"
               f"<si><r><rPr><b/></rPr><t>{VALID[0][:9]}</t></r><r><t>{VALID[0][9:]}</t></r>"
               "<rPh sb=\"0\" eb=\"1\"><t>ふりがな</t></rPh></si>"
               '<si><t xml:space="preserve"> Ana </t></si></sst>')
    sheet = (f'<?xml version="1.0" encoding="UTF-8"?>\n<worksheet xmlns="{ns}"><sheetData>'
             '<row r="1"><c r="A1" t="s"><v>0</v></c></row>'
             '<row r="2"><c r="A2" t="s"><v>1</v></c><c r="B2" t="s"><v>2</v></c></row>'
             "</sheetData></worksheet>")
    intake = read_sheet(write_raw_xlsx(tmp_path / "rich.xlsx", sheet, shared_strings=strings),
                        settings)
    assert intake.valid_curps == [VALID[0]]
    assert intake.rows[0].extra == {"Columna B": " Ana "}
