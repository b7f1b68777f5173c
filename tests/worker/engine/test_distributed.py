"""Distributed engine: real Redis, real `constancias worker` processes, real Chromium against
the sandbox; workers and Redis are killed mid-batch."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from openpyxl import load_workbook
from pypdf import PdfReader

from tests.people import expected, synthetic_curps, write_sheet
from tests.processes import child_running_a_check
from tests.redis_server import RedisServer
from worker.core.settings import load_settings
from worker.storage.repository import Storage

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CLI = [sys.executable, "-m", "worker.interfaces.cli"]


class Cluster:
    """Redis + N worker processes sharing one database and one data folder."""

    def __init__(self, tmp_path: Path, sandbox, database_url: str | None = None) -> None:
        self.tmp = tmp_path
        self.redis = RedisServer(tmp_path / "redis")
        self.redis.start()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CONSTANCIAS_")}
        self.env.update({
            "CONSTANCIAS_BROKER_URL": self.redis.url,
            "CONSTANCIAS_DATA_DIR": str(tmp_path / "data"),
            "CONSTANCIAS_IMSS_URL": sandbox.imss_url,
            "CONSTANCIAS_ISSSTE_URL": sandbox.issste_url,
            "CONSTANCIAS_MAILBOX_URL": sandbox.mailbox_url,
            "CONSTANCIAS_LOG_FORMAT": "json",
            # The default visibility timeout (an hour): recovery from a lost worker or a lost
            # queue must not wait for it. Short leases and sweeps keep the tests quick.
            "CONSTANCIAS_LEASE_S": "15",
            "CONSTANCIAS_SWEEP_INTERVAL_S": "3",
            "CONSTANCIAS_TASK_TIME_LIMIT_S": "120",
            "CONSTANCIAS_RETRY_BACKOFF_S": "0.5",
            "CONSTANCIAS_RETRY_BACKOFF_MAX_S": "4",
            "CONSTANCIAS_RETRY_MAX": "6",
        })
        if database_url:
            self.env["CONSTANCIAS_DATABASE_URL"] = database_url
        self.workers: list[subprocess.Popen[bytes]] = []

    def start_worker(self, concurrency: int = 2) -> subprocess.Popen[bytes]:
        log = open(self.tmp / f"worker{len(self.workers)}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen([*CLI, "worker", "-c", str(concurrency)], env=self.env,
                                cwd=self.tmp, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.workers.append(proc)
        return proc

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*CLI, *args], env=self.env, cwd=self.tmp, capture_output=True,
                              text=True, timeout=timeout)

    def status(self, batch_id: str) -> dict:
        proc = self.cli("status", batch_id, "--json")
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    def done_count(self, batch_id: str) -> int:
        """Checks of the batch with a verdict, read from storage: polling `status --json`
        (a new Python process, ~2 CPU-s) every second would take a core from the workers."""
        return sum(p["done"] for p in self.storage().progress(batch_id).values())

    def wait_done(self, batch_id: str, timeout: float = 300) -> dict:
        """`status --json` of the batch once storage says it is done."""
        storage = self.storage()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            batch = storage.get_batch(batch_id)
            if batch is not None and batch.state == "done":
                st = self.status(batch_id)
                assert st["state"] == "done", st
                return st
            time.sleep(0.5)
        progress = storage.progress(batch_id)
        raise AssertionError(f"batch not done: {progress}\n{self.log_tails()}")

    def log_tails(self, chars: int = 3000) -> str:
        """The end of each worker's log, for a failure's message."""
        return "\n".join(f"--- worker{i}.log\n" + (self.tmp / f"worker{i}.log").read_text(
            errors="replace")[-chars:] for i in range(len(self.workers)))

    def storage(self) -> Storage:
        s = load_settings(data_dir=self.tmp / "data",
                          database_url=self.env.get("CONSTANCIAS_DATABASE_URL"))
        return Storage(s.effective_database_url)

    def close(self) -> None:
        for w in self.workers:
            if w.poll() is None:
                os.killpg(w.pid, signal.SIGTERM)
        for w in self.workers:
            try:
                w.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(w.pid, signal.SIGKILL)
        self.redis.stop()


@pytest.fixture
def cluster(tmp_path: Path, sandbox) -> Iterator[Cluster]:
    c = Cluster(tmp_path, sandbox)
    yield c
    c.close()


def _assert_complete_and_right(cluster: Cluster, batch_id: str, curps: list[str], st: dict) -> None:
    assert st["total"] == len(curps) * 2 and st["done"] == st["total"]
    for r in st["results"]:
        assert r["status"] == expected(r["curp"])[r["portal"]], r
    checks = cluster.storage().checks(batch_id)
    assert len(checks) == len(curps) * 2  # one check per (CURP, portal): nothing duplicated
    for c in checks:
        assert c.status is not None and c.finished_at is not None
        if c.pdf_path:
            data = Path(c.pdf_path).read_bytes()
            assert hashlib.sha256(data).hexdigest() == c.pdf_sha256
            assert c.curp in PdfReader(c.pdf_path).pages[0].extract_text()
    wb = load_workbook(st["report"])
    assert wb["Detalle"].max_row >= len(curps) + 1


def _wait_some_done(cluster: Cluster, batch_id: str, n: int, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cluster.done_count(batch_id) >= n:
            return
        time.sleep(0.5)
    raise AssertionError(f"no progress\n{cluster.log_tails()}")


def test_worker_killed_mid_batch_loses_nothing(cluster: Cluster, sandbox) -> None:
    """kill -9 of one of two workers (and its Chromium) mid-batch: every check ends exactly
    once, every PDF is intact and the report is complete."""
    sandbox.set_faults("imss", latency_ms=200)
    sandbox.set_faults("issste", latency_ms=200)
    curps = synthetic_curps(6, seed=51)
    victim = cluster.start_worker(2)
    cluster.start_worker(2)
    proc = cluster.cli("submit", str(write_sheet(cluster.tmp / "h.xlsx", curps)))
    assert proc.returncode == 0, proc.stderr
    batch_id = proc.stdout.strip().splitlines()[-1]
    _wait_some_done(cluster, batch_id, 3)
    os.killpg(victim.pid, signal.SIGKILL)
    st = cluster.wait_done(batch_id, timeout=300)
    _assert_complete_and_right(cluster, batch_id, curps, st)


def test_pool_process_killed_mid_check_frees_its_check_within_the_lease(
        cluster: Cluster, sandbox) -> None:
    """kill -9 of the one pool process running a check (its worker lives on): Celery gives the
    task back at once, and it runs again as soon as the dead process's lease runs out — not
    an hour later (the visibility timeout)."""
    sandbox.set_faults("imss", latency_ms=300)
    curps = synthetic_curps(4, seed=55)
    worker = cluster.start_worker(2)
    proc = cluster.cli("submit", str(write_sheet(cluster.tmp / "h.xlsx", curps)))
    batch_id = proc.stdout.strip().splitlines()[-1]
    victim = child_running_a_check(worker.pid)
    assert victim is not None, "no pool process was running a check"
    killed_at = time.monotonic()
    victim.kill()
    st = cluster.wait_done(batch_id, timeout=240)
    _assert_complete_and_right(cluster, batch_id, curps, st)
    assert time.monotonic() - killed_at < 200
    assert any(c.deliveries >= 2 for c in cluster.storage().checks(batch_id))


def test_redis_lost_with_its_data_mid_batch_completes(cluster: Cluster, sandbox) -> None:
    """Redis crashes and comes back empty (no persistence): every queued task is gone. The
    sweeper finds the checks nobody will run and sends them again; the batch completes."""
    sandbox.set_faults("imss", latency_ms=200)
    curps = synthetic_curps(4, seed=63)
    cluster.start_worker(2)
    proc = cluster.cli("submit", str(write_sheet(cluster.tmp / "h.xlsx", curps)))
    batch_id = proc.stdout.strip().splitlines()[-1]
    _wait_some_done(cluster, batch_id, 2)
    cluster.redis.kill_and_lose_data()
    time.sleep(2)
    cluster.redis.start()
    st = cluster.wait_done(batch_id, timeout=300)
    _assert_complete_and_right(cluster, batch_id, curps, st)


def test_submit_while_redis_is_down_keeps_the_batch_and_it_runs_once_redis_is_back(
        cluster: Cluster, sandbox) -> None:
    """`submit` with Redis down: one Spanish line, exit 2, no traceback — and the batch is
    stored; once Redis and a worker are up, the sweeper sends its checks and it completes."""
    curps = synthetic_curps(2, seed=67)
    cluster.redis.stop()
    proc = cluster.cli("submit", str(write_sheet(cluster.tmp / "h.xlsx", curps)))
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert "Redis no responde" in proc.stderr
    batch_id = re.search(r"El lote (\w+) quedó guardado", proc.stderr).group(1)
    cluster.redis.start()
    cluster.start_worker(2)
    st = cluster.wait_done(batch_id, timeout=240)
    _assert_complete_and_right(cluster, batch_id, curps, st)


def test_redis_restart_mid_batch_completes(cluster: Cluster, sandbox) -> None:
    """Redis killed and restarted mid-batch: the workers reconnect and the batch completes."""
    sandbox.set_faults("imss", latency_ms=200)
    curps = synthetic_curps(4, seed=61)
    cluster.start_worker(2)
    cluster.start_worker(2)
    proc = cluster.cli("submit", str(write_sheet(cluster.tmp / "h.xlsx", curps)))
    batch_id = proc.stdout.strip().splitlines()[-1]
    _wait_some_done(cluster, batch_id, 2)
    cluster.redis.kill()
    time.sleep(3)
    cluster.redis.start()
    st = cluster.wait_done(batch_id, timeout=300)
    _assert_complete_and_right(cluster, batch_id, curps, st)


def test_error_rate_on_both_portals_still_gives_right_results(cluster: Cluster, sandbox) -> None:
    """With 30 % of responses failing on both portals every check still ends right."""
    sandbox.set_faults("imss", error_rate=0.3)
    sandbox.set_faults("issste", error_rate=0.3)
    curps = synthetic_curps(4, seed=71)
    cluster.start_worker(2)
    cluster.start_worker(2)
    proc = cluster.cli("submit", str(write_sheet(cluster.tmp / "h.xlsx", curps)))
    batch_id = proc.stdout.strip().splitlines()[-1]
    st = cluster.wait_done(batch_id, timeout=400)
    _assert_complete_and_right(cluster, batch_id, curps, st)


def test_worker_shutdown_leaves_no_chromium_behind(cluster: Cluster, sandbox) -> None:
    """A worker stopped with SIGTERM after a batch takes its browsers with it: none of the
    Chromium processes it started is still running afterwards."""
    import psutil

    curps = synthetic_curps(2, seed=81)
    worker = cluster.start_worker(2)
    proc = cluster.cli("submit", str(write_sheet(cluster.tmp / "h.xlsx", curps)), "--portals", "issste")
    batch_id = proc.stdout.strip().splitlines()[-1]
    seen: set[int] = set()

    def look() -> None:
        for child in psutil.Process(worker.pid).children(recursive=True):
            try:
                if "chrom" in child.name().lower():
                    seen.add(child.pid)
            except psutil.NoSuchProcess:
                pass

    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        look()
        if cluster.storage().get_batch(batch_id).state == "done":
            break
        time.sleep(0.3)
    # Once more after the batch: under load one `status` call can outlast the whole batch,
    # and the pool processes keep their browsers until the worker stops.
    look()
    assert seen, "the worker should have started Chromium"
    os.kill(worker.pid, signal.SIGTERM)
    worker.wait(60)
    time.sleep(1)
    alive = [pid for pid in seen if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    assert alive == []
