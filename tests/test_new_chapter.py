"""scripts/new_chapter.py: a new chapter is a working page, in every place the tests require, on the first try.

Each test copies the book's sources (chapters, table of contents, course map, labcode, the scripts and the tests) to
a temporary folder and runs the script there, as an instructor would in a clone: the page, its toc entry and its
notebook appear; the quick checks (``pytest -m quick``, run in the copy) pass with chapters added to every kind of
part; bad input is refused with one line and exit status 2, and changes nothing; and the new chapter builds with
warnings as errors (marked ``book``: it executes the chapter).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from book_utils import ROOT

COPIED = ["_config.yml", "_toc.yml", "_ext", "_static", "book", "lab", "references.bib", "scripts", "src", "tests",
          "pyproject.toml", "requirements.txt"]


@pytest.fixture
def book(tmp_path: Path) -> Path:
    """A copy of the book's sources (without this module, whose tests would run again in the copy)."""
    copy = tmp_path / "book-copy"
    copy.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints", "test_new_chapter.py")
    for name in COPIED:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, copy / name, ignore=ignore)
        else:
            shutil.copy2(ROOT / name, copy / name)
    return copy


def _env(book: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(book / "src")}   # the copy's labcode, as in a clone's environment


def new_chapter(book: Path, *args: str, python: tuple[str, ...] = (sys.executable,)) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*python, "scripts/new_chapter.py", *args], cwd=book, env=_env(book),
                          capture_output=True, text=True, timeout=120)


def _parts(book: Path) -> dict[str, list[str]]:
    toc = yaml.safe_load((book / "_toc.yml").read_text())
    return {p["caption"]: [c["file"] for c in p["chapters"]] for p in toc["parts"]}


def _snapshot(book: Path) -> dict[str, bytes]:
    return {str(p.relative_to(book)): p.read_bytes() for p in sorted(book.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts}


def test_creates_the_page_its_toc_entry_and_its_notebook(book: Path) -> None:
    proc = new_chapter(book, "demo")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("created book/demo.md and book/demo.ipynb; added it to _toc.yml (part 'Toward diffusion')")
    assert "bash scripts/test.sh -m quick" in proc.stdout
    page = (book / "book" / "demo.md").read_text()
    first_cell = re.search(r"```\{code-cell\}[^\n]*\n(.*?)\n```", page, re.S).group(1)
    assert "# labcode-install-cell" in first_cell and ":tags: [remove-cell]" in first_cell
    assert page.count("\n# Demo\n") == 1 and "kernelspec:" in page
    assert "{glue:text}`mean_radius:.2f`" in page and 'glue("mean_radius", mean_radius, display=False)' in page
    assert ":    name: fig-demo-spiral" in page and ":    alt: " in page and "{numref}`fig-demo-spiral`" in page
    assert re.search(r":tags: \[remove-cell\]\n\n#[^\n]*\n(?:[^\n]+\n)*assert ", page), "no hidden assertion"
    assert "SelfCheck(" in page
    notebook = json.loads((book / "book" / "demo.ipynb").read_text())
    assert "# labcode-install-cell" in "".join(notebook["cells"][1]["source"])
    assert _parts(book)["Toward diffusion"][-1] == "book/demo"
    course_map = yaml.safe_load((book / "book" / "course-map.yml").read_text())
    assert course_map["book/demo"]["prerequisites"] == ["book/ddpm"] and course_map["book/demo"]["objective"]
    assert '("Demo", "demo")' in (book / "src" / "labcode" / "plots" / "summary.py").read_text()


def test_the_quick_checks_pass_with_new_chapters_in_every_kind_of_part(book: Path) -> None:
    """The default part (a box in the last row of the summary's map), a part whose row is full (a new row, the
    arrows below it renumbered), a part with room in its row, an unnumbered part (no course map entry), and a title
    with an apostrophe and a colon."""
    chapters = [("demo",), ("vae_more", "--part", "The VAE at work", "--title", "The VAE's terms: a closer look"),
                ("tools_more", "--part", "Foundations", "--objective", "Say: what it's for."), ("extra", "--part", "Appendices")]
    for args in chapters:
        proc = new_chapter(book, *args)
        assert proc.returncode == 0, f"{args}: {proc.stderr}"
    parts = _parts(book)
    assert parts["The VAE at work"][-1] == "book/vae_more" and parts["Appendices"][-1] == "book/extra"
    assert "book/extra" not in yaml.safe_load((book / "book" / "course-map.yml").read_text())
    proc = subprocess.run([sys.executable, "-m", "pytest", "-m", "quick", "-q", "-p", "no:cacheprovider", "-x"],
                          cwd=book, env=_env(book), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert re.search(r"\d+ passed", proc.stdout)


REFUSED = {
    "existing chapter": (["kl"], "chapter 'kl' exists already (book/kl.md, book/kl.ipynb)"),
    "existing folder": (["api"], "chapter 'api' exists already (book/api)"),
    "capitals": (["Score_Matching"], "chapter name 'Score_Matching' is not a lower-case slug"),
    "hyphen": (["score-matching"], "chapter name 'score-matching' is not a lower-case slug"),
    "digit first": (["2d"], "chapter name '2d' is not a lower-case slug"),
    "path": (["../x"], "chapter name '../x' is not a lower-case slug"),
    "unknown part": (["x", "--part", "Nowhere"], "no part 'Nowhere' in _toc.yml (parts: 'Front matter', 'Foundations'"),
    "two-line title": (["x", "--title", "A\nB"], "--title must be one line"),
    "no name": ([], "the following arguments are required: NAME"),
}


@pytest.mark.parametrize("case", REFUSED)
def test_refuses_bad_input_with_one_line_and_changes_nothing(book: Path, case: str) -> None:
    args, message = REFUSED[case]
    before = _snapshot(book)
    proc = new_chapter(book, *args)
    assert proc.returncode == 2 and proc.stdout == "", (proc.returncode, proc.stdout)
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("new_chapter.py: "), proc.stderr
    assert message in proc.stderr, proc.stderr
    assert _snapshot(book) == before


#: (script, whether the Python finds PyYAML): a system Python has none of the project's packages, or only PyYAML
WRONG_PYTHON = [(script, False) for script in ("new_chapter.py", "sync_notebooks.py", "make_student_edition.py",
                                               "compare_glue.py", "benchmark.py")]
WRONG_PYTHON += [(script, True) for script in ("new_chapter.py", "sync_notebooks.py", "make_student_edition.py")]


@pytest.mark.parametrize(("script", "with_yaml"), WRONG_PYTHON)
def test_a_python_without_the_projects_packages_is_told_the_command_that_works(book: Path, script: str, with_yaml: bool,
                                                                              tmp_path: Path) -> None:
    """``python scripts/sync_notebooks.py`` with the system's Python: one line naming what is missing and the command
    that works, exit status 2 (a Python without site-packages, ``-S``, finding at most PyYAML)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if with_yaml:
        (tmp_path / "yaml").symlink_to(Path(yaml.__file__).parent)
        env["PYTHONPATH"] = str(tmp_path)
    proc = subprocess.run([sys.executable, "-S", f"scripts/{script}", "demo"], cwd=book, capture_output=True, text=True,
                          env=env, timeout=60)
    assert proc.returncode == 2 and proc.stdout == "", proc.stderr
    assert proc.stderr.startswith(f"{script}: No module named ") and proc.stderr.count("\n") == 1, proc.stderr
    assert f"run it with the project's environment, .venv/bin/python scripts/{script}" in proc.stderr
    assert not (book / "book" / "demo.md").exists()


@pytest.mark.book
def test_the_new_chapter_builds_with_warnings_as_errors(book: Path) -> None:
    """The new chapter alone (a one-page root before it) builds with -W -n: it executes, its glued numbers, figure,
    cross-reference and self-check render, and its Colab button opens the notebook the script wrote."""
    assert new_chapter(book, "demo").returncode == 0
    (book / "book" / "intro.md").write_text("# A reduced book\n\nThe new chapter alone.\n")
    (book / "_toc.yml").write_text("format: jb-book\nroot: book/intro\nparts:\n  - caption: New\n    numbered: true\n"
                                   "    chapters:\n      - file: book/demo\n")
    (book / "book" / "demo.ipynb").unlink()   # as if written by hand: the build command makes the notebook itself
    proc = subprocess.run([sys.executable, "scripts/build_book.py"], cwd=book, env=_env(book),   # build-book.sh's
                          capture_output=True, text=True, timeout=1200)
    reports = "".join(p.read_text()[-3000:] for p in (book / "_build").rglob("*.err.log"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:] + reports
    assert "book/demo.ipynb" in proc.stdout + proc.stderr and (book / "book" / "demo.ipynb").is_file()
    page = (book / "_build" / "html" / "book" / "demo.html").read_text()
    assert re.search(r'<span class="pasted-text">\d+\.\d\d</span>', page), "no glued number in the prose"
    assert re.search(r'<img alt="Scatter plot of points along a spiral', page), "no figure with its alt text"
    assert 'href="#fig-demo-spiral"' in page and "Fig. 1.1" in page, "the {numref} is not resolved"
    assert 'class="selfcheck"' in page
    colab = re.search(r'href="https://colab\.research\.google\.com/github/[^"]*/blob/main/(book/demo\.ipynb)"', page)
    assert colab and (book / colab.group(1)).is_file()
