"""labcode.prose: the chapters' HTML tables."""

from __future__ import annotations

import pytest

from labcode.prose import html_table, prose_list


def test_html_table_formats_and_escapes() -> None:
    table = html_table([{"check": "a < b", "value": 0.123456, "pass": True},
                        {"check": "c", "value": 2.0, "pass": False}], {"value": ".3f"})
    assert table.startswith("<table") and table.endswith("</table>")
    assert "<th>check</th><th>value</th><th>pass</th>" in table
    assert "<td>a &lt; b</td><td>0.123</td><td>✓</td>" in table
    assert "<td>2.000</td><td>✗</td>" in table
    with pytest.raises(ValueError, match="rows must not be empty"):
        html_table([])



def test_prose_list_joins_like_a_sentence() -> None:
    assert prose_list(["β = 10"]) == "β = 10"
    assert prose_list(["β = 5", "β = 10"]) == "β = 5 and β = 10"
    assert prose_list([0.1, 1, 5]) == "0.1, 1 and 5"
    with pytest.raises(ValueError, match="items must not be empty"):
        prose_list([])
