"""Integrity of the pages: every computed number in prose comes from glue, and images stay light.

A number typed into prose is allowed only when it is structural: a constant that the
chapter's own code uses as an input (a sample size, a β value, a step count), one of the
lab's named constants, a small integer, a year, a power of ten, or a reference to the lab's
numbering ("Task 3.2"). Inside mathematics, exact arithmetic (integers, and decimals of at
most two significant digits such as log 2.5) is part of a derivation. Anything else, in
particular a decimal result such as 0.876, is a computed value that must be glued.
"""

from __future__ import annotations

import math
import re

import pytest

from book_utils import ROOT, toc_files

CODE_CELL = re.compile(r"^(`{3,}|~{3,})\{code-cell\}[^\n]*\n(.*?)^\1[ \t]*$", re.M | re.S)
NON_MATH_FENCE = re.compile(r"^(`{3,}|~{3,})(?!\{math\})[^\n]*\n", re.M)
ROLE = re.compile(r"\{[\w:-]+\}`[^`]*`")                  # {glue:text}`k:.3f`, {doc}`x`, {numref}`fig-1`
INLINE_CODE = re.compile(r"``?[^`\n]+``?")
LINK_TARGET = re.compile(r"\]\([^)]*\)|<https?://[^>]*>|https?://\S+")
OPTION_LINE = re.compile(r"^:[\w-]+:.*$", re.M)          # directive options: labels, names, captions' keys
HTML_COMMENT = re.compile(r"<!--.*?-->", re.S)
FRONT_MATTER = re.compile(r"\A---\n.*?\n---\n", re.S)
NUMBERING = re.compile(r"\b(?:Task|Part|item|Step|Test|Exercise|Lab|Figure|Fig\.|Table|Section|Chapter|Eq\.?)\s+\d+(?:\.\d+)*", re.I)
LABEL_TOKEN = re.compile(r"[\w-]*\d[\w-]*-[\w-]+|[A-Za-z]+\d+[A-Za-z\d]*")  # fig-kl-2, L_1-like identifiers, H200
NUMBER = re.compile(r"(?<![\w.\\^_])[-−]?\d{1,3}(?:,\d{3})+(?:\.\d+)?%?(?![\w])|(?<![\w.\\^_])[-−]?\d+(?:\.\d+)?(?:e[-+]?\d+)?%?(?![\w])")
CODE_NUMBER = re.compile(r"(?<![\w.])\d+(?:_\d{3})*(?:\.\d+)?(?:e[-+]?\d+)?")

#: the lab's named constants (and squares of its standard deviations), quantile levels
STRUCTURAL = {0.1, 0.2, 0.3, 0.5, 0.8, 1.5, 0.01, 0.02, 0.001, 0.05, 0.25, 0.64, 2.25, 0.6, 0.4, 3.2, 0.0,
              10.0, 20.0, 30.0, 50.0, 90.0, 95.0, 99.0, 80.0, 100.0}


def _value(token: str) -> float:
    return float(token.replace("−", "-").replace(",", "").rstrip("%").replace("_", ""))


def code_constants(text: str) -> set[float]:
    """Numeric literals in the chapter's code cells: inputs, not results."""
    values = set()
    for _, body in CODE_CELL.findall(text):
        values |= {_value(t) for t in CODE_NUMBER.findall(body)}
    return values | {-v for v in values}


def prose(text: str) -> str:
    """The page without code cells, roles, inline code, link targets, options and comments; math is kept."""
    text = FRONT_MATTER.sub("", text)
    text = CODE_CELL.sub(" ", text)
    for pattern in (HTML_COMMENT, ROLE, INLINE_CODE, LINK_TARGET, OPTION_LINE, NON_MATH_FENCE, NUMBERING, LABEL_TOKEN):
        text = pattern.sub(" ", text)
    return text


def is_structural(value: float, constants: set[float]) -> bool:
    if value in constants or abs(value) in STRUCTURAL:
        return True
    if value.is_integer() and (abs(value) <= 12 or 1900 <= value <= 2100):
        return True
    if value > 0 and math.log10(value).is_integer():      # 10, 100, 1000, 1e-3: powers of ten
        return True
    return False


MATH = re.compile(r"\$\$.*?\$\$|\$[^$\n]+\$|^(`{3,})\{math\}.*?^\1", re.S | re.M)


def _significant_digits(token: str) -> int:
    digits = token.replace("−", "").replace("-", "").replace(",", "").rstrip("%").split("e")[0].replace(".", "")
    return len(digits.lstrip("0"))


def typed_numbers(text: str) -> list[str]:
    constants = code_constants(text)
    page = prose(text)
    found = []
    for match in MATH.finditer(page):       # derivations: exact arithmetic is fine, a decimal result is not
        found += [t for t in NUMBER.findall(match.group(0))
                  if "." in t and _significant_digits(t) > 2 and not is_structural(_value(t), constants)]
    outside = MATH.sub(" ", page)
    found += [t for t in NUMBER.findall(outside) if not is_structural(_value(t), constants)]
    return found


@pytest.mark.parametrize("doc", toc_files())
def test_prose_has_no_hand_typed_computed_numbers(doc: str) -> None:
    found = typed_numbers((ROOT / f"{doc}.md").read_text())
    assert not found, f"{doc}: numbers in prose that are neither glued nor structural: {found}"


def test_detector_flags_a_typed_result_and_spares_structure() -> None:
    page = ("```{code-cell} ipython3\nsteps = 4000\n```\n"
            "After 4000 steps (Task 3.2, β = 0.1) the KL is 0.876 and $\\KL = 4.901$; "
            "the ELBO is {glue:text}`elbo:.3f` in 2024, see {numref}`fig-kl-2`.\n")
    assert sorted(typed_numbers(page)) == ["0.876", "4.901"]
