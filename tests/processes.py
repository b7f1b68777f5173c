"""Finding the process to kill in crash tests."""

from __future__ import annotations

import time

import psutil


def _is_driver(process: psutil.Process) -> bool:
    """Playwright's driver: the Node process a check-running Python process starts."""
    try:
        command = " ".join(process.cmdline())
    except psutil.Error:
        return False
    return "playwright" in command and "node" in command.split(" ", 1)[0]


def _has_a_page_open(process: psutil.Process) -> bool:
    """Whether ``process`` itself drives a browser (its own Playwright driver is a direct
    child) that has a page open right now. A worker process keeps its browser between checks,
    but a page (a renderer) only while it runs one."""
    try:
        drivers = [c for c in process.children() if _is_driver(c)]
        return any("--type=renderer" in " ".join(g.cmdline())
                   for d in drivers for g in d.children(recursive=True))
    except psutil.Error:
        return False


def child_running_a_check(parent_pid: int, timeout: float = 120) -> psutil.Process | None:
    """A process under ``parent_pid`` (a Celery pool process; an embedded child, which a fork
    server between them forked) that is running a check right now; ``None`` if none was seen
    within ``timeout`` or the parent ended."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            descendants = psutil.Process(parent_pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return None
        victim = next((c for c in descendants if _has_a_page_open(c)), None)
        if victim is not None:
            return victim
        time.sleep(0.2)
    return None


def fork_server_of(parent_pid: int, timeout: float = 60) -> psutil.Process | None:
    """The multiprocessing fork server under ``parent_pid`` once it has forked a child."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            children = psutil.Process(parent_pid).children()
        except psutil.NoSuchProcess:
            return None
        for child in children:
            try:
                if "multiprocessing.forkserver" in " ".join(child.cmdline()) and child.children():
                    return child
            except psutil.Error:
                continue
        time.sleep(0.2)
    return None
