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

from worker.core.errors import UserError
from worker.interfaces.cli_es import SpanishParser, canonical, integer, number

__all__ = ["main", "build_parser"]

#: command -> "module:function"; each handler takes (args) and returns an exit code.
HANDLERS: dict[str, str] = {
    "validate": "worker.interfaces.validate:cmd_validate",
    "run": "worker.interfaces.commands:cmd_run",
    "submit": "worker.interfaces.commands:cmd_submit",
    "status": "worker.interfaces.commands:cmd_status",
    "report": "worker.interfaces.commands:cmd_report",
    "recheck": "worker.interfaces.commands:cmd_recheck",
    "worker": "worker.interfaces.commands:cmd_worker",
    "beat": "worker.interfaces.commands:cmd_beat",
    "web": "worker.interfaces.web:cmd_web",
    "sandbox": "fixtures.sandbox:cmd_sandbox",
    "demo": "worker.interfaces.commands:cmd_demo",
    "people": "worker.interfaces.commands:cmd_people",
    "purge": "worker.interfaces.commands:cmd_purge",
    "captcha": "worker.interfaces.captcha_solve:cmd_captcha",
    "doctor": "worker.interfaces.commands:cmd_doctor",
    "users": "worker.interfaces.accounts_cli:cmd_users",
    "tokens": "worker.interfaces.accounts_cli:cmd_tokens",
}


#: English command (SPEC §4, kept) -> its Spanish names, accepted alike.
ALIASES: dict[str, tuple[str, ...]] = {
    "validate": ("validar",), "run": ("procesar",), "submit": ("encolar",),
    "status": ("estado",), "report": ("reporte",), "recheck": ("revisar",),
    "worker": ("trabajador",), "beat": ("programacion",), "web": (),
    "sandbox": ("simulador",), "demo": ("demostracion",), "people": ("personas",),
    "purge": ("purgar",), "captcha": (), "doctor": ("diagnostico",),
    "users": ("usuarios",), "tokens": (),
}
#: ``people`` actions, English (kept) -> Spanish.
PEOPLE_ACTIONS: dict[str, tuple[str, ...]] = {
    "list": ("listar",), "deactivate": ("desactivar",), "activate": ("activar",),
}
#: ``users`` and ``tokens`` actions, English (kept) -> Spanish.
USERS_ACTIONS: dict[str, tuple[str, ...]] = {
    "add": ("agregar",), "list": ("listar",), "disable": ("desactivar",),
    "password": ("contrasena", "contraseña"),
}
TOKENS_ACTIONS: dict[str, tuple[str, ...]] = {
    "add": ("agregar",), "list": ("listar",), "revoke": ("revocar",),
}
_JSON_HELP = "salida en JSON (para otros programas)"


def _portals(value: str) -> list[str]:
    # Imported here: the registry loads every portal's flow (Playwright), which only the
    # commands that take --portals need.
    from flows import registry

    known = registry.names()
    names = [p.strip().lower() for p in value.split(",") if p.strip()]
    unknown = [p for p in names if p not in known]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"portal desconocido: {', '.join(unknown) or value!r} "
            f"(use {', '.join(known)} o varios separados por comas, p. ej. {','.join(known)})"
        )
    return list(dict.fromkeys(names))


def build_parser() -> argparse.ArgumentParser:
    p = SpanishParser(prog="constancias", description="Constancias IMSS e ISSSTE por lote de "
                      "CURPs. Cada comando tiene también su nombre en español (entre "
                      "paréntesis) y su ayuda: constancias COMANDO --help.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=SpanishParser,
                           title="comandos", metavar="COMANDO")

    def command(name: str, help: str) -> argparse.ArgumentParser:  # noqa: A002 - argparse's word
        parser: argparse.ArgumentParser = sub.add_parser(
            name, aliases=list(ALIASES[name]), help=help, description=help)
        return parser

    s = command("validate", "revisar una hoja sin consultar los portales")
    s.add_argument("file", metavar="ARCHIVO", help="hoja .xlsx o .csv con una columna CURP")
    s.add_argument("--json", action="store_true", help=_JSON_HELP)

    s = command("run", "procesar una hoja y escribir el reporte")
    s.add_argument("file", metavar="ARCHIVO", help="hoja .xlsx o .csv con una columna CURP")
    s.add_argument("--out", default=None, metavar="CARPETA",
                   help="carpeta de salida (reporte y PDFs)")
    s.add_argument("--portals", type=_portals, default=None, metavar="PORTALES",
                   help="separados por comas, p. ej. imss,issste (todos, si no se indica)")
    s.add_argument("--sandbox", action="store_true", help="usar los simuladores locales")
    s.add_argument("--json", action="store_true", help=_JSON_HELP)

    s = command("submit", "encolar una hoja en los workers (Redis)")
    s.add_argument("file", metavar="ARCHIVO", help="hoja .xlsx o .csv con una columna CURP")
    s.add_argument("--portals", type=_portals, default=None, metavar="PORTALES",
                   help="separados por comas, p. ej. imss,issste (todos, si no se indica)")
    s.add_argument("--out", default=None, metavar="CARPETA",
                   help="carpeta de salida (reporte y PDFs)")

    s = command("status", "avance de un lote")
    s.add_argument("batch_id", metavar="LOTE", help="número de lote")
    s.add_argument("--json", action="store_true", help=_JSON_HELP)

    s = command("report", "regenerar el reporte de un lote")
    s.add_argument("batch_id", metavar="LOTE", help="número de lote")
    s.add_argument("--out", default=None, metavar="CARPETA", help="dónde escribirlo")

    s = command("recheck", "volver a consultar a las personas activas")
    s.add_argument("--older-than", type=number, default=None, dest="older_than",
                   metavar="HORAS", help="solo quienes tengan un resultado más antiguo que esto")
    s.add_argument("--json", action="store_true", help=_JSON_HELP)

    s = command("worker", "un worker de Celery")
    s.add_argument("-c", "--concurrency", type=integer, default=None, metavar="N",
                   help="consultas a la vez")

    command("beat", "la programación nocturna")

    s = command("web", "la página web de RH")
    s.add_argument("--host", default="127.0.0.1",
                   help="dirección donde escucha (127.0.0.1: solo este equipo)")
    s.add_argument("--port", type=integer, default=8000, metavar="PUERTO", help="puerto")
    s.add_argument("--proxy-headers", action=argparse.BooleanOptionalAction, default=None,
                   dest="proxy_headers",
                   help="confiar en X-Forwarded-For/-Proto de los proxies de "
                        "--forwarded-allow-ips (CONSTANCIAS_WEB_PROXY_HEADERS)")
    s.add_argument("--forwarded-allow-ips", default=None, dest="forwarded_allow_ips",
                   metavar="IPS", help="direcciones de los proxies de confianza, separadas por "
                   "comas (CONSTANCIAS_WEB_FORWARDED_ALLOW_IPS)")
    s.add_argument("--ssl-certfile", default=None, dest="ssl_certfile", metavar="ARCHIVO",
                   help="certificado para servir la página por HTTPS")
    s.add_argument("--ssl-keyfile", default=None, dest="ssl_keyfile", metavar="ARCHIVO",
                   help="clave privada del certificado")

    s = command("sandbox", "simuladores de los portales y del correo")
    s.add_argument("--port", type=integer, default=0, metavar="PUERTO",
                   help="puerto (0: uno libre)")
    s.add_argument("--host", default="127.0.0.1",
                   help="dirección donde escucha (0.0.0.0 dentro de un contenedor)")
    s.add_argument("--public-host", default=None, dest="public_host", metavar="NOMBRE",
                   help="nombre con que otros equipos lo alcanzan, para las URL que imprime")
    s.add_argument("--markup", default=None,
                   help="variante del marcado supuesto: b (ambos portales) o imss=b,issste=a")

    command("demo", "la hoja de ejemplo contra el sandbox")

    s = command("people", "activar o desactivar personas para la revisión nocturna")
    s.add_argument("action", metavar="ACCIÓN",
                   choices=[n for name, es in PEOPLE_ACTIONS.items() for n in (name, *es)],
                   help="listar (list), desactivar (deactivate) o activar (activate)")
    s.add_argument("curps", nargs="*", metavar="CURP")
    s.add_argument("--json", action="store_true", help=_JSON_HELP)

    s = command("doctor", "revisar configuración, almacenamiento, navegador, portales y correo "
                "antes de un lote, sin gastar consultas")
    s.add_argument("--portals", type=_portals, default=None, metavar="PORTALES",
                   help="separados por comas, p. ej. imss,issste (todos, si no se indica)")
    s.add_argument("--json", action="store_true", help=_JSON_HELP)

    s = command("purge", "borrar datos personales antiguos")
    s.add_argument("--older-than", type=number, required=True, dest="older_than",
                   metavar="DÍAS", help="borrar lo que tenga más de estos días")

    s = command("captcha", "el lector de captchas del IMSS")
    actions = s.add_subparsers(dest="captcha_command", required=True, parser_class=SpanishParser,
                               metavar="ACCIÓN")
    c = actions.add_parser("solve", aliases=["resolver"], help="leer captchas guardados",
                           description="leer captchas del IMSS guardados (evidencia)")
    c.add_argument("images", nargs="+", metavar="IMAGEN", help="imágenes JPEG o PNG")
    c.add_argument("--json", action="store_true", help=_JSON_HELP)
    s = command("users", "cuentas de la página web: agregar, listar, desactivar, contraseña")
    s.add_argument("action", metavar="ACCIÓN",
                   choices=[n for name, es in USERS_ACTIONS.items() for n in (name, *es)],
                   help="agregar (add), listar (list), desactivar (disable) o contraseña "
                        "(password)")
    s.add_argument("name", nargs="?", default=None, metavar="NOMBRE")
    s.add_argument("--role", "--rol", choices=["admin", "rh", "lectura"], default=None,
                   help="admin (usuarios, tokens, depuración), rh (cargar, procesar, "
                        "descargar) o lectura (ver y descargar)")
    s.add_argument("--password-stdin", "--contrasena-stdin", action="store_true",
                   dest="password_stdin", help="leer la contraseña de la entrada estándar")
    s.add_argument("--json", action="store_true", help=_JSON_HELP)

    s = command("tokens", "tokens de la API: agregar, listar, revocar")
    s.add_argument("action", metavar="ACCIÓN",
                   choices=[n for name, es in TOKENS_ACTIONS.items() for n in (name, *es)],
                   help="agregar (add), listar (list) o revocar (revoke)")
    s.add_argument("name", nargs="?", default=None, metavar="NOMBRE")
    s.add_argument("--scopes", "--permisos", default=None, metavar="PERMISOS",
                   help="batches:write, batches:read, results:read, webhooks:write "
                        "(separados por comas)")
    s.add_argument("--json", action="store_true", help=_JSON_HELP)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    # Sheets, PDFs and evidence are personal data: nothing we write is readable by others.
    os.umask(0o077)
    args = build_parser().parse_args(argv)
    # Handlers see the English names only, whichever the person typed.
    args.command = canonical(args.command, ALIASES)
    if args.command == "people":
        args.action = canonical(args.action, PEOPLE_ACTIONS)
    elif args.command == "captcha":
        args.captcha_command = canonical(args.captcha_command, {"solve": ("resolver",)})
    elif args.command in ("users", "tokens"):
        actions = USERS_ACTIONS if args.command == "users" else TOKENS_ACTIONS
        args.action = canonical(args.action, actions)
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
