"""Self-check questions (``labcode.selfcheck``): the API's checks, and the questions in the built book.

The rule for where questions go: every ``##`` section of an executed chapter that computes something
(it has a code cell besides its self-check) ends with a self-check cell, a ``remove-input`` code cell
that displays ``SelfCheck(...)`` with two or three questions, and nothing after it but blank lines.
Exempt are sections titled "Exercises" (they are questions already) and sections without a code cell
(definitions and proofs, summaries that quote values computed elsewhere); a label line for the next
section, ``(label)=``, may follow the self-check: a numeric answer must be a
value the page computed. In the built pages every numeric answer equals the value the page glued
under the question's glue key (``_build/html/glued-values.json``), and every multiple-choice question's
correct option is one of its options.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch

from book_utils import notebook_docs, source
from labcode.selfcheck import Choice, Numeric, SelfCheck

EXEMPT_TITLES = {"Exercises"}
QUESTIONS_PER_BLOCK = (2, 3)

FENCE = re.compile(r"^(`{3,}|~{3,}|:{3,})")
TARGET = re.compile(r"^\(.+\)=\s*$")   # a label for the next section, e.g. (elbo-sec-budget)=


def _num(**kw) -> Numeric:
    args = {"prompt": "What is $x$?", "answer": 0.5, "tol": 0.01, "hint": "See {prf:ref}`kl-prop-gauss`.", "glue_key": "x"}
    args.update(kw)
    return Numeric(args.pop("prompt"), args.pop("answer"), **args)


# -- the API ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("kw", "error", "name"), [
    ({"tol": 0.0}, ValueError, "tol"), ({"tol": -0.1}, ValueError, "tol"), ({"tol": math.inf}, ValueError, "tol"),
    ({"tol": math.nan}, ValueError, "tol"), ({"answer": math.nan}, ValueError, "answer"),
    ({"answer": math.inf}, ValueError, "answer"), ({"answer": torch.tensor(0.5)}, TypeError, "answer"),
    ({"answer": True}, TypeError, "answer"), ({"answer": "0.5"}, TypeError, "answer"),
    ({"prompt": ""}, ValueError, "prompt"), ({"prompt": 3}, TypeError, "prompt"),
    ({"prompt": "two lines\n<div>"}, ValueError, "prompt"), ({"hint": "  "}, ValueError, "hint"),
    ({"glue_key": ""}, ValueError, "glue_key"), ({"glue_key": "a key"}, ValueError, "glue_key"),
    ({"glue_key": None}, TypeError, "glue_key"),
])
def test_numeric_rejects_bad_input_naming_the_argument(kw: dict, error: type, name: str) -> None:
    with pytest.raises(error, match=name):
        _num(**kw)


def test_numeric_keeps_the_exact_answer_and_shows_the_digits_its_tolerance_resolves() -> None:
    q = _num(answer=2 / 3, tol=0.005)
    assert q.answer == 2 / 3 and isinstance(q.answer, float)
    assert q.display == "0.6667" and q.tolerance_text == "±0.005"
    assert _num(answer=12.3456, tol=0.5).display == "12.35"
    assert _num(answer=1234.5, tol=50).display == "1234"
    assert _num(answer=22506.3, tol=1125.3).tolerance_text == "±1100"
    assert _num(answer=199.0, tol=9.95).tolerance_text in ("±9.9", "±10")


@pytest.mark.parametrize(("args", "error", "name"), [
    ((["a", "b"], "c"), ValueError, "correct"), ((["a"], "a"), ValueError, "options"),
    ((["a", "a"], "a"), ValueError, "options"), (("ab", "a"), TypeError, "options"),
    ((["a", ""], "a"), ValueError, r"options\[1\]"), ((["a", "b"], 0), TypeError, "correct"),
])
def test_choice_rejects_bad_input_naming_the_argument(args: tuple, error: type, name: str) -> None:
    with pytest.raises(error, match=name):
        Choice("Which?", *args, hint="Because.")


def test_selfcheck_needs_questions() -> None:
    with pytest.raises(ValueError, match="questions"):
        SelfCheck()
    with pytest.raises(TypeError, match=r"questions\[1\]"):
        SelfCheck(_num(), "not a question")


def test_markdown_carries_answers_in_data_attributes_and_myst_for_the_text() -> None:
    choice = Choice("Which is larger, $a$ or $b$?", ["$a$", "$b$"], "$b$", hint="See {numref}`fig-x`.")
    block = SelfCheck(_num(answer=0.1 + 0.2, glue_key="kl_pq"), choice)
    md = block._repr_markdown_()
    assert 'data-answer="0.30000000000000004"' in md and 'data-glue-key="kl_pq"' in md
    assert 'data-kind="choice" data-correct="1"' in md
    assert md.count('role="status" aria-live="polite"') == 2
    assert "{numref}`fig-x`" in md and "$b$" in md          # MyST, resolved by the book's build
    assert ":::{only} latex" in md and "*Answers.*" in md    # the PDF prints the answers after the questions
    assert block.id == SelfCheck(_num(answer=0.1 + 0.2, glue_key="kl_pq"), choice).id   # deterministic
    assert block.id != SelfCheck(_num(answer=0.3, glue_key="kl_pq"), choice).id


def test_notebook_html_and_text_show_questions_and_answers_without_roles() -> None:
    block = SelfCheck(_num(hint="Use {prf:ref}`Gibbs' inequality <kl-thm-gibbs>` and {numref}`fig-kl`."),
                      Choice("Which?", ["yes", "no"], "no", hint="Think."))
    page = block._repr_html_()
    assert "<details>" in page and "Gibbs' inequality and fig-kl" in page.replace("&#x27;", "'")
    assert "{prf:ref}" not in page and "{numref}" not in page
    text = repr(block)
    assert "1. What is $x$?" in text and "(b) no" in text and "2. (b)" in text


# -- the built book -----------------------------------------------------------------------------

def _sections(text: str) -> list[tuple[str, list[str]]]:
    """The ``##`` sections of a MyST page (outside fences): (title, lines)."""
    sections: list[tuple[str, list[str]]] = []
    fence = None
    for line in text.splitlines():
        m = FENCE.match(line)
        if fence is None and m:
            fence = m.group(1)
        elif fence is not None and line.strip() == fence:
            fence = None
        elif fence is None and line.startswith("## "):
            sections.append((line[3:].strip(), []))
            continue
        if sections:
            sections[-1][1].append(line)
    return sections


def _cells(lines: list[str]) -> list[tuple[int, int, str]]:
    """Code cells of a section: (first line, last line, body)."""
    cells, start = [], None
    for i, line in enumerate(lines):
        if start is None and re.match(r"^(`{3,})\{code-cell\}", line):
            start, fence = i, re.match(r"^(`{3,})", line).group(1)
        elif start is not None and line.strip() == fence:
            cells.append((start, i, "\n".join(lines[start + 1:i])))
            start = None
    return cells


def section_problems(text: str, doc: str) -> list[str]:
    """What breaks the placement rule (module docstring) in a MyST page."""
    problems = []
    for title, lines in _sections(text):
        cells = _cells(lines)
        checks = [c for c in cells if "SelfCheck(" in c[2]]
        computes = [c for c in cells if "SelfCheck(" not in c[2]]
        if title in EXEMPT_TITLES or not computes:
            continue
        if not checks:
            problems.append(f"{doc}: section {title!r} computes but has no self-check")
            continue
        _, end, body = checks[-1]
        if any(line.strip() and not TARGET.match(line) for line in lines[end + 1:]):
            problems.append(f"{doc}: section {title!r}: the self-check is not the last thing in the section")
        if not re.search(r"^:tags: \[[^\]]*remove-input", body, re.M):
            problems.append(f"{doc}: section {title!r}: the self-check cell must be tagged remove-input")
    return problems


def _page(*sections: str) -> str:
    return "# Title\n\n" + "\n".join(sections)


CODE = "## Computes\n\n```{code-cell} ipython3\nx = 1\n```\n"
CHECK = "\n```{code-cell} ipython3\n:tags: [remove-input]\n\nSelfCheck(q1, q2)\n```\n"


@pytest.mark.quick
def test_section_rule() -> None:
    assert section_problems(_page(CODE + CHECK), "p") == []
    assert section_problems(_page("## Proof\n\nNo code.\n", "## Exercises\n\n```{code-cell} ipython3\nx\n```\n"), "p") == []
    assert "no self-check" in section_problems(_page(CODE), "p")[0]
    assert "not the last" in section_problems(_page(CODE + CHECK + "\nMore prose.\n"), "p")[0]
    assert section_problems(_page(CODE + CHECK + "\n(next-label)=\n"), "p") == []
    assert "remove-input" in section_problems(_page(CODE + CHECK.replace("remove-input", "remove-cell")), "p")[0]
    # a "## " line inside a code cell is not a heading
    assert "no self-check" in section_problems(_page(CODE.replace("x = 1", "x = 1\n## not a heading")), "p")[0]


@pytest.mark.quick
@pytest.mark.parametrize("doc", notebook_docs())
def test_every_computing_section_ends_with_a_selfcheck(doc: str) -> None:
    problems = section_problems(source(doc).read_text(), doc)
    assert not problems, "\n".join(problems)


def _forms(html_text: str) -> list[str]:
    return re.findall(r'<form class="selfcheck-question"[^>]*>.*?</form>', html_text, re.S)


def _attr(tag: str, name: str) -> str | None:
    m = re.search(rf'\b{name}="([^"]*)"', tag)
    return m.group(1) if m else None


def test_numeric_answers_are_the_glued_values_and_choices_are_among_the_options(built_book: Path) -> None:
    glued = json.loads((built_book / "glued-values.json").read_text())
    checked = 0
    for doc in notebook_docs():
        page = (built_book / f"{doc}.html").read_text()
        blocks = re.findall(r'<div class="selfcheck" id="[^"]+".*?</form>\s*</div>', page, re.S)
        for block in blocks:
            n = len(_forms(block))
            assert QUESTIONS_PER_BLOCK[0] <= n <= QUESTIONS_PER_BLOCK[1], f"{doc}: a self-check with {n} questions"
        for form in _forms(page):
            head = form.split(">", 1)[0]
            qid = _attr(head, "id")
            assert 'role="status"' in form and 'class="selfcheck-hint"' in form, f"{doc} {qid}: no feedback region or hint"
            assert re.search(r'class="selfcheck-hint" hidden(?:="")?>\s*<p><strong>Hint.</strong>\s*\S', form), f"{doc} {qid}: empty hint"
            if _attr(head, "data-kind") == "numeric":
                key, answer, tol = _attr(head, "data-glue-key"), float(_attr(head, "data-answer")), float(_attr(head, "data-tol"))
                value = glued.get(doc, {}).get(key)
                assert isinstance(value, float), f"{doc} {qid}: glue key {key!r} is not a number glued on the page"
                assert answer == value, f"{doc} {qid}: answer {answer!r} is not the glued {key} = {value!r}"
                assert tol > 0 and math.isfinite(tol)
            else:
                # attribute order and void-element syntax vary (sphinx-codeautolink re-serialises the page)
                radios = re.findall(r'<input[^>]*\btype="radio"[^>]*>', form)
                options = [_attr(r, "value") for r in radios]
                assert len(options) >= 2 and options == [str(i) for i in range(len(options))]
                assert _attr(head, "data-correct") in options, f"{doc} {qid}: the correct option is not among the options"
            checked += 1
    assert checked > 0


def test_only_pages_with_selfchecks_load_the_script(built_book: Path) -> None:
    for doc in notebook_docs():
        page = (built_book / f"{doc}.html").read_text()
        has_block = 'class="selfcheck"' in page
        assert ("_static/selfcheck.js" in page) == has_block, doc
        assert ("_static/selfcheck.css" in page) == has_block, doc
    assert (built_book / "_static" / "selfcheck.js").is_file()


@pytest.mark.quick
def test_the_build_extension_reads_what_the_api_writes(tmp_path: Path) -> None:
    """_ext/selfcheck.py checks answers against the page's glue at build time; its pattern must match the markup."""
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "_ext"))
    import selfcheck as ext

    md = SelfCheck(_num(answer=2 / 3, glue_key="kl.pq-1"), _num(answer=0.25, glue_key="other"))._repr_markdown_()
    found = ext.NUMERIC.findall(md)
    assert [(answer, key) for _, answer, key in found] == [(repr(2 / 3), "kl.pq-1"), ("0.25", "other")]
    (tmp_path / "jupyter_execute" / "book").mkdir(parents=True)
    (tmp_path / "jupyter_execute" / "book" / "kl.glue.json").write_text(json.dumps(
        {"kl.pq-1": {"data": {"text/plain": repr(2 / 3)}}, "fig": {"data": {"image/png": "..."}}}))

    class App:
        outdir = str(tmp_path / "html")

    assert ext._glued_numbers(App(), "book/kl") == {"kl.pq-1": 2 / 3}
