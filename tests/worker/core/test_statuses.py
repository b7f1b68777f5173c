"""Every status has a Spanish label, a next action and a class; the actions say what SPEC §2's
"what happens next" column says."""

from __future__ import annotations

from worker.core.statuses import RETRYABLE, Status, StatusClass
from worker.interfaces.web.common import status_view


def test_every_status_has_a_label_an_action_and_a_class() -> None:
    """No status is left without what HR reads."""
    for status in Status:
        assert status.label and status.action.endswith(".")
        assert isinstance(status.status_class, StatusClass)


def test_next_actions_follow_the_seed_guide() -> None:
    """IMSS-Bienestar for sin derecho, the Constancia de vigencia de derechos for vigente,
    ISSSTE's in-person offices and hours for afiliado."""
    assert "IMSS-Bienestar" in Status.NOT_ENTITLED.action
    assert "Constancia de vigencia de derechos" in Status.ENTITLED.action
    action = Status.AFFILIATED.action
    assert "Departamentos de Afiliación y Prestaciones Económicas" in action
    assert "lunes a viernes" in action and "09:00 a 18:00" in action


def test_portal_blocked_is_a_retried_failure_shown_on_the_web_page() -> None:
    """portal_blocked is a failure the nightly re-check takes again, labelled in Spanish on
    the page, and says the operator was told."""
    blocked = Status("portal_blocked")
    assert blocked.status_class is StatusClass.FAILED and blocked in RETRYABLE
    assert not blocked.has_pdf
    view = status_view("portal_blocked")
    assert view["label"] == blocked.label and view["cls"] == "failed"
    assert "operador" in view["action"]
