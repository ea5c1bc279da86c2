"""The whole book builds with warnings as errors, and what it shows comes from executed code."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from book_utils import EXECUTED, ROOT, glue_references, is_notebook, source, toc_files

pytestmark = pytest.mark.book


def test_every_toc_page_has_html(built_book: Path) -> None:
    missing = [doc for doc in toc_files() if not (built_book / f"{doc}.html").is_file()]
    assert not missing, f"pages in _toc.yml without HTML: {missing}"


@pytest.mark.quick
def test_toc_lists_every_chapter_source() -> None:
    listed = {f"{doc}.md" for doc in toc_files()}
    on_disk = {str(p.relative_to(ROOT)) for p in (ROOT / "book").rglob("*.md")}
    assert on_disk <= listed, f"chapter sources not in _toc.yml: {sorted(on_disk - listed)}"


def _executed(doc: str) -> nbformat.NotebookNode:
    path = EXECUTED / f"{doc}.ipynb"
    assert path.is_file(), f"{doc} was not executed ({path} missing)"
    return nbformat.read(path, as_version=4)


@pytest.mark.parametrize("doc", [d for d in toc_files() if is_notebook(d)])
def test_executed_chapter_has_outputs_and_no_errors(built_book: Path, doc: str) -> None:
    nb = _executed(doc)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, f"{doc} has no code cells"
    outputs = [o for c in code for o in c.get("outputs", [])]
    assert outputs, f"{doc} executed without producing any output"
    errors = [o for o in outputs if o.output_type == "error"]
    assert not errors, f"{doc} has error outputs: {[e.ename for e in errors]}"


def _glue_keys(doc: str) -> set[str]:
    path = EXECUTED / f"{doc}.glue.json"
    if path.is_file():
        return set(json.loads(path.read_text()))
    nb = _executed(doc)
    return {o.metadata["scrapbook"]["name"] for c in nb.cells if c.cell_type == "code"
            for o in c.get("outputs", []) if "scrapbook" in o.get("metadata", {})}


@pytest.mark.parametrize("doc", toc_files())
def test_every_glue_reference_exists(built_book: Path, doc: str) -> None:
    refs = glue_references(source(doc).read_text())
    missing = []
    for page, key in refs:
        target = doc if page is None else str((Path(doc).parent / page).with_suffix(""))
        if key not in _glue_keys(target):
            missing.append(f"{target}::{key}")
    assert not missing, f"{doc} references glue keys its notebook does not define: {missing}"


def test_glue_reference_parser() -> None:
    text = "a {glue:text}`kl_pq:.4f` b {glue}`n` c {glue:text}`kl.md::gap:.2f`\n```{glue:figure} fig_key\n```"
    assert glue_references(text) == [(None, "kl_pq"), (None, "n"), ("kl.md", "gap"), (None, "fig_key")]
