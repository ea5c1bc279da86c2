"""Helpers for the tests that inspect the book's sources and its build."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "_build"
HTML = BUILD / "html"
EXECUTED = BUILD / "jupyter_execute"

#: {glue}`key`, {glue:text}`key:.3f`, {glue:md}`key`, {glue:any}`key`, also `page.md::key:fmt`
GLUE_ROLE = re.compile(r"\{glue(?::(?:text|md|any))?\}`([^`]+)`")
#: ```{glue:figure} key / ```{glue:math} key / :::{glue} key
GLUE_DIRECTIVE = re.compile(r"^[`:]{3,}\{glue(?::\w+)?\}\s+(\S+)", re.MULTILINE)


def toc_files() -> list[str]:
    """Every document named in _toc.yml (root first), without extension."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]

    def walk(entries: list[dict]) -> None:
        for entry in entries:
            if "file" in entry:
                files.append(entry["file"])
            for key in ("sections", "chapters"):
                walk(entry.get(key, []))

    for part in toc.get("parts", []):
        walk(part.get("chapters", []))
    walk(toc.get("chapters", []))
    return files


def source(doc: str) -> Path:
    """The source file of a toc entry (.md)."""
    return ROOT / f"{doc}.md"


def is_notebook(doc: str) -> bool:
    """A MyST notebook declares a kernelspec in its front matter."""
    return "kernelspec:" in source(doc).read_text().split("\n---", 2)[0] + "\n"


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
