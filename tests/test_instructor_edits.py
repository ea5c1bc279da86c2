"""An instructor changes a parameter of the shared experiments: the pages follow, or the build says why.

Each test copies the book's sources to a temporary folder, edits one constant of
``labcode.experiments`` there, and builds the chapters that use it (with a reduced table of
contents, so only those execute; cross-references to the chapters left out are not checked).
The outcome must be a page consistent with the new value, or a failing build whose log names
the assertion that protects the prose. Never a green build that prints the old value.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from html import unescape
from pathlib import Path

import pytest

from book_utils import ROOT

pytestmark = pytest.mark.book

COPIED = ["_config.yml", "_ext", "_static", "references.bib", "src", "pyproject.toml", "requirements.txt"]


def _copy_book(tmp: Path, chapters: list[str]) -> Path:
    book = tmp / "book-copy"
    book.mkdir()
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, book / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, book / name)
    (book / "book").mkdir()
    for doc in chapters:
        shutil.copy2(ROOT / f"{doc}.md", book / f"{doc}.md")
    for extra in ("book/course-map.yml",):
        shutil.copy2(ROOT / extra, book / extra)
    root, *rest = chapters
    toc = f"format: jb-book\nroot: {root}\n" + ("chapters:\n" + "".join(f"  - file: {d}\n" for d in rest) if rest else "")
    (book / "_toc.yml").write_text(toc)
    return book


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{path.name} no longer contains {old!r}: update this test"
    path.write_text(text.replace(old, new, 1))


def _build(book: Path) -> subprocess.CompletedProcess:
    jb = Path(sys.executable).parent / "jupyter-book"
    env = {**os.environ, "PYTHONPATH": str(book / "src")}   # the kernels import the edited labcode
    return subprocess.run([str(jb), "build", str(book)], capture_output=True, text=True, env=env, cwd=book)


def _page_text(book: Path, doc: str) -> str:
    html = (book / "_build" / "html" / f"{doc}.html").read_text()
    main = html.split('<main id="main-content"', 1)[-1]
    return unescape(re.sub(r"<[^>]+>", " ", main))


def _assertion_reported(proc: subprocess.CompletedProcess, book: Path) -> bool:
    logs = proc.stdout + proc.stderr
    reports = book / "_build" / "html" / "reports"
    if reports.is_dir():
        logs += "".join(p.read_text() for p in reports.rglob("*.err.log"))
    return "AssertionError" in logs


def test_changing_a_beta_of_the_sweep(tmp_path: Path) -> None:
    book = _copy_book(tmp_path, ["book/spiral", "book/two_forces", "book/rate_distortion"])
    _edit(book / "src" / "labcode" / "experiments.py", "(0.0, 0.1, 1.0, 5.0, 10.0)", "(0.0, 0.1, 1.0, 3.0, 10.0)")
    proc = _build(book)
    if proc.returncode != 0:
        assert _assertion_reported(proc, book), f"the build failed without naming a check:\n{proc.stdout[-3000:]}"
        return
    for doc in ("book/two_forces", "book/rate_distortion"):
        text = _page_text(book, doc)
        assert not re.search(r"β\s*=\s*5(?![\d.])", text), f"{doc} still names β = 5 after the sweep changed to β = 3"
        assert re.search(r"β\s*=\s*3(?![\d.])", text), f"{doc} does not name the new β = 3"


def test_changing_the_spiral_noise(tmp_path: Path) -> None:
    book = _copy_book(tmp_path, ["book/spiral"])
    _edit(book / "src" / "labcode" / "experiments.py", "noise: float = 0.1", "noise: float = 0.2")
    proc = _build(book)
    if proc.returncode != 0:
        assert _assertion_reported(proc, book), f"the build failed without naming a check:\n{proc.stdout[-3000:]}"
        return
    text = _page_text(book, "book/spiral")
    assert not re.search(r"σ\s*(?:_?\s*data)?\s*=\s*0\.1(?!\d)|0\.1\s+we asked for", text), \
        "the spiral chapter still quotes σ = 0.1 after the noise changed to 0.2"
    assert re.search(r"0\.2(?!\d)", text), "the spiral chapter does not quote the new noise level"
