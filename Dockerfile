# One image for every role: worker, beat, web, sandbox.
FROM python:3.11-slim

# Debian's Chromium (Playwright cannot download its own browser offline), Tesseract for the
# captcha OCR, fonts for PDFs and screenshots, tini reaps orphaned Chromium processes.
RUN apt-get update \
 && apt-get install -y --no-install-recommends chromium tesseract-ocr tesseract-ocr-eng \
        fonts-dejavu-core tini ca-certificates \
 && rm -rf /var/lib/apt/lists/*

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    CONSTANCIAS_BROWSER_EXECUTABLE=/usr/bin/chromium \
    CONSTANCIAS_DATA_DIR=/data \
    CONSTANCIAS_LOG_FORMAT=json

WORKDIR /app
COPY pyproject.toml README.md ./
COPY worker ./worker
COPY flows ./flows
COPY fixtures ./fixtures
RUN pip install --no-cache-dir .

RUN useradd --create-home --uid 10001 constancias \
 && mkdir -p /data && chown constancias:constancias /data && chmod 700 /data
USER constancias
VOLUME ["/data"]

ENTRYPOINT ["/usr/bin/tini", "--", "constancias"]
CMD ["worker"]
