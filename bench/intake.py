"""Benchmark: ``read_sheet`` on a 100 000-row .xlsx vs a bare openpyxl read-only pass.

Run ``.venv/bin/python bench/intake.py [ROWS]``. Builds the sheet in a temporary folder,
times (best of 3) a plain openpyxl read-only iteration over every cell value and our full
intake (zip checks, pre-scan, header search, validation, duplicates), and prints both with
their ratio (target <= 2x) and the process's peak memory.
"""

from __future__ import annotations

import datetime as dt
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from openpyxl import Workbook, load_workbook  # noqa: E402
from stdnum.mx import curp as stdnum_curp  # noqa: E402

from worker.core.settings import load_settings  # noqa: E402
from worker.intake.read import read_sheet  # noqa: E402

LETTERS = "BCDFGHJKLMNPQRSTVWXYZ"
STATES = ["DF", "JC", "NL", "PL", "GT", "VZ", "OC", "YN", "BC", "CH"]


def synthetic_curp(rng: random.Random) -> str:
    born = dt.date(1960, 1, 1) + dt.timedelta(days=rng.randrange(40 * 365))
    first17 = (rng.choice("BCDFGLMNPRST") + rng.choice("AEIOU") + rng.choice(LETTERS)
               + rng.choice(LETTERS) + born.strftime("%y%m%d") + rng.choice("HM")
               + rng.choice(STATES) + "".join(rng.choice(LETTERS) for _ in range(3))
               + ("0" if born.year < 2000 else "A"))
    return first17 + stdnum_curp.calc_check_digit(first17)


def build(path: Path, rows: int) -> None:
    rng = random.Random(2025)
    wb = Workbook(write_only=True)
    ws = wb.create_sheet("Altas")
    ws.append(["Altas de personal"])
    ws.append([])
    ws.append(["No. empleado", "Nombre", "CURP", "Puesto", "Fecha de ingreso"])
    jobs = ["Analista", "Chofer", "Vendedor", "Auxiliar", "Gerente", "Soporte"]
    for n in range(rows):
        value = synthetic_curp(rng)
        if n % 1000 == 7:
            value = value[:-1] + str((int(value[-1]) + 1) % 10)  # a typo now and then
        ws.append([10_000 + n, f"Persona {n:06d} Ficticia", value, rng.choice(jobs),
                   dt.datetime(2025, 1, 1) + dt.timedelta(days=n % 365)])
    wb.save(path)


def bare_openpyxl(path: Path) -> int:
    wb = load_workbook(path, read_only=True, data_only=True)
    count = 0
    for ws in wb.worksheets:
        for row in ws.iter_rows(values_only=True):
            for _value in row:
                count += 1
    wb.close()
    return count


def best_of(n: int, fn, *args) -> tuple[float, object]:
    times, result = [], None
    for _ in range(n):
        start = time.perf_counter()
        result = fn(*args)
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    settings = load_settings()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "altas.xlsx"
        build(path, rows)
        size = path.stat().st_size
        bare_s, cells = best_of(3, bare_openpyxl, path)
        ours_s, intake = best_of(3, read_sheet, path, settings)
    summary = intake.to_json()  # type: ignore[union-attr]
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"file: {rows} rows, {size / 1e6:.1f} MB; {cells} cells")
    print(f"{'pass':<34}{'seconds':>10}")
    print(f"{'openpyxl read-only, every cell':<34}{bare_s:>10.2f}")
    print(f"{'read_sheet (validate)':<34}{ours_s:>10.2f}")
    print(f"{'ratio':<34}{ours_s / bare_s:>9.2f}x   (target <= 2x)")
    print(f"{'peak memory (ru_maxrss)':<34}{peak_mb:>8.0f} MB")
    print(f"result: rows={summary['rows']} valid={summary['valid']} "
          f"invalid={len(summary['invalid'])} duplicates={len(summary['duplicates'])}")


if __name__ == "__main__":
    main()
