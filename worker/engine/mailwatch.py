"""The mailbox watcher: the IMSS emails of checks waiting in storage (worker/storage/waiting.py).

One per worker process group (the main process of ``constancias worker``, beside the sweeper)
and one in an embedded run (a thread of the dispatcher). Each round it reads which addresses
wait for mail, looks at the messages to them in the inbox and the junk folder (IMSS mail
sometimes lands in spam), claims each one it needs in storage — once: of two watchers on one
mailbox, on any machines, exactly one takes it (``mail_claims``) — puts it away in the
"Claimed" folder, and schedules the check's next step (``schedule(check id, attempts)``: a
Celery task, or the embedded dispatcher). It also ends the waits that ran out.

* Maildir (``maildir:///…``): polled every ``mailbox_poll_s`` (a directory listing; headers
  are read once per file). Folders: the Maildir itself and ``.Junk``/``.Spam`` when present.
* IMAP (``imap://``, ``imaps://``): IDLE on the inbox when the server offers it (a new
  message ends the wait at once), polling otherwise; the junk folder is the one LIST marks
  ``\\Junk`` (RFC 6154 SPECIAL-USE), else one named Junk or Spam.
* ``CONSTANCIAS_MAILBOX_FOLDERS`` replaces the folder list.

A watcher holds nothing another would need: killed at any point, the messages it had not
claimed stay in the mailbox, what it claimed is in storage (its step due, which the sweeper
sends again if its task was lost), and a message claimed but not yet put away is put away by
whichever watcher sees it next.
"""

from __future__ import annotations

import contextlib
import imaplib
import os
import re
import select
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import structlog

from flows import registry
from flows.mailbox import (
    CLAIMED_FOLDER,
    CLOCK_SLACK_S,
    TRANSIENT,
    ImapMailbox,
    ImapNo,
    MaildirMailbox,
    Summary,
    fetch_items,
    imap_date,
    imap_quote,
    open_mailbox,
    parse_message,
    read_head,
)
from worker.core.logs import mask_email, mask_text
from worker.core.settings import Settings
from worker.storage.models import utcnow
from worker.storage.repository import Storage
from worker.storage.waiting import Waits, Watched

__all__ = ["MailWatcher", "open_source", "watch_once"]

log = structlog.get_logger("constancias.mailwatch")

#: Folder names taken for the junk folder when the server marks none ``\Junk``.
JUNK_NAMES = ("Junk", "Spam", "Junk E-mail", "Correo no deseado")
#: A message claimed longer ago than this and still in the inbox: its claimer died before it
#: put it away; whichever watcher sees it does. The watchers of a run take the lease instead
#: (``LEASE_S``, 60 s by default): a claimer that lived is done with its message well
#: within the time after which the sweeper gives a silent check to another worker.
ARCHIVE_GRACE_S = 60.0
#: How far before the oldest wait the watcher looks for mail to put away (a day).
STALE_S = 86400.0
#: Longest IMAP IDLE before the watcher looks at storage again (new waits, waits that end).
IDLE_MAX_S = 5.0


class _Message:
    """One message of the mailbox as the watcher sees it: where it is, its header summary."""

    __slots__ = ("ref", "summary", "key")

    def __init__(self, ref: Any, summary: Summary, key: str) -> None:
        self.ref, self.summary, self.key = ref, summary, key


# --- sources -----------------------------------------------------------------------------------
class MaildirSource:
    """A Maildir and its junk folder, listed without claiming; claimed mail is renamed into
    ``.Claimed`` (a rename is atomic: one of two watchers moves a file)."""

    def __init__(self, path: Path, folders: list[str] | None, poll_s: float) -> None:
        self.box = MaildirMailbox(path)  # creates the folders, .Claimed included
        self.root = self.box.path
        self.poll_s = poll_s
        if folders:
            self.folders = [self.root if f in ("", ".", "INBOX") else self.root / f
                            for f in folders]
        else:
            self.folders = [self.root, *(self.root / f".{name}" for name in JUNK_NAMES
                                         if (self.root / f".{name}").is_dir())]
        self._seen: dict[str, Summary] = {}

    def scan(self, since: float) -> list[_Message]:
        found: list[_Message] = []
        listed: set[str] = set()
        for folder in self.folders:
            for sub in ("new", "cur"):
                try:
                    entries = list(os.scandir(folder / sub))
                except FileNotFoundError:
                    continue
                for entry in entries:
                    if entry.name.startswith(".") or not entry.is_file():
                        continue
                    unique = entry.name.split(":", 1)[0]
                    listed.add(unique)
                    summary = self._seen.get(unique)
                    if summary is None:
                        try:
                            summary = Summary.from_head(read_head(entry.path),
                                                         entry.stat().st_mtime)
                        except FileNotFoundError:
                            continue
                        self._seen[unique] = summary
                    if summary.arrived >= since:
                        found.append(_Message(Path(entry.path), summary,
                                              summary.message_id or f"maildir:{unique}"))
        for gone in self._seen.keys() - listed:
            del self._seen[gone]
        return found

    def read(self, ref: Path) -> bytes | None:
        try:
            return ref.read_bytes()
        except FileNotFoundError:
            return None

    def archive(self, ref: Path) -> None:
        unique = ref.name.split(":", 1)[0]
        with contextlib.suppress(FileNotFoundError):
            os.rename(ref, self.box.claimed / "cur" / f"{unique}:2,S")

    def wait(self, timeout_s: float) -> None:
        time.sleep(min(timeout_s, self.poll_s))

    def close(self) -> None:
        pass


class ImapSource:
    """An IMAP account's inbox and junk folder over one connection (``ImapMailbox``'s):
    listed without claiming, claimed mail moved to "Claimed"; IDLE between rounds."""

    def __init__(self, box: ImapMailbox, folders: list[str] | None, poll_s: float) -> None:
        self.box = box
        self.poll_s = poll_s
        self._configured = folders
        self.folders: list[str] = []
        self._seen: dict[str, tuple[bytes | None, dict[int, Summary]]] = {}

    def _conn(self) -> imaplib.IMAP4:
        conn = self.box._connect()
        if not self.folders:
            self.folders = self._configured or [self.box.folder, *self._junk(conn)]
            log.info("mailwatch_folders", folders=self.folders)
        return conn

    def _junk(self, conn: imaplib.IMAP4) -> list[str]:
        if "SPECIAL-USE" in self.box._caps:
            # RFC 6154: a plain LIST may leave the attributes out; this asks for them.
            typ, data = conn._simple_command("LIST", '""', '"*"', "RETURN", "(SPECIAL-USE)")
            typ, data = conn._untagged_response(typ, data, "LIST")
        else:
            typ, data = conn.list()
        if typ != "OK":
            return []
        marked: list[str] = []
        named: list[str] = []
        for line in data:
            if not isinstance(line, bytes):
                continue
            found = re.match(rb'\((?P<flags>[^)]*)\) (?:"[^"]*"|NIL) (?P<name>.+)$', line)
            if not found:
                continue
            name = found.group("name").decode(errors="replace").strip().strip('"')
            if "\\junk" in found.group("flags").decode(errors="replace").lower():
                marked.append(name)
            elif name.split(".")[-1].split("/")[-1] in JUNK_NAMES:
                named.append(name)
        return [n for n in (marked or named) if n not in (self.box.folder, CLAIMED_FOLDER)]

    def scan(self, since: float) -> list[_Message]:
        found: list[_Message] = []
        with self.box._lock:
            try:
                conn = self._conn()
                for folder in self.folders:
                    found += self._scan_folder(conn, folder, since)
            except (*TRANSIENT, ImapNo) as exc:
                self.box._drop(exc)
                self._seen.clear()
        return found

    def _scan_folder(self, conn: imaplib.IMAP4, folder: str, since: float) -> list[_Message]:
        typ, _ = conn.select(imap_quote(folder))
        if typ != "OK":
            return []  # a configured folder that does not exist (yet)
        found = conn.untagged_responses.get("UIDVALIDITY")
        validity = found[0] if found and isinstance(found[0], bytes) else None
        cached_validity, cache = self._seen.get(folder, (None, {}))
        if validity != cached_validity:
            cache = {}
        typ, data = self.box._command(conn, "SEARCH", "UNDELETED", "SINCE",
                                      imap_date(since - 86400))
        if typ != "OK":
            raise ImapNo(f"SEARCH {folder}: {data!r}")
        uids = [int(u) for u in b" ".join(d for d in data if d).split()]
        new = [u for u in uids if u not in cache]
        if new:
            self.box._seen = {}
            self.box._summarise(conn, new)
            cache.update(self.box._seen)
            self.box._seen = {}
        cache = {u: cache[u] for u in uids if u in cache}
        self._seen[folder] = (validity, cache)
        v = validity.decode() if isinstance(validity, bytes) else str(validity)
        return [_Message((folder, uid), summary,
                         summary.message_id or f"imap:{folder}:{v}:{uid}")
                for uid, summary in cache.items() if summary.arrived >= since]

    def read(self, ref: tuple[str, int]) -> bytes | None:
        folder, uid = ref
        with self.box._lock:
            try:
                conn = self._conn()
                self.box._select(conn, folder)
                typ, data = self.box._command(conn, "FETCH", str(uid), "(BODY.PEEK[])")
                if typ != "OK":
                    return None
                return next((lit for got, _, lit in fetch_items(data) if got == uid and lit),
                            None)
            except (*TRANSIENT, ImapNo) as exc:
                self.box._drop(exc)
                return None

    def archive(self, ref: tuple[str, int]) -> None:
        folder, uid = ref
        with self.box._lock:
            try:
                conn = self._conn()
                self.box._select(conn, folder)
                self.box._move(conn, str(uid))
            except (*TRANSIENT, ImapNo) as exc:
                self.box._drop(exc)  # put away next round (its claim is stored)

    def wait(self, timeout_s: float) -> None:
        """IDLE on the inbox until a message comes or ``timeout_s`` (at most ``IDLE_MAX_S``);
        a plain sleep of ``poll_s`` when the server has no IDLE."""
        with self.box._lock:
            try:
                conn = self._conn()
                if "IDLE" not in self.box._caps:
                    raise _NoIdle
                self.box._select(conn, self.box.folder)
                _idle(conn, min(timeout_s, IDLE_MAX_S))
                return
            except _NoIdle:
                pass
            except (*TRANSIENT, ImapNo) as exc:
                self.box._drop(exc)
        time.sleep(min(timeout_s, max(self.poll_s, 1.0)))

    def close(self) -> None:
        self.box.close()


class _NoIdle(Exception):
    pass


def _idle(conn: imaplib.IMAP4, timeout_s: float) -> bool:
    """RFC 2177 IDLE on the selected folder: True when the server announced a change (a new
    message: ``EXISTS``) before ``timeout_s``. imaplib (Python 3.11) has no IDLE: the command
    is written and read by hand, the wait is a ``select`` on the socket."""
    tag = conn._new_tag()
    conn.send(tag + b" IDLE\r\n")
    line = conn.readline()
    while line.startswith(b"* "):
        line = conn.readline()  # untagged data sent before the continuation
    if not line.startswith(b"+"):
        raise ImapNo(f"IDLE: {line[:100]!r}")
    changed = False
    deadline = time.monotonic() + timeout_s
    sock = conn.socket()
    while not changed and (left := deadline - time.monotonic()) > 0:
        readable, _, _ = select.select([sock], [], [], left)
        if not readable:
            break
        line = conn.readline()
        if not line:
            raise imaplib.IMAP4.abort("IDLE: connection closed")
        changed = b"EXISTS" in line or b"RECENT" in line
    conn.send(b"DONE\r\n")
    while True:
        line = conn.readline()
        if not line:
            raise imaplib.IMAP4.abort("IDLE: connection closed")
        if line.startswith(tag):
            return changed


def open_source(settings: Settings) -> MaildirSource | ImapSource:
    """The watcher's view of ``CONSTANCIAS_MAILBOX_URL`` (a malformed URL: ``ConfigError``)."""
    folders = [f.strip() for f in (settings.mailbox_folders or "").split(",") if f.strip()]
    box = open_mailbox(settings.effective_mailbox_url, poll_s=settings.mailbox_poll_s)
    if isinstance(box, MaildirMailbox):
        return MaildirSource(box.path, folders or None, settings.mailbox_poll_s)
    assert isinstance(box, ImapMailbox)
    return ImapSource(box, folders or None, settings.mailbox_poll_s)


# --- one round ---------------------------------------------------------------------------------
def watch_once(waits: Waits, source: Any, schedule: Callable[[int, int], Any],
               fresh: list[str] | None = None, *,
               archive_grace_s: float = ARCHIVE_GRACE_S) -> list[int]:
    """End the waits that ran out, then claim the mail the waiting checks need; their next
    steps scheduled. The ids scheduled.

    ``fresh`` gets the keys of the messages left for a check still sending its form (stage
    ``sending``): its email 1, come before the portal's answer was stored (instant mail). The
    wait becomes ``mail1`` a moment later and no new message will end an IDLE for it: the next
    round should come soon, not after ``IDLE_MAX_S``. ``archive_grace_s``: how long a claimed
    message is left to its claimer (``ARCHIVE_GRACE_S``)."""
    scheduled: list[int] = []
    for check_id, attempts in waits.expire():
        log.warning("mail_wait_expired", check_id=check_id)
        schedule(check_id, attempts)
        scheduled.append(check_id)
    watched = waits.watched()
    if not watched:
        return scheduled
    by_address: dict[str, list[Watched]] = {}
    for row in watched:
        by_address.setdefault(row.address, []).append(row)
    # A day further back: mail to a watched address from before its waits (an attempt whose
    # step 1 died, sent again) is put away too; its link worked on its day only.
    earliest = min(row.sent_at.timestamp() for row in watched) - CLOCK_SLACK_S - STALE_S
    for message in sorted(source.scan(earliest), key=lambda m: m.summary.arrived):
        mine = [r for a in message.summary.recipients for r in by_address.get(a, ())]
        if not mine:
            continue
        # (none of ``rows``: the message came before every wait for its address, an email of
        # an attempt whose step 1 died; nobody needs it)
        rows = [r for r in mine
                if message.summary.arrived >= r.sent_at.timestamp() - CLOCK_SLACK_S]
        done = _take(waits, source, message, sorted(rows, key=lambda r: r.sent_at,
                                                    reverse=True), mine[-1].check_id,
                     archive_grace_s)
        if done is not None:
            schedule(done.check_id, done.attempts)
            scheduled.append(done.check_id)
        elif fresh is not None and any(row.stage == "sending" for row in rows):
            fresh.append(message.key)
    return scheduled


def _take(waits: Waits, source: Any, message: _Message, rows: list[Watched],
          owner: int, archive_grace_s: float) -> Watched | None:
    """Claim ``message`` for the latest of ``rows`` (waits for its address sent before it
    arrived) whose step needs it — email 1 (its link) for a check in ``mail1``, email 2 (its
    PDF) for one whose link was opened — and put it away; a message none needs is put away
    too (claimed for ``owner``, a check of its address). The row whose step is now due, if
    any."""
    claimed = waits.claimed_at(message.key)
    if claimed is not None:
        # Its claimer puts it away; one that has not after a while stopped before it could.
        # (Only one watcher moves a message: two IMAP sessions moving one both make a copy.)
        if utcnow() - claimed > timedelta(seconds=archive_grace_s):
            source.archive(message.ref)
        return None
    raw = source.read(message.ref)
    if raw is None:
        return None  # another watcher put it away meanwhile
    mail = parse_message(raw, fallback_id=message.key)
    for row in rows:
        steps = registry.portal(row.portal).mail_steps
        if steps is None:
            continue
        link, pdf = steps.link_in(mail), steps.pdf_in(mail)
        if row.stage == "mail1" and link:
            taken, what = waits.claim_link(row.check_id, message.key, link), "link"
        elif row.stage in ("link", "mail2") and pdf:
            # (a check in ``link`` takes it only once its step 2 has opened the link)
            taken, what = waits.claim_pdf(row.check_id, message.key, pdf), "pdf"
        else:
            continue
        if taken:
            source.archive(message.ref)
            log.info("mail_claimed_for_check", check_id=row.check_id, what=what,
                     to=mask_email(row.address))
            return row
        return None  # another watcher won it (and puts it away), or it is for later
    if any(row.stage == "sending" for row in rows):
        # A check is sending its form to this address (step 1 stores its row before): this
        # may be its email 1, come before the portal's answer was stored. Left for it.
        return None
    # A late email of an earlier attempt, or the second email of a check whose page gave the
    # PDF: nobody needs it; it must not pile up in the mailbox.
    if waits.claim_other(message.key, rows[0].check_id if rows else owner):
        source.archive(message.ref)
    return None


# --- the thread --------------------------------------------------------------------------------
class MailWatcher:
    """A daemon thread running ``watch_once`` until stopped; waits between rounds on the
    mailbox (IMAP IDLE) or polls."""

    def __init__(self, settings: Settings, schedule: Callable[[int, int], Any],
                 storage: Storage | None = None) -> None:
        self.settings = settings
        self.schedule = schedule
        self.storage = storage
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="constancias-mailwatch",
                                        daemon=True)
        self.rounds = 0

    def start(self) -> MailWatcher:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout_s)

    def __enter__(self) -> MailWatcher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        storage = self.storage or Storage(self.settings.effective_database_url)
        waits = Waits(storage)
        source: Any = None
        idle_s = max(self.settings.mailbox_poll_s, 0.1)
        while not self._stop.is_set():
            try:
                if source is None:
                    source = open_source(self.settings)
                fresh: list[str] = []
                watch_once(waits, source, self.schedule, fresh,
                           archive_grace_s=self.settings.lease_s)
                self.rounds += 1
                if waits.watched():
                    # IDLE wakes on new mail only: mail that came before its wait was stored
                    # is looked at again after a poll interval, not at the end of an IDLE.
                    long = isinstance(source, ImapSource) and not fresh
                    source.wait(IDLE_MAX_S if long else idle_s)
                else:
                    self._stop.wait(max(idle_s, 0.5))
            except Exception as exc:  # noqa: BLE001 - the mailbox or database down: next round
                log.warning("mailwatch_failed", error=mask_text(str(exc))[:300],
                            error_type=type(exc).__name__)
                self._stop.wait(5.0)
        if source is not None:
            with contextlib.suppress(Exception):
                source.close()
