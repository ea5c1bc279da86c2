"""Sphinx extension: the hover previews (sphinx-tippy, configured in ``_config.yml``) fitted to this book.

- A glossary entry with synonyms is several ``<dt>`` over one ``<dd>`` (``KL divergence`` / ``Kullback–Leibler
  divergence``); sphinx-tippy previews a term as its ``<dt>`` and the ``<dd>`` right after it, so the first
  synonym's preview was the bare term. Each term's preview gets its definition.
- sphinx-tippy collects each page's tip targets while it writes the page and keeps them in the environment, but
  Sphinx saves the environment before the pages are written, so a later build knew only the pages it rewrote:
  an incremental build (one chapter edited) gave that chapter tips for its own targets only and none for the
  other chapters' theorems, figures or glossary terms. The collected data is saved after each build (beside the
  doctrees, paths relative to the output folder) and restored before the next one writes.
- sphinx-tippy writes each page's tips to ``_static/tippy/<page>.<uuid>.js`` and deletes the page's previous
  file, but looks for it under the page's first path component (``book.*.js`` for ``book/kl``), so every
  rebuild left another copy of every file; the files no page loads are removed after the build, and so are the
  caches of its Wikipedia, DOI and Read-the-Docs tips (``tippy_*_cache.json`` at the site root; those tips
  would need the network and are off).
"""

from __future__ import annotations

import pickle
import re
from copy import copy
from pathlib import Path

from bs4 import BeautifulSoup, Tag
from sphinx.application import Sphinx

#: as sphinx-tippy: a term's preview keeps at most this many paragraphs of its definition
MAX_PARAGRAPHS = 6
#: sphinx-tippy's per-page data of the last build, beside the doctrees
SAVED = "tippy-pages.pickle"
TIPS_DIR = ("_static", "tippy")


def _definition(dd: Tag) -> str:
    dd = copy(dd)
    kept = 0
    for child in list(dd.children):
        if not isinstance(child, Tag) or child.name != "p" or kept >= MAX_PARAGRAPHS:
            child.extract()
        else:
            kept += 1
    return str(dd)


def glossary_synonyms(app: Sphinx, pagename: str, templatename: str, context: dict, doctree) -> None:
    page = getattr(app.env, "tippy_data", {}).get("pages", {}).get(pagename)
    if page is None or "glossary" not in context.get("body", ""):
        return
    body = BeautifulSoup(context["body"], "html.parser")
    for dt in body.select("dl.glossary > dt[id]"):
        following = dt.find_next_sibling()
        if following is None or following.name != "dt":
            continue                                # a single term: sphinx-tippy already added its <dd>
        while following is not None and following.name == "dt":
            following = following.find_next_sibling()
        if following is not None and following.name == "dd" and dt["id"] in page["id_to_html"]:
            page["id_to_html"][dt["id"]] += _definition(following)


def _pages(app: Sphinx) -> dict:
    data = getattr(app.env, "tippy_data", None)
    if data is None:
        data = app.env.tippy_data = {"pages": {}, "wiki_titles": set()}
    return data["pages"]


def restore_tips(app: Sphinx, env=None) -> None:
    """Before writing: the tip data of every page as the last build left it (pages rewritten now replace theirs)."""
    path = Path(app.doctreedir, SAVED)
    if app.builder.format != "html" or not path.is_file():
        return
    try:
        saved = pickle.loads(path.read_bytes())
    except (pickle.UnpicklingError, EOFError, AttributeError, ValueError):
        return                                  # unreadable: this build rewrites what it rewrites, as before
    pages = _pages(app)
    pages.clear()
    for doc, page in saved.items():
        if doc in app.env.all_docs:
            pages[doc] = {**page, "js_path": Path(app.outdir, page["js_path"])}


def save_tips(app: Sphinx, exception) -> None:
    if exception or app.builder.format != "html":
        return
    pages = {doc: {**page, "js_path": Path(page["js_path"]).relative_to(app.outdir).as_posix()}
             for doc, page in _pages(app).items() if doc in app.env.all_docs}
    Path(app.doctreedir, SAVED).write_bytes(pickle.dumps(pages, pickle.HIGHEST_PROTOCOL))


def remove_stale_tips(app: Sphinx, exception) -> None:
    """Delete the tip files that no page of the site loads."""
    if exception or app.builder.format != "html":
        return
    tips = Path(app.outdir, *TIPS_DIR)
    loaded = set()
    for html in Path(app.outdir).rglob("*.html"):
        loaded.update(re.findall(r"_static/tippy/([^\"?]+\.js)", html.read_text(encoding="utf-8", errors="replace")))
    for path in tips.rglob("*.js"):
        if path.relative_to(tips).as_posix() not in loaded:
            path.unlink()
    for cache in Path(app.outdir).glob("tippy_*_cache.json"):
        cache.unlink()


def setup(app: Sphinx) -> dict:
    app.connect("env-updated", restore_tips)                            # read, not yet written
    app.connect("html-page-context", glossary_synonyms, priority=451)   # after sphinx-tippy collects the tips (450)
    app.connect("build-finished", save_tips, priority=900)              # after it writes them (500)
    app.connect("build-finished", remove_stale_tips, priority=901)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
