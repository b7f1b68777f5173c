"""flows.steps.InPage in real Chromium: the element reads and actions the flows use without a
Playwright Locator — same meaning (trusted input events, visibility, text match), and the hand
over to the Locator when the element cannot be clicked or filled yet."""

from __future__ import annotations

import time

import pytest

from flows.errors import PortalChanged
from flows.steps import InPage, expect_visible, first_visible, page_text

pytestmark = pytest.mark.browser

_PAGE = """<!doctype html><html><body style="margin:0">
<a href="#otra">Otra liga</a>
<a id="tramite" href="/formulario">  Tramitar
   constancia </a>
<div style="height: 3000px"></div>
<input id="campo" value="viejo">
<input id="fijo" value="no" readonly>
<button id="boton" type="button">Continuar</button>
<p id="oculto" style="visibility: hidden">no se ve</p>
<script>
  window.events = [];
  const campo = document.getElementById("campo");
  for (const kind of ["keydown", "input", "change"]) {
    campo.addEventListener(kind, ev => events.push(kind + ":" + (ev.inputType || "")));
  }
  document.getElementById("boton").addEventListener("click",
      ev => events.push("click:" + ev.isTrusted));
</script></body></html>"""


def test_reads_follow_visibility_and_text(page) -> None:
    """``count``, ``is_visible``, ``get_attribute`` and ``inner_text`` read the page; a link is
    found by its text (case and spacing aside), as ``:has-text`` finds it."""
    page.set_content(_PAGE)
    link = InPage(page, "a", "tramitar constancia")
    assert link.count() == 1 and link.is_visible()
    assert link.get_attribute("href") == "/formulario"
    assert " ".join(link.inner_text().split()) == "Tramitar constancia"
    assert str(link) == "a:has-text('tramitar constancia')"
    assert InPage(page, "#oculto").count() == 1 and not InPage(page, "#oculto").is_visible()
    assert InPage(page, "#oculto").visible_text() == ""
    assert InPage(page, "#nada").count() == 0 and InPage(page, "#nada").get_attribute("x") is None


def test_click_is_a_trusted_click_on_an_element_scrolled_into_view(page) -> None:
    """The button lies below the fold: it is scrolled into view and clicked with real mouse
    events (``isTrusted``), like ``Locator.click``."""
    page.set_viewport_size({"width": 800, "height": 600})
    page.set_content(_PAGE)
    InPage(page, "#boton").click()
    assert page.evaluate("events") == ["click:true"]
    assert page.evaluate("scrollY") > 0


def test_fill_replaces_the_value_in_one_input_and_empty_fill_clears(page) -> None:
    """``fill`` selects what is there and writes the new value as one input event, with no key
    presses (so a paste block does not see a paste); ``change`` comes when the field is left."""
    page.set_content(_PAGE)
    field = InPage(page, "#campo")
    field.fill("nuevo@empresa.example")
    assert page.input_value("#campo") == "nuevo@empresa.example"
    assert page.evaluate("events") == ["input:insertText"]
    field.blur()
    assert page.evaluate("events")[-1] == "change:"
    field.fill("")
    assert page.input_value("#campo") == ""
    field.press_sequentially("ab")
    assert page.input_value("#campo") == "ab"
    assert page.evaluate("events").count("keydown:") >= 2


def test_readonly_field_is_handed_to_playwright_which_says_why(page) -> None:
    """A field that cannot take text is not written behind the page's back: the Locator's own
    fill waits for it to become editable and fails with Playwright's reason."""
    page.set_content(_PAGE)
    # Long enough for Playwright to find the field and say why under load (at 500 ms it could
    # time out still waiting for the locator, a message without the reason).
    page.set_default_timeout(3000)
    with pytest.raises(Exception, match="(?i)editable|readonly"):
        InPage(page, "#fijo").fill("x")
    assert page.input_value("#fijo") == "no"


def test_covered_button_is_clicked_once_the_cover_goes(page) -> None:
    """A button under an overlay is not clicked through it: the hand-over waits, as
    ``Locator.click`` does, and clicks once the overlay is removed."""
    page.set_content(_PAGE)
    page.evaluate("""() => { const o = document.createElement("div"); o.id = "velo";
        o.style = "position:fixed;inset:0;background:rgba(0,0,0,.3)"; document.body.append(o);
        o.addEventListener("click", () => events.push("velo")); }""")
    page.evaluate("() => document.getElementById('boton').scrollIntoView()")
    page.evaluate("() => setTimeout(() => document.getElementById('velo').remove(), 400)")
    InPage(page, "#boton").click()
    assert page.evaluate("events") == ["click:true"]


def test_expect_visible_and_first_visible_wait_in_the_page(page) -> None:
    """An element that appears later is waited for; a missing one is PortalChanged naming the
    selector (with its text); ``first_visible`` names the candidate that shows."""
    page.set_content(_PAGE)
    page.evaluate("""() => setTimeout(() => { const p = document.createElement("p");
        p.className = "alert"; p.textContent = "Listo"; document.body.prepend(p); }, 300)""")
    found = first_visible(page, {"error": ".error", "ok": ".alert"}, timeout_s=5)
    assert found is not None and found[0] == "ok" and found[1].inner_text() == "Listo"
    assert first_visible(page, {"error": ".error"}, timeout_s=0.3) is None
    assert expect_visible(page, "a", text="Tramitar", what="liga", timeout_s=1).count() == 1
    with pytest.raises(PortalChanged, match=r"a:has-text\('Descargar'\)"):
        expect_visible(page, "a", text="Descargar", what="liga Descargar", timeout_s=0.3)


def test_button_disabled_by_its_fieldset_is_not_clicked(page) -> None:
    """A button disabled through its fieldset is handed to Playwright, which waits for it to
    be enabled (and times out here) instead of a click that would do nothing."""
    page.set_content("""<fieldset disabled><button id="b" type="button">Buscar</button>
        </fieldset><script>window.events = []; document.getElementById("b")
        .addEventListener("click", () => events.push("click"));</script>""")
    page.set_default_timeout(500)
    with pytest.raises(Exception, match="(?i)timeout"):
        InPage(page, "#b").click()
    assert page.evaluate("events") == []


def test_waits_and_reads_on_a_page_that_keeps_reloading(page) -> None:
    """A page replaced again and again (a notice that refreshes itself): the reads
    ride over the navigations, a missing element is PortalChanged after its timeout — never a
    raw Playwright error — and the page's text is read."""
    html = """<!doctype html><p id="siempre">Aviso del portal</p>
        <script>setTimeout(() => location.reload(), 80)</script>"""
    page.route("http://portal.test/**",
               lambda route: route.fulfill(body=html, content_type="text/html"))
    page.goto("http://portal.test/")
    assert expect_visible(page, "#siempre", what="aviso", timeout_s=5).count() in (0, 1)
    with pytest.raises(PortalChanged, match="#nunca"):
        expect_visible(page, "#nunca", what="campo", timeout_s=1)
    # Read until the text comes through between two reloads (a deadline, not a count of
    # tries: under load a reload can land inside every one of a few reads).
    deadline = time.monotonic() + 30
    while "Aviso del portal" not in page_text(page):
        assert time.monotonic() < deadline, "the page's text was never read"
