"""The next step of a check whose email came goes first and spends no rate token (issue 22):
the embedded dispatcher's line, the limiters (local and Redis), the Celery priority on real
Redis, and an embedded run with real Chromium against the sandbox."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import redis

from tests.people import write_sheet
from tests.redis_server import RedisServer
from tests.worker.engine.test_mail_wait import _constancia_curps, _waits
from worker.core.settings import load_settings
from worker.engine.embedded import _Line, run_embedded
from worker.engine.limits import LocalLimiter, RedisLimiter
from worker.interfaces.commands import sandbox_settings
from worker.services.batches import open_storage, prepare_batch


def test_line_offers_the_due_step_2s_before_the_queued_step_1s() -> None:
    """With one child free, a woken step 2 goes before the new checks queued before it; the
    rest keep their order."""
    line = _Line(checks=[(1, "imss", 0, 0), (2, "imss", 0, 0), (3, "issste", 0, 0)])
    line.steps.append((9, "imss", 0, 0))
    taken: list[tuple[int, bool]] = []

    def take(job, step):
        if len(taken) < 2:
            taken.append((job[0], step))
            return True
        return False

    line.offer(take)
    assert taken == [(9, True), (1, False)]
    assert line.steps == [] and [j[0] for j in line.checks] == [2, 3]


def test_local_step_2_takes_a_slot_under_the_cap_but_no_rate_token() -> None:
    """An empty rate bucket refuses a new check and lets a step 2 go; the concurrency cap
    still holds for step 2s."""
    lim = LocalLimiter(lambda p: 0.001, lambda p: 2, clock=lambda: 0.0)
    for token in [lim.acquire("imss"), lim.acquire("imss")]:
        assert token
        lim.release("imss", token)
    assert lim.acquire("imss") is None  # the burst is spent
    a, b = lim.acquire("imss", spend=False), lim.acquire("imss", spend=False)
    assert a and b
    assert lim.acquire("imss", spend=False) is None  # the cap
    lim.release("imss", a)
    assert lim.acquire("imss", spend=False)


def test_redis_step_2_takes_a_slot_under_the_cap_but_no_rate_token() -> None:
    """The same cluster-wide: in Redis, a step 2 takes a slot, never a token."""
    client = redis.Redis(host="127.0.0.1", port=6379)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.fail("Redis is not running on 127.0.0.1:6379 (the test environment starts it)")
    prefix = f"test:{uuid.uuid4().hex}"
    lim = RedisLimiter(client, lambda p: 0.001, lambda p: 1, 60, prefix=prefix)
    token = lim.acquire("imss")
    assert token
    lim.release("imss", token)
    assert lim.acquire("imss") is None  # the burst is spent
    step = lim.acquire("imss", spend=False)
    assert step
    assert lim.acquire("imss", spend=False) is None  # the cap
    lim.release("imss", step)


def test_celery_step_2_task_is_taken_before_the_queued_step_1s(tmp_path: Path) -> None:
    """On real Redis, the watcher's task for a check's next step (``send_step``) is the first
    a worker takes, though three new checks were queued before it."""
    from worker.engine.tasks import check, send_step

    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        with check.app.connection_for_write(server.url) as conn:
            for check_id in (1, 2, 3):
                check.apply_async(kwargs={"check_id": check_id, "attempt": 0}, connection=conn)
            send_step(9, 1, connection=conn)
            queue = conn.SimpleQueue("celery", no_ack=True)
            got = []
            for _ in range(4):
                message = queue.get(timeout=10)
                got.append(message.payload[1]["check_id"])
            queue.close()
        assert got[0] == 9
        assert sorted(got[1:]) == [1, 2, 3]
    finally:
        server.stop()


@pytest.mark.browser
def test_embedded_runs_a_woken_step_2_before_the_next_new_check(sandbox,
                                                                 tmp_path: Path) -> None:
    """One worker process (K=1), instant mail, three IMSS checks: the first check's step 2 runs
    as soon as its email is claimed, before the third check sends its form (queued behind the
    step 1s, it waited for every one of them)."""
    settings = sandbox_settings(load_settings(concurrency=1, data_dir=tmp_path / "data",
                                              mailbox_poll_s=0.2), sandbox)
    storage = open_storage(settings)
    curps = _constancia_curps(3, seed=2211)
    batch_id, _ = prepare_batch(settings, storage, write_sheet(tmp_path / "o.xlsx", curps),
                                ["imss"])
    run_embedded(settings, storage, batch_id, concurrency=1)
    checks = sorted(storage.checks(batch_id), key=lambda c: c.id)
    waits = _waits(storage, batch_id)
    assert all(c.status in ("not_entitled", "entitled") for c in checks), [c.detail
                                                                            for c in checks]
    first, third = checks[0], checks[2]
    assert first.finished_at < waits[third.id].sent_at
