"""The masking processor and the logging set-up."""

from __future__ import annotations

import json
import logging

import structlog

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
