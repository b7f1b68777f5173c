"""The embedded engine: no broker, no server to install.

The parent process dispatches a batch's checks to K child processes, forked from a clean fork
server that has only imported the modules a check needs (``spawn`` where there is no fork
server): Playwright never crosses a fork, and the K children do not import everything K
times. Each child runs the very ``Engine.execute`` the Celery task runs, with one
browser of its own. The parent enforces the per-portal rate limit and concurrency cap, waits
out retry delays, holds back a portal whose bot protection blocked a check (``LocalPause``:
the whole portal waits, the other goes on, the operator is told once per episode), shows
progress, and replaces a child that dies (its check runs again).
Everything is recorded in storage as it happens: an interrupted run, started again with the
same sheet, resumes where it stopped.
"""

from __future__ import annotations

import contextlib
import heapq
import multiprocessing as mp
import os
import queue
import signal
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from flows import registry
from flows.browser import close_shared
from worker.core.logs import configure_logging, mask_text
from worker.core.settings import Settings
from worker.engine.check import Decision, Engine
from worker.engine.limits import BlockWatch, LocalLimiter, LocalPause, PausePolicy
from worker.engine.mailwatch import MailWatcher
from worker.engine.notify import notify_portal_blocked
from worker.storage.repository import Storage

__all__ = ["run_embedded", "Progress"]

log = structlog.get_logger("constancias.embedded")


@dataclass
class Progress:
    per_portal: dict[str, dict[str, int]] = field(default_factory=dict)
    retrying: int = 0


#: A check to run: (check id, portal, attempt, blocks met).
Job = tuple[int, str, int, int]


@dataclass
class _Line:
    """The checks ready to run, in the order they are offered a child: first the next steps of
    checks whose email came (each one ends a check and its wait, and spends no rate token: its
    step 1 spent the check's), then new checks and retries in the batch's order. Behind every
    pending step 1 a due step 2 would wait for the whole batch's first steps (issue 22)."""

    steps: list[Job] = field(default_factory=list)
    checks: list[Job] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.steps or self.checks)

    def offer(self, take: Callable[[Job, bool], bool]) -> None:
        """``take(job, is_step)`` for each job in order; the ones it took leave the line."""
        self.steps = [job for job in self.steps if not take(job, True)]
        self.checks = [job for job in self.checks if not take(job, False)]


def _child(settings_data: dict[str, Any], jobs: Any, results: Any, parent: int,
           environ: dict[str, str] | None = None, console_level: str | None = None) -> None:
    """A child's whole life. Anything that escapes it would be printed by multiprocessing as a
    raw traceback on stderr, where a CURP in a path or a message would appear whole: it is
    printed masked instead, and the child exits 1 (the parent requeues its check).

    ``environ`` is the parent's environment when it started the child: a fork server keeps the
    one it was started with, and a long-lived parent (the web page) may have changed since.
    ``console_level``: what the child shows on the parent's screen (the log file, if any,
    gets everything)."""
    if environ is not None:
        os.environ.clear()
        os.environ.update(environ)
    try:
        _child_loop(settings_data, jobs, results, parent, console_level)
    except Exception:  # noqa: BLE001 - last resort: mask, then die like a crash
        sys.stderr.write(mask_text(traceback.format_exc()))
        sys.stderr.flush()
        sys.exit(1)


def _child_loop(settings_data: dict[str, Any], jobs: Any, results: Any, parent: int,
                console_level: str | None = None) -> None:
    # Children must not survive the parent, nor die on the terminal's Ctrl-C before it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    settings = Settings(**settings_data)
    configure_logging(settings.log_format, settings.log_level, console_level=console_level,
                      log_file=settings.log_file)
    engine = Engine(settings)
    while True:
        try:
            if not jobs.poll(1.0):
                if not _parent_alive(parent):
                    break
                continue
            job = jobs.recv()
        except (EOFError, OSError):
            break  # the parent closed its end (it ended, or gave up on this child)
        if job is None:
            break
        check_id, attempt, blocks = job
        results.put(("started", os.getpid(), check_id, None))
        try:
            decision = engine.execute(check_id, attempt=attempt, blocks=blocks,
                                      task_id=f"embedded-{os.getpid()}")
        except Exception as exc:  # noqa: BLE001 - report, never kill the child
            log.exception("embedded_execute_failed", check_id=check_id)
            decision = Decision(done=False, retry_in=5.0, attempt=attempt + 1, blocks=blocks,
                                status=type(exc).__name__)
        results.put(("result", os.getpid(), check_id, decision))
    close_shared()


def _make_sure_it_ended(process: Any) -> None:
    """A child that looks ended really is, before its check runs again elsewhere. With a fork
    server, the parent learns of a child's end from the server: were the server itself killed,
    every child would look ended while still running its check (two runs of one check would
    then spend two IMSS queries). Such a child is killed (its browser and driver end with it:
    Playwright's driver leaves when its pipe closes)."""
    try:
        with open(f"/proc/{process.pid}/stat", encoding="ascii") as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return  # it has ended (or this system has no /proc: a spawned child is watched directly)
    if state in ("Z", "X"):
        return  # ended, not yet reaped
    try:
        os.kill(process.pid, signal.SIGKILL)
        log.warning("embedded_child_lost_from_view", pid=process.pid)
    except (ProcessLookupError, PermissionError):
        pass  # ended meanwhile


def _parent_alive(parent: int) -> bool:
    """Whether the process that started this child still runs (forked from the fork server, a
    child's OS parent is the server; multiprocessing keeps a line to the real one)."""
    process = mp.parent_process()
    if process is not None:
        return process.is_alive()
    return os.getppid() == parent


#: What every check imports, loaded once in the fork server: each of K children would otherwise
#: spend 0.7 s of CPU importing it, all at the start of a run, on the cores the checks need.
_PRELOAD = [
    "worker.engine.check", "worker.core.logs", "worker.storage.repository", "flows.runner",
    "flows.captcha", "flows.mailbox", "flows.pdf", "flows.browser", "playwright.sync_api",
]


def _mp_context() -> Any:
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload([*_PRELOAD, *registry.portal_modules()])
        return ctx
    return mp.get_context("spawn")


def run_embedded(
    settings: Settings,
    storage: Storage,
    batch_id: str,
    *,
    concurrency: int | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    poll_s: float = 0.2,
    console_level: str | None = None,
) -> None:
    """Run every pending check of a batch to a status, then make sure the report exists.

    ``console_level``: the least a worker process shows on stderr (``run`` on a terminal:
    ``warning``, so that its progress line stays readable); ``None``: ``LOG_LEVEL``."""
    k = max(1, concurrency or settings.concurrency)
    # A run killed while it wrote the report left the claim behind: this run writes it.
    if storage.reclaim_report(batch_id):
        log.warning("embedded_report_reclaimed", batch_id=batch_id)
    pending = storage.pending_check_ids(batch_id, registry.run_order())
    ctx = _mp_context()
    # Each child reads its jobs from a pipe of its own: a child killed while it waits for one
    # (a shared queue's reader holds the queue's lock while it waits) takes nobody's jobs
    # with it, and a job is never in a queue where a dead child might have taken it.
    results: Any = ctx.Queue()
    data = settings.model_dump(mode="json")
    parent = os.getpid()

    pipes: dict[int, Any] = {}  # pid -> the sending end of its job pipe

    def spawn() -> Any:
        receive, send = ctx.Pipe(duplex=False)
        p = ctx.Process(target=_child, daemon=True,
                        args=(data, receive, results, parent, dict(os.environ), console_level))
        p.start()
        receive.close()
        pipes[p.pid] = send
        return p

    k = min(k, max(1, len(pending)))
    procs = [spawn() for _ in range(k)] if pending else []
    limiter = LocalLimiter(lambda p: registry.portal(p).rate_limit(settings),
                           lambda p: registry.portal(p).max_concurrency(settings))
    pauses = BlockWatch(
        LocalPause(PausePolicy.from_settings(settings)),
        lambda portal, pause, reason: notify_portal_blocked(settings, portal, pause, reason),
        log.bind(batch_id=batch_id),
    )
    line = _Line(checks=[(cid, portal, 0, 0) for cid, portal in pending])
    stepping: set[int] = set()  # woken by their email: their next run is a step 2
    delayed: list[tuple[float, int, str, int, int]] = []
    inflight: dict[int, tuple[str, int, int]] = {}
    # Checks waiting for an email (IMSS; worker/storage/waiting.py): no slot; the watcher
    # wakes them.
    waiting: dict[int, tuple[str, int, int]] = {}
    woken: queue.SimpleQueue[int] = queue.SimpleQueue()
    early: set[int] = set()  # woken before their "waiting" result came back
    watcher = None
    if settings.imss_mail_wait == "watch" and any(
            registry.portal(p).mail_steps is not None for _, p in pending):
        watcher = MailWatcher(settings, lambda cid, _attempts: woken.put(cid), storage).start()
    sent_at: dict[int, float] = {}  # check id -> when dispatched (the pause's clock)
    running_on: dict[int, int] = {}  # pid -> the check id sent to it
    portal_of = {cid: portal for cid, portal in pending}
    last_progress = 0.0
    paused: set[str] = set()
    idle: list[Any] = []

    def take(job: Job, step: bool) -> bool:
        """Send ``job`` to an idle child if its portal and the limits let it go."""
        cid, portal, attempt, blocks = job
        if portal in paused or not idle or not limiter.acquire(portal, spend=not step):
            return False
        child = idle.pop(0)
        inflight[cid] = (portal, attempt, blocks)
        sent_at[cid] = pauses.now()
        running_on[child.pid] = cid
        try:
            pipes[child.pid].send((cid, attempt, blocks))
        except OSError:
            pass  # it died: found below, its check goes back in line
        return True

    try:
        while line or delayed or inflight or waiting:
            now = time.monotonic()
            while True:
                try:
                    cid = woken.get_nowait()
                except queue.Empty:
                    break
                if cid in waiting:
                    portal, attempt, blocks = waiting.pop(cid)
                    line.steps.append((cid, portal, attempt, blocks))
                    stepping.add(cid)
                else:
                    early.add(cid)
            while delayed and delayed[0][0] <= now:
                _, cid, portal, attempt, blocks = heapq.heappop(delayed)
                line.checks.append((cid, portal, attempt, blocks))
            # Dispatch what the limits allow, in order, keeping every child busy; a paused
            # (blocked) portal waits whole.
            paused = {p for p in {j[1] for j in line.steps + line.checks}
                      if pauses.remaining(p) > 0}
            idle = [p for p in procs if p.pid not in running_on]

            line.offer(take)
            try:
                kind, pid, cid, decision = results.get(timeout=poll_s)
            except queue.Empty:
                kind = None
            if kind == "result":
                running_on.pop(pid, None)
                stepping.discard(cid)  # a retry of a failed step spends a token again
                portal, attempt, _ = inflight.pop(cid, (portal_of[cid], 0, 0))
                limiter.release(portal, "local")
                since = sent_at.pop(cid, pauses.now())
                wait = decision.retry_in or 0.0
                if decision.blocked:
                    wait = max(wait, pauses.blocked(portal, since, decision.detail or ""))
                elif decision.done and decision.status != "portal_blocked":
                    pauses.passed(portal, since)
                if decision.waiting:
                    if cid in early:
                        early.discard(cid)
                        line.steps.append((cid, portal, decision.attempt, decision.blocks))
                        stepping.add(cid)
                    else:
                        waiting[cid] = (portal, decision.attempt, decision.blocks)
                elif not decision.done:
                    due = time.monotonic() + wait
                    heapq.heappush(delayed, (due, cid, portal, decision.attempt,
                                             decision.blocks))
            # A child that died (OOM, a crash, kill -9): its check goes back in line. Every
            # child that looks ended is made sure of first: a replacement may have to start a
            # new fork server (seconds under load) while the others of a killed one still run.
            dead = [i for i, p in enumerate(procs) if not p.is_alive()]
            for i in dead:
                _make_sure_it_ended(procs[i])
            for i in dead:
                p = procs[i]
                lost = running_on.pop(p.pid, None) if p.pid is not None else None
                if lost is not None and lost in inflight:
                    portal, attempt, blocks = inflight.pop(lost)
                    limiter.release(portal, "local")
                    (line.steps if lost in stepping else line.checks).insert(
                        0, (lost, portal, attempt, blocks))
                    log.warning("embedded_child_died", pid=p.pid, check_id=lost)
                with contextlib.suppress(OSError, KeyError):
                    pipes.pop(p.pid).close()
                procs[i] = spawn()
            if on_progress and (time.monotonic() - last_progress > 0.5):
                last_progress = time.monotonic()
                on_progress(Progress(storage.progress(batch_id), len(delayed)))
    finally:
        if watcher is not None:
            watcher.stop()
        for p in procs:
            with contextlib.suppress(OSError, KeyError):
                pipes[p.pid].send(None)
        deadline = time.monotonic() + 10
        for p in procs:
            p.join(max(0.1, deadline - time.monotonic()))
            if p.is_alive():
                p.terminate()
                p.join(2)
    if on_progress:
        on_progress(Progress(storage.progress(batch_id), 0))
    # Normally the last check wrote the report; this covers a batch with nothing left to run.
    Engine(settings, storage).finish_if_complete(batch_id)
