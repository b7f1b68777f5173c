# One image for every role: worker, beat, web, flower, sandbox (compose.yaml picks the command).
# Debian bookworm, like the machines the test suite runs on (same Chromium and Tesseract).
FROM python:3.11-slim-bookworm

# Debian's Chromium, as its headless shell (Playwright cannot download its own browser offline;
# the shell costs a sixth of the CPU of the desktop build per check), Tesseract for the
# captcha OCR, fonts for screenshots, tini as init: it forwards SIGTERM to the Celery master
# (warm shutdown) and reaps Chromium processes orphaned by a killed check.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
        chromium-headless-shell tesseract-ocr tesseract-ocr-eng fonts-dejavu-core fonts-liberation \
        tini ca-certificates \
 && rm -rf /var/lib/apt/lists/*

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CONSTANCIAS_BROWSER_EXECUTABLE=/usr/bin/chromium-headless-shell \
    CONSTANCIAS_DATA_DIR=/data \
    CONSTANCIAS_LOG_FORMAT=json

WORKDIR /app

# Dependencies first, in their own layer: a code change does not reinstall them.
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; open('/tmp/requirements.txt', 'w').write(chr(10).join(deps))" \
 && pip install --no-cache-dir -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt

COPY worker ./worker
COPY flows ./flows
COPY fixtures ./fixtures
RUN pip install --no-cache-dir --no-deps . && rm -rf build

# Never root: the browser renders pages from the internet. /data is the shared output storage
# (a named volume copies this ownership on first use).
RUN useradd --create-home --uid 10001 --user-group constancias \
 && mkdir -p /data && chown constancias:constancias /data && chmod 700 /data
USER constancias
WORKDIR /home/constancias
VOLUME ["/data"]
EXPOSE 8000 5555 8100 8101 8102

# -s: still reap orphans when compose's own init (`init: true`) is PID 1 and tini is not.
ENTRYPOINT ["/usr/bin/tini", "-s", "--", "constancias"]
CMD ["worker"]
