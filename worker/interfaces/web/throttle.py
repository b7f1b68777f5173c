"""Log-in throttling: growing waits, then a temporary lock, per client address and per account.

After a wrong password, the address and the account it tried must wait before their next try
is even looked at (``WEB_LOGIN_DELAY_S``, doubling per failure up to ``WEB_LOGIN_DELAY_MAX_S``);
after ``WEB_LOGIN_LOCK_AFTER`` failures in a row they are locked for ``WEB_LOGIN_LOCK_S``, the
right password included. A try inside a wait is refused without checking the password, so
parallel guesses gain nothing: the check and the record of a failure happen with no ``await``
between them, and the event loop runs one log-in at a time through that section.

Per address stops one machine; per account stops many machines taking turns at one account
(at the price that they can keep its owner waiting: the lock is temporary for that reason).
The state is in memory: ``constancias web`` is one process, and a restart is not something
a guesser can trigger.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import structlog

from worker.core.settings import Settings

__all__ = ["LoginThrottle"]

log = structlog.get_logger("constancias.web.login")

#: Beyond this many tracked keys, those with nothing left to enforce are forgotten.
_MAX_KEYS = 10_000


@dataclass
class _State:
    failures: int = 0
    blocked_until: float = 0.0
    last_failure: float = 0.0


class LoginThrottle:
    """Waits and locks for keys such as ``("address", "10.0.0.7")`` or ``("account", "rh")``."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.monotonic) -> None:
        self.delay_s = settings.web_login_delay_s
        self.delay_max_s = settings.web_login_delay_max_s
        self.lock_after = settings.web_login_lock_after
        self.lock_s = settings.web_login_lock_s
        self.clock = clock
        self._states: dict[tuple[str, str], _State] = {}

    def wait_s(self, keys: Sequence[tuple[str, str]]) -> float:
        """Seconds before any of ``keys`` may try again (0: now)."""
        now = self.clock()
        waits = [s.blocked_until - now for k in keys if (s := self._states.get(k)) is not None]
        return max([0.0, *waits])

    def refused(self, keys: Sequence[tuple[str, str]], wait_s: float) -> None:
        log.warning("web_login_throttled", **_fields(keys), wait_s=round(wait_s, 1))

    def failed(self, keys: Sequence[tuple[str, str]]) -> None:
        """A wrong password from ``keys``: each waits longer, and is locked after enough."""
        now = self.clock()
        self._forget_idle(now)
        for key in keys:
            state = self._states.setdefault(key, _State())
            if now - state.last_failure > self.lock_s:
                state.failures = 0  # an old streak does not count against today's typo
            state.failures += 1
            state.last_failure = now
            if state.failures >= self.lock_after:
                wait = self.lock_s
                if state.failures == self.lock_after:
                    log.warning("web_login_locked", kind=key[0], who=key[1],
                                failures=state.failures, lock_s=self.lock_s)
            else:
                wait = min(self.delay_s * 2 ** (state.failures - 1), self.delay_max_s)
            state.blocked_until = max(state.blocked_until, now + wait)
        log.warning("web_login_failed", **_fields(keys),
                    failures=max(self._states[k].failures for k in keys))

    def succeeded(self, keys: Sequence[tuple[str, str]]) -> None:
        for key in keys:
            self._states.pop(key, None)
        log.info("web_login", **_fields(keys))

    def _forget_idle(self, now: float) -> None:
        if len(self._states) < _MAX_KEYS:
            return
        for key in [k for k, s in self._states.items()
                    if s.blocked_until < now and now - s.last_failure > self.lock_s]:
            del self._states[key]


def _fields(keys: Sequence[tuple[str, str]]) -> dict[str, str]:
    # Logged through the masking processor: an account named by an e-mail is never whole.
    return {kind: who for kind, who in keys}
