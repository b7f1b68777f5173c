"""The nightly schedule: cron in Mexico City time, a missed night made up, and real schedulers
firing the re-check — the embedded in-process loop and RedBeat with a real worker on Redis."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis

from fixtures.population import SCENARIOS
from tests.redis_server import RedisServer
from worker.core.settings import Settings, load_settings
from worker.services.batches import open_storage
from worker.services.schedule import RECHECK_ENTRY, EmbeddedScheduler, beat_schedule, next_run
from worker.storage.repository import Batch, Storage

CLI = [sys.executable, "-m", "worker.interfaces.cli"]
PERSON = SCENARIOS["issste_not_affiliated"]


def test_cron_is_read_in_mexico_city_time() -> None:
    """The default 02:00 is 02:00 in Mexico City (08:00 UTC, no DST since 2022), for Celery
    beat and the embedded loop alike."""
    settings = load_settings()
    entry = beat_schedule(settings)[RECHECK_ENTRY]
    assert entry["task"] == "constancias.recheck"
    assert entry["schedule"].hour == {2} and entry["schedule"].minute == {0}
    after = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
    assert next_run(settings, after) == datetime(2026, 7, 2, 8, 0, tzinfo=UTC)
    weekly = load_settings(recheck_cron="30 23 * * 1")  # Mondays 23:30 local
    assert next_run(weekly, after) == datetime(2026, 7, 7, 5, 30, tzinfo=UTC)


def test_a_night_missed_while_stopped_is_made_up_once_at_start(tmp_path: Path) -> None:
    """If the scheduler was down at 02:00, it runs the re-check once when it starts again,
    and records the run in its schedule file."""
    settings = load_settings()
    state = tmp_path / "beat-schedule.json"
    two_days_ago = datetime.now(UTC) - timedelta(days=2)
    state.write_text(json.dumps({"last_run_at": two_days_ago.isoformat()}))
    calls: list[int] = []

    def job() -> str:
        calls.append(1)
        scheduler.stop()
        return "lote"

    scheduler = EmbeddedScheduler(settings, job, state_path=state)
    scheduler.run()
    assert calls == [1]
    recorded = datetime.fromisoformat(json.loads(state.read_text())["last_run_at"])
    assert recorded > two_days_ago and recorded <= datetime.now(UTC)
    # The next start finds nothing missed and waits for the next 02:00.
    calls.clear()
    scheduler.run()  # still stopped: only the start-up look at missed runs happens
    assert calls == []


# --- real schedulers ----------------------------------------------------------------------


def _seed(settings: Settings) -> Storage:
    """One active person with an ISSSTE result, so a re-check has someone to take."""
    storage = open_storage(settings)
    batch_id = storage.create_batch(key="k", source_name="altas.xlsx", portals=["issste"],
                                    columns=["Nombre"], out_dir=settings.data_dir / "lote",
                                    rows=[{"row_number": 2, "value": PERSON, "curp": PERSON,
                                           "reason": None, "duplicate_of": None,
                                           "extra": {"Nombre": "Rosa"}}])
    (check,) = storage.checks(batch_id)
    storage.record_result(check.id, status="not_affiliated", detail="")
    storage.finish_batch(batch_id, None)
    return storage


def _env(sandbox, data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONSTANCIAS_")}
    env.update({
        "CONSTANCIAS_DATA_DIR": str(data_dir),
        "CONSTANCIAS_IMSS_URL": sandbox.imss_url,
        "CONSTANCIAS_ISSSTE_URL": sandbox.issste_url,
        "CONSTANCIAS_MAILBOX_URL": sandbox.mailbox_url,
        "CONSTANCIAS_LOG_FORMAT": "json",
        # A schedule a couple of seconds away instead of the nightly cron.
        "CONSTANCIAS_RECHECK_EVERY_S": "2",
        "CONSTANCIAS_RECHECK_OLDER_THAN_H": "0",
        "CONSTANCIAS_RETRY_MAX": "1",
        "CONSTANCIAS_RETRY_BACKOFF_S": "0.2",
        "CONSTANCIAS_CONCURRENCY": "1",
    })
    env.update(extra)
    return env


def _wait_for_recheck(storage: Storage, procs: list[subprocess.Popen[bytes]],
                      timeout: float = 120) -> Batch:
    """The first re-check batch, once done (fails early if a process died)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in procs:
            assert p.poll() is None, f"{p.args} exited with {p.returncode}"
        done = [b for b in storage.list_batches() if b.kind == "recheck" and b.state == "done"]
        if done:
            return done[-1]
        time.sleep(0.3)
    raise AssertionError("no re-check batch finished")


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen([*CLI, *args], env=env, cwd=log.parent, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def _stop(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            return proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            return proc.wait(10)
    return proc.returncode


@pytest.mark.browser
def test_embedded_beat_runs_the_recheck_in_process_and_is_alone(sandbox, tmp_path: Path) -> None:
    """Without a broker, `constancias beat` fires the re-check itself on schedule (a re-check
    batch appears and finishes with a fresh ISSSTE check); a second `beat` on the same data
    folder refuses to start."""
    settings = load_settings()
    storage = _seed(settings)
    env = _env(sandbox, settings.data_dir)
    beat = _start(["beat"], env, tmp_path / "beat.log")
    try:
        batch = _wait_for_recheck(storage, [beat])
        second = subprocess.run([*CLI, "beat"], env=env, cwd=tmp_path, capture_output=True,
                                text=True, timeout=60)
    finally:
        code = _stop(beat)
    assert second.returncode == 2 and "otra programación" in second.stderr
    assert code == 0, (tmp_path / "beat.log").read_text()[-3000:]
    (check,) = storage.checks(batch.id)
    assert (check.curp, check.portal, check.status) == (PERSON, "issste", "not_affiliated")
    assert len(storage.history(PERSON, "issste")) >= 2
    assert (settings.data_dir / "beat-schedule.json").is_file()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


@pytest.mark.browser
@pytest.mark.slow
def test_redbeat_fires_the_recheck_on_a_real_worker(sandbox, redis_server: RedisServer,
                                                    tmp_path: Path) -> None:
    """With Redis, `constancias beat` (RedBeat) sends `constancias.recheck` on schedule and a
    `constancias worker` stores the re-check batch and runs its checks to the end."""
    settings = load_settings()
    storage = _seed(settings)
    env = _env(sandbox, settings.data_dir, CONSTANCIAS_BROKER_URL=redis_server.url)
    worker = _start(["worker", "-c", "1"], env, tmp_path / "worker.log")
    beat = _start(["beat"], env, tmp_path / "beat.log")
    try:
        try:
            batch = _wait_for_recheck(storage, [worker, beat], timeout=150)
        except AssertionError as e:
            raise AssertionError(f"{e}\n{(tmp_path / 'worker.log').read_text()[-4000:]}") from e
        keys = redis.Redis.from_url(redis_server.url).keys("redbeat*")
    finally:
        _stop(beat)
        _stop(worker)
    (check,) = storage.checks(batch.id)
    assert (check.curp, check.portal, check.status) == (PERSON, "issste", "not_affiliated")
    assert b"redbeat:" + RECHECK_ENTRY.encode() in keys
    # Beat fires every 2 s; a firing that finds nobody due (the person is being checked) runs
    # no doctor, so the re-check's own check is not queued behind one doctor after another.
    log = (tmp_path / "worker.log").read_text()
    fired = log.count("Task constancias.recheck[")  # "received" and "succeeded" lines
    doctors = log.count('"doctor_passed"')
    assert doctors >= 1 and fired // 2 > doctors, (fired, doctors)
