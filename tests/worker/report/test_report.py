"""reporte.xlsx: every sheet, link and hostile value, read back with openpyxl and LibreOffice."""

from __future__ import annotations

import csv
import re
import shutil
import subprocess
import zipfile
from datetime import UTC, date, datetime
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from openpyxl import load_workbook

from worker.core.statuses import Status
from worker.report.model import ReportChange, ReportCheck, ReportData, ReportRow
from worker.report.safe_text import EXCEL_MAX_CHARS
from worker.report.workbook import write_report

HOSTILE = [
    '=HYPERLINK("http://x","clic")',
    "+1",
    "-2",
    "@SUM(A1)",
    "\tTab",
    "\rCR",
    "línea 1\r\nlínea 2",
    "=1+1",
    "#N/A",
    "_x0041_ literal",
    "😀 Émoji ñandú",
    "שלום עולם مرحبا",  # RTL
    "  espacios  ",
]
CONTROL = "a\x00b\x07c\x1fd\ufffee"
CONTROL_CLEAN = "abcde"
LONG = "x" * 40_000
NAMES = ["Ana", "Beto", "Carla", "Dora", "Emilio", "Fer", "Gus", "Hilda"]


def _curp(i: int) -> str:
    return f"GODE5612{i:02d}HDFRRN0{i % 10}"


def _pdf(out: Path, curp: str, portal: str) -> Path:
    path = out / "constancias" / curp / f"{portal} constancia #1.pdf"  # space and '#' on purpose
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"%PDF-1.4\n%fake\n")
    return path


def _evidence(out: Path, curp: str, portal: str) -> Path:
    path = out / "evidencia" / curp / portal
    path.mkdir(parents=True, exist_ok=True)
    (path / "screenshot.png").write_bytes(b"\x89PNG")
    return path


CHECKED = datetime(2024, 5, 10, 18, 30, tzinfo=UTC)  # 12:30 in Mexico City (UTC-6, no DST)
CHECKED_LOCAL = datetime(2024, 5, 10, 12, 30)


def _check(out: Path, curp: str, portal: str, status: Status, detail: str = "") -> ReportCheck:
    return ReportCheck(
        portal=portal, status=status, detail=detail,
        pdf_path=_pdf(out, curp, portal) if status.has_pdf else None,
        evidence_path=(None if status.has_pdf or status.status_class.value == "done"
                       else _evidence(out, curp, portal)),
        checked_at=CHECKED,
        valid_until=date(2024, 5, 10) if status.has_pdf else None,
    )


def _invalid(row: int, value: str, reason: str) -> ReportRow:
    checks = {
        p: ReportCheck(portal=p, status=Status.INVALID_CURP, detail=reason, pdf_path=None,
                       evidence_path=None, checked_at=None, valid_until=None)
        for p in ("imss", "issste")
    }
    return ReportRow(row=row, value=value, curp=None, extra={"Nombre": f"Inválida {row}"},
                     checks=checks, observation=reason)


COLUMNS = ["Núm. empleado", "Nombre", "=cmd|' /C calc'!A0"]


def _sample(out: Path, *, changes: bool = False) -> ReportData:
    """A batch with every kind of row: done, needing action, failed, invalid, duplicate, hostile."""
    plan = [
        (Status.NOT_ENTITLED, Status.NOT_AFFILIATED),
        (Status.ENTITLED, Status.AFFILIATED),
        (Status.CURP_NOT_FOUND, Status.CURP_NOT_FOUND),
        (Status.DATA_INCONSISTENT, Status.NOT_AFFILIATED),
        (Status.DAILY_LIMIT, Status.PORTAL_UNAVAILABLE),
        (Status.CAPTCHA_UNSOLVED, Status.PORTAL_CHANGED),
        (Status.EMAIL_REJECTED, Status.ERROR),
    ]
    rows: list[ReportRow] = []
    for i, (imss, issste) in enumerate(plan):
        curp = _curp(i)
        rows.append(ReportRow(
            row=i + 2, value=curp.lower(), curp=curp,
            extra={"Núm. empleado": f"00{i}", "Nombre": NAMES[i], COLUMNS[2]: HOSTILE[i]},
            checks={"imss": _check(out, curp, "imss", imss, HOSTILE[i + 1]),
                    "issste": _check(out, curp, "issste", issste)},
        ))
    hostile_rows = [
        # extra values carry every hostile string; the detail too
        ReportRow(row=20 + j, value=_curp(40 + j), curp=_curp(40 + j),
                  extra={"Núm. empleado": h, "Nombre": h, COLUMNS[2]: h},
                  checks={"imss": _check(out, _curp(40 + j), "imss", Status.ERROR, h),
                          "issste": _check(out, _curp(40 + j), "issste", Status.AFFILIATED)},
                  observation=h)
        for j, h in enumerate([*HOSTILE, CONTROL, LONG])
    ]
    first = rows[0]
    rows += [
        _invalid(9, '=HYPERLINK("javascript:alert(1)")', "Longitud incorrecta (33 caracteres)"),
        _invalid(10, "ABC", "Longitud incorrecta (3 caracteres)"),
        ReportRow(row=11, value=first.value, curp=first.curp, extra=dict(first.extra),
                  checks=first.checks, observation="Duplicada de la fila 2"),
        *hostile_rows,
    ]
    rows.reverse()  # the report restores input order by row number
    change_list = None
    if changes:
        change_list = [
            ReportChange(curp=_curp(0), portal="imss", before=Status.ENTITLED,
                         after=Status.NOT_ENTITLED, before_at=CHECKED,
                         after_at=datetime(2024, 5, 11, 8, 0, tzinfo=UTC), row=2, name="Ana"),
            ReportChange(curp=_curp(4), portal="issste", before=None,
                         after=Status.PORTAL_UNAVAILABLE, before_at=None,
                         after_at=datetime(2024, 5, 11, 8, 0, tzinfo=UTC), row=6, name="=1+1"),
        ]
    return ReportData(batch_id="lote-2024-05-10", source_name="=altas mayo.xlsx",
                      generated_at=datetime(2024, 5, 10, 19, 0, tzinfo=UTC),
                      portals=["imss", "issste"], columns=COLUMNS, rows=rows,
                      changes=change_list)


def _ooxml_unescape(text: str) -> str:
    """How Excel reads cell text: ``_xHHHH_`` is U+HHHH (openpyxl leaves it as written)."""
    return re.sub(r"_x([0-9A-Fa-f]{4})_", lambda m: chr(int(m.group(1), 16)), text)


def _expected(text: str) -> str:
    """What HR must see for an input value: illegal XML characters gone, cut to the limit."""
    text = re.sub("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]", "", text)
    return text if len(text) <= EXCEL_MAX_CHARS else text[: EXCEL_MAX_CHARS - 1] + "…"


@pytest.fixture(scope="module")
def recheck_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ReportData]:
    out = tmp_path_factory.mktemp("salida")
    data = _sample(out, changes=True)
    return write_report(data, out / "reporte.xlsx"), data


def _rows(ws) -> list[list[object]]:
    return [[c.value for c in row] for row in ws.iter_rows()]


def test_recheck_report_has_resumen_detalle_errores_and_cambios(recheck_report) -> None:
    """A re-check report has the four sheets in order; a first run has no Cambios."""
    path, _ = recheck_report
    assert load_workbook(path).sheetnames == ["Resumen", "Detalle", "Errores", "Cambios"]
    out = path.parent / "primera"
    first = write_report(_sample(out), out / "reporte.xlsx")
    assert load_workbook(first).sheetnames == ["Resumen", "Detalle", "Errores"]


def test_detalle_keeps_input_order_columns_and_spanish_labels(recheck_report) -> None:
    """Detalle has one row per input row, by row number, with the input's own columns."""
    path, data = recheck_report
    ws = load_workbook(path)["Detalle"]
    rows = _rows(ws)
    header = rows[0]
    assert header[:5] == ["Fila", "CURP", *COLUMNS]
    assert header[5:10] == ["IMSS: Estado", "IMSS: PDF", "IMSS: Evidencia", "IMSS: Consultado",
                            "IMSS: Vigente hasta"]
    assert header[-1] == "Observaciones"
    body = rows[1:]
    assert [r[0] for r in body] == sorted(r.row for r in data.rows)
    by_row = {r[0]: r for r in body}
    assert by_row[2][1:4] == [_curp(0), "000", "Ana"]
    assert by_row[2][5] == "Sin derecho a servicio médico"
    assert by_row[2][6] == "Ver PDF"
    assert by_row[2][10] == "No afiliado al ISSSTE"
    assert by_row[9][1] == '=HYPERLINK("javascript:alert(1)")'  # the CURP cell as found
    assert by_row[9][5] == by_row[9][10] == "CURP inválida"
    assert by_row[11][-1] == "Duplicada de la fila 2"
    assert ws.freeze_panes == "C2"
    assert ws.auto_filter.ref == f"A1:{ws.cell(1, len(header)).column_letter}{len(rows)}"
    assert 20 <= ws.column_dimensions["B"].width <= 30


def test_hostile_text_reads_back_unchanged_as_string_cells(recheck_report) -> None:
    """Formula-like, control, RTL and emoji text comes back as typed, in string cells."""
    path, data = recheck_report
    wb = load_workbook(path)
    for ws in wb.worksheets:
        for row in ws.iter_rows():
            for cell in row:
                assert cell.data_type != "f", (ws.title, cell.coordinate, cell.value)
                assert cell.data_type != "e", (ws.title, cell.coordinate, cell.value)
    detalle = {r[0]: r for r in _rows(wb["Detalle"])[1:]}
    for j, hostile in enumerate([*HOSTILE, CONTROL, LONG]):
        row = detalle[20 + j]
        want = _expected(hostile)
        assert [_ooxml_unescape(v) for v in row[2:5]] == [want] * 3, repr(hostile[:20])
        assert _ooxml_unescape(row[-1]) == want
    ws = wb["Detalle"]
    for cell in ws["C"][1:]:
        if cell.value is None:
            continue
        value = _ooxml_unescape(cell.value)
        assert cell.data_type == "s"
        assert cell.quotePrefix == (value[:1] in set("=+-@\t\r\n")), repr(value[:10])
    header = [c.value for c in ws[1]]
    assert header[4] == COLUMNS[2]  # a hostile header is text too
    assert wb["Resumen"]["B4"].value == "=altas mayo.xlsx"


def test_control_characters_are_dropped_and_long_text_cut_to_excels_limit(recheck_report) -> None:
    """Characters XML cannot carry disappear; 40,000 characters become 32,767 ending in '…'."""
    path, _ = recheck_report
    detalle = {r[0]: r for r in _rows(load_workbook(path)["Detalle"])[1:]}
    control_row = 20 + len(HOSTILE)
    assert detalle[control_row][3] == CONTROL_CLEAN
    cut = detalle[control_row + 1][3]
    assert len(cut) == EXCEL_MAX_CHARS and cut.endswith("…")


def test_every_hyperlink_is_relative_and_survives_moving_the_folder(
    recheck_report, tmp_path: Path
) -> None:
    """Links are relative URIs to existing files inside the folder, also after zip and unzip."""
    path, data = recheck_report
    archive = shutil.make_archive(str(tmp_path / "envio"), "zip", path.parent)
    moved = tmp_path / "en otra máquina"
    shutil.unpack_archive(archive, moved)
    wb = load_workbook(moved / path.name)
    targets = []
    for ws in wb.worksheets:
        for row in ws.iter_rows():
            for cell in row:
                if cell.hyperlink is None:
                    continue
                target = cell.hyperlink.target
                parts = urlsplit(target)
                assert not parts.scheme and not parts.netloc, target
                assert not target.startswith(("/", "\\")), target
                assert ":" not in target and "#" not in target, target
                resolved = (moved / unquote(target)).resolve()
                assert resolved.is_relative_to(moved.resolve()), target
                assert resolved.exists(), target
                assert cell.value in {"Ver PDF", "Ver evidencia"}
                targets.append((ws.title, target))
    pdfs = [t for s, t in targets if s == "Detalle" and t.endswith(".pdf")]
    evidence = [t for s, t in targets if t.endswith("/")]
    with_pdf = sum(c.status.has_pdf for r in data.rows for c in r.checks.values())
    assert len(pdfs) == with_pdf and all("%20" in t and "%23" in t for t in pdfs)
    assert {s for s, t in targets if t in evidence} == {"Detalle", "Errores"}


def test_dates_are_real_datetimes_in_mexico_city_time(recheck_report) -> None:
    """Consultado and Vigente hasta are date cells with a number format, in local time."""
    path, _ = recheck_report
    wb = load_workbook(path)
    ws = wb["Detalle"]
    row = next(r for r in ws.iter_rows(min_row=2) if r[0].value == 2)
    consulted, valid = row[8], row[9]
    assert consulted.value == CHECKED_LOCAL and consulted.is_date
    assert consulted.number_format == "dd/mm/yyyy hh:mm"
    assert valid.value == datetime(2024, 5, 10) and valid.number_format == "dd/mm/yyyy"
    assert wb["Resumen"]["B5"].value == datetime(2024, 5, 10, 13, 0)
    cambios = _rows(wb["Cambios"])
    assert cambios[1][6:] == [CHECKED_LOCAL, datetime(2024, 5, 11, 2, 0)]


def test_errores_lists_every_check_that_needs_someone(recheck_report) -> None:
    """Every non-done check is on Errores with its reason and action; an invalid row once."""
    path, data = recheck_report
    rows = _rows(load_workbook(path)["Errores"])
    assert rows[0] == ["Fila", "CURP", "Nombre", "Portal", "Estado", "Motivo", "Qué hacer",
                       "Evidencia", "Consultado", "Observaciones"]
    body = rows[1:]
    expected = 0
    for r in data.rows:
        bad = [c for c in r.checks.values() if c.status.status_class.value != "done"]
        expected += 1 if r.curp is None else len(bad)
    assert len(body) == expected
    invalid = [r for r in body if r[0] == 9]
    assert len(invalid) == 1 and invalid[0][3] == "IMSS, ISSSTE"
    assert invalid[0][6] == Status.INVALID_CURP.action
    daily = next(r for r in body if r[4] == Status.DAILY_LIMIT.label)
    assert daily[:4] == [6, _curp(4), "Emilio", "IMSS"]
    assert _ooxml_unescape(daily[5]) == "\rCR" and daily[7] == "Ver evidencia"
    assert [r[0] for r in body] == sorted(r[0] for r in body)


def test_cambios_lists_each_change_with_before_and_after(recheck_report) -> None:
    """Cambios has CURP, row, name, portal, before, after and when."""
    path, _ = recheck_report
    rows = _rows(load_workbook(path)["Cambios"])
    assert rows[0] == ["CURP", "Fila", "Nombre", "Portal", "Antes", "Después",
                       "Consulta anterior", "Cuándo"]
    assert rows[1][:6] == [_curp(0), 2, "Ana", "IMSS", "Vigente (con derecho)",
                           "Sin derecho a servicio médico"]
    assert rows[2][:6] == [_curp(4), 6, "=1+1", "ISSSTE", "Sin consulta previa",
                           "Portal no disponible"]


def test_resumen_counts_statuses_and_has_a_native_bar_chart(recheck_report) -> None:
    """Resumen counts people per portal × status (a duplicate row and an invalid CURP once
    each, on their own lines, never once per portal) and a bar chart plots them."""
    path, data = recheck_report
    wb = load_workbook(path)
    rows = _rows(wb["Resumen"])
    facts = {r[0]: r[1] for r in rows if r and len(r) > 1}
    people = len({r.curp for r in data.rows if r.curp})
    assert facts["Personas (CURP válidas distintas)"] == people
    assert facts["CURP inválidas (no consultadas)"] == 2
    assert facts["Filas repetidas (misma CURP)"] == 1
    start = next(i for i, r in enumerate(rows) if r[:2] == ["Estado", "Tipo"])
    assert [h for h in rows[start][2:] if h] == ["IMSS", "ISSSTE"]  # no "Total" of both
    counts = {}
    for r in rows[start + 1:]:
        if r[0] == "Personas":
            assert r[2:4] == [people, people]
            break
        counts[r[0]] = r[2:4]
    assert counts["Error inesperado"] == [len(HOSTILE) + 2, 1]
    # Row 11 repeats row 2's CURP: one person, one "Sin derecho" and one "No afiliado".
    assert counts["Sin derecho a servicio médico"] == [1, 0]
    assert counts["No afiliado al ISSSTE"] == [0, 2]
    assert "CURP inválida" not in counts
    assert sum(v[0] for v in counts.values()) == people
    legend = [r[0] for r in rows if r and r[0] in {s.label for s in Status}]
    assert set(legend) >= {s.label for s in Status}
    with zipfile.ZipFile(path) as zf:
        charts = [n for n in zf.namelist() if n.startswith("xl/charts/chart")]
        assert len(charts) == 1
        xml = zf.read(charts[0]).decode()
    assert "<c:barChart>" in xml.replace(" ", "") or "barChart" in xml
    assert "'Resumen'!$C$" in xml and "'Resumen'!$A$" in xml


def test_rewriting_replaces_the_file_atomically_and_leaves_no_temp_files(tmp_path: Path) -> None:
    """A failed write keeps the previous report; a good one replaces it; no temp files remain."""
    data = _sample(tmp_path)
    path = write_report(data, tmp_path / "reporte.xlsx")
    before = path.read_bytes()
    broken_check = ReportCheck(portal="imss", status="no-such-status",  # type: ignore[arg-type]
                               detail="", pdf_path=None, evidence_path=None, checked_at=None,
                               valid_until=None)
    broken = ReportData(batch_id="x", source_name="x", generated_at=CHECKED, portals=["imss"],
                        columns=[], rows=[ReportRow(row=2, value="x", curp="X",
                                                    extra={}, checks={"imss": broken_check})])
    with pytest.raises(AttributeError):
        write_report(broken, path)
    assert path.read_bytes() == before
    write_report(data, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["constancias", "evidencia",
                                                          "reporte.xlsx"]


def test_empty_batch_still_writes_every_sheet(tmp_path: Path) -> None:
    """A batch without rows gives a valid report with headers and a 'nothing to do' line."""
    data = ReportData(batch_id="vacío", source_name="vacío.csv", generated_at=CHECKED,
                      portals=["imss"], columns=[], rows=[], changes=[])
    wb = load_workbook(write_report(data, tmp_path / "r.xlsx"))
    assert wb.sheetnames == ["Resumen", "Detalle", "Errores", "Cambios"]
    assert _rows(wb["Errores"])[1][1] == "Ninguna fila requiere acción."
    assert _rows(wb["Cambios"])[1][0] == "Sin cambios desde la revisión anterior."


# --- LibreOffice ------------------------------------------------------------------------------


def _libreoffice_csv(xlsx: Path, workdir: Path) -> dict[str, list[list[str]]]:
    """Convert every sheet to UTF-8 CSV with headless LibreOffice; {sheet: rows}."""
    profile = workdir / "lo-profile"
    outdir = workdir / "csv"
    # Tokens: separator, quote, UTF-8, first line, -, language, quote all, detect, as shown,
    # formulas, trim, sheet (-1: every sheet, one file each).
    filt = 'csv:Text - txt - csv (StarCalc):44,34,76,1,,0,false,true,true,false,false,-1'
    proc = subprocess.run(
        ["soffice", f"-env:UserInstallation={profile.as_uri()}", "--headless",
         "--convert-to", filt, "--outdir", str(outdir), str(xlsx)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Error" not in proc.stderr, proc.stderr
    sheets = {}
    for file in outdir.glob(f"{xlsx.stem}-*.csv"):
        with file.open(encoding="utf-8", newline="") as handle:
            sheets[file.stem.removeprefix(f"{xlsx.stem}-")] = list(csv.reader(handle))
    return sheets


def test_libreoffice_opens_the_report_and_shows_the_same_values(
    recheck_report, tmp_path: Path
) -> None:
    """LibreOffice Calc converts every sheet and shows hostile text, labels and dates as written."""
    path, data = recheck_report
    sheets = _libreoffice_csv(path, tmp_path)
    assert set(sheets) == {"Resumen", "Detalle", "Errores", "Cambios"}
    detalle = sheets["Detalle"]
    assert detalle[0][:5] == ["Fila", "CURP", *COLUMNS]
    ours = _rows(load_workbook(path)["Detalle"])
    assert len(detalle) == len(ours)
    for lo_row, our_row in zip(detalle[1:], ours[1:], strict=True):
        for lo_value, our_value in zip(lo_row, our_row, strict=False):
            if isinstance(our_value, datetime):
                shown = our_value.strftime("%d/%m/%Y %H:%M" if our_value.hour or our_value.minute
                                           else "%d/%m/%Y")
                assert lo_value == shown
            elif isinstance(our_value, int):
                assert lo_value == str(our_value)
            else:
                # LibreOffice keeps a line break inside a cell as LF (a lone CR stays CR).
                want = _ooxml_unescape(our_value or "").replace("\r\n", "\n")
                assert lo_value == want, (lo_row[0], our_value)
    by_row = {r[0]: r for r in detalle[1:]}
    for j, hostile in enumerate([*HOSTILE, CONTROL]):
        want = _expected(hostile).replace("\r\n", "\n")
        assert by_row[str(20 + j)][2:5] == [want] * 3, repr(hostile)
    assert by_row["9"][1] == '=HYPERLINK("javascript:alert(1)")'
    assert sheets["Resumen"][3][1] == "=altas mayo.xlsx"
    assert sheets["Cambios"][2][2] == "=1+1"


def test_links_are_never_schemes_or_absolute_and_missing_files_are_said_so(tmp_path: Path) -> None:
    """A colon in a folder name is percent-encoded, a file outside gets ../, a missing one text."""
    out = tmp_path / "salida"
    hostile_dir = out / "javascript:alert(1)" / "file:" / "imss"
    hostile_dir.mkdir(parents=True)
    outside = tmp_path / "otros" / "fuera.pdf"
    outside.parent.mkdir()
    outside.write_bytes(b"%PDF")
    checks = [
        ReportCheck("imss", Status.ERROR, "x", None, hostile_dir, CHECKED, None),
        ReportCheck("imss", Status.ENTITLED, "", outside, None, CHECKED, None),
        ReportCheck("imss", Status.ENTITLED, "", out / "no existe.pdf", None,
                    CHECKED.replace(tzinfo=None), None),  # naive: taken as UTC
    ]
    rows = [ReportRow(row=i + 2, value=_curp(i), curp=_curp(i), extra={}, checks={"imss": c})
            for i, c in enumerate(checks)]
    data = ReportData(batch_id="b", source_name="s.csv", generated_at=CHECKED, portals=["imss"],
                      columns=[], rows=rows)
    ws = load_workbook(write_report(data, out / "reporte.xlsx"))["Detalle"]
    body = list(ws.iter_rows(min_row=2))
    evidence_link = body[0][4].hyperlink.target
    assert evidence_link == "javascript%3Aalert%281%29/file%3A/imss/"
    assert (out / unquote(evidence_link)).resolve() == hostile_dir.resolve()
    assert body[1][3].hyperlink.target == "../otros/fuera.pdf"
    assert body[2][3].hyperlink is None and body[2][3].value == "Archivo no disponible"
    assert body[2][5].value == CHECKED_LOCAL


def test_sheets_print_landscape_fitted_to_width_with_repeated_header(recheck_report) -> None:
    """Every table sheet prints landscape, one page wide, header repeated, table only."""
    path, data = recheck_report
    wb = load_workbook(path)
    for name in ("Detalle", "Errores", "Cambios"):
        ws = wb[name]
        assert ws.page_setup.orientation == "landscape"
        assert ws.sheet_properties.pageSetUpPr.fitToPage
        assert ws.page_setup.fitToWidth == 1 and ws.page_setup.fitToHeight == 0
        assert ws.print_title_rows.replace("$", "") == "1:1"
        printed = ws.print_area if isinstance(ws.print_area, str) else ws.print_area[0]
        assert printed.split("!")[-1].replace("$", "") == ws.auto_filter.ref


def test_links_beyond_excels_per_sheet_limit_become_plain_relative_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the hyperlink limit of a sheet, the cell shows the relative path as text."""
    import worker.report.sheet as report_sheet

    monkeypatch.setattr(report_sheet, "MAX_LINKS_PER_SHEET", 2)
    rows = [ReportRow(row=i + 2, value=_curp(i), curp=_curp(i), extra={},
                      checks={"imss": _check(tmp_path, _curp(i), "imss", Status.ENTITLED)})
            for i in range(4)]
    data = ReportData(batch_id="b", source_name="s.csv", generated_at=CHECKED, portals=["imss"],
                      columns=[], rows=rows)
    ws = load_workbook(write_report(data, tmp_path / "reporte.xlsx"))["Detalle"]
    cells = [r[3] for r in ws.iter_rows(min_row=2)]
    assert [c.hyperlink is not None for c in cells] == [True, True, False, False]
    assert cells[2].value == f"constancias/{_curp(2)}/imss constancia #1.pdf"
