"""Sphinx extension: the course map on the landing page, generated at build time.

``{chapter-map}`` renders one row per chapter of the numbered parts of ``_toc.yml`` (under a
row naming each part): the chapter (linked), what a reader will be able to do after it and the chapters it builds on
(both from ``book/course-map.yml``), the reading time (the page's prose at 200 words a minute)
and the execution time measured by the last build that executed it (from the execution cache;
"not yet run" before the first build). Nothing in the table is typed into a page, so it follows the
chapters and the build.

The build warns (an error under ``-W``) when a chapter of a numbered part has no entry in
the map, an entry names no chapter, or a prerequisite is not an earlier chapter.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import yaml
from docutils import nodes
from sphinx.addnodes import pending_xref
from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

LOGGER = logging.getLogger(__name__)
MAP_FILE = "book/course-map.yml"
WORDS_PER_MINUTE = 200
CODE_CELL = re.compile(r"^(`{3,}|~{3,})\{code-cell\}.*?^\1[ \t]*$", re.M | re.S)
FRONT_MATTER = re.compile(r"\A---\n.*?\n---\n", re.S)


def numbered_chapters(env) -> list[tuple[str, str]]:
    """(part caption, docname) for every chapter of the numbered parts, in the order of the table of contents."""
    site_map = getattr(env, "external_site_map", None)
    if site_map is None:
        return []
    root = site_map[site_map.root.docname]
    return [(tree.caption or "", str(item)) for tree in root.subtrees if tree.numbered for item in tree.items]


def reading_minutes(text: str) -> int:
    """Minutes to read the page's prose (code cells and front matter excluded) at 200 words a minute."""
    prose = CODE_CELL.sub(" ", FRONT_MATTER.sub("", text))
    return max(1, math.ceil(len(re.findall(r"\S+", prose)) / WORDS_PER_MINUTE))


def execution_seconds(env) -> dict[str, float]:
    """Each notebook's execution time as recorded in the execution cache by the build that executed it."""
    from labcode_build.report import execution_records
    return {doc: float(data["execution_seconds"]) for doc, data in execution_records(env).items()
            if data.get("execution_seconds") is not None}


def load_map(root: Path) -> dict[str, dict]:
    return yaml.safe_load((root / MAP_FILE).read_text(encoding="utf-8")) or {}


def check_map(entries: dict[str, dict], chapters: list[str]) -> list[str]:
    """Problems with the map: missing or unknown chapters, prerequisites that are not earlier chapters."""
    problems = [f"chapter {doc} has no entry in {MAP_FILE}" for doc in chapters if doc not in entries]
    problems += [f"{MAP_FILE} names {doc}, which is not a chapter of a numbered part" for doc in entries if doc not in chapters]
    position = {doc: i for i, doc in enumerate(chapters)}
    for doc, entry in entries.items():
        if not str(entry.get("objective", "")).strip():
            problems.append(f"{MAP_FILE}: {doc} has no objective")
        for pre in entry.get("prerequisites", []) or []:
            if pre not in position or doc not in position or position[pre] >= position[doc]:
                problems.append(f"{MAP_FILE}: prerequisite {pre} of {doc} is not an earlier chapter")
    return problems


def _xref(doc: str, here: str) -> pending_xref:
    return pending_xref("", nodes.inline(text=doc), refdomain="std", reftype="doc", reftarget="/" + doc,
                        refexplicit=False, refdoc=here)


def _entry(*children: nodes.Node) -> nodes.entry:
    return nodes.entry("", nodes.paragraph("", "", *children))


class ChapterMap(SphinxDirective):
    """``{chapter-map}``: the course map table (see the module docstring)."""

    def run(self) -> list[nodes.Node]:
        root = Path(self.env.app.confdir)
        self.env.note_dependency(str(root / MAP_FILE))
        entries = load_map(root)
        chapters = numbered_chapters(self.env)
        for problem in check_map(entries, [doc for _, doc in chapters]):
            LOGGER.warning(problem, location=self.get_location(), type="labcode", subtype="course_map")
        times = execution_seconds(self.env)
        here = self.env.docname
        header = ["chapter", "you will be able to", "builds on", "time"]
        table = nodes.table(classes=["chapter-map"])
        group = nodes.tgroup(cols=len(header))
        table += group
        group += [nodes.colspec(colwidth=w) for w in (3, 5, 3, 2)]
        head, body = nodes.thead(), nodes.tbody()
        group += [head, body]
        head += nodes.row("", *[nodes.entry("", nodes.paragraph(text=h)) for h in header])
        current_part = None
        for part, doc in chapters:
            if part != current_part:         # one spanning row names each part
                current_part = part
                title = nodes.entry("", nodes.paragraph("", "", nodes.strong(text=part)), morecols=len(header) - 1)
                body += nodes.row("", title, classes=["chapter-map-part"])
            entry = entries.get(doc, {})
            prerequisites = entry.get("prerequisites", []) or []
            builds_on = nodes.paragraph()
            for i, pre in enumerate(prerequisites):
                if i:
                    builds_on += nodes.Text(", ")
                builds_on += _xref(pre, here)
            if not prerequisites:
                builds_on += nodes.Text("—")
            minutes = reading_minutes(Path(self.env.doc2path(doc)).read_text(encoding="utf-8"))
            seconds = times.get(doc)
            timing = f"{minutes} min read, " + (f"{seconds:.1f} s to run" if seconds is not None else "not yet run")
            body += nodes.row("", _entry(_xref(doc, here)), _entry(nodes.Text(str(entry.get("objective", "")))),
                              nodes.entry("", builds_on), _entry(nodes.Text(timing)))
        return [table]


def on_env_get_outdated(app: Sphinx, env, added, changed, removed) -> list[str]:
    """The page with the map is re-read on every build: execution times and reading times may have changed."""
    return [doc for doc in env.found_docs if "{chapter-map}" in Path(env.doc2path(doc)).read_text(encoding="utf-8")]


def setup(app: Sphinx) -> dict:
    app.add_directive("chapter-map", ChapterMap)
    app.connect("env-get-outdated", on_env_get_outdated)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
