"""Figures of the chapter "Setup and the spiral data"."""

from __future__ import annotations

from matplotlib.figure import Figure
from torch import Tensor

from .style import COLORS, MARKER_SIZE, new_figure, styled


@styled
def plot_spiral(data: Tensor, curve: Tensor | None = None) -> Figure:
    """Scatter the spiral points (N, 2), coloured by position along the spiral.

    ``curve`` (M, 2), the noise-free spiral, is drawn as a thin line if given.
    """
    data = data.detach().cpu()
    fig, ax = new_figure(width=4.8, height=4.4)
    points = ax.scatter(data[:, 0], data[:, 1], c=range(len(data)), s=MARKER_SIZE, cmap="viridis",
                        alpha=0.85, linewidths=0)
    if curve is not None:
        curve = curve.detach().cpu()
        ax.plot(curve[:, 0], curve[:, 1], color=COLORS["data"], lw=0.8, alpha=0.7, label="noise-free curve")
        ax.legend(loc="lower left")
    fig.colorbar(points, ax=ax, label="index along the spiral", shrink=0.8)
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    ax.set_aspect("equal")
    return fig
