"""structlog set-up: JSON in production, console for people; personal data masked.

``mask_personal_data`` is a plain processor ``(logger, method, event) -> event`` that masks
CURPs and email addresses anywhere in an event (keys, values, nested containers).
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import structlog

__all__ = ["configure_logging", "mask_curp", "mask_email", "mask_text", "mask_personal_data",
           "reset_logging", "MaskingFilter"]

# A CURP-shaped token (not validated: a wrong CURP is still personal data). No word
# boundaries: a CURP glued to other characters (``imss_<CURP>.png``, ``%2B<curp>%40`` in a
# URL-encoded address) is still a CURP.
_CURP_RE = re.compile(r"(?i)([A-Z][AEIOUX][A-Z]{2})(\d{6})([HMX][A-Z]{5}[0-9A-Z]\d)")
# ``%40`` is an ``@`` in a URL (a query string in an access log).
_EMAIL_RE = re.compile(r"(?i)\b([A-Z0-9._%+\-]+)(?:@|%40)([A-Z0-9.\-]+\.[A-Z]{2,})\b")


# The same CURP as it appears in URLs and typed text: characters percent-encoded
# (``H%45MU…``), the halves split by spaces, ``+`` (a form-encoded space), ``%20`` or a dash
# (``HEMU710227 HMCSBR08``). Matched on the percent-decoded text, separators allowed between
# any two characters; the whole original span is masked.
_CURP_SHAPE = ["[A-Z]", "[AEIOUX]", "[A-Z]", "[A-Z]", *(["\\d"] * 6), "[HMX]", *(["[A-Z]"] * 5),
               "[0-9A-Z]", "\\d"]
_SEP = r"[\s+\-]{0,3}"
_SPLIT_CURP_RE = re.compile("(?i)" + _SEP.join(_CURP_SHAPE))
_PERCENT_RE = re.compile(r"%([0-9A-Fa-f]{2})")


def mask_curp(curp: str) -> str:
    """``GODE561231HDFRRN09`` → ``GODE******HDF*****``: enough to tell rows apart, not a person."""
    return curp[:4] + "*" * 6 + curp[10:13] + "*" * (len(curp) - 13)


def mask_email(email: str) -> str:
    """``ana.perez@empresa.mx`` → ``a***@e***.mx``."""
    local, _, domain = email.partition("@")
    host, _, tld = domain.rpartition(".")
    return f"{local[:1]}***@{host[:1]}***.{tld}"


def mask_text(text: str) -> str:
    # Emails first: a per-CURP address embeds the CURP and must be masked whole.
    text = _EMAIL_RE.sub(lambda m: mask_email(f"{m.group(1)}@{m.group(2)}"), text)
    # Encoded CURPs before plain ones: in ``%5AAGS830311…`` the plain pattern would match from
    # the second letter on and leave the encoded first one in front of the mask.
    text = _mask_encoded(text)
    return _CURP_RE.sub(lambda m: mask_curp(m.group(0)), text)


def _decoded(text: str) -> tuple[str, list[int]]:
    """``text`` with ``%XX`` decoded (one level, byte-wise as Latin-1: CURPs and the characters
    around emails are ASCII), and for each decoded character where it starts in ``text``
    (plus the end)."""
    chars: list[str] = []
    starts: list[int] = []
    i = 0
    for m in _PERCENT_RE.finditer(text):
        for j in range(i, m.start()):
            chars.append(text[j])
            starts.append(j)
        chars.append(chr(int(m.group(1), 16)))
        starts.append(m.start())
        i = m.end()
    for j in range(i, len(text)):
        chars.append(text[j])
        starts.append(j)
    starts.append(len(text))
    return "".join(chars), starts


def _mask_encoded(text: str) -> str:
    """Mask the CURPs and emails that only show once ``%XX`` is decoded or separators are
    dropped; text without them comes back unchanged (one regex search, no decoding)."""
    encoded = "%" in text
    if not encoded and not _SPLIT_CURP_RE.search(text):
        return text
    view, starts = _decoded(text) if encoded else (text, [*range(len(text) + 1)])
    spans: list[tuple[int, int, str]] = []
    for m in _EMAIL_RE.finditer(view):
        if "%" in m.group(0) or encoded:
            spans.append((m.start(), m.end(), mask_email(f"{m.group(1)}@{m.group(2)}")))
    for m in _SPLIT_CURP_RE.finditer(view):
        if not any(a < m.end() and m.start() < b for a, b, _ in spans):
            spans.append((m.start(), m.end(), mask_curp(re.sub(r"[\s+\-]", "", m.group(0)))))
    for start, end, masked in sorted(spans, reverse=True):
        text = text[:starts[start]] + masked + text[starts[end]:]
    return text


def _mask(value: Any) -> Any:
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, Mapping):
        return {_mask(k): _mask(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return type(value)(_mask(v) for v in value) if not isinstance(value, tuple) else tuple(
            _mask(v) for v in value
        )
    if isinstance(value, BaseException):
        return mask_text(repr(value))
    return value


def mask_personal_data(logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: mask CURPs and emails in every key and value of the event."""
    return {k: _mask(v) for k, v in event.items()}


class MaskingFilter(logging.Filter):
    """For stdlib loggers (Celery, uvicorn…): masks the rendered message and its arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, dict):
            return True  # a structlog event: already masked by mask_personal_data
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken format string must not lose the line
            message = str(record.msg)
        record.msg = mask_text(message)
        record.args = None
        if record.exc_text:
            record.exc_text = mask_text(record.exc_text)
        return True


def _mask_exception_text(logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
    # Tracebacks are rendered into "exception" by format_exc_info, after the first mask.
    if isinstance(event.get("exception"), str):
        event["exception"] = mask_text(event["exception"])
    return event


class _TerminalHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """On a terminal, each line first clears the line the cursor is on: a progress line being
    redrawn there (``run``'s "Avance: …", by another process) is replaced, never glued to."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        try:
            self._clear = "\r\x1b[K" if stream.isatty() else ""
        except (AttributeError, ValueError):
            self._clear = ""

    def format(self, record: logging.LogRecord) -> str:
        return self._clear + super().format(record)


def _formatter(shared: list[Any], renderer: Any) -> logging.Formatter:
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared, processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer
        ]
    )


def _level(name: str) -> int:
    return getattr(logging, name.upper(), logging.INFO)


def configure_logging(log_format: str = "console", level: str = "info", *,
                      console_level: str | None = None, log_file: Path | None = None) -> None:
    """Configure structlog and the stdlib root logger (Celery, uvicorn) alike, once per process.

    ``level`` is what is logged; the console (stderr) shows from ``console_level`` up when
    given (``run`` on a terminal: warnings only), and ``log_file``, when given, receives all
    of it (in ``log_format``, never coloured)."""
    numeric = _level(level)
    console = max(numeric, _level(console_level)) if console_level else numeric
    if log_file is None:
        numeric = console  # nothing would show what the console leaves out: skip rendering it
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        mask_personal_data,
    ]
    # Tracebacks are rendered to text here so that the masking step sees them.
    shared += [structlog.processors.format_exc_info, _mask_exception_text]

    def renderer(colors: bool) -> Any:
        if log_format == "json":
            return structlog.processors.JSONRenderer(ensure_ascii=False)
        return structlog.dev.ConsoleRenderer(colors=colors)

    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        cache_logger_on_first_use=False,
    )
    handler: logging.Handler = _TerminalHandler(sys.stderr)
    handler.setFormatter(_formatter(shared, renderer(sys.stderr.isatty())))
    handler.setLevel(console)
    handlers = [handler]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Append mode: the parent and every worker process write whole lines to one file.
        file_handler = logging.FileHandler(log_file, mode="a", encoding="utf-8")
        file_handler.setFormatter(_formatter(shared, renderer(False)))
        file_handler.setLevel(numeric)
        handlers.append(file_handler)
    root = logging.getLogger()
    for old in root.handlers:
        if isinstance(old, logging.FileHandler):
            old.close()
    for h in handlers:
        h.addFilter(MaskingFilter())
    root.handlers[:] = handlers
    root.setLevel(numeric)
    # Library warnings (openpyxl, Celery) become log records: masked, and JSON when asked.
    logging.captureWarnings(True)
    for noisy in ("asyncio", "urllib3", "httpx", "httpcore", "mail.log", "PIL", "alembic",
                   "fontTools", "fpdf"):
        logging.getLogger(noisy).setLevel(max(numeric, logging.WARNING))


def reset_logging() -> None:
    """Undo ``configure_logging`` (tests)."""
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    root = logging.getLogger()
    for handler in root.handlers:
        if isinstance(handler, logging.FileHandler):
            handler.close()
    root.handlers[:] = []
    logging.captureWarnings(False)
