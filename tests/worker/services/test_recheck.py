"""Re-checks: who is due, the re-check batch, people on and off the schedule, the Cambios sheet
and history after a real re-check on the sandbox, and change e-mails sent once."""

from __future__ import annotations

import email
import email.policy
import json
import mailbox
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from openpyxl import load_workbook
from sqlalchemy import update

from fixtures.mail import MailServer
from fixtures.population import SCENARIOS
from tests.people import synthetic_curps
from worker.core.settings import load_settings
from worker.core.statuses import Status
from worker.interfaces.cli import main
from worker.services.batches import open_storage
from worker.services.people import set_people_active
from worker.services.recheck import create_recheck_batch, select_for_recheck
from worker.storage.repository import Batch, Check, Storage, utcnow

CLI = [sys.executable, "-m", "worker.interfaces.cli"]


# --- helpers ------------------------------------------------------------------------------


def _seed(storage: Storage, tmp_path: Path, people: dict[str, dict[str, str]], *,
          hours_ago: float = 0.0, extra: dict[str, dict[str, str]] | None = None,
          kind: str = "upload", portals: list[str] | None = None) -> str:
    """A batch: ``people`` is CURP -> portal -> status, recorded ``hours_ago``; checks of
    ``portals`` missing from ``people`` stay pending."""
    curps = list(people)
    portals = portals or sorted({p for per in people.values() for p in per})
    rows = [{"row_number": i + 2, "value": c, "curp": c, "reason": None, "duplicate_of": None,
             "extra": (extra or {}).get(c, {})} for i, c in enumerate(curps)]
    columns = sorted({k for e in (extra or {}).values() for k in e})
    batch_id = storage.create_batch(key=f"k{len(storage.list_batches())}", source_name="altas.xlsx",
                                    portals=portals, columns=columns, out_dir=tmp_path, rows=rows,
                                    kind=kind)
    for check in storage.checks(batch_id):
        status = people[check.curp].get(check.portal)
        if status is not None:
            storage.record_result(check.id, status=status, detail="")
    when = utcnow() - timedelta(hours=hours_ago)
    with storage.session() as s:
        s.execute(update(Check).where(Check.batch_id == batch_id).values(finished_at=when))
        s.execute(update(Batch).where(Batch.id == batch_id).values(
            created_at=when, state="done" if all(
                len(per) == len(portals) for per in people.values()) else "running"))
    return batch_id


@pytest.fixture
def store() -> Storage:
    return open_storage(load_settings())


# --- selection ------------------------------------------------------------------------------


def test_selection_takes_stale_or_retryable_results_of_active_people_only(store: Storage,
                                                                          tmp_path: Path) -> None:
    """Old results and daily-limit/unavailable/captcha results are due; fresh final results,
    inactive people and people with a check in flight are not."""
    stale, fresh, limited, inactive, busy = synthetic_curps(5, seed=21)
    _seed(store, tmp_path, {stale: {"imss": "not_entitled", "issste": "not_affiliated"},
                            inactive: {"imss": "entitled", "issste": "affiliated"}},
          hours_ago=30)
    _seed(store, tmp_path, {fresh: {"imss": "entitled", "issste": "not_affiliated"},
                            limited: {"imss": "daily_limit", "issste": "not_affiliated"}},
          hours_ago=1)
    _seed(store, tmp_path, {busy: {"imss": "not_entitled", "issste": "not_affiliated"}},
          hours_ago=30)
    _seed(store, tmp_path, {busy: {"imss": "not_entitled"}}, hours_ago=0,
          portals=["imss", "issste"])  # its ISSSTE check is still running
    set_people_active(store, [inactive], False)
    settings = load_settings()

    assert select_for_recheck(store, settings, 20) == [stale, limited]
    assert set(select_for_recheck(store, settings, 0)) == {stale, fresh, limited}


def test_recheck_batch_carries_latest_other_columns_with_sequential_rows(store: Storage,
                                                                         tmp_path: Path) -> None:
    """The re-check batch lists each person once, numbered 1..n, with the name and employee
    number of their latest input row, on the portals they were checked on."""
    a, b = synthetic_curps(2, seed=22)
    _seed(store, tmp_path, {a: {"imss": "entitled"}, b: {"imss": "not_entitled"}}, hours_ago=40,
          extra={a: {"Nombre": "Ana Viejo", "No. empleado": "E1"}, b: {"Nombre": "Beto"}})
    _seed(store, tmp_path, {a: {"imss": "entitled"}}, hours_ago=30,
          extra={a: {"Nombre": "Ana Nuevo", "No. empleado": "E9"}})

    batch_id = create_recheck_batch(load_settings(), store, [b, a])
    assert batch_id is not None
    batch = store.get_batch(batch_id)
    assert batch.kind == "recheck" and batch.portals == ["imss"]
    assert set(batch.columns) == {"Nombre", "No. empleado"}
    rows = store.rows(batch_id)
    assert [(r.row_number, r.curp, r.extra) for r in rows] == [
        (1, b, {"Nombre": "Beto"}), (2, a, {"Nombre": "Ana Nuevo", "No. empleado": "E9"})]
    assert {(c.curp, c.portal, c.status) for c in store.checks(batch_id)} == {
        (a, "imss", None), (b, "imss", None)}
    assert create_recheck_batch(load_settings(), store, []) is None


# --- people ---------------------------------------------------------------------------------


def test_people_deactivate_and_activate_take_people_off_and_back_on_the_recheck(
        store: Storage, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`people deactivate` keeps a person out of `recheck`; `people activate` puts them back;
    `people list --json` shows the flag and the latest result per portal."""
    (curp,) = synthetic_curps(1, seed=23)
    _seed(store, tmp_path, {curp: {"imss": "not_entitled", "issste": "affiliated"}}, hours_ago=30)

    assert main(["people", "deactivate", curp.lower(), "XAXX010101HNEXXX02", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "action": "deactivate", "changed": 1, "unknown": ["XAXX010101HNEXXX02"]}
    assert main(["recheck", "--older-than", "0", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["batch_id"] is None and out["total"] == 0 and out["results"] == []

    assert main(["people", "list", "--json"]) == 0
    (person,) = json.loads(capsys.readouterr().out)
    assert person["curp"] == curp and person["active"] is False
    assert {p: r["status"] for p, r in person["latest"].items()} == {
        "imss": "not_entitled", "issste": "affiliated"}

    assert main(["people", "activate", curp]) == 0
    assert "Activadas: 1" in capsys.readouterr().out
    assert select_for_recheck(store, load_settings(), 0) == [curp]
    assert main(["people", "deactivate"]) == 2  # no CURP given: one Spanish line, exit 2
    assert "Indique al menos una CURP" in capsys.readouterr().err


# --- notifications (no browser) -----------------------------------------------------------


def _messages(maildir: Path) -> list[email.message.Message]:
    box = mailbox.Maildir(maildir, factory=None, create=False)
    return [email.message_from_bytes(box.get_bytes(k), policy=email.policy.default)
            for k in box.keys()]


def test_each_change_is_emailed_once_even_when_the_report_is_rebuilt(
        store: Storage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A re-check with two changes sends two e-mails to HR; rebuilding the report and
    notifying again sends nothing more, and the sent changes are recorded."""
    from worker.engine.notify import notify_batch
    from worker.storage.repository import Notification

    a, b, c = synthetic_curps(3, seed=24)
    _seed(store, tmp_path, {a: {"imss": "not_entitled"}, b: {"imss": "daily_limit"},
                            c: {"imss": "entitled"}}, hours_ago=30,
          extra={a: {"Nombre": "Ana"}, b: {"Nombre": "Beto"}, c: {"Nombre": "Caro"}})
    with MailServer(tmp_path / "rh-mail") as smtp:
        monkeypatch.setenv("CONSTANCIAS_SMTP_URL", f"smtp://127.0.0.1:{smtp.port}?from=constancias@empresa.example")
        monkeypatch.setenv("CONSTANCIAS_NOTIFY_TO", "rh@empresa.example, jefa@empresa.example")
        settings = load_settings()
        recheck = _seed(store, tmp_path / "r", {a: {"imss": "entitled"},
                                                b: {"imss": "not_entitled"},
                                                c: {"imss": "entitled"}},
                        kind="recheck", extra={a: {"Nombre": "Ana"}})
        assert notify_batch(settings, store, recheck) == 2
        assert main(["report", recheck]) == 0  # HR rebuilds the report
        assert notify_batch(settings, store, recheck) == 0
        messages = _messages(smtp.maildir)
    assert len(messages) == 2
    subjects = sorted(m["Subject"] for m in messages)
    assert any(a in s and Status.ENTITLED.label in s for s in subjects)
    assert any(b in s and Status.DAILY_LIMIT.label in s for s in subjects)
    assert all(m["To"] == "rh@empresa.example, jefa@empresa.example" for m in messages)
    ana = next(m for m in messages if a in m["Subject"])
    assert f"Persona: Ana ({a})" in ana.get_content()  # named from the input row
    with store.session() as s:
        sent = {(n.curp, n.before, n.after) for n in s.query(Notification) if n.sent_at}
    assert sent == {(a, "not_entitled", "entitled"), (b, "daily_limit", "not_entitled")}


# --- the real thing: sandbox, admin API, `constancias recheck` --------------------------------


@pytest.mark.browser
def test_recheck_on_sandbox_lists_changes_keeps_history_and_refreshes_constancias(
        sandbox, tmp_path: Path) -> None:
    """Upload two people, change their outcomes in the sandbox (not_entitled → entitled and
    not_affiliated → affiliated for one, a daily limit that clears for the other), run
    `recheck --older-than 0`: the Cambios sheet lists exactly those three changes, history
    holds both checks, the IMSS constancia is a new PDF, and HR got one e-mail per change."""
    from tests.people import write_sheet
    from worker.engine.executor import executor_for
    from worker.interfaces.commands import sandbox_settings
    from worker.services.batches import batch_status, prepare_batch

    changes = SCENARIOS["imss_not_entitled"]  # ISSSTE: not_affiliated
    limit_clears = SCENARIOS["imss_daily_limit"]  # ISSSTE: not_affiliated, stays so
    curps = [changes, limit_clears]
    settings = sandbox_settings(load_settings(concurrency=3), sandbox)
    storage = open_storage(settings)
    sheet = write_sheet(tmp_path / "altas.xlsx", curps)
    first, _ = prepare_batch(settings, storage, sheet, ["imss", "issste"])
    executor_for(settings, storage).run_to_end(first)
    before = {(r["curp"], r["portal"]): r["status"]
              for r in batch_status(storage, first)["results"]}
    assert before == {(changes, "imss"): "not_entitled", (changes, "issste"): "not_affiliated",
                      (limit_clears, "imss"): "daily_limit",
                      (limit_clears, "issste"): "not_affiliated"}

    sandbox.set_person(changes, imss="entitled", issste="affiliated")
    sandbox.set_person(limit_clears, imss="not_entitled")

    with MailServer(tmp_path / "rh-mail") as smtp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONSTANCIAS_")}
        env.update({
            "CONSTANCIAS_DATA_DIR": str(settings.data_dir),
            "CONSTANCIAS_IMSS_URL": sandbox.imss_url,
            "CONSTANCIAS_ISSSTE_URL": sandbox.issste_url,
            "CONSTANCIAS_MAILBOX_URL": sandbox.mailbox_url,
            "CONSTANCIAS_CONCURRENCY": "3",
            "CONSTANCIAS_LOG_FORMAT": "json",
            "CONSTANCIAS_SMTP_URL": f"smtp://127.0.0.1:{smtp.port}",
            "CONSTANCIAS_NOTIFY_TO": "rh@empresa.example",
        })
        proc = subprocess.run([*CLI, "recheck", "--older-than", "0", "--json"], env=env,
                              cwd=tmp_path, capture_output=True, text=True, timeout=240)
        assert proc.returncode == 0, proc.stderr[-3000:]
        status = json.loads(proc.stdout)
        # The report rebuilt by HR does not send the e-mails again.
        again = subprocess.run([*CLI, "report", status["batch_id"]], env=env, cwd=tmp_path,
                               capture_output=True, text=True, timeout=60)
        assert again.returncode == 0, again.stderr[-2000:]
        messages = _messages(smtp.maildir)

    assert status["state"] == "done" and status["kind"] == "recheck"
    assert status["total"] == 4 and status["done"] == 4
    after = {(r["curp"], r["portal"]): r for r in status["results"]}
    assert {k: r["status"] for k, r in after.items()} == {
        (changes, "imss"): "entitled", (changes, "issste"): "affiliated",
        (limit_clears, "imss"): "not_entitled", (limit_clears, "issste"): "not_affiliated"}
    assert [r["row"] for r in status["results"]] == [1, 1, 2, 2]

    wb = load_workbook(status["report"])
    cambios = [[c.value for c in row] for row in wb["Cambios"].iter_rows(min_row=2)]
    assert sorted((r[0], r[1], r[2], r[3], r[4], r[5]) for r in cambios) == sorted([
        (changes, 1, "Persona 1", "IMSS", Status.NOT_ENTITLED.label, Status.ENTITLED.label),
        (changes, 1, "Persona 1", "ISSSTE", Status.NOT_AFFILIATED.label,
         Status.AFFILIATED.label),
        (limit_clears, 2, "Persona 2", "IMSS", Status.DAILY_LIMIT.label,
         Status.NOT_ENTITLED.label),
    ])

    for curp in curps:
        for portal in ("imss", "issste"):
            history = storage.history(curp, portal)
            assert [h.batch_id for h in history] == [first, status["batch_id"]]
    old_pdf, new_pdf = (h.pdf_path for h in storage.history(changes, "imss"))
    assert old_pdf != new_pdf and Path(old_pdf).is_file() and Path(new_pdf).is_file()
    assert after[(changes, "imss")]["pdf"] == new_pdf

    assert len(messages) == 3
    assert sorted(m["Subject"].split(":")[0] for m in messages) == [
        "Cambio en IMSS", "Cambio en IMSS", "Cambio en ISSSTE"]


def test_nightly_run_first_purges_old_personal_data_including_sent_notifications(
        store: Storage, tmp_path: Path) -> None:
    """With RETENTION_DAYS set, the scheduled re-check first purges older batches: their
    people are forgotten (not re-checked) and the record of sent e-mails keeps no CURP."""
    from worker.engine.notify import forget_purged
    from worker.services.recheck import start_recheck
    from worker.storage.repository import Notification

    (old,) = synthetic_curps(1, seed=25)
    batch_id = _seed(store, tmp_path / "lote", {old: {"imss": "entitled"}},
                     hours_ago=40 * 24, kind="recheck")
    with store.session() as s:
        s.add(Notification(batch_id=batch_id, curp=old, portal="imss", before="not_entitled",
                           after="entitled", recipients="rh@empresa.example", sent_at=utcnow()))

    assert start_recheck(load_settings(retention_days=30), store) is None
    with store.session() as s:
        (note,) = s.query(Notification).all()
    assert note.curp.startswith("#") and note.recipients == "" and note.after == "entitled"
    assert store.people() == []
    assert forget_purged(store) == 0  # already done: nothing left to change
