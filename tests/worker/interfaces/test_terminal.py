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
