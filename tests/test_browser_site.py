"""The site's reader features in a real browser: hover previews, favicon, one search box, the landing page on a
phone, the download menu and the links from code cells into the API reference.

Hover previews come from sphinx-tippy with its JavaScript served from ``_static/vendor/``; hovering a reference
to a theorem, a figure, a glossary term or a citation shows the target's content, with its mathematics typeset
by the site's own MathJax, and no request leaves the site. Screenshots (a tip, the landing page on a phone, an
API page) go to _build/screenshots.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urljoin

import pytest
from bs4 import BeautifulSoup

from book_utils import is_notebook, toc_files
from browser_fixtures import SCREENSHOTS, PageVisit, require_chromium

require_chromium()

TIP = "[data-tippy-root]"
PHONE = {"width": 390, "height": 844}
BOOK_PDF = "generative-models.pdf"


def _hover(v: PageVisit, link, name: str, *, math: bool) -> str:
    """Hover ``link``, wait for its tip (and its typeset math); return the tip's text. The tip is screenshotted."""
    page = v.page
    page.mouse.move(0, 0)
    page.wait_for_selector(TIP, state="detached")
    link.scroll_into_view_if_needed()
    link.hover()
    tip = page.locator(f"{TIP} .tippy-content").last
    tip.wait_for(state="visible", timeout=5000)
    if math:
        tip.locator("mjx-container").first.wait_for(timeout=10000)
    page.wait_for_timeout(400)   # the fade-in, before the screenshot
    tip.screenshot(path=str(SCREENSHOTS / f"site-tip-{name}.png"))
    text = tip.inner_text()
    raw = [s for s in ("\\(", "\\)", "\\[", "$$") if s in text]
    assert not raw, f"{name}: untypeset TeX in the tip: {raw}"
    return text


def _first(v: PageVisit, selector: str):
    link = v.page.locator(f"article.bd-article {selector}").first
    assert link.count(), f"no link {selector!r} on the page"
    return link


def test_hover_previews_show_content_with_typeset_math_offline(visits) -> None:
    v = visits("book/kl")
    # a theorem-like box of the same page and one of another chapter
    local = _hover(v, _first(v, "p a.reference.internal[href^='#kl-lem-']"), "lemma", math=True)
    assert local.startswith("Lemma"), local[:80]
    other = _hover(v, _first(v, "a.reference.internal[href^='jensen.html#jensen-']"), "other-chapter", math=True)
    assert other.split()[0] in ("Theorem", "Lemma", "Definition", "Proposition", "Corollary"), other[:80]
    # a glossary term with a synonym (several <dt> over one <dd>): the tip has the definition, not the bare term
    term = _hover(v, _first(v, "a[href='glossary.html#term-KL-divergence']"), "glossary", math=True)
    assert "not symmetric" in term, term
    # a citation: the tip is the bibliography entry the link's title names
    citation = _first(v, "a[href^='references.html#']")
    entry = _hover(v, citation, "citation", math=False)
    assert citation.get_attribute("title")[:40] in " ".join(entry.split()), entry[:200]
    # a figure: its image and its caption with math
    _hover(v, _first(v, "a[href^='#fig-']"), "figure", math=True)
    assert v.page.evaluate(f"() => Array.from(document.querySelectorAll('{TIP} img')).every(i => i.naturalWidth > 0)")
    assert not v.console_errors, v.console_errors
    assert not v.failed, v.failed
    assert not v.foreign, f"requests to other hosts: {v.foreign}"


def test_tips_take_the_pages_colours_in_dark_mode(visits) -> None:
    v = visits("book/kl")
    v.page.evaluate("() => { document.documentElement.dataset.theme = 'dark'; }")
    try:
        _hover(v, _first(v, "p a.reference.internal[href^='#kl-lem-']"), "dark", math=True)
        box, body = v.page.evaluate(f"""() => [getComputedStyle(document.querySelector('{TIP} .tippy-box')),
            getComputedStyle(document.body)].map(s => [s.backgroundColor, s.color])""")
        assert box == body, f"tip (background, text) {box} differ from the page's {body} in dark mode"
    finally:
        v.page.evaluate("() => { document.documentElement.dataset.theme = 'light'; }")
        v.page.mouse.move(0, 0)


def test_favicon_is_served_at_the_site_root(visits, server: str) -> None:
    v = visits("book/kl")
    root = v.page.request.get(f"{server}/favicon.ico")
    assert root.status == 200 and root.body()[:4] == b"\x00\x00\x01\x00", "no icon at /favicon.ico"
    icon = v.page.get_attribute("link[rel~='icon']", "href")
    linked = v.page.request.get(urljoin(v.page.url, icon))
    assert linked.status == 200 and linked.body() == root.body()


def _visible_search_controls(page) -> int:
    return page.evaluate("""() => Array.from(document.querySelectorAll(
        '.search-button-field, .search-button, input[type=search], form[role=search]'))
        .filter(e => e.offsetParent !== null && getComputedStyle(e).visibility !== 'hidden'
                && e.getBoundingClientRect().width > 0).length""")


def test_one_search_box(visits, browser, server: str) -> None:
    assert _visible_search_controls(visits("book/kl").page) == 1
    phone = PageVisit(browser, f"{server}/book/kl.html")
    try:
        phone.page.set_viewport_size(PHONE)
        phone.page.wait_for_timeout(300)
        assert _visible_search_controls(phone.page) == 1
    finally:
        phone.close()


def test_landing_page_fits_a_phone_and_its_map_is_readable(browser, server: str) -> None:
    context = browser.new_context(viewport=PHONE, device_scale_factor=2)
    try:
        page = context.new_page()
        page.goto(f"{server}/book/intro.html", wait_until="load")
        page.wait_for_load_state("networkidle")
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], "the page scrolls sideways"
        table = page.locator("table.chapter-map")
        table.scroll_into_view_if_needed()
        assert table.is_visible()
        box = table.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], box
        # each chapter reads as a card: every cell as wide as the map, none squeezed into a narrow column
        widths = page.evaluate("""() => Array.from(document.querySelectorAll(
            'table.chapter-map tbody tr:not(.chapter-map-part) td')).map(td => td.getBoundingClientRect().width)""")
        assert widths and min(widths) >= 0.9 * box["width"], f"narrow map cells: {min(widths):.0f} px of {box['width']:.0f}"
        first = page.locator("table.chapter-map tbody tr:not(.chapter-map-part)").first
        first.screenshot(path=str(SCREENSHOTS / "site-map-card-phone.png"))
        page.evaluate("() => window.scrollTo(0, 0)")
        page.screenshot(path=str(SCREENSHOTS / "site-landing-phone.png"))
    finally:
        context.close()


def _menu(v: PageVisit) -> dict[str, str]:
    """The download menu's entries: {text: absolute URL}."""
    v.page.click(".dropdown-download-buttons button.dropdown-toggle")
    entries = v.page.evaluate("""() => Array.from(document.querySelectorAll('.dropdown-download-buttons .dropdown-menu a'))
        .map(a => [a.textContent.trim(), a.href])""")
    v.page.keyboard.press("Escape")
    return dict(entries)


@pytest.mark.parametrize("doc", ["book/kl", "book/api/kl"])
def test_download_menu_offers_notebook_source_and_book_pdf(visits, built_book: Path, server: str, doc: str) -> None:
    v = visits(doc)
    menu = _menu(v)
    assert ".md" in menu and ".pdf" in menu, menu
    source = v.page.request.get(menu[".md"])
    assert source.status == 200 and source.text().lstrip().startswith(("---", "#")), menu[".md"]
    assert menu[".pdf"] == f"{server}/{BOOK_PDF}", f"the .pdf entry is not the book's PDF: {menu['.pdf']}"
    if (built_book / BOOK_PDF).exists():
        pdf = v.page.request.get(menu[".pdf"])
        assert pdf.status == 200 and pdf.body()[:5] == b"%PDF-"
    if is_notebook(doc):
        notebook = v.page.request.get(menu[".ipynb"])
        assert notebook.status == 200
        cells = json.loads(notebook.text())["cells"]
        assert any(c.get("outputs") for c in cells if c["cell_type"] == "code"), "the .ipynb has no outputs"
    else:
        assert ".ipynb" not in menu


def test_every_chapter_offers_its_executed_notebook(built_book: Path) -> None:
    """The .ipynb entry of every executed chapter is the executed notebook (with outputs), not the bare source."""
    missing = []
    for doc in [d for d in toc_files() if is_notebook(d)]:
        page = built_book / f"{doc}.html"
        link = BeautifulSoup(page.read_text(), "html.parser").select_one("a.btn-download-notebook-button")
        path = (page.parent / link["href"]).resolve() if link else None
        if path is None or not path.is_file():
            missing.append(doc)
            continue
        cells = json.loads(path.read_text())["cells"]
        if not any(c.get("outputs") for c in cells if c["cell_type"] == "code"):
            missing.append(f"{doc} (no outputs)")
    assert not missing, missing


def test_code_cell_names_link_to_the_api_reference_and_its_source(visits, server: str) -> None:
    v = visits("book/kl")
    link = v.page.locator("div.cell_input a.sphinx-codeautolink-a", has_text="lc.gaussian_kl_closed_form").first
    link.scroll_into_view_if_needed()
    with v.page.expect_navigation():
        link.click()
    try:
        assert v.page.url.endswith("/book/api/kl.html#labcode.kl.gaussian_kl_closed_form"), v.page.url
        entry = v.page.locator("[id='labcode.kl.gaussian_kl_closed_form']")
        assert entry.is_visible()
        v.page.evaluate("() => window.MathJax && MathJax.startup ? MathJax.startup.promise : null")
        assert v.page.locator("dl.py.function mjx-container").count() > 0, "the entries' math is not typeset"
        v.page.screenshot(path=str(SCREENSHOTS / "site-api-kl.png"))
        source = entry.locator("a:has(.viewcode-link)")
        response = v.page.request.get(urljoin(v.page.url, source.get_attribute("href")))
        assert response.status == 200 and "def gaussian_kl_closed_form" in BeautifulSoup(response.text(), "html.parser").get_text()
    finally:
        v.page.goto(f"{server}/book/kl.html", wait_until="load")   # leave the cached visit on its own page
