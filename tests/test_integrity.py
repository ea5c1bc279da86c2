"""Integrity of the pages: every computed number in prose comes from glue, and images stay light.

A number typed into prose (figure captions and alt texts included) is allowed only when the
chapter's own code cells contain it as a literal (an input the reader can see: a sample size,
a step count), when it is 0 or 1, a year, or a list marker or reference to a numbering ("Task 3.2").
Inside mathematics, exact arithmetic (integers, and decimals of at most two significant
digits such as log 2.5) is part of a derivation. Anything else, a decimal result such as
0.876 or a parameter set in ``labcode`` such as the spiral's noise level, must be glued.
"""

from __future__ import annotations

import re

import pytest

from book_utils import ROOT, toc_files

pytestmark = pytest.mark.quick   # reads the sources only: part of `bash scripts/test.sh -m quick`

CODE_CELL = re.compile(r"^(`{3,}|~{3,})\{code-cell\}[^\n]*\n(.*?)^\1[ \t]*$", re.M | re.S)
NON_MATH_FENCE = re.compile(r"^(`{3,}|~{3,})(?!\{math\})[^\n]*\n", re.M)
ROLE = re.compile(r"\{[\w:-]+\}`[^`]*`")                  # {glue:text}`k:.3f`, {doc}`x`, {numref}`fig-1`
INLINE_CODE = re.compile(r"``?[^`\n]+``?")
LINK_TARGET = re.compile(r"\]\([^)]*\)|<https?://[^>]*>|https?://\S+")
OPTION_LINE = re.compile(r"^:[\w-]+:.*$", re.M)          # directive options: labels, names, captions' keys
HTML_COMMENT = re.compile(r"<!--.*?-->", re.S)
FRONT_MATTER = re.compile(r"\A---\n.*?\n---\n", re.S)
LIST_MARKER = re.compile(r"^[ \t]*\d+\.[ \t]|^\|[ \t]*\d+[ \t]*\||^:{3,}\{dropdown\}[ \t]*\d+\.", re.M)   # "3. ", "| 3 |"
NUMBERING = re.compile(r"\b(?:Task|Part|item|Step|Test|Exercise|Lab|Figure|Fig\.|Table|Section|Chapter|Eq\.?)\s+\d+(?:\.\d+)*", re.I)
LABEL_TOKEN = re.compile(r"[\w-]*\d[\w-]*-[\w-]+|[A-Za-z]+\d+[A-Za-z\d]*")  # fig-kl-2, L_1-like identifiers, H200
NUMBER = re.compile(r"(?<![\w.\\^_])[-−]?\d{1,3}(?:,\d{3})+(?:\.\d+)?%?(?![\w])|(?<![\w.\\^_])[-−]?\d+(?:\.\d+)?(?:e[-+]?\d+)?%?(?![\w])")
CODE_NUMBER = re.compile(r"(?<![\w.])\d+(?:_\d{3})*(?:\.\d+)?(?:e[-+]?\d+)?")

#: a code cell's option block: the lines starting with ":" at its top (tags, figure caption and alt text)
CELL_OPTIONS = re.compile(r"\A(?:[ \t]*:[^\n]*\n)+")
#: directive options that hold prose: alt texts and captions of figures and images
PROSE_OPTION = re.compile(r"^:(?:alt|caption):\s*(.*)$", re.M)


def _value(token: str) -> float:
    return float(token.replace("−", "-").replace(",", "").rstrip("%").replace("_", ""))


def code_constants(text: str) -> set[float]:
    """Numeric literals in the chapter's code cells (their code, not their options): inputs, not results."""
    values = set()
    for _, body in CODE_CELL.findall(text):
        body = CELL_OPTIONS.sub("", body)
        values |= {_value(t) for t in CODE_NUMBER.findall(body)}
    return values | {-v for v in values}


def _option_prose(block: str) -> list[str]:
    """Captions and alt texts in a code cell's option block (``:`` stripped, YAML read as text)."""
    lines = [line.lstrip()[1:] for line in block.splitlines()]
    found, current, indent = [], None, 0
    for line in lines:
        stripped = line.strip()
        key = re.match(r"(\s*)(caption|alt):\s*(.*)$", line)
        if key:
            current, indent = [], len(key.group(1))
            found.append(current)
            if key.group(3) not in ("|", ">", "|-", ">-"):
                current.append(key.group(3))
            continue
        if current is not None and stripped and len(line) - len(line.lstrip()) > indent:
            current.append(stripped)
        else:
            current = None
    return [" ".join(part) for part in found]


def figure_prose(text: str) -> str:
    """The captions and alt texts of the page's figures: in code-cell options and in directive options."""
    parts = []
    for _, body in CODE_CELL.findall(text):
        options = CELL_OPTIONS.match(body)
        if options:
            parts += _option_prose(options.group(0))
    outside = CODE_CELL.sub(" ", text)
    parts += PROSE_OPTION.findall(outside)
    return "\n\n".join(parts)


def prose(text: str) -> str:
    """The page without code cells, roles, inline code, link targets, options and comments; math is kept."""
    text = FRONT_MATTER.sub("", text)
    text = CODE_CELL.sub(" ", text) + "\n\n" + figure_prose(text)
    for pattern in (HTML_COMMENT, LIST_MARKER, ROLE, INLINE_CODE, LINK_TARGET, OPTION_LINE, NON_MATH_FENCE, NUMBERING, LABEL_TOKEN):
        text = pattern.sub(" ", text)
    return text


def is_structural(value: float, constants: set[float]) -> bool:
    """An input the chapter's code shows, a year, or 0 and 1 (exact facts: "underflows to 0", "probability 1")."""
    return value in constants or value in (0.0, 1.0) or (value.is_integer() and 1900 <= value <= 2100)


def is_exact_arithmetic(token: str, value: float, constants: set[float]) -> bool:
    """Inside mathematics: integers and short decimals are part of a derivation (1/2, log 2.5, 10^{-3})."""
    return "." not in token or _significant_digits(token) <= 2 or is_structural(value, constants)


MATH = re.compile(r"\$\$.*?\$\$|\$[^$\n]+\$|^(`{3,})\{math\}.*?^\1", re.S | re.M)


def _significant_digits(token: str) -> int:
    digits = token.replace("−", "").replace("-", "").replace(",", "").rstrip("%").split("e")[0].replace(".", "")
    return len(digits.lstrip("0"))


def typed_numbers(text: str) -> list[str]:
    constants = code_constants(text)
    page = prose(text)
    found = []
    for match in MATH.finditer(page):       # derivations: exact arithmetic is fine, a decimal result is not
        found += [t for t in NUMBER.findall(match.group(0)) if not is_exact_arithmetic(t, _value(t), constants)]
    outside = MATH.sub(" ", page)
    found += [t for t in NUMBER.findall(outside) if not is_structural(_value(t), constants)]
    return found


@pytest.mark.parametrize("doc", toc_files())
def test_prose_has_no_hand_typed_computed_numbers(doc: str) -> None:
    found = typed_numbers((ROOT / f"{doc}.md").read_text())
    assert not found, f"{doc}: numbers in prose that are neither glued nor structural: {found}"


def test_detector_flags_a_typed_result_and_spares_structure() -> None:
    page = ("```{code-cell} ipython3\nsteps, beta = 4000, 0.1\n```\n"
            "After 4000 steps (Task 3.2, β = 0.1) the KL is 0.876 and $\\KL = 4.901$; "
            "the ELBO is {glue:text}`elbo:.3f` in 2024, see {numref}`fig-kl-2`.\n")
    assert sorted(typed_numbers(page)) == ["0.876", "4.901"]


def test_detector_needs_the_chapters_own_code_for_a_typed_parameter() -> None:
    page = "The noise is σ = 0.1 and there are 500 points.\n"
    assert sorted(typed_numbers(page)) == ["0.1", "500"]
    with_code = "```{code-cell} ipython3\ndata = make_spiral(500, 0.1)\n```\n" + page
    assert typed_numbers(with_code) == []


def test_detector_reads_captions_and_alt_texts() -> None:
    page = ("```{code-cell} ipython3\n:tags: [remove-input]\n:mystnb:\n:  figure:\n:    caption: |\n"
            ":      The rate is 14 here,\n:      below 16.\n:    name: fig-x\n:  image:\n"
            ":    alt: A curve near 0.1 nats.\n\nplot(steps=4000)\n```\n"
            "```{figure} a.png\n:alt: a bar of height 2.5\n```\n")
    assert sorted(typed_numbers(page)) == ["0.1", "14", "16", "2.5"]
