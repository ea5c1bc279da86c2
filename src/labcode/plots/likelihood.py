"""Figures of the chapters "The intractable likelihood" and "Bayes' rule and its circularity"."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib as mpl
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import Tensor

from ..importance import SpreadStudy
from .style import COLORS, MARKER_SIZE, POINT_COLORS, new_figure, panel_label, styled, to_numpy

#: one colour per chosen point (near, middle, far)


def _check_labels(labels: Sequence[str], n: int, what: str) -> None:
    if len(labels) != n:
        raise ValueError(f"labels must name one {what} each ({n}), got {len(labels)}")


@styled
def plot_chosen_points(data: Tensor, indices: Sequence[int], labels: Sequence[str], prior_samples: Tensor,
                       axis: Tensor, log_posterior: Tensor) -> Figure:
    """(a) The spiral (N, 2) with the chosen points ``data[indices]`` marked; (b) latent space:
    prior samples (K, 2) and contours of each chosen point's posterior.

    ``log_posterior`` (n_points, G, G) holds :math:`\\log p(z \\mid x)` on the grid
    ``axis`` x ``axis`` (first grid index = first latent coordinate). Contours
    are drawn where the density is :math:`e^{-1/2}` and :math:`e^{-2}` of its
    maximum (one and two "standard deviations" for a Gaussian).
    """
    _check_labels(labels, len(indices), "chosen point")
    if log_posterior.shape[0] != len(indices):
        raise ValueError(f"log_posterior must have one grid per chosen point, got shape {tuple(log_posterior.shape)}")
    data, z, grid = to_numpy(data), to_numpy(prior_samples), to_numpy(axis)
    fig, (ax_x, ax_z) = new_figure(1, 2, width=8.4, height=4.0)
    ax_x.scatter(data[:, 0], data[:, 1], s=MARKER_SIZE * 0.6, color=COLORS["muted"], alpha=0.5, linewidths=0)
    ax_z.scatter(z[:, 0], z[:, 1], s=MARKER_SIZE * 0.3, color=COLORS["muted"], alpha=0.4, linewidths=0,
                 label="prior samples $z_k$")
    for i, (index, label) in enumerate(zip(indices, labels, strict=True)):
        colour = POINT_COLORS[i % len(POINT_COLORS)]
        ax_x.scatter(data[index, 0], data[index, 1], s=MARKER_SIZE * 6, color=colour, edgecolors="white",
                     linewidths=1.0, zorder=3, label=f"{label} (index {index})")
        log_post = to_numpy(log_posterior[i])
        peak = log_post.max()
        ax_z.contour(grid, grid, log_post.T, levels=[peak - 2.0, peak - 0.5], colors=[colour], linewidths=1.4)
        ax_z.plot([], [], color=colour, label=f"posterior, {label}")
    ax_x.set_xlabel("$x_1$")
    ax_x.set_ylabel("$x_2$")
    ax_x.set_aspect("equal")
    ax_x.legend(loc="lower left")
    ax_z.set_xlabel("$z_1$")
    ax_z.set_ylabel("$z_2$")
    ax_z.set_aspect("equal")
    ax_z.set_xlim(grid[0], grid[-1])
    ax_z.set_ylim(grid[0], grid[-1])
    ax_z.legend(loc="lower left", markerscale=3)
    panel_label(ax_x, "(a)")
    panel_label(ax_z, "(b)")
    return fig


@styled
def plot_estimator_spread(study: SpreadStudy, reference: Tensor, labels: Sequence[str]) -> Figure:
    """Error :math:`\\log \\hat p_K(x) - \\log p(x)` against :math:`K` (log axis), one panel per point:
    the median over runs (line), the outer quantile band (shaded) and the mean (dashed).

    ``reference`` (n_points,) holds :math:`\\log p(x)`. The shared error axis is
    symmetric-logarithmic (linear within 0.1 nats of zero).
    """
    n_points = study.log_estimate_quantiles.shape[0]
    _check_labels(labels, n_points, "point")
    if reference.shape != (n_points,):
        raise ValueError(f"reference must have shape ({n_points},), got {tuple(reference.shape)}")
    sizes = np.asarray(study.sample_sizes, dtype=float)
    err_q = to_numpy(study.log_estimate_quantiles) - to_numpy(reference)[:, None, None]
    err_mean = to_numpy(study.log_estimate_mean) - to_numpy(reference)[:, None]
    lo, hi = study.probs[0], study.probs[-1]
    fig, axes = new_figure(1, n_points, width=8.8, height=3.4, sharey=True, squeeze=False)
    for i, (ax, label) in enumerate(zip(axes[0], labels, strict=True)):
        colour = POINT_COLORS[i % len(POINT_COLORS)]
        ax.axhline(0.0, color=COLORS["exact"], lw=0.8)
        ax.fill_between(sizes, err_q[i, :, 0], err_q[i, :, -1], color=colour, alpha=0.25, linewidth=0,
                        label=f"{lo:.0%}–{hi:.0%} of runs")
        ax.plot(sizes, err_q[i, :, len(study.probs) // 2], color=colour, marker="o", ms=4, label="median")
        ax.plot(sizes, err_mean[i], color=colour, ls="--", lw=1.2, label="mean")
        ax.set_xscale("log")
        ax.set_yscale("symlog", linthresh=0.1)
        ax.set_xlabel("prior samples $K$")
        ax.set_title(f"({chr(ord('a') + i)}) {label}", loc="left")
        ax.legend(loc="lower right", fontsize=8)
    axes[0, 0].set_ylabel(r"$\log \hat p_K(x) - \log p(x)$ (nats)")
    return fig


@styled
def plot_ess_and_cost(study: SpreadStudy, log_moment_ratio: Tensor, seconds: Sequence[float],
                      labels: Sequence[str], timed_sizes: Sequence[int] | None = None) -> Figure:
    """(a) Effective sample size against :math:`K` (log-log): median over runs with the quantile band,
    the ceiling ESS = K and the large-K prediction K / C(x); (b) wall-clock seconds against :math:`K`.

    ``log_moment_ratio`` (n_points,) holds :math:`\\log C(x)`; ``seconds`` one
    time per entry of ``timed_sizes`` (default: the study's sample sizes).
    """
    n_points = study.ess_quantiles.shape[0]
    _check_labels(labels, n_points, "point")
    timed = np.asarray(timed_sizes if timed_sizes is not None else study.sample_sizes, dtype=float)
    if len(seconds) != len(timed):
        raise ValueError(f"seconds must hold one time per timed K ({len(timed)}), got {len(seconds)}")
    sizes = np.asarray(study.sample_sizes, dtype=float)
    ess_q, constants = to_numpy(study.ess_quantiles), np.exp(to_numpy(log_moment_ratio))
    fig, (ax_ess, ax_t) = new_figure(1, 2, width=8.4, height=3.6)
    ax_ess.plot(sizes, sizes, color=COLORS["exact"], lw=0.8, ls=":", label="ESS = K")
    for i, label in enumerate(labels):
        colour = POINT_COLORS[i % len(POINT_COLORS)]
        ax_ess.fill_between(sizes, ess_q[i, :, 0], ess_q[i, :, -1], color=colour, alpha=0.2, linewidth=0)
        ax_ess.plot(sizes, ess_q[i, :, len(study.probs) // 2], color=colour, marker="o", ms=4, label=label)
        ax_ess.plot(sizes, sizes / constants[i], color=colour, ls="--", lw=1.0)
    ax_ess.plot([], [], color=COLORS["muted"], ls="--", lw=1.0, label="K / C(x)")
    ax_ess.set_xscale("log")
    ax_ess.set_yscale("log")
    ax_ess.set_ylim(0.5, sizes[-1] * 2)
    ax_ess.set_xlabel("number of prior samples $K$")
    ax_ess.set_ylabel("effective sample size")
    ax_ess.legend(loc="upper left", fontsize=8)
    ax_t.plot(timed, seconds, color=COLORS["loss"], marker="o", ms=4, label="measured")
    upper = timed >= np.median(timed)        # anchor the slope-1 line on the larger K, where overhead is small
    per_sample = np.exp(np.mean(np.log(np.asarray(seconds)[upper] / timed[upper])))
    ax_t.plot(timed, per_sample * timed, color=COLORS["muted"], ls="--", lw=1.0, label="proportional to K")
    ax_t.set_xscale("log")
    ax_t.set_yscale("log")
    ax_t.set_xlabel("number of prior samples $K$")
    ax_t.set_ylabel("wall-clock time (s)")
    ax_t.legend(loc="upper left", fontsize=8)
    panel_label(ax_ess, "(a)")
    panel_label(ax_t, "(b)")
    return fig


@styled
def plot_grid_posterior(axis: Tensor, log_joint: Tensor, log_posterior_exact: Tensor,
                        log_prior: Tensor, zoom: tuple[float, float, float, float]) -> Figure:
    """(a) The unnormalised posterior :math:`p(x, z)` (filled) over the prior's contours (dashed) on the
    whole grid; (b) a zoom, ``zoom = (z1_min, z1_max, z2_min, z2_max)``, with the grid-normalised
    posterior filled and the closed-form :math:`p(z \\mid x)` as contour lines at the same levels.

    ``log_joint``, ``log_posterior_exact`` and ``log_prior`` are (G, G) arrays on
    ``axis`` x ``axis`` (first index = first latent coordinate); ``log_joint``
    is normalised here by its own grid sum for panel (b).
    """
    g = axis.shape[0]
    for name, t in (("log_joint", log_joint), ("log_posterior_exact", log_posterior_exact), ("log_prior", log_prior)):
        if t.shape != (g, g):
            raise ValueError(f"{name} must have shape ({g}, {g}), got {tuple(t.shape)}")
    grid = to_numpy(axis)
    step = grid[1] - grid[0]
    joint = np.exp(to_numpy(log_joint)).T
    posterior_grid = joint / (joint.sum() * step ** 2)
    exact = np.exp(to_numpy(log_posterior_exact)).T
    fig, (ax_a, ax_b) = new_figure(1, 2, width=8.8, height=4.0)
    # the lowest level is 1% of the maximum, so the region of negligible density stays blank
    filled = ax_a.contourf(grid, grid, joint, levels=joint.max() * np.array([0.01, *np.linspace(0, 1, 9)[1:-1]]),
                           cmap="viridis", extend="max")
    ax_a.contour(grid, grid, np.exp(to_numpy(log_prior)).T, levels=4, colors=[COLORS["muted"]], linestyles="--",
                 linewidths=1.0)
    ax_a.plot([], [], color=COLORS["muted"], ls="--", lw=1.0, label="prior $p(z)$")
    fig.colorbar(filled, ax=ax_a, label=r"$p(x \mid z)\,p(z)$", shrink=0.85, format="%.1e")
    ax_a.add_patch(Rectangle((zoom[0], zoom[2]), zoom[1] - zoom[0], zoom[3] - zoom[2], fill=False,
                             edgecolor=COLORS["data"], lw=1.0))
    ax_a.legend(loc="lower left")
    levels = np.linspace(0, exact.max(), 8)[1:]
    ax_b.contourf(grid, grid, posterior_grid, levels=levels, cmap="viridis", extend="max")
    ax_b.contour(grid, grid, exact, levels=levels, colors=[COLORS["q"]], linewidths=1.2, linestyles="--")
    ax_b.add_patch(Rectangle((0, 0), 0, 0, color=mpl.colormaps["viridis"](0.6), label="grid: $\\gamma_x$ / grid sum"))
    ax_b.plot([], [], color=COLORS["q"], ls="--", lw=1.2, label="closed form $p(z \\mid x)$")
    ax_b.set_xlim(zoom[0], zoom[1])
    ax_b.set_ylim(zoom[2], zoom[3])
    ax_b.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=1)
    for ax in (ax_a, ax_b):
        ax.set_xlabel("$z_1$")
        ax.set_ylabel("$z_2$")
        ax.set_aspect("equal")
        ax.grid(False)
    panel_label(ax_a, "(a)")
    panel_label(ax_b, "(b)")
    return fig

