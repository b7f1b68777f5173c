"""A portal blocked by its bot protection for the first seconds of a batch: the portal is
paused whole (embedded dispatcher, then Celery workers on Redis), the other portal goes on,
the operator is told once, and the batch ends right without spending the checks' retries."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from email import message_from_bytes
from pathlib import Path

import pytest

from fixtures.mail import MailServer
from tests.people import expected, synthetic_curps, write_sheet
from worker.core.logs import configure_logging
from worker.core.settings import load_settings
from worker.engine.executor import executor_for
from worker.interfaces.commands import sandbox_settings
from worker.services.batches import batch_status, open_storage, prepare_batch

pytestmark = pytest.mark.browser

#: How long IMSS stays blocked after the first block was met (the operator's notice): long
#: enough for the first pause to end and a probe to be blocked again (a longer pause).
BLOCKED_AFTER_NOTICE_S = 5.0

#: Policy of these tests: short pauses, so that the block is outlived within the test.
POLICY = {"block_pause_s": "3", "block_pause_factor": "2", "block_pause_max_s": "8",
          "blocked_retry_max": "10", "retry_max": "1"}


@pytest.fixture
def operator_mail(tmp_path: Path) -> Iterator[MailServer]:
    """The operator's SMTP server (real aiosmtpd), filing what it gets in a Maildir."""
    server = MailServer(tmp_path / "operator-mail")
    server.start()
    yield server
    server.stop()


def notices(server: MailServer) -> list:
    new = server.maildir / "new"
    if not new.is_dir():
        return []
    return [message_from_bytes(p.read_bytes()) for p in sorted(new.iterdir())]


class LiftBlock(threading.Thread):
    """Turns the IMSS block off ``after_s`` seconds after the operator's notice arrived (the
    machine's speed decides when the first check meets the block, not the test)."""

    def __init__(self, sandbox, mail: MailServer, after_s: float) -> None:
        super().__init__(daemon=True)
        self.sandbox, self.mail, self.after_s = sandbox, mail, after_s
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.2):
            if notices(self.mail):
                self.stop.wait(self.after_s)
                self.sandbox.set_faults("imss", incapsula="off")
                return


def assert_batch_right(results: list[dict], curps: list[str]) -> None:
    assert len(results) == 2 * len(curps)
    for r in results:
        assert r["status"] == expected(r["curp"])[r["portal"]], r


def log_events(text: str) -> list[dict]:
    """The JSON log lines in ``text``."""
    events = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                events.append(json.loads(line))
            except ValueError:
                continue
    return events


def test_embedded_batch_waits_out_an_imss_block_and_issste_goes_on(
        sandbox, tmp_path: Path, operator_mail: MailServer, capsys) -> None:
    """IMSS answers Incapsula's block for its first seconds: the dispatcher pauses IMSS (a
    growing pause), ISSSTE is checked meanwhile, one operator notice (log line and e-mail), and
    every check ends with its real verdict — no IMSS check spent its single retry."""
    sandbox.set_faults("imss", incapsula="always")
    settings = sandbox_settings(load_settings(
        concurrency=3, smtp_url=f"smtp://127.0.0.1:{operator_mail.port}",
        operator_to="operador@empresa.example", **POLICY), sandbox)
    storage = open_storage(settings)
    curps = synthetic_curps(3, seed=2020)
    batch_id, _ = prepare_batch(settings, storage, write_sheet(tmp_path / "h.xlsx", curps),
                                ["imss", "issste"])
    configure_logging("json", "info")  # the dispatcher's log lines, as an operator reads them
    lifter = LiftBlock(sandbox, operator_mail, BLOCKED_AFTER_NOTICE_S)
    lifter.start()
    try:
        executor_for(settings, storage).run_to_end(batch_id)
    finally:
        lifter.stop.set()
    logs = log_events(capsys.readouterr().err)
    status = batch_status(storage, batch_id)
    assert status["state"] == "done"
    assert_batch_right(status["results"], curps)
    warnings = [e for e in logs if e["event"] == "portal_blocked"]
    assert len(warnings) == 1 and warnings[0]["portal"] == "imss"
    assert warnings[0]["level"] == "warning"
    mails = notices(operator_mail)
    assert len(mails) == 1
    assert "IMSS" in mails[0]["Subject"] and mails[0]["To"] == "operador@empresa.example"
    assert [e["portal"] for e in logs if e["event"] == "portal_resumed"] == ["imss"]
    checks = storage.checks(batch_id)
    imss = [c for c in checks if c.portal == "imss"]
    issste = [c for c in checks if c.portal == "issste"]
    assert any(c.attempts > 1 for c in imss)  # the block was met
    # Paused, not hammered: 5 s more of block with pauses of 3 then 6 s allow 2 blocked runs
    # of each check, 3 at the very most.
    assert all(c.attempts <= 4 for c in imss), [c.attempts for c in imss]
    assert all(c.attempts == 1 for c in issste)
    first_imss_done = min(c.finished_at for c in imss)
    assert any(c.finished_at < first_imss_done for c in issste)  # ISSSTE went on meanwhile


def test_a_block_that_outlasts_every_wait_ends_portal_blocked_with_evidence(
        sandbox, tmp_path: Path, operator_mail: MailServer) -> None:
    """IMSS blocked for good: each IMSS check waits out its pauses, then after
    `blocked_retry_max` blocks ends `portal_blocked` (never portal_changed) with evidence and
    the Spanish label and action in the report; ISSSTE is checked; one notice in all."""
    from openpyxl import load_workbook

    from worker.core.statuses import Status

    sandbox.set_faults("imss", incapsula="always", incapsula_style="script")
    settings = sandbox_settings(load_settings(
        concurrency=2, smtp_url=f"smtp://127.0.0.1:{operator_mail.port}",
        operator_to="operador@empresa.example", block_pause_s=1, block_pause_max_s=2,
        blocked_retry_max=2, retry_max=0), sandbox)
    storage = open_storage(settings)
    curps = synthetic_curps(2, seed=2022)
    batch_id, _ = prepare_batch(settings, storage, write_sheet(tmp_path / "h.xlsx", curps),
                                ["imss", "issste"])
    executor_for(settings, storage).run_to_end(batch_id)
    status = batch_status(storage, batch_id)
    for r in status["results"]:
        want = "portal_blocked" if r["portal"] == "imss" else expected(r["curp"])["issste"]
        assert r["status"] == want, r
    imss = [c for c in storage.checks(batch_id) if c.portal == "imss"]
    assert all(c.attempts == 3 for c in imss)  # the first run and its 2 waited-out blocks
    assert all(c.evidence_path and Path(c.evidence_path).is_dir() for c in imss)
    assert len(notices(operator_mail)) == 1
    cells = {str(c.value) for row in load_workbook(status["report"])["Errores"].iter_rows()
             for c in row if c.value}
    assert Status.PORTAL_BLOCKED.label in cells and Status.PORTAL_BLOCKED.action in cells


@pytest.mark.slow
def test_celery_workers_share_the_pause_of_a_blocked_imss_through_redis(
        tmp_path: Path, sandbox, operator_mail: MailServer) -> None:
    """The same block with two Celery workers on a redis-server of the test's own: the pause
    is one record in Redis that both workers honour, one operator notice in all, ISSSTE is not
    held back, and the batch ends right."""
    from tests.worker.engine.test_distributed import Cluster

    sandbox.set_faults("imss", incapsula="always")
    cluster = Cluster(tmp_path, sandbox)
    try:
        cluster.env.update({f"CONSTANCIAS_{k.upper()}": v for k, v in POLICY.items()})
        cluster.env.update({"CONSTANCIAS_SMTP_URL": f"smtp://127.0.0.1:{operator_mail.port}",
                            "CONSTANCIAS_OPERATOR_TO": "operador@empresa.example"})
        cluster.start_worker(1)
        cluster.start_worker(1)
        curps = synthetic_curps(3, seed=2021)
        lifter = LiftBlock(sandbox, operator_mail, BLOCKED_AFTER_NOTICE_S)
        lifter.start()
        proc = cluster.cli("submit", str(write_sheet(tmp_path / "h.xlsx", curps)))
        assert proc.returncode == 0, proc.stderr
        batch_id = proc.stdout.strip().splitlines()[-1]
        st = cluster.wait_done(batch_id, timeout=400)
        lifter.stop.set()
        assert_batch_right(st["results"], curps)
        logs = [e for w in sorted(tmp_path.glob("worker*.log"))
                for e in log_events(w.read_text(encoding="utf-8", errors="replace"))]
        assert [e["portal"] for e in logs if e["event"] == "portal_blocked"] == ["imss"]
        assert len(notices(operator_mail)) == 1
        assert any(e["event"] == "portal_resumed" for e in logs)
        checks = cluster.storage().checks(batch_id)
        imss = [c for c in checks if c.portal == "imss"]
        assert any(c.attempts > 1 for c in imss)
        assert all(c.attempts <= 4 for c in imss), [c.attempts for c in imss]
        assert all(c.attempts == 1 for c in checks if c.portal == "issste")
    finally:
        cluster.close()
