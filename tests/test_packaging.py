"""The package metadata builds cleanly: an SPDX licence, no warnings from the build backend."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_license_is_an_spdx_expression() -> None:
    """`project.license` is an SPDX string (PEP 639), with a setuptools that understands it."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["license"] == "Apache-2.0"
    assert "setuptools>=77" in project["build-system"]["requires"]


def test_building_the_package_prints_no_warnings(tmp_path: Path) -> None:
    """Building the wheel (what `make setup` does, in pip's isolated build) prints no warning
    of the build backend; the editable install's one information-only warning is filtered
    by setup.sh by its exact text."""
    # Built from a copy: setuptools writes build/ and *.egg-info next to the sources.
    source = tmp_path / "src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", "data", "salida*", "__pycache__", "tests"))
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-cache-dir",
         "-w", str(tmp_path), str(source)],
        capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr
    # This machine's pip configuration names index folders that do not exist: pip's own
    # complaint about that is not the project's.
    ours = [line for line in proc.stderr.splitlines()
            if line.strip() and not line.startswith("WARNING: Location ")]
    assert ours == [], "\n".join(ours)
    assert list(tmp_path.glob("constancias-*.whl"))
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    assert 'PYTHONWARNINGS="ignore:Editable installation:Warning"' in setup
