"""Self-check questions in a real browser (labcode.selfcheck, _static/selfcheck.js).

On every page with self-checks, every question accepts its own answer and rejects a wrong one with
its hint; on one page the details: invalid input, feedback that a screen reader announces, keyboard-only
use, no console error, axe (light and dark mode, with feedback showing), and screenshots of a block in
both modes for review (``_build/screenshots/selfcheck-*.png``).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from book_utils import source, toc_files
from browser_fixtures import SCREENSHOTS, PageVisit, require_chromium

require_chromium()

PAGE = "book/spiral"   # a page with a numeric and a multiple-choice question


def _pages_with_selfchecks() -> list[str]:
    """The pages whose source asks for a self-check: from the sources, since the tests are collected before the
    book is built (a list taken from the built HTML is empty on a clean clone, and the test would never run)."""
    return [doc for doc in toc_files() if "SelfCheck(" in source(doc).read_text(encoding="utf-8")]


@pytest.fixture(scope="module")
def page_visit(built_book: Path, server: str, browser):
    v = PageVisit(browser, f"{server}/{PAGE}.html")
    yield v
    v.close()


def _verdict(form) -> tuple[str | None, str]:
    return form.get_attribute("data-state"), form.locator(".selfcheck-verdict").inner_text()


def _answer(form, reply: str) -> tuple[str | None, str]:
    form.locator(".selfcheck-input").fill(reply)
    form.locator("button.selfcheck-check").click()
    return _verdict(form)


def _choose(form, index: int) -> tuple[str | None, str]:
    form.locator(f"input[type=radio][value='{index}']").check()
    form.locator("button.selfcheck-check").click()
    return _verdict(form)


def test_some_page_has_selfchecks(built_book: Path) -> None:
    assert PAGE in _pages_with_selfchecks()


class QuickVisit:
    """A page loaded up to the self-check script's start (no wait for every image, unlike PageVisit), with its errors."""

    def __init__(self, browser, url: str) -> None:
        self.console_errors: list[str] = []
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.page = self.context.new_page()
        self.page.on("console", lambda m: m.type == "error" and self.console_errors.append(m.text))
        self.page.on("pageerror", lambda e: self.console_errors.append(str(e)))
        self.failed: list[str] = []
        self.page.route("**/*", lambda r: r.continue_())   # as PageVisit does: unrouted, Chromium logs its favicon 404
        self.page.on("response", lambda r: r.status >= 400 and self.failed.append(f"{r.url} ({r.status})"))
        self.page.goto(url, wait_until="domcontentloaded", timeout=60_000)
        self.page.wait_for_function("() => document.documentElement.classList.contains('selfcheck-ready')", timeout=60_000)

    def close(self) -> None:
        self.context.close()


@pytest.mark.parametrize("doc", _pages_with_selfchecks())
def test_every_question_accepts_its_answer_and_rejects_a_wrong_one(server: str, browser, doc: str) -> None:
    v = QuickVisit(browser, f"{server}/{doc}.html")
    try:
        forms = v.page.locator("form.selfcheck-question")
        assert forms.count() > 0
        for i in range(forms.count()):
            form = forms.nth(i)
            form.scroll_into_view_if_needed()
            hint = form.locator(".selfcheck-hint")
            if form.get_attribute("data-kind") == "numeric":
                answer, tol = float(form.get_attribute("data-answer")), float(form.get_attribute("data-tol"))
                state, text = _answer(form, form.get_attribute("data-display"))
                assert state == "right", (doc, form.get_attribute("id"), text)
                assert not hint.is_visible()
                state, text = _answer(form, repr(answer + 3 * tol + 0.1 * abs(answer)))
                assert state == "wrong", (doc, form.get_attribute("id"), text)
            else:
                correct = int(form.get_attribute("data-correct"))
                n = form.locator("input[type=radio]").count()
                assert 0 <= correct < n
                state, text = _choose(form, correct)
                assert state == "right", (doc, form.get_attribute("id"), text)
                assert not hint.is_visible()
                state, text = _choose(form, (correct + 1) % n)
                assert state == "wrong", (doc, form.get_attribute("id"), text)
            assert text.startswith("Not quite")
            assert hint.is_visible() and hint.inner_text().startswith("Hint.")
            assert form.locator(".selfcheck-answer").is_visible()
        assert not v.console_errors, (v.console_errors, v.failed)
    finally:
        v.close()


def test_numeric_feedback_and_invalid_input(page_visit) -> None:
    form = page_visit.page.locator("form.selfcheck-question[data-kind=numeric]").first
    assert not form.locator(".selfcheck-answer").is_visible(), "the answer is shown only after a first attempt"
    state, text = _answer(form, "")
    assert state == "invalid" and "Type a number" in text
    state, text = _answer(form, "abc")
    assert state == "invalid" and "not a number" in text
    assert not form.locator(".selfcheck-hint").is_visible()
    answer = float(form.get_attribute("data-answer"))
    state, text = _answer(form, f"{answer:.6f}".replace(".", ","))   # a decimal comma
    assert state == "right" and form.get_attribute("data-display") in text
    state, _ = _answer(form, f"{answer + 1:.6f}")
    assert state == "wrong"
    form.locator(".selfcheck-input").fill("1")   # a new reply clears the old verdict
    assert _verdict(form) == (None, "")
    feedback = form.locator(".selfcheck-feedback")
    assert feedback.get_attribute("role") == "status" and feedback.get_attribute("aria-live") == "polite"


def test_numbers_are_read_as_readers_type_them(page_visit) -> None:
    cases = {"0.25": 0.25, ".25": 0.25, "-1.5e-3": -1.5e-3, "\u22122": -2.0, "24%": 0.24, "0,25": 0.25,
             "10,000": 10000.0, "1 000": 1000.0, "abc": None, "1.2.3": None, "": None}
    for text, expected in cases.items():
        got = page_visit.page.evaluate("t => { const v = window.labcodeSelfcheck.parseNumber(t); return isFinite(v) ? v : null; }", text)
        assert got == pytest.approx(expected) if expected is not None else got is None, (text, got)


def test_keyboard_only(page_visit) -> None:
    page = page_visit.page
    page.reload()
    page.wait_for_load_state("networkidle")
    numeric = page.locator("form.selfcheck-question[data-kind=numeric]").first
    numeric.locator(".selfcheck-input").focus()
    page.keyboard.type(numeric.get_attribute("data-display"))
    page.keyboard.press("Enter")
    assert _verdict(numeric)[0] == "right"
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.classList.contains('selfcheck-check')")
    choice = page.locator("form.selfcheck-question[data-kind=choice]").first
    correct = int(choice.get_attribute("data-correct"))
    choice.locator("input[type=radio]").first.focus()
    page.keyboard.press("Space")   # selects the first option
    for _ in range(correct):
        page.keyboard.press("ArrowDown")
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.classList.contains('selfcheck-check')")
    page.keyboard.press("Enter")
    assert _verdict(choice)[0] == "right"
    assert not page_visit.console_errors, (page_visit.console_errors, page_visit.failed)


@pytest.mark.parametrize("mode", ["light", "dark"])
def test_axe_and_screenshot_with_feedback_showing(page_visit, mode: str) -> None:
    from axe_playwright_python.sync_playwright import Axe
    page = page_visit.page
    errors_before = len(page_visit.console_errors)
    page.evaluate("m => { document.documentElement.dataset.theme = m; document.documentElement.dataset.mode = m; }", mode)
    forms = page.locator("form.selfcheck-question")
    first, second = forms.nth(0), forms.nth(1)
    _answer(first, "1")                                   # wrong: the hint shows
    _choose(second, int(second.get_attribute("data-correct")))
    assert not page_visit.console_errors[errors_before:], page_visit.console_errors
    # after the console check: axe's own CSS preloading requests a stylesheet it misresolves. The whole page in
    # light mode (as test_browser.py); in dark mode the self-check blocks (the theme's dark mode is not this test's)
    results = Axe().run(page, context="div.selfcheck" if mode == "dark" else None)
    bad = [(x["id"], x["impact"], x["nodes"][0]["target"]) for x in results.response["violations"]
           if x["impact"] in ("serious", "critical")]
    assert not bad, bad
    block = page.locator("div.selfcheck").first
    block.scroll_into_view_if_needed()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    block.screenshot(path=str(SCREENSHOTS / f"selfcheck-{mode}.png"))
    # every formula in the block is typeset, in the prompts and in the hint that just appeared
    assert block.locator(".math").count() == block.locator(".math mjx-container").count() > 0
    assert not re.search(r"\\\(|\\\)", block.inner_text())
