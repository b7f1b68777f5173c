"""`constancias doctor` against the sandbox: every check passes on a healthy one; each fault
switch gives exactly its failing check, with its Spanish detail, and exit 1; nothing spends a
portal query; an unreadable configuration exits 2."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.redis_server import RedisServer
from worker.core.settings import REAL_IMSS_URL, load_settings
from worker.interfaces.cli import main
from worker.services.batches import open_storage
from worker.services.doctor import run_doctor
from worker.storage.doctor_runs import last_run

pytestmark = pytest.mark.browser

EVERY_CHECK = ["config.imss_email", "config.mailbox_url", "config.data_dir", "config.database",
               "storage", "config.broker", "browser", "imss.page", "imss.form", "imss.captcha",
               "issste.page", "issste.form", "mailbox"]


@pytest.fixture
def doctor_env(sandbox, monkeypatch: pytest.MonkeyPatch, browser) -> Any:
    """Settings pointed at the sandbox, migrated storage, short waits; doctor drives the test
    session's Chromium (one Playwright per thread)."""
    monkeypatch.setenv("CONSTANCIAS_IMSS_URL", sandbox.imss_url)
    monkeypatch.setenv("CONSTANCIAS_ISSSTE_URL", sandbox.issste_url)
    monkeypatch.setenv("CONSTANCIAS_MAILBOX_URL", sandbox.mailbox_url)
    # A missing element is reported after this wait; a failed page is not retried in place.
    monkeypatch.setenv("CONSTANCIAS_ELEMENT_TIMEOUT_S", "2")
    monkeypatch.setenv("CONSTANCIAS_STEP_RETRIES", "0")
    monkeypatch.setattr("worker.services.doctor.shared_browser", lambda *a, **k: browser)
    open_storage(load_settings())
    return sandbox


def _doctor_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    capsys.readouterr()  # log lines of an earlier in-process run (structlog unconfigured)
    code = main(["doctor", "--json", *args])
    return code, json.loads(capsys.readouterr().out)


def _failed(report: dict[str, Any]) -> dict[str, str]:
    return {c["name"]: c["detail"] for c in report["checks"] if not c["ok"]}


def _no_query_spent(sandbox) -> None:
    for portal in ("imss", "issste"):
        stats = sandbox.stats(portal)
        assert stats["queries"] == {}, (portal, stats)
    assert sandbox.stats("imss")["constancias"] == {}


def test_a_healthy_sandbox_passes_every_check_without_spending_a_query(
        doctor_env, capsys: pytest.CaptureFixture[str]) -> None:
    """On a healthy sandbox every check is ok (exit 0, SPEC §4's JSON shape), the solver's answer
    on the captcha is reported, the run is recorded, and no portal query was spent."""
    code, report = _doctor_json(capsys)
    assert code == 0, report
    assert report["ok"] is True
    assert [c["name"] for c in report["checks"]] == EVERY_CHECK
    for check in report["checks"]:
        assert set(check) == {"name", "ok", "detail", "seconds"}
        assert check["ok"] is True and check["detail"] and check["seconds"] >= 0
    details = {c["name"]: c["detail"] for c in report["checks"]}
    assert "leyó «" in details["imss.captcha"]
    # The default reader (net) gives its confidence with each answer.
    assert re.search(r"confianza [01]\.\d\d", details["imss.captcha"]), details["imss.captcha"]
    assert "es-MX" in details["browser"] and "America/Mexico_City" in details["browser"]
    assert "HeadlessChrome" not in details["browser"]
    _no_query_spent(doctor_env)
    run = last_run(open_storage(load_settings()))
    assert run is not None and run.ok and run.trigger == "cli"
    assert [c["name"] for c in run.checks] == EVERY_CHECK


FAULTS = [
    ("imss", {"down": True}, "imss.page", "no está disponible"),
    ("issste", {"down": True}, "issste.page", "no está disponible"),
    ("imss", {"maintenance": True}, "imss.page", "en mantenimiento"),
    ("issste", {"maintenance": True}, "issste.page", "en mantenimiento"),
    ("imss", {"incapsula": "always"}, "imss.page", "Incapsula"),
    ("issste", {"incapsula": "always", "incapsula_style": "script"}, "issste.page", "Incapsula"),
    ("imss", {"missing": "captcha_image"}, "imss.captcha", "imagen del captcha"),
    ("issste", {"missing": "curp_box"}, "issste.form", "campo CURP"),
]


@pytest.mark.parametrize(("portal", "faults", "check", "words"), FAULTS,
                         ids=[f"{p}-{next(iter(f))}" for p, f, _, _ in FAULTS])
def test_each_fault_fails_exactly_its_check_with_what_to_do(
        doctor_env, capsys: pytest.CaptureFixture[str], portal: str, faults: dict[str, Any],
        check: str, words: str) -> None:
    """A portal down, in maintenance, blocked by Incapsula or lacking an element fails exactly
    one check, whose Spanish detail names the cause and what to do; exit 1; no query spent."""
    doctor_env.set_faults(portal, **faults)
    code, report = _doctor_json(capsys)
    assert code == 1
    assert report["ok"] is False
    failed = _failed(report)
    assert list(failed) == [check], failed
    assert words in failed[check]
    # What to do, not only what broke.
    assert any(w in failed[check] for w in ("intentar", "espere", "actualizar")), failed[check]
    _no_query_spent(doctor_env)


def test_a_missing_element_is_a_changed_portal_not_a_block(doctor_env) -> None:
    """The captcha image missing says the page changed and the flow needs updating."""
    doctor_env.set_faults("imss", missing="captcha_image")
    report = run_doctor(load_settings(), ["imss"])
    detail = {c.name: c.detail for c in report.failed}["imss.captcha"]
    assert "cambió" in detail and "flows/imss.py" in detail and "Incapsula" not in detail


def test_a_database_that_does_not_answer_fails_its_check_naming_where_without_the_password(
        doctor_env, monkeypatch: pytest.MonkeyPatch) -> None:
    """A PostgreSQL URL nobody listens on fails ``config.database`` with where it points and
    the driver's error, never the password; the schema check that needs it is left out."""
    monkeypatch.setenv("CONSTANCIAS_DATABASE_URL",
                       "postgresql+psycopg://hr:s3creto@127.0.0.1:1/constancias")
    report = run_doctor(load_settings(), ["issste"])
    failed = {c.name: c.detail for c in report.failed}
    assert list(failed) == ["config.database"], failed
    detail = failed["config.database"]
    assert "postgresql 127.0.0.1:1/constancias: OperationalError" in detail, detail
    assert "CONSTANCIAS_DATABASE_URL" in detail and "s3creto" not in detail
    assert "storage" not in [c.name for c in report.checks]


class _ReadsNothing:
    """A solver that never reads an answer, keeping every image it was shown."""

    def __init__(self) -> None:
        self.images: list[bytes] = []

    def solve(self, image: bytes, *, key: str) -> str:
        self.images.append(image)
        return ""

    def reject(self, key: str) -> None:
        return None


def test_a_solver_that_reads_nothing_is_shown_fresh_images_then_fails_the_captcha_check(
        doctor_env) -> None:
    """Doctor refreshes the captcha (free) and lets the solver try ``DOCTOR_CAPTCHA_IMAGES``
    different images; reading none fails ``imss.captcha`` alone, and no query is spent."""
    solver = _ReadsNothing()
    report = run_doctor(load_settings(), ["imss"], solver=solver)
    failed = {c.name: c.detail for c in report.failed}
    assert list(failed) == ["imss.captcha"], failed
    assert "no leyó ninguna de 3 imágenes del captcha del IMSS" in failed["imss.captcha"]
    assert len(solver.images) == 3 and len(set(solver.images)) == 3
    _no_query_spent(doctor_env)


def test_portals_option_limits_the_portal_checks(doctor_env,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """`--portals issste` checks ISSSTE only: a blocked IMSS is not even visited."""
    doctor_env.set_faults("imss", incapsula="always")
    code, report = _doctor_json(capsys, "--portals", "issste")
    assert code == 0, _failed(report)
    names = [c["name"] for c in report["checks"]]
    assert "issste.form" in names and not [n for n in names if n.startswith("imss.")]


def test_example_email_domain_against_the_real_portal_fails_the_configuration(
        doctor_env, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pointed at the real IMSS, the example e-mail domain fails `config.imss_email` (the real
    portal itself is not visited: only ISSSTE's sandbox is checked)."""
    monkeypatch.setenv("CONSTANCIAS_IMSS_URL", REAL_IMSS_URL)
    report = run_doctor(load_settings(), ["issste"])
    failed = {c.name: c.detail for c in report.failed}
    assert list(failed) == ["config.imss_email"], failed
    assert "empresa.example" in failed["config.imss_email"]
    assert "dominio propio" in failed["config.imss_email"]


@pytest.fixture(scope="module")
def imap():
    import os

    from tests.dovecot import Dovecot

    server = Dovecot()
    # `main()` sets the owner-only umask for the whole process; Dovecot's unprivileged
    # processes must reach the Maildir it creates.
    umask = os.umask(0o022)
    try:
        server.start()
    finally:
        os.umask(umask)
    yield server
    server.stop()


def test_mailbox_with_a_wrong_password_fails_the_mailbox_check(
        doctor_env, imap, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A real Dovecot refusing the password fails exactly `mailbox`, saying to fix the
    password; the right one passes and lists the folder."""
    right = imap.url
    monkeypatch.setenv("CONSTANCIAS_MAILBOX_URL", right)
    report = run_doctor(load_settings(), ["issste"])
    assert report.ok, report.failed
    assert "sesión iniciada" in {c.name: c.detail for c in report.checks}["mailbox"]
    monkeypatch.setenv("CONSTANCIAS_MAILBOX_URL",
                       right.replace(f":{imap.password}@", ":equivocada@"))
    code, report_json = _doctor_json(capsys, "--portals", "issste")
    assert code == 1
    failed = _failed(report_json)
    assert list(failed) == ["mailbox"], failed
    assert "contraseña" in failed["mailbox"] and "equivocada" not in failed["mailbox"]


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


def test_redis_down_fails_exactly_the_redis_check(
        doctor_env, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Distributed, with its Redis killed: `redis` fails (the workers cannot be asked, so that
    check is not listed), everything else passes; exit 1."""
    monkeypatch.setenv("CONSTANCIAS_BROKER_URL", redis_server.url)
    redis_server.kill()
    code, report = _doctor_json(capsys, "--portals", "issste")
    assert code == 1
    failed = _failed(report)
    assert list(failed) == ["redis"], failed
    assert "Redis no responde" in failed["redis"] and "CONSTANCIAS_BROKER_URL" in failed["redis"]
    assert "celery_workers" not in [c["name"] for c in report["checks"]]


def test_no_celery_worker_answering_fails_the_workers_check(
        doctor_env, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Redis up but no `constancias worker` running: `celery_workers` fails, saying to start
    one."""
    monkeypatch.setenv("CONSTANCIAS_BROKER_URL", redis_server.url)
    monkeypatch.setenv("CONSTANCIAS_DOCTOR_TIMEOUT_S", "1")
    report = run_doctor(load_settings(), ["issste"])
    failed = {c.name: c.detail for c in report.failed}
    assert list(failed) == ["celery_workers"], failed
    assert "constancias worker" in failed["celery_workers"]


def test_an_unreadable_configuration_exits_2_with_one_spanish_line(
        tmp_path: Path) -> None:
    """A mailbox URL of an unknown scheme: exit 2, one Spanish line on stderr, no traceback,
    nothing on stdout."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("CONSTANCIAS_")}
    env.update(CONSTANCIAS_DATA_DIR=str(tmp_path / "data"), CONSTANCIAS_MAILBOX_URL="ftp://x/y")
    done = subprocess.run([sys.executable, "-m", "worker.interfaces.cli", "doctor", "--json"], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr
    assert "CONSTANCIAS_MAILBOX_URL" in lines[0] and "Corrija la configuración" in lines[0]


def test_the_terminal_table_names_every_check_and_what_failed(
        doctor_env, capsys: pytest.CaptureFixture[str]) -> None:
    """Without --json: a table with a row per check, FALLA on the failed one and a Spanish
    closing line."""
    doctor_env.set_faults("issste", missing="curp_box")
    code = main(["doctor"])
    out = capsys.readouterr().out
    assert code == 1
    assert out.splitlines()[0].split()[:3] == ["Revisión", "Estado", "Seg."]
    rows = {line.split()[0]: line.split()[1] for line in out.splitlines()
            if line and line.split()[0] in EVERY_CHECK}
    assert set(rows) == set(EVERY_CHECK)
    assert rows["issste.form"] == "FALLA"
    assert [n for n, state in rows.items() if state != "bien"] == ["issste.form"]
    assert "1 revisión(es) fallaron" in out


def test_smtp_is_checked_when_configured(doctor_env, monkeypatch: pytest.MonkeyPatch) -> None:
    """With SMTP_URL set the notices' server is tried (the sandbox's: ok, nothing sent); a
    server that is not there fails exactly `smtp`, naming the setting."""
    from tests.conftest import free_port

    monkeypatch.setenv("CONSTANCIAS_OPERATOR_TO", "operador@empresa.mx")
    monkeypatch.setenv("CONSTANCIAS_SMTP_URL", f"smtp://127.0.0.1:{doctor_env.smtp_port}")
    report = run_doctor(load_settings(), ["issste"])
    assert report.ok, report.failed
    assert "acepta la conexión" in {c.name: c.detail for c in report.checks}["smtp"]
    monkeypatch.setenv("CONSTANCIAS_SMTP_URL", f"smtp://127.0.0.1:{free_port()}")
    failed = {c.name: c.detail for c in run_doctor(load_settings(), ["issste"]).failed}
    assert list(failed) == ["smtp"], failed
    assert "CONSTANCIAS_SMTP_URL" in failed["smtp"]
