"""The HR web page (``constancias web``): upload a sheet, watch it, download the results; the
users, tokens and audit pages (``admin``), every page route behind its permission
(``guard``), and the JSON API under ``/api/v1`` (``api``, its OpenAPI document ``openapi``)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from worker.core.logs import configure_logging
from worker.core.settings import load_settings

__all__ = ["cmd_web", "configure_web_logging"]


def configure_web_logging(log_format: str, level: str, log_file: Path | None = None) -> None:
    """The masking logging set-up, with uvicorn's own loggers (access log included) sent to
    it: a uvicorn started elsewhere in the process with its default config gives them their
    own unmasked handlers, ``propagate=False`` or a higher level; undo that."""
    configure_logging(log_format, level, log_file=log_file)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
        logger.disabled = False
        logger.setLevel(logging.NOTSET)


def cmd_web(args: Any) -> int:
    """``constancias web [--host H] [--port P]``; ``ConfigError`` (exit 2) without a password."""
    # Imported here: the app and its server (Starlette, uvicorn, the templates, every page) are
    # for this command only; the page modules are also imported on their own (tests, the runner).

    from worker.interfaces.web.app import create_app
    from worker.interfaces.web.server import (
        PageServer,
        exposure_warning,
        proxy_declared,
        server_config,
    )

    overrides: dict[str, Any] = {}
    if getattr(args, "proxy_headers", None) is not None:
        overrides["web_proxy_headers"] = args.proxy_headers
    if getattr(args, "forwarded_allow_ips", None):
        overrides["web_forwarded_allow_ips"] = args.forwarded_allow_ips
    settings = load_settings(**overrides)
    configure_web_logging(settings.log_format, settings.log_level, settings.log_file)
    # uvicorn's own start-up and shutdown lines (INFO, in English) give way to the Spanish one.
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
    app = create_app(settings)
    tls = bool(args.ssl_certfile)
    warning = exposure_warning(args.host, tls=tls, proxy_trusted=proxy_declared(settings))
    if warning:
        print(warning, file=sys.stderr, flush=True)
    config = server_config(app, settings, host=args.host, port=args.port,
                           ssl_certfile=args.ssl_certfile, ssl_keyfile=args.ssl_keyfile)
    PageServer(config, host=args.host, scheme="https" if tls else "http").run()
    return 0
