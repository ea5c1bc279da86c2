"""Shared knowledge about the book's sources: the table of contents and which pages are notebooks.

Used by the scripts in this folder and by the tests.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def toc_files(root: Path = ROOT) -> list[str]:
    """Every document named in _toc.yml (root first), without extension."""
    toc = yaml.safe_load((root / "_toc.yml").read_text())
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


def source(doc: str, root: Path = ROOT) -> Path:
    """The source file of a toc entry (.md)."""
    return root / f"{doc}.md"


def is_notebook(doc: str, root: Path = ROOT) -> bool:
    """A MyST notebook declares a kernelspec in its front matter."""
    text = source(doc, root).read_text()
    return text.startswith("---") and "kernelspec:" in text.split("\n---", 2)[0]


def notebook_docs(root: Path = ROOT) -> list[str]:
    """The executed chapters, in table-of-contents order."""
    return [doc for doc in toc_files(root) if is_notebook(doc, root)]


def repository(root: Path = ROOT) -> tuple[str, str]:
    """(url, branch) of the book's repository, as set once in _config.yml."""
    repo = yaml.safe_load((root / "_config.yml").read_text())["repository"]
    return repo["url"].rstrip("/"), repo.get("branch", "master")


def report_stale(stale: list[Path], check: bool, command: str) -> int:
    """Print what a generator script updated (or, with ``check``, found out of date); the exit status."""
    for path in stale:
        print(f"{'out of date' if check else 'updated'}: {path.relative_to(ROOT)}")
    if check and stale:
        print(f"run: {command}", file=sys.stderr)
        return 1
    return 0
