"""Tests of the lab's student edition (lab/lab3_student.md and .ipynb), generated from labcode.lab.checklist.

The edition teaches before it tells: for each of the eleven functions the idea, then the formula, then a code hint
folded in an HTML ``<details>`` block, and TODO steps in words; no complete line of a solution is shown, folded or
not. Its help agrees with the docstrings it sits beside. It is a page of the site, with launch buttons and not
executed, and its links to chapters are absolute URLs of the published site whose pages and anchors the build has.
"""

from __future__ import annotations

import ast
import inspect
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import nbformat
import pytest
import torch

import labcode as lc
from book_utils import ROOT, is_notebook, toc_files
from booktools import front_matter, repository  # scripts/ is on the path through book_utils
from browser_fixtures import SCREENSHOTS, require_chromium
from labcode import elbo, kl, likelihood, vae
from labcode.lab.checklist import BY_NAME, CHECKLIST, ChecklistItem
from make_student_edition import SUMMARY, chapter_url, launch_links, site_url

EDITION = ROOT / "lab" / "lab3_student.ipynb"
PAGE = "lab/lab3_student"
NAMES = [item.name for item in CHECKLIST]
DETAILS = re.compile(r"<details>\s*<summary>(?P<summary>.*?)</summary>(?P<body>.*?)</details>", re.S)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
#: the implementations the references delegate to (the worker's tripwire lists the first four as the same function)
IMPLEMENTATIONS = (likelihood.log_likelihood_given_z, likelihood.log_marginal_likelihood_mc, vae.VAE.compute_elbo,
                   elbo.elbo_terms, likelihood.log_likelihood_matrix, likelihood._prior_log_weight_blocks,
                   elbo.reparameterize_unchecked, elbo._gaussian_log_likelihood, kl.standard_normal_kl_unchecked)
SHORTEST = 20   # a solution line shorter than this ("return z", "results = {}") gives nothing away


def _cells() -> list[nbformat.NotebookNode]:
    return nbformat.read(EDITION, as_version=4).cells


def _stub(item: ChecklistItem) -> str:
    return next(c.source for c in _cells() if c.cell_type == "code" and c.source.startswith(f"def {item.name}("))


def _derivation(item: ChecklistItem) -> str:
    sources = [c.source for c in _cells()]
    return sources[sources.index(_stub(item)) - 1]


def _lab_text() -> str:
    return "\n".join(c.source for c in _cells())


def _config() -> dict:
    import yaml
    return yaml.safe_load((ROOT / "_config.yml").read_text())


def _body_lines(source: str) -> list[str]:
    """The statement lines of every function body in ``source`` (docstrings left out: the stubs show them)."""
    tree = ast.parse(textwrap.dedent(source))
    lines = textwrap.dedent(source).splitlines()
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body[1:] if ast.get_docstring(node) is not None else node.body
            for statement in body:
                found += [line.strip() for line in lines[statement.lineno - 1:statement.end_lineno]]
    return found


def solution_lines() -> set[str]:
    """Lines of correct solutions: the references' sources and test_grade.py's SOLUTION, at least SHORTEST long."""
    from test_grade import SOLUTION
    sources = [inspect.getsource(f) for f in (*(item.reference for item in CHECKLIST), *IMPLEMENTATIONS)]
    lines = [line for source in (*sources, SOLUTION) for line in _body_lines(source)]
    return {line for line in lines if len(line) >= SHORTEST and not line.startswith("#")}


def _squeezed(text: str) -> str:
    """``text`` without whitespace, backticks and comment marks, so a line wrapped into comments still matches."""
    return re.sub(r"[\s`#]", "", text)


def shown_lines(text: str, lines: set[str]) -> list[str]:
    squeezed = _squeezed(text)
    return sorted(line for line in lines if _squeezed(line) in squeezed)


def visible_and_folded(text: str) -> tuple[str, str]:
    """(the text outside the <details> blocks, the text inside them)."""
    return DETAILS.sub(" ", text), "\n".join(m.group("body") for m in DETAILS.finditer(text))


# the structure: idea, formula, link, folded code hint, steps in words ------------------------------------------------

@pytest.mark.quick
def test_each_function_teaches_the_idea_then_the_formula_then_a_folded_code_hint() -> None:
    for item in CHECKLIST:
        cell = _derivation(item)
        assert re.match(rf"(## [^\n]+\n\n)?### `{item.name}`\n", cell), item.name
        marks = [cell.find(f"**The idea.** {item.idea}"), cell.find(f"**The formula.** {item.formula}"),
                 cell.find(f"]({chapter_url(item)})"), cell.find("<details>")]
        assert -1 not in marks and marks == sorted(marks), f"{item.name}: idea, formula, link, code hint: {marks}"
        hints = list(DETAILS.finditer(cell))
        assert len(hints) == 1 and cell.count("<details") == 1 and cell.rstrip().endswith("</details>"), item.name
        assert hints[0].group("summary") == SUMMARY, "the hint starts folded, under its summary"
        assert all(f"\n- {pointer}\n" in hints[0].group("body") for pointer in item.code_hint), item.name
        # Jupyter, Colab and myst-parser render Markdown inside <details> only after a blank line
        assert re.search(r"</summary>\n\n- ", cell) and "\n\n</details>" in cell, item.name


@pytest.mark.quick
def test_the_todo_steps_are_words_and_match_the_checklist() -> None:
    for item in CHECKLIST:
        assert item.idea and item.formula and item.steps and item.code_hint and item.doc, item.name
        for step in item.steps:
            assert not re.search(r"`|torch\.|\w+ = [\w.]+\(", step), f"{item.name}: code in a step: {step}"
        todo = [line for line in _stub(item).splitlines() if line.lstrip().startswith("#")]
        assert sum(line.lstrip().startswith("# TODO:") for line in todo) == len(item.steps), item.name
        assert _squeezed(" ".join(item.steps)) == _squeezed(" ".join(todo).replace("TODO:", "")), item.name


@pytest.mark.quick
def test_no_line_of_a_solution_is_shown_folded_or_not() -> None:
    lines = solution_lines()
    assert len(lines) > 30 and "z = torch.randn((n_samples, latent_dim), generator=generator)" in lines
    visible, folded = visible_and_folded(_lab_text())
    assert not shown_lines(visible, lines), "solution lines in the lab's visible text"
    assert not shown_lines(folded, lines), "solution lines in the lab's code hints (pointers only)"
    assert not re.search(r"train_vae\([^)\s]", _lab_text()), "the training call of analyze_beta_vae is handed over"


def test_the_detector_finds_a_line_wrapped_into_comments() -> None:
    lines = {"z = torch.randn((n_samples, latent_dim), generator=generator)"}
    stub = ("    # TODO: Draw noise of shape (n_samples, latent_dim):\n"
            "    #       `z = torch.randn((n_samples, latent_dim),\n    #       generator=generator)`.\n")
    assert shown_lines(stub, lines) == sorted(lines)
    assert shown_lines("<details><summary>x</summary>\n\n- " + stub + "\n</details>", lines) == sorted(lines)
    assert visible_and_folded("a <details>\n<summary>s</summary>\n\nb\n\n</details> c")[0] == "a   c"
    assert _body_lines('def f(x):\n    """Doc."""\n    return x + 1\n') == ["return x + 1"]


# links: the published pages, at sections the build has -------------------------------------------------------------

@pytest.mark.quick
def test_every_link_of_the_lab_is_absolute_and_chapters_point_at_the_published_site() -> None:
    base = site_url()
    assert base == _config()["html"]["baseurl"], "one source of truth: html.baseurl in _config.yml"
    links = LINK.findall(_lab_text())
    assert links and all(link.startswith("https://") for link in links), [lk for lk in links if not lk.startswith("https://")]
    chapters = [link for link in links if link.startswith(base)]
    for item in CHECKLIST:
        assert chapter_url(item) in chapters and chapter_url(item, section=False) in chapters, item.name
        assert re.search(rf"^#{{2,4}} {re.escape(item.section)}$", (ROOT / "book" / f"{item.chapter}.md").read_text(), re.M), \
            f"{item.name}: book/{item.chapter}.md has no section {item.section!r}"


def test_the_lab_links_resolve_in_the_built_site(built_book: Path) -> None:
    base = site_url()
    chapters = sorted({link for link in LINK.findall(_lab_text()) if link.startswith(base)})
    assert len(chapters) >= len({item.chapter for item in CHECKLIST})
    broken = []
    for link in chapters:
        page, _, anchor = link.removeprefix(base).partition("#")
        html = built_book / page
        if not html.is_file() or (anchor and f'id="{anchor}"' not in html.read_text()):
            broken.append(link)
    assert not broken, f"links to pages or sections the site does not have: {broken}"


# the lab as a page of the site -------------------------------------------------------------------------------------

@pytest.mark.quick
def test_the_lab_is_a_page_of_the_site_that_the_build_does_not_execute() -> None:
    assert PAGE in toc_files() and toc_files().index(PAGE) == toc_files().index("book/students") + 1
    meta = front_matter(ROOT / f"{PAGE}.md", (ROOT / f"{PAGE}.md").read_text())
    assert meta["mystnb"]["execution_mode"] == "off" and meta["kernelspec"]["name"] == "python3"
    assert not is_notebook(PAGE), "the lab must not count as an executed chapter"
    assert "mystnb" not in nbformat.read(EDITION, as_version=4).metadata


def test_the_lab_page_has_its_launch_buttons_and_folded_hints(built_book: Path) -> None:
    from bs4 import BeautifulSoup
    url, branch = repository()
    owner_repo = urlparse(url).path.strip("/")
    soup = BeautifulSoup((built_book / f"{PAGE}.html").read_text(), "html.parser")
    links = {a["href"] for a in soup.select("a[href]")}
    assert f"https://colab.research.google.com/github/{owner_repo}/blob/{branch}/{PAGE}.ipynb" in links
    binder = [link for link in links if link.startswith(f"https://mybinder.org/v2/gh/{owner_repo}/{branch}?urlpath=")]
    assert len(binder) == 1 and parse_qs(urlparse(binder[0]).query)["urlpath"] == [f"lab/tree/{PAGE}.ipynb"], binder
    assert set(launch_links()) <= links, "the intro's Colab and Binder links"
    details = soup.select("article.bd-article details")   # the navigation has <details> of its own
    assert len(details) == len(CHECKLIST) and not any(d.has_attr("open") for d in details)
    assert all(d.summary and d.summary.get_text(strip=True) == SUMMARY and d.select("li") for d in details)
    assert not soup.select(".cell_output"), "the lab page must show the stubs unexecuted"
    for item in CHECKLIST:
        assert soup.find("a", href=chapter_url(item)), item.name


@pytest.fixture(scope="module")
def chromium() -> None:
    require_chromium()


def test_a_code_hint_opens_only_when_asked(chromium, visits) -> None:
    v = visits(PAGE)
    hint = v.page.locator("article.bd-article details").first
    pointer = hint.locator("li").first
    hint.scroll_into_view_if_needed()
    assert hint.locator("summary").is_visible() and not pointer.is_visible()
    hint.screenshot(path=str(SCREENSHOTS / "lab-hint-collapsed.png"))
    hint.locator("summary").click()
    assert pointer.is_visible()
    hint.screenshot(path=str(SCREENSHOTS / "lab-hint-expanded.png"))
    assert not v.console_errors and not v.failed, (v.console_errors, v.failed)


# the help agrees with the docstrings and the grader ----------------------------------------------------------------

@pytest.mark.quick
def test_the_help_agrees_with_the_docstrings() -> None:
    lab = _lab_text()
    mc = BY_NAME["monte_carlo_kl"]
    assert "(N, d)" in mc.doc and "summed over them" in mc.doc
    help_text = " ".join((mc.idea, *mc.steps, *mc.code_hint))
    assert "(N, d)" in help_text and "log_ratio.mean()" not in lab
    assert re.search(r"sum.*mean", " ".join(mc.code_hint)), "the code hint must sum over coordinates before the mean"
    closed = BY_NAME["gaussian_kl_closed_form"]
    assert "or numbers" in closed.doc
    assert "Python number" in " ".join(closed.steps) and "torch.as_tensor" in " ".join(closed.code_hint)
    amc = BY_NAME["approximate_marginal_likelihood"]
    assert "latent_dim" in amc.steps[0] and "decode" in amc.steps[0] and "nn.Linear" in amc.steps[0]
    assert "latent_dim" in amc.doc and "decode" in amc.doc
    kl_reg = BY_NAME["kl_regularization"]
    assert "Same as" not in kl_reg.doc and "labcode.standard_normal_kl" not in lab
    assert "your own standard_normal_kl" in kl_reg.steps[0]
    analyze = BY_NAME["analyze_beta_vae"]
    assert "elbo is reconstruction − KL" in " ".join(analyze.steps) and "whatever β" in analyze.idea
    assert all(f"'{key}'" in " ".join(analyze.code_hint) or key in " ".join(analyze.steps)
               for key in ("reconstruction", "kl_divergence", "elbo", "latent_samples", "reconstructions"))
    for item in CHECKLIST:   # a stub's docstring names no function that the notebook does not have
        assert "(the lab's name)" not in item.doc, item.name
        named = re.findall(r":(?:func|meth):`~?([\w.]+)`", item.doc)
        assert all(name in NAMES for name in named), f"{item.name}: {named}"


def test_the_latent_size_recipe_works_for_a_whole_vae_and_a_bare_decoder() -> None:
    """The recipe of approximate_marginal_likelihood's first step, followed literally, on both kinds of decoder."""
    def latent_size_and_decode(decoder):
        if hasattr(decoder, "latent_dim") and hasattr(decoder, "decode"):
            return decoder.latent_dim, decoder.decode
        return next(m for m in decoder.modules() if isinstance(m, torch.nn.Linear)).in_features, decoder

    model = lc.VAE(data_dim=3, latent_dim=2, generator=torch.Generator().manual_seed(0))
    for decoder in (model, model.decoder):
        d, decode = latent_size_and_decode(decoder)
        assert d == 2 and decode(torch.zeros(4, d)).shape == (4, 3)
    first_linear = next(m for m in model.modules() if isinstance(m, torch.nn.Linear)).in_features
    assert first_linear == 3, "the first-nn.Linear rule alone reads the encoder's input size of a whole VAE"
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(1))
    whole = lc.approximate_marginal_likelihood(model, x, 50, 1.0, generator=torch.Generator().manual_seed(2))
    bare = lc.approximate_marginal_likelihood(model.decoder, x, 50, 1.0, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(whole, bare)


@pytest.mark.quick
def test_students_page_says_what_the_functions_return_and_explains_the_handout() -> None:
    page = (ROOT / "book" / "students.md").read_text()
    row = next(line for line in page.splitlines() if line.startswith("| `approximate_marginal_likelihood`"))
    assert "p̂" in row and "returned as a density" in row
    assert "## The lab handout" in page and "{doc}`/lab/lab3_student`" in page
    glossary = (ROOT / "book" / "glossary.md").read_text()
    assert re.search(r"^lab handout\n  ", glossary, re.M)


CODE_CELL = re.compile(r"^(`{3,})\{code-cell\}.*?^\1[ \t]*$", re.M | re.S)
NOT_PROSE = re.compile(r"^(#+ |`{3,}|:{3,}|:[\w-]+:)")   # headings, fences and directive titles, directive options


def first_handout_paragraph(text: str) -> str | None:
    """The first paragraph of prose (code cells, headings and directive titles left out) that names the handout."""
    prose = CODE_CELL.sub("", text)
    paragraphs = ["\n".join(line for line in p.splitlines() if not NOT_PROSE.match(line)) for p in prose.split("\n\n")]
    return next((p for p in paragraphs if "handout" in p.lower()), None)


@pytest.mark.quick
def test_a_reader_meets_the_glossary_link_before_any_other_mention_of_the_handout() -> None:
    unlinked = []
    for path in sorted((ROOT / "book").rglob("*.md")):
        first = first_handout_paragraph(path.read_text())
        if first is not None and path.name != "glossary.md" and "{term}`lab handout`" not in first:
            unlinked.append(str(path.relative_to(ROOT)))
    assert not unlinked, f"pages whose first mention of the handout does not link the glossary: {unlinked}"
    assert first_handout_paragraph("```{prf:remark} The handout\n:label: r\n\nIt says {term}`lab handout`.\n```\n") == \
        "It says {term}`lab handout`."


# moved from tests/test_grade.py ------------------------------------------------------------------------------------

def test_stub_signatures_match_the_references():
    for item in CHECKLIST:
        ns: dict = {"torch": torch, "lc": lc}
        exec("from collections.abc import Callable\n" + f"def {item.signature}: pass", ns)
        stub = inspect.signature(ns[item.name]).parameters
        if item.name == "compute_elbo":
            params = list(inspect.signature(lc.VAE.compute_elbo).parameters.values())
            ref = [params[0].replace(name="model"), *(p for p in params[1:] if p.name != "eps")]
        else:
            ref = list(inspect.signature(item.reference).parameters.values())
        assert [(p.name, p.kind, p.default) for p in stub.values()] == [(p.name, p.kind, p.default) for p in ref], item.name


@pytest.mark.quick
def test_checklist_chapters_exist_and_hints_are_corrected():
    for item in CHECKLIST:
        assert (ROOT / "book" / f"{item.chapter}.md").exists(), item.chapter
    amc = BY_NAME["approximate_marginal_likelihood"]
    assert any("logsumexp" in text for text in (amc.formula, *amc.code_hint))
    assert any("higher is better" in step for step in BY_NAME["reconstruction_loss"].steps)
    assert "``eps``" not in BY_NAME["compute_elbo"].doc and "model:" in BY_NAME["compute_elbo"].doc


@pytest.mark.quick
def test_student_edition_is_in_sync_with_the_checklist():
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_student_edition.py"), "--check"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_student_edition_cells():
    cells = _cells()
    assert all(c.get("outputs", []) == [] for c in cells)
    for item in CHECKLIST:
        code = _stub(item)
        assert code.rstrip().endswith(f'raise NotImplementedError("TODO: implement {item.name}")')
        assert code.count("# TODO:") == len(item.steps)
        derivation = _derivation(item)
        assert f"[{item.section}]({chapter_url(item)})" in derivation and item.chapter_title in derivation
        assert item.idea in derivation and item.formula in derivation


@pytest.mark.quick
def test_students_page_links_and_functions():
    page = (ROOT / "book" / "students.md").read_text()
    for link in launch_links():
        assert f"({link})" in page
    assert "python -m labcode.grade lab/lab3_student.ipynb" in page
    rows = {line.split("|")[1].strip(" `"): line for line in page.splitlines() if line.startswith("| `")}
    assert list(rows) == NAMES
    for item in CHECKLIST:
        assert rows[item.name].rstrip().endswith(f"{{doc}}`{item.chapter}` |"), item.name
