"""The embedded engine end to end: real Chromium against the sandbox, SQLite, real files."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from openpyxl import load_workbook
from pypdf import PdfReader

from tests.people import expected, synthetic_curps, write_sheet
from tests.processes import child_running_a_check, fork_server_of
from worker.core.settings import load_settings
from worker.engine.check import person_dir
from worker.engine.executor import executor_for
from worker.interfaces.commands import sandbox_settings
from worker.services.batches import batch_status, open_storage, prepare_batch

pytestmark = pytest.mark.browser

CLI = [sys.executable, "-m", "worker.interfaces.cli"]


def _env(sandbox, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONSTANCIAS_")}
    env.update({
        "CONSTANCIAS_DATA_DIR": str(tmp_path / "data"),
        "CONSTANCIAS_IMSS_URL": sandbox.imss_url,
        "CONSTANCIAS_ISSSTE_URL": sandbox.issste_url,
        "CONSTANCIAS_MAILBOX_URL": sandbox.mailbox_url,
        "CONSTANCIAS_LOG_FORMAT": "json",
        "CONSTANCIAS_CONCURRENCY": "3",
    })
    env.update(extra)
    return env


def test_run_json_gives_each_rows_status_pdf_and_report(tmp_path: Path) -> None:
    """`run --sandbox --json` on a sheet with valid, invalid and duplicate rows: every row gets
    the sandbox's verdict per portal, PDFs where there are constancias, and the report."""
    curps = synthetic_curps(3, seed=11)
    sheet = write_sheet(tmp_path / "altas.xlsx", [*curps, "NO ES CURP", curps[0]])
    proc = subprocess.run([*CLI, "run", str(sheet), "--sandbox", "--json", "--out", "salida"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "CONSTANCIAS_CONCURRENCY": "3"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert set(out) == {"batch_id", "report", "results"}
    assert Path(out["report"]).is_file()
    results = out["results"]
    assert len(results) == 5 * 2
    for r in results:
        assert set(r) == {"row", "curp", "portal", "status", "pdf", "detail"}
    by = {(r["row"], r["portal"]): r for r in results}
    for i, curp in enumerate(curps):
        for portal in ("imss", "issste"):
            r = by[(i + 2, portal)]
            assert r["curp"] == curp
            assert r["status"] == expected(curp)[portal], r
            if r["status"] in ("not_entitled", "entitled", "not_affiliated"):
                assert r["pdf"] and curp in "".join(p.extract_text() for p in PdfReader(r["pdf"]).pages)
            else:
                assert r["pdf"] is None
    assert by[(5, "imss")]["status"] == "invalid_curp"
    assert by[(6, "imss")]["status"] == by[(2, "imss")]["status"]
    assert "fila 2" in by[(6, "imss")]["detail"]
    wb = load_workbook(out["report"])
    assert {"Resumen", "Detalle", "Errores"} <= set(wb.sheetnames)


def test_issste_down_ends_unavailable_in_bounded_time_while_imss_completes(sandbox, tmp_path: Path) -> None:
    """With ISSSTE down for the whole batch, its checks end portal_unavailable after the
    configured retries, IMSS finishes normally and the report is written."""
    sandbox.set_faults("issste", down=True)
    settings = sandbox_settings(load_settings(retry_max=2, retry_backoff_s=0.2,
                                              retry_backoff_max_s=1.0, concurrency=3), sandbox)
    storage = open_storage(settings)
    curps = synthetic_curps(3, seed=21)
    batch_id, _ = prepare_batch(settings, storage, write_sheet(tmp_path / "h.xlsx", curps),
                                ["imss", "issste"])
    executor_for(settings, storage).run_to_end(batch_id)
    status = batch_status(storage, batch_id)
    assert status["state"] == "done" and status["report"] and Path(status["report"]).is_file()
    for r in status["results"]:
        if r["portal"] == "issste":
            assert r["status"] == "portal_unavailable"
        else:
            assert r["status"] == expected(r["curp"])["imss"]
    checks = [c for c in storage.checks(batch_id) if c.portal == "issste"]
    assert all(c.attempts == 3 for c in checks)
    assert all(c.evidence_path and Path(c.evidence_path).exists() for c in checks)


def test_same_day_verdict_is_reused_not_requeried(sandbox, tmp_path: Path) -> None:
    """A second sheet with the same CURP the same day reuses the stored verdict and PDF:
    the portals are not queried again."""
    settings = sandbox_settings(load_settings(concurrency=2), sandbox)
    storage = open_storage(settings)
    curp = synthetic_curps(1, seed=31)[0]
    b1, _ = prepare_batch(settings, storage, write_sheet(tmp_path / "a.xlsx", [curp]), ["imss", "issste"])
    executor_for(settings, storage).run_to_end(b1)
    before = {p: sandbox.stats(p)["queries"].get(curp, 0) for p in ("imss", "issste")}
    assert before == {"imss": 1, "issste": 1}
    b2, _ = prepare_batch(settings, storage, write_sheet(tmp_path / "b.xlsx", [curp, *synthetic_curps(1, seed=32)]),
                          ["imss", "issste"])
    executor_for(settings, storage).run_to_end(b2)
    after = {p: sandbox.stats(p)["queries"].get(curp, 0) for p in ("imss", "issste")}
    assert after == before
    reused = [c for c in storage.checks(b2) if c.curp == curp]
    assert all(c.reused_from for c in reused)
    for c in reused:
        if c.pdf_path:
            assert Path(c.pdf_path).is_file() and Path(c.pdf_path).is_relative_to(Path(storage.get_batch(b2).out_dir))


def test_a_done_checks_trace_is_kept_beside_its_pdf_with_keep_traces_always(
        sandbox, tmp_path: Path) -> None:
    """KEEP_TRACES=always: a check that got its verdict records the folder of its trace (moved
    out of the run's scratch folder, next to the PDF) as its evidence."""
    settings = sandbox_settings(load_settings(concurrency=1, keep_traces="always"), sandbox)
    storage = open_storage(settings)
    curp = synthetic_curps(1, seed=33)[0]
    batch_id, _ = prepare_batch(settings, storage, write_sheet(tmp_path / "t.xlsx", [curp]),
                                ["issste"])
    executor_for(settings, storage).run_to_end(batch_id)
    (check,) = storage.checks(batch_id)
    assert check.status == expected(curp)["issste"], check.detail
    assert check.evidence_path, "no evidence recorded"
    folder = Path(check.evidence_path)
    home = person_dir(storage.get_batch(batch_id).out_dir, curp)
    assert folder.parent == home / "evidencia" and (folder / "trace.zip").stat().st_size > 0


def test_killed_embedded_run_resumes_without_requerying(sandbox, tmp_path: Path) -> None:
    """kill -9 of a running `constancias run`, then the same command again: it resumes the
    same batch, finished checks are not sent to the portals again, and the batch completes."""
    sandbox.set_faults("imss", latency_ms=150)
    sandbox.set_faults("issste", latency_ms=150)
    curps = synthetic_curps(6, seed=41)
    sheet = write_sheet(tmp_path / "altas.xlsx", curps)
    env = _env(sandbox, tmp_path, CONSTANCIAS_CONCURRENCY="2")
    db = tmp_path / "data" / "constancias.db"
    proc = subprocess.Popen([*CLI, "run", str(sheet), "--json"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 180
    done_before: set[tuple[str, str]] = set()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        if db.exists():
            try:
                with sqlite3.connect(db) as c:
                    done_before = set(c.execute("select curp, portal from checks where status is not null"))
            except sqlite3.OperationalError:
                continue
        if len(done_before) >= 4:
            break
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 4 <= len(done_before) < 2 * len(curps), "the run should have been killed mid-batch"
    queries_at_kill = {p: dict(sandbox.stats(p)["queries"]) for p in ("imss", "issste")}

    second = subprocess.run([*CLI, "run", str(sheet), "--json"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    out = json.loads(second.stdout)
    with sqlite3.connect(db) as c:
        assert c.execute("select count(*) from batches").fetchone()[0] == 1
    for curp, portal in done_before:
        assert sandbox.stats(portal)["queries"][curp] == queries_at_kill[portal][curp] == 1
    for r in out["results"]:
        assert r["status"] == expected(r["curp"])[r["portal"]]


def test_a_run_killed_while_writing_the_report_writes_it_when_started_again(tmp_path: Path) -> None:
    """Every check ended, the report was claimed, and the process died before writing it: the
    next `run` of the batch writes it (no browser needed: nothing is left to check)."""
    settings = load_settings(data_dir=tmp_path / "data", concurrency=2)
    storage = open_storage(settings)
    curps = synthetic_curps(2, seed=91)
    batch_id, _ = prepare_batch(settings, storage, write_sheet(tmp_path / "h.xlsx", curps),
                                ["issste"])
    for check_id, _portal in storage.pending_check_ids(batch_id):
        storage.record_result(check_id, status="not_affiliated", detail="Sin afiliación.")
    assert storage.claim_report(batch_id)  # ... and the writer dies here
    assert storage.get_batch(batch_id).state == "reporting"

    executor_for(settings, storage).run_to_end(batch_id)

    batch = storage.get_batch(batch_id)
    assert batch.state == "done" and batch.report_path
    rows = list(load_workbook(batch.report_path)["Detalle"].iter_rows(values_only=True))
    assert {r for row in rows for r in row if r in curps} == set(curps)


def test_a_killed_embedded_child_is_replaced_and_its_check_done_once(sandbox, tmp_path: Path) -> None:
    """kill -9 of one of `constancias run`'s child processes while it runs a check: the run
    starts another child, the check runs again, and the batch ends complete and right, one
    stored result per (CURP, portal)."""
    sandbox.set_faults("imss", latency_ms=300)
    curps = synthetic_curps(4, seed=47)
    sheet = write_sheet(tmp_path / "altas.xlsx", curps)
    env = _env(sandbox, tmp_path, CONSTANCIAS_CONCURRENCY="2")
    proc = subprocess.Popen([*CLI, "run", str(sheet), "--json"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)

    victim = child_running_a_check(proc.pid)
    assert victim is not None, "no child was running a check"
    victim.kill()
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    results = json.loads(out)["results"]
    assert sorted((r["curp"], r["portal"]) for r in results) == sorted(
        (c, p) for c in curps for p in ("imss", "issste"))
    for r in results:
        assert r["status"] == expected(r["curp"])[r["portal"]], r
    with sqlite3.connect(tmp_path / "data" / "constancias.db") as c:
        assert c.execute("select max(deliveries) from checks").fetchone()[0] >= 2
        assert c.execute("select count(*) from checks where status is null").fetchone()[0] == 0


def test_a_killed_fork_server_ends_its_children_and_the_run_completes(
    sandbox, tmp_path: Path
) -> None:
    """kill -9 of the fork server the embedded children come from: the run cannot watch those
    children any more, so it ends them (their checks must not run twice at once) and goes on
    with new children; the batch ends complete and right, one stored result per check."""
    sandbox.set_faults("imss", latency_ms=300)
    sandbox.set_faults("issste", latency_ms=300)
    curps = synthetic_curps(4, seed=53)
    sheet = write_sheet(tmp_path / "altas.xlsx", curps)
    env = _env(sandbox, tmp_path, CONSTANCIAS_CONCURRENCY="2")
    proc = subprocess.Popen([*CLI, "run", str(sheet), "--json"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                            text=True)

    assert child_running_a_check(proc.pid) is not None, "no child was running a check"
    server = fork_server_of(proc.pid)
    assert server is not None, "the embedded children do not come from a fork server"
    old_children = server.children()
    assert old_children
    server.kill()
    assert _all_end(old_children, within_s=15), "children of the killed fork server still run"

    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    assert "embedded_child_lost_from_view" in err
    results = json.loads(out)["results"]
    assert sorted((r["curp"], r["portal"]) for r in results) == sorted(
        (c, p) for c in curps for p in ("imss", "issste"))
    for r in results:
        assert r["status"] == expected(r["curp"])[r["portal"]], r


def _all_end(processes: list[psutil.Process], within_s: float) -> bool:
    """Whether every process ends (exits, or is a zombie not yet reaped) within the time."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        running = []
        for p in processes:
            try:
                if p.status() != psutil.STATUS_ZOMBIE:
                    running.append(p)
            except psutil.NoSuchProcess:
                pass
        if not running:
            return True
        time.sleep(0.2)
    return False
