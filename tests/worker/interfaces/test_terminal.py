"""The manual captcha prompt of `run` on a terminal."""

from __future__ import annotations

import io
import random
import threading
from pathlib import Path

from fixtures.captcha_image import random_text, render
from flows.captcha import ManualSolver
from worker.interfaces.terminal import CaptchaPrompt, render_blocks


def test_typed_answer_reaches_the_waiting_solver(tmp_path: Path) -> None:
    """A worker's manual solver waits; the prompt shows the captcha and hands back the typed text."""
    text = random_text(random.Random(5))
    image = render(text, rng=random.Random(5))
    solver = ManualSolver(tmp_path, timeout_s=20, poll_s=0.05)
    got: list[str] = []
    t = threading.Thread(target=lambda: got.append(solver.solve(image, key="chk-1")))
    t.start()
    out = io.StringIO()
    prompt = CaptchaPrompt(tmp_path, stdin=io.StringIO(text + "\n"), out=out)
    prompt.start()
    t.join(20)
    prompt.stop()
    assert got == [text]
    assert "Captcha pendiente" in out.getvalue() and "█" in out.getvalue()


def test_blocks_have_ink_where_the_text_is() -> None:
    """The block drawing is not blank and keeps the image's aspect (two pixel rows per line)."""
    art = render_blocks(render("Ab3dE", rng=random.Random(1)), width=60)
    assert sum(ch in "█▀▄" for ch in art) > 40
    assert all(len(line) <= 60 for line in art.splitlines())


def _run_on_a_terminal(args: list[str], env: dict[str, str], cwd: Path) -> str:
    """Run ``constancias ARGS`` with stdout and stderr on a pseudo-terminal; all it printed."""
    import os
    import pty
    import subprocess
    import sys

    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "worker.interfaces.cli", *args], cwd=cwd, env=env,
                            stdin=subprocess.DEVNULL, stdout=slave, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: every writer has closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert proc.wait(300) == 0, b"".join(chunks).decode(errors="replace")[-2000:]
    return b"".join(chunks).decode(errors="replace")


def test_run_on_a_terminal_shows_the_progress_line_not_the_worker_logs(tmp_path: Path) -> None:
    """On a terminal, `run --sandbox` shows the progress line, warnings on lines of their own
    (never glued to the progress line) and the summary, but no info lines of the worker
    processes; the whole log still goes to CONSTANCIAS_LOG_FILE."""
    import json
    import os
    import re

    from tests.people import synthetic_curps, write_sheet

    # One person the IMSS sandbox finds inconsistent: a check that fails logs a warning.
    sheet = write_sheet(tmp_path / "altas.xlsx", ["RUHC780702HMCZRR02", *synthetic_curps(3)])
    log_file = tmp_path / "logs" / "constancias.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONSTANCIAS_")}
    env |= {"CONSTANCIAS_DATA_DIR": str(tmp_path / "data"), "CONSTANCIAS_LOG_FORMAT": "json",
            "CONSTANCIAS_LOG_FILE": str(log_file), "CONSTANCIAS_CONCURRENCY": "2"}
    out = _run_on_a_terminal(["run", str(sheet), "--sandbox", "--out", str(tmp_path / "out")],
                             env, tmp_path)
    assert "Avance: IMSS 4/4" in out and "Reporte:" in out
    assert '"level": "info"' not in out and "check_started" not in out
    warnings = [m.start() for m in re.finditer(r'\{"', out)]
    assert warnings, out  # the inconsistent person's check_failed
    for start in warnings:
        # Each log line begins a line of its own, or clears the (progress) line it lands on.
        assert out[start - 1] == "\n" or out[:start].endswith("\r\x1b[K"), out[start - 80:start]
    for line in out.replace("\r\x1b[K", "\n").splitlines():
        assert not ("Avance:" in line and '{"' in line), line
    events = [json.loads(line) for line in log_file.read_text().splitlines()]
    started = [e for e in events if e["event"] == "check_started"]
    # Every check started (an IMSS check that waited for its mail starts twice: its two steps).
    assert len({e["check_id"] for e in started}) == 8
    assert all(e["level"] == "info" for e in started)
    assert any(e["event"] == "check_failed" for e in events)
    assert "RUHC780702HMCZRR02" not in log_file.read_text()


def test_a_log_line_on_a_terminal_clears_the_line_first() -> None:
    """A log record written to a terminal starts by clearing the current line (where a
    progress line may be), and written elsewhere it does not."""
    import io
    import logging

    from worker.core.logs import _TerminalHandler

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "hola", None, None)
    tty, plain = Tty(), io.StringIO()
    _TerminalHandler(tty).emit(record)
    _TerminalHandler(plain).emit(record)
    assert tty.getvalue() == "\r\x1b[Khola\n"
    assert plain.getvalue() == "hola\n"
