"""The command line speaks Spanish: argparse's own texts, one-line errors, Spanish command
names beside the English ones of SPEC §4."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from tests.people import synthetic_curps, write_sheet
from worker.interfaces.cli import (
    ALIASES,
    PEOPLE_ACTIONS,
    TOKENS_ACTIONS,
    USERS_ACTIONS,
    build_parser,
    main,
)

#: Words of argparse's English texts that must never reach HR.
ENGLISH = ("usage:", "show this help", "argument ", "invalid", "expected", "required",
           "unrecognized", "choose from", "positional arguments", "error:")


def _exit(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(argv)
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


def test_help_is_in_spanish(capsys: pytest.CaptureFixture[str]) -> None:
    """`--help`, of the program and of a command, uses Spanish words and shows the Spanish
    command names."""
    code, out, _ = _exit(["--help"], capsys)
    assert code == 0
    assert out.startswith("uso: constancias") and "mostrar esta ayuda y salir" in out
    assert "run (procesar)" in out and "people (personas)" in out
    code, out, _ = _exit(["procesar", "--help"], capsys)
    assert code == 0 and "argumentos:" in out and "opciones:" in out and "ARCHIVO" in out
    for word in ENGLISH:
        assert word not in out, word


@pytest.mark.parametrize("argv, expected", [
    (["run", "hoja.xlsx", "--portals", "sat"], "argumento --portals: portal desconocido"),
    (["web", "--port", "ochenta"], "argumento --port: valor no válido (se esperaba un entero)"),
    (["purge", "--older-than"], "argumento --older-than: falta su valor"),
    (["purge"], "faltan estos argumentos: --older-than"),
    (["validate", "a.xlsx", "b.xlsx"], "argumentos que no se reconocen: b.xlsx"),
    (["descargar"], "valor no válido: 'descargar'"),
    (["people", "borrar"], "argumento ACCIÓN: valor no válido: 'borrar'"),
])
def test_a_bad_argument_is_one_spanish_line_and_exit_2(
        argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A bad argument gets one Spanish line naming what was wrong and where the help is."""
    code, out, err = _exit(argv, capsys)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert expected in err and "--help»" in err and "Traceback" not in err
    for word in ENGLISH:
        assert word not in err, (word, err)


def test_argparse_elsewhere_in_the_process_keeps_its_own_language() -> None:
    """The Spanish texts are scoped to our parser: another ArgumentParser is untouched."""
    build_parser().format_help()
    other = argparse.ArgumentParser(prog="otro")
    assert other.format_usage().startswith("usage: otro")
    assert "show this help message and exit" in other.format_help()


def test_every_english_command_of_the_spec_still_parses() -> None:
    """SPEC §4's English names keep working; each Spanish name parses to the same command."""
    parser = build_parser()
    samples = {"validate": ["f.xlsx"], "run": ["f.xlsx"], "submit": ["f.xlsx"],
               "status": ["abc"], "report": ["abc"], "recheck": [], "worker": [], "beat": [],
               "web": [], "sandbox": [], "demo": [], "people": ["list"],
               "purge": ["--older-than", "3"], "doctor": [], "captcha": ["solve", "x.jpg"],
               "users": ["list"], "tokens": ["list"]}
    assert set(samples) == set(ALIASES)
    for english, rest in samples.items():
        for name in (english, *ALIASES[english]):
            args = parser.parse_args([name, *rest])
            assert args.command == name
    for english, spanish in PEOPLE_ACTIONS.items():
        assert parser.parse_args(["personas", spanish[0]]).action == spanish[0]
        assert parser.parse_args(["people", english]).action == english
    for command, actions in (("users", USERS_ACTIONS), ("tokens", TOKENS_ACTIONS)):
        for english, spanish in actions.items():
            assert parser.parse_args([command, english, "x"]).action == english
            assert parser.parse_args([command, spanish[0], "x"]).action == spanish[0]


def test_spanish_names_run_the_english_commands(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """`validar` answers as `validate`, and `personas desactivar/listar` as
    `people deactivate/list`."""
    sheet = write_sheet(tmp_path / "altas.xlsx", synthetic_curps(2, seed=3))
    assert main(["validate", str(sheet), "--json"]) == 0
    english = json.loads(capsys.readouterr().out)
    assert main(["validar", str(sheet), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == english
    assert main(["personas", "listar"]) == 0
    assert "No hay personas registradas." in capsys.readouterr().out
    assert main(["personas", "desactivar", synthetic_curps(1, seed=3)[0], "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["action"] == "deactivate"
    assert main(["personas", "activar"]) == 2
    assert "constancias personas activar CURP1" in capsys.readouterr().err
