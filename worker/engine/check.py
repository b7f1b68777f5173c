"""The body of one check, shared by the Celery task and the embedded pool.

``Engine.execute(check_id, attempt)`` deserialises nothing but an id: it reads the check from
storage, skips it if it already has a status (a redelivered or duplicated task changes nothing),
reuses today's verdict for the same CURP and portal when there is one, otherwise runs the flow in
this process's browser, records the result once, and produces the batch's report when this was
the last check. It returns a ``Decision``; the caller (task or pool) does the waiting.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from datetime import time as dtime
from pathlib import Path
from typing import Any

import structlog

from flows import registry
from flows.base import FirstMail, MailAwaited, Person, SecondMail
from flows.browser import shared_browser
from flows.errors import (
    EmailNotReceived,
    FlowError,
    PortalBlocked,
    TransientError,
    classify,
    retry_delay,
)
from flows.mailbox import open_mailbox
from flows.runner import CheckRun, run_check
from worker.core.logs import mask_text
from worker.core.settings import Settings
from worker.core.statuses import REUSABLE, Status
from worker.engine.limits import BlockWatch, Limiter, NullLimiter
from worker.engine.notify import notify_batch
from worker.engine.webhooks import emit_batch_events
from worker.report.data import build_report
from worker.storage.repository import Busy, Skipped, Started, Storage
from worker.storage.waiting import WAITING_STAGES, MailWait, Waits, wait_ends

__all__ = ["Decision", "Engine", "person_dir"]

log = structlog.get_logger("constancias.engine")

#: How long a check waits when the politeness limits refuse it a slot.
THROTTLE_WAIT_S = 1.0


@dataclass(frozen=True)
class Decision:
    """What the caller does next with a check."""

    done: bool
    retry_in: float | None = None
    """Seconds to wait before running it again (with ``attempt``)."""
    attempt: int = 0
    throttled: bool = False
    status: str | None = None
    blocks: int = 0
    """How many of the ``attempt`` runs met the portal's block (they spend no ``retry_max``)."""
    blocked: bool = False
    """This run met the portal's block: the embedded dispatcher pauses the portal."""
    detail: str | None = None
    """Why a run failed (masked), for the dispatcher's log and the operator's notice."""
    waiting: bool = False
    """The check waits for an email (worker/storage/waiting.py): nobody runs it until the mailbox
    watcher schedules its next step; it holds no slot meanwhile."""


def person_dir(out_dir: str | Path, curp: str) -> Path:
    """Per-person folder of a batch's output (PDFs and evidence)."""
    return Path(out_dir) / "constancias" / curp


class Engine:
    """One per process: holds the storage handle, the limiter and, lazily, the browser."""

    def __init__(self, settings: Settings, storage: Storage | None = None,
                 limiter: Limiter | None = None, lease_s: float | None = None,
                 blocks: BlockWatch | None = None) -> None:
        self.settings = settings
        self.storage = storage or Storage(settings.effective_database_url)
        self.limiter = limiter or NullLimiter()
        #: The portals' pause record (distributed: Redis). ``None`` in an embedded child: the
        #: dispatcher holds the pause and learns of blocks from ``Decision.blocked``.
        self.blocks = blocks
        #: Distributed mode leases a running check (a redelivered copy waits); the embedded
        #: dispatcher never runs a check twice at once and resumes at once after a crash.
        self.lease_s = lease_s
        self._captcha: Any = None
        self._mailbox: Any = None
        self.waits = Waits(self.storage)

    # --- collaborators, created on first use (after any fork) ----------------------------
    def _solver(self) -> Any:
        if self._captcha is None:
            # Imported here: the solver's OCR libraries load only in processes that run checks.
            from flows.captcha import make_solver

            self._captcha = make_solver(self.settings)
        return self._captcha

    def _mail(self) -> Any:
        if self._mailbox is None:
            self._mailbox = open_mailbox(self.settings.effective_mailbox_url,
                                         poll_s=self.settings.mailbox_poll_s)
        return self._mailbox

    # --- the check ------------------------------------------------------------------------
    def execute(self, check_id: int, *, attempt: int = 0, task_id: str | None = None,
                blocks: int = 0) -> Decision:
        check = self.storage.get_check(check_id)
        if check is None or check.status is not None:
            return Decision(done=True, status=check.status if check else None)
        wait = (self.waits.get(check_id)
                if registry.portal(check.portal).mail_steps is not None else None)
        if wait is not None and wait.stage == "sending":
            wait = None  # its step 1 died before the portal's answer was stored: run it again
        if wait is not None and wait.stage in WAITING_STAGES:
            # A copy of a task whose check waits for mail (redelivered, sent by the sweeper).
            return Decision(done=False, attempt=attempt, waiting=True, blocks=blocks)
        if wait is not None and wait.stage in ("ready", "expired"):
            # Nothing left to ask the portal: no politeness slot, no pause.
            return self._execute(check_id, attempt=attempt, task_id=task_id, blocks=blocks,
                                 wait=wait)
        paused = self.blocks.remaining(check.portal) if self.blocks else 0.0
        if paused > 0:
            # The portal is blocking us: wait for its pause (a tenth more, spread), unspent.
            pause = paused + random.uniform(0, max(paused, 1.0) / 10)
            return Decision(done=False, retry_in=pause, attempt=attempt, throttled=True,
                            blocks=blocks)
        # Step 2 (the link of a check that waited for its email) spends no rate token: step 1
        # spent the check's; it still counts under the concurrency cap (it opens the portal).
        token = self.limiter.acquire(check.portal,
                                     spend=wait is None or wait.stage != "link")
        if token is None:
            return Decision(done=False, retry_in=THROTTLE_WAIT_S, attempt=attempt, throttled=True,
                            blocks=blocks)
        try:
            return self._execute(check_id, attempt=attempt, task_id=task_id, blocks=blocks,
                                 wait=wait)
        finally:
            self.limiter.release(check.portal, token)

    def _execute(self, check_id: int, *, attempt: int, task_id: str | None,
                 blocks: int = 0, wait: MailWait | None = None) -> Decision:
        # Distributed: a task carries its attempt, so a late copy of one already run is dropped.
        started = self.storage.start_check(check_id, task_id, lease_s=self.lease_s,
                                           attempt=attempt if self.lease_s else None)
        match started:
            case Skipped():
                return Decision(done=True)
            case Busy(retry_in):  # another worker is running it right now
                return Decision(done=False, retry_in=retry_in, attempt=attempt, throttled=True,
                                blocks=blocks)
            case Started(check, batch):
                with _Heartbeat(self.storage, check_id, task_id, self.lease_s):
                    return self._run_started(check, batch, attempt=attempt, task_id=task_id,
                                             blocks=blocks, wait=wait)

    def _run_started(self, check: Any, batch: Any, *, attempt: int,
                     task_id: str | None, blocks: int = 0,
                     wait: MailWait | None = None) -> Decision:
        check_id = check.id
        bound = log.bind(batch_id=batch.id, portal=check.portal, task_id=task_id,
                         check_id=check_id, attempt=attempt)
        # Deliveries that never reached an end (the worker died): stop a poison task.
        crashes = check.deliveries - 1 - check.attempts
        if crashes >= self.settings.max_redeliveries:
            bound.error("check_abandoned", crashes=crashes)
            self._record(check_id, batch.id, status=Status.ERROR,
                         detail=f"La consulta se interrumpió {crashes} veces; se abandonó.")
            return Decision(done=True, status=Status.ERROR.value)

        if batch.kind != "recheck" and wait is None:
            reused = self._reuse(check, batch.out_dir, bound)
            if reused:
                return Decision(done=True, status=reused)

        home = person_dir(batch.out_dir, check.curp)
        # The flow writes into a folder of its own; files reach the person's folder only when
        # this run's result is the one recorded (a duplicate run never overwrites a PDF).
        work_dir = home / f".intento-{uuid.uuid4().hex[:8]}"
        work_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            return self._attempt(check, batch, work_dir, home, bound, attempt, blocks, wait)
        finally:
            shutil.rmtree(work_dir, ignore_errors=True)

    def _attempt(self, check: Any, batch: Any, work_dir: Path, home: Path, bound: Any,
                 attempt: int, blocks: int = 0, wait: MailWait | None = None) -> Decision:
        check_id = check.id
        t0 = time.monotonic()
        since = self.blocks.now() if self.blocks else 0.0
        bound.info("check_started", curp=check.curp, step=wait.stage if wait else None)
        try:
            run = self._run_flow(check.portal, check.curp, work_dir, bound, attempt, wait,
                                 check_id=check_id)
        except Exception as err:  # noqa: BLE001 - every failure becomes a status or a retry
            message = mask_text(str(err)) or type(err).__name__
            blocked = isinstance(err, PortalBlocked)
            pause = 0.0
            if blocked and self.blocks:  # the portal rests, whatever becomes of this check
                pause = self.blocks.blocked(check.portal, since, message)
            delay = retry_delay(
                err if isinstance(err, FlowError) else TransientError(str(err)),
                attempt, retry_max=self.settings.retry_max,
                backoff_s=self.settings.retry_backoff_s,
                backoff_max_s=self.settings.retry_backoff_max_s,
                blocks=blocks, blocked_retry_max=self.settings.blocked_retry_max, pause_s=pause,
            )
            evidence = _keep(err.evidence if isinstance(err, TransientError) else None,
                             work_dir, home)
            if delay is not None:
                bound.warning("check_retry", error=message, retry_in=round(delay, 2),
                              error_type=type(err).__name__)
                self.storage.note_attempt(check_id, message,
                                          due_in=delay if self.lease_s else None)
                if wait is not None and wait.stage == "expired":
                    self.waits.drop(check_id)  # the retry sends the form again
                return Decision(done=False, retry_in=delay, attempt=attempt + 1,
                                blocks=blocks + blocked, blocked=blocked, detail=message)
            status, transient = classify(err)
            if transient or not isinstance(err, FlowError):
                # Blocks and other failures have separate budgets: count the one spent.
                spent = blocks if blocked else attempt - blocks
                detail = _gave_up_detail(status, str(err), spent)
            else:
                detail = str(err)
            bound.warning("check_failed", status=status.value, error=message,
                          error_type=type(err).__name__)
            self._record(check_id, batch.id, status=status, detail=detail,
                         evidence_path=evidence,
                         timings={"total": round(time.monotonic() - t0, 3)})
            return Decision(done=True, status=status.value, blocked=blocked, detail=message)

        outcome = run.outcome
        if outcome.waiting is not None:
            return self._wait_for_mail(check, outcome.waiting, outcome.timings, bound, attempt,
                                       blocks, since)

        facts = _facts_json(outcome.facts)
        # A done check's trace (KEEP_TRACES=always) is kept as its evidence folder.
        evidence = _keep(run.evidence or (run.trace.parent if run.trace else None),
                         work_dir, home)
        timings = dict(outcome.timings)
        timings.setdefault("total", round(time.monotonic() - t0, 3))
        pdf = outcome.pdf_path
        final_pdf = home / pdf.name if pdf else None
        recorded = self.storage.record_result(
            check_id, status=outcome.status.value, detail=outcome.detail,
            pdf_path=final_pdf, pdf_sha256=_sha256(pdf) if pdf else None, facts=facts,
            evidence_path=evidence, timings=timings,
            valid_until=outcome.facts.valid_until if outcome.facts else None,
        )
        if recorded and pdf and final_pdf:
            os.replace(pdf, final_pdf)
        self.waits.finish(check_id)  # (a step 1 the portal refused leaves a ``sending`` row)
        if self.blocks:
            self.blocks.passed(check.portal, since)  # a check got through: the episode ends
        self.finish_if_complete(batch.id)
        bound.info("check_done", status=outcome.status.value, seconds=timings.get("total"))
        return Decision(done=True, status=outcome.status.value)

    def _wait_for_mail(self, check: Any, waiting: MailAwaited, timings: dict[str, float],
                       bound: Any, attempt: int, blocks: int, since: float) -> Decision:
        """A step ended waiting for an email: store the wait and let the check go."""
        match waiting:
            case FirstMail(address, sent_at):
                sent = datetime.fromtimestamp(sent_at, UTC)
                self.waits.start(check.id, address=address, sent_at=sent, attempt=attempt,
                                 expires_at=wait_ends(sent, self.settings.email_timeout_s,
                                                      self.settings.tz))
            case SecondMail():
                self.waits.wait_second(check.id)
        if self.blocks:
            self.blocks.passed(check.portal, since)
        bound.info("check_waiting_for_mail", stage=waiting.stage, timings=timings)
        return Decision(done=False, attempt=attempt, waiting=True, blocks=blocks)

    def _run_flow(self, portal: str, curp: str, work_dir: Path, bound: Any, attempt: int,
                  wait: MailWait | None = None, *, check_id: int) -> CheckRun:
        step = None
        steps = registry.portal(portal).mail_steps
        if steps is not None and (wait is not None or self.settings.imss_mail_wait == "watch"):
            if wait is None:
                # Stored before the form is sent: its email may come before the answer.
                sent_at = datetime.now(UTC)
                self.waits.sending(check_id, address=self.settings.email_for(curp),
                                   sent_at=sent_at, attempt=attempt,
                                   expires_at=wait_ends(sent_at, self.settings.email_timeout_s,
                                                        self.settings.tz))
                step = steps.send
            elif wait.stage == "expired":
                raise EmailNotReceived(
                    "No llegó el correo del IMSS para esta consulta "
                    f"({'la constancia' if wait.link_tried_at else 'la liga de confirmación'}) "
                    "antes del fin de su espera.")
            elif wait.stage == "ready" and wait.pdf:
                return CheckRun(steps.pdf(work_dir, curp, wait.pdf, bound))  # no browser
            elif wait.stage == "link" and wait.link:
                tried = self.waits.link_tried(wait.check_id)
                link = wait.link

                def step(ctx: Any) -> Any:
                    return steps.link(ctx, link, tried_before=tried)
            else:  # unreachable: the stages are written together with what they need
                raise TransientError(f"Espera de correo en un estado inesperado: {wait.stage}")
        browser = shared_browser(self.settings.browser_executable,
                                 headed=self.settings.browser_headed)
        return run_check(browser, portal, Person(curp=curp), self.settings, work_dir,
                         captcha=self._solver(), mailbox=self._mail(), log=bound,
                         attempt=attempt, flow=step)

    def _reuse(self, check: Any, out_dir: str, bound: Any) -> str | None:
        """Reuse today's verdict (Mexico City day) for this CURP and portal, PDF copied."""
        today = datetime.combine(datetime.now(self.settings.tz).date(), dtime.min,
                                 tzinfo=self.settings.tz)
        prior = self.storage.reusable_result(check.curp, check.portal, today,
                                             frozenset(s.value for s in REUSABLE))
        if prior is None or prior.id == check.id:
            return None
        pdf: Path | None = None
        if prior.pdf_path:
            source = Path(prior.pdf_path)
            if not source.is_file():
                return None  # the earlier PDF is gone: query again
            pdf = person_dir(out_dir, check.curp) / source.name
            pdf.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if source.resolve() != pdf.resolve():
                shutil.copy2(source, pdf)
        self._record(check.id, check.batch_id, status=Status(prior.status),
                     detail=prior.detail, pdf_path=pdf, facts=prior.facts,
                     valid_until=prior.valid_until, reused_from=prior.id,
                     count_attempt=False, timings=prior.timings)
        bound.info("check_reused", status=prior.status, from_check=prior.id)
        return prior.status

    def _record(self, check_id: int, batch_id: str, *, status: Status, detail: str,
                **fields: Any) -> None:
        self.storage.record_result(check_id, status=status.value, detail=detail, **fields)
        self.waits.finish(check_id)
        self.finish_if_complete(batch_id)

    # --- the batch ------------------------------------------------------------------------
    def finish_if_complete(self, batch_id: str) -> Path | None:
        """Write the report exactly once, when every check of the batch has a status."""
        if not self.storage.claim_report(batch_id):
            return None
        try:
            path = build_report(self.settings, self.storage, batch_id)
        except Exception:
            log.exception("report_failed", batch_id=batch_id)
            self.storage.finish_batch(batch_id, None)
            return None
        self.storage.finish_batch(batch_id, path)
        log.info("batch_done", batch_id=batch_id, report=str(path))
        self._notify(batch_id)
        return path

    def _notify(self, batch_id: str) -> None:
        """E-mail a re-check's changes to HR (once each; worker/engine/notify.py). Never fails
        the batch."""
        try:
            notify_batch(self.settings, self.storage, batch_id)
        except Exception:  # noqa: BLE001 - a mail problem must not undo a finished batch
            log.exception("notify_failed", batch_id=batch_id)
        try:
            # Queued here, sent by the web server's delivery loop (worker/engine/webhooks.py).
            emit_batch_events(self.settings, self.storage, batch_id)
        except Exception:  # noqa: BLE001 - nor must a webhook problem
            log.exception("webhook_emit_failed", batch_id=batch_id)


class _Heartbeat:
    """Renews a running check's lease every third of it, from a thread, while the flow runs
    (distributed mode). If this process dies, the renewals stop and the lease runs out within
    ``lease_s``: the sweeper (worker/engine/sweeper.py) then sends the check again."""

    def __init__(self, storage: Storage, check_id: int, task_id: str | None,
                 lease_s: float | None) -> None:
        self.storage, self.check_id, self.task_id = storage, check_id, task_id
        self.lease_s = lease_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> _Heartbeat:
        if self.lease_s:
            self._thread = threading.Thread(target=self._run, name="lease-heartbeat", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        assert self.lease_s
        while not self._stop.wait(self.lease_s / 3):
            try:
                if not self.storage.renew_lease(self.check_id, self.task_id, self.lease_s):
                    return  # recorded meanwhile (or no longer ours): nothing to keep
            except Exception as exc:  # noqa: BLE001 - a missed renewal is retried next time
                log.warning("lease_renewal_failed", check_id=self.check_id,
                            error=mask_text(str(exc)))


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _keep(source: Path | None, work_dir: Path, home: Path) -> Path | None:
    """Move an attempt's evidence folder out of its scratch folder, next to the PDFs."""
    if source is None:
        return None
    if not source.exists() or not source.is_relative_to(work_dir):
        return source if source.exists() else None
    target = home / "evidencia" / source.name
    if target.exists():
        target = target.with_name(f"{source.name}-{uuid.uuid4().hex[:6]}")
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    shutil.move(str(source), target)
    return target


def _facts_json(facts: Any) -> dict[str, Any] | None:
    if facts is None:
        return None
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in asdict(facts).items()}


def _gave_up_detail(status: Status, message: str, attempt: int) -> str:
    tries = attempt + 1
    base = {
        Status.PORTAL_UNAVAILABLE: "El portal no respondió",
        Status.CAPTCHA_UNSOLVED: "No se resolvió el captcha",
        Status.PORTAL_BLOCKED: "El portal siguió bloqueando la consulta",
    }.get(status, "Falló la consulta")
    return f"{base} tras {tries} intento(s): {message}".strip()
