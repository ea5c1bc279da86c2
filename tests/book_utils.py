"""Helpers for the tests that inspect the book's sources and its build."""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from booktools import is_notebook, notebook_docs, source, toc_files  # noqa: E402

__all__ = ["BUILD", "EXECUTED", "HTML", "ROOT", "edit", "glue_references", "is_notebook", "notebook_docs", "source", "toc_files"]
BUILD = ROOT / "_build"
HTML = BUILD / "html"
EXECUTED = BUILD / "jupyter_execute"

#: {glue}`key`, {glue:text}`key:.3f`, {glue:md}`key`, {glue:any}`key`, also `page.md::key:fmt`
GLUE_ROLE = re.compile(r"\{glue(?::(?:text|md|any))?\}`([^`]+)`")
#: ```{glue:figure} key / ```{glue:math} key / :::{glue} key
GLUE_DIRECTIVE = re.compile(r"^[`:]{3,}\{glue(?::\w+)?\}\s+(\S+)", re.MULTILINE)


def glue_references(text: str) -> list[tuple[str | None, str]]:
    """(page, key) for every glue reference in a MyST text; page is None for the same page."""
    refs = []
    for raw in GLUE_ROLE.findall(text):
        page = None
        if "::" in raw:
            page, raw = raw.split("::", 1)
        key = raw.split(":", 1)[0]
        refs.append((page, key))
    refs += [(None, key) for key in GLUE_DIRECTIVE.findall(text)]
    return refs


def edit(path: Path, old: str, new: str) -> None:
    """Replace ``old`` (which must be there) by ``new`` in the file at ``path``."""
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new))
