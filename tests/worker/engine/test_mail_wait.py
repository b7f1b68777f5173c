"""IMSS checks that wait for their email hold no browser and no slot (SPEC §7): the embedded
engine and the distributed workers, real Chromium against the sandbox with slow mail, real
Redis, real SQLite, the sandbox's real Maildir. Crash safety (issue 22): a worker is killed -9
while its checks wait, during step 1 (the form sent, its answer not yet back), during step 2
(the link's token spent, its page not yet back) and while its watcher holds a claimed message
it has neither put away nor scheduled; another worker then finishes every check, once, from
at most the portal's two daily queries."""

from __future__ import annotations

import os
import signal
import time
from email import message_from_bytes
from pathlib import Path

import pytest

from tests.people import expected, synthetic_curps, write_sheet
from tests.worker.engine.test_distributed import Cluster
from worker.core.settings import load_settings
from worker.engine.executor import executor_for
from worker.interfaces.commands import sandbox_settings
from worker.services.batches import open_storage, prepare_batch
from worker.storage.repository import Storage
from worker.storage.waiting import MailClaim, MailWait

pytestmark = pytest.mark.browser


def _waits(storage: Storage, batch_id: str) -> dict[int, MailWait]:
    with storage.session() as s:
        return {w.check_id: w for w in s.query(MailWait).filter(MailWait.batch_id == batch_id)}


def _until(condition, what: str, timeout: float = 180):
    """Poll ``condition`` until it is truthy (its value), else fail saying ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := condition():
            return found
        time.sleep(0.3)
    raise AssertionError(f"never happened: {what}")


def _messages(folder: Path, curps: list[str]) -> list[Path]:
    """The messages of a Maildir folder to these CURPs' addresses (a late email of an earlier
    test, to other people, may still come into the session's sandbox mailbox)."""
    mine = [c.lower() for c in curps]
    found = []
    for path in (p for sub in ("new", "cur") if (folder / sub).is_dir()
                 for p in (folder / sub).iterdir()):
        try:
            to = str(message_from_bytes(path.read_bytes())["To"]).lower()
        except FileNotFoundError:
            continue  # moved by a watcher meanwhile
        if any(c in to for c in mine):
            found.append(path)
    return found


def _claims(storage: Storage) -> list[tuple[str, int | None]]:
    with storage.session() as s:
        return [(c.key, c.check_id) for c in s.query(MailClaim)]


def _put_away(sandbox, curps: list[str], count: int, timeout: float = 120) -> None:
    """Wait until the inbox holds none of these CURPs' messages and ``.Claimed`` holds
    ``count`` of them. Email 2 comes ``email_delay_s`` after step 2 (the check may be done
    before it is sent), so an empty inbox alone does not show that every message came."""
    _until(lambda: _messages(sandbox.maildir, curps) == []
           and len(_messages(sandbox.maildir / ".Claimed", curps)) >= count,
           f"{count} messages put away", timeout=timeout)


def _finished_once(cluster: Cluster, sandbox, batch_id: str, curps: list[str], *,
                   queries: int) -> None:
    """Every check has its right status and its PDF, one check (one result) per CURP, each
    CURP queried ``queries`` times (at most the portal's two a day) and one constancia made."""
    st = cluster.wait_done(batch_id, timeout=300)
    assert sorted(r["curp"] for r in st["results"]) == sorted(curps)
    for r in st["results"]:
        assert r["status"] == expected(r["curp"])["imss"], r
        assert r["pdf"] and Path(r["pdf"]).is_file()
    checks = cluster.storage().checks(batch_id)
    assert len(checks) == len(curps) and all(c.finished_at for c in checks)
    stats = sandbox.stats("imss")
    for curp in curps:
        assert stats["queries"].get(curp) == queries <= 2, stats
        assert stats["constancias"].get(curp) == 1, stats
    assert st["waiting"] == 0


def _constancia_curps(n: int, seed: int) -> list[str]:
    """CURPs whose IMSS check gives a constancia (so it waits for its email)."""
    return [c for c in synthetic_curps(n * 4, seed=seed)
            if expected(c)["imss"] in ("not_entitled", "entitled")][:n]


def test_embedded_engine_with_slow_mail_finishes_other_checks_meanwhile(
        sandbox, tmp_path: Path) -> None:
    """One worker process (K=1), IMSS mail 20 s late: the ISSSTE checks run while the IMSS
    checks wait for their email (each ISSSTE check ends inside an IMSS check's wait, which the
    design before could not do: its IMSS check held the only slot), the progress shows them
    waiting, and every IMSS check ends with its verdict from one query."""
    sandbox.set_faults("imss", email_delay_s=20)
    settings = sandbox_settings(load_settings(concurrency=1, data_dir=tmp_path / "data",
                                              mailbox_poll_s=0.2), sandbox)
    assert settings.imss_mail_wait == "watch"
    storage = open_storage(settings)
    curps = _constancia_curps(2, seed=2201)
    batch_id, _ = prepare_batch(settings, storage, write_sheet(tmp_path / "a.xlsx", curps),
                                ["imss", "issste"])
    seen: list[dict] = []
    executor_for(settings, storage).run_to_end(
        batch_id, progress=lambda p: seen.append({k: dict(v) for k, v in p.per_portal.items()}))
    checks = storage.checks(batch_id)
    for c in checks:
        assert c.status == expected(c.curp)[c.portal], c.detail
    for curp in curps:
        assert sandbox.stats("imss")["queries"].get(curp) == 1
    waits = _waits(storage, batch_id)
    imss = [c for c in checks if c.portal == "imss"]
    assert {c.id for c in imss} == set(waits)
    assert all(w.stage == "done" for w in waits.values())
    spans = [(waits[c.id].sent_at, c.finished_at) for c in imss]
    for c in checks:
        if c.portal == "issste":
            assert any(start < c.finished_at < end for start, end in spans), (c.finished_at,
                                                                             spans)
    assert any(p["imss"].get("waiting", 0) >= 1 for p in seen)
    assert all(Path(c.pdf_path).is_file() for c in imss)


def test_a_check_waiting_when_its_worker_is_killed_is_finished_by_another(
        sandbox, tmp_path: Path) -> None:
    """kill -9 of the only worker (its whole process group) while its IMSS checks wait for
    their email: a worker started afterwards finishes them, from the one query each made."""
    sandbox.set_faults("imss", email_delay_s=25)
    cluster = Cluster(tmp_path, sandbox)
    try:
        curps = _constancia_curps(2, seed=2202)
        victim = cluster.start_worker(2)
        proc = cluster.cli("submit", str(write_sheet(tmp_path / "h.xlsx", curps)),
                           "--portals", "imss")
        assert proc.returncode == 0, proc.stderr
        batch_id = proc.stdout.strip().splitlines()[-1]
        storage = cluster.storage()
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            waits = _waits(storage, batch_id)
            if len(waits) == len(curps) and all(w.stage == "mail1" for w in waits.values()):
                break
            time.sleep(0.3)
        else:
            raise AssertionError(f"the checks did not come to wait for mail: {waits}")
        assert cluster.status(batch_id)["waiting"] == len(curps)
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait(30)
        cluster.start_worker(2)
        st = cluster.wait_done(batch_id, timeout=300)
        for r in st["results"]:
            assert r["status"] == expected(r["curp"])["imss"], r
            assert r["pdf"] and Path(r["pdf"]).is_file()
        for curp in curps:
            assert sandbox.stats("imss")["queries"].get(curp) == 1
            assert sandbox.stats("imss")["constancias"].get(curp) == 1
        assert st["waiting"] == 0
    finally:
        cluster.close()


def test_a_worker_killed_while_its_step_2_has_the_link_page_open_loses_nothing(
        sandbox, tmp_path: Path) -> None:
    """kill -9 of the worker while step 2 holds the link page open, the link's token already
    spent (the constancia made, email 2 on its way; the page's answer held by the sandbox's
    ``link_delay_s``): another worker does not query again — its step 2 knows the link was
    opened, so the refused token means "wait for email 2" — and records each check once from
    email 2's PDF; both emails of each check are claimed once and put away."""
    sandbox.set_faults("imss", email_delay_s=6, link_delay_s=60)
    cluster = Cluster(tmp_path, sandbox)
    try:
        curps = _constancia_curps(2, seed=2203)
        victim = cluster.start_worker(2)
        proc = cluster.cli("submit", str(write_sheet(tmp_path / "h.xlsx", curps)),
                           "--portals", "imss")
        assert proc.returncode == 0, proc.stderr
        batch_id = proc.stdout.strip().splitlines()[-1]
        storage = cluster.storage()
        _until(lambda: all(sandbox.stats("imss")["constancias"].get(c) == 1 for c in curps),
               "both step 2 opened their link (tokens spent)")
        waits = _waits(storage, batch_id)
        assert all(w.stage == "link" and w.link_tried_at for w in waits.values()), waits
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait(30)
        cluster.start_worker(2)
        _finished_once(cluster, sandbox, batch_id, curps, queries=1)
        assert len(_claims(storage)) == 2 * len(curps)  # email 1 and email 2 of each, once
        assert _messages(sandbox.maildir, curps) == []
        assert len(_messages(sandbox.maildir / ".Claimed", curps)) == 2 * len(curps)
    finally:
        cluster.close()


def test_a_worker_killed_after_its_watcher_claimed_a_message_it_had_not_put_away(
        sandbox, tmp_path: Path) -> None:
    """kill -9 of the worker whose watcher has claimed each check's email 1 (stored: the
    check in ``link``) but neither put it away nor scheduled step 2: the Maildir refuses the
    move (``.Claimed/cur`` is not a folder), which holds the watcher there. Another worker's
    sweeper sends the due step 2, its watcher puts each message away once the claim is older
    than the lease (``LEASE_S``, 15 s here); each check is recorded once, from its one query, and no message
    is claimed twice."""
    sandbox.set_faults("imss", email_delay_s=15)
    cluster = Cluster(tmp_path, sandbox)
    claimed_cur = sandbox.maildir / ".Claimed" / "cur"
    kept = claimed_cur.with_name("cur.kept")
    try:
        curps = _constancia_curps(2, seed=2204)
        victim = cluster.start_worker(2)
        proc = cluster.cli("submit", str(write_sheet(tmp_path / "h.xlsx", curps)),
                           "--portals", "imss")
        assert proc.returncode == 0, proc.stderr
        batch_id = proc.stdout.strip().splitlines()[-1]
        storage = cluster.storage()
        _until(lambda: len(w := _waits(storage, batch_id)) == len(curps)
               and all(r.stage == "mail1" for r in w.values()), "both checks wait for mail")
        claimed_cur.rename(kept)
        claimed_cur.write_bytes(b"")  # the watcher's rename into it fails from now on
        _until(lambda: all(w.stage == "link" for w in _waits(storage, batch_id).values()),
               "the watcher claimed both emails 1")
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait(30)
        assert len(_messages(sandbox.maildir, curps)) == len(curps)  # claimed, not put away
        assert len(_claims(storage)) == len(curps)
        steps = [line for line in (tmp_path / "worker0.log").read_text().splitlines()
                 if "check_started" in line and '"step": "link"' in line]
        assert steps == []  # no step 2 ran before the kill: nobody scheduled one
        claimed_cur.unlink()
        kept.rename(claimed_cur)
        cluster.start_worker(2)
        _finished_once(cluster, sandbox, batch_id, curps, queries=1)
        _put_away(sandbox, curps, 2 * len(curps))
        # email 1 and email 2 (the page gave the PDF: put away as nobody's), each once
        assert len(_claims(storage)) == 2 * len(curps)
        assert len(_messages(sandbox.maildir / ".Claimed", curps)) == 2 * len(curps)
    finally:
        if claimed_cur.is_file():
            claimed_cur.unlink()
            kept.rename(claimed_cur)
        cluster.close()


def test_a_worker_killed_while_step_1_waits_for_the_forms_answer_loses_nothing(
        sandbox, tmp_path: Path) -> None:
    """kill -9 of the worker while step 1 waits for the answer to a form the portal already
    took (the query counted, email 1 arrived; the answer held by ``submit_delay_s``): the
    check's row is ``sending``, so the watcher left email 1 in the inbox; another worker's
    sweeper runs the check again once its lease ran out, and it ends once, with the PDF,
    from two queries (the portal's daily limit), never a third."""
    sandbox.set_faults("imss", submit_delay_s=60)
    cluster = Cluster(tmp_path, sandbox)
    try:
        curps = _constancia_curps(2, seed=2205)
        victim = cluster.start_worker(2)
        proc = cluster.cli("submit", str(write_sheet(tmp_path / "h.xlsx", curps)),
                           "--portals", "imss")
        assert proc.returncode == 0, proc.stderr
        batch_id = proc.stdout.strip().splitlines()[-1]
        storage = cluster.storage()
        _until(lambda: len(_messages(sandbox.maildir, curps)) == len(curps),
               "both emails 1 arrived while step 1 waits for the form's answer")
        time.sleep(2.0)  # rounds of the watcher (every mailbox_poll_s) with the mail there
        waits = _waits(storage, batch_id)
        assert len(waits) == len(curps) and all(w.stage == "sending" for w in waits.values())
        assert _claims(storage) == []  # left for the checks, not put away as nobody's
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait(30)
        sandbox.set_faults("imss", submit_delay_s=0)
        cluster.start_worker(2)
        _finished_once(cluster, sandbox, batch_id, curps, queries=2)
        # The dead step 1's email 1 came before the new wait: put away as nobody's, like the
        # second email (the page gave the PDF); each of the three messages claimed once.
        _put_away(sandbox, curps, 3 * len(curps))
        assert len(_claims(storage)) == 3 * len(curps)
        assert len(_messages(sandbox.maildir / ".Claimed", curps)) == 3 * len(curps)
    finally:
        cluster.close()
