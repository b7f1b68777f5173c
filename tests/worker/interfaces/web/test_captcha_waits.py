"""A batch whose checks wait for a person to type captchas (manual solver) says so, with the
way to the captchas page: on the batch page, live, and in `constancias status`."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import expect

from fixtures.captcha_image import render
from flows.captcha import ManualSolver, answer, pending
from tests.people import synthetic_curps, write_sheet
from tests.worker.interfaces.web.conftest import serve, shot
from worker.core.settings import Settings, load_settings
from worker.interfaces.cli import main
from worker.services.batches import open_storage, prepare_batch

pytestmark = pytest.mark.browser


@contextmanager
def _waiting(settings: Settings, n: int) -> Iterator[list[threading.Thread]]:
    """``n`` checks blocked in the manual solver, as the IMSS flow blocks on one; answered
    (so the threads end) when the block ends."""
    solver = ManualSolver(settings.data_dir, timeout_s=60, poll_s=0.05)
    threads = [threading.Thread(target=solver.solve, args=(render("Hm4tR"),),
                                kwargs={"key": f"lote-imss-{i}"}, daemon=True)
               for i in range(n)]
    for t in threads:
        t.start()
    for _ in range(200):
        if len(pending(settings.data_dir)) == n:
            break
        threading.Event().wait(0.02)
    try:
        yield threads
    finally:
        for item in pending(settings.data_dir):
            answer(settings.data_dir, item.key, "x")
        for t in threads:
            t.join(10)


def _batch(settings: Settings, tmp_path: Path, storage=None) -> str:
    sheet = write_sheet(tmp_path / "altas.xlsx", synthetic_curps(2, seed=31))
    batch_id, _ = prepare_batch(settings, storage or open_storage(settings), sheet, ["imss"])
    return batch_id


def test_batch_page_says_how_many_captchas_wait_and_links_to_them(web_settings, page, login,
                                                                   tmp_path: Path) -> None:
    """A running batch with three captchas waiting shows "3 captchas esperan respuesta →
    Captchas" linking to the captchas page; the notice goes once they are answered."""
    settings = web_settings.model_copy(update={"captcha_solver": "manual"})
    with serve(settings) as web:
        batch_id = _batch(settings, tmp_path, web.app.state.web.storage)
        login(web)
        with _waiting(settings, 3):
            page.goto(f"{web.url}/lotes/{batch_id}")
            notice = page.locator("#aviso-captchas")
            expect(notice).to_be_visible()
            expect(notice).to_have_text("3 captchas esperan respuesta → Captchas")
            expect(notice.get_by_role("link", name="Captchas")).to_have_attribute(
                "href", "/captchas")
            shot(page, "lote-esperando-captchas")
            state = web.client().get(f"/lotes/{batch_id}/estado").json()
            assert state["captchas"] == 3
            first = pending(settings.data_dir)[0]
            answer(settings.data_dir, first.key, "x")
            # The page polls its state every second: the count follows.
            expect(notice).to_have_text("2 captchas esperan respuesta → Captchas", timeout=10_000)
        expect(notice).to_be_hidden(timeout=10_000)


def test_status_says_captchas_wait_in_text_and_json(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """`status` prints the captcha line and `status --json` adds ``captchas_waiting`` beside
    every key it already had."""
    monkeypatch.setenv("CONSTANCIAS_CAPTCHA_SOLVER", "manual")
    settings = load_settings()
    batch_id = _batch(settings, tmp_path)
    assert main(["status", batch_id, "--json"]) == 0
    before = json.loads(capsys.readouterr().out)
    assert before["captchas_waiting"] == 0
    with _waiting(settings, 2):
        assert main(["status", batch_id]) == 0
        text = capsys.readouterr().out
        assert ("2 captchas esperan respuesta → Captchas (la página /captchas de "
                "«constancias web»)") in text.splitlines()
        assert main(["status", batch_id, "--json"]) == 0
        status = json.loads(capsys.readouterr().out)
    assert status["captchas_waiting"] == 2
    assert {"batch_id", "state", "total", "done", "by_status", "report",
            "results"} <= set(status)
    assert set(status) == set(before)
