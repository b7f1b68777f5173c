"""Personal data stays in: a whole sandbox batch, embedded and distributed, logs no CURP or
e-mail address whole at debug level from any component, and leaves only owner-only files."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from openpyxl import Workbook

from fixtures.population import SCENARIOS
from tests.people import synthetic_curps
from tests.redis_server import RedisServer
from worker.core.logs import mask_curp
from worker.core.settings import load_settings
from worker.core.statuses import Status
from worker.storage.repository import Storage

pytestmark = [pytest.mark.browser]

CLI = [sys.executable, "-m", "worker.interfaces.cli"]
#: IMSS asks this person to visit a subdelegación: a failed check, so evidence is kept.
INCONSISTENT = SCENARIOS["imss_inconsistent"]
#: A CURP-shaped value with a wrong check digit: an invalid row, still personal data.
BAD_CHECK_DIGIT = "GODE561231HDFRRN09"


@dataclass
class Sheet:
    """A small onboarding sheet and every piece of personal data it holds."""

    path: Path
    curps: list[str]
    emails: list[str]
    secrets: list[str] = field(default_factory=list)


def _sheet(path: Path, curps: list[str]) -> Sheet:
    """CURPs plus an e-mail column (one per row) and an invalid CURP row."""
    emails = [f"persona.{i}@rh-empresa.example" for i in range(1, len(curps) + 2)]
    wb = Workbook()
    ws = wb.active
    ws.append(["No. empleado", "Nombre", "Correo personal", "CURP"])
    for i, (curp, email) in enumerate(zip([*curps, BAD_CHECK_DIGIT], emails, strict=True), 1):
        ws.append([f"E{i:03d}", f"Persona {i}", email, curp])
    wb.save(path)
    settings = load_settings()
    everyone = [*curps, BAD_CHECK_DIGIT]
    # The per-CURP IMSS address (it embeds the CURP) is personal data as much as the CURP.
    secrets = [*everyone, *emails, *(settings.email_for(c) for c in everyone)]
    return Sheet(path, curps, emails, [s.lower() for s in secrets])


def _leaks(lines: list[str], secrets: list[str]) -> list[tuple[str, str]]:
    return [(s, line) for line in lines for s in secrets if s in line.lower()]


def _open_modes(root: Path) -> list[tuple[str, str]]:
    """Every file or folder under ``root`` (itself included) readable by group or others."""
    found = []
    for p in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(p.lstat().st_mode)
        if not p.is_symlink() and mode & 0o077:
            found.append((str(p.relative_to(root.parent)), oct(mode)))
    return found


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONSTANCIAS_")}
    env.update({"CONSTANCIAS_LOG_FORMAT": "json", "CONSTANCIAS_LOG_LEVEL": "debug", **extra})
    # Whoever runs the suite may have a permissive umask: the product must not depend on it.
    return env


# --- embedded: `constancias run --sandbox --json` ---------------------------------------------


@dataclass
class Run:
    sheet: Sheet
    data: Path
    proc: subprocess.CompletedProcess[str]
    result: dict
    connects: Path | None
    """strace's record of every connect() of the run and its children (Chromium included)."""


STRACE = shutil.which("strace")


@pytest.fixture(scope="module")
def sandbox_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """One whole batch on a private sandbox, JSON logs at debug level, permissive umask, every
    connect() recorded (strace with a seccomp filter: only connect() is stopped, so it costs
    little)."""
    tmp = tmp_path_factory.mktemp("privacy")
    sheet = _sheet(tmp / "altas.xlsx", [*synthetic_curps(2, seed=1010), INCONSISTENT])
    data = tmp / "data"
    trace = tmp / "connect.trace" if STRACE else None
    prefix = ([STRACE, "-f", "-qq", "-yy", "--seccomp-bpf", "-e", "trace=connect",
               "-e", "signal=none", "-o", str(trace)] if STRACE else [])
    old = os.umask(0o022)
    try:
        proc = subprocess.run([*prefix, *CLI, "run", str(sheet.path), "--sandbox", "--json"],
                              env=_clean_env(CONSTANCIAS_DATA_DIR=str(data)), cwd=tmp,
                              capture_output=True, text=True, timeout=300)
    finally:
        os.umask(old)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out_lines = proc.stdout.strip().splitlines()
    return Run(sheet, data, proc, json.loads(out_lines[-1]), trace)


def test_sandbox_batch_logs_no_curp_or_email_at_debug(sandbox_run: Run) -> None:
    """No log line of a debug-level sandbox batch — engine, flows, simulators, mail server,
    libraries — carries an input CURP, an input e-mail or a per-CURP IMSS address whole."""
    run = sandbox_run
    stdout_lines = run.proc.stdout.strip().splitlines()
    # stdout is the product's output (the --json result, which names CURPs by design) only.
    assert len(stdout_lines) == 1, stdout_lines[:-1]
    log_lines = [line for line in run.proc.stderr.splitlines() if line.strip()]
    assert _leaks(log_lines, run.sheet.secrets) == []
    # Every line went through the masking handler (a raw print would not be JSON).
    events = []
    for line in log_lines:
        try:
            events.append(json.loads(line))
        except ValueError:
            pytest.fail(f"a log line bypassed the structured handler: {line[:300]!r}")
    loggers = {e.get("logger") for e in events}
    # The lines really came from every component, and they did talk about these people.
    # The IMSS mail is read by the mailbox watcher (worker/engine/mailwatch.py).
    assert {"constancias.engine", "fixtures.imss_app", "fixtures.issste_app",
            "fixtures.mail", "constancias.mailwatch"} <= loggers, loggers
    assert any(e.get("level") == "debug" for e in events)
    text = "\n".join(log_lines)
    for curp in run.sheet.curps:
        assert mask_curp(curp) in text
    statuses = {(r["curp"], r["portal"]): r["status"] for r in run.result["results"]}
    assert statuses[(INCONSISTENT, "imss")] == "data_inconsistent"


def test_sandbox_batch_leaves_only_owner_only_files(sandbox_run: Run) -> None:
    """The data folder, batch folder, PDFs, evidence (HTML, screenshots, trace), report,
    database and sandbox maildir have no group or other permission bits."""
    data = sandbox_run.data
    files = [p for p in data.rglob("*") if p.is_file()]
    names = {p.name for p in files}
    suffixes = {p.suffix for p in files}
    # Each kind of personal-data file was really written, so the check below means something.
    assert {".pdf", ".html", ".png", ".zip", ".xlsx", ".db"} <= suffixes, suffixes
    assert "reporte.xlsx" in names and "trace.zip" in names
    assert any("sandbox-mail" in p.parts for p in files)
    assert "check.json" in names  # the evidence note of the failed IMSS check
    assert _open_modes(data) == []


#: Chromium's IPv6 reachability probe: a UDP socket connect()ed to Google's public DNS to learn
#: whether a global IPv6 route exists. A UDP connect() sends no packet.
_NO_TRAFFIC = {("UDPv6", "2001:4860:4860::8888", 443)}
_CONNECT_RE = re.compile(
    r'connect\(\d+<(?P<proto>[A-Z]+v?6?)(?::[^>]*)?>, \{sa_family=AF_INET6?, '
    r'sin6?_port=htons\((?P<port>\d+)\).*?(?:inet_addr\("(?P<v4>[^"]+)"\)|'
    r'inet_pton\(AF_INET6, "(?P<v6>[^"]+)")')


def _peers(trace: Path) -> set[tuple[str, str, int]]:
    """(protocol, address, port) of every IP connect() in an ``strace -yy`` record."""
    peers = set()
    for line in trace.read_text(errors="replace").splitlines():
        if match := _CONNECT_RE.search(line):
            peers.add((match["proto"], match["v4"] or match["v6"], int(match["port"])))
    return peers


def _is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or bool(mapped and mapped.is_loopback)


def test_sandbox_batch_talks_to_nobody_but_the_portals_and_the_mailbox(sandbox_run: Run) -> None:
    """Every connection of a whole batch — Python, the Playwright driver, Chromium and its
    helpers — goes to the sandbox on loopback: no DNS lookup, no Google service, nothing."""
    assert sandbox_run.connects is not None, "strace is needed (scripts/setup.sh installs it)"
    peers = _peers(sandbox_run.connects)
    assert any(_is_loopback(addr) for _, addr, _ in peers), "strace recorded no connection"
    elsewhere = {p for p in peers if not _is_loopback(p[1]) and p not in _NO_TRAFFIC}
    assert elsewhere == set()


# --- distributed: `constancias worker` (Celery) on a private Redis ---------------------------


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


def _wait_done(env: dict[str, str], cwd: Path, batch_id: str, timeout: float = 180) -> dict:
    """`status --json` once storage says the batch is done (polled in-process: a `status`
    process a second would take a core from the worker)."""
    storage = Storage(load_settings(data_dir=Path(env["CONSTANCIAS_DATA_DIR"]))
                      .effective_database_url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batch = storage.get_batch(batch_id)
        if batch is not None and batch.state == "done":
            proc = subprocess.run([*CLI, "status", batch_id, "--json"], env=env, cwd=cwd,
                                  capture_output=True, text=True, timeout=60)
            assert proc.returncode == 0, proc.stderr
            return json.loads(proc.stdout)
        time.sleep(0.5)
    raise AssertionError(f"batch not done: {storage.progress(batch_id)}")


def test_celery_worker_logs_no_curp_or_email_at_debug(tmp_path: Path, sandbox,
                                                      redis_server: RedisServer) -> None:
    """A real Celery worker at debug level — its own "received"/"succeeded" lines, task
    arguments and return values included — and `submit` log no CURP or e-mail whole, and the
    files its pool children write are owner-only."""
    sheet = _sheet(tmp_path / "altas.xlsx", synthetic_curps(2, seed=1020))
    data = tmp_path / "data"
    env = _clean_env(CONSTANCIAS_BROKER_URL=redis_server.url, CONSTANCIAS_DATA_DIR=str(data),
                     CONSTANCIAS_IMSS_URL=sandbox.imss_url,
                     CONSTANCIAS_ISSSTE_URL=sandbox.issste_url,
                     CONSTANCIAS_MAILBOX_URL=sandbox.mailbox_url)
    log_path = tmp_path / "worker.log"
    old = os.umask(0o022)
    try:
        with open(log_path, "wb") as log:
            worker = subprocess.Popen([*CLI, "worker", "-c", "2"], env=env, cwd=tmp_path,
                                      stdout=log, stderr=subprocess.STDOUT,
                                      start_new_session=True)
        try:
            submit = subprocess.run([*CLI, "submit", str(sheet.path)], env=env, cwd=tmp_path,
                                    capture_output=True, text=True, timeout=60)
            assert submit.returncode == 0, submit.stderr
            batch_id = submit.stdout.strip().splitlines()[-1]
            status = _wait_done(env, tmp_path, batch_id)
        finally:
            os.killpg(worker.pid, signal.SIGTERM)
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait(10)
    finally:
        os.umask(old)
    assert status["done"] == status["total"] == (len(sheet.curps) + 1) * 2  # + invalid row

    worker_lines = log_path.read_text(encoding="utf-8", errors="replace").splitlines()
    submit_lines = submit.stderr.splitlines() + submit.stdout.splitlines()
    assert _leaks(worker_lines + submit_lines, sheet.secrets) == []
    text = "\n".join(worker_lines)
    # Celery's own lines were there to be checked: receipt, and success with its return value
    # (the status code, never a CURP).
    assert "Task constancias.check[" in text and " received" in text
    returned = re.findall(r"succeeded in [0-9.]+s: ([^\"]*)\"", text)
    assert returned, "no Celery 'succeeded' line at debug level"
    codes = {repr(s.value) for s in Status} | {"None"}
    assert set(returned) <= codes, returned  # a status code (check) or None (finish_batch)
    assert all(mask_curp(c) in text for c in sheet.curps)  # the engine did log these people

    assert _open_modes(data) == []
    assert {".pdf", ".xlsx", ".db"} <= {p.suffix for p in data.rglob("*")}


# --- the masking step at the edges a whole run may not reach ----------------------------------

CURP = "CEDZ840314MOCQJC05"


@pytest.mark.parametrize("text", [
    f"evidencia/imss_{CURP}.png",                       # glued to an underscore
    f"{CURP}imss",                                      # glued to letters
    f"9{CURP.lower()}0",                                # glued to digits
    f"correo=constancias%2B{CURP.lower()}%40empresa.example",  # URL-encoded address
])
def test_curp_glued_to_other_characters_is_masked(text: str) -> None:
    """A CURP inside a file name, a word or a URL-encoded address is masked all the same."""
    from worker.core.logs import mask_text

    assert CURP.lower() not in mask_text(text).lower()


def test_url_encoded_email_is_masked() -> None:
    """``persona%40dominio`` (a query string) is an e-mail address too."""
    from worker.core.logs import mask_text

    masked = mask_text("GET /x?correo=persona.1%40rh-empresa.example HTTP/1.1")
    assert "persona.1" not in masked and "rh-empresa" not in masked


def _json_stderr(capsys: pytest.CaptureFixture[str]) -> str:
    return capsys.readouterr().err


def test_stdlib_exception_with_curp_is_masked(capsys: pytest.CaptureFixture[str]) -> None:
    """A foreign logger's traceback (Celery's "raised unexpected") is masked like ours."""
    import logging

    from worker.core.logs import configure_logging

    configure_logging("json", "debug")
    try:
        raise RuntimeError(f"fallo con {CURP} y persona.1@rh-empresa.example")
    except RuntimeError:
        logging.getLogger("celery.app.trace").exception("Task raised unexpected: %r", CURP)
    err = _json_stderr(capsys)
    assert "RuntimeError" in err and CURP not in err and "persona.1@" not in err


def test_python_warnings_go_through_the_masking_handler(capsys: pytest.CaptureFixture[str]) -> None:
    """A library warning (openpyxl, Celery) that quotes a value is a masked JSON log line,
    not raw text on stderr."""
    import warnings

    from worker.core.logs import configure_logging

    configure_logging("json", "debug")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn(f"hoja «Altas {CURP}» con una extensión desconocida", UserWarning,
                      stacklevel=1)
    err = _json_stderr(capsys)
    assert CURP not in err
    assert [json.loads(line)["logger"] for line in err.strip().splitlines()] == ["py.warnings"]


# --- the web page: `constancias web` as deployed ----------------------------------------------


def test_web_page_logs_no_curp_or_email_and_keeps_uploads_owner_only(tmp_path: Path) -> None:
    """`constancias web` at debug level (access log included), fed a sheet with CURPs and
    e-mails and searched by CURP and by e-mail, logs none of them whole; the
    uploaded sheet and its findings are owner-only even under a permissive umask."""
    import httpx

    from tests.conftest import free_port
    from tests.worker.interfaces.web.conftest import PASSWORD, csrf_from

    sheet = _sheet(tmp_path / "altas.xlsx", synthetic_curps(3, seed=1030))
    data = tmp_path / "data"
    port = free_port()
    env = _clean_env(CONSTANCIAS_DATA_DIR=str(data), CONSTANCIAS_WEB_PASSWORD=PASSWORD)
    log_path = tmp_path / "web.log"
    old = os.umask(0o022)
    try:
        with open(log_path, "wb") as log:
            server = subprocess.Popen([*CLI, "web", "--host", "127.0.0.1", "--port", str(port)],
                                      env=env, cwd=tmp_path, stdout=log,
                                      stderr=subprocess.STDOUT, start_new_session=True)
    finally:
        os.umask(old)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(url + "/entrar", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and server.poll() is None, "web did not start"
                time.sleep(0.2)
        with httpx.Client(base_url=url, timeout=30) as client:
            token = csrf_from(client.get("/entrar").text)
            assert client.post("/entrar", data={"password": PASSWORD, "csrf": token},
                               follow_redirects=False).status_code == 303
            token = csrf_from(client.get("/").text)
            r = client.post("/subir", data={"csrf": token},
                            files={"hoja": ("altas.xlsx", sheet.path.read_bytes())},
                            follow_redirects=True)
            assert r.status_code == 200 and sheet.curps[0] in r.text  # HR sees the preview
            # A CURP or an e-mail in the people search (a GET form, or a link someone pasted): the
            # access log sees the raw query string, the e-mail URL-encoded (``%40``).
            for curp, email in zip(sheet.curps, sheet.emails, strict=False):
                client.get("/personas", params={"q": curp})
                client.get("/personas", params={"q": email})
                client.get(f"/lotes/{curp.lower()}/archivos/constancias/{curp}/imss.pdf")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(20)
    lines = log_path.read_text(encoding="utf-8", errors="replace").splitlines()
    assert any("GET /personas?q=" in line for line in lines)  # the access log was on
    assert _leaks(lines, sheet.secrets) == []
    uploads = data / "uploads"
    assert any(p.suffix == ".xlsx" for p in uploads.rglob("*"))
    assert _open_modes(data) == []


class _ExplodingQueue:
    """A child's job pipe whose read fails with a CURP and an email in the message."""

    def poll(self, timeout: float) -> bool:
        raise RuntimeError("no se pudo leer /datos/GODE561231HDFRRN09/imss.pdf de ana@empresa.mx")


def test_embedded_child_crash_prints_a_masked_traceback(tmp_path: Path) -> None:
    """An exception that escapes an embedded child (outside a check, where structlog masks)
    is printed masked on stderr, and the child exits 1 rather than with Python's raw dump."""
    code = (
        "import os; from tests.test_privacy import _ExplodingQueue; "
        "from worker.engine.embedded import _child; from worker.core.settings import load_settings; "
        f"s = load_settings(data_dir={str(tmp_path)!r}).model_dump(mode='json'); "
        "_child(s, _ExplodingQueue(), None, os.getppid())"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 1
    assert "RuntimeError" in proc.stderr and "Traceback" in proc.stderr
    assert "GODE561231HDFRRN09" not in proc.stderr and "ana@empresa.mx" not in proc.stderr
    assert mask_curp("GODE561231HDFRRN09") in proc.stderr
