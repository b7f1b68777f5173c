"""Reading OLE compound files: legacy ``.xls`` (through xlrd), and an encrypted ``.xlsx``
(which is one) refused with the way to remove its password."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from worker.core.errors import InputError
from worker.intake.stream import SAVE_AS_XLSX, Row, SheetStream, why

__all__ = ["ole_sheets"]


def ole_sheets(path: Path) -> list[SheetStream]:
    name = path.name
    data = path.read_bytes()
    # An encrypted .xlsx is an OLE file holding these streams (names stored as UTF-16LE).
    if "EncryptedPackage".encode("utf-16-le") in data or "EncryptionInfo".encode(
            "utf-16-le") in data:
        raise InputError(f"{name} está protegido con contraseña; quite la contraseña en Excel "
                         "(Archivo > Información > Proteger libro) y vuelva a guardarlo")
    import xlrd  # here: only an .xls file pays for it

    try:
        book = xlrd.open_workbook(file_contents=data, on_demand=True)
    except Exception as exc:  # xlrd raises many types on broken input
        text = str(exc).lower()
        if "encrypt" in text or "password" in text:
            raise InputError(f"{name} está protegido con contraseña; quite la contraseña y "
                             "vuelva a guardarlo") from None
        raise InputError(f"{name} no se pudo leer como libro de Excel 97-2003 (.xls); "
                         f"{SAVE_AS_XLSX}") from None

    def make_rows(index: int) -> Callable[[], Iterator[tuple[int, Row]]]:
        def rows() -> Iterator[tuple[int, Row]]:
            try:
                sheet = book.sheet_by_index(index)
                for r in range(sheet.nrows):
                    values: Row = []
                    for cell in sheet.row(r):
                        if cell.ctype == xlrd.XL_CELL_DATE:
                            try:
                                values.append(xlrd.xldate_as_datetime(cell.value, book.datemode))
                            except (ValueError, OverflowError, xlrd.xldate.XLDateError):
                                values.append(cell.value)
                        elif cell.ctype in (xlrd.XL_CELL_EMPTY, xlrd.XL_CELL_BLANK):
                            values.append(None)
                        elif cell.ctype == xlrd.XL_CELL_ERROR:
                            values.append(xlrd.error_text_from_code.get(cell.value, "#ERROR"))
                        else:
                            values.append(cell.value)
                    yield r + 1, values
            except Exception as exc:
                raise InputError(f"{name}: la hoja {index + 1} está dañada ({why(exc)}); "
                                 f"{SAVE_AS_XLSX}") from None
        return rows

    try:
        names = book.sheet_names()
        visibility = [book.sheet_by_index(i).visibility == 0 for i in range(len(names))]
    except Exception:
        raise InputError(f"{name} no se pudo leer como libro de Excel 97-2003 (.xls); "
                         f"{SAVE_AS_XLSX}") from None
    return [SheetStream(n, make_rows(i), visibility[i]) for i, n in enumerate(names)]

