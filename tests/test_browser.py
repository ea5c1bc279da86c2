"""The built site in a real browser (Playwright driving Debian's Chromium against a local server).

Every page loads with no console error, no failed request and no request to another host;
its math is typeset, its images load and have alt text, its theorem references resolve,
and axe-core finds no serious or critical accessibility violation. A screenshot of every
page is saved to _build/screenshots for review.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from book_utils import is_notebook, toc_files
from browser_fixtures import SCREENSHOTS, PageVisit, require_chromium

require_chromium()

#: violations that come from the theme and cannot be fixed by configuration; (rule id, reason)
KNOWN_THEME_VIOLATIONS: dict[str, str] = {}


PAGES = toc_files()


@pytest.fixture(scope="module", autouse=True)
def fresh_screenshots() -> None:
    """Screenshots of this run only: the folder is emptied before the page visits."""
    shutil.rmtree(SCREENSHOTS, ignore_errors=True)
    SCREENSHOTS.mkdir(parents=True)


@pytest.mark.parametrize("doc", PAGES)
def test_page_loads_cleanly_and_offline(visits, doc: str) -> None:
    v = visits(doc)
    assert not v.console_errors, v.console_errors
    assert not v.failed, v.failed
    assert not v.foreign, f"requests to other hosts: {v.foreign}"


@pytest.mark.parametrize("doc", PAGES)
def test_all_math_is_typeset(visits, doc: str) -> None:
    v = visits(doc)
    nodes = v.page.locator("#main-content .math").count()
    typeset = v.page.locator("#main-content .math mjx-container").count()
    assert typeset == nodes, f"{nodes} math nodes, {typeset} typeset"
    text = v.page.evaluate("""() => { const main = document.querySelector('#main-content').cloneNode(true);
        main.querySelectorAll('pre, code, mjx-container').forEach(e => e.remove()); return main.innerText; }""")
    raw = re.findall(r"\\\(|\\\)|\\\[|\\\]|\$\$|\\frac|\\mathbb", text)
    assert not raw, f"raw TeX visible: {raw[:5]}"


@pytest.mark.parametrize("doc", PAGES)
def test_images_load_and_have_alt_text(visits, doc: str) -> None:
    v = visits(doc)
    images = v.page.evaluate("""() => Array.from(document.querySelectorAll('#main-content img')).map(
        i => ({src: i.getAttribute('src'), w: i.naturalWidth, alt: (i.getAttribute('alt') || '').trim()}))""")
    broken = [i["src"] for i in images if i["w"] == 0]
    no_alt = [i["src"] for i in images if not i["alt"]]
    assert not broken, f"images that did not load: {broken}"
    assert not no_alt, f"images without alt text: {no_alt}"


@pytest.mark.parametrize("doc", PAGES)
def test_theorem_references_resolve(visits, server: str, doc: str) -> None:
    v = visits(doc)
    titles = v.page.evaluate("""() => Array.from(document.querySelectorAll(
        'div.proof.admonition > p.admonition-title')).map(t => t.textContent.trim())""")
    for title in titles:
        if not title.lower().startswith("proof"):
            assert re.search(r"\d", title), f"unnumbered theorem box: {title!r}"
    hrefs = v.page.evaluate("""() => Array.from(document.querySelectorAll('#main-content a.reference.internal'))
        .map(a => a.href).filter(h => h.includes('#'))""")
    by_page: dict[str, set[str]] = {}
    for href in hrefs:
        target_url, fragment = href.split("#", 1)
        by_page.setdefault(target_url, set()).add(fragment)
    for target_url, fragments in by_page.items():   # each target page is loaded once, and its ids cached
        ids = _page_ids(v, target_url)
        missing = sorted(f for f in fragments if f not in ids)
        assert not missing, f"references to {target_url} without a target: {missing}"


_IDS: dict[str, set[str]] = {}


def _page_ids(v: PageVisit, url: str) -> set[str]:
    """Every element id of the page at ``url`` (the visited page itself, or another one loaded once)."""
    if url == v.page.url.split("#")[0]:
        return set(v.page.evaluate("() => Array.from(document.querySelectorAll('[id]')).map(e => e.id)"))
    if url not in _IDS:
        other = v.context.new_page()
        try:
            other.goto(url)
            _IDS[url] = set(other.evaluate("() => Array.from(document.querySelectorAll('[id]')).map(e => e.id)"))
        finally:
            other.close()
    return _IDS[url]


def test_search_finds_elbo(server: str, browser) -> None:
    v = PageVisit(browser, f"{server}/search.html?q=ELBO")
    try:
        v.page.wait_for_selector("#search-results ul.search li", timeout=20000)
        assert v.page.locator("#search-results ul.search li").count() > 0
        assert not v.foreign
    finally:
        v.close()


@pytest.mark.parametrize("doc", [d for d in PAGES if d.startswith("book/") and is_notebook(d)])
def test_chapter_pages_show_launch_and_download_buttons(visits, doc: str) -> None:
    v = visits(doc)
    assert v.page.locator("a[href*='colab.research.google.com']").count() > 0
    assert v.page.locator("a[href*='mybinder.org']").count() > 0
    assert v.page.locator(".dropdown-download-buttons").count() > 0


@pytest.mark.parametrize("doc", PAGES)
def test_no_serious_accessibility_violations(visits, doc: str) -> None:
    from axe_playwright_python.sync_playwright import Axe
    v = visits(doc)
    results = Axe().run(v.page)
    bad = [(x["id"], x["impact"], len(x["nodes"]), x["nodes"][0]["target"]) for x in results.response["violations"]
           if x["impact"] in ("serious", "critical") and x["id"] not in KNOWN_THEME_VIOLATIONS]
    assert not bad, bad


@pytest.mark.parametrize("doc", PAGES)
def test_page_images_weigh_at_most_1mb(built_book: Path, doc: str) -> None:
    html = (built_book / f"{doc}.html").read_text()
    page_dir = (built_book / doc).parent
    sources = set(re.findall(r'<img[^>]+src="([^"]+)"', html))
    local = [(page_dir / s).resolve() for s in sources if not s.startswith(("http", "data:"))]
    total = sum(p.stat().st_size for p in local if p.is_file())
    assert total <= 1_000_000, f"{doc}: images weigh {total / 1e6:.2f} MB"
