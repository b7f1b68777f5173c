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
           "execute_batch", "sandbox_settings", "print_summary", "data_dir_line"]


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
    """People per portal and status (worker.counts), as the report's Resumen counts them."""
    from worker.counts import count_people

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
    from worker.intake import read_sheet
    from worker.service import batch_status, open_storage, prepare_batch
    from worker.validate import formula_warning

    settings = _settings(quiet_on_terminal=True)
    with ExitStack() as stack:
        intake = read_sheet(args.file, settings)
        warning = formula_warning(intake)
        if warning:
            print(warning, file=sys.stderr)
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
            print(data_dir_line(settings), file=sys.stderr)
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
    from worker.service import (
        batch_status,
        captchas_waiting,
        captchas_waiting_text,
        existing_storage,
    )

    settings = _settings()
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
    from worker.reporting import build_report
    from worker.service import existing_storage

    settings = _settings()
    storage = existing_storage(settings)
    if storage is None or storage.get_batch(args.batch_id) is None:
        raise UserError(_no_batch(settings, args.batch_id))
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
