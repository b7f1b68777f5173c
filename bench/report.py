"""Benchmark of reporte.xlsx against a bare openpyxl write-only dump of the same cells.

    .venv/bin/python bench/report.py [--rows 10000] [--repeat 3]
    .venv/bin/python bench/report.py --shots /tmp/report-shots [--rows 15]

The first form prints a table: the report's time, the bare dump's time (same sheets, same
values, no styles, links, chart or escaping) and their ratio (target ≤ 3×). The second
writes a realistic report and renders it to PNG through LibreOffice and pdftoppm, to look at.
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from openpyxl import Workbook  # noqa: E402

from worker.core.statuses import Status  # noqa: E402
from worker.report.model import ReportChange, ReportCheck, ReportData, ReportRow  # noqa: E402
from worker.report.workbook import write_report  # noqa: E402

_FIRST = ["Ana", "José Luis", "María Fernanda", "Juan", "Guadalupe", "Luis Ángel", "Sofía",
          "Miguel", "Ximena", "Carlos", "Daniela", "Jorge", "Valeria", "Ricardo", "Paola"]
_LAST = ["Hernández", "García", "Martínez", "López", "González", "Pérez", "Rodríguez",
         "Sánchez", "Ramírez", "Cruz", "Flores", "Gómez", "Morales", "Vázquez", "Jiménez"]
_AREAS = ["Operaciones", "Almacén", "Ventas", "Recursos Humanos", "Sistemas", "Finanzas"]
_IMSS = [Status.NOT_ENTITLED] * 10 + [Status.ENTITLED] * 6 + [
    Status.CURP_NOT_FOUND, Status.DATA_INCONSISTENT, Status.DAILY_LIMIT,
    Status.CAPTCHA_UNSOLVED, Status.PORTAL_UNAVAILABLE, Status.EMAIL_REJECTED]
_ISSSTE = [Status.NOT_AFFILIATED] * 14 + [Status.AFFILIATED] * 3 + [
    Status.CURP_NOT_FOUND, Status.PORTAL_UNAVAILABLE, Status.PORTAL_CHANGED, Status.ERROR]
_DETAIL = {
    Status.CURP_NOT_FOUND: "No se localizó información en RENAPO con la CURP capturada.",
    Status.DATA_INCONSISTENT: "El Instituto (IMSS) ha localizado inconsistencias en tus datos.",
    Status.DAILY_LIMIT: "Has agotado el número de consultas permitidas por día.",
    Status.CAPTCHA_UNSOLVED: "Captcha no resuelto tras 12 intentos.",
    Status.PORTAL_UNAVAILABLE: "HTTP 503 Servicio no disponible (5 intentos).",
    Status.PORTAL_CHANGED: "No apareció el botón «Buscar» (#btnBuscar).",
    Status.EMAIL_REJECTED: "El dominio del correo electrónico es inválido. Intente con otro",
    Status.ERROR: "TimeoutError: página sin respuesta tras 30 s.",
}


def _curp(rng: random.Random, i: int) -> str:
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    head = "".join(rng.choice(letters) for _ in range(4))
    born = date(1970, 1, 1) + timedelta(days=rng.randrange(12_000))
    tail = rng.choice("HM") + rng.choice(["DF", "JC", "NL", "PL", "MC"])
    return f"{head}{born:%y%m%d}{tail}{''.join(rng.choice(letters) for _ in range(3))}0{i % 10}"


def sample_data(out: Path, rows: int, *, seed: int = 7) -> ReportData:
    """A realistic batch of ``rows`` people with their PDFs and evidence under ``out``."""
    rng = random.Random(seed)
    now = datetime(2024, 5, 10, 18, 0, tzinfo=UTC)
    report_rows: list[ReportRow] = []
    seen: dict[str, int] = {}
    for i in range(rows):
        row_no = i + 2
        extra = {
            "Núm. empleado": f"{10_000 + i:06d}",
            "Nombre": f"{rng.choice(_FIRST)} {rng.choice(_LAST)} {rng.choice(_LAST)}",
            "Área": rng.choice(_AREAS),
        }
        if i % 97 == 5:  # an invalid CURP every so often
            bad = rng.choice(["PEGJ80121", "pegj801215hdfrrn0", "N/A"])
            reason = "Longitud incorrecta" if bad != "N/A" else "No es una CURP"
            checks = {p: ReportCheck(p, Status.INVALID_CURP, reason, None, None, None, None)
                      for p in ("imss", "issste")}
            report_rows.append(ReportRow(row_no, bad, None, extra, checks, reason))
            continue
        if i % 131 == 9 and report_rows and report_rows[-1].curp:  # a duplicate of the previous
            prev = report_rows[-1]
            report_rows.append(ReportRow(row_no, prev.value, prev.curp, extra, prev.checks,
                                         f"Duplicada de la fila {seen[prev.curp]}"))
            continue
        curp = _curp(rng, i)
        seen[curp] = row_no
        checks = {}
        for portal, pool in (("imss", _IMSS), ("issste", _ISSSTE)):
            status = rng.choice(pool)
            at = now - timedelta(minutes=rng.randrange(600))
            pdf = evidence = None
            if status.has_pdf:
                pdf = out / "constancias" / curp / f"{portal}.pdf"
                pdf.parent.mkdir(parents=True, exist_ok=True)
                pdf.write_bytes(b"%PDF-1.4\n")
            elif status.status_class.value != "done":
                evidence = out / "evidencia" / curp / portal
                evidence.mkdir(parents=True, exist_ok=True)
            valid = at.astimezone(ZoneInfo("America/Mexico_City")).date() if (
                portal == "imss" and status.has_pdf) else None
            checks[portal] = ReportCheck(portal, status, _DETAIL.get(status, ""), pdf, evidence,
                                         at, valid)
        report_rows.append(ReportRow(row_no, curp, curp, extra, checks))
    return ReportData(batch_id="20240510-1800-a1b2c3", source_name="altas_mayo_2024.xlsx",
                      generated_at=now, portals=["imss", "issste"],
                      columns=["Núm. empleado", "Nombre", "Área"], rows=report_rows)


def bare_dump(data: ReportData, path: Path) -> None:
    """The same cells as the report (Detalle, Errores), written without any care."""
    tz = ZoneInfo(data.timezone)
    wb = Workbook(write_only=True)
    ws = wb.create_sheet("Resumen")
    ws.append([data.batch_id, data.source_name])
    ws = wb.create_sheet("Detalle")
    ws.append(["Fila", "CURP", *data.columns, *(["x"] * 5 * len(data.portals)), "Obs"])
    for row in data.rows:
        cells: list[object] = [row.row, row.curp or row.value,
                               *(row.extra.get(c) for c in data.columns)]
        for portal in data.portals:
            c = row.checks[portal]
            at = c.checked_at.astimezone(tz).replace(tzinfo=None) if c.checked_at else None
            cells += [c.status.label, "Ver PDF" if c.pdf_path else None,
                      "Ver evidencia" if c.evidence_path else None, at, c.valid_until]
        cells.append(row.observation)
        ws.append(cells)
    ws = wb.create_sheet("Errores")
    for row in data.rows:
        for portal in data.portals:
            c = row.checks[portal]
            if c.status.status_class.value != "done":
                ws.append([row.row, row.curp or row.value, row.extra.get("Nombre"), portal,
                           c.status.label, c.detail, c.status.action, "Ver evidencia",
                           c.checked_at.replace(tzinfo=None) if c.checked_at else None,
                           row.observation])
    wb.save(path)


def _timed(fn, *args) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process): CPU time is steadier on a shared machine."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn(*args)
    return time.perf_counter() - wall, time.process_time() - cpu


def bench(rows: int, repeat: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        data = sample_data(out, rows)
        report: list[tuple[float, float]] = []
        bare: list[tuple[float, float]] = []
        for _ in range(repeat):  # interleaved, so load from other processes hits both alike
            report.append(_timed(write_report, data, out / "reporte.xlsx"))
            bare.append(_timed(bare_dump, data, out / "bare.xlsx"))
        size_r = (out / "reporte.xlsx").stat().st_size
        size_b = (out / "bare.xlsx").stat().st_size
    print(f"{'what':<28}{'rows':>7}{'wall min':>10}{'wall med':>10}{'cpu min':>10}"
          f"{'cpu med':>10}{'KiB':>7}")
    for name, runs, size in (("write_report (reporte.xlsx)", report, size_r),
                             ("bare write-only dump", bare, size_b)):
        walls, cpus = [w for w, _ in runs], [c for _, c in runs]
        print(f"{name:<28}{rows:>7}{min(walls):>10.2f}{statistics.median(walls):>10.2f}"
              f"{min(cpus):>10.2f}{statistics.median(cpus):>10.2f}{size // 1024:>7}")
    ratio = {
        "wall min": min(w for w, _ in report) / min(w for w, _ in bare),
        "wall median": statistics.median(w for w, _ in report)
        / statistics.median(w for w, _ in bare),
        "cpu min": min(c for _, c in report) / min(c for _, c in bare),
        "cpu median": statistics.median(c for _, c in report)
        / statistics.median(c for _, c in bare),
    }
    print("ratio report / bare: " + ", ".join(f"{k} {v:.2f}x" for k, v in ratio.items())
          + " (target <= 3x)")


def shots(folder: Path, rows: int) -> None:
    """Write a realistic report and render every sheet to PNG (LibreOffice → PDF → pdftoppm)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / "salida"
    data = sample_data(out, rows, seed=3)
    # As a nightly re-check report, so the Cambios sheet is rendered too.
    people = [r for r in data.rows if r.curp][:3]
    after = datetime(2024, 5, 11, 8, 0, tzinfo=UTC)
    changes = [
        ReportChange(people[0].curp or "", "imss", Status.ENTITLED, Status.NOT_ENTITLED,
                     data.generated_at, after, people[0].row, people[0].extra["Nombre"]),
        ReportChange(people[1].curp or "", "issste", Status.PORTAL_UNAVAILABLE,
                     Status.NOT_AFFILIATED, data.generated_at, after, people[1].row,
                     people[1].extra["Nombre"]),
        ReportChange(people[2].curp or "", "imss", None, Status.DAILY_LIMIT, None, after,
                     people[2].row, people[2].extra["Nombre"]),
    ]
    path = write_report(replace(data, changes=changes), out / "reporte.xlsx")
    profile = Path(tempfile.mkdtemp(prefix="lo-profile-"))
    subprocess.run(["soffice", f"-env:UserInstallation={profile.as_uri()}", "--headless",
                    "--convert-to", "pdf", "--outdir", str(folder), str(path)], check=True,
                   capture_output=True, timeout=180)
    for old in folder.glob("reporte-*.png"):
        old.unlink()
    subprocess.run(["pdftoppm", "-png", "-r", "60", str(folder / "reporte.pdf"),
                    str(folder / "reporte")], check=True, timeout=120)
    for png in sorted(folder.glob("reporte-*.png")):
        print(png)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--shots", type=Path, default=None,
                        help="render a sample report to PNG in this folder instead")
    args = parser.parse_args()
    if args.shots:
        shots(args.shots, args.rows or 15)
    else:
        bench(args.rows or 10_000, args.repeat)


if __name__ == "__main__":
    main()
