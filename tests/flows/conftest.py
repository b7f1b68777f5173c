"""Fixtures for the flow tests: a real Dovecot IMAP server (see tests/dovecot.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.dovecot import Dovecot


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Dovecot]:
    """One Dovecot for the session, serving ``dovecot.maildir`` as INBOX.

    Exposes ``host``, ``port``, ``user``, ``password``, ``maildir`` and ``url``
    (``imap://user:pass@127.0.0.1:port/INBOX``). The folder is shared by every test that uses
    it: give each test its own recipient address so that tests never see each other's mail.
    """
    server = Dovecot()
    server.start()
    yield server
    server.stop()
