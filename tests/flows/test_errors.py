"""retry_delay is the one place that decides retries."""

from __future__ import annotations

import random

from flows.errors import (
    CaptchaUnsolved,
    PortalChanged,
    PortalUnavailable,
    classify,
    retry_delay,
    status_for,
)
from worker.core.statuses import Status

POLICY = {"retry_max": 4, "backoff_s": 2.0, "backoff_max_s": 30.0}


def test_transient_errors_back_off_exponentially_with_jitter() -> None:
    """Each attempt's delay lies in [cap/2, cap] with cap doubling up to the maximum."""
    rng = random.Random(1)
    for attempt, cap in enumerate([2, 4, 8, 16]):
        d = retry_delay(PortalUnavailable("503"), attempt, rng=rng, **POLICY)
        assert d is not None and cap / 2 <= d <= cap


def test_backoff_is_capped() -> None:
    """No delay exceeds the configured cap."""
    d = retry_delay(PortalUnavailable("x"), 3, retry_max=10, backoff_s=10, backoff_max_s=30)
    assert d is not None and d <= 30


def test_retries_stop_after_the_maximum() -> None:
    """After retry_max retries the status is recorded instead."""
    assert retry_delay(CaptchaUnsolved("x"), 4, **POLICY) is None
    assert status_for(CaptchaUnsolved("x")) is Status.CAPTCHA_UNSOLVED


def test_permanent_errors_are_never_retried() -> None:
    """portal_changed and unknown exceptions are recorded at once."""
    assert retry_delay(PortalChanged("no #continuar"), 0, **POLICY) is None
    assert retry_delay(KeyError("x"), 0, **POLICY) is None
    assert status_for(PortalChanged("x")) is Status.PORTAL_CHANGED
    assert status_for(KeyError("x")) is Status.ERROR


def test_classify_gives_the_status_and_whether_to_retry() -> None:
    """One function says what an error becomes: transient ones are retried, the rest not."""
    assert classify(PortalUnavailable("503")) == (Status.PORTAL_UNAVAILABLE, True)
    assert classify(CaptchaUnsolved("x")) == (Status.CAPTCHA_UNSOLVED, True)
    assert classify(PortalChanged("x")) == (Status.PORTAL_CHANGED, False)
    assert classify(RuntimeError("x")) == (Status.ERROR, False)
