"""Politeness limits: local (embedded dispatcher) and Redis (cluster-wide)."""

from __future__ import annotations

import time
import uuid

import pytest
import redis

from worker.engine.limits import LocalLimiter, RedisLimiter


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_local_concurrency_cap_holds() -> None:
    """No more than the cap run at once; releasing frees a slot."""
    clock = FakeClock()
    lim = LocalLimiter(lambda p: 6000, lambda p: 2, clock=clock)
    a, b = lim.acquire("imss"), lim.acquire("imss")
    assert a and b and lim.acquire("imss") is None
    lim.release("imss", a)
    clock.t += 1
    assert lim.acquire("imss")


def test_local_rate_limit_refills_over_time() -> None:
    """At 60/min, after the burst one more start is allowed per second."""
    clock = FakeClock()
    lim = LocalLimiter(lambda p: 60, lambda p: 1, clock=clock)
    tok = lim.acquire("issste")
    lim.release("issste", tok)
    assert lim.acquire("issste") is None  # bucket empty
    clock.t += 1.01
    assert lim.acquire("issste")


def test_portals_are_limited_independently() -> None:
    """A full IMSS does not block ISSSTE."""
    lim = LocalLimiter(lambda p: 6000, lambda p: 1, clock=FakeClock())
    assert lim.acquire("imss") and lim.acquire("issste")


@pytest.fixture
def redis_client():
    client = redis.Redis(host="127.0.0.1", port=6379)
    client.ping()
    return client


def test_redis_cap_holds_across_limiter_instances(redis_client) -> None:
    """Two workers (two limiter objects) share one cap through Redis."""
    prefix = f"test:{uuid.uuid4().hex}"
    w1 = RedisLimiter(redis_client, lambda p: 6000, lambda p: 2, 60, prefix=prefix)
    w2 = RedisLimiter(redis_client, lambda p: 6000, lambda p: 2, 60, prefix=prefix)
    t1, t2 = w1.acquire("imss"), w2.acquire("imss")
    assert t1 and t2
    assert w1.acquire("imss") is None and w2.acquire("imss") is None
    w2.release("imss", t2)
    time.sleep(0.05)  # let the 100/s bucket refill one token
    assert w1.acquire("imss")


def test_redis_rate_limit_refuses_beyond_burst(redis_client) -> None:
    """At 1 per minute only the burst passes, whoever asks."""
    prefix = f"test:{uuid.uuid4().hex}"
    w1 = RedisLimiter(redis_client, lambda p: 1, lambda p: 1, 60, prefix=prefix)
    w2 = RedisLimiter(redis_client, lambda p: 1, lambda p: 1, 60, prefix=prefix)
    t = w1.acquire("issste")
    assert t
    w1.release("issste", t)
    assert w2.acquire("issste") is None
