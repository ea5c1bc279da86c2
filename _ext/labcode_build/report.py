"""What the build reports: the glued values of every page, and the ``{execution-report}`` page."""

from __future__ import annotations

import json
import os
import sys
import time
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


def failure_location(failure: dict) -> str:
    """``book/<chapter>.md:<line>`` of a failed chapter's cell: relative to the folder the build runs in."""
    path = os.path.relpath(failure["path"])
    if path.startswith(".."):
        path = failure["path"]
    return f"{path}:{failure['line']}" if failure.get("line") else path


def report_failure(failure: dict, before: int = 8, after: int = 3) -> str:
    """What an instructor needs first: where (file and line), what (the exception) and the cell's source around
    the statement that raised (marked ``>``), numbered with the lines of the ``.md`` file."""
    lines = [f"FAILED {failure_location(failure)}: {failure['message']}"]
    source = failure.get("source", "").splitlines()
    if not source:
        return lines[0]
    start, at = failure.get("source_start"), failure.get("cell_line")
    low = max(0, (at or 1) - 1 - before) if at else 0
    high = min(len(source), (at or 0) + after) if at else min(len(source), before + after + 1)
    width = len(str((start or 0) + high))
    if low:
        lines.append(f"      {' ' * width} | … ({low} lines above)")
    for index in range(low, high):
        label = str(start + index).rjust(width) if start else " " * width
        mark = ">" if at is not None and index == at - 1 else " "
        lines.append(f"    {mark} {label} | {source[index]}")
    if high < len(source):
        lines.append(f"      {' ' * width} | … ({len(source) - high} more lines)")
    return "\n".join(lines)


class Ticker:
    """Progress while chapters execute: one line per finished chapter, ``[done/total, elapsed]``; on a terminal
    (or with ``LABCODE_PROGRESS=1``) also a status line, redrawn in place, naming the chapters running."""

    def __init__(self, total: int) -> None:
        self.total, self.done, self.start = total, 0, time.monotonic()
        self.live = sys.stderr.isatty() or os.environ.get("LABCODE_PROGRESS") == "1"
        self.drawn = 0
        self.last = 0.0

    def _prefix(self) -> str:
        return f"[{self.done}/{self.total}, {time.monotonic() - self.start:.0f} s]"

    def clear(self) -> None:
        if self.drawn:
            sys.stderr.write("\r" + " " * self.drawn + "\r")
            sys.stderr.flush()
            self.drawn = 0

    def line(self, text: str) -> None:
        """A chapter finished (or failed): one line (the first of ``text``'s) with the progress prefix."""
        self.clear()
        self.done += 1
        head, *rest = text.splitlines()
        print("\n".join([f"labcode_build: {self._prefix()} {head}", *rest]), file=sys.stderr, flush=True)

    def tick(self, running: list[str]) -> None:
        if not self.live or time.monotonic() - self.last < 1.0:
            return
        self.last = time.monotonic()
        status = f"labcode_build: {self._prefix()} running {', '.join(running)}"[:150]
        self.clear()
        sys.stderr.write(status)
        sys.stderr.flush()
        self.drawn = len(status)
