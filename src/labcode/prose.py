"""Strings the chapters glue into their pages: HTML tables of measured numbers, lists in words, powers of ten.

Nothing here is mathematics; the chapters glue these strings into their text
("Jensen's inequality", "KL divergence", "Gradients of the ELBO", "The two forces",
"Mode-covering and mode-seeking in two dimensions", "The rate–distortion view",
"The intractable likelihood", "Bayes' rule and its circularity", "Beyond the lab").
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence

_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def power_of_ten(exponent: int) -> str:
    """``"10ⁿ"`` with the integer exponent ``n`` in superscript digits, for prose (e.g. ``power_of_ten(-12)`` is ``"10⁻¹²"``).

    The caller chooses how to make the exponent an integer (``round``, ``math.ceil`` for a bound).
    """
    if isinstance(exponent, bool) or not isinstance(exponent, int):
        raise TypeError(f"exponent must be an int, got {type(exponent).__name__}")
    return "10" + str(exponent).translate(_SUPERSCRIPT)


def html_table(rows: Sequence[Mapping[str, object]], formats: Mapping[str, str] | None = None) -> str:
    """Render rows (dicts with the same keys, in column order) as a small HTML table.

    ``formats`` maps a column to a format spec (e.g. ``".4f"``, ``".1e"``);
    booleans render as ✓ / ✗; everything is HTML-escaped.
    """
    if not rows:
        raise ValueError("rows must not be empty")
    formats = dict(formats or {})
    columns = list(rows[0])

    def cell(column: str, value: object) -> str:
        if isinstance(value, bool):
            return "✓" if value else "✗"
        if column in formats:
            return format(value, formats[column])
        return str(value)

    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell(c, row[c]))}</td>" for c in columns) + "</tr>" for row in rows
    )
    return f'<table class="table"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def prose_list(items: Sequence[object]) -> str:
    """Items joined as an English list for glued prose: ``"a"``, ``"a and b"``, ``"a, b and c"``.

    A chapter uses it for sentences whose content is computed (for example the β
    values whose models collapsed), so that the sentence follows the data.
    """
    words = [str(item) for item in items]
    if not words:
        raise ValueError("items must not be empty")
    if len(words) == 1:
        return words[0]
    return ", ".join(words[:-1]) + " and " + words[-1]
