"""Doctor before the nightly re-check (worker/services/preflight.py): a failure postpones the batch and
tells the operator once per new failure (a real SMTP server: the sandbox's, into its Maildir);
every run is recorded."""

from __future__ import annotations

from collections.abc import Callable
from email import message_from_bytes
from email.header import decode_header, make_header

import pytest

from worker.core.settings import Settings, load_settings
from worker.services.batches import open_storage
from worker.services.doctor import CheckResult, DoctorReport
from worker.services.preflight import doctor_gate, gated_recheck
from worker.storage.doctor_runs import last_run

SUBJECT = "la revisión nocturna se pospuso"


def _report(*failed: str) -> DoctorReport:
    names = ["storage", "imss.page", "issste.form", "mailbox"]
    return DoctorReport([CheckResult(n, n not in failed, f"detalle de {n}", 0.1) for n in names])


def _doctor(reports: list[DoctorReport]) -> Callable[[Settings], DoctorReport]:
    queue = list(reports)
    return lambda _settings: queue.pop(0)


def _operator_mails(sandbox) -> list[str]:
    subjects = []
    for sub in ("new", "cur"):
        for item in (sandbox.maildir / sub).iterdir():
            msg = message_from_bytes(item.read_bytes())
            subject = str(make_header(decode_header(msg["Subject"])))
            if SUBJECT in subject and msg["To"] == "operador@empresa.mx":
                subjects.append(msg.get_payload(decode=True).decode())
    return subjects


@pytest.fixture
def operator_settings(sandbox) -> Settings:
    return load_settings(smtp_url=f"smtp://127.0.0.1:{sandbox.smtp_port}",
                         operator_to="operador@empresa.mx")


def _wait_for_mails(sandbox, n: int) -> list[str]:
    import time

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = _operator_mails(sandbox)
        if len(found) >= n:
            return found
        time.sleep(0.05)
    return _operator_mails(sandbox)


def test_the_operator_is_told_once_per_new_failure(sandbox, operator_settings) -> None:
    """The same failure twice is one e-mail; another failure, and the same one again after an
    ok run, are new: three e-mails for five failed runs; every run is recorded."""
    storage = open_storage(operator_settings)
    runs = [_report("imss.page"), _report("imss.page"), _report("imss.page", "mailbox"),
            _report(), _report("imss.page", "mailbox")]
    doctor = _doctor(runs)
    results = [doctor_gate(operator_settings, storage, retry_in_s=900, doctor=doctor)
               for _ in runs]
    assert results == [False, False, False, True, False]
    mails = _wait_for_mails(sandbox, 3)
    assert len(mails) == 3, mails
    # The sandbox's SMTP may store two mails of the same second in either order.
    assert all("imss.page: detalle de imss.page" in m and "15 min" in m for m in mails)
    assert sorted("mailbox: detalle de mailbox" in m for m in mails) == [False, True, True]
    last = last_run(storage)
    assert last is not None and last.trigger == "schedule" and not last.ok
    assert last.failed == "imss.page,mailbox" and last.notified


def test_a_failed_doctor_postpones_the_batch_to_the_next_tick(sandbox, operator_settings) -> None:
    """Doctor fails, then passes: the batch runs once, after one wait of DOCTOR_RETRY_S."""
    settings = operator_settings.model_copy(update={"doctor_retry_s": 600.0})
    storage = open_storage(settings)
    waits: list[float] = []
    ran: list[bool] = []

    def wait(seconds: float) -> bool:
        waits.append(seconds)
        return False

    result = gated_recheck(settings, storage, lambda: ran.append(True) or "lote-1", wait=wait,
                           doctor=_doctor([_report("issste.form"), _report()]))
    assert result == "lote-1" and ran == [True] and waits == [600.0]


def test_when_postponements_run_out_the_night_is_given_up(sandbox, operator_settings) -> None:
    """With DOCTOR_RETRIES=1 and doctor failing twice alike, the batch never runs and the
    operator gets one e-mail (the second failure is not new)."""
    settings = operator_settings.model_copy(update={"doctor_retries": 1})
    storage = open_storage(settings)
    ran: list[bool] = []
    result = gated_recheck(settings, storage, lambda: ran.append(True), wait=lambda s: False,
                           doctor=_doctor([_report("imss.page"), _report("imss.page")]))
    assert result is None and ran == []
    mails = _wait_for_mails(sandbox, 1)
    assert len(mails) == 1 and "15 min" in mails[0]


def test_a_stopping_scheduler_does_not_run_the_postponed_batch(sandbox,
                                                                operator_settings) -> None:
    """A stop during the wait ends the night: nothing runs."""
    storage = open_storage(operator_settings)
    ran: list[bool] = []
    result = gated_recheck(operator_settings, storage, lambda: ran.append(True),
                           wait=lambda s: True, doctor=_doctor([_report("mailbox")]))
    assert result is None and ran == []


def test_doctor_can_be_turned_off_before_the_recheck(sandbox, operator_settings) -> None:
    """DOCTOR_BEFORE_RECHECK=false runs the batch at once, doctor never called."""
    settings = operator_settings.model_copy(update={"doctor_before_recheck": False})

    def doctor(_settings: Settings) -> DoctorReport:
        raise AssertionError("doctor must not run")

    assert gated_recheck(settings, open_storage(settings), lambda: "lote", wait=lambda s: False,
                         doctor=doctor) == "lote"
