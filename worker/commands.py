"""Handlers of ``run``, ``submit``, ``status``, ``report``, ``worker`` and ``demo``."""

from __future__ import annotations

import json
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from worker.errors import ConfigError, UserError
from worker.logs import configure_logging
from worker.settings import Settings, load_settings
from worker.statuses import Status

__all__ = ["cmd_run", "cmd_submit", "cmd_status", "cmd_report", "cmd_worker", "cmd_demo",
           "execute_batch", "sandbox_settings", "print_summary"]


def _console_level(quiet_on_terminal: bool) -> str | None:
    """``warning`` for the screen of a command whose progress line people watch on a terminal
    (log lines would scroll it away), unless ``CONSTANCIAS_LOG_LEVEL`` asks for more."""
    import os

    if quiet_on_terminal and sys.stderr.isatty() and "CONSTANCIAS_LOG_LEVEL" not in os.environ:
        return "warning"
    return None


def _settings(quiet_on_terminal: bool = False) -> Settings:
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
    clears the line first, see ``worker.logs``) may have taken its place meanwhile."""

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
        sys.stderr.write("\r\x1b[K" + line)
        sys.stderr.flush()
        self._last = line

    def close(self) -> None:
        if self.enabled and self._last:
            sys.stderr.write("\n")


def execute_batch(settings: Settings, storage: Any, batch_id: str, *, progress: Any = None,
                  console_level: str | None = None) -> None:
    """Run a stored batch to completion: embedded pool, or the Celery workers when a broker
    is configured (then wait for them, polling storage). ``console_level``: what the embedded
    worker processes show on the screen (see ``_console_level``)."""
    if settings.embedded:
        from worker.embedded import run_embedded

        run_embedded(settings, storage, batch_id, on_progress=progress,
                     console_level=console_level)
        return
    from worker.dispatch import enqueue_batch

    enqueue_batch(settings, storage, batch_id)
    from worker.embedded import Progress

    while True:
        batch = storage.get_batch(batch_id)
        if progress:
            progress(Progress(storage.progress(batch_id)))
        if batch is not None and batch.state == "done":
            return
        time.sleep(0.5)


def print_summary(status: dict[str, Any], out: Any = sys.stdout) -> None:
    print(f"Lote {status['batch_id']}: {status['done']}/{status['total']} resultados "
          "(filas × portales).", file=out)
    for code, n in sorted(status["by_status"].items(), key=lambda kv: -kv[1]):
        label = Status(code).label if code in Status._value2member_map_ else code
        print(f"  {label}: {n}", file=out)
    if status.get("report"):
        print(f"Reporte: {status['report']}", file=out)


def cmd_run(args: Any) -> int:
    from worker.intake import read_sheet
    from worker.service import batch_status, open_storage, prepare_batch

    settings = _settings(quiet_on_terminal=True)
    with ExitStack() as stack:
        intake = read_sheet(args.file, settings)
        if args.sandbox:
            from fixtures.sandbox import start_sandbox

            sandbox = stack.enter_context(start_sandbox(maildir=settings.data_dir / "sandbox-mail"))
            settings = sandbox_settings(settings, sandbox)
        storage = open_storage(settings)
        batch_id, resumed = prepare_batch(settings, storage, args.file, args.portals,
                                          out_dir=args.out, intake=intake)
        if not args.json:
            verb = "Reanudando" if resumed else "Procesando"
            print(f"{verb} lote {batch_id}: {len(intake.valid_curps)} CURP válidas × "
                  f"{len(args.portals)} portal(es).", file=sys.stderr)
        progress = _TerminalProgress(sys.stderr.isatty() and not args.json)
        prompt = None
        if settings.captcha_solver == "manual" and sys.stdin.isatty():
            from worker.terminal import CaptchaPrompt

            prompt = CaptchaPrompt(settings.data_dir)
            prompt.start()
        try:
            execute_batch(settings, storage, batch_id, progress=progress,
                          console_level=_console_level(quiet_on_terminal=True))
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
    import fixtures

    sample = Path(fixtures.__file__).parent / "sample" / "onboarding.xlsx"
    ns = type("Args", (), {"file": str(sample), "out": "salida-demo", "portals": ["imss", "issste"],
                           "sandbox": True, "json": False})()
    print(f"Demostración: {sample.name} contra el sandbox local (sin internet).", file=sys.stderr)
    code = cmd_run(ns)
    print("Abra salida-demo/reporte.xlsx para ver el reporte consolidado.", file=sys.stderr)
    return code


def _require_broker(settings: Settings) -> None:
    if settings.embedded:
        raise ConfigError(
            "Este comando reparte el trabajo entre workers y necesita Redis: indique su "
            "dirección, p. ej. redis://localhost:6379/0 (CONSTANCIAS_BROKER_URL). Sin Redis, "
            "use «constancias procesar» (run)."
        )


def cmd_submit(args: Any) -> int:
    from worker.dispatch import enqueue_batch
    from worker.service import open_storage, prepare_batch

    settings = _settings()
    _require_broker(settings)
    storage = open_storage(settings)
    batch_id, resumed = prepare_batch(settings, storage, args.file, args.portals,
                                      out_dir=getattr(args, "out", None))
    n = enqueue_batch(settings, storage, batch_id)
    print(f"{'Reanudado' if resumed else 'Encolado'}: {n} consultas.", file=sys.stderr)
    print(batch_id)
    return 0


def cmd_status(args: Any) -> int:
    from worker.service import batch_status, open_storage

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
    from worker.reporting import build_report
    from worker.service import open_storage

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
    from worker.service import open_storage

    open_storage(settings)  # migrate once, before any task runs
    from worker.celery_app import app

    argv = ["worker", "--loglevel", settings.log_level.upper(), "-E",
            "--concurrency", str(args.concurrency or settings.concurrency)]
    app.worker_main(argv)
    return 0
