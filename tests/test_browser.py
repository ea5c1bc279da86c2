"""The built site in a real browser (Playwright driving Debian's Chromium against a local server).

Every page loads with no console error, no failed request and no request to another host;
its math is typeset, its images load and have alt text, its theorem references resolve,
and axe-core finds no serious or critical accessibility violation. A screenshot of every
page is saved to _build/screenshots for review.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest

from book_utils import BUILD, toc_files

playwright_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = BUILD / "screenshots"
if not Path(CHROMIUM).exists():
    if os.environ.get("LABCODE_REQUIRE_BROWSER"):   # set by .ci/run: a missing browser is a failure there
        raise RuntimeError(f"Chromium not found at {CHROMIUM}")
    pytest.skip(f"Chromium not found at {CHROMIUM} (scripts/test.sh installs it when run as root)", allow_module_level=True)

#: violations that come from the theme and cannot be fixed by configuration; (rule id, reason)
KNOWN_THEME_VIOLATIONS: dict[str, str] = {}


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def server(built_book: Path) -> Iterator[str]:
    handler = functools.partial(QuietHandler, directory=str(built_book))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        yield b
        b.close()


@pytest.fixture(scope="module", autouse=True)
def screenshot_dir() -> Path:
    shutil.rmtree(SCREENSHOTS, ignore_errors=True)
    SCREENSHOTS.mkdir(parents=True)
    return SCREENSHOTS


class PageVisit:
    """A loaded page with everything it requested and logged."""

    def __init__(self, browser, url: str) -> None:
        self.console_errors: list[str] = []
        self.failed: list[str] = []
        self.foreign: list[str] = []
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.page = self.context.new_page()
        host = urlparse(url).netloc

        def route(r) -> None:
            if urlparse(r.request.url).netloc == host or r.request.url.startswith("data:"):
                r.continue_()
            else:
                self.foreign.append(r.request.url)
                r.abort()

        self.page.route("**/*", route)
        self.page.on("console", lambda m: m.type == "error" and self.console_errors.append(m.text))
        self.page.on("pageerror", lambda e: self.console_errors.append(str(e)))
        self.page.on("requestfailed", lambda r: self.failed.append(f"{r.url} ({r.failure})"))
        self.page.on("response", lambda r: r.status >= 400 and self.failed.append(f"{r.url} ({r.status})"))
        self.page.goto(url, wait_until="load")
        self.page.wait_for_function("() => !window.MathJax || (window.MathJax.startup && window.MathJax.startup.promise)")
        self.page.evaluate("() => window.MathJax && window.MathJax.startup ? window.MathJax.startup.promise : null")
        self.page.wait_for_load_state("networkidle")

    def close(self) -> None:
        self.context.close()


@pytest.fixture(scope="module")
def visits(server: str, browser) -> Iterator[dict[str, PageVisit]]:
    cache: dict[str, PageVisit] = {}

    def visit(doc: str) -> PageVisit:
        if doc not in cache:
            cache[doc] = PageVisit(browser, f"{server}/{doc}.html")
            cache[doc].page.screenshot(path=str(SCREENSHOTS / f"{doc.replace('/', '__')}.png"), full_page=True)
        return cache[doc]

    yield visit
    for v in cache.values():
        v.close()


PAGES = toc_files()


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


@pytest.mark.parametrize("doc", [d for d in PAGES if d.startswith("book/") and "appendix" not in d][:50])
def test_chapter_pages_show_launch_and_download_buttons(visits, doc: str) -> None:
    from book_utils import is_notebook
    if not is_notebook(doc):
        pytest.skip("not an executed chapter")
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
