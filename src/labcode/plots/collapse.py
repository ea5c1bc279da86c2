"""Figures of the chapter "Posterior collapse and its remedies".

Every function takes computed results (encoder means, activities, training histories from
:func:`labcode.collapse.train_variants`, bounds from :func:`labcode.collapse.flat_decoder_bound`) and
returns a ``matplotlib.figure.Figure``; none trains, samples or changes global matplotlib state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from torch import Tensor

from ..collapse import ACTIVITY_THRESHOLD
from .style import COLORS, SEQUENCE, new_figure, panel_label, styled, to_numpy
from .vae import PRIOR_RADII, check_window, prior_circles, running_mean, spiral_scatter


def _check_history(name: str, history: Mapping[str, Sequence[float]], keys: Sequence[str]) -> int:
    for key in keys:
        if key not in history:
            raise ValueError(f"history {name!r} must have the key {key!r}")
    lengths = {len(history[key]) for key in keys}
    if len(lengths) != 1 or 0 in lengths:
        raise ValueError(f"history {name!r} must hold equally long, non-empty series")
    return lengths.pop()


@styled
def plot_collapse_contrast(means: Mapping[str, Tensor], activities: Mapping[str, Tensor], *,
                           threshold: float = ACTIVITY_THRESHOLD, radii: Sequence[float] = PRIOR_RADII) -> Figure:
    """Two trained models side by side: encoder means and the activity of each latent unit.

    (a), (b) the encoder means :math:`\\mu_\\phi(x_i)` of the two models (same axes), coloured by the
    point's position along the spiral, over the prior's contours; (c) the activities :math:`A_u` of
    every unit of both models on a log axis, with the activity threshold dashed.

    Args:
        means: ``{label: (N, 2) encoder means}`` for exactly two models (shown in this order).
        activities: ``{label: (latent_dim,) activities}`` for the same labels.
        threshold: the activity threshold to draw (> 0).
        radii: radii of the prior contours.
    """
    labels = list(means)
    if len(labels) != 2 or set(activities) != set(labels):
        raise ValueError("means and activities must hold the same two labels")
    if not threshold > 0:
        raise ValueError(f"threshold must be > 0, got {threshold}")
    fig, axes = new_figure(1, 3, width=9.0, height=3.2)
    lim = max(1.07 * max(radii), *(float(np.abs(to_numpy(means[k])).max()) * 1.08 for k in labels))
    for ax, label, letter in zip(axes[:2], labels, ("(a)", "(b)"), strict=True):
        if means[label].dim() != 2 or means[label].shape[1] != 2:
            raise ValueError(f"means[{label!r}] must have shape (N, 2)")
        prior_circles(ax, radii)
        spiral_scatter(ax, means[label], size=6)
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.set_xlabel("$z_1$")
        ax.text(0.97, 0.97, label, transform=ax.transAxes, ha="right", va="top", fontsize=9)
        panel_label(ax, letter)
    axes[0].set_ylabel("$z_2$")
    axes[0].legend(loc="lower left", fontsize=7)

    ax = axes[2]
    width = 0.8 / len(labels)
    floor = threshold * 1e-4          # where a bar of activity ~0 starts, on the log axis
    for k, label in enumerate(labels):
        a = np.maximum(to_numpy(activities[label]), floor)
        pos = np.arange(len(a)) + (k - (len(labels) - 1) / 2) * width
        ax.bar(pos, a, width=width, bottom=floor, color=SEQUENCE[2 + k], label=label)
    ax.axhline(threshold, color=COLORS["muted"], ls="--", lw=1.0, label="activity threshold")
    ax.set_yscale("log")
    ax.set_ylim(floor, 1e3)       # room for the legend above the bars
    n_units = max(len(activities[k]) for k in labels)
    ax.set_xticks(range(n_units), [f"$z_{u + 1}$" for u in range(n_units)])
    ax.set_ylabel("activity $A_u$")
    ax.legend(loc="upper right", fontsize=7)
    panel_label(ax, "(c)")
    return fig


@styled
def plot_remedies(histories: Mapping[str, Mapping[str, Sequence[float]]], *, floor_total: float,
                  window: int = 25) -> Figure:
    """Training of the same model with different objectives: (a) the KL term, (b) the ELBO, against the step.

    Thin lines are the per-step one-sample values, thick lines their running mean over ``window``
    steps. Panel (a) also shows each run's β (right axis, dotted) and the free-bits floor summed over
    the units, ``floor_total`` (dashed).

    Args:
        histories: ``{label: history}`` with per-step ``kl``, ``elbo`` and ``beta`` lists.
        floor_total: :math:`d\\lambda`, the total floor of the free-bits run (>= 0).
        window: running-mean window (> 0).
    """
    check_window(window)
    if len(histories) == 0:
        raise ValueError("histories must hold at least one run")
    if not floor_total >= 0:
        raise ValueError(f"floor_total must be >= 0, got {floor_total}")
    fig, (ax_kl, ax_elbo) = new_figure(1, 2, width=8.6, height=3.3)
    ax_beta = ax_kl.twinx()
    for k, (label, history) in enumerate(histories.items()):
        n = _check_history(label, history, ("kl", "elbo", "beta"))
        steps = np.arange(n)
        colour = SEQUENCE[k % len(SEQUENCE)]
        for ax, key in ((ax_kl, "kl"), (ax_elbo, "elbo")):
            values = to_numpy(history[key])
            ax.plot(steps, values, color=colour, lw=0.5, alpha=0.3)
            ax.plot(steps, running_mean(values, window), color=colour, label=label)
        ax_beta.plot(steps, to_numpy(history["beta"]), color=colour, lw=1.0, ls=":")
    ax_kl.axhline(floor_total, color=COLORS["muted"], ls="--", lw=1.0, label="free-bits floor $d\\lambda$")
    ax_kl.set_yscale("symlog", linthresh=0.1)
    ax_kl.set_ylim(bottom=0.0)
    ax_kl.set_xlabel("training step")
    ax_kl.set_ylabel("KL term (nats per point)")
    ax_beta.set_ylabel("β (dotted)")
    ax_beta.set_ylim(-0.05, 1.6)
    ax_beta.spines["right"].set_visible(True)
    ax_beta.grid(False)
    ax_kl.legend(loc="upper right", fontsize=7)
    panel_label(ax_kl, "(a)")
    ax_elbo.set_xlabel("training step")
    ax_elbo.set_ylabel("ELBO (nats per point)")
    low = min(float(np.percentile(to_numpy(h["elbo"]), 10)) for h in histories.values())
    high = max(float(np.max(to_numpy(h["elbo"]))) for h in histories.values())
    ax_elbo.set_ylim(low - 0.1 * (high - low), high + 0.1 * (high - low))
    panel_label(ax_elbo, "(b)")
    return fig


@styled
def plot_unbounded(histories: Mapping[str, Mapping[str, Sequence[float]]], scales: Tensor,
                   bounds: Mapping[str, Tensor], *, reference: float | None = None, window: int = 25) -> Figure:
    """The objective without a maximum: (a) :math:`\\log\\sigma_x` and (b) the training objective against the step;
    (c) a lower bound on the objective against :math:`\\log_{10}(1/\\sigma_q)`.

    Args:
        histories: ``{label: history}`` with per-step ``log_noise_std`` and ``objective`` lists.
        scales: (K,) encoder scales :math:`\\sigma_q` of the degenerate sequence.
        bounds: ``{label: (K,) lower bounds}`` on :math:`\\mathcal L_\\beta` along the sequence.
        reference: an optional level to mark in (c) (a trained model's ELBO), dashed.
        window: running-mean window for (b) (> 0).
    """
    check_window(window)
    if len(histories) == 0 or len(bounds) == 0:
        raise ValueError("histories and bounds must hold at least one entry each")
    s = to_numpy(scales)
    fig, (ax_noise, ax_obj, ax_bound) = new_figure(1, 3, width=9.6, height=3.2)
    for k, (label, history) in enumerate(histories.items()):
        n = _check_history(label, history, ("log_noise_std", "objective"))
        steps = np.arange(n)
        colour = SEQUENCE[k % len(SEQUENCE)]
        ax_noise.plot(steps, to_numpy(history["log_noise_std"]), color=colour, label=label)
        values = to_numpy(history["objective"])
        ax_obj.plot(steps, values, color=colour, lw=0.5, alpha=0.3)
        ax_obj.plot(steps, running_mean(values, window), color=colour, label=label)
    ax_noise.set_xlabel("training step")
    ax_noise.set_ylabel(r"$\log\sigma_x$")
    ax_noise.legend(loc="lower left", fontsize=7)
    panel_label(ax_noise, "(a)")
    ax_obj.set_xlabel("training step")
    ax_obj.set_ylabel("training objective (nats per point)")
    low = min(float(np.percentile(to_numpy(h["objective"]), 5)) for h in histories.values())
    high = max(float(np.max(to_numpy(h["objective"]))) for h in histories.values())
    ax_obj.set_ylim(low - 0.1 * (high - low), high + 0.1 * (high - low))
    panel_label(ax_obj, "(b)")
    for k, (label, bound) in enumerate(bounds.items()):
        b = to_numpy(bound)
        if b.shape != s.shape:
            raise ValueError(f"bounds[{label!r}] must have the shape of scales {s.shape}, got {b.shape}")
        ax_bound.plot(np.log10(1 / s), b, "o-", ms=3, color=SEQUENCE[(k + 3) % len(SEQUENCE)], label=label)
    if reference is not None:
        ax_bound.axhline(reference, color=COLORS["muted"], ls="--", lw=1.0, label="trained lab VAE, ELBO")
    ax_bound.set_yscale("symlog", linthresh=10.0)
    ax_bound.set_xlabel(r"$\log_{10}(1/\sigma_q)$")
    ax_bound.set_ylabel("lower bound on the objective")
    ax_bound.legend(loc="upper left", fontsize=7)
    panel_label(ax_bound, "(c)")
    return fig
