"""Figures of the chapter "Summary and reflection"."""

from __future__ import annotations

from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from .style import COLORS, FONT_SIZE, SEQUENCE, blank, new_figure, styled

#: the book's concepts, level by level: (level name, [(concept, chapter), ...])
HIERARCHY: list[tuple[str, list[tuple[str, str]]]] = [
    ("problem", [("intractable $p(x)$", "likelihood"), ("circular Bayes' rule", "bayes")]),
    ("tools", [("Jensen's inequality", "jensen"), ("KL divergence", "kl")]),
    ("framework", [("ELBO = reconstruction $-$ KL", "elbo")]),
    ("implementation", [("two forces (β)", "two_forces"), ("reparameterisation", "elbo")]),
    ("applications", [("VAEs", "elbo"), ("diffusion models", "diffusion")]),
]
#: arrows between concepts, as ((level, index), (level, index))
EDGES: list[tuple[tuple[int, int], tuple[int, int]]] = [
    ((0, 0), (1, 0)), ((0, 1), (1, 1)),
    ((1, 0), (2, 0)), ((1, 1), (2, 0)),
    ((2, 0), (3, 0)), ((2, 0), (3, 1)),
    ((3, 0), (4, 0)), ((3, 1), (4, 0)), ((3, 1), (4, 1)),
]

_BOX_W, _BOX_H = 0.32, 0.1     # axes fractions
_LABEL_X = 0.02                 # left edge of the level names
_COLUMN_X = {1: [0.6], 2: [0.42, 0.8]}


@styled
def plot_concept_hierarchy(hierarchy: list[tuple[str, list[tuple[str, str]]]] = HIERARCHY,
                           edges: list[tuple[tuple[int, int], tuple[int, int]]] = EDGES) -> Figure:
    """The book's concept hierarchy: one row per level, boxes for concepts, arrows for "leads to".

    Each box shows the concept and, below it in grey, the chapter that
    develops it. Levels hold one or two concepts.
    """
    n_levels = len(hierarchy)
    fig, ax = new_figure(width=6.6, height=0.95 * n_levels + 0.2)
    blank(ax)
    ys = [1 - (i + 0.5) / n_levels for i in range(n_levels)]
    centres: dict[tuple[int, int], tuple[float, float]] = {}
    for i, (level, concepts) in enumerate(hierarchy):
        if len(concepts) not in _COLUMN_X:
            raise ValueError(f"each level must hold 1 or 2 concepts, got {len(concepts)} in {level!r}")
        colour = SEQUENCE[i % len(SEQUENCE)]
        ax.text(_LABEL_X, ys[i], level, ha="left", va="center", fontsize=FONT_SIZE + 1, fontweight="bold",
                color=colour)
        for j, ((concept, chapter), x) in enumerate(zip(concepts, _COLUMN_X[len(concepts)], strict=True)):
            centres[(i, j)] = (x, ys[i])
            ax.add_patch(FancyBboxPatch((x - _BOX_W / 2, ys[i] - _BOX_H / 2), _BOX_W, _BOX_H,
                                        boxstyle="round,pad=0.008,rounding_size=0.02", transform=ax.transAxes,
                                        facecolor=colour, alpha=0.16, edgecolor=colour, linewidth=1.2))
            ax.text(x, ys[i] + 0.012, concept, ha="center", va="center", fontsize=FONT_SIZE)
            ax.text(x, ys[i] - 0.03, f"chapter: {chapter}", ha="center", va="center",
                    fontsize=FONT_SIZE - 2, color=COLORS["muted"])
    for start, end in edges:
        (x0, y0), (x1, y1) = centres[start], centres[end]
        ax.add_patch(FancyArrowPatch((x0, y0 - _BOX_H / 2 - 0.01), (x1, y1 + _BOX_H / 2 + 0.01),
                                     transform=ax.transAxes, arrowstyle="-|>", mutation_scale=11,
                                     color=COLORS["muted"], lw=1.2))
    return fig
