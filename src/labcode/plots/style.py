"""The book's one house style: colours, line widths, font sizes, figure sizes.

Every plotting function builds its figure with :func:`new_figure` and takes
its colours from :data:`COLORS`; nothing here (or anywhere in labcode)
changes matplotlib's global ``rcParams``. Figures are plain
``matplotlib.figure.Figure`` objects (no pyplot state), which Jupyter
displays and myst-nb glues.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import wraps
from typing import ParamSpec, TypeVar

import matplotlib as mpl
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor

#: colour-blind-safe palette (Okabe & Ito), by meaning
COLORS = {
    "data": "#3a3a3a",
    "p": "#0072B2",          # the target / true distribution
    "q": "#D55E00",          # the approximation
    "reconstruction": "#009E73",
    "kl": "#CC79A7",
    "elbo": "#0072B2",
    "loss": "#3a3a3a",
    "accent": "#E69F00",
    "muted": "#999999",
    "exact": "#3a3a3a",
}
#: one colour per β of the lab's sweep, in sweep order
SEQUENCE = ["#D55E00", "#E69F00", "#009E73", "#0072B2", "#CC79A7", "#56B4E9", "#3a3a3a"]
#: one colour per highlighted data point (the chapters' three chosen points), in order
POINT_COLORS = [SEQUENCE[3], SEQUENCE[2], SEQUENCE[0]]

LINE_WIDTH = 1.8
MARKER_SIZE = 14          # scatter marker area, points^2
FONT_SIZE = 10
WIDTH = 6.4               # inches: one full-width figure
DPI = 100

RC = {
    "font.size": FONT_SIZE,
    "axes.titlesize": FONT_SIZE,
    "axes.labelsize": FONT_SIZE,
    "legend.fontsize": FONT_SIZE - 1,
    "legend.frameon": False,
    "xtick.labelsize": FONT_SIZE - 1,
    "ytick.labelsize": FONT_SIZE - 1,
    "lines.linewidth": LINE_WIDTH,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
    "image.cmap": "viridis",
}

P = ParamSpec("P")
R = TypeVar("R")


def styled(fn: Callable[P, R]) -> Callable[P, R]:
    """Run a plotting function inside the house style (a local ``rc_context``)."""
    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with mpl.rc_context(RC):
            return fn(*args, **kwargs)
    return wrapper


def new_figure(nrows: int = 1, ncols: int = 1, *, width: float = WIDTH, height: float | None = None,
               **subplot_kw) -> tuple[Figure, np.ndarray | Axes]:
    """A constrained-layout ``Figure`` and its axes (squeezed as in ``plt.subplots``).

    Call it from a function decorated with :func:`styled`. Tick sizes and
    the grid are set on each axes explicitly, so the style survives
    rendering outside the ``rc_context``.
    """
    height = height if height is not None else width * 0.62 * nrows / max(ncols, 1) ** 0.5
    fig = Figure(figsize=(width, height), layout="constrained", dpi=DPI)
    axes = fig.subplots(nrows, ncols, **subplot_kw)
    for ax in np.atleast_1d(axes).flat:
        ax.tick_params(labelsize=FONT_SIZE - 1)
        ax.grid(True, alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
    return fig, axes


def panel_label(ax: Axes, label: str) -> None:
    """A bold panel letter ("(a)") in the top-left corner, for multi-panel figures."""
    ax.text(-0.02, 1.02, label, transform=ax.transAxes, ha="right", va="bottom",
            fontsize=FONT_SIZE, fontweight="bold")


def blank(ax: Axes) -> None:
    """Turn an axes into a blank canvas for diagrams (no ticks, spines or grid)."""
    ax.set_axis_off()
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)


def to_numpy(t: Tensor | Sequence[float]) -> np.ndarray:
    """A tensor (detached, on the CPU, in float64) or a sequence of numbers as a float NumPy array, for matplotlib."""
    if isinstance(t, Tensor):
        return t.detach().cpu().double().numpy()
    return np.asarray(t, dtype=float)
