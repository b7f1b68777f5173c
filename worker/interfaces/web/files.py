"""Files the web page hands out: only what constancias recorded for a batch, inside its folder.

Uploads get a random folder and a sanitised name; downloads are resolved (symlinks and ``..``
included) and refused unless they stay inside the batch folder.
"""

from __future__ import annotations

import os
import re
import secrets
import tempfile
import unicodedata
import zipfile
from pathlib import Path

__all__ = ["inside", "upload_dir", "new_upload", "safe_filename", "UPLOAD_TOKEN_RE",
           "build_zip", "zip_members"]

UPLOAD_TOKEN_RE = re.compile(r"[0-9a-f]{24}")
_ALLOWED_SUFFIXES = (".xlsx", ".xlsm", ".xls", ".csv", ".txt", ".tsv")


def inside(root: str | Path, relative: str) -> Path | None:
    """``root/relative`` if it exists and resolves inside ``root``, else ``None``.

    Absolute paths, ``..`` segments, backslashes and symlinks that leave the folder all end
    here as ``None`` (the caller answers 404: nothing says whether the file exists)."""
    if not relative or "\x00" in relative or "\\" in relative:
        return None
    base = Path(root).resolve()
    try:
        target = (base / relative).resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if target == base or not target.is_relative_to(base):
        return None
    return target


def safe_filename(name: str) -> str:
    """A name that can live on any disk and still reads as HR wrote it: no folders, no
    control or shell-special characters, no leading dot; letters with accents are kept."""
    name = unicodedata.normalize("NFC", Path(name.replace("\\", "/")).name)
    stem, dot, suffix = name.rpartition(".")
    if not dot:
        stem, suffix = name, ""
    stem = re.sub(r"[^\w .()-]+", "_", stem).strip(" ._")[:100] or "hoja"
    suffix = re.sub(r"[^A-Za-z0-9]+", "", suffix)[:8].lower()
    return f"{stem}.{suffix}" if suffix else stem


def upload_dir(data_dir: Path) -> Path:
    path = data_dir / "uploads"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def new_upload(data_dir: Path, original_name: str) -> tuple[str, Path]:
    """A fresh random folder for one upload: (token, path where the sheet goes)."""
    token = secrets.token_hex(12)
    folder = upload_dir(data_dir) / token
    folder.mkdir(mode=0o700)
    name = safe_filename(original_name)
    if not name.lower().endswith(_ALLOWED_SUFFIXES):
        # Keep the bytes; the reader sniffs the content, not the name.
        name = f"{name}.dat"
    return token, folder / name


def zip_members(out_dir: Path, report: Path | None,
                files: list[Path]) -> list[tuple[Path, str]]:
    """(file, name in the zip) for the report and the batch's recorded files (PDFs and the
    evidence the report links to), keeping the folder layout so the report's relative links
    still work once unzipped. Files outside the batch folder cannot keep their link: left out."""
    base = Path(os.path.abspath(out_dir))
    members: list[tuple[Path, str]] = []
    names: set[str] = set()
    if report is not None and report.is_file():
        absolute = Path(os.path.abspath(report))
        name = (absolute.relative_to(base).as_posix() if absolute.is_relative_to(base)
                else report.name)
        members.append((report, name))
        names.add(name)
    for file in files:
        # Top-level files are the input copy (the report does not link it) and other copies
        # of the report: the zip carries the one made for it.
        if file.is_relative_to(base) and file.parent != base:
            name = file.relative_to(base).as_posix()
            if name not in names:
                members.append((file, name))
                names.add(name)
    return members


def build_zip(out_dir: Path, report: Path | None, files: list[Path], tmp_dir: Path) -> Path:
    """Write the zip to a temporary file under ``tmp_dir`` (deleted by the caller once sent)."""
    tmp_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, name = tempfile.mkstemp(prefix="lote-", suffix=".zip", dir=tmp_dir)
    path = Path(name)
    with open(fd, "wb") as fh, zipfile.ZipFile(fh, "w", zipfile.ZIP_DEFLATED) as zf:
        for file, arcname in zip_members(out_dir, report, files):
            # PDFs barely compress; storing them saves time for nothing lost.
            kind = zipfile.ZIP_STORED if arcname.endswith(".pdf") else zipfile.ZIP_DEFLATED
            zf.write(file, arcname, compress_type=kind)
    return path
