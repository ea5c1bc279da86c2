"""Shared browser fixtures: Playwright driving Debian's Chromium against a local server of the built site.

Loaded as a pytest plugin by conftest.py, so every test module can ask for ``browser``, ``server`` and ``visits``.
A browser test module starts with ``require_chromium()``: it skips the module when Chromium is missing (a failure
under ``LABCODE_REQUIRE_BROWSER``, which .ci/run sets).
"""

from __future__ import annotations

import functools
import http.server
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest

from book_utils import BUILD

__all__ = ["CHROMIUM", "SCREENSHOTS", "PageVisit", "require_chromium"]

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = BUILD / "screenshots"


def require_chromium() -> None:
    """Call at the top of a browser test module: skip it without Playwright or Chromium (fail under CI)."""
    pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        if os.environ.get("LABCODE_REQUIRE_BROWSER"):   # set by .ci/run: a missing browser is a failure there
            raise RuntimeError(f"Chromium not found at {CHROMIUM}")
        pytest.skip(f"Chromium not found at {CHROMIUM} (scripts/test.sh installs it when run as root)", allow_module_level=True)


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
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def screenshot_dir() -> Path:
    """Where screenshots go (_build/screenshots); test_browser.py empties it once per run."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
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
def visits(server: str, browser, screenshot_dir: Path) -> Iterator[dict[str, PageVisit]]:
    cache: dict[str, PageVisit] = {}

    def visit(doc: str) -> PageVisit:
        if doc not in cache:
            cache[doc] = PageVisit(browser, f"{server}/{doc}.html")
            cache[doc].page.screenshot(path=str(SCREENSHOTS / f"{doc.replace('/', '__')}.png"), full_page=True)
        return cache[doc]

    yield visit
    for v in cache.values():
        v.close()
