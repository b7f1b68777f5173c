"""How ``constancias web`` serves the app: uvicorn's configuration, the Spanish start-up line,
and the warning for a page reachable from the network over plain HTTP."""

from __future__ import annotations

import ipaddress
import sys
from typing import Any

import uvicorn

from worker.core.settings import Settings

__all__ = ["server_config", "exposure_warning", "proxy_declared", "PageServer"]

_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}
_ANY = {"0.0.0.0", "::", ""}  # noqa: S104 - names of "every interface", not a choice made here


def server_config(app: Any, settings: Settings, *, host: str, port: int,
                  ssl_certfile: str | None = None, ssl_keyfile: str | None = None,
                  access_log: bool = True) -> uvicorn.Config:
    """uvicorn's configuration of the page: masking logs, the proxy settings, TLS if given."""
    # log_config=None: uvicorn leaves its loggers alone, so they keep propagating to the root
    # handler configure_logging installed, whose filter masks CURPs in every line.
    return uvicorn.Config(app, host=host, port=port, log_config=None, lifespan="auto",
                          access_log=access_log, server_header=False,
                          proxy_headers=settings.web_proxy_headers,
                          forwarded_allow_ips=settings.web_forwarded_allow_ips,
                          ssl_certfile=ssl_certfile, ssl_keyfile=ssl_keyfile)


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name or a network: it may reach beyond this machine


def proxy_declared(settings: Settings) -> bool:
    """Whether a proxy on another machine is trusted to say how clients came in (HTTPS)."""
    ips = [ip.strip() for ip in settings.web_forwarded_allow_ips.split(",") if ip.strip()]
    return settings.web_proxy_headers and any(not _is_loopback(ip) for ip in ips)


def exposure_warning(host: str, *, tls: bool, proxy_trusted: bool) -> str | None:
    """The Spanish warning for a page reachable from the network over plain HTTP, or ``None``.

    Behind a declared HTTPS proxy, plain HTTP between the proxy and the page is the usual
    set-up, so it is not warned about."""
    if tls or proxy_trusted or _is_loopback(host):
        return None
    return (f"Aviso: la página escucha en {host or 'todas las interfaces'} sin HTTPS: la "
            "contraseña y los datos de las personas viajarían sin cifrar por la red. Use "
            "--ssl-certfile y --ssl-keyfile o un proxy con HTTPS (véase el README), o "
            "--host 127.0.0.1 para usarla solo en este equipo.")


def startup_line(host: str, scheme: str, port: int | None) -> str:
    shown = "127.0.0.1" if host in _ANY else host
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    return (f"Abra {scheme}://{shown}:{port} en su navegador. Para detener la página, pulse "
            "Ctrl+C.")


class PageServer(uvicorn.Server):
    """uvicorn, saying in Spanish where to open the page once it listens (the real port,
    also when asked for port 0); uvicorn's own English start-up lines are not shown."""

    def __init__(self, config: uvicorn.Config, *, host: str, scheme: str) -> None:
        super().__init__(config)
        self.host, self.scheme = host, scheme

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets)
        if self.started:
            port = next((s.getsockname()[1] for srv in self.servers for s in srv.sockets or ()),
                        self.config.port)
            print(startup_line(self.host, self.scheme, port), file=sys.stderr, flush=True)
