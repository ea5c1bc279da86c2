"""What the build reports: the glued values of every page, and the ``{execution-report}`` page."""

from __future__ import annotations

import json
from pathlib import Path

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

from .fingerprints import STAMP
from .paths import GLUE_JSON, REPORT_LOG, cache_path, is_notebook


def glued_values(executed_dir: Path) -> dict[str, dict[str, object]]:
    """``{page: {key: value}}`` from myst-nb's ``*.glue.json`` files: numbers as floats, text as str.

    Figures and other non-text glue are recorded by their MIME types only.
    """
    values: dict[str, dict[str, object]] = {}
    for path in sorted(executed_dir.rglob("*.glue.json")):
        page = str(path.relative_to(executed_dir)).removesuffix(".glue.json")
        entries = {}
        for key, output in json.loads(path.read_text()).items():
            data = output.get("data", {})
            text = data.get("text/plain")
            if any(m.startswith("image/") for m in data):
                entries[key] = {"mime": sorted(data)}
            elif text is not None:
                try:
                    entries[key] = float(text)
                except ValueError:
                    entries[key] = text.strip("'\"") if text[:1] in "'\"" else text
        values[page] = entries
    return values


def on_build_finished(app: Sphinx, exception: Exception | None) -> None:
    """Write the glued values of every page into the site; record the fingerprint of a successful build."""
    if exception is not None:
        return
    executed = Path(app.outdir).parent / "jupyter_execute"
    if executed.is_dir():
        (Path(app.outdir) / GLUE_JSON).write_text(json.dumps(glued_values(executed), indent=1, sort_keys=True))
    current = getattr(app, "labcode_fingerprint", None)
    if current is not None:
        cache = cache_path(app)
        cache.mkdir(parents=True, exist_ok=True)
        (cache / STAMP).write_text(current)


def execution_records(env) -> dict[str, dict]:
    """``{doc: data}`` for every notebook page with an entry in the execution cache (``execution_seconds``, ``device``)."""
    from jupyter_cache import get_cache
    cache_dir = Path(env.mystnb_config.execution_cache_path)
    if not cache_dir.exists():
        return {}
    records = {Path(r.uri).resolve(): r.data for r in get_cache(str(cache_dir)).list_cache_records()}
    found = {doc: records.get(Path(env.doc2path(doc)).resolve()) for doc in env.found_docs}
    return {doc: data for doc, data in found.items() if data is not None}


class ExecutionReport(SphinxDirective):
    """``{execution-report}``: chapter, execution time and device of every notebook in the cache."""

    def run(self) -> list[nodes.Node]:
        records = execution_records(self.env)
        rows = []
        for doc in self.env.found_docs:
            path = Path(self.env.doc2path(doc)).resolve()
            if doc == self.env.docname or not is_notebook(path):
                continue
            data = records.get(doc, {})
            seconds = data.get("execution_seconds")
            rows.append((doc, f"{seconds:.1f}" if seconds is not None else "—", data.get("device", "—")))
        self.env.note_dependency(str(Path(self.env.mystnb_config.execution_cache_path) / REPORT_LOG))
        return [_table(["chapter", "execution time (s)", "device"], sorted(rows), self.env.docname)]


def _table(header: list[str], rows: list[tuple[str, str, str]], here: str) -> nodes.table:
    table = nodes.table(classes=["execution-report"])
    group = nodes.tgroup(cols=len(header))
    table += group
    group += [nodes.colspec(colwidth=1) for _ in header]
    head, body = nodes.thead(), nodes.tbody()
    group += [head, body]
    head += nodes.row("", *[nodes.entry("", nodes.paragraph(text=h)) for h in header])
    from sphinx.addnodes import pending_xref
    for doc, seconds, device in rows:
        ref = pending_xref("", nodes.inline(text=doc), refdomain="std", reftype="doc",
                           reftarget="/" + doc, refexplicit=False, refdoc=here)
        body += nodes.row("", nodes.entry("", nodes.paragraph("", "", ref)),
                          nodes.entry("", nodes.paragraph(text=seconds)),
                          nodes.entry("", nodes.paragraph(text=device)))
    return table
