"""The HR web page (``constancias web``): upload a sheet, watch it, download the results."""

from __future__ import annotations

from typing import Any

__all__ = ["cmd_web"]


def cmd_web(args: Any) -> int:
    """``constancias web [--host H] [--port P]``; ``ConfigError`` (exit 2) without a password."""
    import uvicorn

    from worker.logs import configure_logging
    from worker.settings import load_settings
    from worker.web.app import create_app

    settings = load_settings()
    configure_logging(settings.log_format, settings.log_level)
    app = create_app(settings)
    # log_config=None: uvicorn's own loggers (access log included) propagate to the root
    # handler configure_logging installed, whose filter masks CURPs in every line.
    uvicorn.run(app, host=args.host, port=args.port, log_config=None,
                proxy_headers=True, server_header=False)
    return 0
