"""Politeness: a per-portal rate limit and concurrency cap.

Embedded: the parent process dispatches checks and enforces both itself (``LocalLimiter``).
Distributed: every worker asks Redis (``RedisLimiter``), so the limits hold cluster-wide
(Celery's own ``rate_limit`` is per worker: celery#5732).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Limiter", "LocalLimiter", "RedisLimiter", "NullLimiter"]


class Limiter:
    """``acquire`` returns a slot token, or ``None`` with the caller expected to come back later;
    ``release`` frees the slot."""

    def acquire(self, portal: str) -> str | None:  # pragma: no cover - interface
        raise NotImplementedError

    def release(self, portal: str, token: str) -> None:  # pragma: no cover - interface
        raise NotImplementedError


class NullLimiter(Limiter):
    def acquire(self, portal: str) -> str | None:
        return "-"

    def release(self, portal: str, token: str) -> None:
        return None


@dataclass
class LocalLimiter(Limiter):
    """Token bucket + counter in one process (the embedded dispatcher)."""

    rate_per_min: Callable[[str], float]
    max_concurrency: Callable[[str], int]
    clock: Callable[[], float] = time.monotonic
    _tokens: dict[str, float] = field(default_factory=dict)
    _stamp: dict[str, float] = field(default_factory=dict)
    _running: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _refill(self, portal: str) -> None:
        now = self.clock()
        rate = self.rate_per_min(portal) / 60.0
        burst = max(1.0, float(self.max_concurrency(portal)))
        last = self._stamp.get(portal, now)
        self._tokens[portal] = min(burst, self._tokens.get(portal, burst) + (now - last) * rate)
        self._stamp[portal] = now

    def acquire(self, portal: str) -> str | None:
        with self._lock:
            self._refill(portal)
            if self._running.get(portal, 0) >= self.max_concurrency(portal):
                return None
            if self._tokens[portal] < 1.0:
                return None
            self._tokens[portal] -= 1.0
            self._running[portal] = self._running.get(portal, 0) + 1
            return "local"

    def release(self, portal: str, token: str) -> None:
        with self._lock:
            self._running[portal] = max(0, self._running.get(portal, 0) - 1)


# Token bucket and semaphore in one Lua script each: atomic in Redis.
_BUCKET = """
local key = KEYS[1]
local rate = tonumber(ARGV[1])      -- tokens per second
local burst = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local state = redis.call('HMGET', key, 'tokens', 'stamp')
local tokens = tonumber(state[1]) or burst
local stamp = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - stamp) * rate)
local ok = 0
if tokens >= 1 then tokens = tokens - 1; ok = 1 end
redis.call('HSET', key, 'tokens', tokens, 'stamp', now)
redis.call('EXPIRE', key, 3600)
return ok
"""

_SEMAPHORE = """
local key = KEYS[1]
local cap = tonumber(ARGV[1])
local now = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
local token = ARGV[4]
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - ttl)
if redis.call('ZCARD', key) < cap then
  redis.call('ZADD', key, now, token)
  redis.call('EXPIRE', key, ttl * 2)
  return 1
end
return 0
"""


class RedisLimiter(Limiter):
    """Cluster-wide limits in Redis. A slot held by a worker that died expires after
    ``slot_ttl_s`` (longer than the task time limit)."""

    def __init__(self, client: Any, rate_per_min: Callable[[str], float],
                 max_concurrency: Callable[[str], int], slot_ttl_s: float,
                 prefix: str = "constancias:limit") -> None:
        self.client = client
        self.rate_per_min = rate_per_min
        self.max_concurrency = max_concurrency
        self.slot_ttl_s = slot_ttl_s
        self.prefix = prefix
        self._bucket = client.register_script(_BUCKET)
        self._sem = client.register_script(_SEMAPHORE)

    def acquire(self, portal: str) -> str | None:
        now = time.time()
        token = uuid.uuid4().hex
        if not self._sem(keys=[f"{self.prefix}:slots:{portal}"],
                         args=[self.max_concurrency(portal), now, self.slot_ttl_s, token]):
            return None
        burst = max(1, self.max_concurrency(portal))
        if not self._bucket(keys=[f"{self.prefix}:bucket:{portal}"],
                            args=[self.rate_per_min(portal) / 60.0, burst, now]):
            self.release(portal, token)
            return None
        return token

    def release(self, portal: str, token: str) -> None:
        self.client.zrem(f"{self.prefix}:slots:{portal}", token)
