"""The pause of a blocked portal: one rule (``on_block``) behind a local and a Redis store,
and the operator told once per episode."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.redis_server import RedisServer
from worker.engine.limits import BlockWatch, LocalPause, PausePolicy, RedisPause

POLICY = PausePolicy(first_s=10.0, factor=2.0, max_s=35.0)


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Notices:
    """Stands for the operator's channel: records each call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, float, str]] = []

    def __call__(self, portal: str, pause: float, reason: str) -> None:
        self.calls.append((portal, pause, reason))


class _Log:
    def info(self, *args: object, **kwargs: object) -> None:
        return None


def test_a_block_pauses_the_portal_and_the_wave_does_not_lengthen_it() -> None:
    """The first block pauses for the first pause; checks that were already running when it
    began and come back blocked neither restart nor lengthen it; the other portal is free."""
    clock = FakeClock()
    pause = LocalPause(POLICY, clock=clock)
    since = clock.t
    clock.t += 1
    assert pause.block("imss", since) == (10.0, True)
    clock.t += 3
    assert pause.block("imss", since) == (7.0, False)  # same wave
    assert pause.remaining("imss") == 7.0 and pause.remaining("issste") == 0.0
    clock.t += 8  # the pause is over; a check running since before it comes back blocked
    assert pause.block("imss", since) == (0.0, False)
    assert pause.remaining("imss") == 0.0


def test_a_block_after_the_pause_grows_it_up_to_the_maximum_then_a_pass_ends_it() -> None:
    """A check started after the pause began that is blocked again doubles the pause, capped;
    a check started after the latest pause that gets through ends the episode, and the next
    block is a new episode."""
    clock = FakeClock()
    pause = LocalPause(POLICY, clock=clock)
    pause.block("imss", clock.t)
    pauses = []
    for _ in range(3):
        clock.t += pause.remaining("imss") + 0.5
        probe = clock.t
        clock.t += 1
        pauses.append(pause.block("imss", probe))
    assert pauses == [(20.0, False), (35.0, False), (35.0, False)]
    assert not pause.passed("imss", probe)  # a check older than the latest pause proves nothing
    clock.t += 36
    assert pause.passed("imss", clock.t)
    assert pause.remaining("imss") == 0.0
    assert pause.block("imss", clock.t) == (10.0, True)


def test_an_episode_is_forgotten_when_no_check_comes_for_a_long_time() -> None:
    """Without a check to end it, an episode ends by itself (pause + memory): a later block
    opens a new one."""
    clock = FakeClock()
    pause = LocalPause(POLICY, clock=clock)
    pause.block("issste", clock.t)
    clock.t += 10 + POLICY.memory_s + 1
    assert pause.block("issste", clock.t) == (10.0, True)


def test_block_watch_tells_the_operator_once_per_episode() -> None:
    """Many blocks in one episode, across its growing pauses, give one notice; the next
    episode gives another."""
    clock = FakeClock()
    notices = Notices()
    watch = BlockWatch(LocalPause(POLICY, clock=clock), notices, _Log())
    for _ in range(5):
        watch.blocked("imss", watch.now(), "Incapsula")
        clock.t += watch.remaining("imss") + 1
    assert [c[0] for c in notices.calls] == ["imss"]
    watch.passed("imss", watch.now())
    watch.blocked("imss", watch.now(), "Incapsula otra vez")
    assert [c[2] for c in notices.calls] == ["Incapsula", "Incapsula otra vez"]


@pytest.fixture
def redis_client(tmp_path: Path) -> Iterator[redis.Redis]:
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield redis.Redis.from_url(server.url)
    finally:
        server.stop()


def test_redis_pause_is_shared_by_every_worker_and_expires(redis_client) -> None:
    """Two RedisPause instances (two workers) see one pause; only the first block opens the
    episode; the record carries a TTL; a pass ends it for both."""
    policy = PausePolicy(first_s=1.0, factor=3.0, max_s=5.0)
    a, b = RedisPause(redis_client, policy), RedisPause(redis_client, policy)
    since = time.time()
    left, first = a.block("imss", since)
    assert first and 0.9 <= left <= 1.0
    left_b, first_b = b.block("imss", since)
    assert not first_b and 0 < left_b <= 1.0
    assert 0 < b.remaining("imss") <= 1.0 and b.remaining("issste") == 0.0
    ttl = redis_client.pttl("constancias:pause:imss")
    assert 0 < ttl <= (1.0 + policy.memory_s) * 1000 + 1
    time.sleep(1.05)
    probe = time.time()
    left, first = b.block("imss", probe)  # blocked again after the pause: longer
    assert not first and 2.9 <= left <= 3.0
    assert not a.passed("imss", since)
    assert a.passed("imss", time.time())
    assert b.remaining("imss") == 0.0 and not redis_client.exists("constancias:pause:imss")
    assert a.block("imss", time.time())[1]  # a new episode


def test_operator_notice_without_smtp_is_only_the_log_line_and_never_raises() -> None:
    """Unconfigured, the notice is the warning line alone; an unreachable SMTP server makes
    it return False instead of stopping the checks."""
    from worker.core.settings import load_settings
    from worker.engine.notify import notify_portal_blocked

    assert notify_portal_blocked(load_settings(), "imss", 60, "Incapsula") is False
    unreachable = load_settings(smtp_url="smtp://127.0.0.1:9", operator_to="op@empresa.example")
    assert notify_portal_blocked(unreachable, "imss", 60, "Incapsula") is False
