"""The HR web page with a broker: `constancias web` hands the batch to a `constancias worker`
over a private Redis, and watches it to the end (real processes, real HTTP, real Chromium)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import httpx
import pytest
from openpyxl import load_workbook

from tests.conftest import free_port
from tests.people import expected, synthetic_curps, write_sheet
from tests.redis_server import RedisServer
from tests.worker.interfaces.web.conftest import PASSWORD, csrf_from
from worker.core.statuses import Status
from worker.storage.repository import Storage

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CLI = [sys.executable, "-m", "worker.interfaces.cli"]


@dataclass
class BrokerSetup:
    """A web process and a worker process sharing Redis, the data folder and the sandbox."""

    url: str
    data_dir: Path
    web: subprocess.Popen[bytes]
    worker: subprocess.Popen[bytes]
    logs: Path
    redis: RedisServer


def _stop(proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    """SIGTERM to the process group, then SIGKILL if it has not gone after ``timeout``."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    except ProcessLookupError:
        pass


def _wait_listening(url: str, proc: subprocess.Popen[bytes], log: Path,
                    timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"web exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url + "/entrar", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError(f"web did not start:\n{log.read_text()[-3000:]}")


@pytest.fixture
def broker_setup(tmp_path: Path, sandbox) -> Iterator[BrokerSetup]:
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    data_dir = tmp_path / "shared-data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONSTANCIAS_")}
    env.update({
        "CONSTANCIAS_BROKER_URL": redis.url,
        "CONSTANCIAS_DATA_DIR": str(data_dir),
        "CONSTANCIAS_IMSS_URL": sandbox.imss_url,
        "CONSTANCIAS_ISSSTE_URL": sandbox.issste_url,
        "CONSTANCIAS_MAILBOX_URL": sandbox.mailbox_url,
        "CONSTANCIAS_WEB_PASSWORD": PASSWORD,
        "CONSTANCIAS_LOG_FORMAT": "json",
        # Quick recovery of what Redis did not take (the sweeper), for the Redis-down test.
        "CONSTANCIAS_LEASE_S": "15",
        "CONSTANCIAS_SWEEP_INTERVAL_S": "3",
    })
    logs = tmp_path / "logs"
    logs.mkdir()
    port = free_port()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with open(logs / "worker.log", "wb") as wlog, open(logs / "web.log", "wb") as hlog:
            worker = subprocess.Popen([*CLI, "worker", "-c", "2"], env=env, cwd=tmp_path,
                                      stdout=wlog, stderr=subprocess.STDOUT,
                                      start_new_session=True)
            procs.append(worker)
            web = subprocess.Popen([*CLI, "web", "--port", str(port)], env=env, cwd=tmp_path,
                                   stdout=hlog, stderr=subprocess.STDOUT, start_new_session=True)
            procs.append(web)
        url = f"http://127.0.0.1:{port}"
        _wait_listening(url, web, logs / "web.log")
        yield BrokerSetup(url=url, data_dir=data_dir, web=web, worker=worker, logs=logs,
                          redis=redis)
    finally:
        for proc in reversed(procs):
            _stop(proc)
        redis.stop()


def _logged_in(url: str) -> httpx.Client:
    client = httpx.Client(base_url=url, follow_redirects=False, timeout=30)
    token = csrf_from(client.get("/entrar").text)
    r = client.post("/entrar", data={"password": PASSWORD, "csrf": token})
    assert r.status_code == 303, r.text
    return client


def _upload(client: httpx.Client, sheet: Path) -> str:
    """Upload a sheet; the URL of its findings page."""
    token = csrf_from(client.get("/").text)
    r = client.post("/subir", data={"csrf": token},
                    files={"hoja": (sheet.name, sheet.read_bytes(),
                                    "application/vnd.openxmlformats-officedocument"
                                    ".spreadsheetml.sheet")})
    assert r.status_code == 303, r.text
    return r.headers["location"]


def _wait_done(client: httpx.Client, batch_id: str, setup: BrokerSetup,
               timeout: float = 150) -> dict:
    deadline = time.monotonic() + timeout
    state: dict = {}
    while time.monotonic() < deadline:
        r = client.get(f"/lotes/{batch_id}/estado")
        assert r.status_code == 200, r.text
        state = r.json()
        if state["state"] == "done":
            return state
        assert setup.worker.poll() is None, (setup.logs / "worker.log").read_text()[-3000:]
        time.sleep(0.5)
    raise AssertionError(f"batch not done: {state}\n"
                         f"{(setup.logs / 'worker.log').read_text()[-3000:]}")


def test_web_page_hands_the_batch_to_the_celery_worker(broker_setup: BrokerSetup,
                                                      tmp_path: Path) -> None:
    """With a broker configured, a sheet uploaded and processed on the web page is checked
    by the Celery worker (not by the web process), the progress JSON reaches done with the
    right statuses, and the report downloads as a workbook."""
    setup = broker_setup
    curps = synthetic_curps(2, seed=105)  # IMSS entitled + CURP not found
    sheet = write_sheet(tmp_path / "altas broker.xlsx", curps)
    client = _logged_in(setup.url)
    with contextlib.closing(client):
        findings_url = _upload(client, sheet)
        findings = client.get(findings_url)
        assert findings.status_code == 200
        r = client.post(findings_url + "/procesar",
                        data={"csrf": csrf_from(findings.text), "portales": ["imss", "issste"]})
        assert r.status_code == 303, r.text
        match = re.fullmatch(r"/lotes/([0-9a-f]{12})", r.headers["location"])
        assert match, r.headers["location"]
        batch_id = match.group(1)

        state = _wait_done(client, batch_id, setup)
        assert state["total"] == state["done"] == 4
        # The web process runs nothing itself in this mode.
        assert state["running"] is False

        storage = Storage(f"sqlite:///{setup.data_dir}/constancias.db")
        checks = storage.checks(batch_id)
        assert len(checks) == 4
        for check in checks:
            assert check.status == expected(check.curp)[check.portal], check
            # Celery task ids are UUIDs; the embedded engine writes "embedded-<pid>".
            assert check.task_id and not check.task_id.startswith("embedded-")
            uuid.UUID(check.task_id)
            assert bool(check.pdf_path) == Status(check.status).has_pdf, check

        # The PDFs the worker wrote are served by the web process from the shared folder.
        page = client.get(f"/lotes/{batch_id}")
        assert page.status_code == 200 and "Terminado" in page.text
        links = re.findall(rf'href="(/lotes/{batch_id}/archivos/[^"]+\.pdf)"', page.text)
        assert len(links) == sum(Status(c.status).has_pdf for c in checks)
        for link in links:
            pdf = client.get(link)
            assert pdf.status_code == 200 and pdf.content[:5] == b"%PDF-"

        report = client.get(f"/lotes/{batch_id}/reporte")
        assert report.status_code == 200
        assert f"reporte-{batch_id}.xlsx" in report.headers["content-disposition"]
        wb = load_workbook(BytesIO(report.content))
        assert {"Resumen", "Detalle", "Errores"} <= set(wb.sheetnames)
        detail = "\n".join(str(c.value) for row in wb["Detalle"].iter_rows() for c in row)
        assert all(curp in detail for curp in curps)

    # The batch was handed over by the web process and worked by the Celery worker.
    web_log = (setup.logs / "web.log").read_text()
    assert "web_batch_enqueued" in web_log
    assert "web_batch_started" not in web_log


def test_processing_while_redis_is_down_keeps_the_batch_and_it_runs_once_redis_is_back(
        broker_setup: BrokerSetup, tmp_path: Path) -> None:
    """"Procesar" with Redis down: no error page — the batch is stored and shown, and once
    Redis is back the workers' sweeper sends its checks and it completes."""
    setup = broker_setup
    curps = synthetic_curps(1, seed=107)
    sheet = write_sheet(tmp_path / "altas.xlsx", curps)
    client = _logged_in(setup.url)
    with contextlib.closing(client):
        findings_url = _upload(client, sheet)
        findings = client.get(findings_url)
        setup.redis.stop()
        r = client.post(findings_url + "/procesar",
                        data={"csrf": csrf_from(findings.text), "portales": ["issste"]})
        assert r.status_code == 303, r.text
        batch_id = r.headers["location"].rsplit("/", 1)[-1]
        page = client.get(f"/lotes/{batch_id}")
        assert page.status_code == 200
        assert 'id="aviso-cola"' in page.text and "Redis" in page.text  # says why it waits
        assert client.get(f"/lotes/{batch_id}/estado").json()["done"] == 0
        setup.redis.start()
        state = _wait_done(client, batch_id, setup, timeout=180)
        assert state["total"] == state["done"] == 1
        assert 'id="aviso-cola"' not in client.get(f"/lotes/{batch_id}").text
    assert "web_batch_not_enqueued" in (setup.logs / "web.log").read_text()
