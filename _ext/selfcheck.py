"""Sphinx extension: the self-check questions of ``labcode.selfcheck`` in the built site.

- Serves ``_static/selfcheck.js`` and ``_static/selfcheck.css`` only to pages that have a self-check
  block (Jupyter Book adds every file of ``_static`` to every page; this takes the two off the others).
- Checks at build time that every numeric answer on a page is the value the page glued under the
  question's ``data-glue-key`` (read from myst-nb's ``<page>.glue.json``): a question whose key was
  never glued, or whose answer differs from the glued value, is a warning, so ``-W`` fails the build.
"""

from __future__ import annotations

import html
import json
import math
import re
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.util import logging

logger = logging.getLogger(__name__)

ASSETS = ("selfcheck.js", "selfcheck.css")
#: a numeric question's opening tag, as labcode.selfcheck writes it
NUMERIC = re.compile(r'<form class="selfcheck-question" id="([^"]+)" data-kind="numeric" data-answer="([^"]+)"[^>]*'
                     r'data-glue-key="([^"]+)"')


def _glued_numbers(app: Sphinx, pagename: str) -> dict[str, float] | None:
    path = Path(app.outdir).parent / "jupyter_execute" / f"{pagename}.glue.json"
    if not path.is_file():
        return None
    values = {}
    for key, output in json.loads(path.read_text()).items():
        text = output.get("data", {}).get("text/plain")
        try:
            values[key] = float(text)
        except (TypeError, ValueError):
            continue
    return values


def check_answers(app: Sphinx, pagename: str, body: str) -> None:
    questions = NUMERIC.findall(body)
    if not questions:
        return
    glued = _glued_numbers(app, pagename) or {}
    for qid, answer, key in questions:
        key = html.unescape(key)
        if key not in glued:
            logger.warning(f"self-check {qid}: glue key {key!r} is not a number glued on this page",
                           location=pagename, type="selfcheck", subtype="glue")
        elif not math.isclose(float(answer), glued[key], rel_tol=1e-12, abs_tol=0.0):
            logger.warning(f"self-check {qid}: answer {answer} is not the glued value {key} = {glued[key]!r}",
                           location=pagename, type="selfcheck", subtype="glue")


def page_assets(app: Sphinx, pagename: str, templatename: str, context: dict, doctree) -> None:
    body = context.get("body") or ""
    if 'class="selfcheck"' in body:
        check_answers(app, pagename, body)
        return
    # the builder restores these lists after each page, so removing in place affects this page only
    for key in ("script_files", "css_files"):
        files = context.get(key)
        if files is not None:
            files[:] = [f for f in files if Path(str(getattr(f, "filename", f) or "")).name not in ASSETS]


def setup(app: Sphinx) -> dict:
    app.connect("html-page-context", page_assets)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
