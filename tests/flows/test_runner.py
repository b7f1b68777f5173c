"""run_check: a fresh context per check, closed always; evidence for every failed check."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

import flows
from flows.base import CheckContext, Outcome, Person
from flows.errors import PortalChanged, PortalUnavailable
from flows.registry import unregister
from flows.runner import CheckRun, run_check
from worker.core.settings import load_settings
from worker.core.statuses import Status

pytestmark = pytest.mark.browser

CURP = "PEGJ900115HDFRRN03"
PAGE = "<html><body><h1>Portal de prueba</h1><p>CURP PEGJ900115HDFRRN03</p></body></html>"


def _open(ctx: CheckContext) -> None:
    page = ctx.browser_context.new_page()
    page.set_content(PAGE)


def _transient(ctx: CheckContext) -> Outcome:
    _open(ctx)
    raise PortalUnavailable("HTTP 503 en /consultar")


def _changed(ctx: CheckContext) -> Outcome:
    _open(ctx)
    raise PortalChanged("No se encontró el elemento esperado «botón Buscar» (#btnBuscar)")


def _crash(ctx: CheckContext) -> Outcome:
    _open(ctx)
    raise ValueError(f"algo raro con {ctx.person.curp}")


def _playwright_timeout(ctx: CheckContext) -> Outcome:
    page = ctx.browser_context.new_page()
    page.set_content(PAGE)
    page.locator("#does-not-exist").click(timeout=300)
    raise AssertionError("unreachable")


def _verdict(ctx: CheckContext) -> Outcome:
    _open(ctx)
    pdf = ctx.work_dir / "imss.pdf"
    pdf.write_bytes(b"%PDF-1.4 test")
    return Outcome(Status.NOT_ENTITLED, detail="Sin derecho", pdf_path=pdf)


def _refusal(ctx: CheckContext) -> Outcome:
    _open(ctx)
    return Outcome(Status.DAILY_LIMIT, detail="Has agotado el número de consultas permitidas")


_FLOWS = {
    "t-transient": _transient,
    "t-changed": _changed,
    "t-crash": _crash,
    "t-timeout": _playwright_timeout,
    "t-verdict": _verdict,
    "t-refusal": _refusal,
}


@pytest.fixture(autouse=True, scope="module")
def _test_portals() -> Iterator[None]:
    """The flows above as portals, only while this module's tests run (the registry is the
    whole system's list of portals)."""
    for name, func in _FLOWS.items():
        flows.register(flows.Portal(name=name, title=name, procedure="Prueba", order=99,
                                    flow=func))
    yield
    for name in _FLOWS:
        unregister(name)


class _Unused:
    """Neither captcha nor mail is used by these flows."""

    def solve(self, image: bytes, *, key: str) -> str:
        raise AssertionError("not used")

    def reject(self, key: str) -> None:
        raise AssertionError("not used")

    def wait_for(self, **kwargs: object) -> object:
        raise AssertionError("not used")


def _run(browser, tmp_path: Path, portal: str, attempt: int = 2, **settings: object) -> CheckRun:
    return run_check(
        browser,
        portal,
        Person(CURP),
        load_settings(**settings),
        tmp_path / "out",
        captcha=_Unused(),
        mailbox=_Unused(),
        log=structlog.get_logger(),
        attempt=attempt,
    )


def _assert_evidence(path: Path, *, trace: bool = True) -> None:
    assert path.is_dir()
    names = sorted(p.name for p in path.iterdir())
    assert "page-1.png" in names and "page-1.html" in names and "check.json" in names
    assert ("trace.zip" in names) is trace
    assert (path / "page-1.png").read_bytes().startswith(b"\x89PNG")
    assert "Portal de prueba" in (path / "page-1.html").read_text(encoding="utf-8")
    for p in path.rglob("*"):
        assert CURP not in str(p) and CURP.lower() not in str(p)
    note = json.loads((path / "check.json").read_text(encoding="utf-8"))
    assert CURP not in json.dumps(note)


def test_transient_error_is_reraised_with_evidence(browser, tmp_path: Path) -> None:
    """A TransientError reaches the engine (to retry) with its evidence folder attached."""
    with pytest.raises(PortalUnavailable) as info:
        _run(browser, tmp_path, "t-transient")
    path = info.value.evidence
    assert path == tmp_path / "out" / "evidence" / "t-transient-2"
    _assert_evidence(path)
    assert not browser.contexts


def test_portal_changed_becomes_an_outcome_with_evidence(browser, tmp_path: Path) -> None:
    """PortalChanged is recorded as portal_changed (not retried), with evidence."""
    run = _run(browser, tmp_path, "t-changed")
    outcome = run.outcome
    assert outcome.status is Status.PORTAL_CHANGED
    assert "#btnBuscar" in outcome.detail
    _assert_evidence(run.evidence)
    assert not browser.contexts


def test_unexpected_exception_is_error_with_masked_detail(browser, tmp_path: Path) -> None:
    """Any other exception is `error`, its detail masked, with evidence."""
    run = _run(browser, tmp_path, "t-crash")
    outcome = run.outcome
    assert outcome.status is Status.ERROR
    assert "ValueError" in outcome.detail and CURP not in outcome.detail
    note = json.loads((run.evidence / "check.json").read_text("utf-8"))
    assert note["error"] == "ValueError" and note["status"] == "error"


def test_unmapped_playwright_timeout_is_error(browser, tmp_path: Path) -> None:
    """A Playwright timeout a flow did not map is `error`, with evidence."""
    run = _run(browser, tmp_path, "t-timeout")
    outcome = run.outcome
    assert outcome.status is Status.ERROR and "TimeoutError" in outcome.detail
    assert Path(run.evidence, "page-1.html").exists()


def test_verdict_keeps_no_evidence_and_closes_the_context(browser, tmp_path: Path) -> None:
    """A plain verdict leaves only its PDF: no evidence folder, no open context."""
    run = _run(browser, tmp_path, "t-verdict")
    outcome = run.outcome
    assert outcome.status is Status.NOT_ENTITLED and run.evidence is None
    assert not (tmp_path / "out" / "evidence").exists()
    assert "total" in outcome.timings
    assert not browser.contexts


def test_refusal_status_keeps_evidence(browser, tmp_path: Path) -> None:
    """A returned status that is not a verdict (daily_limit) still keeps evidence."""
    run = _run(browser, tmp_path, "t-refusal")
    outcome = run.outcome
    assert outcome.status is Status.DAILY_LIMIT
    _assert_evidence(run.evidence)


def test_no_trace_when_traces_are_disabled(browser, tmp_path: Path) -> None:
    """keep_traces=never: screenshot and HTML still kept, no trace.zip."""
    run = _run(browser, tmp_path, "t-changed", keep_traces="never")
    _assert_evidence(run.evidence, trace=False)


def test_always_keeps_the_trace_of_a_verdict(browser, tmp_path: Path) -> None:
    """keep_traces=always: even a verdict keeps its trace."""
    run = _run(browser, tmp_path, "t-verdict", keep_traces="always")
    assert run.trace is not None and run.trace.name == "trace.zip"
    assert run.trace.stat().st_size > 0


def _trace_events(folder: Path) -> list[dict]:
    with zipfile.ZipFile(folder / "trace.zip") as archive:
        text = archive.read("trace.trace").decode("utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.mark.parametrize(
    ("setting", "attempt", "snapshots"),
    [("retries", 0, False), ("retries", 1, True), ("always", 0, True), ("never", 3, False)],
)
def test_trace_snapshots_follow_the_setting(
    browser, tmp_path: Path, setting: str, attempt: int, snapshots: bool
) -> None:
    """TRACE_SNAPSHOTS: DOM snapshots on retries by default (or always, or never); every trace
    still records the actions, and check.json says which kind it is."""
    folder = _run(browser, tmp_path, "t-changed", attempt=attempt,
                  trace_snapshots=setting).evidence
    events = _trace_events(folder)
    kinds = {event.get("type") for event in events}
    assert ("frame-snapshot" in kinds) is snapshots
    assert any(event.get("method") == "setContent" for event in events)
    note = json.loads((folder / "check.json").read_text("utf-8"))
    assert note["trace_snapshots"] is snapshots


def test_unknown_portal_is_refused(browser, tmp_path: Path) -> None:
    """An unknown portal name never opens a context."""
    with pytest.raises(KeyError):
        _run(browser, tmp_path, "nope")
    assert not browser.contexts
