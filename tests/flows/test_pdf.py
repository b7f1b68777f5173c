"""Reading and verifying constancia PDFs with pypdf."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pytest

from fixtures.pdfs import imss_constancia, issste_constancia
from flows.errors import PermanentError
from flows.pdf import InvalidConstancia, read_constancia
from worker.core.statuses import Status

CURP = "GODE561231HDFRRN09"
OTHER = "PEMA800101MDFRRR05"
WHEN = datetime(2025, 3, 13, 10, 22, 5)


def _write(tmp_path: Path, data: bytes, name: str = "c.pdf") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_imss_entitled_round_trip(tmp_path: Path) -> None:
    """A VIGENTE constancia reads as entitled with its NSS, folio, dates and accented name."""
    pdf = _write(tmp_path, imss_constancia(curp=CURP, name="JOSÉ PEÑA NÚÑEZ", entitled=True,
                                           nss="12345678901", folio="CND-2025-000123",
                                           issued=WHEN))
    facts = read_constancia(pdf, portal="imss", curp=CURP)
    assert facts.result == Status.ENTITLED.value
    assert facts.nss == "12345678901"
    assert facts.name == "JOSÉ PEÑA NÚÑEZ"
    assert facts.folio == "CND-2025-000123"
    assert facts.issued_on == date(2025, 3, 13) == facts.valid_until
    assert facts.curp == CURP


def test_imss_not_entitled_round_trip(tmp_path: Path) -> None:
    """A SIN DERECHO constancia reads as not_entitled, without an NSS."""
    pdf = _write(tmp_path, imss_constancia(curp=CURP, name="ÁNGEL MUÑOZ", entitled=False,
                                           nss=None, folio="CND-9", issued=WHEN))
    facts = read_constancia(pdf, portal="imss", curp=CURP.lower())
    assert (facts.result, facts.nss, facts.name) == ("not_entitled", None, "ÁNGEL MUÑOZ")
    assert facts.valid_until == date(2025, 3, 13)


def test_issste_round_trip(tmp_path: Path) -> None:
    """The ISSSTE document reads as not_affiliated; it states no expiry."""
    pdf = _write(tmp_path, issste_constancia(curp=CURP, name="MARÍA ÑUÑEZ", folio="ANA-77",
                                             issued=WHEN))
    facts = read_constancia(pdf, portal="issste", curp=CURP)
    assert facts.result == Status.NOT_AFFILIATED.value
    assert (facts.name, facts.folio, facts.issued_on) == ("MARÍA ÑUÑEZ", "ANA-77",
                                                          date(2025, 3, 13))
    assert facts.valid_until is None


def test_constancia_of_another_curp_is_refused(tmp_path: Path) -> None:
    """A PDF that names a different CURP is an InvalidConstancia (masked in the message)."""
    pdf = _write(tmp_path, imss_constancia(curp=OTHER, name="X", entitled=False, nss=None,
                                           folio="F", issued=WHEN))
    with pytest.raises(InvalidConstancia) as raised:
        read_constancia(pdf, portal="imss", curp=CURP)
    assert "no corresponde" in str(raised.value)
    assert CURP not in str(raised.value) and OTHER not in str(raised.value)


def test_other_institutes_document_is_refused(tmp_path: Path) -> None:
    """An ISSSTE PDF offered as the IMSS constancia is refused."""
    pdf = _write(tmp_path, issste_constancia(curp=CURP, name="X", folio="F", issued=WHEN))
    with pytest.raises(InvalidConstancia, match="IMSS"):
        read_constancia(pdf, portal="imss", curp=CURP)


def test_html_error_page_saved_as_pdf_is_refused(tmp_path: Path) -> None:
    """A portal error page downloaded instead of the PDF is not a PDF."""
    pdf = _write(tmp_path, b"<html><body>Servicio no disponible</body></html>")
    with pytest.raises(InvalidConstancia, match="no es un PDF"):
        read_constancia(pdf, portal="issste", curp=CURP)


def test_truncated_pdf_is_refused(tmp_path: Path) -> None:
    """A download cut short is refused even though it starts like a PDF."""
    data = issste_constancia(curp=CURP, name="X", folio="F", issued=WHEN)
    pdf = _write(tmp_path, data[: len(data) // 2])
    with pytest.raises(InvalidConstancia, match="incompleto"):
        read_constancia(pdf, portal="issste", curp=CURP)


def test_garbled_pdf_is_refused(tmp_path: Path) -> None:
    """A file with PDF markers but no readable content is refused."""
    pdf = _write(tmp_path, b"%PDF-1.7\n" + b"\x00garbage" * 200 + b"\n%%EOF\n")
    with pytest.raises(InvalidConstancia):
        read_constancia(pdf, portal="imss", curp=CURP)


def test_missing_file_is_refused(tmp_path: Path) -> None:
    """A download that never reached the disk is an InvalidConstancia, not an OSError."""
    with pytest.raises(InvalidConstancia):
        read_constancia(tmp_path / "nope.pdf", portal="imss", curp=CURP)


def test_invalid_constancia_is_permanent_and_recorded_as_error() -> None:
    """The engine records it as error and does not retry it."""
    error = InvalidConstancia("x")
    assert isinstance(error, PermanentError)
    assert error.status is Status.ERROR and not error.transient


@pytest.mark.parametrize("entitled", [True, False], ids=["vigente", "sin-derecho"])
def test_imss_table_layout_with_label_and_value_on_different_lines_is_read(
    tmp_path: Path, entitled: bool
) -> None:
    """A constancia whose table prints the CURP label lines away from its value still gives
    the CURP, the verdict, the NSS and the validity."""
    pdf = _write(tmp_path, imss_constancia(curp=CURP, name="JOSÉ PEÑA NÚÑEZ", entitled=entitled,
                                           nss="12345678901" if entitled else None,
                                           folio="2503130001", issued=WHEN, layout="table"))
    from flows.pdf import pdf_text

    lines = pdf_text(pdf.read_bytes()).splitlines()
    assert not any("CURP" in line and CURP in line for line in lines)  # apart, as intended
    facts = read_constancia(pdf, portal="imss", curp=CURP)
    assert facts.curp == CURP
    assert facts.result == (Status.ENTITLED if entitled else Status.NOT_ENTITLED).value
    assert facts.nss == ("12345678901" if entitled else None)
    assert facts.valid_until == date(2025, 3, 13)


def test_imss_table_layout_naming_another_curp_is_refused(tmp_path: Path) -> None:
    """In a table layout too, a constancia of another CURP is InvalidConstancia."""
    pdf = _write(tmp_path, imss_constancia(curp=OTHER, name="MARÍA PÉREZ", entitled=False,
                                           nss=None, folio="2503130002", issued=WHEN,
                                           layout="table"))
    with pytest.raises(InvalidConstancia):
        read_constancia(pdf, portal="imss", curp=CURP)
