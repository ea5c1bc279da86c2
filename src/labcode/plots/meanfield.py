"""Figures of the chapter "The ELBO": mean-field coordinate ascent (CAVI) on a correlated Gaussian posterior."""

from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Ellipse
from torch import Tensor

from .style import COLORS, new_figure, panel_label, styled, to_numpy


def _ellipses(ax: Axes, mean: np.ndarray, cov: np.ndarray, colour: str, ls: str, label: str) -> None:
    """The 1- and 2-standard-deviation contours of N(mean, cov)."""
    values, vectors = np.linalg.eigh(cov)
    angle = np.degrees(np.arctan2(vectors[1, -1], vectors[0, -1]))
    for k, radius in enumerate((1.0, 2.0)):
        ax.add_patch(Ellipse(tuple(mean), 2 * radius * np.sqrt(values[-1]), 2 * radius * np.sqrt(values[0]),
                             angle=angle, fill=False, edgecolor=colour, lw=1.6, ls=ls, label=label if k == 0 else None))


@styled
def plot_cavi(means: Tensor, variances: Tensor, post_mean: Tensor, post_cov: Tensor, deficit: Tensor,
              sweep_ends: Tensor, rate: float) -> Figure:
    """(a) The exact posterior :math:`\\mathcal N(m, S)`, :math:`S = \\Lambda^{-1}` (solid) and the mean-field fit that CAVI
    reaches (dashed), with the path of the means over the coordinate updates (start: dot);
    (b) how far the ELBO is below its value at the fixed point after every coordinate update (log axis, sweep
    ends marked), with the prediction that the distance shrinks by the factor ``rate`` per sweep (dashed).

    Args:
        means, variances: (U + 1, 2) the factors after every update (row 0 the start), one target.
        post_mean: (2,); post_cov: (2, 2) the exact posterior.
        deficit: (U + 1,) :math:`\\mathrm{ELBO}(q^*) - \\mathrm{ELBO}` along the updates (>= 0; zeros are not drawn).
        sweep_ends: row indices of the start and the ends of the sweeps (0, d, 2d, ...).
        rate: the predicted factor per sweep, drawn from the end of the first sweep on.
    """
    u = means.shape[0]
    if means.shape != (u, 2) or variances.shape != (u, 2) or deficit.shape != (u,):
        raise ValueError(f"means and variances must have shape (U + 1, 2) and deficit (U + 1,), got "
                         f"{tuple(means.shape)}, {tuple(variances.shape)} and {tuple(deficit.shape)}")
    if post_mean.shape != (2,) or post_cov.shape != (2, 2):
        raise ValueError(f"post_mean must have shape (2,) and post_cov (2, 2), got {tuple(post_mean.shape)} "
                         f"and {tuple(post_cov.shape)}")
    path, mu, cov = to_numpy(means), to_numpy(post_mean), to_numpy(post_cov)
    fig, (ax_a, ax_b) = new_figure(1, 2, width=8.8, height=3.9)
    _ellipses(ax_a, mu, cov, COLORS["p"], "-", r"exact $p(z \mid x)$")
    _ellipses(ax_a, path[-1], np.diag(to_numpy(variances[-1])), COLORS["q"], "--", "mean-field fit")
    ax_a.plot(path[:, 0], path[:, 1], color=COLORS["data"], lw=1.0, marker=".", ms=4, label="CAVI means")
    ax_a.plot(path[0, 0], path[0, 1], "o", color=COLORS["data"], ms=6)
    reach = 2.4 * np.sqrt(np.diag(cov))
    lo = np.minimum(path.min(axis=0), mu - reach)
    hi = np.maximum(path.max(axis=0), mu + reach)
    centre, half = (lo + hi) / 2, 0.54 * (hi - lo).max()
    ax_a.set_xlim(centre[0] - half, centre[0] + half)
    ax_a.set_ylim(centre[1] - half, centre[1] + half)
    ax_a.set_aspect("equal")
    ax_a.set_xlabel("$z_1$")
    ax_a.set_ylabel("$z_2$")
    ax_a.legend(loc="lower left", fontsize=8)
    step = np.arange(u)
    ends = to_numpy(sweep_ends).astype(int)
    g = to_numpy(deficit)
    shown = g > 0
    ax_b.semilogy(step[shown], g[shown], color=COLORS["elbo"], lw=1.2, label=r"$\mathrm{ELBO}(q^*) - \mathrm{ELBO}$")
    ends_shown = ends[g[ends] > 0]
    ax_b.semilogy(ends_shown, g[ends_shown], "o", color=COLORS["elbo"], ms=4, label="end of a sweep")
    if len(ends) > 1:
        sweeps = np.arange(len(ends) - 1)
        ax_b.semilogy(ends[1:], g[ends[1]] * rate ** sweeps, "--", color=COLORS["q"], lw=1.2,
                      label="factor per sweep predicted")
    ax_b.set_xlabel("coordinate update")
    ax_b.set_ylabel("nats")
    ax_b.legend(loc="upper right", fontsize=8)
    panel_label(ax_a, "(a)")
    panel_label(ax_b, "(b)")
    return fig
