"""Finding the process to kill in crash tests."""

from __future__ import annotations

import time

import psutil


def _has_a_page_open(process: psutil.Process) -> bool:
    # A worker process keeps its browser between checks, but a page (a renderer) only while
    # it runs one.
    try:
        return any("--type=renderer" in " ".join(g.cmdline())
                   for g in process.children(recursive=True))
    except psutil.NoSuchProcess:
        return False


def child_running_a_check(parent_pid: int, timeout: float = 120) -> psutil.Process | None:
    """A direct child of ``parent_pid`` (a Celery pool process, an embedded child) that is
    running a check right now; ``None`` if none was seen within ``timeout`` or the parent
    ended."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            children = psutil.Process(parent_pid).children()
        except psutil.NoSuchProcess:
            return None
        victim = next((c for c in children if _has_a_page_open(c)), None)
        if victim is not None:
            return victim
        time.sleep(0.2)
    return None
