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
"""

from __future__ import annotations

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


def setup(app: Sphinx) -> dict:
    app.connect("config-inited", default_light_mode)
    app.connect("html-page-context", dedupe_scripts, priority=100)
    app.connect("html-page-context", citation_list_role)   # first: a later handler may end the event
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
