"""IMSS checks that wait for their email hold no browser and no slot (SPEC §7): the embedded
engine and the distributed workers, real Chromium against the sandbox with slow mail, real
Redis, real SQLite; a worker is killed -9 while its check waits."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.people import expected, synthetic_curps, write_sheet
from tests.worker.engine.test_distributed import Cluster
from worker.core.settings import load_settings
from worker.engine.executor import executor_for
from worker.interfaces.commands import sandbox_settings
from worker.services.batches import open_storage, prepare_batch
from worker.storage.repository import Storage
from worker.storage.waiting import MailWait

pytestmark = pytest.mark.browser


def _waits(storage: Storage, batch_id: str) -> dict[int, MailWait]:
    with storage.session() as s:
        return {w.check_id: w for w in s.query(MailWait).filter(MailWait.batch_id == batch_id)}


def _constancia_curps(n: int, seed: int) -> list[str]:
    """CURPs whose IMSS check gives a constancia (so it waits for its email)."""
    return [c for c in synthetic_curps(n * 4, seed=seed)
            if expected(c)["imss"] in ("not_entitled", "entitled")][:n]


def test_embedded_engine_with_slow_mail_finishes_other_checks_meanwhile(
        sandbox, tmp_path: Path) -> None:
    """One worker process (K=1), IMSS mail 20 s late: the ISSSTE checks run while the IMSS
    checks wait for their email (each ISSSTE check ends inside an IMSS check's wait, which the
    design before could not do: its IMSS check held the only slot), the progress shows them
    waiting, and every IMSS check ends with its verdict from one query."""
    sandbox.set_faults("imss", email_delay_s=20)
    settings = sandbox_settings(load_settings(concurrency=1, data_dir=tmp_path / "data",
                                              mailbox_poll_s=0.2), sandbox)
    assert settings.imss_mail_wait == "watch"
    storage = open_storage(settings)
    curps = _constancia_curps(2, seed=2201)
    batch_id, _ = prepare_batch(settings, storage, write_sheet(tmp_path / "a.xlsx", curps),
                                ["imss", "issste"])
    seen: list[dict] = []
    executor_for(settings, storage).run_to_end(
        batch_id, progress=lambda p: seen.append({k: dict(v) for k, v in p.per_portal.items()}))
    checks = storage.checks(batch_id)
    for c in checks:
        assert c.status == expected(c.curp)[c.portal], c.detail
    for curp in curps:
        assert sandbox.stats("imss")["queries"].get(curp) == 1
    waits = _waits(storage, batch_id)
    imss = [c for c in checks if c.portal == "imss"]
    assert {c.id for c in imss} == set(waits)
    assert all(w.stage == "done" for w in waits.values())
    spans = [(waits[c.id].sent_at, c.finished_at) for c in imss]
    for c in checks:
        if c.portal == "issste":
            assert any(start < c.finished_at < end for start, end in spans), (c.finished_at,
                                                                             spans)
    assert any(p["imss"].get("waiting", 0) >= 1 for p in seen)
    assert all(Path(c.pdf_path).is_file() for c in imss)


def test_a_check_waiting_when_its_worker_is_killed_is_finished_by_another(
        sandbox, tmp_path: Path) -> None:
    """kill -9 of the only worker (its whole process group) while its IMSS checks wait for
    their email: a worker started afterwards finishes them, from the one query each made."""
    sandbox.set_faults("imss", email_delay_s=25)
    cluster = Cluster(tmp_path, sandbox)
    try:
        curps = _constancia_curps(2, seed=2202)
        victim = cluster.start_worker(2)
        proc = cluster.cli("submit", str(write_sheet(tmp_path / "h.xlsx", curps)),
                           "--portals", "imss")
        assert proc.returncode == 0, proc.stderr
        batch_id = proc.stdout.strip().splitlines()[-1]
        storage = cluster.storage()
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            waits = _waits(storage, batch_id)
            if len(waits) == len(curps) and all(w.stage == "mail1" for w in waits.values()):
                break
            time.sleep(0.3)
        else:
            raise AssertionError(f"the checks did not come to wait for mail: {waits}")
        assert cluster.status(batch_id)["waiting"] == len(curps)
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait(30)
        cluster.start_worker(2)
        st = cluster.wait_done(batch_id, timeout=300)
        for r in st["results"]:
            assert r["status"] == expected(r["curp"])["imss"], r
            assert r["pdf"] and Path(r["pdf"]).is_file()
        for curp in curps:
            assert sandbox.stats("imss")["queries"].get(curp) == 1
            assert sandbox.stats("imss")["constancias"].get(curp) == 1
        assert st["waiting"] == 0
    finally:
        cluster.close()
