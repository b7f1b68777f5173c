"""The core every layer may use: statuses, settings, errors, logs, text folding, the roles
and scopes of the web page and the API (``roles``)."""

from __future__ import annotations

from worker.core.errors import ConfigError, InputError, UserError
from worker.core.logs import configure_logging, mask_curp, mask_email, mask_text
from worker.core.roles import ROLES, SCOPES, Permission, role_allows
from worker.core.settings import Settings, load_settings
from worker.core.statuses import PDF_BEARING, RETRYABLE, REUSABLE, Status, StatusClass
from worker.core.text import fold

__all__ = ["ConfigError", "InputError", "UserError", "configure_logging", "mask_curp",
           "mask_email", "mask_text", "Settings", "load_settings", "PDF_BEARING", "RETRYABLE",
           "REUSABLE", "Status", "StatusClass", "fold", "ROLES", "SCOPES", "Permission",
           "role_allows"]
