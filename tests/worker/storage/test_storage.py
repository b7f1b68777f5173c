"""Storage: idempotent recording, completion derived from stored results, on SQLite and
PostgreSQL alike."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from worker.storage.repository import Busy, Skipped, Started, Storage, utcnow

CURPS = ["GODE561231HDFRRN09", "PEGJ900101MDFRRN05"]
PG_ADMIN = os.environ.get("CONSTANCIAS_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    """A throw-away PostgreSQL database on the machine's server (127.0.0.1:5432)."""
    name = f"constancias_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    yield PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    import worker.storage.repository as st

    for url, eng in list(st._engines.items()):
        if name in url:
            eng.dispose()
            del st._engines[url]
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def storage(request, tmp_path: Path) -> Storage:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    st = Storage(url)
    st.migrate()
    if request.param == "postgresql":
        with st.engine.begin() as c:
            c.execute(text("TRUNCATE checks, rows, people, batches CASCADE"))
    return st


def _batch(storage: Storage, tmp_path: Path, kind: str = "upload") -> str:
    rows = [
        {"row_number": 3, "value": CURPS[0], "curp": CURPS[0], "reason": None, "duplicate_of": None, "extra": {"Nombre": "Ana"}},
        {"row_number": 4, "value": "XXX", "curp": None, "reason": "Longitud", "duplicate_of": None, "extra": {}},
        {"row_number": 5, "value": CURPS[1], "curp": CURPS[1], "reason": None, "duplicate_of": None, "extra": {}},
        {"row_number": 6, "value": CURPS[0], "curp": CURPS[0], "reason": None, "duplicate_of": 3, "extra": {}},
    ]
    return storage.create_batch(key="k", source_name="h.xlsx", portals=["imss", "issste"],
                                columns=["Nombre"], out_dir=tmp_path, rows=rows, kind=kind)


def test_one_check_per_distinct_valid_curp_and_portal(storage: Storage, tmp_path: Path) -> None:
    """Invalid and duplicate rows create no checks; every valid CURP gets one per portal."""
    bid = _batch(storage, tmp_path)
    assert len(storage.pending_check_ids(bid)) == 4
    assert storage.progress(bid) == {"imss": {"total": 2, "done": 0, "waiting": 0},
                                     "issste": {"total": 2, "done": 0, "waiting": 0}}
    assert [r.row_number for r in storage.rows(bid)] == [3, 4, 5, 6]


def test_a_result_is_recorded_once(storage: Storage, tmp_path: Path) -> None:
    """A second record of the same check (a redelivered task) changes nothing."""
    bid = _batch(storage, tmp_path)
    cid = storage.pending_check_ids(bid)[0][0]
    assert isinstance(storage.start_check(cid, "t1"), Started)
    assert storage.record_result(cid, status="not_entitled", detail="ok")
    assert not storage.record_result(cid, status="error", detail="late duplicate")
    assert storage.get_check(cid).status == "not_entitled"
    assert isinstance(storage.start_check(cid, "t2"), Skipped)


def test_report_is_claimed_by_exactly_one_caller_when_complete(storage: Storage, tmp_path: Path) -> None:
    """Until every check has a status nobody may write the report; then exactly one may."""
    bid = _batch(storage, tmp_path)
    ids = [i for i, _ in storage.pending_check_ids(bid)]
    for i in ids[:-1]:
        storage.record_result(i, status="not_affiliated", detail="")
    assert not storage.claim_report(bid)
    storage.record_result(ids[-1], status="affiliated", detail="")
    assert [storage.claim_report(bid) for _ in range(3)] == [True, False, False]


def test_reusable_result_is_found_for_same_curp_and_portal_today(storage: Storage, tmp_path: Path) -> None:
    """Today's verdict from another batch is offered for reuse; older ones are not."""
    b1 = _batch(storage, tmp_path)
    cid = next(i for i, p in storage.pending_check_ids(b1) if p == "imss")
    storage.start_check(cid, None)
    storage.record_result(cid, status="entitled", detail="")
    since = utcnow() - timedelta(hours=1)
    found = storage.reusable_result(CURPS[0], "imss", since, frozenset({"entitled"}))
    assert found is not None and found.id == cid
    assert storage.reusable_result(CURPS[0], "imss", utcnow() + timedelta(seconds=5), frozenset({"entitled"})) is None
    assert storage.reusable_result(CURPS[0], "issste", since, frozenset({"entitled"})) is None


def test_history_keeps_every_result(storage: Storage, tmp_path: Path) -> None:
    """Two batches give two results for the same person; the previous one is retrievable."""
    b1 = _batch(storage, tmp_path)
    c1 = next(i for i, p in storage.pending_check_ids(b1) if p == "imss")
    storage.record_result(c1, status="not_entitled", detail="")
    b2 = _batch(storage, tmp_path, kind="recheck")
    c2 = next(i for i, p in storage.pending_check_ids(b2) if p == "imss")
    storage.record_result(c2, status="entitled", detail="")
    assert [c.status for c in storage.history(CURPS[0], "imss")] == ["not_entitled", "entitled"]
    assert storage.previous_result(CURPS[0], "imss", c2).id == c1


def test_people_can_be_deactivated(storage: Storage, tmp_path: Path) -> None:
    """Deactivated people stay stored with active=False."""
    _batch(storage, tmp_path)
    assert storage.set_active([CURPS[0]], False) == 1
    assert {p.curp: p.active for p in storage.people()} == {CURPS[0]: False, CURPS[1]: True}


def test_migrations_are_idempotent(storage: Storage) -> None:
    """Running the migrations again on an up-to-date schema does nothing."""
    storage.migrate()
    with storage.engine.connect() as c:
        from alembic.script import ScriptDirectory

        from worker.storage.migrate import alembic_config

        head = ScriptDirectory.from_config(alembic_config(storage.url)).get_current_head()
        assert c.execute(text("select version_num from alembic_version")).scalar() == head


def test_a_leased_check_is_not_started_twice(storage: Storage, tmp_path: Path) -> None:
    """While one worker holds the lease, a redelivered copy gets the seconds to wait."""
    bid = _batch(storage, tmp_path)
    cid = storage.pending_check_ids(bid)[0][0]
    first = storage.start_check(cid, "t1", lease_s=60)
    assert isinstance(first, Started)
    wait = storage.start_check(cid, "t2", lease_s=60)
    assert isinstance(wait, Busy) and 50 < wait.retry_in <= 60
    storage.note_attempt(cid, "503")  # a retry releases the lease
    assert isinstance(storage.start_check(cid, "t3", lease_s=60), Started)


def _expire_lease(storage: Storage, cid: int) -> None:
    from sqlalchemy import update

    from worker.storage.repository import Check

    with storage.session() as s:
        s.execute(update(Check).where(Check.id == cid)
                  .values(lease_until=utcnow() - timedelta(seconds=1)))


def test_a_renewed_lease_keeps_the_check_and_only_its_holder_renews_it(
        storage: Storage, tmp_path: Path) -> None:
    bid = _batch(storage, tmp_path)
    cid = storage.pending_check_ids(bid)[0][0]
    assert isinstance(storage.start_check(cid, "t1", lease_s=5), Started)
    assert storage.renew_lease(cid, "t1", 60)
    wait = storage.start_check(cid, "t2", lease_s=60)
    assert isinstance(wait, Busy) and wait.retry_in > 50  # the renewal, not the first 5 s, counts
    assert not storage.renew_lease(cid, "someone-else", 60)
    storage.record_result(cid, status="not_affiliated", detail="")
    assert not storage.renew_lease(cid, "t1", 60)  # nothing to keep once recorded


def test_orphans_are_dead_leases_and_overdue_tasks_never_queued_or_embedded_ones(
        storage: Storage, tmp_path: Path) -> None:
    """What the sweeper sends again: a check whose lease ran out (its worker died), and — when
    the queue is empty — one overdue with no lease. Not a check running under a live lease,
    not one due later (a retry's countdown), not an embedded one (never due), not a done one."""
    bid = _batch(storage, tmp_path)
    ids = [cid for cid, _ in storage.pending_check_ids(bid)]
    assert len(ids) >= 4
    dead, running, overdue, later = ids[:4]
    embedded = storage.pending_check_ids(_batch(storage, tmp_path))[0][0]
    storage.set_due(ids)
    storage.start_check(dead, "t-dead", lease_s=60)
    _expire_lease(storage, dead)
    storage.start_check(running, "t-run", lease_s=60)
    storage.set_due([overdue], -600)
    storage.set_due([later], 600)
    storage.start_check(embedded, "embedded-1")  # no lease, no due time
    for cid in ids[4:]:
        storage.record_result(cid, status="not_affiliated", detail="")

    assert [c for c, _ in storage.orphans(grace_s=60, queue_empty=False)] == [dead]
    assert sorted(c for c, _ in storage.orphans(grace_s=60, queue_empty=True)) == [dead, overdue]
    # Sent again: due now and unleased, so neither is an orphan until overdue once more.
    assert storage.requeue([dead, overdue, running]) == [dead, overdue]  # running: leased
    assert storage.orphans(grace_s=60, queue_empty=True) == []
    assert isinstance(storage.start_check(dead, "t-new", lease_s=60), Started)
    assert sorted(c for c, _ in storage.orphans(grace_s=0, queue_empty=True)) == [overdue]


def test_a_batch_whose_checks_all_ended_without_a_report_is_found(
        storage: Storage, tmp_path: Path) -> None:
    bid = _batch(storage, tmp_path)
    assert bid not in storage.unreported_complete_batches()
    for cid, _ in storage.pending_check_ids(bid):
        storage.record_result(cid, status="not_affiliated", detail="")
    assert bid in storage.unreported_complete_batches()
    assert storage.claim_report(bid)
    assert bid not in storage.unreported_complete_batches()


def test_a_late_copy_of_an_attempt_already_run_is_dropped(storage: Storage, tmp_path: Path) -> None:
    """Distributed tasks carry their attempt: once attempt 0 has run (and failed), a copy of
    attempt 0 (sent again while the first was only late) starts nothing; attempt 1 does."""
    bid = _batch(storage, tmp_path)
    cid = storage.pending_check_ids(bid)[0][0]
    assert isinstance(storage.start_check(cid, "t1", lease_s=60, attempt=0), Started)
    storage.note_attempt(cid, "503", due_in=5)
    assert storage.get_check(cid).due_at > utcnow()  # the retry is due, in the same write
    assert isinstance(storage.start_check(cid, "t1-copy", lease_s=60, attempt=0), Skipped)
    assert isinstance(storage.start_check(cid, "t2", lease_s=60, attempt=1), Started)
    assert storage.get_check(cid).deliveries == 2  # the stale copy was not a delivery


def test_the_embedded_engine_takes_a_check_out_of_the_sweepers_sight(
        storage: Storage, tmp_path: Path) -> None:
    """A batch sent to the cluster and resumed by `constancias run`: once the embedded engine
    starts a check (no lease), it is no longer a broker task the sweeper would send."""
    bid = _batch(storage, tmp_path)
    cid = storage.pending_check_ids(bid)[0][0]
    storage.set_due([cid], -3600)
    assert [c for c, _ in storage.orphans(grace_s=0, queue_empty=True)] == [cid]
    storage.start_check(cid, "embedded-1")
    assert cid not in [c for c, _ in storage.orphans(grace_s=0, queue_empty=True)]


def test_a_report_claim_older_than_a_task_may_last_is_reclaimed(
        storage: Storage, tmp_path: Path) -> None:
    bid = _batch(storage, tmp_path)
    for cid, _ in storage.pending_check_ids(bid):
        storage.record_result(cid, status="not_affiliated", detail="")
    assert storage.claim_report(bid)
    assert storage.reclaim_stale_reports(3600) == []  # its writer may still be at it
    assert not storage.claim_report(bid)
    assert storage.reclaim_stale_reports(0) == [bid]  # dead writer: claimable again
    assert storage.claim_report(bid)


def test_a_fork_while_another_thread_writes_leaves_the_child_a_working_database(
        tmp_path: Path) -> None:
    """A Celery worker forks a new pool process while its sweeper or mailbox watcher thread
    is inside a write: SQLite's per-process lock state would follow the child, and every
    connection the child opens would stay "database is locked" (or "disk I/O error"). The
    fork waits until the writer's connection is closed; the child then reads and writes."""
    storage = Storage(f"sqlite:///{tmp_path / 'c.db'}")
    storage.migrate()
    writing, forked = threading.Event(), []

    def writer() -> None:
        with storage.session() as s:
            s.execute(text("CREATE TABLE t (x INTEGER)"))
            s.execute(text("INSERT INTO t VALUES (1)"))
            writing.set()
            time.sleep(1.0)  # the fork comes now, the transaction open

    thread = threading.Thread(target=writer)
    thread.start()
    writing.wait(10)
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:  # the child: a new connection must work (exit 0), not stay locked
        code = 1
        try:
            child = Storage(storage.url)
            with child.session() as s:
                s.execute(text("INSERT INTO t VALUES (2)"))
            code = 0
        except BaseException as exc:  # noqa: BLE001 - told to the parent by the file
            (tmp_path / "child.err").write_text(f"{type(exc).__name__}: {exc}")
        finally:
            os._exit(code)
    forked.append(time.monotonic() - started)
    thread.join(10)
    _, status = os.waitpid(pid, 0)
    err = tmp_path / "child.err"
    assert os.waitstatus_to_exitcode(status) == 0, err.read_text() if err.exists() else ""
    assert forked[0] >= 0.5  # the fork waited for the writer's transaction to end
    with storage.session() as s:
        assert sorted(s.execute(text("SELECT x FROM t")).scalars()) == [1, 2]
