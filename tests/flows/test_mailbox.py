"""The flows' mailbox: find the message for one request, claim it exactly once.

Mail is always sent over real SMTP to the sandbox's server (fixtures.mail.MailServer); the
Maildir is read directly (``maildir://``) or through a real Dovecot (``imap://``).
"""

from __future__ import annotations

import imaplib
import multiprocessing
import os
import smtplib
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from urllib.parse import quote

import pytest

from fixtures.mail import MailServer
from flows.errors import EmailNotReceived
from flows.mailbox import (
    CLAIMED_FOLDER,
    ImapMailbox,
    Mailbox,
    MaildirMailbox,
    open_mailbox,
    parse_message,
)
from tests.dovecot import Dovecot
from worker.core.errors import ConfigError

PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj <<>> endobj\n\x00\xff binary\n%%EOF\n"
SUBJECT1 = "Confirmación de trámite - Constancia de No Derechohabiencia"
SUBJECT2 = "Constancia de No Derechohabiencia"


# --- helpers --------------------------------------------------------------------------------
def _address() -> str:
    """A recipient nobody else uses, so tests sharing a mailbox never see each other's mail."""
    return f"constancias+{uuid.uuid4().hex[:12]}@empresa.example"


def send(
    server: MailServer,
    to: str,
    subject: str = SUBJECT1,
    *,
    text: str = "Siga la liga para continuar.",
    html: str | None = None,
    pdf: bytes | None = None,
    header_to: str | None = None,
) -> str:
    """Send one message over SMTP; returns its Message-ID."""
    msg = EmailMessage()
    msg["From"] = "IMSS Digital <noreply@imss.gob.mx>"
    msg["To"] = header_to or to
    msg["Subject"] = subject
    msg["Message-ID"] = message_id = make_msgid(domain="imss.test")
    msg["Date"] = "Wed, 25 Nov 2026 10:00:00 -0600"
    msg.set_content(text)
    if html is not None:
        msg.add_alternative(html, subtype="html")
    if pdf is not None:
        msg.add_attachment(pdf, maintype="application", subtype="pdf", filename="constancia.pdf")
    with smtplib.SMTP(server.host, server.port) as smtp:
        smtp.send_message(msg, to_addrs=[to])
    return message_id


def _age_all(maildir: Path, seconds: float) -> None:
    """Pretend everything now in the Maildir arrived ``seconds`` ago."""
    for sub in ("new", "cur"):
        for f in (maildir / sub).iterdir():
            st = f.stat()
            os.utime(f, (st.st_atime - seconds, st.st_mtime - seconds))


def _drain(mailbox: Mailbox, to: str, since: float, got: list[str], idle_s: float) -> None:
    """Claim messages for ``to`` until none arrives for ``idle_s``."""
    while True:
        try:
            got.append(
                mailbox.wait_for(
                    to=to, subject_contains="confirmacion", since=since, timeout_s=idle_s
                ).message_id
            )
        except EmailNotReceived:
            return


def _race_in_process(url: str, to: str, since: float, threads: int, ready, out) -> None:
    """Child process: ``threads`` racers, each with its own mailbox, report what they won."""
    got: list[str] = []
    lock = threading.Lock()

    def racer() -> None:
        mine: list[str] = []
        mailbox = open_mailbox(url, poll_s=0.02)
        ready.release()
        _drain(mailbox, to, since, mine, idle_s=2.0)
        mailbox.close()
        with lock:
            got.extend(mine)

    workers = [threading.Thread(target=racer) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    out.put(got)


def _race(
    url: str,
    deliver: Callable[[str], list[str]],
    *,
    threads: int,
    processes: int,
    per_process: int = 2,
) -> tuple[list[str], list[str]]:
    """Racers in this process (one shared mailbox for two of them) and in child processes all
    wait for the same address while ``deliver`` sends the messages. Returns (sent, claimed)."""
    to = _address()
    since = time.time()
    ctx = multiprocessing.get_context("spawn")  # no fork under the SMTP server's thread
    ready, out = ctx.Semaphore(0), ctx.Queue()
    children = [
        ctx.Process(target=_race_in_process, args=(url, to, since, per_process, ready, out))
        for _ in range(processes)
    ]
    for child in children:
        child.start()
    claimed: list[str] = []
    lock = threading.Lock()
    shared = open_mailbox(url, poll_s=0.02)

    def racer(mailbox: Mailbox | None) -> None:
        own = mailbox or open_mailbox(url, poll_s=0.02)
        mine: list[str] = []
        _drain(own, to, since, mine, idle_s=2.0)
        if mailbox is None:
            own.close()
        with lock:
            claimed.extend(mine)

    local = [
        threading.Thread(target=racer, args=(shared if n < 2 else None,)) for n in range(threads)
    ]
    for t in local:
        t.start()
    for _ in range(processes * per_process):
        assert ready.acquire(timeout=60), "a racing process did not start"
    sent = deliver(to)
    for t in local:
        t.join()
    for _ in children:
        claimed.extend(out.get(timeout=60))
    for child in children:
        child.join(timeout=30)
    shared.close()
    return sent, claimed


# --- fixtures -------------------------------------------------------------------------------
@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[MailServer]:
    """The sandbox's SMTP server writing to a Maildir of this test."""
    server = MailServer(tmp_path / "mail")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def maildir_box(smtp: MailServer) -> Iterator[Mailbox]:
    box = open_mailbox(f"maildir://{smtp.maildir}", poll_s=0.02)
    yield box
    box.close()


@pytest.fixture(scope="module")
def imap_smtp(dovecot: Dovecot) -> Iterator[MailServer]:
    """The sandbox's SMTP server delivering into the Maildir that Dovecot serves."""
    server = MailServer(dovecot.maildir)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def imap_box(dovecot: Dovecot) -> Iterator[Mailbox]:
    box = open_mailbox(dovecot.url, poll_s=0.05)
    yield box
    box.close()


def _login(dovecot: Dovecot, patience_s: float = 15.0) -> imaplib.IMAP4:
    """A logged-in client; a busy Dovecot answers "[UNAVAILABLE] Temporary authentication
    failure" while its auth process catches up (seen on a loaded machine): try again."""
    deadline = time.monotonic() + patience_s
    while True:
        conn = imaplib.IMAP4(dovecot.host, dovecot.port)
        try:
            conn.login(dovecot.user, dovecot.password)
            return conn
        except imaplib.IMAP4.error as exc:
            conn.shutdown()
            if "UNAVAILABLE" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _folder_message_ids(dovecot: Dovecot, folder: str) -> Counter[str]:
    """Message-IDs now in an IMAP folder (with repeats), read by a separate client."""
    conn = _login(dovecot)
    try:
        conn.select(f'"{folder}"', readonly=True)
        typ, data = conn.uid("FETCH", "1:*", "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
        ids: Counter[str] = Counter()
        for item in data:
            if isinstance(item, tuple):
                ids[item[1].decode().split(":", 1)[1].strip()] += 1
        return ids
    finally:
        conn.logout()


# --- parsing --------------------------------------------------------------------------------
def test_links_come_from_text_and_html_hrefs_unescaped_and_once():
    """Links are taken from the text and from HTML hrefs (entities decoded), without repeats
    and without trailing punctuation."""
    msg = EmailMessage()
    msg["Subject"] = "x"
    msg.set_content("Confirme aquí: https://imss.test/confirmacionUrl?token=abc&curp=X. Gracias")
    msg.add_alternative(
        '<p><a href="https://imss.test/confirmacionUrl?token=abc&amp;curp=X">Confirmar</a>'
        ' <a href="mailto:ayuda@imss.gob.mx">ayuda</a> visite http://imss.test/ayuda</p>',
        subtype="html",
    )
    parsed = parse_message(msg.as_bytes())
    assert parsed.links == [
        "https://imss.test/confirmacionUrl?token=abc&curp=X",
        "http://imss.test/ayuda",
    ]


def test_a_message_with_an_unknown_charset_still_yields_its_text():
    """A part with a charset Python does not know is decoded leniently, not dropped."""
    raw = (
        b"Subject: prueba\nContent-Type: text/plain; charset=x-desconocido\n\n"
        b"liga: https://imss.test/confirmacionUrl?token=1\n"
    )
    parsed = parse_message(raw, fallback_id="<f@x>")
    assert parsed.links == ["https://imss.test/confirmacionUrl?token=1"]
    assert parsed.message_id == "<f@x>"


def test_message_repr_shows_no_address_or_body():
    """A message printed into a log line shows its id and subject only."""
    raw = b"From: a@b.example\nTo: ana@empresa.example\nSubject: Hola\nMessage-ID: <1@x>\n\ncuerpo"
    text = repr(parse_message(raw))
    assert "ana@" not in text and "cuerpo" not in text and "<1@x>" in text


# --- URLs -----------------------------------------------------------------------------------
def test_imap_url_credentials_are_url_decoded():
    """User and password are percent-decoded; ports default by scheme; the path is the folder."""
    box = open_mailbox("imap://ana%40empresa.mx:p%40ss%3Aw%2Frd@mail.example:1143/INBOX")
    assert isinstance(box, ImapMailbox)
    assert (box.host, box.port, box.user, box._password, box.folder) == (
        "mail.example",
        1143,
        "ana@empresa.mx",
        "p@ss:w/rd",
        "INBOX",
    )
    secure = open_mailbox("imaps://u:p@mail.example/Constancias%20IMSS")
    assert isinstance(secure, ImapMailbox)
    assert (secure.port, secure.use_ssl, secure.folder) == (993, True, "Constancias IMSS")
    assert open_mailbox("imap://u:p@mail.example").port == 143  # type: ignore[attr-defined]


def test_maildir_url_gives_a_maildir_mailbox_creating_the_folder(tmp_path: Path):
    """``maildir:///abs/path`` opens (and creates) that Maildir."""
    box = open_mailbox(f"maildir://{tmp_path / 'buzón'}")
    assert isinstance(box, MaildirMailbox)
    assert (tmp_path / "buzón" / "new").is_dir()
    assert (tmp_path / "buzón" / f".{CLAIMED_FOLDER}" / "cur").is_dir()


@pytest.mark.parametrize(
    "url",
    [
        "pop3://u:p@mail.example/INBOX",
        "maildir://relativa/buzon",
        "imap://mail.example/INBOX",
        "imap://u@mail.example/INBOX",
        "imap://u:p@mail.example:puerto/INBOX",
        "imap://u:p@/INBOX",
        "",
    ],
)
def test_bad_mailbox_url_is_a_spanish_config_error(url: str):
    """An unusable MAILBOX_URL is a ConfigError naming the setting, in Spanish."""
    with pytest.raises(ConfigError, match="CONSTANCIAS_MAILBOX_URL"):
        open_mailbox(url)


# --- Maildir --------------------------------------------------------------------------------
def test_maildir_returns_the_message_for_the_address_and_subject(smtp, maildir_box):
    """The message sent to this address with this subject is returned, decoded."""
    to = _address()
    since = time.time()
    sent = send(smtp, to, text="Confirme en https://imss.test/confirmacionUrl?token=t1")
    msg = maildir_box.wait_for(to=to, subject_contains="Confirmación", since=since, timeout_s=5)
    assert msg.message_id == sent
    assert msg.subject == SUBJECT1
    assert msg.sender == "IMSS Digital <noreply@imss.gob.mx>"
    assert msg.to == [to]
    assert msg.date is not None and msg.date.utcoffset().total_seconds() == -6 * 3600
    assert msg.links == ["https://imss.test/confirmacionUrl?token=t1"]


def test_maildir_subject_and_address_match_ignore_case_and_accents(smtp, maildir_box):
    """ "CONFIRMACION DE TRAMITE" finds "Confirmación de trámite"; the address is case-blind."""
    to = _address()
    since = time.time()
    send(smtp, to)
    msg = maildir_box.wait_for(
        to=to.upper(), subject_contains="CONFIRMACION DE TRAMITE", since=since, timeout_s=5
    )
    assert msg.subject == SUBJECT1


def test_maildir_ignores_other_recipients_and_other_subjects(smtp, maildir_box):
    """Mail for another address or with another subject is never returned (nor claimed)."""
    to, other = _address(), _address()
    since = time.time()
    send(smtp, other)
    send(smtp, to, subject="Boletín informativo")
    with pytest.raises(EmailNotReceived):
        maildir_box.wait_for(to=to, subject_contains="Confirmación", since=since, timeout_s=0.3)
    # Both are still there for whoever they are meant for.
    assert maildir_box.wait_for(to=other, subject_contains="confirm", since=since, timeout_s=2)
    assert maildir_box.wait_for(to=to, subject_contains="boletin", since=since, timeout_s=2)


def test_maildir_ignores_messages_that_arrived_before_since(smtp, maildir_box):
    """A message older than ``since`` (beyond the clock slack) is a previous request's."""
    to = _address()
    send(smtp, to)
    _age_all(smtp.maildir, 60)
    since = time.time() - 1
    with pytest.raises(EmailNotReceived):
        maildir_box.wait_for(to=to, subject_contains="Confirmación", since=since, timeout_s=0.3)
    fresh = send(smtp, to)
    msg = maildir_box.wait_for(to=to, subject_contains="Confirmación", since=since, timeout_s=5)
    assert msg.message_id == fresh


def test_maildir_accepts_a_message_a_little_earlier_than_since(smtp, maildir_box):
    """Clocks differ: a message stamped up to about two seconds before ``since`` still counts."""
    to = _address()
    sent = send(smtp, to)
    _age_all(smtp.maildir, 1)
    msg = maildir_box.wait_for(
        to=to, subject_contains="Confirmación", since=time.time(), timeout_s=2
    )
    assert msg.message_id == sent


def test_maildir_finds_a_blind_copy_by_its_delivered_to_header(smtp, maildir_box):
    """A catch-all delivery whose To header names someone else is found by Delivered-To."""
    to = _address()
    since = time.time()
    sent = send(smtp, to, header_to="Undisclosed recipients:;")
    msg = maildir_box.wait_for(to=to, subject_contains="Confirmación", since=since, timeout_s=5)
    assert msg.message_id == sent


def test_maildir_waits_for_a_message_that_arrives_later(smtp, maildir_box):
    """wait_for keeps polling until the message is delivered."""
    to = _address()
    since = time.time()
    timer = threading.Timer(0.3, send, args=(smtp, to))
    timer.start()
    try:
        msg = maildir_box.wait_for(
            to=to, subject_contains="Confirmación", since=since, timeout_s=10
        )
    finally:
        timer.join()
    assert msg.subject == SUBJECT1


def test_maildir_gives_the_oldest_match_first_and_each_only_once(smtp, maildir_box):
    """Two matches come out oldest first, one per call; then the wait times out."""
    to = _address()
    since = time.time()
    first = send(smtp, to)
    _age_all(smtp.maildir, 0.5)
    second = send(smtp, to)
    got = [
        maildir_box.wait_for(to=to, subject_contains="confirm", since=since - 1, timeout_s=2)
        for _ in range(2)
    ]
    assert [m.message_id for m in got] == [first, second]
    with pytest.raises(EmailNotReceived):
        maildir_box.wait_for(to=to, subject_contains="confirm", since=since - 1, timeout_s=0.3)
    claimed = list((smtp.maildir / f".{CLAIMED_FOLDER}" / "cur").iterdir())
    assert len(claimed) == 2
    assert not list((smtp.maildir / "new").iterdir())


def test_maildir_timeout_raises_email_not_received_with_masked_address(maildir_box):
    """After the timeout: EmailNotReceived (transient), its Spanish message masks the address."""
    to = "gode561231hdfrrn09@constancias.empresa.example"
    with pytest.raises(EmailNotReceived) as caught:
        maildir_box.wait_for(
            to=to, subject_contains="Confirmación", since=time.time(), timeout_s=0.2
        )
    assert caught.value.transient
    assert "No llegó el correo" in str(caught.value)
    assert to not in str(caught.value) and "gode561231" not in str(caught.value)


def test_maildir_attachment_round_trip(smtp, maildir_box):
    """A PDF attached by the sender comes back byte for byte."""
    to = _address()
    since = time.time()
    send(smtp, to, subject=SUBJECT2, html="<p>Hola <b>ANA</b></p>", pdf=PDF)
    msg = maildir_box.wait_for(to=to, subject_contains=SUBJECT2, since=since, timeout_s=5)
    assert msg.attachments == [("constancia.pdf", "application/pdf", PDF)]
    assert "<b>ANA</b>" in msg.html


def test_maildir_claims_each_message_exactly_once_under_contention(smtp):
    """8 threads here (two sharing one mailbox) and 2 processes (2 threads each) race for 20
    messages: every message is handed to exactly one of them."""
    url = f"maildir://{smtp.maildir}"

    def deliver(to: str) -> list[str]:
        return [send(smtp, to) for _ in range(20)]

    sent, claimed = _race(url, deliver, threads=8, processes=2)
    assert Counter(claimed) == Counter(sent)


# --- IMAP (real Dovecot) --------------------------------------------------------------------
def test_imap_returns_the_html_message_with_links_and_pdf(dovecot, imap_smtp, imap_box):
    """Over IMAP: the confirmation link comes out of the HTML href (unescaped), the PDF comes
    back byte for byte, and the message moves to the Claimed folder."""
    to = _address()
    since = time.time()
    link = "https://imss.test/gestionAsegurados-web-externo/confirmacionUrl?token=a1&curp=GODE"
    html = f'<p>Estimado usuario:</p><p><a href="{link.replace("&", "&amp;")}">Confirmar</a></p>'
    sent = send(imap_smtp, to, text="Use la versión HTML.", html=html, pdf=PDF)
    msg = imap_box.wait_for(to=to, subject_contains="confirmación", since=since, timeout_s=10)
    assert msg.message_id == sent
    assert msg.links == [link]
    assert msg.attachments == [("constancia.pdf", "application/pdf", PDF)]
    assert _folder_message_ids(dovecot, CLAIMED_FOLDER)[sent] == 1
    assert _folder_message_ids(dovecot, "INBOX")[sent] == 0


def test_imap_ignores_older_and_foreign_mail_and_times_out(imap_smtp, imap_box):
    """Over IMAP: mail for another address, another subject or from before ``since`` is not
    returned; with nothing else, EmailNotReceived."""
    to = _address()
    send(imap_smtp, to)  # a previous request's email
    time.sleep(2.5)  # beyond the clock slack (IMAP INTERNALDATE cannot be back-dated here)
    since = time.time()
    send(imap_smtp, _address())
    send(imap_smtp, to, subject="Boletín informativo")
    with pytest.raises(EmailNotReceived):
        imap_box.wait_for(to=to, subject_contains="Confirmación", since=since, timeout_s=0.5)
    fresh = send(imap_smtp, to)
    msg = imap_box.wait_for(to=to, subject_contains="Confirmación", since=since, timeout_s=10)
    assert msg.message_id == fresh


def test_imap_finds_a_blind_copy_by_its_delivered_to_header(imap_smtp, imap_box):
    """Over IMAP, a catch-all delivery is found by its envelope recipient."""
    to = _address()
    since = time.time()
    sent = send(imap_smtp, to, header_to="Undisclosed recipients:;")
    msg = imap_box.wait_for(to=to, subject_contains="confirmacion", since=since, timeout_s=10)
    assert msg.message_id == sent


def test_imap_reconnects_after_the_connection_drops(imap_smtp, imap_box):
    """A dropped connection (server restart, network) is reopened on the next poll."""
    to = _address()
    since = time.time()
    first = send(imap_smtp, to)
    assert (
        imap_box.wait_for(to=to, subject_contains="confirm", since=since, timeout_s=10).message_id
        == first
    )
    imap_box._conn.sock.shutdown(socket.SHUT_RDWR)  # type: ignore[attr-defined]
    second = send(imap_smtp, to)
    assert (
        imap_box.wait_for(to=to, subject_contains="confirm", since=since, timeout_s=10).message_id
        == second
    )


def test_imap_wrong_password_is_a_config_error(dovecot):
    """A rejected login is a configuration problem, reported in Spanish."""
    url = dovecot.url.replace(quote(dovecot.password, safe=""), "equivocada")
    with open_mailbox(url, poll_s=0.05) as box, pytest.raises(ConfigError, match="contraseña"):
        box.wait_for(to=_address(), subject_contains="x", since=time.time(), timeout_s=5)


def test_imap_credentials_with_reserved_characters_log_in(tmp_path: Path):
    """A password with @ : / % works once URL-encoded in MAILBOX_URL."""
    with Dovecot(user="rh@empresa.mx", password="p@ss:w/rd%1") as server:  # noqa: S106
        assert "p%40ss%3Aw%2Frd%251" in server.url
        with MailServer(server.maildir) as smtp, open_mailbox(server.url, poll_s=0.05) as box:
            to = _address()
            since = time.time()
            sent = send(smtp, to)
            msg = box.wait_for(to=to, subject_contains="Confirmación", since=since, timeout_s=10)
            assert msg.message_id == sent


def test_imap_claims_each_message_exactly_once_under_contention(dovecot, imap_smtp):
    """8 IMAP connections here (two threads sharing one) and 2 processes (2 connections each)
    race for 20 messages: every message is handed to exactly one of them."""

    def deliver(to: str) -> list[str]:
        return [send(imap_smtp, to) for _ in range(20)]

    sent, claimed = _race(dovecot.url, deliver, threads=8, processes=2)
    assert Counter(claimed) == Counter(sent)
    # Contenders that lost removed their copies: one copy of each message is kept.
    kept = _folder_message_ids(dovecot, CLAIMED_FOLDER)
    assert [kept[m] for m in sent] == [1] * len(sent)
    inbox = _folder_message_ids(dovecot, "INBOX")
    assert not any(inbox[m] for m in sent)


def test_imap_server_without_move_is_claimed_by_copy_and_expunge(dovecot, imap_smtp):
    """Against a server that lacks MOVE (RFC 6851), the claim copies, then expunges the
    original: the message ends up once in Claimed and gone from INBOX."""
    box = open_mailbox(dovecot.url, poll_s=0.05)
    assert isinstance(box, ImapMailbox)
    try:
        box._connect()
        box._caps = box._caps - {"MOVE"}  # as an older server would advertise
        to = _address()
        since = time.time()
        sent = send(imap_smtp, to)
        msg = box.wait_for(to=to, subject_contains="confirmacion", since=since, timeout_s=10)
    finally:
        box.close()
    assert msg.message_id == sent
    assert _folder_message_ids(dovecot, CLAIMED_FOLDER)[sent] == 1
    assert _folder_message_ids(dovecot, "INBOX")[sent] == 0


# --- the whole IMSS flow over IMAP ------------------------------------------------------------
@pytest.fixture(scope="module")
def imap_sandbox(dovecot: Dovecot):
    """A sandbox whose SMTP server delivers into the Maildir that Dovecot serves."""
    from fixtures.sandbox import start_sandbox

    with start_sandbox(maildir=dovecot.maildir) as handle:
        yield handle


@pytest.mark.browser
def test_imss_flow_reads_both_emails_over_imap(browser, dovecot, imap_sandbox, tmp_path: Path):
    """The IMSS flow in real Chromium, with MAILBOX_URL pointing at Dovecot: the confirmation
    link and the second email arrive over IMAP, and both end up claimed."""
    from tests.flows.flowkit import BrowserSpy, OracleSolver, check, flow_settings, fresh_curp
    from worker.core.statuses import Status

    curp = fresh_curp()
    # A random CURP is "inconsistent" 3 % of the time (no emails then): this test is about mail.
    imap_sandbox.set_person(curp, imss="not_entitled")
    spy = BrowserSpy(browser)
    settings = flow_settings(imap_sandbox, mailbox_url=dovecot.url, mailbox_poll_s=0.05)
    outcome = check(spy, "imss", curp, settings, tmp_path,
                    solver=OracleSolver(imap_sandbox, spy)).outcome
    assert outcome.status in (Status.ENTITLED, Status.NOT_ENTITLED), outcome.detail
    assert outcome.facts is not None and outcome.facts.curp == curp
    assert outcome.pdf_path is not None and outcome.pdf_path.read_bytes()[:5] == b"%PDF-"
    address = settings.email_for(curp)
    claimed = _folder_recipients(dovecot, CLAIMED_FOLDER)
    assert claimed[address] == 2  # the confirmation and the constancia, once each
    assert _folder_recipients(dovecot, "INBOX")[address] == 0


def _folder_recipients(dovecot: Dovecot, folder: str) -> Counter[str]:
    """Delivered-To addresses of the messages now in an IMAP folder."""
    conn = _login(dovecot)
    try:
        conn.select(f'"{folder}"', readonly=True)
        typ, data = conn.uid("FETCH", "1:*", "(BODY.PEEK[HEADER.FIELDS (DELIVERED-TO)])")
        found: Counter[str] = Counter()
        for item in data:
            if isinstance(item, tuple) and b":" in item[1]:
                found[item[1].decode().split(":", 1)[1].strip().lower()] += 1
        return found
    finally:
        conn.logout()
