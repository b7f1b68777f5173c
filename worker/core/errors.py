"""Errors that end a command with exit code 2: the input or the configuration is unusable.

Their message is one Spanish line for the person at the terminal or on the web page.
"""

from __future__ import annotations

__all__ = ["UserError", "InputError", "ConfigError"]


class UserError(Exception):
    """Something the user must fix; the CLI prints ``str(err)`` and exits with 2."""

    exit_code = 2


class InputError(UserError):
    """The spreadsheet cannot be used (unreadable, hostile, no CURP column…)."""


class ConfigError(UserError):
    """A ``CONSTANCIAS_*`` setting is missing or wrong."""
