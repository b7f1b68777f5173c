"""Shared test fixtures: storage isolated per test, free ports, Chromium."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from worker.core.logs import reset_logging


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test gets its own data folder and no stray CONSTANCIAS_* from the machine."""
    import os

    for key in list(os.environ):
        if key.startswith("CONSTANCIAS_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("CONSTANCIAS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)  # a stray .env in the checkout must not leak in
    # `constancias`'s main() sets an owner-only umask for its whole process; a test that
    # calls it in-process must not hand that to the next one (Dovecot's helper processes,
    # started by later tests, cannot read their own files under it).
    umask = os.umask(0o077)
    os.umask(umask)
    yield
    os.umask(umask)
    reset_logging()


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium for the whole session (Debian's, with the offline flags)."""
    from flows.browser import launch

    pw, br = launch()
    yield br
    br.close()
    pw.stop()


@pytest.fixture
def page(browser):
    context = browser.new_context(accept_downloads=True)
    pg = context.new_page()
    yield pg
    context.close()


@pytest.fixture(scope="session")
def sandbox_session(tmp_path_factory: pytest.TempPathFactory):
    """One sandbox (IMSS + ISSSTE simulators + SMTP→Maildir) for the whole test session."""
    from fixtures.sandbox import start_sandbox

    with start_sandbox(maildir=tmp_path_factory.mktemp("sandbox-mail")) as handle:
        yield handle


@pytest.fixture
def sandbox(sandbox_session):
    """The session's sandbox, reset (counters, tokens, overrides, clock), with no faults and an
    empty mailbox (mail left by an earlier test must not satisfy or confuse this one)."""
    sandbox_session.reset()
    sandbox_session.clear_faults()
    for sub in ("new", "cur", ".Claimed/new", ".Claimed/cur"):
        folder = sandbox_session.maildir / sub
        if folder.is_dir():
            for message in folder.iterdir():
                message.unlink(missing_ok=True)
    return sandbox_session
