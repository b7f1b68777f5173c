"""The engine: one check, the limits, the embedded and Celery executors."""
