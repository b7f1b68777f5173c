"""Handlers of ``users …`` and ``tokens …`` (SPEC §4): accounts of the web page and API tokens.

Passwords come from the terminal (asked twice, not echoed) or, with ``--password-stdin``, from
the first line of standard input (scripts); never from an argument, which ``ps`` would show.
"""

from __future__ import annotations

import getpass
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from worker.core.errors import UserError
from worker.core.roles import ROLE_LABELS, parse_scopes
from worker.interfaces.commands import command_settings
from worker.interfaces.web.security import password_weakness
from worker.services.batches import open_storage
from worker.storage.accounts import (
    AccountError,
    add_token,
    add_user,
    disable_user,
    list_tokens,
    list_users,
    revoke_token,
    set_password,
)
from worker.storage.audit import record

__all__ = ["cmd_users", "cmd_tokens"]

T = TypeVar("T")


def _password(args: Any, min_length: int) -> str:
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        if not sys.stdin.isatty():
            raise UserError("Escriba la contraseña en una terminal, o use --password-stdin "
                             "para leerla de la entrada estándar.")
        password = getpass.getpass("Contraseña: ")
        if getpass.getpass("Repita la contraseña: ") != password:
            raise UserError("Las dos contraseñas no coinciden.")
    weakness = password_weakness(password, min_length)
    if weakness:
        raise UserError(f"La contraseña es demasiado débil: {weakness}.")
    return password


def _print_list(rows: Sequence[T], as_json: bool, fields: Callable[[T], dict[str, Any]],
                line: Callable[[T], str]) -> None:
    """A ``list`` action's output: one JSON array of ``fields``, or one tab-separated ``line``
    per row."""
    if as_json:
        print(json.dumps([fields(r) for r in rows], ensure_ascii=False))
    else:
        for r in rows:
            print(line(r))


def cmd_users(args: Any) -> int:
    settings = command_settings()
    storage = open_storage(settings)
    try:
        if args.action == "list":
            _print_list(list_users(storage), args.json, lambda u: {
                "name": u.name, "role": u.role, "active": u.active,
                "created_at": u.created_at.isoformat(),
            }, lambda u: (f"{u.name}\t{u.role} ({ROLE_LABELS[u.role]})\t"
                          f"{'activo' if u.active else 'desactivado'}"))
            return 0
        if not args.name:
            raise UserError("Indique el nombre del usuario.")
        if args.action == "add":
            if args.role is None:
                raise UserError("Indique el rol: --role admin, rh o lectura.")
            user = add_user(storage, args.name, args.role,
                            _password(args, settings.web_password_min_length))
            record(storage, actor="cli", action="user_add", detail=f"{user.name} ({user.role})")
            print(f"Usuario creado: {user.name} ({ROLE_LABELS[user.role]}).")
        elif args.action == "disable":
            user = disable_user(storage, args.name)
            record(storage, actor="cli", action="user_disable", detail=user.name)
            print(f"Usuario desactivado: {user.name}; sus sesiones terminaron.")
        else:
            user = set_password(storage, args.name,
                                _password(args, settings.web_password_min_length))
            record(storage, actor="cli", action="user_password", detail=user.name)
            print(f"Contraseña cambiada: {user.name}; sus sesiones terminaron.")
    except AccountError as err:
        raise UserError(str(err)) from None
    return 0


def cmd_tokens(args: Any) -> int:
    settings = command_settings()
    storage = open_storage(settings)
    try:
        if args.action == "list":
            _print_list(list_tokens(storage), args.json, lambda t: {
                "name": t.name, "scopes": t.scopes, "owner": t.owner, "revoked": t.revoked,
                "created_at": t.created_at.isoformat(),
                "last_used_at": t.last_used_at.isoformat() if t.last_used_at else None,
            }, lambda t: f"{t.name}\t{','.join(t.scopes)}\t"
                         f"{'revocado' if t.revoked else 'vigente'}")
            return 0
        if not args.name:
            raise UserError("Indique el nombre del token.")
        if args.action == "add":
            if args.scopes is None:
                raise UserError("Indique los permisos: --scopes batches:write,results:read …")
            try:
                scopes = parse_scopes(args.scopes)
            except ValueError as err:
                raise UserError(str(err)) from None
            token, secret = add_token(storage, args.name, scopes)
            record(storage, actor="cli", action="token_add",
                   detail=f"{token.name}: {','.join(token.scopes)}")
            print(f"Token creado: {token.name} ({', '.join(token.scopes)}). Guárdelo ahora: no "
                  "se vuelve a mostrar.", file=sys.stderr)
            print(secret)
        else:
            token = revoke_token(storage, args.name)
            record(storage, actor="cli", action="token_revoke", detail=token.name)
            print(f"Token revocado: {token.name}.")
    except AccountError as err:
        raise UserError(str(err)) from None
    return 0
