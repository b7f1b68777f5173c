"""Synthetic people for engine tests: valid CURPs and the sandbox's expected statuses."""

from __future__ import annotations

import random
from pathlib import Path

from openpyxl import Workbook
from stdnum.mx import curp as stdcurp

_CONSONANTS = "BCDFGHJKLMNPQRSTVZ"
_VOWELS = "AEIOU"
_STATES = ["AS", "BC", "CH", "DF", "GT", "JC", "MC", "MN", "NL", "OC", "PL", "QT", "SP", "VZ", "YN"]

IMSS_STATUS = {"not_entitled": "not_entitled", "entitled": "entitled",
               "not_found": "curp_not_found", "inconsistent": "data_inconsistent",
               "daily_limit": "daily_limit"}
ISSSTE_STATUS = {"not_affiliated": "not_affiliated", "affiliated": "affiliated",
                 "not_found": "curp_not_found"}


def synthetic_curps(n: int, seed: int = 7) -> list[str]:
    """``n`` distinct CURPs valid by format, date, state, forbidden words and check digit."""
    rng = random.Random(seed)
    out: list[str] = []
    while len(out) < n:
        base = (rng.choice(_CONSONANTS) + rng.choice(_VOWELS) + rng.choice(_CONSONANTS)
                + rng.choice(_CONSONANTS) + f"{rng.randint(60, 99):02d}{rng.randint(1, 12):02d}"
                f"{rng.randint(1, 28):02d}" + rng.choice("HM") + rng.choice(_STATES)
                + "".join(rng.choice(_CONSONANTS) for _ in range(3)) + "0")
        candidate = base + stdcurp.calc_check_digit(base)
        if stdcurp.is_valid(candidate) and candidate not in out:
            out.append(candidate)
    return out


def expected(curp: str) -> dict[str, str]:
    """What the sandbox will answer for ``curp`` (no overrides), as status codes."""
    from fixtures.population import person_for

    p = person_for(curp)
    assert p is not None
    return {"imss": IMSS_STATUS[p.imss], "issste": ISSSTE_STATUS[p.issste]}


def write_sheet(path: Path, curps: list[str]) -> Path:
    """A small onboarding sheet with a header and one other column."""
    wb = Workbook()
    ws = wb.active
    ws.append(["No. empleado", "Nombre", "CURP"])
    for i, c in enumerate(curps, start=1):
        ws.append([f"E{i:03d}", f"Persona {i}", c])
    wb.save(path)
    return path
