"""The HR web page (``constancias web``): upload a sheet, watch it, download the results."""

from __future__ import annotations

import logging
from typing import Any

from worker.core.logs import configure_logging
from worker.core.settings import load_settings

__all__ = ["cmd_web", "configure_web_logging"]


def configure_web_logging(log_format: str, level: str) -> None:
    """The masking logging set-up, with uvicorn's own loggers (access log included) sent to
    it: a uvicorn started elsewhere in the process with its default config gives them their
    own unmasked handlers, ``propagate=False`` or a higher level; undo that."""
    configure_logging(log_format, level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
        logger.disabled = False
        logger.setLevel(logging.NOTSET)


def cmd_web(args: Any) -> int:
    """``constancias web [--host H] [--port P]``; ``ConfigError`` (exit 2) without a password."""
    # Imported here: uvicorn and the app (Starlette, the templates, every page) are for this
    # command only; the page modules are also imported on their own (tests, the runner).
    import uvicorn

    from worker.interfaces.web.app import create_app

    settings = load_settings()
    configure_web_logging(settings.log_format, settings.log_level)
    app = create_app(settings)
    # log_config=None: uvicorn leaves its loggers alone, so they keep propagating to the root
    # handler configure_logging installed, whose filter masks CURPs in every line.
    uvicorn.run(app, host=args.host, port=args.port, log_config=None,
                proxy_headers=True, server_header=False)
    return 0
