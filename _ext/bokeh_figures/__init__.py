"""Sphinx extension: serve BokehJS for the book's interactive figures, from the installed ``bokeh`` package.

An interactive figure (:mod:`labcode.plots.interactive`) is a cell output whose ``text/html`` holds a
Bokeh document, a static fallback image and an inline script that renders the document only when
``window.Bokeh`` exists. This extension

1. copies ``bokeh.min.js`` and ``bokeh-widgets.min.js`` of the installed ``bokeh`` package (the
   version that serialised the documents, so the two always match) into ``_static/bokeh/`` of
   the built site, with the figures' stylesheet: no page requests another host;
2. adds their ``<script>`` tags and the stylesheet only to pages whose body contains an
   interactive figure (the marker class ``labcode-interactive``), so other pages do not carry
   BokehJS (about 1.6 MB);
3. gives the fallback image the cell's alt text: the figure's ``:mystnb: image: alt:`` metadata
   applies to the ``image/png`` output, which myst-nb drops from HTML pages in favour of
   ``text/html``; a post-transform copies it into the fallback ``<img>`` before that choice is
   made. The PDF (LaTeX builder) uses the ``image/png`` output and is not touched.
"""

from __future__ import annotations

import html
import re
import shutil
from pathlib import Path

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.transforms.post_transforms import SphinxPostTransform

MARKER = "labcode-interactive"
CSS = "labcode-interactive.css"
_FALLBACK_ALT = re.compile(r'(<img class="labcode-interactive-fallback" [^>]*?alt=")[^"]*(")')


def bokeh_files() -> list[tuple[Path, str]]:
    """(source in the bokeh package, name under ``_static/bokeh/``) for the scripts a page needs, in load order."""
    import bokeh

    js = Path(bokeh.__file__).parent / "server" / "static" / "js"
    version = bokeh.__version__
    return [(js / "bokeh.min.js", f"bokeh-{version}.min.js"), (js / "bokeh-widgets.min.js", f"bokeh-widgets-{version}.min.js")]


class FallbackAlt(SphinxPostTransform):
    """Copy a figure cell's image alt text into the fallback ``<img>`` of its interactive ``text/html`` output."""

    default_priority = 3   # before myst-nb's SelectMimeType (4) keeps one output of each mime bundle

    def run(self, **kwargs) -> None:
        for bundle in list(self.document.findall(nodes.container)):
            if bundle.get("nb_element") != "mime_bundle":
                continue
            by_type = {child.get("mime_type"): child for child in bundle.children}
            page, png = by_type.get("text/html"), by_type.get("image/png")
            if page is None or png is None:
                continue
            images = list(png.findall(nodes.image))
            alt = images[0].get("alt") if images else None
            if not alt:
                continue
            escaped = html.escape(alt)
            for raw in list(page.findall(nodes.raw)):
                text = raw.astext()
                if MARKER in text and _FALLBACK_ALT.search(text):
                    new = _FALLBACK_ALT.sub(lambda m, alt=escaped: m.group(1) + alt + m.group(2), text, count=1)
                    raw.replace_self(nodes.raw("", new, format=raw.get("format", "html"), classes=raw.get("classes", [])))


def add_assets(app: Sphinx, pagename: str, templatename: str, context: dict, doctree) -> None:
    """Load BokehJS and the stylesheet on pages with an interactive figure, and only there."""
    if f'class="{MARKER}"' not in (context.get("body") or ""):
        return
    for priority, (_, name) in enumerate(bokeh_files(), start=500):
        app.add_js_file(f"bokeh/{name}", priority=priority)
    app.add_css_file(f"bokeh/{CSS}")


def copy_assets(app: Sphinx, exception: Exception | None) -> None:
    if exception is not None or app.builder.format != "html":
        return
    target = Path(app.builder.outdir) / "_static" / "bokeh"
    target.mkdir(parents=True, exist_ok=True)
    for source, name in bokeh_files():
        shutil.copyfile(source, target / name)
    shutil.copyfile(Path(__file__).with_name("interactive.css"), target / CSS)


def setup(app: Sphinx) -> dict:
    app.add_post_transform(FallbackAlt)
    app.connect("html-page-context", add_assets)
    app.connect("build-finished", copy_assets)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
