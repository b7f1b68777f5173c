"""The files constancias wrote for a batch, and nothing else.

A batch's folder may be one HR chose (``run --out DIR``), so it can hold files that are not
ours. Every file constancias writes for a batch is recorded in storage: the input copy
(``entrada.<ext>``), the report (``report_path``, or ``reporte.xlsx`` in the batch folder), each
check's PDF (``pdf_path``) and evidence folder (``evidence_path``, written whole by the flow).
Purge, the nightly retention, the web page's file routes, its folder listings and the zip all
take their files from :func:`batch_files`; whatever else lies in the folder is never touched.

``run --out DIR`` with a DIR that already holds files writes into a subfolder of its own
(:func:`own_out_dir`), so that HR's files never sit among ours.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["batch_files", "input_copy_name", "own_out_dir", "remove_batch_files",
           "REPORT_NAME"]

REPORT_NAME = "reporte.xlsx"


def input_copy_name(source: str | Path) -> str:
    """The name of the input copy kept in the batch folder."""
    return f"entrada{Path(source).suffix.lower()}"


def own_out_dir(requested: Path, batch_id: str) -> Path:
    """Where a batch asked to write into ``requested`` writes: the folder itself when it is
    new or empty, else a subfolder named after the batch (never among files that are not ours)."""
    if requested.is_dir() and any(requested.iterdir()):
        return requested / f"constancias-{batch_id}"
    return requested


def _regular(path: Path) -> bool:
    """A real file, not a symlink: a link planted in place of one of ours is not ours."""
    try:
        return path.is_file() and not path.is_symlink()
    except OSError:
        return False


def _evidence_files(folder: Path) -> Iterable[Path]:
    if folder.is_symlink() or not folder.is_dir():
        if _regular(folder):
            yield folder
        return
    for root, dirs, files in os.walk(folder, followlinks=False):
        dirs[:] = [d for d in dirs if not (Path(root) / d).is_symlink()]
        for name in files:
            path = Path(root) / name
            if _regular(path):
                yield path


def batch_files(batch: Any, checks: Iterable[Any]) -> list[Path]:
    """Absolute paths of the existing files constancias recorded for this batch (sorted)."""
    out = Path(os.path.abspath(batch.out_dir))
    candidates: list[Path] = []
    if batch.source_name and Path(batch.source_name).suffix:
        candidates.append(out / input_copy_name(batch.source_name))
    candidates.append(out / REPORT_NAME)
    if batch.report_path:
        candidates.append(Path(batch.report_path))
    for check in checks:
        if check.pdf_path:
            candidates.append(Path(check.pdf_path))
        if check.evidence_path:
            candidates.extend(_evidence_files(Path(check.evidence_path)))
    found = {Path(os.path.abspath(p)) for p in candidates if _regular(Path(p))}
    return sorted(found)


def remove_batch_files(batch: Any, checks: Iterable[Any]) -> int:
    """Delete the batch's recorded files, then the folders they leave empty (up to and
    including the batch folder); how many files went. Nothing else is touched."""
    files = batch_files(batch, checks)
    out = Path(os.path.abspath(batch.out_dir))
    removed = 0
    folders: set[Path] = set()
    for path in files:
        try:
            path.unlink()
        except OSError:
            continue
        removed += 1
        parent = path.parent
        while parent.is_relative_to(out):
            folders.add(parent)
            if parent == out:
                break
            parent = parent.parent
    # Deepest first, and only the empty ones: a folder still holding someone's file stays.
    for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
        try:
            folder.rmdir()
        except OSError:
            pass
    return removed
