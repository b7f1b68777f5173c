"""The lease heartbeat and the sweeper, on real SQLite and a real redis-server (the end-to-end
cases — a worker or Redis lost mid-batch — are in test_distributed.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from sqlalchemy import update

from tests.redis_server import RedisServer
from worker.core.settings import load_settings
from worker.engine.check import _Heartbeat
from worker.engine.sweeper import LOCK_KEY, queue_length, sweep_once
from worker.storage.repository import Check, Started, Storage, utcnow

CURPS = ["GODE561231HDFRRN09", "PEGJ900101MDFRRN05"]


@pytest.fixture
def storage(tmp_path: Path) -> Storage:
    s = Storage(f"sqlite:///{tmp_path / 'c.db'}")
    s.migrate()
    return s


@pytest.fixture
def client(tmp_path: Path) -> Iterator[redis.Redis]:
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield redis.Redis.from_url(server.url)
    server.stop()


def _batch(storage: Storage, tmp_path: Path) -> tuple[str, list[int]]:
    rows = [{"row_number": i + 2, "value": c, "curp": c, "reason": None, "duplicate_of": None,
             "extra": {}} for i, c in enumerate(CURPS)]
    bid = storage.create_batch(key="k", source_name="h.xlsx", portals=["imss", "issste"],
                               columns=[], out_dir=tmp_path, rows=rows)
    return bid, [cid for cid, _ in storage.pending_check_ids(bid)]


def test_the_heartbeat_renews_the_lease_while_the_flow_runs_and_stops_after(
        storage: Storage, tmp_path: Path) -> None:
    _bid, ids = _batch(storage, tmp_path)
    cid = ids[0]
    assert isinstance(storage.start_check(cid, "t1", lease_s=1.5), Started)
    with _Heartbeat(storage, cid, "t1", 1.5):
        time.sleep(3.2)  # twice the lease: only the renewals keep it
        lease = storage.get_check(cid).lease_until
        assert lease is not None and lease > utcnow()
    time.sleep(1.6)
    lease = storage.get_check(cid).lease_until
    assert lease is not None and lease < utcnow()  # no renewals after the flow: it runs out
    assert isinstance(storage.start_check(cid, "t2", lease_s=60), Started)


def test_a_sweep_sends_dead_and_lost_checks_once_and_one_worker_sweeps_at_a_time(
        storage: Storage, client: redis.Redis, tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, lease_s=10, sweep_interval_s=5)
    bid, ids = _batch(storage, tmp_path)
    dead, lost, queued, done = ids
    storage.set_due(ids)
    storage.start_check(dead, "t-dead", lease_s=10)
    with storage.session() as s:  # the worker died 20 s ago; `lost` was due a minute ago
        s.execute(update(Check).where(Check.id == dead)
                  .values(lease_until=utcnow() - timedelta(seconds=20)))
    storage.set_due([lost], -60)
    storage.record_result(done, status="not_affiliated", detail="")
    client.rpush("celery", b"{}")  # a message waiting: overdue checks may be in the queue
    assert queue_length(client) == 1
    sent: list[int] = []
    finished: list[str] = []

    def sweep() -> list[int]:
        return sweep_once(settings, storage, client, lambda cid, _a: sent.append(cid),
                          finished.append)

    assert sweep() == [dead]  # the queue is not empty: only the dead lease is certain
    assert sweep() == []  # the lock: another worker swept within this interval
    client.delete(LOCK_KEY, "celery")
    assert sweep() == [lost]  # empty queue: the overdue one was lost
    client.delete(LOCK_KEY)
    assert sweep() == []  # both are due now: not sent again
    assert sent == [dead, lost] and queued not in sent and finished == []
    for cid in (dead, lost, queued):
        storage.record_result(cid, status="not_affiliated", detail="")
    client.delete(LOCK_KEY)
    sweep()
    assert finished == [bid]  # every check ended and nobody claimed the report
