#!/usr/bin/env bash
# Idempotent set-up on a fresh Debian machine (as root): system packages, then the venv.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v chromium >/dev/null || need+=(chromium)
# The lighter build, for CONSTANCIAS_BROWSER_EXECUTABLE (a sixth of the CPU per check; the
# default is the full chromium in its new headless mode: see flows/browser.py).
command -v chromium-headless-shell >/dev/null || need+=(chromium-headless-shell)
command -v tesseract >/dev/null || need+=(tesseract-ocr tesseract-ocr-eng)
[ -x /usr/sbin/dovecot ] || need+=(dovecot-imapd)
command -v soffice >/dev/null || need+=(libreoffice-calc)
command -v pdftoppm >/dev/null || need+=(poppler-utils)
command -v redis-server >/dev/null || need+=(redis-server)
command -v Xvfb >/dev/null || need+=(xvfb xauth)  # CONSTANCIAS_BROWSER_HEADED under xvfb-run
command -v strace >/dev/null || need+=(strace)  # tests/test_privacy.py records connections
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need+=(fonts-dejavu-core)
# The IMSS captcha font (fixtures/captcha_image.py): Arial's metric twin.
[ -e /usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf ] || need+=(fonts-liberation)
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: instalando paquetes del sistema: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
if [ ! -f .venv/.installed ] || [ pyproject.toml -nt .venv/.installed ]; then
  echo "setup: instalando paquetes de Python"
  .venv/bin/pip install -q --upgrade pip >/dev/null
  # setuptools reports the editable install of a flat layout (worker/, flows/, fixtures/ at
  # the top, as this project is on purpose) with an information-only warning on every set-up;
  # only that one is silenced, by its exact text.
  PYTHONWARNINGS="ignore:Editable installation:Warning" .venv/bin/pip install -q -e '.[dev]'
  touch .venv/.installed
fi
