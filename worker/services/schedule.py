"""The nightly schedule (SPEC §8): ``constancias beat``.

One scheduler only, firing the re-check at ``CONSTANCIAS_RECHECK_CRON`` (default ``0 2 * * *``)
in ``CONSTANCIAS_TIMEZONE`` (default America/Mexico_City):

* **Distributed** (``CONSTANCIAS_BROKER_URL`` set): Celery beat with RedBeat. The schedule lives
  in Redis under a lock, so a second ``constancias beat`` waits instead of firing twice. Beat
  sends the task ``constancias.recheck``; a worker runs it: it selects who is due, stores the
  re-check batch and enqueues its checks on the same workers.
* **Embedded** (no broker): there are no workers for beat to send a task to, so ``constancias
  beat`` is an in-process scheduler loop (croniter) that calls the very function ``constancias
  recheck`` calls (``worker.services.recheck.start_recheck``) and waits for the batch. Its state
  — the last run — is a small JSON file under ``DATA_DIR`` (``beat-schedule.json``, the role of
  Celery's ``celerybeat-schedule`` file): a run missed while the scheduler was stopped is made
  up once at start. A lock file (``beat.lock``) keeps it to one scheduler per data folder.

``CONSTANCIAS_RECHECK_EVERY_S`` replaces the cron with a plain interval; it exists so tests and
demos can see a schedule fire within seconds.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import structlog
from croniter import croniter

from worker.core.errors import ConfigError
from worker.core.settings import Settings
from worker.services.batches import open_storage
from worker.services.recheck import start_recheck

__all__ = ["RECHECK_ENTRY", "beat_schedule", "next_run", "EmbeddedScheduler", "run_beat"]

log = structlog.get_logger("constancias.schedule")

#: Name of the beat entry (RedBeat key suffix) and of the task it sends.
RECHECK_ENTRY = "constancias-recheck"
RECHECK_TASK = "constancias.recheck"


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """Celery's ``beat_schedule``: the re-check at the cron, in the app's timezone."""
    from celery.schedules import crontab, schedule  # Celery: for broker mode only

    if settings.recheck_every_s:
        when: Any = schedule(run_every=timedelta(seconds=settings.recheck_every_s))
    else:
        minute, hour, day_of_month, month_of_year, day_of_week = settings.recheck_cron.split()
        # Celery reads crontab fields in the app's ``timezone`` (celeryconfig sets TIMEZONE).
        when = crontab(minute=minute, hour=hour, day_of_month=day_of_month,
                       month_of_year=month_of_year, day_of_week=day_of_week)
    return {RECHECK_ENTRY: {"task": RECHECK_TASK, "schedule": when,
                            "options": {"expires": 6 * 3600}}}


def next_run(settings: Settings, after: datetime) -> datetime:
    """The first scheduled time strictly after ``after`` (aware; returned in UTC)."""
    if settings.recheck_every_s:
        return (after + timedelta(seconds=settings.recheck_every_s)).astimezone(UTC)
    local = after.astimezone(settings.tz)
    return croniter(settings.recheck_cron, local).get_next(datetime).astimezone(UTC)


def _previous_run(settings: Settings, before: datetime) -> datetime | None:
    """The latest scheduled time at or before ``before`` (None for interval schedules)."""
    if settings.recheck_every_s:
        return None
    local = before.astimezone(settings.tz)
    return croniter(settings.recheck_cron, local).get_prev(datetime).astimezone(UTC)


class EmbeddedScheduler:
    """The embedded ``beat``: wake at each scheduled time and run ``job`` in this process.

    ``job`` runs to completion (a re-check batch on the embedded pool); a time that passes
    while it runs is not queued up — the next one after it finishes is taken.
    """

    def __init__(self, settings: Settings, job: Callable[[], Any],
                 state_path: Path | None = None) -> None:
        self.settings = settings
        self.job = job
        self.state_path = state_path or settings.data_dir / "beat-schedule.json"
        self.stop_event = threading.Event()

    def _last_run(self) -> datetime | None:
        try:
            data = json.loads(self.state_path.read_text())
            return datetime.fromisoformat(data["last_run_at"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _save(self, at: datetime) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"entry": RECHECK_ENTRY, "last_run_at": at.isoformat(),
                                   "cron": self.settings.recheck_cron,
                                   "every_s": self.settings.recheck_every_s}))
        os.replace(tmp, self.state_path)

    def _fire(self, due: datetime) -> None:
        log.info("recheck_fired", due=due.isoformat(), mode="embedded")
        try:
            batch_id = self.job()
            log.info("recheck_finished", batch_id=batch_id)
        except Exception:  # noqa: BLE001 - one failed night must not stop the schedule
            log.exception("recheck_failed")
        self._save(due)

    def run(self) -> None:
        """Loop until ``stop()``."""
        now = datetime.now(UTC)
        last = self._last_run()
        if last is None:
            self._save(now)  # first start: nothing was missed
        else:
            missed = _previous_run(self.settings, now)
            if missed is not None and missed > last:
                log.info("recheck_missed_run", due=missed.isoformat())
                self._fire(missed)
        while not self.stop_event.is_set():
            due = next_run(self.settings, datetime.now(UTC))
            log.info("recheck_next", at=due.astimezone(self.settings.tz).isoformat())
            while not self.stop_event.is_set():
                left = (due - datetime.now(UTC)).total_seconds()
                if left <= 0:
                    break
                # Sleep in bounded slices: a wall-clock jump (NTP, suspend) is noticed.
                self.stop_event.wait(min(left, 60.0))
            if self.stop_event.is_set():
                break
            self._fire(due)

    def stop(self) -> None:
        self.stop_event.set()


def _lock(settings: Settings) -> IO[str]:
    """Hold ``DATA_DIR/beat.lock`` for this process's life: one embedded scheduler per folder."""
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    handle = open(settings.data_dir / "beat.lock", "a+")  # noqa: SIM115 - held until exit
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise ConfigError("Ya hay otra programación («constancias beat») corriendo con esta "
                          "carpeta de datos; solo debe haber una.") from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def _run_embedded(settings: Settings) -> int:
    # Doctor's checks (Pillow, alembic, the browser): loaded by the embedded beat only.
    from worker.services.preflight import doctor_in_own_browser, gated_recheck

    lock = _lock(settings)
    storage = open_storage(settings)
    # Doctor first: a failure postpones the batch (worker/services/preflight.py).
    scheduler = EmbeddedScheduler(settings, lambda: gated_recheck(
        settings, storage, lambda: start_recheck(settings, storage, wait=True),
        wait=scheduler.stop_event.wait, doctor=doctor_in_own_browser))

    def _on_signal(signum: int, _frame: Any) -> None:
        scheduler.stop()
        # A re-check in progress is interrupted; what it recorded stays (history is per check).
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    when = (f"cada {settings.recheck_every_s:g} s" if settings.recheck_every_s
            else f"«{settings.recheck_cron}» ({settings.timezone})")
    print(f"Programación local (sin broker): revisión {when}.", flush=True)
    try:
        scheduler.run()
    finally:
        lock.close()
    return 0


def _run_celery_beat(settings: Settings) -> int:
    # Imported here: the Celery app starts Celery's machinery, for broker mode only.
    from worker.engine.celery_app import app

    app.conf.beat_schedule = beat_schedule(settings)
    # RedBeat's own Redis options; unset it borrows the broker's (and warns about it).
    app.conf.redbeat_redis_options = app.conf.get("redbeat_redis_options") or {}
    if settings.recheck_every_s:
        # Beat sleeps up to this long between looks at the schedule.
        app.conf.beat_max_loop_interval = max(1.0, settings.recheck_every_s / 2)
    return int(app.start(["beat", "--loglevel", settings.log_level.upper(),
                          "--scheduler", "redbeat.RedBeatScheduler"]) or 0)


def run_beat(settings: Settings) -> int:
    """``constancias beat``: RedBeat with a broker, the in-process loop without one."""
    if settings.embedded:
        return _run_embedded(settings)
    return _run_celery_beat(settings)
