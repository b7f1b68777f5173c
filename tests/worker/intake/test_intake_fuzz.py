"""Property-based fuzzing: whatever the bytes, read_sheet returns an Intake or InputError."""

from __future__ import annotations

import io
import string
import tempfile
import zipfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.worker.sheets import VALID, write_csv, write_xlsx
from worker.core.errors import InputError
from worker.core.settings import load_settings
from worker.intake.read import read_sheet
from worker.intake.result import Intake

SETTINGS = load_settings()
FUZZ = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])

cells = st.one_of(st.none(), st.text(max_size=25), st.integers(-10**9, 10**9),
                  st.floats(allow_nan=False, allow_infinity=False), st.sampled_from(VALID),
                  st.sampled_from(["CURP", "c.u.r.p.", "Nombre", "", " "]))
tables = st.lists(st.lists(cells, max_size=6), max_size=25)


def _check(path: Path) -> None:
    try:
        result = read_sheet(path, SETTINGS)
    except InputError as err:
        assert str(err) and "\n" not in str(err)
        return
    assert isinstance(result, Intake)
    data = result.to_json()
    assert data["rows"] == len(result.rows) and data["valid"] <= data["rows"]


@FUZZ
@given(data=st.binary(max_size=3000), suffix=st.sampled_from([".csv", ".xlsx", ".xls", ""]))
def test_random_bytes_never_crash(data, suffix):
    """Random bytes under any name give an Intake or an InputError, nothing else."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"f{suffix}"
        path.write_bytes(data)
        _check(path)


@FUZZ
@given(prefix=st.binary(max_size=64), keep=st.floats(0, 1))
def test_damaged_xlsx_never_crashes(prefix, keep):
    """A real workbook cut short or with bytes spliced in front never crashes intake."""
    with tempfile.TemporaryDirectory() as tmp:
        good = write_xlsx(Path(tmp) / "g.xlsx", {"Hoja1": [["CURP"], [VALID[0]]]})
        data = good.read_bytes()
        path = Path(tmp) / "bad.xlsx"
        path.write_bytes(prefix + data[: int(len(data) * keep)])
        _check(path)


@FUZZ
@given(rows=tables)
def test_random_cells_in_an_xlsx_never_crash(rows):
    """Any mix of cell types, blanks and headers in a workbook is read or refused cleanly."""
    with tempfile.TemporaryDirectory() as tmp:
        clean = [[c.replace("\x00", "") if isinstance(c, str) else c for c in r] for r in rows]
        clean = [[c for c in r if not (isinstance(c, str) and any(ord(ch) < 32 for ch in c))]
                 for r in clean]
        _check(write_xlsx(Path(tmp) / "r.xlsx", {"Hoja1": clean}))


@FUZZ
@given(rows=st.lists(st.lists(st.text(max_size=20), max_size=6), max_size=25),
       encoding=st.sampled_from(["utf-8", "cp1252", "utf-16-le", "latin-1"]),
       delimiter=st.sampled_from([",", ";", "\t", "|"]))
def test_random_csv_in_any_encoding_never_crashes(rows, encoding, delimiter):
    """Random text cells, any supported (or unsupported) encoding and delimiter."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "r.csv"
        try:
            write_csv(path, rows, encoding=encoding, delimiter=delimiter,
                      bom=encoding == "utf-16-le")
        except UnicodeEncodeError:
            path.write_bytes(io.StringIO("\n".join(map(str, rows))).getvalue().encode(
                encoding, "replace"))
        _check(path)


@FUZZ
@given(names=st.lists(st.text(string.ascii_letters + string.digits + "/._[]", min_size=1,
                                      max_size=30), max_size=5),
       payload=st.binary(max_size=500))
def test_random_zip_members_never_crash(names, payload):
    """Zips with arbitrary members (and sometimes a fake workbook part) are refused cleanly."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "z.xlsx"
        with zipfile.ZipFile(path, "w") as zf:
            for name in {*names, "xl/workbook.xml"}:
                try:
                    zf.writestr(name, payload)
                except (ValueError, UnicodeEncodeError):
                    pass
        _check(path)


@FUZZ
@given(member=st.integers(0, 20), payload=st.binary(max_size=400))
def test_real_workbook_with_one_part_replaced_never_crashes(member, payload):
    """A real workbook whose workbook, styles, strings or sheet part is random bytes."""
    with tempfile.TemporaryDirectory() as tmp:
        good = write_xlsx(Path(tmp) / "g.xlsx", {"Hoja1": [["CURP", "Nombre"], [VALID[0], "A"]]})
        path = Path(tmp) / "bad.xlsx"
        with zipfile.ZipFile(good) as src, zipfile.ZipFile(path, "w") as out:
            infos = src.infolist()
            target = infos[member % len(infos)].filename
            for info in infos:
                out.writestr(info.filename,
                             payload if info.filename == target else src.read(info))
        _check(path)
