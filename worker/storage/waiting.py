"""IMSS checks waiting for an email (SPEC §7): a row in storage, no browser, no worker slot.

An IMSS check is two browser steps. Before step 1 sends the form the engine stores a
``MailWait`` in stage ``sending`` (the address, the attempt): instant mail can arrive before
the form's answer is recorded, and the watcher then knows a message is expected and leaves it.
On the portal's acceptance the row becomes ``mail1`` (when the form was sent, when the wait
ends) and the check frees its slot. A step 1 that died leaves its row in ``sending``: the
check keeps its lease, runs out of it and is sent again by the sweeper like any check whose
worker died, and its new step 1 writes the row again. A mailbox watcher
(worker/engine/mailwatch.py) that finds the
confirmation email for that address claims it here (``claim_link``: the message's key goes into
``mail_claims`` and the link into the row, in one transaction: of two watchers exactly one
wins) and schedules step 2, which follows the link in a fresh context and records the result.
When the final page gives no PDF, the row waits again (stage ``mail2``) for the second email,
whose PDF the watcher stores in the row (``claim_pdf``, stage ``ready``): recording it needs no
browser. A wait ends (stage ``expired``) at ``email_timeout_s`` or at the end of the Mexico City
day it was sent on (the link only works that day), whichever comes first; the engine then
treats it as an email that did not arrive (``EmailNotReceived``: retried, or given up).

Stages: ``sending`` → ``mail1`` → ``link`` → (``mail2`` → ``ready``) → ``done``; ``expired``
from a wait; a step 1 refused by the portal goes from ``sending`` to ``done``.
A ``done`` row stays until its wait would have ended, so that a late second email to the
address is claimed and put away instead of piling up in the mailbox.

Every change is a compare-and-set ``UPDATE … WHERE stage = …``: a watcher, a redelivered task
and the sweeper racing change it once. Nothing here is held in memory: a worker killed while
its checks wait loses nothing, the next watcher (any machine) picks them up.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any

from sqlalchemy import case, delete, select, update
from sqlalchemy.exc import IntegrityError

from worker.storage.models import WAITING_STAGES, Check, MailClaim, MailWait, utcnow
from worker.storage.repository import Storage, changed

__all__ = ["MailWait", "MailClaim", "Waits", "Watched", "WAITING_STAGES", "wait_ends"]

#: Stages in which a step is due (scheduled: a worker runs it).
DUE_STAGES = ("link", "ready", "expired")
#: Stages the watcher reads mail for (``sending``: only to leave its email 1 in the mailbox
#: until the row is ``mail1``; ``done``: only to put a late second email away).
WATCHED_STAGES = ("sending", "mail1", "link", "mail2", "done")


#: A delivery that ended in a wait reached an end: not counted as one that crashed.
_ENDED = case((Check.deliveries > 0, Check.deliveries - 1), else_=0)


class _Lost(Exception):
    """A compare-and-set found the row changed: the transaction is rolled back."""


@dataclass(frozen=True)
class Watched:
    """What the watcher needs of one row."""

    check_id: int
    address: str
    sent_at: datetime
    stage: str
    attempts: int
    """The check's ``attempts`` now: the task sent for its next step carries it."""
    portal: str


def wait_ends(sent_at: datetime, timeout_s: float, tz: Any) -> datetime:
    """When a wait for mail sent at ``sent_at`` ends: ``timeout_s`` later, and at the latest at
    the end of that day in Mexico City (the link works only on the day it was sent)."""
    local = sent_at.astimezone(tz)
    midnight = datetime.combine(local.date() + timedelta(days=1), time.min, tzinfo=tz)
    return min(sent_at + timedelta(seconds=timeout_s), midnight)


class Waits:
    """The ``mail_waits`` rows of one database."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    # --- the engine ---------------------------------------------------------------------
    def sending(self, check_id: int, *, address: str, sent_at: datetime, attempt: int,
                expires_at: datetime) -> None:
        """Step 1 is about to send the form: its email 1 may come before ``start`` (stage
        ``sending``; the check keeps its lease). Replaces the row of an earlier attempt."""
        with self.storage.session() as s:
            self._put(s, check_id, "sending", address=address, sent_at=sent_at,
                      attempt=attempt, expires_at=expires_at)

    def start(self, check_id: int, *, address: str, sent_at: datetime, attempt: int,
              expires_at: datetime) -> bool:
        """Step 1 ended with the form accepted: the check waits for its email. In the same
        write the check is let go (no lease, not due): nobody runs it until its mail comes.
        The delivery that got here reached an end (``deliveries`` is not a crash count)."""
        with self.storage.session() as s:
            res = s.execute(update(Check).where(Check.id == check_id, Check.status.is_(None))
                            .values(lease_until=None, due_at=None, deliveries=_ENDED))
            if changed(res) != 1:
                return False
            self._put(s, check_id, "mail1", address=address, sent_at=sent_at,
                      attempt=attempt, expires_at=expires_at)
        return True

    @staticmethod
    def _put(s: Any, check_id: int, stage: str, *, address: str, sent_at: datetime,
             attempt: int, expires_at: datetime) -> None:
        """The check's row, in ``stage``, in place of any it had."""
        batch_id = s.scalar(select(Check.batch_id).where(Check.id == check_id))
        s.execute(delete(MailWait).where(MailWait.check_id == check_id))
        s.add(MailWait(check_id=check_id, batch_id=batch_id, address=address.lower(),
                       sent_at=sent_at, attempt=attempt, expires_at=expires_at,
                       stage=stage, updated_at=utcnow()))

    def get(self, check_id: int) -> MailWait | None:
        with self.storage.session() as s:
            return s.get(MailWait, check_id)

    def link_tried(self, check_id: int) -> bool:
        """Mark that a step 2 opens the link now; whether one had already (before a crash or a
        failed try)."""
        with self.storage.session() as s:
            res = s.execute(update(MailWait).where(MailWait.check_id == check_id,
                                                   MailWait.link_tried_at.is_(None))
                            .values(link_tried_at=utcnow()))
            return changed(res) != 1

    def wait_second(self, check_id: int) -> bool:
        """Step 2 followed the link but got no PDF from the page: wait for the second email
        (the check let go as in ``start``)."""
        with self.storage.session() as s:
            res = s.execute(update(MailWait).where(MailWait.check_id == check_id,
                                                   MailWait.stage == "link")
                            .values(stage="mail2", updated_at=utcnow()))
            if changed(res) != 1:
                return False
            s.execute(update(Check).where(Check.id == check_id, Check.status.is_(None))
                      .values(lease_until=None, due_at=None, deliveries=_ENDED))
        return True

    def finish(self, check_id: int) -> None:
        """The check has its result: the row only serves to put a late email away now."""
        with self.storage.session() as s:
            s.execute(update(MailWait).where(MailWait.check_id == check_id)
                      .values(stage="done", link=None, pdf=None, updated_at=utcnow()))

    def drop(self, check_id: int) -> None:
        """The wait is over without a result (it expired, or step 1 failed: the check is run
        again)."""
        with self.storage.session() as s:
            s.execute(delete(MailWait).where(MailWait.check_id == check_id))

    # --- the watcher ----------------------------------------------------------------------
    def watched(self) -> list[Watched]:
        """Rows whose mail the watcher looks for, oldest first."""
        with self.storage.session() as s:
            return [Watched(*row) for row in s.execute(
                select(MailWait.check_id, MailWait.address, MailWait.sent_at, MailWait.stage,
                       Check.attempts, Check.portal)
                .join(Check, Check.id == MailWait.check_id)
                .where(MailWait.stage.in_(WATCHED_STAGES))
                .order_by(MailWait.sent_at, MailWait.check_id))]

    def _claim(self, s: Any, key: str, check_id: int | None) -> bool:
        try:
            with s.begin_nested():
                s.add(MailClaim(key=key[:255], check_id=check_id, claimed_at=utcnow()))
        except IntegrityError:
            return False
        return True

    def claimed_at(self, key: str) -> datetime | None:
        """When a watcher claimed this message (``None``: nobody has)."""
        with self.storage.session() as s:
            claim = s.get(MailClaim, key[:255])
            return claim.claimed_at if claim is not None else None

    def claim_link(self, check_id: int, key: str, link: str) -> bool:
        """Email 1 for a check in ``mail1``: this caller alone takes the message and the check
        goes to step 2 (due now: the sweeper sends it again if the task is lost)."""
        try:
            return self._claim_link(check_id, key, link)
        except _Lost:
            return False

    def _claim_link(self, check_id: int, key: str, link: str) -> bool:
        with self.storage.session() as s:
            if not self._claim(s, key, check_id):
                return False
            res = s.execute(update(MailWait).where(MailWait.check_id == check_id,
                                                   MailWait.stage == "mail1")
                            .values(stage="link", link=link, updated_at=utcnow()))
            if changed(res) != 1:
                raise _Lost  # rolls the claim back: the message stays for whom it is
            s.execute(update(Check).where(Check.id == check_id, Check.status.is_(None))
                      .values(due_at=utcnow()))
        return True

    def claim_pdf(self, check_id: int, key: str, pdf: bytes) -> bool:
        """Email 2 (the PDF) for a check whose link was opened: recorded by the next step."""
        try:
            return self._claim_pdf(check_id, key, pdf)
        except _Lost:
            return False

    def _claim_pdf(self, check_id: int, key: str, pdf: bytes) -> bool:
        with self.storage.session() as s:
            if not self._claim(s, key, check_id):
                return False
            res = s.execute(update(MailWait).where(
                MailWait.check_id == check_id,
                (MailWait.stage == "mail2")
                | ((MailWait.stage == "link") & MailWait.link_tried_at.is_not(None)),
            ).values(stage="ready", pdf=pdf, updated_at=utcnow()))
            if changed(res) != 1:
                raise _Lost  # rolls the claim back: the message stays for whom it is
            s.execute(update(Check).where(Check.id == check_id, Check.status.is_(None))
                      .values(due_at=utcnow()))
        return True

    def claim_other(self, key: str, check_id: int | None) -> bool:
        """A message to a watched address that no step needs (a late email of an earlier
        attempt, the second email of a check the page gave the PDF to): taken once, put away."""
        with self.storage.session() as s:
            return self._claim(s, key, check_id)

    def expire(self, now: datetime | None = None) -> list[tuple[int, int]]:
        """Waits past their end become ``expired`` (due: the engine decides retry or give up);
        ``done`` rows past it are deleted. ``(check id, attempts)`` of the expired ones."""
        now = now or utcnow()
        out: list[tuple[int, int]] = []
        with self.storage.session() as s:
            late = list(s.execute(
                select(MailWait.check_id, Check.attempts)
                .join(Check, Check.id == MailWait.check_id)
                .where(MailWait.stage.in_(WAITING_STAGES), MailWait.expires_at < now)))
            for check_id, attempts in late:
                res = s.execute(update(MailWait).where(MailWait.check_id == check_id,
                                                       MailWait.stage.in_(WAITING_STAGES))
                                .values(stage="expired", updated_at=now))
                if changed(res) == 1:
                    s.execute(update(Check).where(Check.id == check_id,
                                                  Check.status.is_(None))
                              .values(due_at=now))
                    out.append((check_id, attempts))
            # (a ``sending`` row that outlived its wait: a step 1 that never came back)
            s.execute(delete(MailWait).where(MailWait.stage.in_(("done", "sending")),
                                             MailWait.expires_at < now))
            s.execute(delete(MailClaim).where(MailClaim.claimed_at < now - timedelta(days=4)))
        return out

    def due(self, batch_id: str | None = None) -> list[tuple[int, int]]:
        """``(check id, attempts)`` of rows whose next step is due (an embedded run resuming
        after it was killed between a claim and its step)."""
        with self.storage.session() as s:
            stmt = (select(MailWait.check_id, Check.attempts)
                    .join(Check, Check.id == MailWait.check_id)
                    .where(MailWait.stage.in_(DUE_STAGES), Check.status.is_(None)))
            if batch_id is not None:
                stmt = stmt.where(MailWait.batch_id == batch_id)
            return [(i, a) for i, a in s.execute(stmt)]
