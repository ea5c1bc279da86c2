"""The student edition of the site (``scripts/build_book.py --edition student``): the book without the lab's reference
implementations, its derivations kept, built from the full edition's execution cache.

The lab's functions are the checklist's references and the ``labcode`` functions that are the same implementation
under another name (``labcode.lab.checklist.reference_aliases``, what the grader's tripwires watch). Each is recognised in a
built site by its source: the statement lines after its docstring, at least 20 characters long, that no other
``labcode`` code has (``mean_likelihood_mc``, which the likelihood chapter shows, shares the chunked loop of
``log_marginal_likelihood_mc``) and that the book and the lab do not give students anyway (a chapter's own code
cells, the checklist's hints). Each of those lines must be in the full edition (so the test cannot pass by looking
in the wrong place) and in no file of the student edition.

The student edition is built once per session, after the full edition (``built_book``), as one Sphinx build that
executes nothing (its execution log says so).
"""

from __future__ import annotations

import ast
import dataclasses
import html
import inspect
import json
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from bs4 import BeautifulSoup

import labcode
from book_utils import BUILD, ROOT
from labcode.lab.checklist import reference_aliases

STUDENT = BUILD / "student" / "_build"
STUDENT_HTML = STUDENT / "html"
EXECUTION_LOG = BUILD / ".jupyter_cache" / "execution-log.json"
BUILD_BOOK = [sys.executable, str(ROOT / "scripts" / "build_book.py")]
#: files that hold no text
BINARY = {".png", ".jpg", ".jpeg", ".gif", ".ico", ".svg", ".woff", ".woff2", ".ttf", ".eot", ".inv", ".pdf", ".pickle"}
LITERALINCLUDE = re.compile(r"^[`:]{3,}\{literalinclude\}[^\n]*\n((?::[^\n]*\n)*)", re.MULTILINE)


def _lab_functions() -> dict[str, object]:
    """``{qualified name: function}`` of every lab function, one entry per source."""
    return {inspect.unwrap(f).__qualname__: inspect.unwrap(f) for _, f in reference_aliases()}


def _statement_lines(function) -> list[str]:
    """The stripped source lines after the function's docstring that are at least 20 characters long."""
    source = textwrap.dedent(inspect.getsource(function))
    node = ast.parse(source).body[0]
    first = node.body[0]
    docstring = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str)
    start = first.end_lineno if docstring else first.lineno - 1
    return [s for line in source.splitlines()[start:] if len(s := line.strip()) >= 20 and not s.startswith("#")]


def _elsewhere() -> set[str]:
    """Every stripped line of ``labcode``'s sources outside the lab functions."""
    spans: dict[Path, list[tuple[int, int]]] = {}
    for function in _lab_functions().values():
        lines, start = inspect.getsourcelines(function)
        spans.setdefault(Path(inspect.getsourcefile(function)).resolve(), []).append((start, start + len(lines) - 1))
    seen = set()
    for path in Path(labcode.__file__).resolve().parent.rglob("*.py"):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not any(a <= number <= b for a, b in spans.get(path, [])):
                seen.add(line.strip())
    return seen


def _given() -> str:
    """What the book and the lab give students whatever the edition: the pages' own text and code cells
    (``book/**/*.md``), the lab's notebook (``lab/*.md``) and the checklist's texts (its hints, on the API page)."""
    from labcode.lab.checklist import CHECKLIST

    texts = [p.read_text(encoding="utf-8") for folder in ("book", "lab") for p in sorted((ROOT / folder).rglob("*.md"))]
    for item in CHECKLIST:
        for field in dataclasses.fields(item):
            value = getattr(item, field.name)
            texts += [value] if isinstance(value, str) else [v for v in value if isinstance(v, str)] if isinstance(value, tuple) else []
    return "\n".join(texts)


def lab_source_lines() -> dict[str, list[str]]:
    """``{function: the lines that give its source away}``: its statement lines that neither other ``labcode`` code
    nor what the book and the lab give students has."""
    elsewhere, given = _elsewhere(), _given()
    return {name: [line for line in _statement_lines(f) if line not in elsewhere and line not in given]
            for name, f in _lab_functions().items()}


def _strings(value) -> list[str]:
    """Every string in a JSON value."""
    if isinstance(value, str):
        return [value]
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
    return [s for item in items for s in _strings(item)]


def site_text(site: Path) -> dict[Path, str]:
    """The text of every file of a built site: HTML tag-stripped and unescaped, JSON (notebooks, glued values) as its
    strings, JavaScript and anything else unescaped."""
    texts = {}
    for path in sorted(p for p in site.rglob("*") if p.is_file() and p.suffix.lower() not in BINARY):
        raw = path.read_text(encoding="utf-8", errors="replace")
        if path.suffix in (".ipynb", ".json"):
            try:
                raw = "\n".join(_strings(json.loads(raw)))
            except ValueError:
                pass
        elif path.suffix in (".html", ".htm", ".xml"):
            raw = re.sub(r"<[^>]+>", "", raw)
        texts[path] = html.unescape(raw)
    return texts


def included_lab_functions(page_source: str) -> list[str]:
    """The lab functions a MyST page includes by ``:pyobject:``."""
    names = set(_lab_functions())
    found = []
    for options in LITERALINCLUDE.findall(page_source):
        match = re.search(r"^:pyobject:\s*(\S+)", options, re.MULTILINE)
        if match and match.group(1) in names:
            found.append(match.group(1))
    return found


@pytest.fixture(scope="session")
def student_site(built_book: Path) -> dict:
    """Build the student edition once, after the full edition, as an instructor does; its time and execution log."""
    start = time.monotonic()
    env = {k: v for k, v in os.environ.items() if k != "LABCODE_EDITION"}
    proc = subprocess.run([*BUILD_BOOK, "--edition", "student", "--no-sync"], cwd=ROOT, capture_output=True, text=True,
                          env=env)
    seconds = time.monotonic() - start
    if proc.returncode != 0:
        pytest.fail(f"the student edition failed to build ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return {"html": STUDENT_HTML, "seconds": seconds, "log": json.loads(EXECUTION_LOG.read_text()),
            "stderr": proc.stderr}


# --------------------------------------------------------------------------- no build


def test_lab_functions_are_recognisable() -> None:
    """Each lab function has lines of its own (else the site tests below would pass vacuously for it), and the
    checklist's eleven are among them."""
    from labcode.lab.checklist import CHECKLIST

    lines = lab_source_lines()
    assert {inspect.unwrap(item.reference).__qualname__ for item in CHECKLIST} <= set(lines)
    assert {"VAE.compute_elbo", "elbo_terms", "log_likelihood_given_z", "log_marginal_likelihood_mc"} <= set(lines)
    assert all(lines[name] for name in lines), {name: found for name, found in lines.items() if not found}


def test_edition_option_is_checked() -> None:
    """An unknown edition, from the option or the variable, is refused before anything is built; so is an output
    folder of one's own for the student edition, which has its own."""
    env = {**os.environ, "LABCODE_EDITION": "teacher"}
    for command, environ, message in (
            ([*BUILD_BOOK, "--edition", "teacher"], os.environ, "invalid choice: 'teacher'"),
            (BUILD_BOOK, env, "LABCODE_EDITION must be one of full, student, got 'teacher'"),
            ([*BUILD_BOOK, "--edition", "student", "--path-output", "/tmp/elsewhere"], os.environ, "--path-output"),
            ([*BUILD_BOOK, "--edition", "student", "--builder", "pdflatex"], os.environ, "HTML) only"),
            ([*BUILD_BOOK, "--builder=pdflatex"], {**os.environ, "LABCODE_EDITION": "student"}, "HTML) only")):
        proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=environ, timeout=120)
        assert proc.returncode == 2, proc.stderr
        assert message in proc.stderr


def test_student_edition_never_overwrites_the_full_site() -> None:
    """``LABCODE_EDITION=student jupyter-book build .`` (without the student edition's folder) stops before it
    touches anything, naming the command that builds it."""
    jb = Path(sys.executable).parent / "jupyter-book"
    before = {p: p.stat().st_mtime for p in (BUILD / "html" / "index.html",) if p.exists()}
    proc = subprocess.run([str(jb), "build", str(ROOT), "-q"], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "LABCODE_EDITION": "student"})
    assert proc.returncode != 0
    assert "--edition student" in proc.stdout + proc.stderr
    assert before == {p: p.stat().st_mtime for p in before}


# --------------------------------------------------------------------------- the built editions


def test_student_edition_executes_nothing(student_site: dict) -> None:
    """Built after the full edition, the student edition finds every chapter in the shared execution cache."""
    log = student_site["log"]
    assert log["executed"] == [] and log["failed"] == [] and log["restored"] == [], log
    assert "executing" not in student_site["stderr"]


def test_student_edition_has_no_lab_source(built_book: Path, student_site: dict) -> None:
    """No file of the student edition (pages, search index, ``_sources``, notebooks, scripts) holds a line of a lab
    function's source; the full edition holds every one of them."""
    lines = lab_source_lines()
    full = "\n".join(site_text(built_book).values())
    missing = {name: [line for line in found if line not in full] for name, found in lines.items()}
    assert not any(missing.values()), f"not in the full edition: {missing}"
    leaks = {}
    for path, text in site_text(student_site["html"]).items():
        for name, found in lines.items():
            shown = [line for line in found if line in text]
            if shown:
                leaks.setdefault(str(path.relative_to(student_site["html"])), {})[name] = shown
    assert not leaks


def test_student_edition_shows_no_module_source(built_book: Path, student_site: dict) -> None:
    """No ``_modules/`` pages and no ``[source]`` links (a lab function's module holds its unchecked helpers), no
    link to the book's PDF (the full edition); the full edition has all three."""
    assert (built_book / "_modules" / "labcode" / "kl.html").is_file()
    assert not (student_site["html"] / "_modules").exists()
    for site, present in ((built_book, True), (student_site["html"], False)):
        api = (site / "book" / "api" / "kl.html").read_text(encoding="utf-8")
        assert ("viewcode-link" in api) is present
        chapter = (site / "book" / "kl.html").read_text(encoding="utf-8")
        assert ("generative-models.pdf" in chapter) is present


def test_notes_replace_the_dropped_includes(built_book: Path, student_site: dict) -> None:
    """Every page that includes a lab function's source has, in the student edition, a note naming each one, and no
    dropdown left empty; the full edition has the sources and no note."""
    pages = 0
    for source in sorted((ROOT / "book").rglob("*.md")):
        names = included_lab_functions(source.read_text(encoding="utf-8"))
        page = source.relative_to(ROOT).with_suffix(".html")
        if not names or not (student_site["html"] / page).is_file():
            continue
        pages += 1
        student = BeautifulSoup((student_site["html"] / page).read_text(encoding="utf-8"), "html.parser")
        full = BeautifulSoup((built_book / page).read_text(encoding="utf-8"), "html.parser")
        notes = student.select("div.labcode-edition")
        named = {code.get_text() for note in notes for code in note.select("code")}
        assert set(names) <= named, (page, names, named)
        assert all("full edition" in note.get_text() for note in notes)
        assert not full.select("div.labcode-edition")
        for dropdown in student.select("details.sd-dropdown"):
            body = dropdown.select_one(".sd-summary-content")
            assert body is not None and body.get_text(strip=True), (page, dropdown.get_text(" ", strip=True)[:80])
    assert pages >= 5     # likelihood, kl, elbo, gradients and the checklist appendix include them today
    checklist = Path("book/appendix/checklist.html")
    assert BeautifulSoup((built_book / checklist).read_text(encoding="utf-8"), "html.parser").select("details.sd-dropdown")
    assert not BeautifulSoup((student_site["html"] / checklist).read_text(encoding="utf-8"),
                             "html.parser").select("details.sd-dropdown")


def _derivations(site: Path, page: str) -> dict[str, object]:
    soup = BeautifulSoup((site / page).read_text(encoding="utf-8"), "html.parser")
    article = soup.select_one("article")
    return {"ids": sorted(e["id"] for e in article.select("[id]")),
            "statements": [e.get_text(" ", strip=True) for e in article.select("div.proof")],
            "math": [e.get_text() for e in article.select(".math")]}


def test_student_edition_keeps_the_derivations(built_book: Path, student_site: dict) -> None:
    """Every page has the same anchors (sections, theorems, equations, figures), the same statements and proofs and
    the same mathematics in both editions, and the glued numbers are the same."""
    pages = sorted(str(p.relative_to(built_book)) for p in (built_book / "book").rglob("*.html"))
    assert "book/elbo.html" in pages and "book/gradients.html" in pages
    assert sorted(str(p.relative_to(student_site["html"])) for p in (student_site["html"] / "book").rglob("*.html")) == pages
    for page in pages:
        full, student = _derivations(built_book, page), _derivations(student_site["html"], page)
        assert full == student, page
    elbo = _derivations(student_site["html"], "book/elbo.html")
    assert len(elbo["statements"]) >= 10 and len(elbo["math"]) >= 100
    full_glue = json.loads((built_book / "glued-values.json").read_text())
    assert json.loads((student_site["html"] / "glued-values.json").read_text()) == full_glue
    assert full_glue["book/elbo"] and full_glue["book/gradients"]
