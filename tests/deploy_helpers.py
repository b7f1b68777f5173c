"""Reading the deployment files as Docker would, and running their services without Docker.

* ``load_compose()`` parses ``compose.yaml`` (YAML anchors and merge keys included) and
  ``interpolate()`` resolves ``${VAR}``, ``${VAR:-default}``, ``${VAR:?error}`` and ``$$`` the
  way ``docker compose`` does, so a test sees the values a container would get.
* ``load_dockerfile()`` reads the instructions of the ``Dockerfile`` (continuations joined).
* ``service_env()`` / ``service_argv()`` give a service's environment (the image's ``ENV`` plus
  the service's ``environment``) and the command line its container runs.
* ``LocalDeployment`` runs those commands as local processes (``python -m worker.interfaces.cli …``).

``python -m tests.deploy_helpers memory`` measures a worker's memory (its process tree, Chromium
included) during a batch on the sandbox, for sizing workers (README, "Varias máquinas").
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import yaml

__all__ = ["ROOT", "load_compose", "interpolate", "load_dockerfile", "DockerInstruction",
           "image_env", "service_env", "service_argv", "uses_project_image", "free_port",
           "free_port_block", "LocalDeployment"]

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "worker.interfaces.cli"]


# --- compose -------------------------------------------------------------------------------
def load_compose(path: Path | None = None) -> dict[str, Any]:
    """The compose file as data (anchors and ``<<`` merges resolved by PyYAML)."""
    return yaml.safe_load((path or ROOT / "compose.yaml").read_text(encoding="utf-8"))


def _find_close(text: str, start: int) -> int:
    """Index of the ``}`` closing the ``${`` whose body starts at ``start`` (nesting aware)."""
    depth = 1
    i = start
    while i < len(text):
        if text.startswith("${", i):
            depth += 1
            i += 2
            continue
        if text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise ValueError(f"unclosed ${{ in {text!r}")


def interpolate(value: Any, variables: Mapping[str, str]) -> Any:
    """Resolve compose's variable syntax in ``value`` (recursively in lists and mappings).

    ``${VAR:?msg}`` with ``VAR`` unset raises ``KeyError`` — compose refuses to start then.
    """
    if isinstance(value, dict):
        return {k: interpolate(v, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, variables) for v in value]
    if not isinstance(value, str):
        return value
    out: list[str] = []
    i = 0
    while i < len(value):
        if value.startswith("$$", i):
            out.append("$")
            i += 2
        elif value.startswith("${", i):
            end = _find_close(value, i + 2)
            out.append(_expand(value[i + 2:end], variables))
            i = end + 1
        elif value[i] == "$" and (m := re.match(r"[A-Za-z_][A-Za-z0-9_]*", value[i + 1:])):
            out.append(variables.get(m.group(0), ""))
            i += 1 + m.end()
        else:
            out.append(value[i])
            i += 1
    return "".join(out)


def _expand(body: str, variables: Mapping[str, str]) -> str:
    m = re.match(r"([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])(.*))?$", body, re.S)
    if not m:
        raise ValueError(f"bad substitution ${{{body}}}")
    name, op, arg = m.group(1), m.group(2), m.group(3) or ""
    current = variables.get(name)
    empty_is_unset = bool(op) and op.startswith(":")
    is_set = current is not None and (current != "" or not empty_is_unset)
    if op in (":-", "-"):
        return current if is_set else interpolate(arg, variables)  # type: ignore[return-value]
    if op in (":?", "?"):
        if not is_set:
            raise KeyError(f"{name}: {arg}")
        return current  # type: ignore[return-value]
    if op in (":+", "+"):
        return interpolate(arg, variables) if is_set else ""
    return current or ""


# --- Dockerfile ----------------------------------------------------------------------------
@dataclass(frozen=True)
class DockerInstruction:
    keyword: str
    """Upper-cased instruction: ``FROM``, ``RUN``, ``ENV``…"""
    args: str
    """Its arguments, continuation lines joined."""

    def json_args(self) -> list[str]:
        """Exec-form arguments (``["a", "b"]``); shell form is split like a shell would."""
        text = self.args.strip()
        return json.loads(text) if text.startswith("[") else shlex.split(text)


def load_dockerfile(path: Path | None = None) -> list[DockerInstruction]:
    lines = (path or ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines()
    out: list[DockerInstruction] = []
    buf = ""
    for raw in lines:
        line = raw.rstrip()
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.lstrip().startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        keyword, _, args = buf.strip().partition(" ")
        out.append(DockerInstruction(keyword.upper(), args.strip()))
        buf = ""
    return out


def image_env(instructions: list[DockerInstruction]) -> dict[str, str]:
    """What the image's ``ENV`` lines set (``KEY=value`` pairs)."""
    env: dict[str, str] = {}
    for ins in instructions:
        if ins.keyword == "ENV":
            for pair in shlex.split(ins.args):
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def uses_project_image(service: Mapping[str, Any]) -> bool:
    """Built from the Dockerfile here (``build: .``), not a third-party image."""
    return "build" in service


def service_env(service: Mapping[str, Any], variables: Mapping[str, str],
                base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a container of ``service`` gets: ``base`` (the image's ENV), then the
    service's ``environment``; a key without a value takes ``variables[key]`` or stays unset."""
    env = dict(base or {})
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) if "=" in item else (item, None) for item in raw)
    for key, value in raw.items():
        if value is None:
            if key in variables:
                env[key] = variables[key]
            continue
        env[key] = str(interpolate(value, variables))
    return env


def service_argv(service: Mapping[str, Any], entrypoint: list[str],
                 variables: Mapping[str, str]) -> list[str]:
    """Entrypoint + command of the container (a service's ``entrypoint`` replaces the image's)."""
    ep = service.get("entrypoint", entrypoint)
    cmd = service.get("command", [])
    ep = shlex.split(ep) if isinstance(ep, str) else list(ep)
    cmd = shlex.split(cmd) if isinstance(cmd, str) else list(cmd)
    return [str(a) for a in interpolate(ep + cmd, variables)]


# --- ports ---------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("0.0.0.0", port))  # noqa: S104 - probing, closed at once
        except OSError:
            return False
    return True


def free_port_block(n: int = 3) -> int:
    """P such that P … P+n-1 are free (the sandbox takes P, P+1, P+2)."""
    for _ in range(100):
        p = free_port()
        if p + n < 65535 and all(_bindable(p + i) for i in range(n)):
            return p
    raise RuntimeError("no block of free ports")


# --- running the services locally ----------------------------------------------------------
@dataclass
class LocalDeployment:
    """The compose services as local processes, each in its own session (killed as a group)."""

    workdir: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _logs: list[IO[bytes]] = field(default_factory=list)

    def start(self, name: str, argv: list[str], env: Mapping[str, str],
              stdout: int | None = None) -> subprocess.Popen[bytes]:
        """Run ``argv`` (``constancias …`` becomes ``python -m worker.interfaces.cli …``)."""
        if argv and argv[0] == "constancias":
            argv = [*CLI, *argv[1:]]
        elif argv and argv[0] == "celery":
            argv = [sys.executable, "-m", "celery", *argv[1:]]
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("CONSTANCIAS_")}
        full_env.update(env)
        full_env["PYTHONPATH"] = str(ROOT)
        log = open(self.workdir / f"{name}.log", "wb")  # noqa: SIM115 - closed in stop_all
        self._logs.append(log)
        proc = subprocess.Popen(argv, env=full_env, cwd=self.workdir,
                                stdout=stdout if stdout is not None else log,
                                stderr=log, start_new_session=True)
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self, name: str, timeout: float = 20) -> None:
        proc = self.procs[name]
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 20
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        for log in self._logs:
            log.close()


def wait_http(url: str, timeout: float = 30, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Until ``url`` answers (any HTTP status), or fail; stops early if ``proc`` died."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer in {timeout} s")


# --- memory measurement --------------------------------------------------------------------
def _tree_pss(pid: int) -> dict[str, int]:
    """PSS bytes of pid and its descendants, by kind: ``python`` (Celery master and pool
    children), ``node`` (Playwright's driver, one per browser), ``chromium``; ``total``.

    PSS, not RSS: Chromium's processes share most of their pages, and RSS counts them again
    in every process (several times the real use)."""
    import psutil

    out = {"python": 0, "node": 0, "chromium": 0, "other": 0, "total": 0, "chromium_procs": 0}
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return out
    for p in procs:
        try:
            pss = p.memory_full_info().pss
            name = p.name()
        except psutil.Error:
            continue
        kind = ("chromium" if "chrom" in name else "node" if "node" in name or "playwright" in name
                else "python" if "python" in name or "constancias" in name or "celery" in name
                else "other")
        out[kind] += pss
        out["total"] += pss
        out["chromium_procs"] += kind == "chromium"
    return out


def measure_worker_memory(concurrency: int = 2, people: int = 8) -> None:
    """One ``constancias worker -c N`` against the sandbox (Redis + SQLite): print the peak RSS
    of its process tree while a batch runs. Uses real Chromium; about a minute."""
    import tempfile

    from tests.people import synthetic_curps, write_sheet

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        dep = LocalDeployment(work)
        try:
            redis_port = free_port()
            dep.start("redis", ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1",
                                "--dir", str(work), "--save", ""], {})
            sb_port = free_port_block()
            env = {"CONSTANCIAS_DATA_DIR": str(work / "data"),
                   "CONSTANCIAS_BROKER_URL": f"redis://127.0.0.1:{redis_port}/0",
                   "CONSTANCIAS_LOG_FORMAT": "json"}
            sandbox = dep.start("sandbox", ["constancias", "sandbox", "--port", str(sb_port)],
                                env, stdout=subprocess.PIPE)
            assert sandbox.stdout is not None
            urls = json.loads(sandbox.stdout.readline())
            env.update({"CONSTANCIAS_IMSS_URL": urls["imss_url"],
                        "CONSTANCIAS_ISSSTE_URL": urls["issste_url"],
                        "CONSTANCIAS_MAILBOX_URL": urls["mailbox_url"]})
            worker = dep.start("worker", ["constancias", "worker", "-c", str(concurrency)], env)
            time.sleep(4)
            idle = _tree_pss(worker.pid)
            sheet = write_sheet(work / "h.xlsx", synthetic_curps(people, seed=97))
            full_env = {**{k: v for k, v in os.environ.items()
                           if not k.startswith("CONSTANCIAS_")}, **env, "PYTHONPATH": str(ROOT)}
            out = subprocess.run([*CLI, "submit", str(sheet)], env=full_env, cwd=work,
                                 capture_output=True, text=True, check=True)
            batch_id = out.stdout.strip().splitlines()[-1]
            peak: dict[str, int] = {"total": 0}
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                sample = _tree_pss(worker.pid)
                if sample["total"] > peak["total"]:
                    peak = sample
                st = subprocess.run([*CLI, "status", batch_id, "--json"], env=full_env, cwd=work,
                                    capture_output=True, text=True)
                if st.returncode == 0 and json.loads(st.stdout)["state"] == "done":
                    break
                time.sleep(0.5)
            mb = 1024 * 1024
            print(f"| worker -c {concurrency}, PSS in MB | idle | peak of the batch |")
            print("|---|---|---|")
            for kind in ("python", "node", "chromium", "other", "total"):
                print(f"| {kind} | {idle[kind] / mb:.0f} | {peak[kind] / mb:.0f} |")
            print(f"| Chromium processes | {idle['chromium_procs']} | {peak['chromium_procs']} |")
        finally:
            dep.stop_all()


if __name__ == "__main__":
    if sys.argv[1:2] == ["memory"]:
        measure_worker_memory(int(sys.argv[2]) if len(sys.argv) > 2 else 2)
    else:
        print("usage: python -m tests.deploy_helpers memory [CONCURRENCY]", file=sys.stderr)
        sys.exit(2)
