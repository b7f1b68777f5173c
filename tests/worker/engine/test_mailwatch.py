"""The mailbox watcher (worker/engine/mailwatch.py) and the waits it serves (worker/storage/waiting.py): real
SQLite, a real Maildir, a real Dovecot IMAP server; two watchers in two processes race for the
same messages."""

from __future__ import annotations

import multiprocessing as mp
import os
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.dovecot import Dovecot
from tests.people import synthetic_curps
from worker.core.settings import load_settings
from worker.engine.mailwatch import ImapSource, MaildirSource, _idle, open_source, watch_once
from worker.storage.repository import Storage
from worker.storage.waiting import MailClaim, MailWait, Waits, wait_ends

MX = ZoneInfo("America/Mexico_City")


@pytest.fixture(scope="module")
def dovecot() -> Dovecot:
    server = Dovecot()
    server.start()
    yield server
    server.stop()


def _storage(tmp_path: Path) -> Storage:
    storage = Storage(f"sqlite:///{tmp_path / 'db.sqlite'}")
    storage.migrate()
    return storage


def _waiting_checks(storage: Storage, tmp_path: Path, n: int) -> dict[int, str]:
    """A batch of ``n`` IMSS checks, each past step 1: waiting for its email. id → address."""
    curps = synthetic_curps(n, seed=int(time.time() * 1000) % 100000)
    bid = storage.create_batch(key=uuid.uuid4().hex, source_name="t.xlsx", portals=["imss"],
                               columns=[], out_dir=tmp_path / "out",
                               rows=[{"row_number": i + 2, "value": c, "curp": c}
                                     for i, c in enumerate(curps)])
    waits = Waits(storage)
    sent = datetime.now(UTC) - timedelta(seconds=30)
    out = {}
    for check in storage.checks(bid):
        storage.start_check(check.id, "t1")
        address = f"constancias+{check.curp.lower()}@empresa.example"
        assert waits.start(check.id, address=address, sent_at=sent, attempt=0,
                           expires_at=sent + timedelta(hours=1))
        out[check.id] = address
    return out


def _deliver(folder: Path, to: str, *, link: bool = True, pdf: bytes | None = None) -> str:
    """A message file as an MTA delivers it (tmp/ then new/); its Message-ID."""
    msg = EmailMessage()
    msg["From"] = "IMSS Digital <noreply@imss.gob.mx>"
    msg["To"] = to
    msg["Subject"] = "Confirmación de trámite"
    msg["Message-ID"] = mid = make_msgid(domain="imss.gob.mx")
    token = uuid.uuid4().hex
    body = f"Siga la liga: https://imss.example/x/confirmacionUrl?token={token}&correo={to}\n"
    msg.set_content(body if link else "Su constancia va adjunta.\n")
    if pdf is not None:
        msg.add_attachment(pdf, maintype="application", subtype="pdf", filename="c.pdf")
    for sub in ("tmp", "new", "cur"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    name = f"{time.time():.6f}.{uuid.uuid4().hex}.test"
    (folder / "tmp" / name).write_bytes(msg.as_bytes())
    os.rename(folder / "tmp" / name, folder / "new" / name)
    return mid


def _files(folder: Path) -> list[Path]:
    return [p for sub in ("new", "cur") if (folder / sub).is_dir()
            for p in (folder / sub).iterdir()]


def _race(db_url: str, mailbox_url: str, out: mp.Queue, go: mp.Event, deadline: float) -> None:
    """One watcher process: rounds of ``watch_once`` until no check waits for email 1."""
    settings = load_settings(database_url=db_url, mailbox_url=mailbox_url, mailbox_poll_s=0.05)
    storage = Storage(db_url)
    waits = Waits(storage)
    source = open_source(settings)
    got: list[int] = []
    go.wait(30)
    while time.time() < deadline:
        watch_once(waits, source, lambda cid, _a: got.append(cid))
        if not any(w.stage == "mail1" for w in waits.watched()):
            break
        source.wait(0.05)
    source.close()
    out.put(got)


@pytest.mark.parametrize("kind", ["maildir", "imap"])
def test_each_email_is_claimed_by_exactly_one_of_two_watchers(
        kind: str, tmp_path: Path, dovecot: Dovecot) -> None:
    """Two watcher processes on one mailbox and one database: every waiting check gets its
    link, each message is taken once (one claim row, one copy in Claimed, the inbox empty),
    and each check's next step is scheduled once, by one watcher."""
    storage = _storage(tmp_path)
    checks = _waiting_checks(storage, tmp_path, 12)
    if kind == "maildir":
        maildir = tmp_path / "mail"
        maildir.mkdir()
        url = f"maildir://{maildir}"
    else:
        maildir = dovecot.maildir
        for old in _files(maildir) + _files(maildir / ".Claimed"):
            old.unlink()
        url = dovecot.url
    ctx = mp.get_context("spawn")
    out, go = ctx.Queue(), ctx.Event()
    deadline = time.time() + 120
    procs = [ctx.Process(target=_race, args=(storage.url, url, out, go, deadline))
             for _ in range(2)]
    for p in procs:
        p.start()
    time.sleep(1.0)  # both polling (or idling) before the mail comes
    go.set()
    mids = {_deliver(maildir, address): cid for cid, address in checks.items()}
    got = [out.get(timeout=150) for _ in procs]
    for p in procs:
        p.join(30)
    everything = got[0] + got[1]
    assert sorted(everything) == sorted(checks), got  # each scheduled once, none left out
    waits = Waits(storage)
    for cid, address in checks.items():
        row = waits.get(cid)
        assert row.stage == "link" and row.link and "confirmacionUrl" in row.link
        assert address in row.link  # its own message's link, not another check's
    with storage.session() as s:
        claims = {c.key: c.check_id for c in s.query(MailClaim)}
    assert claims == mids
    assert _files(maildir) == []
    assert len(_files(maildir / ".Claimed")) == len(checks)


def test_maildir_watcher_reads_the_junk_folder_and_takes_the_second_email(
        tmp_path: Path) -> None:
    """Mail that landed in spam (``.Junk``) is found; a check whose link was opened takes the
    second email's PDF; a message to an address nobody waits for is left alone."""
    storage = _storage(tmp_path)
    (a, addr_a), (b, addr_b) = _waiting_checks(storage, tmp_path, 2).items()
    maildir = tmp_path / "mail"
    junk = maildir / ".Junk"
    for sub in ("new", "cur", "tmp"):
        (junk / sub).mkdir(parents=True)
    source = MaildirSource(maildir, None, 0.05)
    assert junk in source.folders
    waits = Waits(storage)
    _deliver(junk, addr_a)
    _deliver(maildir, "otra+persona@empresa.example")
    assert watch_once(waits, source, lambda *_: None) == [a]
    assert waits.get(a).stage == "link" and waits.get(b).stage == "mail1"
    assert len(_files(maildir)) == 1  # the stranger's message stays

    # a's step 2 opened the link and found no PDF on the page: the second email brings it.
    assert not waits.link_tried(a)
    assert waits.wait_second(a)
    _deliver(junk, addr_a, link=False, pdf=b"%PDF-1.4 test")
    assert watch_once(waits, source, lambda *_: None) == [a]
    row = waits.get(a)
    assert row.stage == "ready" and row.pdf == b"%PDF-1.4 test"
    # An email without a link for a check waiting for its link (a late second email of an
    # earlier attempt) is put away, and the check still waits.
    _deliver(maildir, addr_b, link=False, pdf=b"%PDF-1.4 old")
    assert watch_once(waits, source, lambda *_: None) == []
    assert waits.get(b).stage == "mail1"
    assert len(_files(maildir)) == 1 and _files(junk) == []


def test_imap_watcher_reads_the_junk_folder_and_idle_wakes_on_new_mail(
        tmp_path: Path, dovecot: Dovecot) -> None:
    """Over IMAP (Dovecot): the junk folder is found by LIST and read; IDLE on the inbox
    returns as soon as a message is delivered (not at its timeout)."""
    storage = _storage(tmp_path)
    (a, addr_a), (b, addr_b) = _waiting_checks(storage, tmp_path, 2).items()
    maildir = dovecot.maildir
    for old in _files(maildir) + _files(maildir / ".Claimed") + _files(maildir / ".Junk"):
        old.unlink()
    junk = maildir / ".Junk"
    for sub in ("new", "cur", "tmp"):
        (junk / sub).mkdir(parents=True, exist_ok=True)
    (junk / "maildirfolder").touch()
    if os.geteuid() == 0:
        owner = maildir.stat()
        for item in (junk, *junk.iterdir()):
            os.chown(item, owner.st_uid, owner.st_gid)
    settings = load_settings(database_url=storage.url, mailbox_url=dovecot.url)
    source = open_source(settings)
    assert isinstance(source, ImapSource)
    waits = Waits(storage)
    _deliver(junk, addr_a)
    assert watch_once(waits, source, lambda *_: None) == [a]
    assert "Junk" in source.folders
    assert waits.get(a).stage == "link"

    conn = source._conn()
    assert "IDLE" in source.box._caps
    source.box._select(conn, source.box.folder)
    timer = threading.Timer(0.5, lambda: _deliver(maildir, addr_b))
    timer.start()
    assert _idle(conn, 60.0) is True  # woken by the new message, not by the 60 s timeout
    timer.join()
    assert watch_once(waits, source, lambda *_: None) == [b]
    source.close()


def test_a_message_claimed_by_a_watcher_that_died_is_put_away_after_the_grace(
        tmp_path: Path) -> None:
    """A message claimed (stored) but still in the inbox belongs to its claimer for
    ``archive_grace_s`` (a run's lease): another watcher leaves it there, then puts it away
    once, without claiming it again or scheduling anything."""
    storage = _storage(tmp_path)
    (a, addr_a), = _waiting_checks(storage, tmp_path, 1).items()
    maildir = tmp_path / "mail"
    mid = _deliver(maildir, addr_a)
    waits = Waits(storage)
    assert waits.claim_link(a, mid, "https://imss.example/x/confirmacionUrl?token=t")
    source = MaildirSource(maildir, None, 0.05)  # ... and that watcher died before moving it
    assert watch_once(waits, source, lambda *_: None, archive_grace_s=60) == []
    assert len(_files(maildir)) == 1  # left to its claimer
    time.sleep(1.1)
    assert watch_once(waits, source, lambda *_: None, archive_grace_s=1) == []
    assert _files(maildir) == [] and len(_files(maildir / ".Claimed")) == 1
    with storage.session() as s:
        assert [(c.key, c.check_id) for c in s.query(MailClaim)] == [(mid, a)]


def test_a_wait_ends_at_its_timeout_or_at_the_end_of_the_mexico_city_day(
        tmp_path: Path) -> None:
    """The link only works on the day it was sent: a wait never outlives that day; a wait
    that ran out is scheduled once (its check is retried or given up by the engine)."""
    late = datetime(2026, 12, 3, 23, 50, tzinfo=MX)
    assert wait_ends(late, 86400, MX) == datetime(2026, 12, 4, 0, 0, tzinfo=MX)
    early = datetime(2026, 12, 3, 9, 0, tzinfo=MX)
    assert wait_ends(early, 600, MX) == early + timedelta(seconds=600)

    storage = _storage(tmp_path)
    (a, _), (b, _) = _waiting_checks(storage, tmp_path, 2).items()
    with storage.session() as s:
        s.get(MailWait, a).expires_at = datetime.now(UTC) - timedelta(seconds=1)
    waits = Waits(storage)
    source = MaildirSource(tmp_path / "mail", None, 0.05)
    assert watch_once(waits, source, lambda *_: None) == [a]
    assert waits.get(a).stage == "expired" and waits.get(b).stage == "mail1"
    assert watch_once(waits, source, lambda *_: None) == []  # once
    assert storage.progress(storage.get_check(a).batch_id)["imss"]["waiting"] == 1


def test_first_email_that_arrives_before_its_wait_is_stored_is_kept_for_it(
        tmp_path: Path) -> None:
    """Instant mail can arrive before step 1 stores the portal's answer. Step 1 stores its row
    (``sending``) before it sends the form, so even when the other waits for that address are
    finished (the same person checked earlier today) the message is not put away as nobody's:
    the new check claims its link as soon as its wait is stored."""
    storage = _storage(tmp_path)
    (earlier, address), = _waiting_checks(storage, tmp_path, 1).items()
    waits = Waits(storage)
    waits.finish(earlier)  # the morning's check has its result
    curp = address.split("+", 1)[1].split("@", 1)[0].upper()
    bid = storage.create_batch(key=uuid.uuid4().hex, source_name="r.xlsx", portals=["imss"],
                               columns=[], out_dir=tmp_path / "out2",
                               rows=[{"row_number": 2, "value": curp, "curp": curp}])
    (again,) = [c.id for c in storage.checks(bid)]
    storage.start_check(again, "t2")
    maildir = tmp_path / "Maildir"
    source = MaildirSource(maildir, None, poll_s=0.05)
    sent = datetime.now(UTC) - timedelta(seconds=2)
    waits.sending(again, address=address, sent_at=sent, attempt=0,
                  expires_at=sent + timedelta(hours=1))  # what the engine does before step 1
    _deliver(maildir, address)  # step 1's answer is not stored yet

    assert watch_once(waits, source, lambda *_: None) == []
    assert len(_files(maildir)) == 1  # still in the inbox, not put away

    assert waits.start(again, address=address, sent_at=sent, attempt=0,
                       expires_at=sent + timedelta(hours=1))
    assert watch_once(waits, source, lambda *_: None) == [again]
    assert waits.get(again).stage == "link" and _files(maildir) == []


def test_a_message_left_for_a_check_still_sending_is_reported_for_a_quick_next_round(
        tmp_path: Path) -> None:
    """The round tells its caller of a message it left for a check still sending its form
    (its wait becomes ``mail1`` a moment later: IDLE would not wake for it again), and not of
    one it claimed."""
    storage = _storage(tmp_path)
    (check_id, address), (sending, other) = _waiting_checks(storage, tmp_path, 2).items()
    waits = Waits(storage)
    waits.drop(sending)
    sent = datetime.now(UTC) - timedelta(seconds=2)
    waits.sending(sending, address=other, sent_at=sent, attempt=0,
                  expires_at=sent + timedelta(hours=1))
    maildir = tmp_path / "Maildir"
    source = MaildirSource(maildir, None, poll_s=0.05)
    _deliver(maildir, other)  # email 1 before the form's answer is stored
    fresh: list[str] = []
    assert watch_once(waits, source, lambda *_: None, fresh) == []
    assert len(fresh) == 1
    _deliver(maildir, address)
    fresh = []
    assert watch_once(waits, source, lambda *_: None, fresh) == [check_id]
    assert len(fresh) == 1  # only the first message, still left for its check


def test_email_to_an_address_whose_waits_all_ended_is_put_away(tmp_path: Path) -> None:
    """Nobody sends a form to the address (no ``sending`` row) and its only wait ended: a new
    message to it, however fresh, is a late email nobody needs; it is claimed once and put
    away at once instead of piling up in the inbox."""
    storage = _storage(tmp_path)
    (earlier, address), = _waiting_checks(storage, tmp_path, 1).items()
    waits = Waits(storage)
    waits.finish(earlier)
    maildir = tmp_path / "Maildir"
    source = MaildirSource(maildir, None, poll_s=0.05)
    mid = _deliver(maildir, address, link=False, pdf=b"%PDF-1.4 late")
    assert watch_once(waits, source, lambda *_: None) == []
    assert _files(maildir) == [] and len(_files(maildir / ".Claimed")) == 1
    with storage.session() as s:
        assert [(c.key, c.check_id) for c in s.query(MailClaim)] == [(mid, earlier)]


def test_imap_watcher_finds_the_junk_folder_by_its_special_use_attribute(
        tmp_path: Path) -> None:
    """A Dovecot whose junk folder has a name the watcher does not know ("Indeseados") but is
    marked ``\\Junk`` (RFC 6154 SPECIAL-USE): LIST gives the watcher that folder, and email 1
    delivered there is claimed for its check; a folder merely named "Junk" is not read then."""
    with Dovecot(special_use={"Indeseados": "\\Junk"}) as server:
        maildir = server.maildir
        junk, named = maildir / ".Indeseados", maildir / ".Junk"
        for folder in (junk, named):
            for sub in ("new", "cur", "tmp"):
                (folder / sub).mkdir(parents=True, exist_ok=True)
            (folder / "maildirfolder").touch()
        if os.geteuid() == 0:
            owner = maildir.stat()
            for folder in (junk, named):
                for item in (folder, *folder.iterdir()):
                    os.chown(item, owner.st_uid, owner.st_gid)
        storage = _storage(tmp_path)
        (a, addr_a), = _waiting_checks(storage, tmp_path, 1).items()
        source = open_source(load_settings(database_url=storage.url, mailbox_url=server.url))
        assert isinstance(source, ImapSource)
        waits = Waits(storage)
        _deliver(junk, addr_a)
        assert watch_once(waits, source, lambda *_: None) == [a]
        assert "SPECIAL-USE" in source.box._caps
        assert source.folders == ["INBOX", "Indeseados"]
        assert waits.get(a).stage == "link" and _files(junk) == []
        source.close()


def test_email_older_than_every_wait_for_its_address_is_put_away(tmp_path: Path) -> None:
    """Email 1 of a step 1 that died (its check sent again, its row written anew after the
    message came) is needed by nobody: it is claimed once and put away, and the check's new
    wait still takes the email 1 that comes after it."""
    storage = _storage(tmp_path)
    (check, address), = _waiting_checks(storage, tmp_path, 1).items()
    maildir = tmp_path / "Maildir"
    source = MaildirSource(maildir, None, poll_s=0.05)
    waits = Waits(storage)
    old = _deliver(maildir, address)
    os.utime(_files(maildir)[0], (time.time() - 20, time.time() - 20))  # it came 20 s ago
    sent = datetime.now(UTC) - timedelta(seconds=5)
    waits.sending(check, address=address, sent_at=sent, attempt=1,
                  expires_at=sent + timedelta(hours=1))
    assert watch_once(waits, source, lambda *_: None) == []
    assert _files(maildir) == []
    with storage.session() as s:
        assert [(c.key, c.check_id) for c in s.query(MailClaim)] == [(old, check)]
    assert waits.start(check, address=address, sent_at=sent, attempt=1,
                       expires_at=sent + timedelta(hours=1))
    _deliver(maildir, address)
    assert watch_once(waits, source, lambda *_: None) == [check]
