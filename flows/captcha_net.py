"""Reads IMSS captchas: cut the seven characters at their fixed places, classify each with a
small neural network (numpy only), and say how sure the reading is.

The servlet (SPEC §3 "The captcha") draws character ``i`` in its own square centred at
x = 40 + i · 140/6, always at the same height, black on an orange background with white
circles drawn *before* the text. So the ink is the text alone, and each character lives in a
known window: no segmentation to guess. A window of ``WINDOW`` pixels around each centre,
darkness thresholded to ink / no ink, goes through one hidden layer (ReLU) to 51 softmax
outputs. Size and height are kept (the windows are not normalised), which is what tells
``C`` from ``c`` or ``S`` from ``s``: the baseline is fixed.

The weights (``captcha_net.npz``, beside this file) are trained by ``scripts/train_captcha.py``
on images drawn by the sandbox's copy of the generator (``fixtures/captcha_image.py``), never
on real captchas; that script's docstring records the seed and the figures it printed.

The geometry and the alphabet are written here again on purpose: the solver must work from
what the portal is known to draw, not import the sandbox.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = [
    "ALPHABET",
    "LENGTH",
    "SIZE",
    "WEIGHTS",
    "Reading",
    "Net",
    "windows",
    "ink",
    "load",
]

ALPHABET = "ABCDEFGHJKLMPQRSTUVWXYabcdefhjkmnpqrstuvwxy23456789"
LENGTH = 7
SIZE = (220, 40)
#: Window around each character: width × height, top row (the glyphs' ink spans rows ≈ 11–35).
WINDOW = (32, 32)
WINDOW_TOP = 6
#: Grey level below which a pixel is ink: text is black (≈ 0), the background orange (≈ 193)
#: and the circles white.
INK_BELOW = 110
WEIGHTS = Path(__file__).with_name("captcha_net.npz")


def _centres() -> tuple[float, ...]:
    step = (SIZE[0] - 2 * 40) / (LENGTH - 1)
    return tuple(40 + step * i for i in range(LENGTH))


_LEFTS = tuple(int(round(c)) - WINDOW[0] // 2 for c in _centres())


@dataclass(frozen=True)
class Reading:
    """One captcha read: the answer, its confidence (0..1) and each character's."""

    answer: str
    confidence: float
    per_char: tuple[float, ...]


def ink(image: Image.Image) -> np.ndarray:
    """``True`` where the pixel is ink, for an image of the servlet's size
    (another size is scaled to it: a saved screenshot of the captcha still reads)."""
    gray = image.convert("L")
    if gray.size != SIZE:
        gray = gray.resize(SIZE, Image.Resampling.BILINEAR)
    return np.asarray(gray) < INK_BELOW


def windows(mask: np.ndarray, dx: int = 0, dy: int = 0) -> np.ndarray:
    """The seven character windows of an ink mask, flattened: shape (7, w·h). ``dx``/``dy``
    shift every window (training uses it to cover small rendering differences)."""
    w, h = WINDOW
    padded = np.pad(mask, ((h, h), (w, w)))
    top = WINDOW_TOP + dy + h
    rows = padded[top : top + h]
    return np.stack([rows[:, x + dx + w : x + dx + 2 * w].ravel() for x in _LEFTS])


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    probabilities: np.ndarray = e / e.sum(axis=1, keepdims=True)
    return probabilities


class Net:
    """One hidden layer: ``softmax(relu(x·W1 + b1)·W2 + b2)``."""

    def __init__(self, w1: np.ndarray, b1: np.ndarray, w2: np.ndarray, b2: np.ndarray) -> None:
        self.w1, self.b1 = w1.astype(np.float32), b1.astype(np.float32)
        self.w2, self.b2 = w2.astype(np.float32), b2.astype(np.float32)

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """Rows of ``x`` (flattened windows) → rows of 51 probabilities."""
        if x.dtype == np.bool_:
            # An ink mask is 0/1, so its product with W1 is the sum of the ink pixels' rows
            # (≈ 75 of 1,024 per window): no BLAS call, whose threads cost more CPU than the
            # arithmetic on inputs this small (measured ≈ 5 ms against 0.4 ms per captcha).
            pre = np.stack([self.w1[np.flatnonzero(row)].sum(axis=0) for row in x])
        else:
            pre = x @ self.w1
        hidden = np.maximum(pre + self.b1, 0.0)
        return _softmax(hidden @ self.w2 + self.b2)

    def read(self, image: bytes) -> Reading:
        """Decode ``image`` (JPEG/PNG bytes) and read it; ``OSError``/``ValueError`` when the
        bytes are not a whole image."""
        with Image.open(io.BytesIO(image)) as img:
            img.load()
            mask = ink(img)
        probs = self.probabilities(windows(mask))
        best = probs.argmax(axis=1)
        per_char = probs[np.arange(LENGTH), best]
        # The answer is right only if all seven are: the product is that probability when the
        # characters' errors are independent (they are: each has its own angle and window).
        confidence = float(np.prod(per_char))
        answer = "".join(ALPHABET[i] for i in best)
        return Reading(answer, confidence, tuple(round(float(p), 4) for p in per_char))


@lru_cache(maxsize=4)
def load(path: Path = WEIGHTS) -> Net:
    """The trained network (loaded once per process)."""
    with np.load(path) as data:
        if str(data["alphabet"]) != ALPHABET:
            raise ValueError(f"{path} was trained for another alphabet")
        return Net(data["w1"], data["b1"], data["w2"], data["b2"])
