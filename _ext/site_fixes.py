"""Sphinx extension: small fixes to what the theme stack puts on every page.

- sphinx-thebe and sphinx-togglebutton each register their inline
  configuration script twice (once with filename None, once with ""), so pages carried two ``const THEBE_JS_URL`` declarations and the
  browser logged a SyntaxError; identical script entries are merged.
- docutils writes the bibliography as ``<div role="list" class="citation-list">`` whose
  children are not list items (axe: aria-required-children, critical); the role is dropped,
  and each entry keeps its own ``role="doc-biblioentry"``.
- pydata-sphinx-theme logs a console error when no default colour mode is
  set; the book's figures are drawn for a light background, so the default
  mode is ``light`` (readers can still switch).
- Jupyter Book adds every ``*.js`` under ``_static/`` to every page, in directory order; the vendored
  libraries in ``_static/vendor/`` are loaded by the extensions that need them, in the order they need
  (sphinx-tippy's ``tippy_js``: popper before tippy), so they are taken out of that list.
- One search box: pydata-sphinx-theme 0.17 puts a search field in a top bar (``navbar_persistent``) unless the
  option is set, and sphinx-book-theme 1.3's own default (none) is not seen as set, so every page had a top bar
  holding a second search field beside the sidebar's. The option is set to the book theme's default, no top bar;
  the sidebar keeps its field and narrow screens the article header's search button. (Jupyter Book's
  ``_config.yml`` replaces ``html_theme_options`` as a whole, so theme options beyond its own keys are set here.)
- The logo (``logo:`` in ``_config.yml``) keeps the book's title beside it (the theme shows one or the other).
- pydata-sphinx-theme opens and closes a sidebar entry's sub-pages (the API reference's modules) with a
  ``<summary>`` that holds only a chevron icon, which has no accessible name (axe: summary-name, serious); each
  gets an ``aria-label`` naming the entry whose sub-pages it shows.
- MyST's ``{eval-rst}`` (the API pages' autodoc) parses into a scratch document that shares the page's
  settings, environment included, and the nodes it makes keep a reference to it; Sphinx strips the environment
  from the page's own document before saving it, not from the scratch one, so every API page's doctree held a
  copy of the whole environment (5.7 MB each, 240 MB in all, and about 0.4 s to load each time Sphinx renumbers
  figures). The nodes are pointed back at the page's document (18 kB).
- The download menu's ``.pdf`` entry printed the page (``window.print()``); it links to the whole book's PDF,
  ``generative-models.pdf`` at the site root (built by ``scripts/build-pdf.sh``), relative to the page.
"""

from __future__ import annotations

from bs4 import BeautifulSoup, Tag
from sphinx.application import Sphinx


def dedupe_scripts(app: Sphinx, pagename: str, templatename: str, context: dict, doctree) -> None:
    seen = set()
    unique = []
    for script in context.get("script_files", []):
        key = (str(getattr(script, "filename", script) or ""), tuple(sorted(getattr(script, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"][:] = unique   # in place: later handlers (mathjax) still append to this list


def citation_list_role(app: Sphinx, pagename: str, templatename: str, context: dict, doctree) -> None:
    body = context.get("body")
    if body and 'class="citation-list"' in body:
        context["body"] = body.replace('<div role="list" class="citation-list">', '<div class="citation-list">')


def default_light_mode(app: Sphinx, config) -> None:
    config.html_context.setdefault("default_mode", "light")


BOOK_PDF = "generative-models.pdf"


def drop_scratch_documents(app: Sphinx, doctree) -> None:
    for node in doctree.findall(include_self=False):
        if getattr(node, "_document", None) not in (None, doctree):
            node.document = None            # the node's document is then its parent's: the page


def theme_options(app: Sphinx, config) -> None:
    options = config.html_theme_options
    options.setdefault("navbar_persistent", [])
    logo = options.setdefault("logo", {})
    logo.setdefault("text", config.html_title)


def book_pdf_download(app: Sphinx, pagename: str, templatename: str, context: dict, doctree) -> None:
    """The download menu's .pdf: the book's PDF instead of printing the page."""
    for group in context.get("header_buttons", []):
        for button in group.get("buttons", []) if group.get("label") == "download-buttons" else []:
            if button.get("label") == "download-pdf-button":
                button.update(type="link", url=context["pathto"](BOOK_PDF, 1),
                              tooltip="Download the whole book as a PDF")
                button.pop("javascript", None)


def _name_summaries(html):
    """Name the chevron-only summaries of a sidebar toctree (the theme's BeautifulSoup object or an HTML string)."""
    soup = html if isinstance(html, Tag) else BeautifulSoup(str(html), "html.parser")
    for summary in soup.select("li.has-children > details > summary"):
        if summary.get_text(strip=True) or summary.has_attr("aria-label"):
            continue
        entry = summary.find_parent("li").find("a", recursive=False)
        label = entry.get_text(" ", strip=True) if entry else "this entry"
        summary["aria-label"] = f"Show or hide the pages under {label}"
    return soup if isinstance(html, Tag) else str(soup)


def named_sidebar_toggles(app: Sphinx, pagename: str, templatename: str, context: dict, doctree) -> None:
    generate = context.get("generate_toctree_html")
    if generate is None:
        return

    def generate_named(*args, **kwargs):
        return _name_summaries(generate(*args, **kwargs))

    context["generate_toctree_html"] = generate_named


def vendored_js_on_demand(app: Sphinx, config) -> None:
    config.html_js_files = [f for f in config.html_js_files
                            if not str(f[0] if isinstance(f, tuple) else f).startswith("vendor/")]


def setup(app: Sphinx) -> dict:
    app.connect("config-inited", default_light_mode)
    app.connect("config-inited", vendored_js_on_demand)
    app.connect("config-inited", theme_options)
    app.connect("html-page-context", book_pdf_download, priority=502)   # after sphinx-book-theme's buttons (501)
    app.connect("html-page-context", named_sidebar_toggles, priority=600)   # after the theme adds its functions
    app.connect("doctree-read", drop_scratch_documents)
    app.connect("html-page-context", dedupe_scripts, priority=100)
    app.connect("html-page-context", citation_list_role)   # first: a later handler may end the event
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
