"""The landing page's headline figure: the spiral, and what the book's VAE generates after training."""

from __future__ import annotations

from matplotlib.figure import Figure
from torch import Tensor

from .style import COLORS, MARKER_SIZE, new_figure, panel_label, styled


@styled
def plot_headline(data: Tensor, samples: Tensor) -> Figure:
    """Two panels with shared axes: (a) the data (N, 2); (b) samples (M, 2) of the trained model over the data."""
    if data.ndim != 2 or data.shape[1] != 2 or samples.ndim != 2 or samples.shape[1] != 2:
        raise ValueError(f"data and samples must have shape (n, 2), got {tuple(data.shape)} and {tuple(samples.shape)}")
    data, samples = data.detach().cpu(), samples.detach().cpu()
    fig, axes = new_figure(1, 2, width=7.2, height=3.6, sharex=True, sharey=True)
    axes[0].scatter(data[:, 0], data[:, 1], s=MARKER_SIZE, color=COLORS["data"], alpha=0.8, linewidths=0, label="data")
    axes[1].scatter(data[:, 0], data[:, 1], s=MARKER_SIZE, color=COLORS["muted"], alpha=0.35, linewidths=0, label="data")
    axes[1].scatter(samples[:, 0], samples[:, 1], s=MARKER_SIZE, color=COLORS["q"], alpha=0.8, linewidths=0,
                    label="model samples")
    for ax, letter in zip(axes, "ab", strict=True):
        panel_label(ax, f"({letter})")
        ax.set_xlabel("$x_1$")
        ax.set_aspect("equal")
        ax.legend(loc="lower left")
    axes[0].set_ylabel("$x_2$")
    return fig
