"""Where checks run is chosen once, from the settings, and ``run --sandbox`` refuses a broker."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.worker.sheets import VALID, write_csv
from worker.core.settings import load_settings
from worker.engine.executor import CeleryExecutor, EmbeddedExecutor, executor_for
from worker.interfaces.cli import main
from worker.services.batches import open_storage


def test_run_sandbox_with_a_broker_is_refused_in_one_spanish_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The workers would not see this command's sandbox: exit 2, one Spanish line, nothing
    stored, no traceback."""
    monkeypatch.setenv("CONSTANCIAS_BROKER_URL", "redis://127.0.0.1:1/0")
    sheet = write_csv(tmp_path / "hoja.csv", [["CURP"], [VALID[0]]])
    assert main(["run", str(sheet), "--sandbox"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "sandbox" in err[0] and "CONSTANCIAS_BROKER_URL" in err[0]
    assert "Traceback" not in err[0]
    assert not (Path(load_settings().data_dir) / "constancias.db").exists()


def test_the_executor_follows_the_broker_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """No broker: the embedded pool of this process; a broker: the Celery workers."""
    settings = load_settings()
    assert isinstance(executor_for(settings, open_storage(settings)), EmbeddedExecutor)
    monkeypatch.setenv("CONSTANCIAS_BROKER_URL", "redis://127.0.0.1:1/0")
    broker = load_settings()
    assert isinstance(executor_for(broker, open_storage(broker)), CeleryExecutor)
