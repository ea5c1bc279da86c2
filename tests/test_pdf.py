"""The PDF edition (``bash scripts/build-pdf.sh``) holds the same book as the site.

Every chapter in the order of ``_toc.yml`` under its title as the site shows it, every glued value the site prints
(in that chapter), the same figure numbers, no unresolved reference, no missing figure or glyph, and the book's
TeX macros defined from their one source in ``_config.yml``. The PDF is not built by the test suite (TeX Live is
large): without it these tests skip, unless ``LABCODE_REQUIRE_PDF=1`` (``.ci/run`` sets it), which makes them fail.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess

import pytest
import yaml

from book_utils import BUILD, HTML, ROOT, toc_files

PDF = HTML / "generative-models.pdf"
LATEX = BUILD / "latex"
TOOLS = ("pdftotext", "pdfinfo", "pdfimages")


def _unavailable(reason: str) -> None:
    if os.environ.get("LABCODE_REQUIRE_PDF"):   # set by .ci/run, which builds the PDF before the tests
        pytest.fail(reason)
    pytest.skip(f"{reason} (bash scripts/build-pdf.sh builds it)")


@pytest.fixture(scope="module")
def pdf() -> str:
    """The PDF as text, page by page (pages separated by form feeds)."""
    if not PDF.exists():
        _unavailable(f"{PDF.relative_to(ROOT)} not built")
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        _unavailable(f"poppler-utils missing ({', '.join(missing)})")
    return subprocess.run(["pdftotext", str(PDF), "-"], capture_output=True, text=True, check=True).stdout


def norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def html_text(fragment: str) -> str:
    return norm(html.unescape(re.sub(r"<[^>]+>", "", fragment)))


def site_title(doc: str) -> str:
    """The page's title as the site shows it, without the chapter number."""
    headings = re.findall(r"<h1>(.*?)</h1>", (HTML / f"{doc}.html").read_text(), re.S)
    title = [h for h in headings if 'class="headerlink"' in h]
    assert title, f"no title in {doc}.html"
    title = re.sub(r'<span class="section-number">[^<]*</span>|<a class="headerlink".*?</a>', "", title[0], flags=re.S)
    return html_text(title)



def pdf_docs() -> list[str]:
    """The documents of the print edition: _toc.yml without its "API reference" part (scripts/build-pdf.sh)."""
    return [doc for doc in toc_files() if not doc.startswith("book/api/")]


@pytest.fixture(scope="module")
def chapters(pdf: str, built_book) -> dict[str, str]:
    """Each chapter's text in the PDF, found by its heading (LaTeX sets chapter headings in capitals)."""
    body = norm(pdf)
    root, *docs = pdf_docs()
    title = site_title(root)
    assert title in body[:2000], f"the title page does not show the book's title {title!r}"
    starts, position = [], 0
    for doc in docs:
        heading = site_title(doc).upper()
        found = body.find(heading, position)
        assert found >= 0, f"chapter {doc} ({heading!r}) missing from the PDF, or out of the order of _toc.yml"
        starts.append(found)
        position = found + len(heading)
    ends = [*starts[1:], len(body)]
    return {root: body[: starts[0]], **{doc: body[a:b] for doc, a, b in zip(docs, starts, ends, strict=True)}}


def test_every_chapter_in_the_order_of_the_table_of_contents(chapters: dict[str, str]) -> None:
    assert list(chapters) == pdf_docs()
    short = [doc for doc, text in chapters.items() if len(text) < 200]
    assert not short, f"chapters with (almost) no text in the PDF: {short}"


def test_every_glued_value_appears_in_its_chapter(chapters: dict[str, str]) -> None:
    """Every value the site pastes into prose (``{glue:text}``, formatted as on the page) is in that chapter."""
    checked, missing = 0, []
    for doc, text in chapters.items():
        page = (HTML / f"{doc}.html").read_text()
        for fragment in re.findall(r'<span class="pasted-text">(.*?)</span>', page, re.S):
            value = html_text(fragment)
            checked += 1
            if value not in text:
                missing.append((doc, value))
    assert checked > 500, f"only {checked} glued values found on the site"
    assert not missing, f"{len(missing)} of {checked} glued values are not in their chapter of the PDF: {missing[:20]}"


def test_figures_are_numbered_as_on_the_site(pdf: str, built_book) -> None:
    site = []
    for doc in pdf_docs():
        site += re.findall(r'<span class="caption-number">Fig\. ([\d.]+) </span>', (HTML / f"{doc}.html").read_text())
    in_pdf = re.findall(r"^Fig\. ([\d.]+): ", pdf, re.M)
    assert site and in_pdf == site


def test_theorems_and_exercises_are_numbered_as_on_the_site(pdf: str, built_book) -> None:
    """A box's title and a reference to it give the site's number (not "??", not a section-based number)."""
    kinds = "Theorem|Lemma|Proposition|Corollary|Definition|Remark|Exercise"
    site = set()
    for doc in pdf_docs():
        page = html.unescape((HTML / f"{doc}.html").read_text())
        site |= set(re.findall(rf"\b((?:{kinds}) \d+(?:\.\d+)?)\b", re.sub(r"<[^>]+>", "", page)))
    in_pdf = set(re.findall(rf"\b((?:{kinds}) \d+(?:\.\d+)?)\b", pdf))
    assert len(site) > 50
    assert site == in_pdf, f"only on the site: {sorted(site - in_pdf)[:10]}; only in the PDF: {sorted(in_pdf - site)[:10]}"


def test_no_unresolved_reference_missing_figure_or_glyph(pdf: str) -> None:
    assert "??" not in pdf
    log = (LATEX / "generative-models.log").read_text(errors="replace")
    problems = re.compile(r"(Hyper )?[Rr]eference .* undefined|There were undefined references|Missing character"
                          r"|LaTeX Error|File `[^']*' not found|Unable to load picture")
    lines = [line for line in log.splitlines() if problems.search(line)]
    assert not lines, f"LaTeX log: {lines[:5]}"
    figures = len(re.findall(r"^Fig\. [\d.]+: ", pdf, re.M))
    images = subprocess.run(["pdfimages", "-list", str(PDF)], capture_output=True, text=True, check=True).stdout
    shown = sum(1 for line in images.splitlines()[2:] if line.split()[2:3] == ["image"])
    assert shown >= figures, f"{figures} figure captions but only {shown} images in the PDF"


def test_no_math_left_as_text(pdf: str) -> None:
    """Inline math that Markdown broke up (a line starting with "+ " inside $...$ became a list item) reaches LaTeX
    as an escaped dollar sign followed by TeX source; the book has no literal dollar sign."""
    tex = (LATEX / "generative-models.tex").read_text()
    assert "\\$" not in tex, [line for line in tex.splitlines() if "\\$" in line][:3]


def test_the_pdf_is_the_one_just_built(pdf: str) -> None:
    built = LATEX / "generative-models.pdf"
    assert built.exists() and built.read_bytes() == PDF.read_bytes(), "_build/html/generative-models.pdf is stale"
    pages = int(re.search(r"^Pages:\s+(\d+)", subprocess.run(["pdfinfo", str(PDF)], capture_output=True,
                                                                text=True, check=True).stdout, re.M).group(1))
    assert pages > 100


def test_book_macros_come_from_the_mathjax_configuration(pdf: str) -> None:
    """Each macro of ``mathjax3_config.tex.macros`` is defined in the LaTeX preamble with the same body."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    macros = config["sphinx"]["config"]["mathjax3_config"]["tex"]["macros"]
    preamble = (LATEX / "generative-models.tex").read_text().split(r"\begin{document}")[0]
    for name, body in macros.items():
        assert f"\\renewcommand{{\\{name}}}{{{body}}}" in preamble, f"\\{name} is not defined as in _config.yml"
    assert "𝔼" in pdf and "𝒩" in pdf   # \E and \N typeset (blackboard E, calligraphic N)


def test_ci_and_the_workflow_build_the_pdf() -> None:
    """CI builds the PDF first (filling the execution cache) and requires the PDF tests; the GPU job publishes it."""
    ci = (ROOT / ".ci" / "run").read_text()
    assert "export LABCODE_REQUIRE_PDF=1" in ci
    assert 0 < ci.index("bash scripts/build-pdf.sh") < ci.index("bash scripts/test.sh")
    steps = yaml.safe_load((ROOT / ".github" / "workflows" / "book.yml").read_text())["jobs"]["gpu-build"]["steps"]
    runs = [step.get("run", "") + step.get("uses", "") for step in steps]
    book = next(i for i, r in enumerate(runs) if "scripts/build-book.sh" in r)
    pdf = next(i for i, r in enumerate(runs) if "scripts/build-pdf.sh" in r)
    upload = next(i for i, r in enumerate(runs) if "upload-pages-artifact" in r)
    assert book < pdf < upload, "the PDF is built after the site and lands in _build/html before the upload"
    script = (ROOT / "scripts" / "build-pdf.sh").read_text()
    assert "build_book.py --no-sync --builder pdflatex --toc _build/pdf-toc.yml" in script   # -W -n --keep-going there
    assert "_build/html/generative-models.pdf" in script
    assert '"-W", "-n", "--keep-going"' in (ROOT / "scripts" / "build_book.py").read_text()
