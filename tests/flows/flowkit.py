"""Helpers of the flow tests: run one check against the sandbox, solver doubles, CURPs.

Used by test_imss_flow.py and test_issste_flow.py. Everything runs for real: Chromium, the
sandbox's HTTP servers, its SMTP server and Maildir; only the captcha solver is sometimes a
double (the OCR solver has its own tests and benchmark).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
from stdnum.mx import curp as stdcurp

from fixtures.texts import IMSS_SESSION_COOKIE
from flows.base import Outcome, Person
from flows.errors import TransientError, retry_delay, status_for
from flows.mailbox import open_mailbox
from flows.runner import CheckRun, run_check
from worker.core.settings import Settings, load_settings

__all__ = [
    "SHOTS",
    "BrowserSpy",
    "OracleSolver",
    "WrongSolver",
    "fresh_curp",
    "flow_settings",
    "check",
    "check_like_the_engine",
    "evidence_files",
]

#: Where the tests leave screenshots of the flows' key moments, for people to look at.
SHOTS = Path("/tmp/flow-shots")  # noqa: S108 - a fixed place people are told to look at


class BrowserSpy:
    """Wraps the session's browser: remembers the context ``run_check`` creates and lets a
    test prepare it (routes) before the flow starts."""

    def __init__(self, browser: Any, prepare: Callable[[Any], None] | None = None) -> None:
        self._browser = browser
        self._prepare = prepare
        self.context: Any = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._browser, name)  # everything else is the real browser's

    def new_context(self, **kwargs: Any) -> Any:
        self.context = self._browser.new_context(**kwargs)
        if self._prepare:
            self._prepare(self.context)
        return self.context


@dataclass
class OracleSolver:
    """Answers with what the sandbox drew for this session (its test hook), after answering
    ``wrong_first`` times wrong; records what it was told."""

    sandbox: Any
    spy: BrowserSpy
    wrong_first: int = 0
    wrong_answer: str = "zzzzzz"
    solved: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    images: list[bytes] = field(default_factory=list)

    def solve(self, image: bytes, *, key: str) -> str:
        assert image.startswith((b"\xff\xd8", b"\x89PNG"))  # the JPEG, or the legacy PNG
        self.solved.append(key)
        self.images.append(image)
        if len(self.solved) <= self.wrong_first:
            return self.wrong_answer
        cookies = {c["name"]: c["value"] for c in self.spy.context.cookies()}
        return self.sandbox.captcha_answer(cookies[IMSS_SESSION_COOKIE])

    def reject(self, key: str) -> None:
        self.rejected.append(key)


@dataclass
class WrongSolver:
    """Always wrong (the captcha alphabet has no ``z``)."""

    solved: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)

    def solve(self, image: bytes, *, key: str) -> str:
        self.solved.append(key)
        return "zzzzzz"

    def reject(self, key: str) -> None:
        self.rejected.append(key)


def fresh_curp(rng: random.Random | None = None) -> str:
    """A structurally valid CURP no other test uses (its own daily limit, its own email),
    whose query the portals accept: RENAPO knows it and IMSS finds no inconsistency (the
    sandbox gives 5 % of CURPs one of those, which sends no email — a test that needs such an
    outcome sets it with ``sandbox.set_person``)."""
    from fixtures.population import person_for

    rng = rng or random.Random()
    letters = "BCDFGHJKLMNPRSTVZ"
    while True:
        first = (rng.choice(letters) + rng.choice("AEIOU") + rng.choice(letters)
                 + rng.choice(letters))
        birth = f"{rng.randint(60, 99):02d}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
        body = first + birth + rng.choice("HM") + "DF" + "".join(
            rng.choice("BCDFGHJKLMNPRSTVZ") for _ in range(3)) + "0"
        curp = body + stdcurp.calc_check_digit(body)
        stdcurp.validate(curp)
        person = person_for(curp)
        if person and person.imss in ("not_entitled", "entitled") and person.issste != "not_found":
            return curp


def flow_settings(sandbox: Any, **overrides: Any) -> Settings:
    """Settings pointing at the sandbox, with waits short enough for tests."""
    values: dict[str, Any] = {
        "imss_url": sandbox.imss_url,
        "issste_url": sandbox.issste_url,
        "mailbox_url": sandbox.mailbox_url,
        "email_timeout_s": 10,
        "element_timeout_s": 5,
        "navigation_timeout_s": 15,
        "mailbox_poll_s": 0.1,
        "step_backoff_s": 0.05,
    }
    values.update(overrides)
    return load_settings(**values)


def check(
    browser: Any,
    portal: str,
    curp: str,
    settings: Settings,
    work_dir: Path,
    *,
    solver: Any = None,
    attempt: int = 0,
    before_mail: Callable[[str], None] | None = None,
) -> CheckRun:
    """One check through ``run_check``, as the engine makes it. ``before_mail(subject)`` is
    called each time the flow starts waiting for an email (a moment to take screenshots)."""
    mailbox = open_mailbox(settings.effective_mailbox_url, poll_s=settings.mailbox_poll_s)
    try:
        return run_check(
            browser,
            portal,
            Person(curp),
            settings,
            work_dir,
            captcha=solver or WrongSolver(),
            mailbox=_Watched(mailbox, before_mail) if before_mail else mailbox,
            log=structlog.get_logger("test"),
            attempt=attempt,
        )
    finally:
        mailbox.close()


def check_like_the_engine(
    browser: Any, portal: str, curp: str, settings: Settings, work_dir: Path, *,
    solver: Any = None,
) -> tuple[Outcome, int]:
    """``check`` run again on a ``TransientError`` for as long as ``retry_delay`` (the engine's
    one retry decision) allows, without its wait; ``(final outcome, runs)``. When the retries
    run out the error's status is the outcome, as the engine records it."""
    attempt = 0
    while True:
        try:
            run = check(browser, portal, curp, settings, work_dir / f"run{attempt}",
                        solver=solver, attempt=attempt)
            return run.outcome, attempt + 1
        except TransientError as exc:
            if retry_delay(exc, attempt, retry_max=settings.retry_max, backoff_s=0,
                           backoff_max_s=0) is None:
                return Outcome(status_for(exc), detail=str(exc)), attempt + 1
        attempt += 1


class _Watched:
    """A mailbox that tells the test when the flow starts waiting for a message."""

    def __init__(self, mailbox: Any, before: Callable[[str], None]) -> None:
        self._mailbox, self._before = mailbox, before

    def wait_for(self, *, to: str, subject_contains: str, since: float, timeout_s: float) -> Any:
        self._before(subject_contains)
        return self._mailbox.wait_for(
            to=to, subject_contains=subject_contains, since=since, timeout_s=timeout_s
        )


def evidence_files(path: str | Path) -> set[str]:
    """Names in an evidence folder, after checking none of them holds a CURP."""
    folder = Path(path)
    names = {p.name for p in folder.iterdir()}
    for name in [folder.name, *names]:
        assert not re.search(r"[A-Z]{4}\d{6}[HM]", name.upper()), name
    return names
