"""Handlers of the commands of SPEC §4 (``cli.HANDLERS`` maps each command to one here, except
``validate`` and ``web``, which have their own modules)."""

from __future__ import annotations

import json
import os
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import structlog

import fixtures
from flows import registry
from worker.core.errors import ConfigError, UserError
from worker.core.logs import configure_logging
from worker.core.settings import Settings, load_settings
from worker.core.statuses import Status, label_of
from worker.engine.executor import executor_for
from worker.intake.read import read_sheet
from worker.interfaces.cli import PEOPLE_ACTIONS
from worker.interfaces.terminal import CaptchaPrompt
from worker.interfaces.validate import formula_warning
from worker.report.counts import count_people
from worker.report.data import build_report
from worker.services.batches import (
    batch_status,
    captchas_waiting,
    captchas_waiting_text,
    existing_storage,
    open_storage,
    prepare_batch,
)
from worker.services.doctor import record, render_table, run_doctor
from worker.services.people import people_overview, set_people_active
from worker.services.purge import purge
from worker.services.recheck import start_recheck
from worker.services.schedule import run_beat
from worker.storage.repository import Storage

__all__ = ["cmd_run", "cmd_submit", "cmd_status", "cmd_report", "cmd_worker", "cmd_demo",
           "cmd_beat", "cmd_recheck", "cmd_people", "cmd_purge", "sandbox_settings",
           "cmd_doctor", "command_settings", "print_summary", "data_dir_line"]


def _console_level(quiet_on_terminal: bool) -> str | None:
    """``warning`` for the screen of a command whose progress line people watch on a terminal
    (log lines would scroll it away), unless ``CONSTANCIAS_LOG_LEVEL`` asks for more."""
    if quiet_on_terminal and sys.stderr.isatty() and "CONSTANCIAS_LOG_LEVEL" not in os.environ:
        return "warning"
    return None


def command_settings(quiet_on_terminal: bool = False) -> Settings:
    settings = load_settings()
    configure_logging(settings.log_format, settings.log_level,
                      console_level=_console_level(quiet_on_terminal), log_file=settings.log_file)
    return settings


def sandbox_settings(settings: Settings, sandbox: Any) -> Settings:
    """The same settings pointed at a running sandbox."""
    return settings.model_copy(update={
        "imss_url": sandbox.imss_url, "issste_url": sandbox.issste_url,
        "mailbox_url": sandbox.mailbox_url,
    })


class _TerminalProgress:
    """Rows done / total per portal, redrawn in place on a terminal (stderr).

    Redrawn on every tick, changed or not: a log line (written by a worker process, which
    clears the line first, see ``worker.core.logs``) may have taken its place meanwhile."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._last = ""

    def __call__(self, progress: Any) -> None:
        if not self.enabled:
            return
        parts = [f"{portal.upper()} {c['done']}/{c['total']}"
                 + (f" ({c['waiting']} esperando correo)" if c.get("waiting") else "")
                 for portal, c in sorted(progress.per_portal.items())]
        if getattr(progress, "retrying", 0):
            parts.append(f"reintentos en espera: {progress.retrying}")
        line = "Avance: " + "  ·  ".join(parts)
        sys.stderr.write("\r\x1b[K" + line)
        sys.stderr.flush()
        self._last = line

    def close(self) -> None:
        if self.enabled and self._last:
            sys.stderr.write("\n")


def print_summary(status: dict[str, Any], out: Any = sys.stdout) -> None:
    """People per portal and status (worker.report.counts), as the report's Resumen counts them."""
    results = status["results"]
    portals = list(dict.fromkeys(r["portal"] for r in results))
    by_row: dict[int, str | None] = {}
    found: dict[tuple[str, str], str | None] = {}
    for r in results:
        invalid = r["status"] == Status.INVALID_CURP.value
        by_row.setdefault(r["row"], None if invalid else r["curp"])
        if not invalid:
            found.setdefault((r["curp"], r["portal"]), r["status"])
    counts = count_people(by_row.values(), portals, lambda c, p: found.get((c, p)))
    done = {p: sum(n for code, n in counts.per_portal[p].items() if code) for p in portals}
    print(f"Lote {status['batch_id']}: {counts.people} persona(s); con resultado: "
          + ", ".join(f"{p.upper()} {done[p]}/{counts.people}" for p in portals) + ".",
          file=out)
    for portal in portals:
        print(f"  {portal.upper()}:", file=out)
        for code, n in sorted(counts.per_portal[portal].items(), key=lambda kv: -kv[1]):
            if code is None:
                label = "Sin resultado aún"
            else:
                label = Status(code).label if code in Status._value2member_map_ else code
            print(f"    {label}: {n}", file=out)
    if counts.invalid_rows:
        print(f"  CURP inválidas (no consultadas): {counts.invalid_rows}", file=out)
    if counts.duplicate_rows:
        print(f"  Filas repetidas (misma CURP): {counts.duplicate_rows}",
              file=out)
    if status.get("report"):
        print(f"Reporte: {status['report']}", file=out)


def cmd_run(args: Any) -> int:
    settings = command_settings(quiet_on_terminal=True)
    if args.sandbox and not settings.embedded:
        # The workers read their own settings: they would query the portals CONSTANCIAS_*_URL
        # name, not the sandbox this command starts.
        raise ConfigError(
            "«run --sandbox» no funciona con CONSTANCIAS_BROKER_URL configurado: los workers no "
            "verían el sandbox de este comando. Quite la variable o use «constancias sandbox» "
            "y apunte los workers a él."
        )
    with ExitStack() as stack:
        intake = read_sheet(args.file, settings)
        warning = formula_warning(intake)
        if warning:
            print(warning, file=sys.stderr)
        if args.sandbox:
            # Imported here: the simulators (Starlette, uvicorn, the PDF and captcha drawing)
            # are for this option only.
            from fixtures.sandbox import start_sandbox

            sandbox = stack.enter_context(start_sandbox(maildir=settings.data_dir / "sandbox-mail"))
            settings = sandbox_settings(settings, sandbox)
        storage = open_storage(settings)
        portals = args.portals or registry.names()
        batch_id, resumed = prepare_batch(settings, storage, args.file, portals,
                                          out_dir=args.out, intake=intake)
        if not args.json:
            verb = "Reanudando" if resumed else "Procesando"
            print(f"{verb} lote {batch_id}: {len(intake.valid_curps)} CURP válidas × "
                  f"{len(portals)} portal(es).", file=sys.stderr)
            print(data_dir_line(settings), file=sys.stderr)
        progress = _TerminalProgress(sys.stderr.isatty() and not args.json)
        prompt = None
        if settings.captcha_solver == "manual" and sys.stdin.isatty():
            prompt = CaptchaPrompt(settings.data_dir)
            prompt.start()
        try:
            executor = executor_for(settings, storage,
                                    console_level=_console_level(quiet_on_terminal=True))
            executor.run_to_end(batch_id, progress=progress)
        finally:
            progress.close()
            if prompt is not None:
                prompt.stop()
        status = batch_status(storage, batch_id)
    assert status is not None
    if args.json:
        print(json.dumps({"batch_id": batch_id, "report": status["report"],
                          "results": status["results"]}, ensure_ascii=False))
    else:
        print_summary(status)
    return 0


def cmd_demo(args: Any) -> int:
    sample = Path(fixtures.__file__).parent / "sample" / "onboarding.xlsx"
    ns = type("Args", (), {"file": str(sample), "out": "salida-demo", "portals": None,
                           "sandbox": True, "json": False})()
    print(f"Demostración: {sample.name} contra el sandbox local (sin internet).", file=sys.stderr)
    code = cmd_run(ns)
    # A second demo writes into a subfolder of its own (salida-demo already holds the first).
    print("Abra el archivo de la línea «Reporte:» para ver el reporte consolidado.",
          file=sys.stderr)
    return code


def _require_broker(settings: Settings) -> None:
    if settings.embedded:
        raise ConfigError(
            "Este comando reparte el trabajo entre workers y necesita Redis: indique su "
            "dirección, p. ej. redis://localhost:6379/0 (CONSTANCIAS_BROKER_URL). Sin Redis, "
            "use «constancias procesar» (run)."
        )


def cmd_submit(args: Any) -> int:
    settings = command_settings()
    _require_broker(settings)
    storage = open_storage(settings)
    batch_id, resumed = prepare_batch(settings, storage, args.file,
                                      args.portals or registry.names(),
                                      out_dir=getattr(args, "out", None))
    n = executor_for(settings, storage).submit(batch_id)
    print(f"{'Reanudado' if resumed else 'Encolado'}: {n} consultas.", file=sys.stderr)
    print(batch_id)
    return 0


def cmd_status(args: Any) -> int:
    settings = command_settings()
    storage = existing_storage(settings)
    status = batch_status(storage, args.batch_id) if storage is not None else None
    if status is None:
        raise UserError(_no_batch(settings, args.batch_id))
    # Checks waiting for a person to type captchas would otherwise look stuck.
    waiting = captchas_waiting(settings) if status["state"] != "done" else 0
    if args.json:
        print(json.dumps({**status, "captchas_waiting": waiting}, ensure_ascii=False,
                         default=str))
    else:
        state = {"queued": "en cola", "running": "en proceso", "done": "terminado"}
        print(f"Estado: {state.get(status['state'], status['state'])}")
        print(data_dir_line(settings))
        if waiting:
            print(f"{captchas_waiting_text(waiting)} → Captchas (la página /captchas de "
                  "«constancias web»)")
        print_summary(status)
    return 0


def _no_batch(settings: Settings, batch_id: str) -> str:
    """Say where we looked: a batch is searched for in the data folder, not the current one."""
    return (f"No existe el lote {batch_id!r} en la carpeta de datos {settings.data_dir} "
            "(CONSTANCIAS_DATA_DIR).")


def data_dir_line(settings: Settings) -> str:
    """Where this command keeps (or reads) its database, PDFs and reports."""
    return f"Carpeta de datos: {settings.data_dir}"


def cmd_report(args: Any) -> int:
    settings = command_settings()
    storage = existing_storage(settings)
    if storage is None or storage.get_batch(args.batch_id) is None:
        raise UserError(_no_batch(settings, args.batch_id))
    path = build_report(settings, storage, args.batch_id,
                        Path(args.out).resolve() if args.out else None)
    print(path)
    return 0


def cmd_worker(args: Any) -> int:
    settings = command_settings()
    _require_broker(settings)
    open_storage(settings)  # migrate once, before any task runs
    # Imported here: loading the Celery app starts Celery's machinery, for this command only.
    from worker.engine.celery_app import app

    argv = ["worker", "--loglevel", settings.log_level.upper(), "-E",
            "--concurrency", str(args.concurrency or settings.concurrency)]
    app.worker_main(argv)
    return 0


def cmd_beat(args: Any) -> int:
    """``constancias beat``: RedBeat with a broker, the in-process loop without one."""
    return run_beat(command_settings())


def _empty_status() -> dict[str, Any]:
    """``status --json`` shape for "nobody was due": nothing ran, nothing pending."""
    return {"batch_id": None, "state": "done", "total": 0, "done": 0, "by_status": {},
            "report": None, "results": [], "kind": "recheck"}


def cmd_recheck(args: Any) -> int:
    """``constancias recheck [--older-than HOURS] [--json]``: re-check now and wait."""
    settings = command_settings()
    storage = open_storage(settings)
    hours = settings.recheck_older_than_h if args.older_than is None else args.older_than
    if hours < 0:
        raise UserError("--older-than debe ser un número de horas mayor o igual a cero.")

    def announce(batch_id: str, people: int) -> None:
        if not args.json:
            print(f"Revisión {batch_id}: {people} persona(s) activas.", file=sys.stderr)

    progress = _TerminalProgress(sys.stderr.isatty() and not args.json)
    try:
        batch_id = start_recheck(settings, storage, hours, wait=True, progress=progress,
                                 nightly=False, on_batch=announce)
    finally:
        progress.close()
    if batch_id is None:
        if args.json:
            print(json.dumps(_empty_status(), ensure_ascii=False))
        else:
            print(f"Nadie que revisar: ninguna persona activa tiene resultados de más de "
                  f"{hours:g} h ni pendientes de reintento.")
        return 0
    status = batch_status(storage, batch_id)
    assert status is not None
    if args.json:
        print(json.dumps(status, ensure_ascii=False, default=str))
    else:
        print_summary(status)
    return 0


def cmd_people(args: Any) -> int:
    """``constancias people {list,deactivate,activate} [CURPS...] [--json]``."""
    settings = command_settings()
    if args.action == "list":
        # Listing only reads: no database yet means nobody, not a new empty one.
        storage = existing_storage(settings)
        people = people_overview(storage, args.curps or None) if storage is not None else []
        if args.json:
            print(json.dumps(people, ensure_ascii=False))
            return 0
        if not people:
            print("No hay personas registradas.")
            return 0
        for p in people:
            state = "activa" if p["active"] else "inactiva"
            latest = ", ".join(f"{registry.title(portal)}: {label_of(r['status'])}"
                               for portal, r in p["latest"].items()) or "sin resultados"
            print(f"{p['curp']}  {state:<8}  {latest}")
        return 0
    if not args.curps:
        raise UserError("Indique al menos una CURP, p. ej. «constancias personas "
                        f"{PEOPLE_ACTIONS[args.action][0]} CURP1 CURP2».")
    storage = open_storage(settings)
    active = args.action == "activate"
    changed, unknown = set_people_active(storage, args.curps, active)
    if args.json:
        print(json.dumps({"action": args.action, "changed": changed, "unknown": unknown},
                         ensure_ascii=False))
        return 0
    verb = "Activadas" if active else "Desactivadas"
    print(f"{verb}: {changed} persona(s).")
    for curp in unknown:
        print(f"  {curp}: nunca se ha consultado; no se cambió.", file=sys.stderr)
    return 0


def cmd_purge(args: Any) -> int:
    """``constancias purge --older-than DAYS``."""
    settings = command_settings()
    counts = purge(settings, open_storage(settings), args.older_than)
    print(json.dumps(counts) if getattr(args, "json", False) else
          f"Depurado: {counts['batches']} lote(s), {counts['files']} archivo(s), "
          f"{counts['people']} persona(s).", file=sys.stdout)
    return 0


def cmd_doctor(args: Any) -> int:
    """``constancias doctor [--json] [--portals imss,issste]``."""
    # On a terminal the table is the output: log lines (to stderr) only from warnings up.
    settings = command_settings(quiet_on_terminal=True)
    report = run_doctor(settings, getattr(args, "portals", None))
    try:
        # Not open_storage: doctor reports a database left unmigrated, it does not migrate it.
        record(Storage(settings.effective_database_url), report, "cli")
    except Exception as exc:  # noqa: BLE001 - not being able to keep it changes no check
        structlog.get_logger("constancias.doctor").warning("doctor_record_failed",
                                                           error=type(exc).__name__)
    if getattr(args, "json", False):
        print(json.dumps(report.as_json(), ensure_ascii=False))
    else:
        print(render_table(report))
    sys.stdout.flush()
    return 0 if report.ok else 1
