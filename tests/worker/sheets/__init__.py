# ruff: noqa: E501  (raw OOXML parts are clearer on one line each)
"""Builders of the messy and hostile spreadsheet corpus, generated at test time.

Every builder takes a folder and returns the path it wrote, so no binary lives in git.
The CURPs are synthetic (valid check digits computed with python-stdnum, invented names).
"""

from __future__ import annotations

import datetime as dt
import io
import struct
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from stdnum.mx import curp as stdnum_curp


def curp(first17: str) -> str:
    """A synthetic CURP: 17 characters plus the stdnum check digit."""
    return first17 + stdnum_curp.calc_check_digit(first17)


#: Valid synthetic CURPs used across the corpus.
VALID = [curp(c) for c in (
    "FEQA950314MDFRNN0", "IUSB880722HJCTLR0", "YAOC910105MNLXLR0", "AIMD000229HPLRXGA",
    "GUBE850930MGTTZL0", "QULF920417HVZRMR0",
)]

#: (value as typed, the reason's key words) for every kind of invalid CURP.
INVALID_KINDS: list[tuple[str, str]] = [
    ("GODE56123HDFRRN0", "caracteres"),                     # too short
    ("GODE561231HDFRRN091", "caracteres"),                  # too long
    ("ÑUÑE561231HDFRRN09", "Ñ"),                            # Ñ instead of X
    ("GODE561231HDF*RN09", "no permitidos"),                # stray symbol
    ("GODE56I231HDFRRN09", "posiciones 5-10"),              # letter in the date
    ("GODE5612O1HDFRRN09", "cero"),                         # letter O for zero
    ("GODE561331HDFRRN09", "fecha de nacimiento"),          # month 13
    ("GODE561231ZDFRRN09", "sexo"),                         # sex Z
    (curp("GODE561231HZZRRN0"), "entidad"),                 # state ZZ
    (curp("BUEY561231HDFRRN0"), "palabra"),                 # forbidden word
    ("GODE561231HDFRRN08", "verificador"),                  # wrong check digit
]


def write_xlsx(path: Path, sheets: dict[str, Sequence[Sequence[Any]]],
               merges: dict[str, list[str]] | None = None,
               hidden: Iterable[str] = ()) -> Path:
    """An .xlsx with the given sheets (rows of values), merged ranges and hidden sheets."""
    from openpyxl import Workbook

    wb = Workbook()
    wb.remove(wb.active)
    for title, rows in sheets.items():
        ws = wb.create_sheet(title)
        for row in rows:
            ws.append(list(row))
        for ref in (merges or {}).get(title, []):
            ws.merge_cells(ref)
        if title in hidden:
            ws.sheet_state = "hidden"
    wb.save(path)
    return path


def write_csv(path: Path, rows: Sequence[Sequence[Any]], *, encoding: str = "utf-8",
              delimiter: str = ",", bom: bool = False) -> Path:
    """A CSV in the given encoding and delimiter (quotes only where the csv module needs)."""
    import csv

    buffer = io.StringIO(newline="")
    csv.writer(buffer, delimiter=delimiter, lineterminator="\r\n").writerows(rows)
    data = buffer.getvalue().encode(encoding)
    if bom:
        data = {"utf-8": b"\xef\xbb\xbf", "utf-16-le": b"\xff\xfe"}[encoding] + data
    path.write_bytes(data)
    return path


# --- raw .xlsx parts, for files openpyxl would never write ------------------------------------

_CONTENT_TYPES = """<?xml version="1.0" encoding="UTF-8"?>
<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">
<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>
<Default Extension="xml" ContentType="application/xml"/>
<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>
<Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>
<Override PartName="/xl/sharedStrings.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/>
</Types>"""
_ROOT_RELS = """<?xml version="1.0" encoding="UTF-8"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">
<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/>
</Relationships>"""
WORKBOOK = """<?xml version="1.0" encoding="UTF-8"?>
<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">
<sheets><sheet name="Hoja1" sheetId="1" r:id="rId1"/></sheets></workbook>"""
_WORKBOOK_RELS = """<?xml version="1.0" encoding="UTF-8"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">
<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/>
<Relationship Id="rId2" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/sharedStrings" Target="sharedStrings.xml"/>
</Relationships>"""
SHEET_HEAD = ('<?xml version="1.0" encoding="UTF-8"?>\n<worksheet xmlns='
              '"http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>')
SHEET_TAIL = "</sheetData></worksheet>"
EMPTY_STRINGS = ('<?xml version="1.0" encoding="UTF-8"?>\n<sst xmlns='
                 '"http://schemas.openxmlformats.org/spreadsheetml/2006/main"></sst>')


def inline_row(number: int, values: Sequence[str]) -> str:
    cells = "".join(f'<c r="{chr(65 + i)}{number}" t="inlineStr"><is><t>{v}</t></is></c>'
                    for i, v in enumerate(values))
    return f'<row r="{number}">{cells}</row>'


def write_raw_xlsx(path: Path, sheet_xml: str | bytes | Iterable[bytes], *,
                   shared_strings: str = EMPTY_STRINGS, workbook: str = WORKBOOK) -> Path:
    """A minimal .xlsx from raw XML parts; ``sheet_xml`` may be streamed as byte chunks."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("[Content_Types].xml", _CONTENT_TYPES)
        zf.writestr("_rels/.rels", _ROOT_RELS)
        zf.writestr("xl/workbook.xml", workbook)
        zf.writestr("xl/_rels/workbook.xml.rels", _WORKBOOK_RELS)
        zf.writestr("xl/sharedStrings.xml", shared_strings)
        if isinstance(sheet_xml, str | bytes):
            zf.writestr("xl/worksheets/sheet1.xml", sheet_xml)
        else:
            with zf.open("xl/worksheets/sheet1.xml", "w", force_zip64=True) as fh:
                for chunk in sheet_xml:
                    fh.write(chunk)
    return path


def simple_sheet(rows: Sequence[Sequence[str]]) -> str:
    return SHEET_HEAD + "".join(inline_row(i + 1, r) for i, r in enumerate(rows)) + SHEET_TAIL


# --- hostile files ----------------------------------------------------------------------------

BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
<!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
<!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
<!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
<!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
<!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">]>"""


def billion_laughs_in_sheet(path: Path) -> Path:
    body = SHEET_HEAD.split("\n", 1)[1]
    sheet = BILLION_LAUGHS + "\n" + body + inline_row(1, ["CURP"]) + inline_row(
        2, ["&lol9;"]) + SHEET_TAIL
    return write_raw_xlsx(path, sheet)


def billion_laughs_in_strings(path: Path) -> Path:
    strings = BILLION_LAUGHS + ('\n<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/'
                                '2006/main"><si><t>&lol9;</t></si></sst>')
    return write_raw_xlsx(path, simple_sheet([["CURP"], [VALID[0]]]), shared_strings=strings)


def quadratic_blowup(path: Path) -> Path:
    """One big entity referenced many times (no nesting): the "quadratic blowup" attack."""
    big = "A" * 50_000
    sheet = (f'<?xml version="1.0"?>\n<!DOCTYPE w [<!ENTITY a "{big}">]>\n'
             + SHEET_HEAD.split("\n", 1)[1] + inline_row(1, ["CURP"])
             + inline_row(2, ["&a;" * 50_000]) + SHEET_TAIL)
    return write_raw_xlsx(path, sheet)


def zip_bomb(path: Path, uncompressed_mb: int = 300) -> Path:
    """A real bomb: a sheet of ``uncompressed_mb`` MB of rows that deflate to almost nothing."""
    row = inline_row(2, ["X" * 60]).encode()
    count = uncompressed_mb * 1024 * 1024 // len(row)

    def chunks() -> Iterable[bytes]:
        yield SHEET_HEAD.encode() + inline_row(1, ["CURP"]).encode()
        block = row * 4096
        for _ in range(count // 4096):
            yield block
        yield SHEET_TAIL.encode()
    return write_raw_xlsx(path, chunks())


def lying_zip(path: Path, declared: int = 3 * 1024**3) -> Path:
    """A valid small .xlsx whose zip directory declares a sheet of ``declared`` bytes."""
    write_raw_xlsx(path, simple_sheet([["CURP"], [VALID[0]]]))
    data = bytearray(path.read_bytes())
    name = b"xl/worksheets/sheet1.xml"
    # Central directory entry: signature, then the uncompressed size at offset 24.
    at = data.find(b"PK\x01\x02")
    while at != -1:
        name_len = struct.unpack_from("<H", data, at + 28)[0]
        if data[at + 46: at + 46 + name_len] == name:
            struct.pack_into("<I", data, at + 24, min(declared, 0xFFFFFFFE))
        at = data.find(b"PK\x01\x02", at + 4)
    path.write_bytes(bytes(data))
    return path


def truncated(source: Path, path: Path) -> Path:
    """The first half of a real .xlsx (an interrupted download)."""
    data = source.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def encrypted(source: Path, path: Path, password: str = "secreta") -> Path:  # noqa: S107
    """A real password-protected .xlsx (ECMA-376 agile encryption, as Excel writes it)."""
    from msoffcrypto.format.ooxml import OOXMLFile

    with source.open("rb") as src, path.open("wb") as out:
        office = OOXMLFile(src)
        office.encrypt(password, out)
    return path


def garbage(path: Path, size: int = 50_000, seed: int = 7) -> Path:
    import random

    path.write_bytes(random.Random(seed).randbytes(size))
    return path


def office_zip(path: Path, kind: str) -> Path:
    """A zip that is some other office format (``xlsb``, ``ods``, ``docx``)."""
    parts = {"xlsb": {"xl/workbook.bin": b"\x00"},
             "ods": {"mimetype": b"application/vnd.oasis.opendocument.spreadsheet",
                     "content.xml": b"<office:document-content/>"},
             "docx": {"word/document.xml": b"<w:document/>"}}[kind]
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in parts.items():
            zf.writestr(name, data)
    return path


def dated(year: int, month: int, day: int) -> dt.datetime:
    return dt.datetime(year, month, day)
