"""The data folder is the user's, not the current folder's, and commands that only read never
create one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.people import synthetic_curps, write_sheet
from worker.core.settings import load_settings

CLI = [sys.executable, "-m", "worker.interfaces.cli"]


def _env(home: Path, xdg: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("CONSTANCIAS_") and k != "XDG_DATA_HOME"}
    env["HOME"] = str(home)
    if xdg is not None:
        env["XDG_DATA_HOME"] = str(xdg)
    return env


def test_default_data_folder_is_the_users_whatever_the_current_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without CONSTANCIAS_DATA_DIR the data folder is $XDG_DATA_HOME/constancias, else
    ~/.local/share/constancias, from any current folder."""
    monkeypatch.delenv("CONSTANCIAS_DATA_DIR")
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "casa"))
    for cwd in (tmp_path, Path("/")):
        monkeypatch.chdir(cwd)
        assert load_settings().data_dir == tmp_path / "casa" / ".local" / "share" / "constancias"
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert load_settings().data_dir == tmp_path / "xdg" / "constancias"
    assert load_settings().effective_database_url == (
        f"sqlite:///{tmp_path / 'xdg' / 'constancias' / 'constancias.db'}")


def test_read_only_commands_create_no_data_folder(tmp_path: Path) -> None:
    """`status` and `report` of an unknown batch, `validate` and `people list` run in a bare
    folder leave no data folder and no database behind, here or in the user's data folder."""
    home, work = tmp_path / "casa", tmp_path / "trabajo"
    home.mkdir()
    work.mkdir()
    sheet = write_sheet(work / "altas.xlsx", synthetic_curps(2, seed=3))
    before = sorted(p.name for p in work.iterdir())
    for argv, code in ((["status", "abc123"], 2), (["report", "abc123"], 2),
                       (["validate", str(sheet)], 0), (["people", "list"], 0)):
        proc = subprocess.run([*CLI, *argv], cwd=work, env=_env(home), capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == code, (argv, proc.stderr)
        assert "Traceback" not in proc.stderr
        if code == 2:
            assert proc.stderr.strip().splitlines() == [
                f"constancias: No existe el lote 'abc123' en la carpeta de datos "
                f"{home / '.local' / 'share' / 'constancias'} (CONSTANCIAS_DATA_DIR)."]
    assert sorted(p.name for p in work.iterdir()) == before
    assert list(home.rglob("*")) == []


def test_status_names_the_data_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`status` of a stored batch says which data folder it read."""
    from worker.interfaces.cli import main
    from worker.services.batches import open_storage, prepare_batch

    settings = load_settings()
    storage = open_storage(settings)
    sheet = write_sheet(tmp_path / "altas.xlsx", synthetic_curps(1, seed=4))
    batch_id, _ = prepare_batch(settings, storage, sheet, ["issste"])
    assert main(["status", batch_id]) == 0
    assert f"Carpeta de datos: {settings.data_dir}" in capsys.readouterr().out.splitlines()
