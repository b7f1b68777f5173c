"""Handlers of the commands of SPEC §4 (``cli.HANDLERS`` maps each command to one here, except
``validate`` and ``web``, which have their own modules)."""

from __future__ import annotations

import json
import os
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import fixtures
from flows import registry
from worker.core.errors import ConfigError, UserError
from worker.core.logs import configure_logging
from worker.core.settings import Settings, load_settings
from worker.core.statuses import Status
from worker.engine.executor import executor_for
from worker.intake.sheet import read_sheet
from worker.interfaces.terminal import CaptchaPrompt
from worker.report.data import build_report
from worker.services.batches import batch_status, open_storage, prepare_batch
from worker.services.people import people_overview, set_people_active
from worker.services.purge import purge
from worker.services.recheck import start_recheck
from worker.services.schedule import run_beat

__all__ = ["cmd_run", "cmd_submit", "cmd_status", "cmd_report", "cmd_worker", "cmd_demo",
           "cmd_beat", "cmd_recheck", "cmd_people", "cmd_purge", "sandbox_settings",
           "print_summary"]


def _settings(quiet_on_terminal: bool = False) -> Settings:
    settings = load_settings()
    level = settings.log_level
    # On a terminal, people watch the progress line; log lines would scroll it away.
    if quiet_on_terminal and sys.stderr.isatty() and "CONSTANCIAS_LOG_LEVEL" not in os.environ:
        level = "warning"
    configure_logging(settings.log_format, level)
    return settings


def sandbox_settings(settings: Settings, sandbox: Any) -> Settings:
    """The same settings pointed at a running sandbox."""
    return settings.model_copy(update={
        "imss_url": sandbox.imss_url, "issste_url": sandbox.issste_url,
        "mailbox_url": sandbox.mailbox_url,
    })


class _TerminalProgress:
    """Rows done / total per portal, redrawn in place on a terminal (stderr)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._last = ""

    def __call__(self, progress: Any) -> None:
        if not self.enabled:
            return
        parts = [f"{portal.upper()} {c['done']}/{c['total']}"
                 for portal, c in sorted(progress.per_portal.items())]
        if getattr(progress, "retrying", 0):
            parts.append(f"reintentos en espera: {progress.retrying}")
        line = "Avance: " + "  ·  ".join(parts)
        if line != self._last:
            sys.stderr.write("\r" + line.ljust(len(self._last)))
            sys.stderr.flush()
            self._last = line

    def close(self) -> None:
        if self.enabled and self._last:
            sys.stderr.write("\n")


def print_summary(status: dict[str, Any], out: Any = sys.stdout) -> None:
    print(f"Lote {status['batch_id']}: {status['done']}/{status['total']} resultados "
          "(filas × portales).", file=out)
    for code, n in sorted(status["by_status"].items(), key=lambda kv: -kv[1]):
        label = Status(code).label if code in Status._value2member_map_ else code
        print(f"  {label}: {n}", file=out)
    if status.get("report"):
        print(f"Reporte: {status['report']}", file=out)


def cmd_run(args: Any) -> int:
    settings = _settings(quiet_on_terminal=True)
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
        progress = _TerminalProgress(sys.stderr.isatty() and not args.json)
        prompt = None
        if settings.captcha_solver == "manual" and sys.stdin.isatty():
            prompt = CaptchaPrompt(settings.data_dir)
            prompt.start()
        try:
            executor_for(settings, storage).run_to_end(batch_id, progress=progress)
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
    print("Abra salida-demo/reporte.xlsx para ver el reporte consolidado.", file=sys.stderr)
    return code


def _require_broker(settings: Settings) -> None:
    if settings.embedded:
        raise ConfigError(
            "CONSTANCIAS_BROKER_URL no está configurado: este comando necesita Redis "
            "(p. ej. redis://localhost:6379/0). Sin broker use «constancias run»."
        )


def cmd_submit(args: Any) -> int:
    settings = _settings()
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
    settings = _settings()
    status = batch_status(open_storage(settings), args.batch_id)
    if status is None:
        raise UserError(f"No existe el lote {args.batch_id!r}.")
    if args.json:
        print(json.dumps(status, ensure_ascii=False, default=str))
    else:
        state = {"queued": "en cola", "running": "en proceso", "done": "terminado"}
        print(f"Estado: {state.get(status['state'], status['state'])}")
        print_summary(status)
    return 0


def cmd_report(args: Any) -> int:
    settings = _settings()
    storage = open_storage(settings)
    if storage.get_batch(args.batch_id) is None:
        raise UserError(f"No existe el lote {args.batch_id!r}.")
    path = build_report(settings, storage, args.batch_id,
                        Path(args.out).resolve() if args.out else None)
    print(path)
    return 0


def cmd_worker(args: Any) -> int:
    settings = _settings()
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
    return run_beat(_settings())


def _empty_status() -> dict[str, Any]:
    """``status --json`` shape for "nobody was due": nothing ran, nothing pending."""
    return {"batch_id": None, "state": "done", "total": 0, "done": 0, "by_status": {},
            "report": None, "results": [], "kind": "recheck"}


def cmd_recheck(args: Any) -> int:
    """``constancias recheck [--older-than HOURS] [--json]``: re-check now and wait."""
    settings = _settings()
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
    settings = _settings()
    storage = open_storage(settings)
    if args.action == "list":
        people = people_overview(storage, args.curps or None)
        if args.json:
            print(json.dumps(people, ensure_ascii=False))
            return 0
        if not people:
            print("No hay personas registradas.")
            return 0
        for p in people:
            state = "activa" if p["active"] else "inactiva"
            latest = ", ".join(f"{portal.upper()}: {r['status']}"
                               for portal, r in p["latest"].items()) or "sin resultados"
            print(f"{p['curp']}  {state:<8}  {latest}")
        return 0
    if not args.curps:
        raise UserError(f"Indique al menos una CURP para «people {args.action}».")
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
    settings = _settings()
    counts = purge(settings, open_storage(settings), args.older_than)
    print(json.dumps(counts) if getattr(args, "json", False) else
          f"Depurado: {counts['batches']} lote(s), {counts['files']} archivo(s), "
          f"{counts['people']} persona(s).", file=sys.stdout)
    return 0
