"""Where the IMSS emails arrive: a Maildir folder or an IMAP account, read by polling.

``open_mailbox(settings.effective_mailbox_url, poll_s=settings.mailbox_poll_s)`` gives a
``Mailbox`` whose ``wait_for`` returns the first message for one address and subject that
arrived after the request was sent, and *claims* it: however many threads, processes or
machines wait at once, each message is handed to exactly one of them.

* ``maildir:///abs/path`` — the claim is an atomic ``rename`` of the message file into the
  ``.Claimed`` sub-folder (Maildir++, so an IMAP server shows it as the folder "Claimed"):
  exactly one ``rename`` of a file succeeds, the others find it gone.
* ``imap://user:pass@host:port/INBOX`` and ``imaps://…`` — every contender moves the message
  to the folder "Claimed" and the copy with the lowest UID wins (see ``ImapMailbox._claim``:
  IMAP's conditional STORE and MOVE are not atomic across sessions on real servers, but UIDs
  are unique and ascending). Plain ``imaplib`` is used rather than imap-tools because the
  claim needs the server's ``COPYUID`` response code (RFC 4315 UIDPLUS).
"""

from __future__ import annotations

import contextlib
import imaplib
import os
import re
import ssl
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesHeaderParser, BytesParser
from email.utils import getaddresses
from html.parser import HTMLParser
from pathlib import Path
from types import TracebackType
from typing import Any, cast
from urllib.parse import unquote, urlsplit

import structlog

from flows.errors import EmailNotReceived
from worker.core.errors import ConfigError
from worker.core.logs import mask_email, mask_text
from worker.core.text import fold

__all__ = [
    "MailMessage",
    "Mailbox",
    "MaildirMailbox",
    "ImapMailbox",
    "open_mailbox",
    "parse_message",
    "CLOCK_SLACK_S",
    "CLAIMED_FOLDER",
    # what the mailbox watcher (worker/engine/mailwatch.py) reads mail with
    "TRANSIENT",
    "ImapNo",
    "Summary",
    "fetch_items",
    "imap_date",
    "imap_quote",
    "read_head",
]

log = structlog.get_logger(__name__)

#: A message counts as "after ``since``" up to this many seconds early: the portal's mail
#: server, the mail store and the worker do not share one clock.
CLOCK_SLACK_S = 2.0
#: Claimed messages end up here (an IMAP folder; ``.Claimed`` inside a Maildir).
CLAIMED_FOLDER = "Claimed"
#: Headers that may carry the address a message was delivered to (the envelope recipient
#: of a catch-all or sub-addressed mailbox is often only in Delivered-To / X-Original-To).
RECIPIENT_HEADERS = ("Delivered-To", "X-Original-To", "To", "Cc")
_IMAP_TIMEOUT_S = 30.0
_HEAD_LIMIT = 256 * 1024


# --- messages ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class MailMessage:
    """One email, decoded: what the flows need from it."""

    message_id: str
    subject: str
    sender: str
    """The From header as written, e.g. ``IMSS Digital <noreply@imss.gob.mx>``."""
    to: list[str]
    """Addresses of the To header."""
    date: datetime | None
    """The Date header (None when absent or unreadable)."""
    text: str
    """All text/plain parts, joined."""
    html: str
    """All text/html parts, joined."""
    links: list[str]
    """Every http(s) URL in the text, in the HTML's hrefs and visible text (HTML-unescaped),
    in order of appearance, without repeats."""
    attachments: list[tuple[str, str, bytes]]
    """``(filename, content_type, data)`` of each attached file."""

    def __repr__(self) -> str:  # the default would print addresses and bodies into logs
        return f"MailMessage(message_id={self.message_id!r}, subject={self.subject!r})"


_URL_RE = re.compile(r"https?://[^\s<>\"'`]+", re.IGNORECASE)
_URL_TRAILING = ".,;:!?)]}'\""


class _HtmlLinks(HTMLParser):
    """Collects href targets and URLs written in the visible text of an HTML body."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)  # attribute values and text come unescaped
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name == "href" and value and re.match(r"(?i)https?://", value.strip()):
                self.links.append(value.strip())

    def handle_data(self, data: str) -> None:
        self.links.extend(_urls_in(data))


def _urls_in(text: str) -> list[str]:
    return [m.group(0).rstrip(_URL_TRAILING) for m in _URL_RE.finditer(text)]


def _links(text: str, html: str) -> list[str]:
    found = _urls_in(text)
    if html:
        parser = _HtmlLinks()
        parser.feed(html)
        parser.close()
        found += parser.links
    return list(dict.fromkeys(found))


def _part_text(part: Message) -> str:
    try:
        return str(part.get_content())  # type: ignore[attr-defined]
    except (LookupError, UnicodeError, KeyError):
        # Unknown or lying charset: keep what can be read rather than lose the link.
        payload = part.get_payload(decode=True)
        return payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""


def _header(msg: Message, name: str) -> str:
    try:
        return str(msg.get(name, "") or "").strip()
    except Exception:  # noqa: BLE001 - a malformed header must not lose the whole message
        raw = msg.get_all(name, failobj=[])
        return str(raw[0]) if raw else ""


def _addresses(msg: Message, names: tuple[str, ...]) -> list[str]:
    values: list[str] = []
    for name in names:
        for value in msg.get_all(name, failobj=[]) or []:
            with contextlib.suppress(Exception):
                values.append(str(value))
    return [addr for _, addr in getaddresses(values) if addr]


def parse_message(raw: bytes, *, fallback_id: str = "") -> MailMessage:
    """Decode a raw RFC 5322 message into a ``MailMessage``."""
    msg: EmailMessage = BytesParser(policy=policy.default).parsebytes(raw)
    texts: list[str] = []
    htmls: list[str] = []
    attachments: list[tuple[str, str, bytes]] = []
    for part in msg.walk():
        if part.is_multipart():
            continue
        ctype = part.get_content_type()
        disposition = part.get_content_disposition()
        filename = part.get_filename()
        if disposition == "attachment" or (filename and ctype not in ("text/plain", "text/html")):
            data = part.get_payload(decode=True)
            attachments.append((filename or "", ctype, data if isinstance(data, bytes) else b""))
        elif ctype == "text/plain":
            texts.append(_part_text(part))
        elif ctype == "text/html":
            htmls.append(_part_text(part))
    date: datetime | None = None
    with contextlib.suppress(Exception):
        header = msg["Date"]
        date = getattr(header, "datetime", None)
    text, html = "\n".join(texts), "\n".join(htmls)
    return MailMessage(
        message_id=_header(msg, "Message-ID") or fallback_id,
        subject=_header(msg, "Subject"),
        sender=_header(msg, "From"),
        to=_addresses(msg, ("To",)),
        date=date,
        text=text,
        html=html,
        links=_links(text, html),
        attachments=attachments,
    )


@dataclass(frozen=True)
class Summary:
    """What selection needs from a message's header, cached per message."""

    arrived: float
    recipients: frozenset[str]
    subject: str  # folded
    message_id: str = ""
    size: int = 0
    internaldate: bytes = b""  # IMAP only, as the server wrote it

    @classmethod
    def from_head(
        cls, head: bytes, arrived: float, *, size: int = 0, internaldate: bytes = b""
    ) -> Summary:
        msg = BytesHeaderParser(policy=policy.default).parsebytes(head)
        return cls(
            arrived=arrived,
            recipients=frozenset(a.lower() for a in _addresses(msg, RECIPIENT_HEADERS)),
            subject=fold(_header(msg, "Subject")),
            message_id=_header(msg, "Message-ID"),
            size=size,
            internaldate=internaldate,
        )

    def matches(self, to: str, subject: str, since: float) -> bool:
        return self.arrived >= since and to in self.recipients and subject in self.subject


# --- the mailbox ------------------------------------------------------------------------------
class Mailbox(ABC):
    """Polls a mail store for one message at a time and claims what it returns.

    Thread-safe: one instance may serve every check of a worker process.
    """

    def __init__(self, *, poll_s: float = 0.25) -> None:
        self.poll_s = poll_s
        self._lock = threading.RLock()

    def wait_for(
        self, *, to: str, subject_contains: str, since: float, timeout_s: float
    ) -> MailMessage:
        """The oldest unclaimed message to ``to`` whose subject contains ``subject_contains``
        and that arrived at or after ``since`` (unix time, minus ``CLOCK_SLACK_S``); claimed
        for this caller alone. Raises ``EmailNotReceived`` after ``timeout_s``."""
        want_to = to.strip().strip("<>").lower()
        want_subject = fold(subject_contains)
        earliest = since - CLOCK_SLACK_S
        deadline = time.monotonic() + timeout_s
        while True:
            with self._lock:
                found = self._claim_first(want_to, want_subject, earliest)
            if found is not None:
                log.info(
                    "mail_claimed",
                    to=mask_email(want_to),
                    subject=subject_contains,
                    message_id=found.message_id,
                )
                return found
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise EmailNotReceived(
                    f"No llegó el correo «{subject_contains}» para {mask_email(want_to)} "
                    f"en {timeout_s:g} s."
                )
            time.sleep(min(self.poll_s, remaining))

    @abstractmethod
    def _claim_first(self, to: str, subject: str, since: float) -> MailMessage | None:
        """One poll: claim and return the oldest matching message, or None."""

    @abstractmethod
    def probe(self) -> int:
        """Log in and list, claiming nothing: how many messages the folder holds now
        (``constancias doctor``). Raises ``ConfigError`` for refused credentials or a missing
        folder, ``OSError``/``imaplib`` errors when the server cannot be reached."""

    def close(self) -> None:  # noqa: B027 - optional hook: only IMAP holds a connection
        """Release connections (a closed mailbox reconnects if used again)."""

    def __enter__(self) -> Mailbox:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class MaildirMailbox(Mailbox):
    """A Maildir on a local (or shared POSIX) file system; claimed mail goes to ``.Claimed``."""

    def __init__(self, path: Path, *, poll_s: float = 0.25) -> None:
        super().__init__(poll_s=poll_s)
        self.path = Path(path)
        self.claimed = self.path / f".{CLAIMED_FOLDER}"
        # The folder may not exist yet (nothing delivered so far): create the empty Maildir.
        for folder in (self.path, self.claimed):
            for sub in ("cur", "new", "tmp"):
                (folder / sub).mkdir(parents=True, exist_ok=True)
        (self.claimed / "maildirfolder").touch(exist_ok=True)
        owner = self.path.stat()
        if os.geteuid() == 0 and owner.st_uid != 0:
            # Root working in someone else's Maildir (one an IMAP server also serves): keep
            # the Claimed folder theirs, or the server could not use it.
            for item in (self.claimed, *self.claimed.iterdir()):
                os.chown(item, owner.st_uid, owner.st_gid)
        # Maildir files never change once delivered, so headers are parsed once per file.
        self._seen: dict[str, Summary] = {}

    def _scan(self) -> list[tuple[float, str, Path]]:
        """(arrival, unique name, path) of every message now in new/ and cur/."""
        listed: list[tuple[float, str, Path]] = []
        for sub in ("new", "cur"):
            try:
                entries = list(os.scandir(self.path / sub))
            except FileNotFoundError:
                continue
            for entry in entries:
                if entry.name.startswith(".") or not entry.is_file():
                    continue
                unique = entry.name.split(":", 1)[0]  # flags after ":2," change; the rest not
                summary = self._seen.get(unique)
                if summary is None:
                    try:
                        summary = Summary.from_head(read_head(entry.path), entry.stat().st_mtime)
                    except FileNotFoundError:
                        continue  # claimed (or flagged) by someone else meanwhile
                    self._seen[unique] = summary
                listed.append((summary.arrived, unique, Path(entry.path)))
        gone = self._seen.keys() - {unique for _, unique, _ in listed}
        for unique in gone:
            del self._seen[unique]
        return sorted(listed)

    def probe(self) -> int:
        with self._lock:
            return len(self._scan())

    def _claim_first(self, to: str, subject: str, since: float) -> MailMessage | None:
        for _, unique, path in self._scan():
            if not self._seen[unique].matches(to, subject, since):
                continue
            target = self.claimed / "cur" / f"{unique}:2,S"
            try:
                # The claim: rename is atomic, so of all racing processes exactly one moves
                # the file; the others get FileNotFoundError and look further.
                os.rename(path, target)
            except FileNotFoundError:
                self._seen.pop(unique, None)
                continue
            return parse_message(target.read_bytes(), fallback_id=f"<{unique}@maildir>")
        return None


def read_head(path: str) -> bytes:
    """The header block of a message file, without reading a large body."""
    head = b""
    with open(path, "rb") as fh:
        while len(head) < _HEAD_LIMIT:
            chunk = fh.read(8192)
            if not chunk:
                break
            head += chunk
            end = re.search(rb"\r?\n\r?\n", head)
            if end:
                return head[: end.end()]
    return head


# --- IMAP ---------------------------------------------------------------------------------------
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_FETCH_UID = re.compile(rb"\bUID (\d+)")
_FETCH_DATE = re.compile(rb'INTERNALDATE "([^"]+)"')
_FETCH_SIZE = re.compile(rb"RFC822\.SIZE (\d+)")
_HEADER_FIELDS = " ".join(h.upper() for h in (*RECIPIENT_HEADERS, "Subject", "Message-ID"))
#: Network and protocol failures after which the connection is dropped and opened again
#: (imaplib raises ``IMAP4.error`` for a BAD answer, ``IMAP4.abort`` for a broken session).
TRANSIENT = (imaplib.IMAP4.error, OSError, EOFError)


def _credentials_refused(reply: str) -> bool:
    """Is a failed LOGIN the credentials' fault (RFC 5530 codes), or the server's?

    Servers without response codes get the benefit of the doubt: a plain NO is taken as a
    refusal, so that a wrong password is reported at once instead of as a missing email.
    """
    code = re.search(r"\[([A-Z-]+)", reply.upper())
    if code is None:
        return True
    return code.group(1) in {"AUTHENTICATIONFAILED", "AUTHORIZATIONFAILED", "EXPIRED"}


class ImapNo(Exception):
    """The server answered NO/BAD to something that should work: reconnect and retry."""


def imap_quote(mailbox: str) -> str:
    return '"' + mailbox.replace("\\", "\\\\").replace('"', '\\"') + '"'


def imap_date(unix: float) -> str:
    t = time.gmtime(unix)
    return f"{t.tm_mday}-{_MONTHS[t.tm_mon - 1]}-{t.tm_year}"


def _internaldate(value: bytes) -> float:
    return datetime.strptime(value.decode().strip(), "%d-%b-%Y %H:%M:%S %z").timestamp()


_FETCH_START = re.compile(rb"^\d+ \(")


def fetch_items(data: list[Any]) -> list[tuple[int, bytes, bytes | None]]:
    """imaplib FETCH data → [(uid, metadata, literal or None)], one per FETCH response that
    names its UID (unsolicited flag updates from other sessions may not, and are dropped).

    imaplib splits a response around its literal; the text after it (which may hold items
    too) is joined back to the metadata.
    """
    responses: list[tuple[bytes, bytes | None]] = []
    for element in data:
        if isinstance(element, tuple):
            responses.append((element[0], element[1]))
        elif isinstance(element, bytes):
            if _FETCH_START.match(element) or not responses:
                responses.append((element, None))
            else:
                meta, literal = responses[-1]
                responses[-1] = (meta + element, literal)
    items = []
    for meta, literal in responses:
        uid = _FETCH_UID.search(meta)
        if uid:
            items.append((int(uid.group(1)), meta, literal))
    return items


class ImapMailbox(Mailbox):
    """An IMAP folder (``INBOX``); claimed mail is flagged and moved to "Claimed"."""

    def __init__(
        self,
        host: str,
        port: int,
        user: str,
        password: str,
        *,
        folder: str = "INBOX",
        use_ssl: bool = False,
        poll_s: float = 0.25,
        claimed_folder: str = CLAIMED_FOLDER,
    ) -> None:
        super().__init__(poll_s=poll_s)
        self.host, self.port, self.user, self.folder = host, port, user, folder
        self.claimed_folder = claimed_folder
        self.use_ssl = use_ssl
        self._password = password
        self._conn: imaplib.IMAP4 | None = None
        self._caps: frozenset[str] = frozenset()
        self._uidvalidity: object = None  # the UIDVALIDITY answer, compared whole
        self._seen: dict[int, Summary] = {}
        self._failures = 0

    def __repr__(self) -> str:
        scheme = "imaps" if self.use_ssl else "imap"
        return f"ImapMailbox({scheme}://{self.host}:{self.port}/{self.folder})"

    # --- connection ---------------------------------------------------------------------------
    def _connect(self) -> imaplib.IMAP4:
        if self._conn is not None:
            return self._conn
        conn: imaplib.IMAP4
        if self.use_ssl:
            conn = imaplib.IMAP4_SSL(
                self.host,
                self.port,
                ssl_context=ssl.create_default_context(),
                timeout=_IMAP_TIMEOUT_S,
            )
        else:
            conn = imaplib.IMAP4(self.host, self.port, timeout=_IMAP_TIMEOUT_S)
        try:
            try:
                conn.login(self.user, self._password)
            except imaplib.IMAP4.abort:
                raise
            except imaplib.IMAP4.error as exc:
                if not _credentials_refused(str(exc)):
                    raise ImapNo(str(exc)) from None  # the server is busy, not the password
                raise ConfigError(
                    f"El servidor IMAP {self.host} rechazó el usuario o la contraseña de "
                    f"CONSTANCIAS_MAILBOX_URL ({mask_text(str(exc))[:120]})."
                ) from None
            typ, data = conn.capability()
            self._caps = frozenset(data[0].decode().upper().split()) if typ == "OK" else frozenset()
            # Creating an existing folder is answered NO, which is fine.
            conn.create(imap_quote(self.claimed_folder))
            typ, _ = conn.select(imap_quote(self.folder))
            if typ != "OK":
                raise ConfigError(
                    f"La carpeta IMAP «{self.folder}» de CONSTANCIAS_MAILBOX_URL no existe."
                )
            answers = conn.untagged_responses.get("UIDVALIDITY")
            validity = answers[0] if answers else None
            if validity != self._uidvalidity:
                self._seen.clear()  # UIDs of another folder generation mean nothing now
                self._uidvalidity = validity
        except BaseException:
            with contextlib.suppress(Exception):
                conn.shutdown()
            raise
        self._conn = conn
        self._failures = 0
        return conn

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.logout()

    def _drop(self, exc: BaseException) -> None:
        self._failures += 1
        # One warning per outage, not one per poll.
        (log.warning if self._failures == 1 else log.debug)(
            "imap_reconnect", host=self.host, error=type(exc).__name__, detail=str(exc)[:200]
        )
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.shutdown()

    def probe(self) -> int:
        with self._lock:
            try:
                conn = self._connect()
                typ, data = self._command(conn, "SEARCH", "UNDELETED")
            except ImapNo as exc:  # the server answered, but not as it should: not usable
                raise imaplib.IMAP4.error(str(exc)) from None
            if typ != "OK":
                raise imaplib.IMAP4.error(f"SEARCH: {data!r}")
            return len(b" ".join(d for d in data if d).split())

    # --- one poll -----------------------------------------------------------------------------
    def _claim_first(self, to: str, subject: str, since: float) -> MailMessage | None:
        try:
            conn = self._connect()
            for uid in self._candidates(conn, to, subject, since):
                message = self._claim(conn, uid)
                if message is not None:
                    return message
        except (*TRANSIENT, ImapNo) as exc:
            # Server restarts, dropped connections, timeouts: the next poll reconnects.
            self._drop(exc)
        return None

    def _command(self, conn: imaplib.IMAP4, *args: str) -> tuple[str, list[Any]]:
        for code in ("COPYUID", "FETCH"):
            conn.untagged_responses.pop(code, None)
        return conn.uid(*args)

    def _candidates(self, conn: imaplib.IMAP4, to: str, subject: str, since: float) -> list[int]:
        conn.noop()  # lets the server report new messages to this session
        # SINCE has day granularity in the server's time zone: ask a day wide, filter exactly.
        typ, data = self._command(
            conn,
            "SEARCH",
            "UNDELETED",
            "SINCE",
            imap_date(since - 86400),
        )
        if typ != "OK":
            raise ImapNo(f"SEARCH: {data!r}")
        uids = [int(u) for u in b" ".join(d for d in data if d).split()]
        new = [u for u in uids if u not in self._seen]
        if new:
            self._summarise(conn, new)
        for uid in set(self._seen) - set(uids):
            del self._seen[uid]  # claimed, deleted or too old: forget
        matching = [
            u for u in uids if u in self._seen and self._seen[u].matches(to, subject, since)
        ]
        return sorted(matching, key=lambda u: (self._seen[u].arrived, u))

    def _summarise(self, conn: imaplib.IMAP4, uids: list[int]) -> None:
        typ, data = self._command(
            conn,
            "FETCH",
            ",".join(map(str, uids)),
            f"(UID INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS ({_HEADER_FIELDS})])",
        )
        if typ != "OK":
            raise ImapNo(f"FETCH: {data!r}")
        wanted = set(uids)
        for uid, meta, literal in fetch_items(data):
            date, size = _FETCH_DATE.search(meta), _FETCH_SIZE.search(meta)
            if uid in wanted and date and size and literal is not None:
                self._seen[uid] = Summary.from_head(
                    literal,
                    _internaldate(date.group(1)),
                    size=int(size.group(1)),
                    internaldate=date.group(1),
                )

    def _select(self, conn: imaplib.IMAP4, folder: str) -> None:
        typ, data = conn.select(imap_quote(folder))
        if typ != "OK":
            raise ImapNo(f"SELECT {folder}: {data!r}")

    def _claim(self, conn: imaplib.IMAP4, uid: int) -> MailMessage | None:
        """Make ``uid`` ours, or learn that another session has it (None).

        IMAP has no compare-and-swap that servers apply atomically across sessions: measured
        on Dovecot 2.3, two sessions can both "win" a conditional STORE (RFC 7162
        UNCHANGEDSINCE), and both win a MOVE when they copy before either expunges. What
        IMAP does guarantee is that UIDs in a folder are unique and strictly ascending. So
        every contender moves the message to the Claimed folder, learns the UID of its own
        copy from COPYUID (RFC 4315), and the copy with the lowest UID wins: a lower UID was
        committed earlier, so every later contender sees it when it looks. Losers delete
        their copy. Copies are recognised by Message-ID, size and INTERNALDATE, which a
        copy keeps; a later delivery of the same message has another INTERNALDATE.
        """
        summary = self._seen.pop(uid, None)
        if summary is None:
            return None
        copy_uid = self._move(conn, str(uid))
        if copy_uid is None:
            return None  # gone: someone else moved it first
        if copy_uid == 0:
            # The server cannot say which copy is ours (no UIDPLUS): the MOVE is the claim.
            self._select(conn, self.claimed_folder)
            try:
                raw = self._fetch_latest_copy(conn, summary)
            finally:
                self._select(conn, self.folder)
            return None if raw is None else parse_message(raw, fallback_id=f"<{uid}@imap>")
        self._select(conn, self.claimed_folder)
        try:
            copies = self._copies(conn, summary)
            if not copies or min(copies) != copy_uid:
                # Lost the race: another session's copy came first. Remove ours.
                self._command(conn, "STORE", str(copy_uid), "+FLAGS.SILENT", r"(\Deleted)")
                self._command(conn, "EXPUNGE", str(copy_uid))
                return None
            typ, data = self._command(conn, "FETCH", str(copy_uid), "(BODY.PEEK[])")
            raw = next((lit for got, _, lit in fetch_items(data) if got == copy_uid and lit), None)
            if typ != "OK" or raw is None:
                raise ImapNo(f"FETCH of the claimed copy {copy_uid}: {typ}")
        finally:
            self._select(conn, self.folder)
        return parse_message(raw, fallback_id=f"<{uid}@{self.host}>")

    def _copies(self, conn: imaplib.IMAP4, summary: Summary) -> list[int]:
        """UIDs, in the (selected) Claimed folder, of the copies of the message ``summary``."""
        criteria = ["LARGER", str(summary.size - 1), "SMALLER", str(summary.size + 1)]
        if summary.message_id:
            criteria += ["HEADER", "Message-ID", imap_quote(summary.message_id)]
        typ, data = self._command(conn, "SEARCH", *criteria)
        if typ != "OK":
            raise ImapNo(f"SEARCH Claimed: {data!r}")
        uids = [int(u) for u in b" ".join(d for d in data if d).split()]
        if not uids:
            return []
        typ, data = self._command(conn, "FETCH", ",".join(map(str, uids)), "(UID INTERNALDATE)")
        if typ != "OK":
            raise ImapNo(f"FETCH Claimed: {data!r}")
        return [
            got
            for got, meta, _ in fetch_items(data)
            if (date := _FETCH_DATE.search(meta)) and date.group(1) == summary.internaldate
        ]

    def _fetch_latest_copy(self, conn: imaplib.IMAP4, summary: Summary) -> bytes | None:
        copies = self._copies(conn, summary)
        if not copies:
            return None
        typ, data = self._command(conn, "FETCH", str(max(copies)), "(BODY.PEEK[])")
        return next((lit for got, _, lit in fetch_items(data) if lit), None)

    def _move(self, conn: imaplib.IMAP4, u: str) -> int | None:
        """Move message ``u`` to the Claimed folder: the UID of the copy (from COPYUID), 0 if
        the server does not say (no UIDPLUS), None if nothing was moved."""
        target = imap_quote(self.claimed_folder)
        typ, _ = self._command(conn, "MOVE" if "MOVE" in self._caps else "COPY", u, target)
        copied = conn.untagged_responses.pop("COPYUID", None)
        if typ != "OK":
            return None
        if "MOVE" not in self._caps:
            # COPY leaves the original: flag and expunge it, as MOVE would have.
            self._command(conn, "STORE", u, "+FLAGS.SILENT", r"(\Deleted)")
            if "UIDPLUS" in self._caps:
                self._command(conn, "EXPUNGE", u)
            else:
                conn.expunge()
        if "UIDPLUS" not in self._caps:
            return 0
        # "[COPYUID <uidvalidity> <source uids> <destination uids>]": one message, one UID.
        fields = cast(bytes, copied[-1]).split() if copied and copied[-1] else []
        if len(fields) != 3 or not fields[2].isdigit():
            return None  # nothing was there to copy any more
        return int(fields[2])


# --- from the setting ---------------------------------------------------------------------------
_URL_HELP = "use maildir:///ruta/absoluta, imap://usuario:clave@host:puerto/INBOX o imaps://…"


def open_mailbox(url: str, *, poll_s: float = 0.25) -> Mailbox:
    """The mailbox named by ``CONSTANCIAS_MAILBOX_URL``; a malformed URL is a ``ConfigError``.

    IMAP connects on first use, so a server that is briefly down does not stop a worker.
    """
    try:
        parts = urlsplit(url.strip())
        scheme = parts.scheme.lower()
        port = parts.port
    except ValueError:
        raise ConfigError(f"CONSTANCIAS_MAILBOX_URL no es válida: {_URL_HELP}.") from None
    if scheme == "maildir":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise ConfigError(
                "CONSTANCIAS_MAILBOX_URL: la carpeta Maildir debe ser una ruta absoluta "
                f"({_URL_HELP})."
            )
        return MaildirMailbox(Path(unquote(parts.path)), poll_s=poll_s)
    if scheme in ("imap", "imaps"):
        if not parts.hostname or parts.username is None or parts.password is None:
            raise ConfigError(
                "CONSTANCIAS_MAILBOX_URL debe incluir usuario, contraseña y servidor "
                f"({_URL_HELP})."
            )
        folder = unquote(parts.path.lstrip("/")) or "INBOX"
        return ImapMailbox(
            parts.hostname,
            port or (993 if scheme == "imaps" else 143),
            unquote(parts.username),
            unquote(parts.password),
            folder=folder,
            use_ssl=scheme == "imaps",
            poll_s=poll_s,
        )
    raise ConfigError(f"CONSTANCIAS_MAILBOX_URL tiene un esquema desconocido: {_URL_HELP}.")
