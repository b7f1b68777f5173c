"""``constancias purge --older-than DAYS``: personal data has a retention period (LFPDPPP).

Batches older than the cutoff lose the files constancias recorded for them (PDFs, evidence,
input copy, report: ``worker.storage.files``; whatever else lies in their folder stays) and their
personal fields in storage (CURP cell, other columns, PDF facts, details); checks keep
portal, status and dates under a pseudonym, so anonymous counts survive. People not seen since
the cutoff are forgotten. Files a batch recorded outside its folder (a report written with
``--out``, a PDF or evidence path elsewhere) go too.

Under ``DATA_DIR``, what is not a batch but holds personal data is aged by its modification
time: uploads the web page kept but never processed (``uploads/<token>/``), the web page's
temporary reports and zips (``tmp/``), and messages of the Maildir mailboxes (the configured
``maildir://`` one and the sandbox's), which carry constancias. An IMAP mailbox is the mail
server's to expire (SECURITY.md).
"""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import unquote, urlsplit

import structlog

from worker.core.settings import Settings
from worker.engine.notify import forget_purged
from worker.storage.audit import purge_before
from worker.storage.repository import PURGED, Storage, pseudonym, utcnow

__all__ = ["purge", "PURGED", "pseudonym"]

log = structlog.get_logger("constancias.purge")


def purge(settings: Settings, storage: Storage, older_than_days: float) -> dict[str, int]:
    """Purge everything older than the cutoff; returns what was removed (counts only)."""
    cutoff = utcnow() - timedelta(days=older_than_days)
    counts = {**storage.purge_batches(cutoff), "audit": 0}
    counts["files"] += _purge_data_dir(settings, cutoff)
    # The record of change e-mails sent about purged batches keeps only a pseudonym too.
    forget_purged(storage)
    # The audit trail names people too: it is kept as long as the data it speaks of.
    counts["audit"] = purge_before(storage, cutoff)
    log.info("purged", **counts, older_than_days=older_than_days)
    return counts


def _remove(path: str | Path | None) -> int:
    """Delete a file or folder a batch recorded (it may already be gone); how many files."""
    if not path:
        return 0
    target = Path(path)
    if target.is_dir() and not target.is_symlink():
        n = sum(1 for p in target.rglob("*") if p.is_file())
        shutil.rmtree(target, ignore_errors=True)
        return n
    try:
        target.unlink()
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        return 0
    return 1


def _newest_mtime(path: Path) -> float:
    """A folder is as recent as the newest thing in it."""
    times = [path.lstat().st_mtime]
    if path.is_dir() and not path.is_symlink():
        times += [p.lstat().st_mtime for p in path.rglob("*")]
    return max(times)


def _maildirs(settings: Settings) -> list[Path]:
    """The Maildir mailboxes whose messages are ours to age: the configured one (when it is a
    ``maildir://``) and the sandbox's under ``DATA_DIR``."""
    folders = [settings.data_dir / "sandbox-mail"]
    parts = urlsplit(settings.effective_mailbox_url)
    if parts.scheme == "maildir":
        folders.append(Path(unquote(parts.path)))
    return folders


def _purge_data_dir(settings: Settings, cutoff: datetime) -> int:
    """Uploads, temporary files and Maildir messages under ``DATA_DIR`` older than the cutoff;
    how many files were removed."""
    limit = cutoff.timestamp()
    removed = 0
    # One entry per upload (a token folder) or temporary file: all of it, or none of it.
    for parent in (settings.data_dir / "uploads", settings.data_dir / "tmp"):
        if parent.is_dir():
            for entry in parent.iterdir():
                if _newest_mtime(entry) < limit:
                    removed += _remove(entry)
    # Maildir messages never change once delivered: each file is one message.
    for maildir in _maildirs(settings):
        for folder in (maildir, *maildir.glob(".*")):
            for sub in ("new", "cur", "tmp"):
                box = folder / sub
                if box.is_dir():
                    for msg in box.iterdir():
                        if msg.is_file() and msg.lstat().st_mtime < limit:
                            removed += _remove(msg)
    return removed
