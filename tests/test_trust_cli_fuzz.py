"""`constancias validate` as HR runs it, on hostile bytes: the process ends with 0 or 2, never
a traceback, one Spanish line on stderr when it refuses, and `--json` output stays JSON.

Each example is a real subprocess, so the budget is small (about 15 examples); the in-process
fuzzing of the reader (tests/worker/intake/test_intake_fuzz.py) goes wide, this goes end to end.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openpyxl import Workbook

from tests.worker.sheets import VALID

CLI = [sys.executable, "-m", "worker.interfaces.cli", "validate"]
OLE2_MAGIC = bytes.fromhex("D0CF11E0A1B11AE1")  # what an .xls (BIFF8) file starts with


def _valid_xlsx() -> bytes:
    wb = Workbook()
    wb.active.append(["Nombre", "CURP"])
    for i, c in enumerate(VALID, 1):
        wb.active.append([f"Persona {i}", c])
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


SEEDS = {
    "xlsx": _valid_xlsx(),
    "csv": ("CURP;Nombre\r\n" + "".join(f"{c};Persona\r\n" for c in VALID)).encode("cp1252"),
    "xls": OLE2_MAGIC + bytes(504),
}


@st.composite
def hostile_bytes(draw: st.DrawFn) -> bytes:
    """Pure noise, or a real sheet (xlsx, csv, an OLE2 header) cut short and with bytes flipped:
    mutated files get past the first sniffing and reach the deeper parsers."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=4000))
    data = bytearray(SEEDS[draw(st.sampled_from(sorted(SEEDS)))])
    data = data[: draw(st.integers(0, len(data)))]
    for _ in range(draw(st.integers(0, 8))):
        if data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data) + draw(st.binary(max_size=200))


@settings(max_examples=15, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(data=hostile_bytes(), suffix=st.sampled_from([".xlsx", ".csv", ".xls", ".txt"]),
       as_json=st.booleans())
def test_validate_on_hostile_bytes_exits_cleanly(data: bytes, suffix: str, as_json: bool) -> None:
    """Exit 0 or 2, no traceback; on 2 exactly one stderr line; with --json and exit 0,
    stdout is one JSON object."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"hoja{suffix}"
        path.write_bytes(data)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONSTANCIAS_")}
        env["CONSTANCIAS_DATA_DIR"] = str(Path(tmp) / "data")
        proc = subprocess.run([*CLI, str(path), *(["--json"] if as_json else [])], env=env,
                              cwd=tmp, capture_output=True, timeout=60)
    stderr = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode in (0, 2), (proc.returncode, stderr[-2000:])
    assert "Traceback" not in stderr and b"Traceback" not in proc.stdout
    if proc.returncode == 2:
        assert len(stderr.strip().splitlines()) == 1, stderr
        assert stderr.startswith("constancias: ")
    elif as_json:
        result = json.loads(proc.stdout)
        assert {"rows", "valid", "invalid", "duplicates"} <= result.keys()
