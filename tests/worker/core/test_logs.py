"""The masking processor and the logging set-up."""

from __future__ import annotations

import json
import logging
from urllib.parse import unquote_plus

import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.people import synthetic_curps
from worker.core.logs import configure_logging, mask_curp, mask_personal_data, mask_text

CURP = "GODE561231HDFRRN09"


def test_curp_is_masked_in_any_string_value() -> None:
    """A CURP inside a longer message keeps only its first four and sex/state letters."""
    event = mask_personal_data(None, "info", {"event": f"consultando {CURP} ahora"})
    assert CURP not in event["event"]
    assert "GODE******HDF*****" in event["event"]


def test_email_with_embedded_curp_is_masked_whole() -> None:
    """A per-CURP address hides both the address and the CURP it carries."""
    text = mask_text(f"enviado a constancias+{CURP.lower()}@empresa.example")
    assert CURP.lower() not in text.lower()
    assert "@" in text and "empresa.example" not in text


def test_nested_keys_and_values_are_masked() -> None:
    """Lists, dicts, tuples and exception objects are walked."""
    event = mask_personal_data(None, "info", {
        "data": {CURP: [CURP, ("x", CURP)]}, "exc": ValueError(f"bad {CURP}")})
    assert CURP not in json.dumps(event, default=str)


def test_lowercase_curp_is_masked_too() -> None:
    """Case does not let a CURP through."""
    assert CURP.lower() not in mask_text(CURP.lower())
    assert mask_curp(CURP) == "GODE******HDF*****"


def test_json_logs_from_structlog_and_stdlib_are_masked(capsys) -> None:
    """Both structlog events and foreign stdlib records (Celery, uvicorn) come out masked JSON."""
    configure_logging("json", "debug")
    structlog.get_logger("t").info("hola", curp=CURP, correo="ana.perez@empresa.mx")
    logging.getLogger("celery.worker").info("Task received args=(%r,)", CURP)
    try:
        raise RuntimeError(f"falló {CURP}")
    except RuntimeError:
        structlog.get_logger("t").exception("boom")
    err = capsys.readouterr().err
    lines = [json.loads(line) for line in err.strip().splitlines()]
    assert len(lines) == 3
    assert CURP not in err and "ana.perez@empresa.mx" not in err
    assert lines[0]["event"] == "hola"


# --- encoded and split forms ------------------------------------------------------------------

_SEPARATORS = ["", " ", "%20", "+", "%2B", "  ", "-", "\u00a0"]


def _encode_char(c: str, how: int) -> str:
    """One character as a URL or a person may write it: as is, lower case, or %XX."""
    return [c, c.lower(), f"%{ord(c):02X}", f"%{ord(c):02x}", f"%{ord(c.lower()):02X}"][how]


def _flat(text: str) -> str:
    """What a reader recovers from a logged string: decoded, no separators, upper case."""
    decoded = unquote_plus(text)
    return "".join(c for c in decoded if not c.isspace() and c not in "+-").upper()


@st.composite
def _encoded_curps(draw: st.DrawFn) -> tuple[str, str]:
    """(CURP, the CURP percent-encoded character by character and split anywhere)."""
    curp = draw(st.sampled_from(synthetic_curps(40, seed=12)))
    parts = []
    for i, c in enumerate(curp):
        parts.append(_encode_char(c, draw(st.integers(0, 4))))
        if i < len(curp) - 1:
            parts.append(draw(st.sampled_from(_SEPARATORS)) if draw(st.integers(0, 5)) == 0
                         else "")
    return curp, "".join(parts)


@settings(max_examples=300, deadline=None)
@given(_encoded_curps(), st.sampled_from(["q={}", "GET /personas?q={}&p=2 HTTP/1.1",
                                          "curp: {} ok", "{}"]))
def test_curp_is_masked_whatever_its_url_encoding_or_splitting(example: tuple[str, str],
                                                               frame: str) -> None:
    """Percent-encoded characters, lower case and spaces, `+`, `%20`, `%2B` or dashes
    between any characters never let a CURP through the mask."""
    curp, encoded = example
    logged = mask_text(frame.format(encoded))
    assert curp not in _flat(logged), logged
    assert curp[:4] + "******" + curp[10:13] in logged.upper()


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["ana.perez", "constancias+gode561231hdfrrn09", "rh_2024"]),
       st.sampled_from(["empresa.mx", "correo.empresa.example"]),
       st.lists(st.integers(0, 4), min_size=40, max_size=40), st.sampled_from(["@", "%40"]))
def test_email_is_masked_whatever_its_url_encoding(local: str, domain: str, hows: list[int],
                                                   at: str) -> None:
    """An address with any of its characters percent-encoded and `%40` for `@` is masked."""
    def enc(text: str, offset: int) -> str:
        return "".join(_encode_char(c, hows[(i + offset) % 40] if c.isalnum() else 2)
                       if c not in ".-" else c for i, c in enumerate(text))

    encoded = f"{enc(local, 0)}{at}{enc(domain, 17)}"
    logged = mask_text(f"correo={encoded}&x=1")
    flat = unquote_plus(logged).lower()
    assert f"{local}@{domain}" not in flat and local not in flat, logged
    assert "***@" in flat


def test_the_examples_of_the_issue_are_masked() -> None:
    """The forms the review found in logs: `q=H%45MU710227HMCSBR08`, `HEMU710227%20HMCSBR08`."""
    assert mask_text("q=H%45MU710227HMCSBR08") == "q=HEMU******HMC*****"
    assert mask_text("HEMU710227%20HMCSBR08") == "HEMU******HMC*****"
    assert mask_text("HEMU710227+HMCSBR08") == "HEMU******HMC*****"
    assert mask_text("ana.perez%40empresa.mx") == "a***@e***.mx"
    assert mask_text("100% listo, 20 filas") == "100% listo, 20 filas"
