"""Tests of labcode.plots.summary: the concept hierarchy is complete and its text does not overlap."""

from __future__ import annotations

import itertools

import matplotlib as mpl
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch

from labcode.plots.summary import EDGES, HIERARCHY, plot_concept_hierarchy

pytestmark = pytest.mark.quick   # a new chapter needs a box in this map: part of `bash scripts/test.sh -m quick`


def test_hierarchy_figure():
    before = dict(mpl.rcParams)
    fig = plot_concept_hierarchy()
    assert isinstance(fig, Figure)
    assert dict(mpl.rcParams) == before
    FigureCanvasAgg(fig).draw()
    renderer = fig.canvas.get_renderer()
    texts = [t for t in fig.findobj(mpl.text.Text) if t.get_visible() and t.get_text().strip()]
    strings = {t.get_text() for t in texts}
    for level, concepts in HIERARCHY:
        assert level in strings
        for concept, _ in concepts:
            assert concept in strings
    boxes = [t.get_window_extent(renderer) for t in texts]
    assert not any(a.overlaps(b) for a, b in itertools.combinations(boxes, 2))
    arrows = [p for p in fig.axes[0].patches if isinstance(p, FancyArrowPatch)]
    assert len(arrows) == len(EDGES)
    # every text lies inside the figure
    width, height = fig.canvas.get_width_height()
    assert all(b.x0 >= 0 and b.y0 >= 0 and b.x1 <= width and b.y1 <= height for b in boxes)


def test_hierarchy_rejects_wide_levels():
    with pytest.raises(ValueError, match="1 to 3 concepts"):
        plot_concept_hierarchy([("a", [("w", "c"), ("x", "c"), ("y", "c"), ("z", "c")])], [])


def test_hierarchy_covers_every_chapter_of_the_toc():
    import yaml

    from book_utils import ROOT

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    parts = [p for p in toc["parts"] if p["caption"] not in ("Front matter", "Summary", "Appendices", "About this build", "API reference")]
    chapters = [c["file"].removeprefix("book/") for p in parts for c in p["chapters"]]
    drawn = [chapter for _, concepts in HIERARCHY for _, chapter in concepts]
    assert sorted(set(drawn)) == sorted(chapters)
    # the rows follow the table of contents: a chapter's first box is never above an earlier chapter's
    first_row = {chapter: i for i, (_, concepts) in reversed(list(enumerate(HIERARCHY))) for _, chapter in concepts}
    rows = [first_row[c] for c in chapters]
    assert rows == sorted(rows)


def test_hierarchy_rejects_arrows_between_distant_boxes_of_one_level():
    with pytest.raises(ValueError, match="neighbours"):
        plot_concept_hierarchy([("a", [("x", "c"), ("y", "c"), ("z", "c")])], [((0, 0), (0, 2))])
