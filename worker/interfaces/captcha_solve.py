"""``constancias captcha solve IMAGE… [--json]``: the IMSS captcha reader on saved images.

For an operator checking the solver on images kept in a check's evidence (``captchas/``) or
saved by hand. Each file gets a line — ``archivo: respuesta (confianza 0.97)``, or with
``--json`` one object ``{"file": …, "answer": …, "confidence": …}`` — in the order given. A
file that is not a whole image gets one Spanish line on stderr; the others are still answered
and the command then ends with exit code 2.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from flows.captcha import NetSolver
from worker.core.settings import load_settings

__all__ = ["cmd_captcha"]


def cmd_captcha(args: Any) -> int:
    """Answer every image of ``args.images``; 2 when any could not be read."""
    settings = load_settings()
    solver = NetSolver(min_confidence=settings.captcha_min_confidence)
    failed = 0
    for name in args.images:
        try:
            reading = solver.read(Path(name).read_bytes())
        except (OSError, ValueError) as err:
            failed += 1
            print(f"constancias: no se pudo leer la imagen «{name}»: {_reason(err)}.",
                  file=sys.stderr)
            continue
        confidence = round(reading.confidence, 4)
        if args.json:
            print(json.dumps({"file": name, "answer": reading.answer, "confidence": confidence},
                             ensure_ascii=False), flush=True)
        else:
            unsure = "" if reading.confidence >= solver.min_confidence else (
                "; bajo el umbral: el flujo pediría otra imagen"
            )
            print(f"{name}: {reading.answer} (confianza {confidence:.2f}{unsure})", flush=True)
    return 2 if failed else 0


def _reason(err: Exception) -> str:
    """Why a file could not be read, in Spanish (Pillow's own messages are English)."""
    if isinstance(err, FileNotFoundError):
        return "no existe"
    if isinstance(err, IsADirectoryError):
        return "es una carpeta"
    if isinstance(err, PermissionError):
        return "sin permiso de lectura"
    return "no es una imagen completa"
