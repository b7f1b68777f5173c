"""argparse in Spanish: its own texts (usage, help, error messages) for the people who use
``constancias``, through a gettext hook scoped to our parser.

argparse looks its texts up with ``argparse._`` / ``argparse.ngettext`` when it builds a parser,
formats help or reports an error. ``SpanishParser`` swaps those two names for the Spanish
catalogue below only while one of its own methods runs, so other argparse users in the process
(pytest, Celery's tools) keep theirs. A text missing from the catalogue stays in English rather
than failing.
"""

from __future__ import annotations

import argparse
import gettext
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, NoReturn, TypeVar

__all__ = ["SpanishParser", "SpanishHelpFormatter", "integer", "number", "canonical"]

_CATALOGUE = {
    "usage: ": "uso: ",
    "argument %(argument_name)s: %(message)s": "argumento %(argument_name)s: %(message)s",
    "unknown parser %(parser_name)r (choices: %(choices)s)":
        "comando desconocido %(parser_name)r (use uno de: %(choices)s)",
    "can't open '%(filename)s': %(error)s": "no se puede abrir «%(filename)s»: %(error)s",
    "positional arguments": "argumentos",
    "options": "opciones",
    "show this help message and exit": "mostrar esta ayuda y salir",
    "unrecognized arguments: %s": "argumentos que no se reconocen: %s",
    "not allowed with argument %s": "no se puede usar junto con %s",
    "ignored explicit argument %r": "esta opción no lleva valor: %r",
    "the following arguments are required: %s": "faltan estos argumentos: %s",
    "one of the arguments %s is required": "hace falta uno de estos argumentos: %s",
    "expected one argument": "falta su valor",
    "expected at most one argument": "admite a lo sumo un valor",
    "expected at least one argument": "necesita al menos un valor",
    "ambiguous option: %(option)s could match %(matches)s":
        "opción ambigua: %(option)s puede ser %(matches)s",
    "unexpected option string: %s": "opción inesperada: %s",
    "invalid %(type)s value: %(value)r": "valor no válido (se esperaba un %(type)s): %(value)r",
    "invalid choice: %(value)r (choose from %(choices)s)":
        "valor no válido: %(value)r (use uno de: %(choices)s)",
    "%(prog)s: error: %(message)s\n": "%(prog)s: %(message)s\n",
}
_PLURALS = {
    ("expected %s argument", "expected %s arguments"): ("necesita %s valor", "necesita %s valores"),
}

_lock = threading.RLock()


def _es(message: str) -> str:
    return _CATALOGUE.get(message, message)


def _es_n(singular: str, plural: str, n: int) -> str:
    es = _PLURALS.get((singular, plural))
    if es is None:
        return gettext.ngettext(singular, plural, n)
    return es[0] if n == 1 else es[1]


@contextmanager
def _spanish() -> Iterator[None]:
    with _lock:
        saved = argparse._, argparse.ngettext  # type: ignore[attr-defined]
        argparse._, argparse.ngettext = _es, _es_n  # type: ignore[attr-defined]
        try:
            yield
        finally:
            argparse._, argparse.ngettext = saved  # type: ignore[attr-defined]


T = TypeVar("T")


def _in_spanish(method: Callable[..., T]) -> Callable[..., T]:
    def wrapper(*args: Any, **kwargs: Any) -> T:
        with _spanish():
            return method(*args, **kwargs)

    wrapper.__name__ = method.__name__
    wrapper.__doc__ = method.__doc__
    return wrapper


class SpanishHelpFormatter(argparse.HelpFormatter):
    """Help whose own words are Spanish (the formatter asks for "usage: " when it runs)."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 30,
                 width: int | None = None) -> None:
        # Room for "recheck (revisar)" and its help on one line.
        super().__init__(prog, indent_increment, max_help_position, width)

    format_help = _in_spanish(argparse.HelpFormatter.format_help)


class SpanishParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` that speaks Spanish and reports a bad argument as one line:
    what was wrong and where to read the help, exit code 2."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", SpanishHelpFormatter)
        with _spanish():
            super().__init__(*args, **kwargs)

    # argparse's own overloads stay what callers see; the wrapper only switches the language.
    parse_args = _in_spanish(argparse.ArgumentParser.parse_args)  # type: ignore[assignment]
    parse_known_args = _in_spanish(  # type: ignore[assignment]
        argparse.ArgumentParser.parse_known_args)
    format_usage = _in_spanish(argparse.ArgumentParser.format_usage)
    format_help = _in_spanish(argparse.ArgumentParser.format_help)
    add_subparsers = _in_spanish(argparse.ArgumentParser.add_subparsers)
    add_argument = _in_spanish(argparse.ArgumentParser.add_argument)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message.rstrip('.')}. Vea «{self.prog} --help».\n")


def integer(value: str) -> int:
    """``type=`` for whole numbers, named so that argparse's message says "un entero"."""
    return int(value)


def number(value: str) -> float:
    """``type=`` for numbers (decimals allowed)."""
    return float(value)


integer.__name__ = "entero"
number.__name__ = "número"


def canonical(name: str, aliases: Mapping[str, Sequence[str]]) -> str:
    """The English name (SPEC §4) of a command or choice given by any of its names."""
    for english, others in aliases.items():
        if name == english or name in others:
            return english
    return name
