"""Figures of the chapter "Summary and reflection"."""

from __future__ import annotations

from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from .style import COLORS, FONT_SIZE, SEQUENCE, blank, new_figure, styled

#: the course's arc, step by step in the order of the table of contents: (step, [(concept, chapter), ...])
HIERARCHY: list[tuple[str, list[tuple[str, str]]]] = [
    ("problem", [("spiral data", "spiral"), ("intractable $p(x)$", "likelihood"), ("Bayes needs $p(x)$", "bayes")]),
    ("tools", [("Jensen's inequality", "jensen"), ("KL divergence", "kl")]),
    ("bound", [("ELBO = recon. $-$ KL", "elbo"), ("gradient estimators", "gradients")]),
    ("VAE at work", [("two forces (β)", "two_forces"), ("posterior collapse", "collapse"),
                     ("numerical checks", "validation")]),
    ("exact answers", [("exact gap, IWAE", "exact"), ("gap = approx. + amort.", "amortization")]),
    ("beyond the lab", [("IWAE training", "iwae"), ("KL directions", "modes"),
                        ("rate–distortion", "rate_distortion")]),
    ("toward diffusion", [("diffusion ELBO", "diffusion"), ("a trained DDPM", "ddpm")]),
]
#: arrows "is used by", as ((level, index), (level, index)); within a level only between neighbours
EDGES: list[tuple[tuple[int, int], tuple[int, int]]] = [
    ((0, 0), (0, 1)), ((0, 1), (0, 2)),
    ((0, 1), (1, 0)), ((0, 2), (1, 1)),
    ((1, 0), (2, 0)), ((1, 1), (2, 0)), ((2, 0), (2, 1)),
    ((2, 0), (3, 0)), ((2, 1), (3, 0)), ((3, 0), (3, 1)), ((2, 0), (3, 2)),
    ((3, 2), (4, 0)), ((4, 0), (4, 1)),
    ((4, 0), (5, 0)), ((4, 0), (5, 1)), ((3, 0), (5, 2)),
    ((4, 0), (6, 0)), ((5, 2), (6, 0)), ((6, 0), (6, 1)),
]

_BOX_H = 0.1                    # axes fraction
_LABEL_X = 0.01                 # left edge of the step names
_COLUMN_X = {1: [0.6], 2: [0.44, 0.8], 3: [0.33, 0.6, 0.87]}
_BOX_W = {1: 0.3, 2: 0.3, 3: 0.24}


@styled
def plot_concept_hierarchy(hierarchy: list[tuple[str, list[tuple[str, str]]]] = HIERARCHY,
                           edges: list[tuple[tuple[int, int], tuple[int, int]]] = EDGES) -> Figure:
    """The course's map: one row per step of the argument, boxes for chapters, arrows for "is used by".

    Each box shows the concept and, below it in grey, the chapter that
    develops it. Levels hold one to three concepts; an arrow joins two
    levels (top to bottom) or two neighbours of one level (left to right).
    """
    n_levels = len(hierarchy)
    fig, ax = new_figure(width=7.2, height=0.85 * n_levels + 0.2)
    blank(ax)
    ys = [1 - (i + 0.5) / n_levels for i in range(n_levels)]
    centres: dict[tuple[int, int], tuple[float, float, float]] = {}
    for i, (level, concepts) in enumerate(hierarchy):
        if len(concepts) not in _COLUMN_X:
            raise ValueError(f"each level must hold 1 to 3 concepts, got {len(concepts)} in {level!r}")
        colour = SEQUENCE[i % len(SEQUENCE)]
        width = _BOX_W[len(concepts)]
        ax.text(_LABEL_X, ys[i], level, ha="left", va="center", fontsize=FONT_SIZE, fontweight="bold",
                color=colour)
        for j, ((concept, chapter), x) in enumerate(zip(concepts, _COLUMN_X[len(concepts)], strict=True)):
            centres[(i, j)] = (x, ys[i], width)
            ax.add_patch(FancyBboxPatch((x - width / 2, ys[i] - _BOX_H / 2), width, _BOX_H,
                                        boxstyle="round,pad=0.008,rounding_size=0.02", transform=ax.transAxes,
                                        facecolor=colour, alpha=0.16, edgecolor=colour, linewidth=1.2))
            ax.text(x, ys[i] + 0.014, concept, ha="center", va="center", fontsize=FONT_SIZE - 1)
            ax.text(x, ys[i] - 0.026, f"chapter: {chapter}", ha="center", va="center",
                    fontsize=FONT_SIZE - 3, color=COLORS["muted"])
    for start, end in edges:
        (x0, y0, w0), (x1, y1, w1) = centres[start], centres[end]
        if start[0] == end[0]:
            if end[1] != start[1] + 1:
                raise ValueError(f"an arrow within a level must join neighbours, got {start} -> {end}")
            tail, head = (x0 + w0 / 2 + 0.004, y0), (x1 - w1 / 2 - 0.004, y1)
        else:
            tail, head = (x0, y0 - _BOX_H / 2 - 0.01), (x1, y1 + _BOX_H / 2 + 0.01)
        ax.add_patch(FancyArrowPatch(tail, head, transform=ax.transAxes, arrowstyle="-|>", mutation_scale=10,
                                     color=COLORS["muted"], lw=1.1))
    return fig
