"""Settings are read from CONSTANCIAS_* and refused with one Spanish line."""

from __future__ import annotations

import subprocess
import sys

import pytest

from worker.core.errors import ConfigError
from worker.core.settings import load_settings


def test_defaults_point_at_the_real_portals_and_sqlite(tmp_path) -> None:
    """With nothing set, the real portals, SQLite under DATA_DIR and the embedded engine."""
    s = load_settings()
    assert s.imss_url == "https://www.imss.gob.mx/constancia-no-derechohabiencia"
    assert s.issste_url.endswith("/Servicios/Acreditaci%C3%B3n-de-no-Afiliaci%C3%B3n")
    assert s.effective_database_url.startswith("sqlite:///")
    assert s.embedded and s.timezone == "America/Mexico_City"


def test_gmail_template_with_plus_is_refused(monkeypatch) -> None:
    """IMSS refuses Gmail addresses with '+', so such a template is a configuration error."""
    monkeypatch.setenv("CONSTANCIAS_IMSS_EMAIL", "rh+{curp}@gmail.com")
    with pytest.raises(ConfigError, match="CONSTANCIAS_IMSS_EMAIL"):
        load_settings()


def test_email_template_without_curp_is_refused(monkeypatch) -> None:
    """Without {curp} every CURP would share one address, which IMSS binds to the first."""
    monkeypatch.setenv("CONSTANCIAS_IMSS_EMAIL", "rh@empresa.mx")
    with pytest.raises(ConfigError, match="curp"):
        load_settings()


def test_bad_value_from_dotenv_exits_2_with_one_line(tmp_path) -> None:
    """A wrong value in .env stops the CLI with exit 2 and one Spanish line, no traceback."""
    (tmp_path / ".env").write_text("CONSTANCIAS_CONCURRENCY=muchos\n")
    (tmp_path / "h.csv").write_text("CURP\n")
    proc = subprocess.run([sys.executable, "-m", "worker.interfaces.cli", "validate", "h.csv"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "CONSTANCIAS_CONCURRENCY" in proc.stderr


def test_email_for_gives_one_address_per_curp() -> None:
    """The template yields a distinct address per CURP."""
    s = load_settings(imss_email="{curp}@constancias.empresa.example")
    assert s.email_for("GODE561231HDFRRN09") == "gode561231hdfrrn09@constancias.empresa.example"


@pytest.mark.parametrize("name, value, expected", [
    ("CONSTANCIAS_CONCURRENCY", "cuatro", "el valor 'cuatro' no sirve, debe ser un número entero"),
    ("CONSTANCIAS_CONCURRENCY", "0", "debe ser 1 o más"),
    ("CONSTANCIAS_LOG_FORMAT", "xml", "debe ser uno de estos: json o console"),
    ("CONSTANCIAS_RETRY_BACKOFF_MAX_S", "5000", "la espera más larga entre reintentos"),
])
def test_a_bad_setting_says_what_to_fix_in_spanish_with_its_name_last(
        monkeypatch, name: str, value: str, expected: str) -> None:
    """A wrong value gets a Spanish sentence (pydantic's English is translated) that starts
    with what to do; the setting's name follows in parentheses."""
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert message.startswith("Corrija la configuración") and expected in message, message
    assert message.index(expected) < message.index(name)
    for english in ("Input should", "valid integer", "greater than", "retry_backoff_max_s"):
        assert english not in message
