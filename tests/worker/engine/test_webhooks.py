"""Webhook events and their delivery loop against a real local receiver."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from pathlib import Path

import httpx

from tests.people import synthetic_curps
from tests.worker.interfaces.web.test_api import _receiver
from tests.worker.services.test_recheck import _seed, store  # noqa: F401 - the fixture
from worker.core.settings import load_settings
from worker.engine.webhooks import add_webhook, deliver_due, emit_batch_events, recent_deliveries
from worker.storage.repository import Storage


def test_recheck_changes_become_signed_check_changed_events_once(store: Storage,  # noqa: F811
                                                                 tmp_path: Path) -> None:
    """A re-check that changed two statuses emits one ``check.changed`` per change (and
    ``batch.done``) to the webhooks that asked for them, once however often the batch is
    finished; each delivery carries the before/after statuses and a valid signature."""
    settings = load_settings()
    a, b, c = synthetic_curps(3, seed=24)
    _seed(store, tmp_path, {a: {"imss": "not_entitled"}, b: {"imss": "daily_limit"},
                            c: {"imss": "entitled"}}, hours_ago=30)
    recheck = _seed(store, tmp_path / "r", {a: {"imss": "entitled"}, b: {"imss": "not_entitled"},
                                            c: {"imss": "entitled"}}, kind="recheck")
    with _receiver([]) as (url, received), httpx.Client() as client:
        _, changed_secret = add_webhook(store, url, ["check.changed"], None)
        add_webhook(store, url + "/todo", ["batch.done", "check.changed"], None)
        assert emit_batch_events(settings, store, recheck) == 5
        assert emit_batch_events(settings, store, recheck) == 0  # finished twice: nothing new
        assert deliver_due(settings, store, client) == 5
        assert deliver_due(settings, store, client) == 0
    mine = [(h, json.loads(raw)) for _, h, raw in received
            if json.loads(raw)["event"] == "check.changed"]
    assert len(mine) == 4
    changes = sorted((e["data"]["curp"], e["data"]["before"], e["data"]["after"])
                     for _, e in mine)
    assert changes == sorted([(a, "not_entitled", "entitled"), (a, "not_entitled", "entitled"),
                              (b, "daily_limit", "not_entitled"),
                              (b, "daily_limit", "not_entitled")])
    signed = [raw for _, h, raw in received
              if h["x-constancias-signature"] == "sha256=" + hmac.new(
                  changed_secret.encode(),
                  h["x-constancias-timestamp"].encode() + b"." + raw, hashlib.sha256).hexdigest()]
    assert len(signed) == 2  # the first webhook's two deliveries, signed with its secret
    assert {json.loads(r)["event"] for _, _, r in received} == {"check.changed", "batch.done"}


def test_a_receiver_that_keeps_failing_is_retried_then_given_up(store: Storage,  # noqa: F811
                                                                tmp_path: Path) -> None:
    """Answers of 500 are retried after the backoff up to ``WEBHOOK_ATTEMPTS`` tries, then
    the delivery is marked failed (and shown so in the delivery log)."""
    settings = load_settings().model_copy(update={"webhook_attempts": 3,
                                                  "webhook_backoff_s": 0.05})
    (a,) = synthetic_curps(1, seed=5)
    batch = _seed(store, tmp_path, {a: {"imss": "entitled"}})
    with _receiver([500, 500, 500, 500]) as (url, received), httpx.Client() as client:
        add_webhook(store, url, ["batch.done"], None)
        assert emit_batch_events(settings, store, batch) == 1
        assert deliver_due(settings, store, client) == 1
        assert deliver_due(settings, store, client) == 0  # not due before the backoff
        deadline = time.monotonic() + 10
        while len(received) < 3 and time.monotonic() < deadline:
            deliver_due(settings, store, client)
            time.sleep(0.05)
        time.sleep(0.3)
        assert deliver_due(settings, store, client) == 0
    assert [code for code, _, _ in received] == [500, 500, 500]
    (log,) = recent_deliveries(store)
    assert log.state == "failed" and log.attempts == 3 and log.last_status == 500
