"""Read and verify a constancia PDF with pypdf: the verdict comes from the document itself.

``read_constancia`` checks, in order, that the file is a complete PDF (magic bytes, an end-of-file
marker, pypdf parses it), that it is the expected institute's constancia, that it names *this*
CURP, and then reads the result, name, folio and dates from its text. Anything else raises
``InvalidConstancia`` (permanent: downloading the same broken document again would not help the
engine decide; the check is recorded as ``error`` with the evidence).

The layout is not known ([A]): every fact is read from the words, so a table that prints a
label and its value on different lines of the text reads as well as "Label: value" lines.

Validity: an IMSS constancia is valid for one day (the PDF prints "Válida hasta"; when absent,
the issue date is used). The ISSSTE document states no expiry, so ``valid_until`` is ``None``:
the nightly re-check decides when to refresh it from the check's age.
"""

from __future__ import annotations

import io
import re
from datetime import date
from pathlib import Path

from pypdf import PdfReader
from pypdf.errors import PyPdfError

from flows import registry
from flows.base import PdfFacts
from flows.errors import PermanentError
from worker.core.logs import mask_curp
from worker.core.statuses import Status
from worker.core.text import fold

__all__ = ["InvalidConstancia", "read_constancia", "pdf_text"]

class InvalidConstancia(PermanentError):
    """The downloaded document is not a readable constancia for this person: recorded as
    ``error`` (with evidence), not retried."""

    status = Status.ERROR


# The labels and verdict phrases printed on the constancias (see fixtures/pdfs.py, which draws
# them as the portals do; each portal's heading is in its registry entry, ``pdf_title``).
# Matching is done on accent-folded, upper-cased, space-collapsed text
# so that line wrapping, justification and accent encoding do not matter.
_IMSS_NOT_ENTITLED = re.compile(r"SIN DERECHO A (?:LOS )?SERVICIOS? MEDICOS?")
_IMSS_ENTITLED = re.compile(r"\bVIGENTE\b(?:\W{0,5}NSS\W{0,3}(\d{11}))?")
_NSS = re.compile(r"\bNSS\W{0,3}(\d{11})\b")
_ISSSTE_NOT_AFFILIATED = re.compile(
    r"NO SE ENCONTRARON REGISTROS DE AFILIACION|\bNO AFILIAD[OA]\b|NO SE ENCUENTRA AFILIAD[OA]"
)
_CURP_FIELD = re.compile(r"\bCURP\s*:?\s*([A-Z0-9]{18})\b")
#: Any CURP-shaped word: a table may print the label "CURP" lines away from its value.
_CURP_SHAPE = re.compile(r"\b[A-Z][AEIOUX][A-Z]{2}\d{6}[HMX][A-Z]{5}[A-Z0-9]\d\b")
#: A folio holds digits: a table's next label ("FOLIO JUAN…") is not one.
_FOLIO = re.compile(r"\bFOLIO\s*:?\s*([A-Z0-9\-/]*\d[A-Z0-9\-/]*)\b")
_ISSUED = re.compile(r"FECHA DE EMISION\s*:?\s*(\d{1,2})/(\d{1,2})/(\d{4})")
_VALID_UNTIL = re.compile(r"VALIDA HASTA\s*:?\s*(\d{1,2})/(\d{1,2})/(\d{4})")
_LONG_DATE = re.compile(r"\bA (\d{1,2}) DE ([A-Z]+) DE (\d{4})\b")
_MONTHS = {
    m: i + 1
    for i, m in enumerate(
        "ENERO FEBRERO MARZO ABRIL MAYO JUNIO JULIO AGOSTO SEPTIEMBRE OCTUBRE NOVIEMBRE "
        "DICIEMBRE".split()
    )
}


def _fold(text: str) -> str:
    """Upper case, accents removed (Ñ kept as N), whitespace collapsed."""
    return fold(text).upper()


def pdf_text(data: bytes) -> str:
    """All the text of a PDF, page by page; ``InvalidConstancia`` if it is not a whole PDF."""
    if not data.startswith(b"%PDF-"):
        raise InvalidConstancia("El archivo descargado no es un PDF.")
    # A download cut short has no end-of-file marker; pypdf would silently "repair" it.
    if b"%%EOF" not in data[-1024:]:
        raise InvalidConstancia("El PDF descargado está incompleto (archivo truncado).")
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        pages = [page.extract_text() or "" for page in reader.pages]
    except (PyPdfError, ValueError, KeyError, TypeError, OSError) as exc:
        raise InvalidConstancia(f"El PDF descargado está dañado ({type(exc).__name__}).") from exc
    if not pages:
        raise InvalidConstancia("El PDF descargado no tiene páginas.")
    return "\n".join(pages)


def _field_line(raw: str, label: str) -> str | None:
    """The value after ``label:`` on its own line of the raw text (accents kept)."""
    for line in raw.splitlines():
        head, sep, value = line.partition(":")
        if sep and _fold(head) == label:
            return " ".join(value.split()) or None
    return None


def _dmy(match: re.Match[str] | None) -> date | None:
    if not match:
        return None
    day, month, year = (int(g) for g in match.groups())
    try:
        return date(year, month, day)
    except ValueError:
        return None


def _issued_on(folded: str) -> date | None:
    found = _dmy(_ISSUED.search(folded))
    if found:
        return found
    long = _LONG_DATE.search(folded)
    if long and long.group(2) in _MONTHS:
        try:
            return date(int(long.group(3)), _MONTHS[long.group(2)], int(long.group(1)))
        except ValueError:
            return None
    return None


def read_constancia(path: Path, *, portal: str, curp: str) -> PdfFacts:
    """Verify the constancia at ``path`` for ``curp`` and read its facts.

    ``portal`` is ``"imss"`` or ``"issste"``. Raises ``InvalidConstancia`` (Spanish message)
    when the file is not a complete PDF, is not that institute's constancia, names another CURP
    or states no recognisable result.
    """
    declared = registry.portal(portal)  # KeyError for an unknown portal
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InvalidConstancia("No se pudo leer el PDF descargado.") from exc
    raw = pdf_text(data)
    folded = _fold(raw)
    curp = curp.strip().upper()

    if declared.pdf_title not in folded:
        raise InvalidConstancia(f"El PDF descargado no es una constancia del {declared.title}.")
    # The labelled value first; any CURP-shaped word when a layout keeps them apart.
    named = _CURP_FIELD.findall(folded) or _CURP_SHAPE.findall(folded)
    if curp not in named:
        other = f" (menciona {mask_curp(named[0])})" if named else ""
        raise InvalidConstancia(
            f"La constancia no corresponde a la CURP {mask_curp(curp)}{other}."
        )

    nss: str | None = None
    if portal == "imss":
        # "SIN DERECHO" first: the not-entitled text may also mention the word "vigencia".
        if _IMSS_NOT_ENTITLED.search(folded):
            result = Status.NOT_ENTITLED.value
        elif entitled := _IMSS_ENTITLED.search(folded):
            result = Status.ENTITLED.value
            nss_match = entitled.group(1) or ((m := _NSS.search(folded)) and m.group(1))
            nss = nss_match or None
            if not nss:
                raise InvalidConstancia("La constancia dice VIGENTE pero no muestra el NSS.")
        else:
            raise InvalidConstancia("La constancia del IMSS no indica un resultado reconocible.")
    else:
        if not _ISSSTE_NOT_AFFILIATED.search(folded):
            raise InvalidConstancia(
                "La constancia del ISSSTE no contiene la declaración de no afiliación."
            )
        result = Status.NOT_AFFILIATED.value

    folio_match = _FOLIO.search(folded)
    issued_on = _issued_on(folded)
    valid_until: date | None = None
    if portal == "imss":
        valid_until = _dmy(_VALID_UNTIL.search(folded)) or issued_on
    return PdfFacts(
        curp=curp,
        result=result,
        name=_field_line(raw, "NOMBRE"),
        nss=nss,
        folio=_field_line(raw, "FOLIO") or (folio_match.group(1) if folio_match else None),
        issued_on=issued_on,
        valid_until=valid_until,
    )
