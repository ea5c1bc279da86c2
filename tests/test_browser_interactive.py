"""The interactive figures in a real browser (Playwright driving Debian's Chromium against the built site).

On each of the four pages with an interactive figure: BokehJS, served by the site, renders the plot
(a Bokeh root with a canvas) and hides the static fallback; moving the control (setting the widget's
value as a reader's drag or click would, and by keyboard on a slider) changes the plotted data and
the readout; nothing is logged as an error and nothing is requested from another host. Without
JavaScript the fallback image is shown instead. Screenshots of each figure before and after moving
its control, in light and dark mode, go to ``_build/screenshots/interactive`` for review.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from browser_fixtures import SCREENSHOTS, PageVisit, require_chromium

require_chromium()

SHOTS = SCREENSHOTS / "interactive"


@dataclass(frozen=True)
class Figure:
    name: str          #: the figure's name (its element ids derive from it)
    control: str       #: the Bokeh model a reader moves
    attribute: str     #: its attribute ("value" of a slider, "active" of buttons)
    target: float      #: a value to move it to
    source: str        #: the plotted data source that must change
    column: str        #: a column of it


FIGURES = {
    "book/kl": Figure("kl-explorer", "sigma", "value", 0.5, "curves", "q"),
    "book/two_forces": Figure("beta-sweep", "beta", "active", 0, "points", "zx"),
    "book/diffusion": Figure("forward-process", "t", "value", 500, "points", "x"),
    "book/exact": Figure("iwae-bound", "k", "value", 6, "histogram", "top"),
}


def _open(browser, server: str, doc: str) -> PageVisit:
    v = PageVisit(browser, f"{server}/{doc}.html")
    name = FIGURES[doc].name
    v.page.wait_for_function(f"() => document.querySelector('#labcode-interactive-{name}.labcode-interactive-live')",
                             timeout=20000)
    v.page.locator(f"#labcode-interactive-{name}").scroll_into_view_if_needed()
    return v


def _state(v: PageVisit, fig: Figure) -> dict:
    return v.page.evaluate(f"""() => {{
        const doc = Bokeh.documents[0];
        const data = doc.get_model_by_name({fig.source!r}).data[{fig.column!r}];
        return {{control: doc.get_model_by_name({fig.control!r}).{fig.attribute},
                 data: Array.from(data).slice(0, 400), readout: doc.get_model_by_name('readout').text}};
    }}""")


def _shot(v: PageVisit, fig: Figure, label: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{fig.name}-{label}.png"
    v.page.locator(f"#labcode-interactive-{fig.name}").screenshot(path=str(path))
    return path


@pytest.fixture(scope="module", params=sorted(FIGURES))
def opened(request, browser, server: str):
    v = _open(browser, server, request.param)
    yield request.param, v
    v.close()


def test_figure_renders_offline_and_hides_its_fallback(opened) -> None:
    doc, v = opened
    fig = FIGURES[doc]
    assert v.page.evaluate("() => Bokeh.documents.length") == 1
    assert v.page.locator(f"#{fig.name}-plot canvas").count() > 0, "no canvas: the plot did not render"
    assert v.page.locator(f"#{fig.name}-plot .bk-Column").count() > 0, "no Bokeh root in the plot's container"
    assert v.page.locator(f"#labcode-interactive-{fig.name} img.labcode-interactive-fallback").is_hidden()
    scripts = v.page.evaluate("() => Array.from(document.scripts).map(s => s.src).filter(s => s.includes('bokeh'))")
    assert len(scripts) == 2 and all(s.startswith(v.page.url.split("/book/")[0]) for s in scripts), scripts
    assert not v.console_errors, v.console_errors
    assert not v.failed, v.failed
    assert not v.foreign, f"requests to other hosts: {v.foreign}"


def test_moving_the_control_changes_the_plot_and_the_readout(opened) -> None:
    doc, v = opened
    fig = FIGURES[doc]
    v.page.evaluate("() => { document.documentElement.dataset.theme = 'light'; }")
    _shot(v, fig, "light-before")
    before = _state(v, fig)
    assert before["control"] != fig.target
    v.page.evaluate(f"() => {{ Bokeh.documents[0].get_model_by_name({fig.control!r}).{fig.attribute} = {fig.target}; }}")
    v.page.wait_for_timeout(300)
    after = _state(v, fig)
    assert after["control"] == fig.target
    assert after["data"] != before["data"], "the plotted data did not change"
    assert after["readout"] != before["readout"], "the readout did not change"
    _shot(v, fig, "light-after")
    v.page.evaluate("() => { document.documentElement.dataset.theme = 'dark'; }")
    v.page.wait_for_timeout(200)
    _shot(v, fig, "dark-after")
    card = v.page.evaluate(f"""() => getComputedStyle(document.getElementById('labcode-interactive-{fig.name}')).backgroundColor""")
    assert card == "rgb(255, 255, 255)", f"the figure's card is not white in dark mode: {card}"
    v.page.evaluate("() => { document.documentElement.dataset.theme = 'light'; }")
    assert not v.console_errors, v.console_errors


def test_readout_on_the_page_follows_the_control(opened) -> None:
    doc, v = opened
    fig = FIGURES[doc]
    text = v.page.locator(f"#{fig.name}-plot .bk-Div .bk-clearfix").last.inner_text()   # the Div's shadow DOM
    readout = v.page.evaluate("() => Bokeh.documents[0].get_model_by_name('readout').text")
    plain = v.page.evaluate("t => { const d = document.createElement('div'); d.innerHTML = t; return d.innerText; }", readout)
    assert " ".join(text.split()) == " ".join(plain.split())


def test_slider_moves_by_keyboard_and_has_a_name(browser, server: str) -> None:
    v = _open(browser, server, "book/kl")
    try:
        handles = v.page.locator("#kl-explorer-plot .noUi-handle")
        assert handles.count() == 2
        names = [handles.nth(i).get_attribute("aria-label") for i in range(2)]
        assert names == ["mean μ of q", "standard deviation σ of q"], names
        before = v.page.evaluate("() => Bokeh.documents[0].get_model_by_name('readout').text")
        handles.nth(0).focus()
        v.page.keyboard.press("ArrowLeft")
        v.page.wait_for_timeout(300)
        assert v.page.evaluate("() => Bokeh.documents[0].get_model_by_name('mu').value") == 0.75
        assert v.page.evaluate("() => Bokeh.documents[0].get_model_by_name('readout').text") != before
        assert not v.console_errors, v.console_errors
    finally:
        v.close()


@pytest.mark.parametrize("doc", sorted(FIGURES))
def test_without_javascript_the_static_image_is_shown(browser, server: str, doc: str) -> None:
    fig = FIGURES[doc]
    context = browser.new_context(java_script_enabled=False, viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        page.goto(f"{server}/{doc}.html", wait_until="load")
        image = page.locator(f"#labcode-interactive-{fig.name} img.labcode-interactive-fallback")
        assert image.is_visible()
        assert page.evaluate("i => i.naturalWidth", image.element_handle()) > 0
        assert (image.get_attribute("alt") or "").strip()
        assert page.locator(f"#{fig.name}-plot").inner_html() == ""
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.locator(f"#labcode-interactive-{fig.name}").screenshot(path=str(SHOTS / f"{fig.name}-no-js.png"))
    finally:
        context.close()
