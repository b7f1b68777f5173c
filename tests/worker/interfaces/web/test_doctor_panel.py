"""The main page's panel with the last `constancias doctor` result and when it ran."""

from __future__ import annotations

import pytest

from tests.worker.interfaces.web.conftest import WebServer, shot
from worker.services.batches import open_storage
from worker.services.doctor import record, run_doctor
from worker.storage.doctor_runs import last_run

pytestmark = pytest.mark.browser


def test_panel_says_when_the_system_was_never_checked(web: WebServer, page, login) -> None:
    """Before any doctor run the panel says so and how to run one."""
    login(web)
    panel = page.locator("#doctor")
    assert "Aún no se ha revisado el sistema" in panel.inner_text()
    assert "constancias doctor" in panel.inner_text()


def test_panel_shows_the_last_result_its_failures_and_when_it_ran(
        web: WebServer, page, login, sandbox, browser) -> None:
    """After a scheduled doctor on a sandbox whose ISSSTE page lost its CURP box, the panel
    says one check failed, which one and what to do, and when (Mexico City time)."""
    settings = web.settings.model_copy(update={
        "imss_url": sandbox.imss_url, "issste_url": sandbox.issste_url,
        "mailbox_url": sandbox.mailbox_url, "element_timeout_s": 2.0, "step_retries": 0})
    sandbox.set_faults("issste", missing="curp_box")
    storage = open_storage(settings)
    report = run_doctor(settings, browser=browser)
    assert [c.name for c in report.failed] == ["issste.form"]
    record(storage, report, "schedule")

    login(web)
    panel = page.locator("#doctor")
    assert panel.locator("#doctor-estado").inner_text() == "1 revisión(es) fallaron"
    failures = panel.locator("#doctor-fallas li")
    assert failures.count() == 1
    assert "issste.form" in failures.inner_text() and "actualizar el flujo" in failures.inner_text()
    assert "se pospuso" in panel.inner_text()
    assert "se avisó al operador" not in panel.inner_text()  # no SMTP configured here
    run = last_run(storage)
    assert run is not None  # the time shown is the stored run's, in Mexico City
    assert (panel.locator("#doctor-cuando").inner_text()
            == run.ran_at.astimezone(settings.tz).strftime("%d/%m/%Y %H:%M"))
    panel.locator("summary").click()
    assert panel.locator("details li").count() == len(report.checks)
    shot(page, "doctor-panel")
