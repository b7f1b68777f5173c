"""Captcha solvers: a small neural network trained on the IMSS servlet's own drawing (the
default), Tesseract OCR with image clean-up (a fallback), or a person who types the answer.

All implement ``flows.base.CaptchaSolver``: ``solve(image, key=…)`` returns a guess and
``reject(key)`` says the guess was refused (the flow then refreshes the captcha and asks again,
up to ``settings.captcha_attempts``). An empty guess means "no answer: refresh the image".

``NetSolver`` reads the seven characters at their fixed places (``flows.captcha_net``) and
gives a confidence with each reading; below ``settings.captcha_min_confidence`` it answers
nothing, so the flow asks for a fresh image instead of spending a likely-wrong answer (each
wrong answer costs a round trip and counts against us at the portal's bot protection).
``bench/captcha.py`` measures it on real captchas and the threshold's effect.

``OcrSolver`` cleans the image the way captcha noise is usually attacked — threshold the ink
against the light background, drop 1-pixel-thick strokes (the curved noise lines), drop small
specks, scale up — and asks Tesseract for one line restricted to the servlet's alphabet. A
read that does not look like a captcha answer (wrong length or characters) is retried with a
second clean-up.

``ManualSolver`` writes ``<data_dir>/captchas/<key>.png`` (+ ``.json``) and waits for
``<key>.answer``, which ``answer()`` writes atomically (from the CLI prompt or the web page).
Keys are chosen by the flow; they are sanitised to ``[A-Za-z0-9_-]`` and must never contain a
CURP (a CURP-shaped token is replaced by a digest, defensively).

``KeepRefused`` wraps any of them for one check and keeps each refused image (with the answer
tried) in the check's evidence, so an operator can feed real failures back.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytesseract
from PIL import Image, ImageChops, ImageOps

from flows import captcha_net
from flows.errors import CaptchaUnsolved

if TYPE_CHECKING:
    from flows.base import CaptchaSolver
    from worker.core.settings import Settings

__all__ = [
    "NetSolver",
    "KeepRefused",
    "OcrSolver",
    "ManualSolver",
    "PendingCaptcha",
    "pending",
    "answer",
    "make_solver",
    "safe_key",
    "clean_image",
]

# What the IMSS captcha servlet draws (SPEC §3; flows.captcha_net holds it, apart from the
# sandbox on purpose). It is a whitelist for Tesseract, so a wider set only costs accuracy.
DEFAULT_ALPHABET = captcha_net.ALPHABET
DEFAULT_LENGTHS = (captcha_net.LENGTH, captcha_net.LENGTH)

_CURP_LIKE = re.compile(r"(?i)[A-Z][AEIOUX][A-Z]{2}\d{6}[HMX][A-Z]{5}[0-9A-Z]\d")


def safe_key(key: str) -> str:
    """A file-name-safe key: ``[A-Za-z0-9_-]``, at most 80 characters, never a CURP."""
    key = _CURP_LIKE.sub(
        lambda m: hashlib.sha256(m.group(0).upper().encode()).hexdigest()[:12], key
    )
    cleaned = re.sub(r"[^A-Za-z0-9_-]", "_", key)[:80]
    if not cleaned.strip("_"):
        raise ValueError("empty captcha key")
    return cleaned


# --- the network ----------------------------------------------------------------------------


_RECENT_READINGS = 64


class NetSolver:
    """The IMSS captcha read by ``flows.captcha_net`` in this process (numpy, no network);
    a reading less sure than ``min_confidence`` is no answer."""

    def __init__(self, *, min_confidence: float, weights: Path = captcha_net.WEIGHTS) -> None:
        self.net = captcha_net.load(weights)
        self.min_confidence = min_confidence
        self.last: dict[str, captcha_net.Reading] = {}
        self.solved = 0
        self.rejected = 0

    def read(self, image: bytes) -> captcha_net.Reading:
        """The reading whatever its confidence; ``OSError``/``ValueError`` for bytes that are
        not a whole image (``captcha solve`` reports those)."""
        return self.net.read(image)

    def solve(self, image: bytes, *, key: str) -> str:
        """The answer, or ``""`` (refresh) when unsure or the image does not decode."""
        try:
            reading = self.read(image)
        except (OSError, ValueError):
            return ""
        # Kept for KeepRefused's note (dropped on reject); bounded, since accepted answers are
        # never rejected and a worker lives for thousands of checks.
        self.last[key] = reading
        while len(self.last) > _RECENT_READINGS:
            self.last.pop(next(iter(self.last)))
        self.solved += 1
        return reading.answer if reading.confidence >= self.min_confidence else ""

    def reject(self, key: str) -> None:
        """Counted for the bench and logs; nothing to learn from one refusal."""
        self.last.pop(key, None)
        self.rejected += 1


# --- OCR ------------------------------------------------------------------------------------


def _ink_mask(gray: Image.Image, threshold: int) -> Image.Image:
    """255 where the pixel is darker than ``threshold`` (ink), 0 elsewhere (light background)."""
    return gray.point(lambda v: 255 if v < threshold else 0)


def _drop_thin_horizontal(mask: Image.Image) -> Image.Image:
    """Remove ink pixels with no ink directly above or below: 1-pixel-thick strokes, which is
    what the noise lines are, while glyph strokes are several pixels thick."""
    w, h = mask.size
    up = Image.new("L", (w, h), 0)
    up.paste(mask.crop((0, 1, w, h)), (0, 0))  # up[y] = mask[y+1]
    down = Image.new("L", (w, h), 0)
    down.paste(mask.crop((0, 0, w, h - 1)), (0, 1))  # down[y] = mask[y-1]
    supported = ImageChops.lighter(up, down)  # ink above or below
    return ImageChops.darker(mask, supported)  # ink here *and* there


def _drop_specks(mask: Image.Image, min_pixels: int) -> Image.Image:
    """Remove 8-connected ink components smaller than ``min_pixels`` (speckles, line scraps)."""
    w, h = mask.size
    ink = bytearray(1 if v else 0 for v in mask.tobytes())
    out = bytearray(w * h)
    seen = bytearray(w * h)
    for start in range(w * h):
        if not ink[start] or seen[start]:
            continue
        seen[start] = 1
        queue = deque([start])
        members = []
        while queue:
            i = queue.popleft()
            members.append(i)
            y, x = divmod(i, w)
            for dy in (-1, 0, 1):
                ny = y + dy
                if ny < 0 or ny >= h:
                    continue
                for dx in (-1, 0, 1):
                    nx = x + dx
                    if 0 <= nx < w:
                        j = ny * w + nx
                        if ink[j] and not seen[j]:
                            seen[j] = 1
                            queue.append(j)
        if len(members) >= min_pixels:
            for i in members:
                out[i] = 255
    return Image.frombytes("L", (w, h), bytes(out))


def clean_image(image: bytes, *, threshold: int = 190, scale: int = 2,
                min_pixels: int = 25) -> Image.Image | None:
    """Black text on white, noise lines and specks removed, scaled up, with a white margin;
    ``None`` when nothing text-like is left (Tesseract invents letters on a blank page)."""
    gray = Image.open(io.BytesIO(image)).convert("L")
    mask = _drop_specks(_drop_thin_horizontal(_ink_mask(gray, threshold)), min_pixels)
    if mask.getbbox() is None:
        return None
    text = ImageOps.invert(mask)
    text = text.resize((text.width * scale, text.height * scale), Image.Resampling.LANCZOS)
    return ImageOps.expand(text, border=20, fill=255)


#: Where Debian's tesseract-ocr-eng puts the model (TESSDATA_PREFIX, when set, comes first).
_TESSDATA_DIRS = (
    "/usr/share/tesseract-ocr/5/tessdata",
    "/usr/share/tesseract-ocr/4.00/tessdata",
    "/usr/share/tessdata",
)


class _LibTesseract:
    """Tesseract in this process (``tesserocr``), the model loaded once per thread.

    Running the ``tesseract`` program costs 0.17 s of CPU per image before it reads a single
    pixel (loading the LSTM model), against 0.02 s for a whole solve here — the same engine,
    the same model file, the same success rate (``bench/captcha.py``)."""

    #: One loaded model per thread and configuration, shared by every solver of the thread
    #: (a solver is made per check; loading costs as much as a dozen readings).
    _apis = threading.local()

    def __init__(self, tessdata: str, alphabet: str) -> None:
        self.tessdata = tessdata
        self.alphabet = alphabet

    @classmethod
    def load(cls, alphabet: str) -> _LibTesseract | None:
        """``None`` when tesserocr or the English model is missing (then the program is run)."""
        try:
            import tesserocr  # noqa: F401
        except ImportError:
            return None
        candidates = [os.environ.get("TESSDATA_PREFIX", ""), *_TESSDATA_DIRS]
        for folder in candidates:
            if folder and os.path.exists(os.path.join(folder, "eng.traineddata")):
                return cls(folder, alphabet)
        return None

    def read(self, image: Image.Image) -> str:
        import tesserocr  # here, as above: the optional OCR engine, loaded when first used

        apis = getattr(self._apis, "by_config", None)
        if apis is None:
            apis = self._apis.by_config = {}
        api = apis.get((self.tessdata, self.alphabet))
        if api is None:
            api = tesserocr.PyTessBaseAPI(
                path=self.tessdata, lang="eng", psm=tesserocr.PSM.SINGLE_LINE
            )
            api.SetVariable("tessedit_char_whitelist", self.alphabet)
            apis[(self.tessdata, self.alphabet)] = api
        api.SetImage(image)
        return str(api.GetUTF8Text())


class OcrSolver:
    """Tesseract on a cleaned image, one text line, alphabet whitelist: in process through
    ``tesserocr`` when it is installed (the default), else the ``tesseract`` program through
    ``pytesseract`` (also when ``tesseract_cmd`` names one)."""

    # Clean-ups tried in order until one yields a plausible answer: the default, then a darker
    # threshold (keeps light noise out of the glyphs), then a larger scale.
    _PASSES: tuple[dict[str, int], ...] = (
        {"threshold": 190, "scale": 2},
        {"threshold": 160, "scale": 2},
        {"threshold": 190, "scale": 3},
    )

    def __init__(
        self,
        *,
        alphabet: str = DEFAULT_ALPHABET,
        lengths: tuple[int, int] = DEFAULT_LENGTHS,
        tesseract_cmd: str | None = None,
        max_passes: int = 2,
    ) -> None:
        self.alphabet = alphabet
        self.lengths = lengths
        self.max_passes = max(1, min(max_passes, len(self._PASSES)))
        self._config = f"--psm 7 -c tessedit_char_whitelist={alphabet}"
        self._plausible = re.compile(
            f"^[{re.escape(alphabet)}]{{{lengths[0]},{lengths[1]}}}$"
        )
        self._lib = None if tesseract_cmd else _LibTesseract.load(alphabet)
        if tesseract_cmd:
            pytesseract.pytesseract.tesseract_cmd = tesseract_cmd
        # Tesseract's OpenMP threads only add contention on an image this small (measured: a
        # third slower on a busy 2-core worker); pytesseract passes our environment on.
        os.environ.setdefault("OMP_THREAD_LIMIT", "1")
        self.solved = 0
        self.rejected = 0

    def _read(self, image: Image.Image | None) -> str:
        if image is None:
            return ""
        try:
            if self._lib is not None:
                text = self._lib.read(image)
            else:
                text = pytesseract.image_to_string(image, config=self._config)
        except (pytesseract.TesseractError, RuntimeError):
            # Tesseract aborts on some nearly blank inputs; that is just "no reading".
            return ""
        return "".join(ch for ch in text if ch in self.alphabet)

    def solve(self, image: bytes, *, key: str) -> str:
        """Best reading of the captcha (may be wrong: the portal decides)."""
        readings: list[str] = []
        for params in self._PASSES[: self.max_passes]:
            reading = self._read(clean_image(image, **params))
            if self._plausible.match(reading):
                self.solved += 1
                return reading
            readings.append(reading)
        self.solved += 1
        # None looked right: send the one closest to a plausible length (the portal will
        # answer "El captcha no fue válido" and the flow asks for a fresh image).
        target = (self.lengths[0] + self.lengths[1]) / 2
        return min(readings, key=lambda r: abs(len(r) - target)) if readings else ""

    def reject(self, key: str) -> None:
        """Nothing to learn from one refusal; counted for the bench and logs."""
        self.rejected += 1


# --- manual ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PendingCaptcha:
    """A captcha waiting for a person."""

    key: str
    image_path: Path
    created: datetime


def _captcha_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "captchas"


def _atomic_write(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, then rename: readers never see a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def pending(data_dir: Path) -> list[PendingCaptcha]:
    """Captchas waiting for an answer, oldest first."""
    folder = _captcha_dir(data_dir)
    if not folder.is_dir():
        return []
    found: list[PendingCaptcha] = []
    for image in folder.glob("*.png"):
        key = image.stem
        if key.startswith(".") or (folder / f"{key}.answer").exists():
            continue
        created: datetime | None = None
        try:
            meta = json.loads((folder / f"{key}.json").read_text())
            created = datetime.fromisoformat(meta["created"])
        except (OSError, ValueError, KeyError):
            pass
        if created is None:
            try:
                created = datetime.fromtimestamp(image.stat().st_mtime, tz=UTC)
            except OSError:
                continue  # answered and cleaned up while we were listing
        found.append(PendingCaptcha(key=key, image_path=image, created=created))
    return sorted(found, key=lambda p: p.created)


def answer(data_dir: Path, key: str, text: str) -> None:
    """Give the answer a person typed for captcha ``key`` (atomic: the solver never reads half)."""
    text = text.strip()
    if not text:
        raise ValueError("empty captcha answer")
    _atomic_write(_captcha_dir(data_dir) / f"{safe_key(key)}.answer", text.encode())


class ManualSolver:
    """A person reads the image (CLI prompt or web page) and types the answer."""

    def __init__(self, data_dir: Path, timeout_s: float, poll_s: float = 0.2) -> None:
        self.folder = _captcha_dir(data_dir)
        self.timeout_s = timeout_s
        self.poll_s = poll_s

    def _files(self, key: str) -> tuple[Path, Path, Path]:
        return (
            self.folder / f"{key}.png",
            self.folder / f"{key}.json",
            self.folder / f"{key}.answer",
        )

    def _clear(self, key: str) -> None:
        for path in self._files(key):
            path.unlink(missing_ok=True)

    def solve(self, image: bytes, *, key: str) -> str:
        """Publish the image and wait for ``answer()``; ``CaptchaUnsolved`` after the timeout."""
        key = safe_key(key)
        png, meta, reply = self._files(key)
        reply.unlink(missing_ok=True)  # an answer to a previous image of this key is stale
        created = datetime.now(UTC)
        _atomic_write(meta, json.dumps({"key": key, "created": created.isoformat()}).encode())
        _atomic_write(png, image)
        deadline = time.monotonic() + self.timeout_s
        try:
            while True:
                try:
                    text = reply.read_text().strip()
                except FileNotFoundError:
                    text = ""
                if text:
                    return text
                if time.monotonic() >= deadline:
                    raise CaptchaUnsolved(
                        f"Nadie respondió el captcha en {self.timeout_s:g} s."
                    )
                time.sleep(self.poll_s)
        finally:
            self._clear(key)

    def reject(self, key: str) -> None:
        """The person's answer was refused: drop any leftovers; the flow publishes a new image."""
        self._clear(safe_key(key))


# --- evidence -------------------------------------------------------------------------------


class KeepRefused:
    """Wraps a solver for one check: each image whose answer is refused — by the portal, or by
    the solver itself (no answer) — is written to ``folder()`` as ``<key>.<ext>`` with
    ``<key>.json`` (the answer tried, its confidence when known, who refused it)."""

    def __init__(self, solver: CaptchaSolver, folder: Callable[[], Path]) -> None:
        self.solver = solver
        self._folder = folder
        self._given: dict[str, tuple[bytes, str]] = {}
        self.saved: list[Path] = []

    def solve(self, image: bytes, *, key: str) -> str:
        guess = self.solver.solve(image, key=key)
        self._given[key] = (image, guess)
        return guess

    def reject(self, key: str) -> None:
        given = self._given.pop(key, None)
        confidence = None
        reading = getattr(self.solver, "last", {}).get(key)
        if reading is not None:
            confidence = round(reading.confidence, 4)
        self.solver.reject(key)
        if given is None:
            return
        image, guess = given
        name = safe_key(key)
        folder = self._folder()
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}.{_image_suffix(image)}"
        _atomic_write(path, image)
        note = {"answer": guess, "confidence": confidence,
                "refused_by": "portal" if guess else "solver"}
        _atomic_write(folder / f"{name}.json", json.dumps(note).encode())
        self.saved.append(path)


def _image_suffix(image: bytes) -> str:
    if image.startswith(b"\xff\xd8"):
        return "jpg"
    if image.startswith(b"\x89PNG"):
        return "png"
    return "bin"


def make_solver(settings: Settings) -> CaptchaSolver:
    """The solver named by ``settings.captcha_solver``."""
    if settings.captcha_solver == "net":
        return NetSolver(min_confidence=settings.captcha_min_confidence)
    if settings.captcha_solver == "manual":
        return ManualSolver(settings.data_dir, settings.manual_captcha_timeout_s)
    if settings.captcha_solver == "ocr":
        return OcrSolver()
    raise ValueError(f"unknown captcha solver {settings.captcha_solver!r}")
