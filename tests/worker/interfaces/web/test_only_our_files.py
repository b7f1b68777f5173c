"""Purge, the file routes, folder listings and the zip touch only the files constancias
recorded for a batch, even when its folder is HR's own (``run --out .`` in a home folder)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import openpyxl
from sqlalchemy import update

from tests.people import synthetic_curps, write_sheet
from tests.worker.interfaces.web.conftest import WebServer
from worker.services.batches import prepare_batch
from worker.services.purge import purge
from worker.storage.repository import Batch, Storage

CURP = synthetic_curps(1, seed=17)[0]

#: Files that were in HR's folder before constancias ran, and must stay untouched.
THEIRS = ["contrato.txt", "notas.txt", ".ssh/id_rsa", "ajeno.pdf", "constancias/OTRO/viejo.pdf",
          f"constancias/{CURP}/suelto.pdf"]


def _plant(folder: Path, elsewhere: Path) -> None:
    """HR's unrelated files, a symlink to a file and one to a folder outside, in ``folder``."""
    for name in THEIRS:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"%PDF-1.4 ajeno" if name.endswith(".pdf") else b"privado")
    elsewhere.mkdir()
    (elsewhere / "secreto.pdf").write_bytes(b"%PDF-1.4 secreto")
    (folder / "enlace.pdf").symlink_to(elsewhere / "secreto.pdf")
    (folder / "enlace-dir").symlink_to(elsewhere, target_is_directory=True)


def _batch_in(storage: Storage, folder: Path, tmp_path: Path) -> str:
    """A finished batch stored with HR's folder as its own (as ``--out .`` did), with a PDF
    for IMSS and a failed ISSSTE check that kept evidence, all written where the engine does."""
    sheet = write_sheet(tmp_path / "altas.xlsx", [CURP])
    bid = storage.create_batch(key="k", source_name="altas.xlsx", portals=["imss", "issste"],
                               columns=[], out_dir=folder,
                               rows=[{"row_number": 2, "value": CURP, "curp": CURP,
                                      "reason": None, "duplicate_of": None, "extra": {}}])
    (folder / "entrada.xlsx").write_bytes(sheet.read_bytes())
    home = folder / "constancias" / CURP
    pdf = home / "imss.pdf"
    pdf.write_bytes(b"%PDF-1.4 nuestro")
    evidence = home / "evidencia" / "issste-0"
    evidence.mkdir(parents=True)
    (evidence / "page-1.png").write_bytes(b"\x89PNG")
    (evidence / "check.json").write_text('{"status": "error"}')
    checks = dict((portal, cid) for cid, portal in storage.pending_check_ids(bid))
    storage.record_result(checks["imss"], status="not_entitled", detail="", pdf_path=pdf)
    storage.record_result(checks["issste"], status="error", detail="falló",
                          evidence_path=evidence)
    storage.finish_batch(bid, None)
    return bid


def _setup(web: WebServer, tmp_path: Path) -> tuple[str, Path, Storage]:
    folder = tmp_path / "rh"
    folder.mkdir()
    _plant(folder, tmp_path / "fuera")
    storage = web.app.state.web.storage
    return _batch_in(storage, folder, tmp_path), folder, storage


def test_file_routes_serve_and_list_only_recorded_files(web: WebServer, tmp_path: Path) -> None:
    """Unrelated files, symlinks and stray PDFs in the batch folder answer 404 and are not
    listed; the batch's own PDF and evidence are served."""
    bid, _folder, _storage = _setup(web, tmp_path)
    client = web.client()
    base = f"/lotes/{bid}/archivos/"
    for name in [*THEIRS, ".ssh", "constancias/OTRO", "enlace.pdf", "enlace-dir",
                 "enlace-dir/secreto.pdf"]:
        r = client.get(base + name)
        assert r.status_code == 404, name
        assert b"privado" not in r.content and b"ajeno" not in r.content
    assert client.get(base + f"constancias/{CURP}/imss.pdf").content == b"%PDF-1.4 nuestro"
    assert client.get(base + f"constancias/{CURP}/evidencia/issste-0/check.json").json() == {
        "status": "error"}
    listing = client.get(base + "constancias")
    assert listing.status_code == 200
    assert f"archivos/constancias/{CURP}" in listing.text and "OTRO" not in listing.text
    listing = client.get(base + f"constancias/{CURP}")
    assert "imss.pdf" in listing.text and "evidencia/" in listing.text
    assert "suelto.pdf" not in listing.text


def test_zip_holds_only_recorded_files_and_everything_its_report_links(
        web: WebServer, tmp_path: Path) -> None:
    """The batch zip carries the report, the PDF and the evidence the report links to, and
    none of the folder's other files or symlinks."""
    bid, _folder, _storage = _setup(web, tmp_path)
    r = web.client().get(f"/lotes/{bid}/zip")
    assert r.status_code == 200
    archive = zipfile.ZipFile(io.BytesIO(r.content))
    names = set(archive.namelist())
    home = f"constancias/{CURP}"
    assert names == {"reporte.xlsx", f"{home}/imss.pdf",
                     f"{home}/evidencia/issste-0/page-1.png",
                     f"{home}/evidencia/issste-0/check.json"}
    workbook = openpyxl.load_workbook(io.BytesIO(archive.read("reporte.xlsx")))
    links = {cell.hyperlink.target for sheet in workbook for row in sheet.iter_rows()
             for cell in row if cell.hyperlink is not None and cell.hyperlink.target}
    assert f"{home}/imss.pdf" in links
    assert any("evidencia" in link for link in links)
    for link in links:
        assert link in names or any(n.startswith(link.rstrip("/") + "/") for n in names), link


def test_zip_of_a_running_batch_links_only_what_it_holds(web: WebServer,
                                                         tmp_path: Path) -> None:
    """The zip of a batch still running carries a partial report whose PDF and evidence
    links lead to files inside the zip (the report is written elsewhere first)."""
    bid, _folder, storage = _setup(web, tmp_path)
    with storage.session() as s:
        s.execute(update(Batch).where(Batch.id == bid).values(state="running"))
    archive = zipfile.ZipFile(io.BytesIO(web.client().get(f"/lotes/{bid}/zip").content))
    names = set(archive.namelist())
    assert f"constancias/{CURP}/imss.pdf" in names
    workbook = openpyxl.load_workbook(io.BytesIO(archive.read("reporte.xlsx")))
    links = {cell.hyperlink.target for sheet in workbook for row in sheet.iter_rows()
             for cell in row if cell.hyperlink is not None and cell.hyperlink.target}
    assert f"constancias/{CURP}/imss.pdf" in links
    for link in links:
        assert link in names or any(n.startswith(link.rstrip("/") + "/") for n in names), link


def test_purge_removes_only_recorded_files(web: WebServer, tmp_path: Path) -> None:
    """Purging the batch removes its input copy, PDF and evidence, and leaves HR's files, the
    symlinks and what they point to exactly where they were."""
    bid, folder, storage = _setup(web, tmp_path)
    web.client().get(f"/lotes/{bid}/reporte")  # the report, written into the batch folder
    assert (folder / "reporte.xlsx").is_file()

    counts = purge(web.settings, storage, 0)

    assert counts["batches"] == 1
    assert counts["files"] == 5  # input copy, report, PDF, two evidence files
    for name in THEIRS:
        assert (folder / name).read_bytes() in (b"privado", b"%PDF-1.4 ajeno"), name
    assert (folder / "enlace.pdf").is_symlink() and (folder / "enlace-dir").is_symlink()
    assert (tmp_path / "fuera" / "secreto.pdf").is_file()
    for ours in ("entrada.xlsx", "reporte.xlsx", f"constancias/{CURP}/imss.pdf",
                 f"constancias/{CURP}/evidencia"):
        assert not (folder / ours).exists(), ours


def test_run_into_a_folder_with_files_writes_into_a_subfolder_of_its_own(
        web: WebServer, tmp_path: Path) -> None:
    """A batch asked to write into a folder that already holds files gets a subfolder named
    after it; a new or empty folder is used as it is."""
    folder = tmp_path / "rh"
    folder.mkdir()
    (folder / "contrato.txt").write_bytes(b"privado")
    storage = web.app.state.web.storage
    sheet = write_sheet(tmp_path / "altas.xlsx", [CURP])
    bid, _ = prepare_batch(web.settings, storage, sheet, ["issste"], out_dir=folder)
    own = Path(storage.get_batch(bid).out_dir)
    assert own == (folder / f"constancias-{bid}").resolve()
    assert (own / "entrada.xlsx").is_file()
    assert sorted(p.name for p in folder.iterdir()) == ["constancias-" + bid, "contrato.txt"]
    fresh = tmp_path / "nueva"
    other = write_sheet(tmp_path / "otra.xlsx", synthetic_curps(1, seed=18))
    bid2, _ = prepare_batch(web.settings, storage, other, ["issste"], out_dir=fresh)
    assert Path(storage.get_batch(bid2).out_dir) == fresh.resolve()
