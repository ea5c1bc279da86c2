"""The book as one course: proofs use only earlier results, each result is stated once, the map is complete.

These tests read the chapters' MyST sources (no build), so they run in a second; the build
itself enforces the same rules through the ``results_index`` and ``course_map`` extensions
(warnings, errors under ``-W``), and the tests marked ``book`` check what the built pages show.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from book_utils import ROOT, toc_files

sys.path.insert(0, str(ROOT / "_ext"))
from course_map import check_map, load_map, reading_minutes
from results_index import LISTED, is_listed, normalise_title

FENCE = re.compile(r"^(?P<fence>`{3,}|:{3,})(?:\{(?P<name>[\w:-]+)\}(?P<arg>[^\n]*))?[ \t]*$")
PRF_REF = re.compile(r"\{prf:ref\}`(?:[^`<]*<)?([\w-]+)>?`")


@dataclass
class Block:
    name: str
    argument: str
    label: str = ""
    body: list[str] = field(default_factory=list)


def directive_blocks(text: str) -> list[Block]:
    """Every fenced directive of a MyST page with its body (nested fences are followed by their length)."""
    blocks, stack = [], []
    for line in text.splitlines():
        match = FENCE.match(line.strip())
        if match and match.group("name"):
            block = Block(match.group("name"), match.group("arg").strip())
            stack.append((match.group("fence"), block))
            blocks.append(block)
            continue
        if match and not match.group("name") and stack and match.group("fence") == stack[-1][0]:
            stack.pop()
            continue
        for _, block in stack:
            block.body.append(line)
            if not block.label and line.startswith(":label:"):
                block.label = line.split(":label:", 1)[1].strip()
    return blocks


def _chapters() -> list[str]:
    return [doc for doc in toc_files() if (ROOT / f"{doc}.md").is_file()]


def _statements() -> dict[str, tuple[str, Block]]:
    """label -> (chapter, block) for every labelled sphinx-proof directive except proofs."""
    found = {}
    for doc in _chapters():
        for block in directive_blocks((ROOT / f"{doc}.md").read_text()):
            if block.name.startswith("prf:") and block.name != "prf:proof" and block.label:
                found[block.label] = (doc, block)
    return found


@pytest.mark.quick
def test_block_parser_follows_nested_fences() -> None:
    text = ("```{prf:theorem} A\n:label: t-a\n\nStatement.\n```\n"
            "````{prf:proof}\nBy {prf:ref}`t-a` and\n```{math}\nx\n```\nand {prf:ref}`the lemma <l-b>`.\n````\n")
    blocks = directive_blocks(text)
    assert [(b.name, b.label) for b in blocks] == [("prf:theorem", "t-a"), ("prf:proof", ""), ("math", "")]
    assert PRF_REF.findall("\n".join(blocks[1].body)) == ["t-a", "l-b"]


@pytest.mark.quick
def test_every_proof_uses_only_results_of_its_own_or_earlier_chapters() -> None:
    order = {doc: i for i, doc in enumerate(_chapters())}
    statements = _statements()
    late = []
    for doc in _chapters():
        for block in directive_blocks((ROOT / f"{doc}.md").read_text()):
            if block.name != "prf:proof":
                continue
            for label in PRF_REF.findall("\n".join(block.body)):
                home = statements.get(label, (None,))[0]
                if home is not None and order[home] > order[doc]:
                    late.append(f"{doc} uses {label}, proved later in {home}")
    assert not late, "proofs that use results proved later:\n" + "\n".join(late)


@pytest.mark.quick
def test_every_cited_label_exists() -> None:
    statements = _statements()
    missing = [f"{doc}: {label}" for doc in _chapters()
               for label in PRF_REF.findall((ROOT / f"{doc}.md").read_text()) if label not in statements]
    assert not missing, f"{{prf:ref}} to labels no chapter defines: {missing}"


@pytest.mark.quick
def test_no_result_is_stated_twice() -> None:
    seen: dict[tuple[str, str], str] = {}
    twice = []
    for label, (doc, block) in _statements().items():
        kind = block.name.split(":", 1)[1]
        if kind not in LISTED or not block.argument:
            continue
        key = (kind, normalise_title(block.argument))
        if key in seen:
            twice.append(f"{kind} '{block.argument}': {seen[key]} and {label} ({doc})")
        seen[key] = label
    assert not twice, "results stated under two labels: " + "; ".join(twice)


@pytest.mark.quick
def test_every_label_is_listed_or_cited() -> None:
    cited = {label for doc in _chapters() for label in PRF_REF.findall((ROOT / f"{doc}.md").read_text())}
    dead = [f"{label} ({doc})" for label, (doc, block) in _statements().items()
            if not is_listed(block.name.split(":", 1)[1], label) and label not in cited]
    assert not dead, f"labels neither listed in the index of results nor cited: {dead}"


@pytest.mark.quick
def test_title_normalisation() -> None:
    assert normalise_title("The ELBO's gap ($K$ samples)") == normalise_title("the elbos gap  (samples)")
    assert normalise_title("KL divergence") != normalise_title("KL divergences")


@pytest.mark.quick
def test_course_map_covers_every_chapter_with_earlier_prerequisites() -> None:
    from sphinx_external_toc.parsing import parse_toc_yaml
    site_map = parse_toc_yaml(str(ROOT / "_toc.yml"))
    root = site_map[site_map.root.docname]
    chapters = [str(item) for tree in root.subtrees if tree.numbered for item in tree.items]
    assert check_map(load_map(ROOT), chapters) == []
    broken = {**load_map(ROOT), "book/nowhere": {"objective": "x"}}
    broken["book/spiral"] = {"objective": "x", "prerequisites": ["book/summary"]}
    problems = check_map(broken, chapters)
    assert any("book/nowhere" in p for p in problems) and any("book/summary of book/spiral" in p for p in problems)


@pytest.mark.quick
def test_reading_time_counts_prose_not_code() -> None:
    prose = " ".join(["word"] * 450)
    code = "```{code-cell} ipython3\n" + "x = 1\n" * 2000 + "```\n"
    assert reading_minutes("---\nkernelspec: {}\n---\n" + prose + "\n" + code) == 3


@pytest.mark.book
def test_results_page_lists_every_result(built_book: Path) -> None:
    html = (built_book / "book" / "appendix" / "results.html").read_text()
    listed = [label for label, (_, block) in _statements().items() if is_listed(block.name.split(":", 1)[1], label)]
    missing = [label for label in listed if f"#{label}\"" not in html]
    assert listed and not missing, f"results missing from the index page: {missing}"


@pytest.mark.book
def test_landing_page_map_has_every_chapter_with_measured_times(built_book: Path) -> None:
    html = (built_book / "book" / "intro.html").read_text()
    table = html.split('class="chapter-map', 1)[1].split("</table>", 1)[0]
    rows = [row for row in table.split("<tr")[2:] if "chapter-map-part" not in row.split(">", 1)[0]]
    assert len(rows) == len(load_map(ROOT))
    times = [re.findall(r"<p>(\d+) min read, ([\d.]+ s to run|not yet run)</p>", row) for row in rows]
    assert all(t and t[0][1] != "not yet run" for t in times), f"a chapter without a measured execution time: {times}"


@pytest.mark.quick
@pytest.mark.parametrize("doc", _chapters())
def test_no_hand_typed_end_of_proof_marks(doc: str) -> None:
    """sphinx-proof draws the end of every proof; a typed ■ would print a second one."""
    text = (ROOT / f"{doc}.md").read_text()
    assert not re.search(r"■|\\blacksquare|\\square\b|\\Box\b|\\qed\b", text), f"{doc} types an end-of-proof mark"


@pytest.mark.book
def test_no_reference_repeats_its_own_title(built_book: Path) -> None:
    """A reference rendered as "Jensen's inequality (Jensen's inequality)" repeats a title the role already shows."""
    from html import unescape
    repeated = []
    for doc in _chapters():
        page = built_book / f"{doc}.html"
        text = unescape(re.sub(r"<[^>]+>", "", page.read_text()))
        repeated += [f"{doc}: {m}" for m in re.findall(r"([A-Z][\w’' -]{5,}?) \(\1\)", text)]
    assert not repeated, f"references that repeat their title: {repeated}"
