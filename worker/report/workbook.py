"""``reporte.xlsx``: the consolidated report HR opens (SPEC §6).

Sheets: **Resumen** (batch facts, counts per portal × status with a native bar chart, a
legend of statuses with what to do), **Detalle** (one row per input row, in input order),
**Errores** (every row someone must act on), **Cambios** (re-check reports only).

Safety, because the input sheet is untrusted and the report is opened in Excel and
LibreOffice:

* every text cell is written as an explicit string cell, never a formula; text that a
  spreadsheet would evaluate when edited (leading ``= + - @``, tab, CR/LF) also gets the
  ``quotePrefix`` cell style, so Excel and LibreOffice keep it text and show it unchanged;
* characters XML cannot carry are dropped; CR and literal ``_xHHHH_`` sequences are written
  with the OOXML escape (``_x000D_``, ``_x005F_``) so both applications show the original;
* strings are cut to Excel's 32,767-character cell limit (ending in "…");
* hyperlinks are relative paths to files that exist, built from our own file paths and
  percent-encoded (no scheme can appear); never a URL taken from input data.

The whole workbook is streamed in openpyxl's write-only mode: memory stays flat for large
batches and one code path serves every size. Write-only sheets need their layout (widths,
frozen panes) before the first row, so widths are measured in a first pass over the data.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from zoneinfo import ZoneInfo

from openpyxl import Workbook
from openpyxl.worksheet._write_only import WriteOnlyWorksheet

from worker.report.model import ReportData
from worker.report.summary import write_resumen
from worker.report.tables import write_cambios, write_detalle, write_errores

__all__ = ["write_report"]


def write_report(data: ReportData, path: Path, *, links_from: Path | None = None) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file in the same folder, then rename).

    Hyperlinks are relative to ``links_from`` (default ``path.parent``), so that folder can be
    zipped and moved; a report written elsewhere to be put at the top of that folder's zip
    passes the folder. Returns ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out_dir = Path(links_from) if links_from is not None else path.parent
    tz = ZoneInfo(data.timezone)
    # Input order is the source's own row order; sorted() is stable for equal numbers.
    rows = sorted(data.rows, key=lambda r: r.row)

    wb = Workbook(write_only=True)
    wb.properties.title = "Reporte de constancias"
    wb.properties.creator = "constancias"
    try:
        write_resumen(wb, data, out_dir, tz)
        write_detalle(wb, data, rows, out_dir, tz)
        write_errores(wb, data, rows, out_dir, tz)
        if data.changes is not None:
            write_cambios(wb, data, data.changes, out_dir, tz)
    except BaseException:
        _discard(wb)
        raise

    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".xlsx.tmp",
                                    dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            wb.save(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _discard(wb: Workbook) -> None:
    """Close and delete the streamed sheets of a report that failed half-way.

    Left alone, each write-only sheet keeps a temporary file until the process exits and
    complains when garbage-collected; a long-lived worker should not collect them.
    """
    for ws in wb.worksheets:
        try:
            writer = getattr(ws, "_writer", None)
            if isinstance(ws, WriteOnlyWorksheet) and writer is not None and not ws.closed:
                ws.close()
                writer.cleanup()
        except Exception:  # noqa: BLE001, S110 - best effort while another error propagates
            pass
