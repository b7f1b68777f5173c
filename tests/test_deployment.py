"""The deployment files (compose.yaml, compose.sandbox.yaml, Dockerfile) are checked against the
real program: every command is one the real parser accepts, every CONSTANCIAS_* a real setting,
volumes and dependencies line up, one beat. Then the services' own commands run as local
processes (no Docker engine here) — Redis, PostgreSQL, the sandbox, two workers, beat, web and
Flower — and a batch goes through them."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis as redis_lib
from openpyxl import load_workbook
from sqlalchemy import create_engine, text

from tests.deploy_helpers import (
    CLI,
    ROOT,
    LocalDeployment,
    free_port,
    free_port_block,
    image_env,
    interpolate,
    load_compose,
    load_dockerfile,
    service_argv,
    service_env,
    uses_project_image,
    wait_http,
)
from tests.people import expected, synthetic_curps, write_sheet
from worker.core.settings import Settings
from worker.interfaces.cli import build_parser

#: The secrets compose refuses to start without, as an operator's .env would give them.
SECRETS = {"CONSTANCIAS_WEB_PASSWORD": "clave-de-prueba-123", "FLOWER_PASSWORD": "flor-456"}
SANDBOX_OVERRIDE = ROOT / "compose.sandbox.yaml"
PG_ADMIN = os.environ.get("CONSTANCIAS_TEST_PG",
                          "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


@pytest.fixture(scope="module")
def override() -> dict[str, Any]:
    return load_compose(SANDBOX_OVERRIDE)


@pytest.fixture(scope="module")
def dockerfile():
    return load_dockerfile()


def _entrypoint(dockerfile) -> list[str]:
    [ep] = [i.json_args() for i in dockerfile if i.keyword == "ENTRYPOINT"]
    return ep


def _program(argv: list[str]) -> list[str]:
    """The command behind the init: what follows tini's ``--``."""
    if argv and Path(argv[0]).name == "tini":
        return argv[argv.index("--") + 1:]
    return argv


def _project_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in compose["services"].items() if uses_project_image(s)}


# --- the files, read -----------------------------------------------------------------------
def test_every_project_service_runs_a_real_constancias_command(compose, dockerfile) -> None:
    """Each service of the project image runs a subcommand with flags the real parser accepts
    (Flower: Celery's own command on the project's Celery app)."""
    entrypoint = _entrypoint(dockerfile)
    seen = {}
    for name, service in _project_services(compose).items():
        argv = _program(service_argv(service, entrypoint, SECRETS))
        if argv[0] == "celery":
            assert argv[1:4] == ["-A", "worker.engine.celery_app", "flower"], (name, argv)
            seen[name] = "flower"
            continue
        assert argv[0] == "constancias", (name, argv)
        try:
            args = build_parser().parse_args(argv[1:])
        except SystemExit as exc:  # argparse refuses: not a real command line
            pytest.fail(f"{name}: {argv} rejected by constancias ({exc})")
        seen[name] = args.command
    assert seen == {"worker": "worker", "beat": "beat", "web": "web", "flower": "flower",
                    "sandbox": "sandbox"}
    cmd = [i.json_args() for i in dockerfile if i.keyword == "CMD"][-1]
    build_parser().parse_args(cmd)  # the image's default command is a real one too


def test_the_documented_operations_are_real_commands(compose) -> None:
    """Every `docker compose run --rm SERVICE …` in compose.yaml's header names a project
    service and a command line the real parser accepts; `doctor` is among them."""
    header = (ROOT / "compose.yaml").read_text().split("\nname:", 1)[0]
    runs = re.findall(r"docker compose run --rm (\S+) ([^#\n]*)", header)
    assert runs, header
    commands = set()
    for service, rest in runs:
        assert service in _project_services(compose), service
        try:
            commands.add(build_parser().parse_args(rest.split()).command)
        except SystemExit as exc:
            pytest.fail(f"{rest!r} rejected by constancias ({exc})")
    assert "doctor" in commands


def test_every_constancias_variable_is_a_real_setting(compose, override, dockerfile) -> None:
    """Every CONSTANCIAS_* named anywhere in the deployment files is a field of Settings."""
    fields = {f"CONSTANCIAS_{name.upper()}" for name in Settings.model_fields}
    texts = [(ROOT / "compose.yaml").read_text(), SANDBOX_OVERRIDE.read_text(),
             (ROOT / "Dockerfile").read_text()]
    named = set(re.findall(r"CONSTANCIAS_[A-Z0-9_]+", "\n".join(texts)))
    assert named, "no settings found"
    assert named <= fields, f"not settings: {sorted(named - fields)}"
    for service in [*compose["services"].values(), *override["services"].values()]:
        env = service.get("environment") or {}
        keys = {k for k in env if k.startswith("CONSTANCIAS_")}
        assert keys <= fields, sorted(keys - fields)
    assert set(image_env(dockerfile)) - {"PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED",
                                         "PIP_DISABLE_PIP_VERSION_CHECK"} <= fields


def test_every_setting_reaches_the_processes_that_use_it(compose) -> None:
    """Workers, beat and web can be given every setting through the environment (the web
    password only goes to the web page)."""
    fields = {f"CONSTANCIAS_{name.upper()}" for name in Settings.model_fields}
    services = compose["services"]
    for name in ("worker", "beat", "web", "flower"):
        env = set(services[name]["environment"])
        missing = fields - env - {"CONSTANCIAS_WEB_PASSWORD"}
        assert not missing, f"{name} cannot be given {sorted(missing)}: add them to x-env"
    assert "CONSTANCIAS_WEB_PASSWORD" in services["web"]["environment"]
    assert "CONSTANCIAS_WEB_PASSWORD" not in services["worker"]["environment"]


def test_compose_refuses_to_start_without_the_passwords(compose) -> None:
    """The web page and Flower hold personal data: no default password, compose stops."""
    for name, secret in (("web", "CONSTANCIAS_WEB_PASSWORD"), ("flower", "FLOWER_PASSWORD")):
        with pytest.raises(KeyError, match=secret):
            service_env(compose["services"][name], {})
        assert service_env(compose["services"][name], SECRETS)


def test_volumes_and_dependencies_line_up(compose, override) -> None:
    """depends_on targets exist (with a healthcheck when waited on), named volumes are
    declared, and every process that writes output mounts the shared folder at DATA_DIR."""
    services = compose["services"]
    declared = set(compose.get("volumes") or {})
    for extra in (compose, override):
        for name, service in extra["services"].items():
            deps = service.get("depends_on") or {}
            deps = {d: {} for d in deps} if isinstance(deps, list) else deps
            for target, how in deps.items():
                assert target in services, f"{name} depends on unknown {target}"
                if (how or {}).get("condition") == "service_healthy":
                    assert "healthcheck" in services[target], f"{target} has no healthcheck"
    used = set()
    for name, service in services.items():
        for mount in interpolate(service.get("volumes") or [], {}):
            source = mount.split(":", 1)[0]
            if not source.startswith(("/", ".", "~")):
                assert source in declared, f"{name}: volume {source} not declared"
                used.add(source)
    assert {"constancias-data", "postgres-data", "redis-data"} <= declared == used
    for name in ("worker", "web", "sandbox"):
        env = service_env(services[name], SECRETS)
        mounts = interpolate(services[name]["volumes"], {})
        assert f"constancias-data:{env['CONSTANCIAS_DATA_DIR']}" in mounts, name
    # Workers on several machines: the data folder's source can be a shared mount instead.
    shared = interpolate(services["worker"]["volumes"], {"DATA_VOLUME": "/mnt/constancias"})
    assert shared == ["/mnt/constancias:/data"]


def test_exactly_one_beat_and_workers_that_scale(compose) -> None:
    """One scheduler (never replicated, always on); the worker scales and has an init."""
    services = compose["services"]
    beats = [n for n, s in services.items() if s.get("command") == ["beat"]]
    assert beats == ["beat"]
    beat = services["beat"]
    assert beat.get("deploy", {}).get("replicas", 1) == 1 and "scale" not in beat
    assert "profiles" not in beat and "container_name" not in beat
    worker = services["worker"]
    assert worker["init"] is True
    # --scale needs no fixed name and no fixed host port.
    assert "container_name" not in worker and "ports" not in worker
    assert interpolate(worker["environment"]["CONSTANCIAS_CONCURRENCY"], {}) == "2"
    assert services["sandbox"]["profiles"] == ["sandbox"]
    assert all("profiles" not in s for n, s in services.items() if n != "sandbox")
    assert interpolate(services["redis"]["command"], {})[:3] == ["redis-server", "--appendonly",
                                                                  "yes"]


def test_dockerfile_builds_one_non_root_image_with_chromium_and_tesseract(dockerfile) -> None:
    """Python slim, Debian's chromium (its headless shell) + tesseract-ocr + tini, a non-root
    user, constancias as the entrypoint under tini, and every package of pyproject.toml copied
    in."""
    import tomllib

    [base] = [i.args for i in dockerfile if i.keyword == "FROM"]
    assert base.startswith("python:3.11-slim")
    apt = " ".join(i.args for i in dockerfile if i.keyword == "RUN" and "apt-get install" in i.args)
    packages = set(apt.split())
    assert {"chromium-headless-shell", "tesseract-ocr", "tini"} <= packages
    users = [i.args.split(":")[0] for i in dockerfile if i.keyword == "USER"]
    assert users and users[-1] not in ("root", "0")
    ep = _entrypoint(dockerfile)
    assert ep[0] == "/usr/bin/tini" and _program(ep) == ["constancias"]
    env = image_env(dockerfile)
    assert env["CONSTANCIAS_BROWSER_EXECUTABLE"] == "/usr/bin/chromium-headless-shell"
    copied = {i.args.split()[0] for i in dockerfile if i.keyword == "COPY"}
    copied |= {part for i in dockerfile if i.keyword == "COPY" for part in i.args.split()[:-1]}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for pattern in project["tool"]["setuptools"]["packages"]["find"]["include"]:
        assert pattern.rstrip("*") in copied, f"package {pattern} not copied into the image"
    assert {"pyproject.toml", "README.md"} <= copied
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".env", ".venv", ".git", "data/"} <= set(ignored)
    # Flower runs from this image: it must be one of the installed dependencies.
    assert any(d.startswith("flower") for d in project["project"]["dependencies"])


def test_sandbox_override_names_what_the_sandbox_prints(compose, override, dockerfile,
                                                        tmp_path: Path) -> None:
    """compose.sandbox.yaml gives the workers exactly the URLs and Maildir that the compose
    sandbox command prints, and that command listens on every interface."""
    service = compose["services"]["sandbox"]
    argv = _program(service_argv(service, _entrypoint(dockerfile), {}))
    port = free_port_block()
    compose_port = argv[argv.index("--port") + 1]
    argv[argv.index("--port") + 1] = str(port)
    env = service_env(service, {}, image_env(dockerfile))
    data_dir = env["CONSTANCIAS_DATA_DIR"]
    env["CONSTANCIAS_DATA_DIR"] = str(tmp_path / "data")
    dep = LocalDeployment(tmp_path)
    try:
        proc = dep.start("sandbox", argv, env, stdout=subprocess.PIPE)
        assert proc.stdout is not None
        printed = json.loads(proc.stdout.readline())
        import psutil

        # Listening on every interface, so other containers reach it (not only loopback).
        listening = {(c.laddr.ip, c.laddr.port) for c in psutil.Process(proc.pid).net_connections()
                     if c.status == psutil.CONN_LISTEN}
        assert {("0.0.0.0", port + i) for i in range(3)} <= listening, listening  # noqa: S104
        health = interpolate(service["healthcheck"]["test"], {})
        assert health[0] == "CMD"
        health = [sys.executable if a == "python" else a.replace(compose_port, str(port))
                  for a in health[1:]]
        assert subprocess.run(health, timeout=30).returncode == 0
    finally:
        dep.stop_all()
    as_in_compose = {
        "CONSTANCIAS_IMSS_URL": printed["imss_url"],
        "CONSTANCIAS_ISSSTE_URL": printed["issste_url"],
        "CONSTANCIAS_MAILBOX_URL": printed["mailbox_url"],
    }
    as_in_compose = {k: v.replace(f":{port + 1}/", f":{int(compose_port) + 1}/")
                     .replace(f":{port}/", f":{compose_port}/")
                     .replace(str((tmp_path / "data").resolve()), data_dir)
                     for k, v in as_in_compose.items()}
    assert override["services"]["worker"]["environment"] == as_in_compose


# --- the services, run ---------------------------------------------------------------------
@pytest.fixture
def pg_url() -> Iterator[str]:
    """A throw-away database on the machine's PostgreSQL (127.0.0.1:5432)."""
    name = f"constancias_deploy_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    yield PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _login_and_list(web_url: str, password: str) -> str:
    """Log in to the web page over HTTP, as a browser would, and return the batch list."""
    with httpx.Client(base_url=web_url, timeout=15, follow_redirects=True) as client:
        form = client.get("/entrar")
        assert form.status_code == 200
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert csrf, "no CSRF token on the log-in page"
        answer = client.post("/entrar", data={"csrf": csrf.group(1), "password": password,
                                              "siguiente": "/lotes"})
        assert answer.status_code == 200 and "/entrar" not in str(answer.url)
        page = client.get("/lotes")
        assert page.status_code == 200
        return page.text


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.timeout(240)
def test_the_compose_services_process_a_batch_outside_docker(
        compose, override, dockerfile, tmp_path: Path, pg_url: str) -> None:
    """Redis, the sandbox, two workers, beat, web and Flower started with the commands and
    environment compose gives them (only addresses changed): a submitted sheet is processed,
    its PDFs and report land in the shared folder, and the web page and Flower show it."""
    services = compose["services"]
    entrypoint = _entrypoint(dockerfile)
    base = image_env(dockerfile)
    # An operator's .env: the secrets, and one check per worker (2 cores here).
    variables = {**SECRETS, "CONSTANCIAS_CONCURRENCY": "1"}
    data = (tmp_path / "data").resolve()
    redis_port, web_port, flower_port, sandbox_port = (free_port(), free_port(), free_port(),
                                                       free_port_block())

    def localize(env: dict[str, str]) -> dict[str, str]:
        """Compose's service addresses → this machine's (nothing else changes)."""
        out = {}
        for key, value in env.items():
            if key == "CONSTANCIAS_DATABASE_URL":
                assert value.startswith("postgresql+psycopg://")
                value = pg_url
            value = (value.replace("@redis:6379", f"@127.0.0.1:{redis_port}")
                     .replace("sandbox:8100", f"127.0.0.1:{sandbox_port}")
                     .replace("sandbox:8101", f"127.0.0.1:{sandbox_port + 1}"))
            if key == "CONSTANCIAS_DATA_DIR":
                value = str(data)
            elif value.startswith("maildir:///data/"):
                value = f"maildir://{data}/" + value.removeprefix("maildir:///data/")
            out[key] = value
        return out

    def env_of(name: str, *layers: dict[str, Any]) -> dict[str, str]:
        env = service_env(services[name], variables, base)
        for layer in layers:
            env.update(service_env(layer, variables))
        return localize(env)

    def argv_of(name: str) -> list[str]:
        return _program(service_argv(services[name], entrypoint, variables))

    curps = synthetic_curps(3, seed=909)
    dep = LocalDeployment(tmp_path)
    try:
        # Redis exactly as compose runs it; only where it listens and keeps its file differ.
        r_argv = interpolate(services["redis"]["command"], variables)
        (tmp_path / "redis").mkdir()
        dep.start("redis", [shutil.which(r_argv[0]) or r_argv[0], *r_argv[1:], "--port",
                            str(redis_port), "--bind", "127.0.0.1",
                            "--dir", str(tmp_path / "redis")], {})
        password = service_env(services["redis"], variables)["REDISCLI_AUTH"]
        broker = redis_lib.Redis(port=redis_port, password=password)
        deadline = time.monotonic() + 10
        while True:
            try:
                assert broker.ping()
                break
            except redis_lib.ConnectionError:
                assert time.monotonic() < deadline, "redis did not start"
                time.sleep(0.1)
        assert broker.config_get("appendonly")["appendonly"] == "yes"

        sb_argv = argv_of("sandbox")
        sb_argv[sb_argv.index("--port") + 1] = str(sandbox_port)
        sb_argv[sb_argv.index("--public-host") + 1] = "127.0.0.1"
        sandbox = dep.start("sandbox", sb_argv, env_of("sandbox"), stdout=subprocess.PIPE)
        assert sandbox.stdout is not None
        printed = json.loads(sandbox.stdout.readline())

        worker_env = env_of("worker", override["services"]["worker"])
        assert worker_env["CONSTANCIAS_IMSS_URL"] == printed["imss_url"]
        assert worker_env["CONSTANCIAS_MAILBOX_URL"] == printed["mailbox_url"]
        assert worker_env["CONSTANCIAS_BROKER_URL"] == (
            f"redis://:{password}@127.0.0.1:{redis_port}/0")
        # Two workers of one scaled service, started together (both migrate, under a lock).
        for i in (1, 2):
            dep.start(f"worker{i}", argv_of("worker"), worker_env)
        dep.start("beat", argv_of("beat"), env_of("beat"))

        web_argv = argv_of("web")
        web_argv[web_argv.index("--port") + 1] = str(web_port)
        web = dep.start("web", web_argv, env_of("web"))
        fl_argv = [a.replace("--port=5555", f"--port={flower_port}") for a in argv_of("flower")]
        flower = dep.start("flower", fl_argv, env_of("flower"))

        # Any machine with the same settings can submit: here, the workers' own environment.
        cli_env = {**{k: v for k, v in os.environ.items() if not k.startswith("CONSTANCIAS_")},
                   **worker_env, "PYTHONPATH": str(ROOT)}
        sheet = write_sheet(tmp_path / "altas-deploy.xlsx", curps)
        sub = subprocess.run([*CLI, "submit", str(sheet)], env=cli_env, cwd=tmp_path,
                             capture_output=True, text=True, timeout=60)
        assert sub.returncode == 0, sub.stderr
        batch_id = sub.stdout.strip().splitlines()[-1]

        deadline = time.monotonic() + 150
        while True:
            st = subprocess.run([*CLI, "status", batch_id, "--json"], env=cli_env, cwd=tmp_path,
                                capture_output=True, text=True, timeout=60)
            assert st.returncode == 0, st.stderr
            status = json.loads(st.stdout)
            if status["state"] == "done":
                break
            for name in ("worker1", "worker2"):
                assert dep.procs[name].poll() is None, dep.log(name)[-3000:]
            assert time.monotonic() < deadline, (status["done"], status["total"],
                                                 dep.log("worker1")[-3000:])
            time.sleep(3)  # each `status` is a new Python process (~2 CPU-s) beside the workers

        # The results, the PDFs and the report, in the shared output folder.
        assert status["total"] == status["done"] == 6
        for r in status["results"]:
            assert r["status"] == expected(r["curp"])[r["portal"]], r
            if r["status"] in ("not_entitled", "entitled", "not_affiliated"):
                assert r["pdf"] and Path(r["pdf"]).resolve().is_relative_to(data), r
                assert Path(r["pdf"]).read_bytes().startswith(b"%PDF")
        report = Path(status["report"]).resolve()
        assert report.is_relative_to(data)
        detail = load_workbook(report)["Detalle"]
        found = {c.value for row in detail.iter_rows() for c in row}
        assert set(curps) <= found

        # Beat holds RedBeat's lock and has stored the nightly entry in Redis.
        deadline = time.monotonic() + 30
        while not (broker.exists("redbeat::lock")
                   and broker.exists("redbeat:constancias-recheck")):
            assert dep.procs["beat"].poll() is None, dep.log("beat")[-2000:]
            assert time.monotonic() < deadline, dep.log("beat")[-2000:]
            time.sleep(0.5)

        # The web page: its healthcheck passes, and HR logs in and sees the batch.
        web_url = f"http://127.0.0.1:{web_port}"
        wait_http(web_url + "/entrar", proc=web)
        health = interpolate(services["web"]["healthcheck"]["test"], variables)[1:]
        health = [sys.executable if a == "python" else a.replace(":8000/", f":{web_port}/")
                  for a in health]
        assert subprocess.run(health, timeout=30).returncode == 0
        listing = _login_and_list(web_url, SECRETS["CONSTANCIAS_WEB_PASSWORD"])
        assert batch_id in listing or sheet.name in listing

        # The workers' healthcheck (Celery ping by node name) answers.
        shell = interpolate(services["worker"]["healthcheck"]["test"], variables)
        assert shell[0] == "CMD-SHELL"
        ping_env = {**cli_env, "HOSTNAME": socket.gethostname(),
                    "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
        ping = subprocess.run(["sh", "-c", shell[1]], env=ping_env, capture_output=True,
                              text=True, timeout=60)
        assert ping.returncode == 0 and "pong" in ping.stdout, ping.stdout + ping.stderr

        # Flower: healthy, behind its password, and it sees the workers.
        flower_url = f"http://127.0.0.1:{flower_port}"
        wait_http(flower_url + "/healthcheck", proc=flower)
        assert httpx.get(flower_url + "/healthcheck", timeout=10).text == "OK"
        assert httpx.get(flower_url + "/api/workers", timeout=10).status_code == 401
        auth = tuple(env_of("flower")["FLOWER_BASIC_AUTH"].split(":", 1))
        workers = httpx.get(flower_url + "/api/workers", params={"refresh": "1"}, auth=auth,
                            timeout=30)
        assert workers.status_code == 200 and any(k.startswith("celery@")
                                                  for k in workers.json()), workers.text
    finally:
        dep.stop_all()
    # Nobody's log holds a whole CURP (they are personal data).
    for name in dep.procs:
        log = dep.log(name)
        assert not [c for c in curps if c in log], f"{name} logged a whole CURP"
