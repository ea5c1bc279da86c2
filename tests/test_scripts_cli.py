"""The scripts answer bad input with one line on stderr that names the file or argument, and exit status 2.

Each script runs as a subprocess, as a user would run it, on a broken input in a temporary folder: a missing,
empty, undecodable or malformed file, a folder where a file should be, JSON of the wrong shape, an unknown page or
scenario, a chapter with broken front matter, an output path that cannot be written. sync_notebooks.py and
make_student_edition.py work on the book around them, so they run from a copy of the scripts inside a small book
in the temporary folder. Nothing here builds the book: benchmark.py checks its arguments before any build.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from book_utils import ROOT

SCRIPTS = ROOT / "scripts"
CHAPTER = """\
---
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---

# KL divergence

```{code-cell} ipython3
print(1 + 1)
```
"""
CHECKLIST_CHAPTERS = ("likelihood", "kl", "elbo", "gradients", "two_forces")


def script(name: str, *args: str, cwd: Path, scripts: Path = SCRIPTS) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, str(scripts / name), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def assert_one_line(proc: subprocess.CompletedProcess[str], name: str, *needles: str, status: int = 2) -> None:
    """Exit ``status``, nothing on stdout, and stderr one line ``name: ...`` holding every needle; no traceback."""
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{proc.stderr}"
    assert lines[0].startswith(f"{name}: "), lines[0]
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    assert proc.returncode == status, (proc.returncode, proc.stderr)
    assert proc.stdout == "", proc.stdout


# compare_glue.py ------------------------------------------------------------------------------------------------

GOOD = json.dumps({"book/kl": {"kl_pq": 0.5}})
BROKEN_JSON = '{"book/kl": {\n  "kl_pq": 0.5,\n  "x": 1\n  "y": 2}}'
TOLERANCES = "default: {rtol: 1.0e-3, atol: 0.0}\n"

COMPARE_CASES = {
    "missing file": ({}, ["missing.json", "b.json"], ["missing.json: no such file"]),
    "folder": ({}, ["folder", "b.json"], ["folder: is a folder"]),
    "empty file": ({"a.json": ""}, ["a.json", "b.json"], ["a.json: empty file"]),
    "not UTF-8": ({"a.json": b'{"\xff": 1}'}, ["a.json", "b.json"], ["a.json: not UTF-8"]),
    "malformed JSON": ({"a.json": BROKEN_JSON}, ["a.json", "b.json"],
                       ["a.json: not valid JSON (line 4, column 3: Expecting ',' delimiter)"]),
    "a list": ({"b.json": "[1, 2]"}, ["a.json", "b.json"], ["b.json: expected {page: {key: value}}, got a list"]),
    "a page of numbers": ({"b.json": '{"book/kl": [0.5]}'}, ["a.json", "b.json"], ["b.json: page 'book/kl'", "got a list"]),
    "missing tolerances": ({}, ["a.json", "b.json", "--tolerances", "nope.yml"], ["nope.yml: no such file"]),
    "tolerances not YAML": ({"tol.yml": "default: {rtol: [1\n"}, ["a.json", "b.json", "--tolerances", "tol.yml"],
                            ["tol.yml: not valid YAML (line 2"]),
    "tolerances a list": ({"tol.yml": "- 1\n"}, ["a.json", "b.json", "--tolerances", "tol.yml"],
                          ["tol.yml: expected a mapping", "got a list"]),
    "tolerance as text": ({"tol.yml": 'keys:\n  "book/kl::*": {rtol: 1e-3}\n'}, ["a.json", "b.json", "--tolerances", "tol.yml"],
                          ["tol.yml: keys: 'book/kl::*': rtol must be a number >= 0, got '1e-3'"]),
    "unknown tolerance": ({"tol.yml": "default: {rtoll: 0.1}\n"}, ["a.json", "b.json", "--tolerances", "tol.yml"],
                          ["tol.yml: default: unknown tolerance 'rtoll'"]),
    "missing argument": ({}, ["a.json"], ["required: b"]),
}


@pytest.mark.parametrize("case", COMPARE_CASES)
def test_compare_glue_bad_input(tmp_path: Path, case: str) -> None:
    files, args, needles = COMPARE_CASES[case]
    (tmp_path / "folder").mkdir()
    for name, text in {"a.json": GOOD, "b.json": GOOD, "tol.yml": TOLERANCES, **files}.items():
        (tmp_path / name).write_bytes(text if isinstance(text, bytes) else text.encode())
    assert_one_line(script("compare_glue.py", *args, cwd=tmp_path), "compare_glue.py", *needles)


# sync_notebooks.py and make_student_edition.py, on a small book ------------------------------------------------

def small_book(root: Path, chapters: tuple[str, ...] = ("kl",)) -> Path:
    """A book at ``root`` with its own copy of the scripts: a prose intro and notebook ``chapters``."""
    (root / "scripts").mkdir(parents=True)
    for name in ("booktools.py", "sync_notebooks.py", "make_student_edition.py"):
        shutil.copy(SCRIPTS / name, root / "scripts" / name)
    (root / "_config.yml").write_text("repository:\n  url: https://github.com/owner/book\n  branch: main\n")
    toc = "".join(f"  - file: book/{chapter}\n" for chapter in chapters)
    (root / "_toc.yml").write_text(f"format: jb-book\nroot: book/intro\nchapters:\n{toc}")
    (root / "book").mkdir()
    (root / "book" / "intro.md").write_text("# Introduction\n")
    for chapter in chapters:
        (root / "book" / f"{chapter}.md").write_text(CHAPTER)
    return root


def run_in(book: Path, name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return script(name, *args, cwd=book, scripts=book / "scripts")


def test_the_small_book_syncs(tmp_path: Path) -> None:
    """The control: the scripts work on the unbroken small book (each case below breaks one thing)."""
    book = small_book(tmp_path, CHECKLIST_CHAPTERS)
    proc = run_in(book, "sync_notebooks.py", "kl")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert "updated: book/kl.ipynb" in proc.stdout and "book/elbo" not in proc.stdout
    proc = run_in(book, "make_student_edition.py")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert (book / "lab" / "lab3_student.ipynb").is_file()


def replace(path: str, text: str | bytes) -> Callable[[Path], None]:
    def change(book: Path) -> None:
        (book / path).write_bytes(text if isinstance(text, bytes) else text.encode())
    return change


def make_folder(path: str) -> Callable[[Path], None]:
    def change(book: Path) -> None:
        (book / path).mkdir(parents=True)
    return change


def dangling_link(path: str) -> Callable[[Path], None]:
    """``path`` becomes a link into a folder that does not exist: it cannot be written."""
    def change(book: Path) -> None:
        (book / path).parent.mkdir(exist_ok=True)
        (book / path).symlink_to(book / "missing-folder" / "file")
    return change


def delete(path: str) -> Callable[[Path], None]:
    return lambda book: (book / path).unlink()


SYNC_CASES = {
    "unknown page": (None, ["klx"], ["unknown page 'klx' (executed chapters: kl)"]),
    "front matter not closed": (replace("book/kl.md", CHAPTER.replace("---\n\n#", "\n#")), [],
                                ["book/kl.md: front matter not closed"]),
    "front matter not YAML": (replace("book/kl.md", CHAPTER.replace("  language: python", "  language: [python")), [],
                              ["book/kl.md: front matter is not valid YAML (line 5"]),
    "no kernelspec": (replace("book/kl.md", "---\ntitle: KL\n---\n" + CHAPTER.split("---\n", 2)[2]), [],
                      ["book/kl.md: has code cells but no kernelspec"]),
    "kernelspec without a name": (replace("book/kl.md", CHAPTER.replace("  name: python3\n", "")), [],
                                  ["book/kl.md: the front matter's kernelspec must name a kernel"]),
    "no code cell": (replace("book/kl.md", CHAPTER.split("```")[0]), [], ["book/kl.md: a chapter with a kernelspec but no code cell"]),
    "chapter not UTF-8": (replace("book/kl.md", CHAPTER.encode() + b"\xff\n"), [], ["book/kl.md: not UTF-8 text"]),
    "chapter missing": (delete("book/kl.md"), [], ["_toc.yml: page 'book/kl' has no file book/kl.md"]),
    "toc missing": (delete("_toc.yml"), [], ["_toc.yml: no such file"]),
    "toc a list": (replace("_toc.yml", "- file: book/kl\n"), [], ["_toc.yml: expected a mapping", "got a list"]),
    "toc entries not mappings": (replace("_toc.yml", "root: book/intro\nchapters: [book/kl]\n"), [],
                                 ["_toc.yml: chapters and sections must be lists of entries"]),
    "config without repository": (replace("_config.yml", "title: A book\n"), [], ["_config.yml: no repository.url"]),
    "config empty": (replace("_config.yml", ""), [], ["_config.yml: empty file"]),
    "notebook is a folder": (make_folder("book/kl.ipynb"), [], ["book/kl.ipynb: is a folder"]),
    "notebook cannot be written": (dangling_link("book/kl.ipynb"), [], ["book/kl.ipynb: cannot write"]),
    "unknown option": (None, ["--chek"], ["unrecognized arguments: --chek"]),
}


@pytest.mark.parametrize("case", SYNC_CASES)
def test_sync_notebooks_bad_input(tmp_path: Path, case: str) -> None:
    change, args, needles = SYNC_CASES[case]
    book = small_book(tmp_path)
    if change:
        change(book)
    assert_one_line(run_in(book, "sync_notebooks.py", *args), "sync_notebooks.py", *needles)
    assert not (book / "book" / "kl.ipynb").is_file(), "a failed run wrote a notebook"


STUDENT_CASES = {
    "unknown page": (replace("_toc.yml", "root: book/intro\nchapters:\n  - file: book/kl\n"), [],
                     ["checklist.py:", "unknown page 'book/likelihood'"]),
    "config missing": (delete("_config.yml"), [], ["_config.yml: no such file"]),
    "config not YAML": (replace("_config.yml", "repository: {url: x\n"), [], ["_config.yml: not valid YAML (line 2"]),
    "toc empty": (replace("_toc.yml", "\n"), [], ["_toc.yml: empty file"]),
    "lab is a file": (replace("lab", "not a folder"), [], ["lab: cannot create the folder"]),
    "output is a folder": (make_folder("lab/lab3_student.md"), [], ["lab/lab3_student.md: is a folder"]),
    "output cannot be written": (dangling_link("lab/lab3_student.md"), [], ["lab/lab3_student.md: cannot write"]),
}


@pytest.mark.parametrize("case", STUDENT_CASES)
def test_make_student_edition_bad_input(tmp_path: Path, case: str) -> None:
    change, args, needles = STUDENT_CASES[case]
    book = small_book(tmp_path, CHECKLIST_CHAPTERS)
    change(book)
    assert_one_line(run_in(book, "make_student_edition.py", *args), "make_student_edition.py", *needles)
    assert not (book / "lab" / "lab3_student.md").is_file(), "a failed run wrote the student edition"


# benchmark.py: only its arguments (a real run builds the book several times) ------------------------------------

BENCHMARK_CASES = {
    "unknown scenario": (["warm"], ["unknown scenario 'warm' (scenarios: cold, no-change"]),
    "write into a missing folder": (["--write", "missing/BENCHMARKS.md"], ["missing/BENCHMARKS.md: no such folder missing"]),
    "write onto a folder": (["--write", "folder"], ["folder: is a folder"]),
    "write a part of the table": (["cold", "--write", "B.md"], ["--write records the whole table"]),
    "write over a file that is not UTF-8": (["--write", "binary.md"], ["binary.md: not UTF-8"]),
    "unknown option": (["--output", "B.md"], ["unrecognized arguments: --output"]),
}


@pytest.mark.parametrize("case", BENCHMARK_CASES)
def test_benchmark_bad_arguments(tmp_path: Path, case: str) -> None:
    args, needles = BENCHMARK_CASES[case]
    (tmp_path / "folder").mkdir()
    (tmp_path / "binary.md").write_bytes(b"# Build benchmarks\n\xff\n")
    assert_one_line(script("benchmark.py", *args, cwd=tmp_path), "benchmark.py", *needles)
