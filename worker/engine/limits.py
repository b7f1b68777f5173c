"""Politeness: a per-portal rate limit and concurrency cap, and the pause of a portal whose
bot protection blocks us.

Embedded: the parent process dispatches checks and enforces both itself (``LocalLimiter``,
``LocalPause``). Distributed: every worker asks Redis (``RedisLimiter``, ``RedisPause``), so the
limits and the pause hold cluster-wide (Celery's own ``rate_limit`` is per worker: celery#5732).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Limiter", "LocalLimiter", "RedisLimiter", "NullLimiter", "PausePolicy",
           "PauseState", "LocalPause", "RedisPause", "BlockWatch"]


class Limiter:
    """``acquire`` returns a slot token, or ``None`` with the caller expected to come back later;
    ``release`` frees the slot.

    ``spend=False``: a slot under the concurrency cap without a token of the rate budget — the
    second browser step of a check whose first step spent it (an IMSS check's link, followed
    once its email came: the rate is of checks, and the query was made by step 1)."""

    def acquire(self, portal: str, *, spend: bool = True) -> str | None:  # pragma: no cover
        raise NotImplementedError

    def release(self, portal: str, token: str) -> None:  # pragma: no cover - interface
        raise NotImplementedError


class NullLimiter(Limiter):
    def acquire(self, portal: str, *, spend: bool = True) -> str | None:
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

    def acquire(self, portal: str, *, spend: bool = True) -> str | None:
        with self._lock:
            self._refill(portal)
            if self._running.get(portal, 0) >= self.max_concurrency(portal):
                return None
            if spend and self._tokens[portal] < 1.0:
                return None
            self._tokens[portal] -= 1.0 if spend else 0.0
            self._running[portal] = self._running.get(portal, 0) + 1
            return "local"

    def release(self, portal: str, token: str) -> None:
        with self._lock:
            self._running[portal] = max(0, self._running.get(portal, 0) - 1)

    def wait_hint(self, portal: str) -> float:
        """Seconds until a token may be available (the API's ``Retry-After``)."""
        with self._lock:
            self._refill(portal)
            missing = max(0.0, 1.0 - self._tokens[portal])
            rate = self.rate_per_min(portal) / 60.0
            return missing / rate if rate > 0 else 1.0


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

    def acquire(self, portal: str, *, spend: bool = True) -> str | None:
        now = time.time()
        token = uuid.uuid4().hex
        if not self._sem(keys=[f"{self.prefix}:slots:{portal}"],
                         args=[self.max_concurrency(portal), now, self.slot_ttl_s, token]):
            return None
        burst = max(1, self.max_concurrency(portal))
        if spend and not self._bucket(keys=[f"{self.prefix}:bucket:{portal}"],
                            args=[self.rate_per_min(portal) / 60.0, burst, now]):
            self.release(portal, token)
            return None
        return token

    def release(self, portal: str, token: str) -> None:
        self.client.zrem(f"{self.prefix}:slots:{portal}", token)


# --- the pause of a blocked portal --------------------------------------------------------


@dataclass(frozen=True)
class PausePolicy:
    """How long a blocked portal rests (settings ``block_pause_s``, ``block_pause_factor``,
    ``block_pause_max_s``)."""

    first_s: float
    factor: float
    max_s: float

    @classmethod
    def from_settings(cls, settings: Any) -> PausePolicy:
        return cls(settings.block_pause_s, settings.block_pause_factor,
                   settings.block_pause_max_s)

    @property
    def memory_s(self) -> float:
        """How long an episode outlives its pause with no check getting through to end it (a
        check can run for minutes after its pause): a block after that is a new episode, and a
        new notice. An hour at least: a block outlives a batch, not a night."""
        return max(4 * self.max_s, 3600.0)


@dataclass(frozen=True)
class PauseState:
    """One portal's block episode: the current pause runs from ``started`` to ``until``."""

    started: float
    until: float
    pause_s: float


def on_block(state: PauseState | None, now: float, since: float,
             policy: PausePolicy) -> tuple[PauseState, float, bool]:
    """A check that started at ``since`` met a block at ``now``: the new state, the seconds
    the portal stays paused, and whether this block opened a new episode.

    The one rule of both stores. Checks already running when a pause began are the same wave
    of refusals: they neither restart nor lengthen it. A check started after the pause began
    (a probe once the pause ended) that is blocked again makes the next pause longer."""
    if state is None:
        fresh = PauseState(started=now, until=now + policy.first_s, pause_s=policy.first_s)
        return fresh, policy.first_s, True
    if now < state.until or since < state.started:
        return state, max(0.0, state.until - now), False
    pause = min(policy.max_s, state.pause_s * policy.factor)
    return PauseState(started=now, until=now + pause, pause_s=pause), pause, False


class LocalPause:
    """The pause record of one process (the embedded dispatcher), on its monotonic clock."""

    def __init__(self, policy: PausePolicy, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy, self.clock = policy, clock
        self._states: dict[str, PauseState] = {}
        self._lock = threading.Lock()

    def now(self) -> float:
        return self.clock()

    def _live(self, portal: str, now: float) -> PauseState | None:
        state = self._states.get(portal)
        if state is not None and now > state.until + self.policy.memory_s:
            del self._states[portal]  # forgotten, as Redis expires its record
            return None
        return state

    def remaining(self, portal: str) -> float:
        with self._lock:
            now = self.clock()
            state = self._live(portal, now)
            return max(0.0, state.until - now) if state else 0.0

    def block(self, portal: str, since: float) -> tuple[float, bool]:
        with self._lock:
            now = self.clock()
            state, left, first = on_block(self._live(portal, now), now, since, self.policy)
            self._states[portal] = state
            return left, first

    def passed(self, portal: str, since: float) -> bool:
        """A check started at ``since`` got through: the episode ends, if that check began
        after the latest pause did (an older one proves nothing). True if one ended."""
        with self._lock:
            state = self._live(portal, self.clock())
            if state is None or since < state.started:
                return False
            del self._states[portal]
            return True


class RedisPause:
    """The pause record shared by every worker: one Redis hash per portal, expiring by itself
    (``pause + memory``), updated in a WATCH/MULTI transaction with ``on_block``. Times are
    wall-clock seconds (workers' clocks NTP-synced, as the leases already require)."""

    def __init__(self, client: Any, policy: PausePolicy,
                 prefix: str = "constancias:pause") -> None:
        self.client, self.policy, self.prefix = client, policy, prefix

    def now(self) -> float:
        return time.time()

    def _key(self, portal: str) -> str:
        return f"{self.prefix}:{portal}"

    @staticmethod
    def _state(raw: dict[Any, Any]) -> PauseState | None:
        try:
            values = {(k.decode() if isinstance(k, bytes) else k): float(v)
                      for k, v in raw.items()}
            return PauseState(values["started"], values["until"], values["pause_s"])
        except (KeyError, ValueError):
            return None

    def remaining(self, portal: str) -> float:
        state = self._state(self.client.hgetall(self._key(portal)))
        return max(0.0, state.until - time.time()) if state else 0.0

    def block(self, portal: str, since: float) -> tuple[float, bool]:
        key = self._key(portal)
        out: list[tuple[float, bool]] = []

        def update(pipe: Any) -> None:
            now = time.time()
            old = self._state(pipe.hgetall(key))
            state, left, first = on_block(old, now, since, self.policy)
            out[:] = [(left, first)]
            pipe.multi()
            if state != old:
                pipe.hset(key, mapping={"started": state.started, "until": state.until,
                                        "pause_s": state.pause_s})
                pipe.pexpire(key, int((state.until - now + self.policy.memory_s) * 1000) + 1)

        self.client.transaction(update, key)
        return out[0]

    def passed(self, portal: str, since: float) -> bool:
        key = self._key(portal)
        ended: list[bool] = [False]

        def update(pipe: Any) -> None:
            state = self._state(pipe.hgetall(key))
            ended[0] = state is not None and since >= state.started
            pipe.multi()
            if ended[0]:
                pipe.delete(key)

        if not self.client.exists(key):
            return False  # the usual case: one read, no transaction
        self.client.transaction(update, key)
        return ended[0]


class BlockWatch:
    """A pause store plus what happens when a block episode opens and ends: ``on_episode``
    (the operator's notice: a warning log line and an e-mail) runs exactly once per episode,
    cluster-wide, in whichever process met the first block."""

    def __init__(self, store: LocalPause | RedisPause,
                 on_episode: Callable[[str, float, str], object], log: Any) -> None:
        self.store, self.on_episode, self.log = store, on_episode, log

    def now(self) -> float:
        """The store's clock: pass its readings back as ``since``."""
        return self.store.now()

    def remaining(self, portal: str) -> float:
        return self.store.remaining(portal)

    def blocked(self, portal: str, since: float, reason: str) -> float:
        """A check started at ``since`` met a block: seconds the portal is paused."""
        left, first = self.store.block(portal, since)
        if first:
            self.on_episode(portal, left, reason)
        else:
            self.log.info("portal_pause", portal=portal, pause_s=round(left, 1))
        return left

    def passed(self, portal: str, since: float) -> None:
        if self.store.passed(portal, since):
            self.log.info("portal_resumed", portal=portal)
