"""``constancias`` command line (SPEC §4). The parser is the contract; handlers live in the
modules that own each concern and are imported only when their command runs.

Exit codes: 0 the job ran; 2 unusable input or configuration (one Spanish line on stderr);
1 an internal failure.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from importlib import import_module

from worker.errors import UserError

__all__ = ["main", "build_parser"]

#: command -> "module:function"; each handler takes (args) and returns an exit code.
HANDLERS: dict[str, str] = {
    "validate": "worker.validate:cmd_validate",
    "run": "worker.commands:cmd_run",
    "submit": "worker.commands:cmd_submit",
    "status": "worker.commands:cmd_status",
    "report": "worker.commands:cmd_report",
    "recheck": "worker.recheck:cmd_recheck",
    "worker": "worker.commands:cmd_worker",
    "beat": "worker.schedule:cmd_beat",
    "web": "worker.web:cmd_web",
    "sandbox": "fixtures.sandbox:cmd_sandbox",
    "demo": "worker.commands:cmd_demo",
    "people": "worker.recheck:cmd_people",
    "purge": "worker.purge:cmd_purge",
    "captcha": "worker.captcha_solve:cmd_captcha",
}


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one Spanish line with exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"constancias: argumentos inválidos: {message}\n")


def _portals(value: str) -> list[str]:
    names = [p.strip().lower() for p in value.split(",") if p.strip()]
    unknown = [p for p in names if p not in ("imss", "issste")]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"portal desconocido: {', '.join(unknown) or value!r} (use imss, issste o imss,issste)"
        )
    return list(dict.fromkeys(names))


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="constancias", description="Constancias IMSS e ISSSTE por lote de CURPs.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    s = sub.add_parser("validate", help="revisar una hoja sin consultar los portales")
    s.add_argument("file")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("run", help="procesar una hoja y escribir el reporte")
    s.add_argument("file")
    s.add_argument("--out", default=None, help="carpeta de salida (reporte y PDFs)")
    s.add_argument("--portals", type=_portals, default=["imss", "issste"])
    s.add_argument("--sandbox", action="store_true", help="usar los simuladores locales")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("submit", help="encolar una hoja en los workers (Redis)")
    s.add_argument("file")
    s.add_argument("--portals", type=_portals, default=["imss", "issste"])
    s.add_argument("--out", default=None)

    s = sub.add_parser("status", help="avance de un lote")
    s.add_argument("batch_id")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("report", help="regenerar el reporte de un lote")
    s.add_argument("batch_id")
    s.add_argument("--out", default=None)

    s = sub.add_parser("recheck", help="volver a consultar a las personas activas")
    s.add_argument("--older-than", type=float, default=None, dest="older_than")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("worker", help="un worker de Celery")
    s.add_argument("-c", "--concurrency", type=int, default=None)

    sub.add_parser("beat", help="la programación nocturna")

    s = sub.add_parser("web", help="la página web de RH")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)

    s = sub.add_parser("sandbox", help="simuladores de los portales y del correo")
    s.add_argument("--port", type=int, default=0)
    s.add_argument("--host", default="127.0.0.1",
                   help="dirección donde escucha (0.0.0.0 dentro de un contenedor)")
    s.add_argument("--public-host", default=None, dest="public_host",
                   help="nombre con que otros equipos lo alcanzan, para las URL que imprime")

    sub.add_parser("demo", help="la hoja de ejemplo contra el sandbox")

    s = sub.add_parser("people", help="activar o desactivar personas para la revisión nocturna")
    s.add_argument("action", choices=["list", "deactivate", "activate"])
    s.add_argument("curps", nargs="*")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("purge", help="borrar datos personales antiguos")
    s.add_argument("--older-than", type=float, required=True, dest="older_than",
                   help="días")

    s = sub.add_parser("captcha", help="el lector de captchas del IMSS")
    actions = s.add_subparsers(dest="captcha_command", required=True, parser_class=_Parser)
    c = actions.add_parser("solve", help="leer captchas guardados")
    c.add_argument("images", nargs="+", metavar="IMAGEN")
    c.add_argument("--json", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    # Sheets, PDFs and evidence are personal data: nothing we write is readable by others.
    os.umask(0o077)
    args = build_parser().parse_args(argv)
    module, func = HANDLERS[args.command].split(":")
    try:
        handler = getattr(import_module(module), func)
        code = handler(args)
    except UserError as err:
        print(f"constancias: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("constancias: interrumpido; lo ya hecho queda guardado.", file=sys.stderr)
        return 130
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
