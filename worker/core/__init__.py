"""The core every layer may use: statuses, settings, errors, logs, text."""
