"""Terminal helpers for ``run``: the manual captcha prompt.

With ``CONSTANCIAS_CAPTCHA_SOLVER=manual`` the worker processes leave each captcha image under
``DATA_DIR/captchas`` and wait; on a terminal, this thread shows it (as block characters, plus
the path of the PNG to open) and passes the typed answer back.
"""

from __future__ import annotations

import sys
import threading
from io import BytesIO
from pathlib import Path
from typing import Any, TextIO

from PIL import Image

__all__ = ["render_blocks", "CaptchaPrompt"]


def render_blocks(png: bytes, width: int = 72) -> str:
    """The image drawn with Unicode half blocks: two pixel rows per text line."""
    img = Image.open(BytesIO(png)).convert("L")
    height = max(2, round(img.height * width / img.width / 2) * 2)
    img = img.resize((width, height))
    px: Any = img.load()  # a grey image: each pixel is one int
    threshold = sum(img.tobytes()) / (width * height) * 0.8  # ink is darker than the average
    lines = []
    for y in range(0, height, 2):
        row = []
        for x in range(width):
            top, bottom = px[x, y] < threshold, px[x, y + 1] < threshold
            row.append("█" if top and bottom else "▀" if top else "▄" if bottom else " ")
        lines.append("".join(row).rstrip())
    return "\n".join(lines)


class CaptchaPrompt(threading.Thread):
    """Asks the person at the terminal for every pending captcha until stopped."""

    def __init__(self, data_dir: Path, stdin: TextIO = sys.stdin, out: TextIO = sys.stderr) -> None:
        super().__init__(daemon=True, name="captcha-prompt")
        self.data_dir = data_dir
        self.stdin, self.out = stdin, out
        self._stop = threading.Event()
        self._asked: set[str] = set()

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        # Imported here: the captcha module loads the OCR libraries, for manual captchas only.
        from flows.captcha import answer, pending

        while not self._stop.wait(0.3):
            for item in pending(self.data_dir):
                if item.key in self._asked:
                    continue
                self._asked.add(item.key)
                try:
                    picture = render_blocks(item.image_path.read_bytes())
                except OSError:
                    continue  # answered elsewhere (web page) meanwhile
                self.out.write(f"\n\nCaptcha pendiente ({item.image_path}):\n{picture}\n")
                self.out.write("Escriba los caracteres (respete mayúsculas y minúsculas): ")
                self.out.flush()
                text = self.stdin.readline().strip()
                if text:
                    try:
                        answer(self.data_dir, item.key, text)
                    except (OSError, ValueError):
                        pass
