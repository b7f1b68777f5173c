"""The step-retry helper of flows/steps.py: which failures it repeats, how often, and how."""

from __future__ import annotations

import pytest
import structlog

from flows.errors import PortalChanged, PortalUnavailable
from flows.steps import StepRetry


def _retry(retries: int = 3) -> tuple[StepRetry, list[float]]:
    pauses: list[float] = []
    return StepRetry(retries=retries, backoff_s=0.5, log=structlog.get_logger("test"),
                     sleep=pauses.append), pauses


def test_unavailable_step_is_recovered_and_tried_again_with_doubling_pauses() -> None:
    """A step that fails twice as PortalUnavailable succeeds on the third try; the page is
    recovered before each retry and the pauses double."""
    retry, pauses = _retry()
    calls: list[str] = []

    def step() -> str:
        calls.append("step")
        if calls.count("step") < 3:
            raise PortalUnavailable("HTTP 503")
        return "ok"

    assert retry(step, what="x", recover=lambda: calls.append("recover")) == "ok"
    assert calls == ["step", "recover", "step", "recover", "step"]
    assert pauses == [0.5, 1.0]


def test_step_failing_every_time_raises_its_last_error_after_the_retries() -> None:
    """After ``retries`` retries the last PortalUnavailable propagates (the engine's turn)."""
    retry, pauses = _retry(retries=2)
    tries: list[int] = []

    def step() -> None:
        tries.append(1)
        raise PortalUnavailable(f"fallo {len(tries)}")

    with pytest.raises(PortalUnavailable, match="fallo 3"):
        retry(step, what="x")
    assert len(tries) == 3 and len(pauses) == 2


def test_portal_changed_is_never_retried() -> None:
    """A missing element on a page that loaded fine is not a flaky portal: raised at once."""
    retry, pauses = _retry()
    tries: list[int] = []

    def step() -> None:
        tries.append(1)
        raise PortalChanged("sin #captchaImg")

    with pytest.raises(PortalChanged):
        retry(step, what="x")
    assert tries == [1] and pauses == []
