"""Figures of the chapters "The ELBO" and "The two forces".

Every function takes computed results (training histories, encoder outputs,
the dict returned by :func:`labcode.analyze_beta_vae`, gradient estimates)
and returns a ``matplotlib.figure.Figure``; none trains, samples or changes
global matplotlib state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Circle, Ellipse
from matplotlib.ticker import NullFormatter, NullLocator, ScalarFormatter
from torch import Tensor

from ..gradients import GradientEstimates
from .style import COLORS, MARKER_SIZE, SEQUENCE, new_figure, panel_label, styled, to_numpy


def running_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average over ``window`` steps (shorter windows at the ends), for display only."""
    csum = np.cumsum(np.insert(values, 0, 0.0))
    idx = np.arange(len(values))
    lo = np.maximum(idx - window // 2, 0)
    hi = np.minimum(idx + window // 2 + 1, len(values))
    return (csum[hi] - csum[lo]) / (hi - lo)


def check_window(window: int) -> None:
    """Raise ``ValueError`` unless ``window`` (a moving-average width) is an int > 0."""
    if isinstance(window, bool) or not isinstance(window, int) or window <= 0:
        raise ValueError(f"window must be a positive int, got {window!r}")


def spiral_scatter(ax: Axes, points: Tensor, *, size: float = MARKER_SIZE, alpha: float = 0.85, **kw):
    """Points (N, 2) coloured by their index along the spiral (the data order)."""
    p = to_numpy(points)
    return ax.scatter(p[:, 0], p[:, 1], c=np.arange(len(p)), cmap="viridis", s=size, alpha=alpha,
                      linewidths=0, **kw)


PRIOR_RADII: tuple[float, ...] = (1.0, 2.0, 3.0)


def prior_circles(ax: Axes, radii: Sequence[float] = PRIOR_RADII) -> None:
    """Contours of the prior density N(0, I) in two dimensions: circles :math:`|z| = r`."""
    if len(radii) == 0 or any(not r > 0 for r in radii):
        raise ValueError(f"radii must be positive numbers, got {tuple(radii)}")
    text = ", ".join(f"{r:g}" for r in radii)
    for i, r in enumerate(radii):
        ax.add_patch(Circle((0.0, 0.0), r, fill=False, color=COLORS["p"], lw=1.0, ls="--", alpha=0.8,
                            label=f"prior contours, $|z| = {text}$" if i == 0 else None))


# ---------------------------------------------------------------- chapter "The ELBO"

@styled
def plot_training_curves(history: Mapping[str, Sequence[float]], *, window: int = 100) -> Figure:
    """Training curves of one VAE: (a) the loss :math:`-\\ELBO`, (b) its two terms.

    ``history`` is the dict returned by :func:`labcode.train_vae` (per-step
    batch means of one-sample estimates). Thin lines are the per-step values,
    thick lines their centred running mean over ``window`` steps.
    """
    check_window(window)
    for key in ("elbo", "reconstruction", "kl"):
        if key not in history:
            raise ValueError(f"history must have the key {key!r}")
    steps = np.arange(1, len(history["elbo"]) + 1)
    fig, (ax_loss, ax_terms) = new_figure(1, 2, width=8.0, height=3.2)
    series = [(ax_loss, -to_numpy(history["elbo"]), COLORS["loss"], r"$-$ELBO (loss)"),
              (ax_terms, to_numpy(history["reconstruction"]), COLORS["reconstruction"], r"reconstruction $\mathbb{E}_q[\log p(x\mid z)]$"),
              (ax_terms, to_numpy(history["kl"]), COLORS["kl"], r"KL$(q(z\mid x)\,\|\,p(z))$")]
    for ax, values, colour, label in series:
        ax.plot(steps, values, color=colour, lw=0.6, alpha=0.35)
        ax.plot(steps, running_mean(values, window), color=colour, label=label)
    loss = -to_numpy(history["elbo"])
    if loss.min() > 0:            # the loss falls by a factor of a few: a log axis shows both phases
        ax_loss.set_yscale("log")
        ax_loss.yaxis.set_major_formatter(ScalarFormatter())
        ax_loss.yaxis.set_minor_formatter(NullFormatter())
        ax_loss.set_yticks([t for t in (3, 4, 5, 6, 8, 10, 15, 20, 30, 50) if loss.min() * 0.9 <= t <= loss.max() * 1.1])
    ax_terms.axhline(0.0, color=COLORS["muted"], lw=0.8)
    for ax, label in ((ax_loss, "(a) loss"), (ax_terms, "(b) the two terms")):
        ax.set_xlabel("training step")
        ax.set_ylabel("nats per point")
        ax.legend(loc="upper right" if ax is ax_loss else "lower right")
        panel_label(ax, label)
    return fig


@styled
def plot_latent_space(mu: Tensor, logvar: Tensor, *, highlight: Sequence[int] = ()) -> Figure:
    """Encoder means :math:`\\mu_\\phi(x_i)` (N, 2) coloured by spiral position, over the prior's contours.

    For the points in ``highlight`` the posterior :math:`q_\\phi(z\\mid x_i)` is
    drawn as its 2-standard-deviation ellipse (axes :math:`2\\sigma_{\\phi,1}, 2\\sigma_{\\phi,2}`).
    """
    if mu.dim() != 2 or mu.shape[1] != 2:
        raise ValueError(f"mu must have shape (N, 2), got {tuple(mu.shape)}")
    if logvar.shape != mu.shape:
        raise ValueError(f"logvar must have the shape of mu {tuple(mu.shape)}, got {tuple(logvar.shape)}")
    fig, ax = new_figure(width=5.2, height=4.4)
    points = spiral_scatter(ax, mu, size=10)
    prior_circles(ax)
    sd = np.exp(0.5 * to_numpy(logvar))
    m = to_numpy(mu)
    for n, i in enumerate(highlight):
        ax.add_patch(Ellipse((m[i, 0], m[i, 1]), 4 * sd[i, 0], 4 * sd[i, 1], fill=False, color=COLORS["q"], lw=1.2,
                             label=r"$q(z\mid x)$, 2 s.d." if n == 0 else None))
    fig.colorbar(points, ax=ax, label="index along the spiral", shrink=0.8)
    lim = max(3.2, float(np.abs(m).max()) + 0.3)
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_xlabel("$z_1$")
    ax.set_ylabel("$z_2$")
    ax.legend(loc="lower left", fontsize=8)
    return fig


@styled
def plot_reconstructions(data: Tensor, reconstructions: Tensor, samples: Tensor,
                         short_reconstructions: Tensor | None = None) -> Figure:
    """Panels: (a) decoder means :math:`f_\\theta(z)`, :math:`z \\sim q(z\\mid x_i)`, against the data;
    (b) samples of the generative model against the data; (c) optionally, the
    reconstructions of a briefly trained model (same data, same axes).

    ``data``, ``reconstructions`` (N, 2) are in data order (colour = spiral
    position); ``samples`` (M, 2) are drawn as one colour.
    """
    for name, t in (("data", data), ("reconstructions", reconstructions), ("samples", samples)):
        if t.dim() != 2 or t.shape[1] != 2:
            raise ValueError(f"{name} must have shape (N, 2), got {tuple(t.shape)}")
    ncols = 2 if short_reconstructions is None else 3
    fig, axes = new_figure(1, ncols, width=3.0 * ncols, height=2.9, sharex=True, sharey=True)
    d = to_numpy(data)
    panels = [(reconstructions, "(a)"), (samples, "(b)")]
    if short_reconstructions is not None:
        panels.append((short_reconstructions, "(c)"))
    for ax, (points, label) in zip(axes, panels, strict=True):
        ax.scatter(d[:, 0], d[:, 1], s=6, color=COLORS["muted"], alpha=0.5, linewidths=0, label="data")
        if points is samples:
            p = to_numpy(samples)
            ax.scatter(p[:, 0], p[:, 1], s=8, color=COLORS["q"], alpha=0.6, linewidths=0, label="model samples")
        else:
            spiral_scatter(ax, points, size=8)
        ax.set_aspect("equal")
        ax.set_xlabel("$x_1$")
        panel_label(ax, label)
    axes[0].set_ylabel("$x_2$")
    handles = [axes[1].collections[0], axes[1].collections[1], axes[0].collections[1]]
    fig.legend(handles, ["data", "model samples", "decoder means, coloured by spiral position"],
               loc="outside lower center", ncols=3, fontsize=8, markerscale=2)
    return fig


@styled
def plot_gradient_estimators(samples: GradientEstimates, true_gradient: float, sigmas: Tensor,
                             measured: Mapping[str, Tensor], exact: Mapping[str, Tensor]) -> Figure:
    """Reparameterised vs score-function estimators of :math:`\\tfrac{d}{d\\mu}\\mathbb E[f(z)]`.

    (a) histograms of the per-sample estimates in ``samples`` (one (μ, σ),
    ``reparam_mu`` and ``score_mu`` of shape (K, 1)), with the true gradient;
    (b) per-sample variance against σ: ``measured`` (points) and ``exact``
    (lines), dicts of (len(sigmas),) tensors keyed ``reparam``, ``score`` and
    ``score_baseline``.
    """
    labels = {"reparam": ("reparameterised", COLORS["reconstruction"]),
              "score": ("score function", COLORS["q"]),
              "score_baseline": ("score function, baseline $b = \\mathbb{E}[h]$", COLORS["accent"])}
    for key in labels:
        if key not in measured or key not in exact:
            raise ValueError(f"measured and exact must have the key {key!r}")
    fig, (ax_hist, ax_var) = new_figure(1, 2, width=8.4, height=3.3)
    rep, score = to_numpy(samples.reparam_mu).ravel(), to_numpy(samples.score_mu).ravel()
    lo, hi = np.quantile(score, [0.01, 0.99])
    bins = np.linspace(min(lo, rep.min()), max(hi, rep.max()), 80)
    ax_hist.hist(score, bins=bins, density=True, color=labels["score"][1], alpha=0.55, histtype="stepfilled")
    ax_hist.hist(rep, bins=bins, density=True, color=labels["reparam"][1], alpha=0.7, histtype="stepfilled")
    ax_hist.set_xlim(bins[0], bins[-1])
    ax_hist.axvline(true_gradient, color=COLORS["exact"], lw=1.2, ls="--", label="true gradient")
    ax_hist.set_xlabel("one-sample estimate of $d/d\\mu$")
    ax_hist.set_ylabel("density")
    s = to_numpy(sigmas)
    for key, (label, colour) in labels.items():
        ax_var.plot(s, to_numpy(exact[key]), color=colour, label=label)
        ax_var.plot(s, to_numpy(measured[key]), "o", color=colour, ms=4)
    ax_var.set_xscale("log")
    ax_var.set_yscale("log")
    ax_var.set_xlabel("$\\sigma$")
    ax_var.set_ylabel("variance per sample")
    handles = [*ax_var.get_lines()[::2], ax_hist.get_lines()[0]]
    fig.legend(handles, [label for label, _ in labels.values()] + ["true gradient"], loc="outside lower center",
               ncols=4, fontsize=8)
    panel_label(ax_hist, "(a) estimates")
    panel_label(ax_var, "(b) variance")
    return fig


# ---------------------------------------------------------------- chapter "The two forces"

def _beta_label(beta: float) -> str:
    return f"β = {beta:g}"


def _check_betas(results: Mapping[float, Mapping], betas: Sequence[float]) -> None:
    for beta in betas:
        if float(beta) not in results:
            raise ValueError(f"results has no β = {beta:g}; it has {sorted(results)}")


@styled
def plot_beta_vae(results: Mapping[float, Mapping], data: Tensor, *, show: Sequence[float] = (0.0, 1.0, 10.0),
                  indices: Sequence[int] = (40, 140, 240, 340, 440),
                  radii: Sequence[float] = PRIOR_RADII) -> Figure:
    """The β sweep in four panels (top row a-c, bottom row d).

    (a) the reconstruction term and the KL against β (categorical positions,
    so β = 0 has a place; symmetric-log y axis); (b) the data, coloured by
    spiral position; (c) the reconstructions (decoder means at one
    :math:`z \\sim q(z\\mid x)`) of the points ``indices`` for each of the three β
    in ``show``, joined to their originals; (d) latent means :math:`\\mu_\\phi(x)`
    for each β in ``show``, coloured by spiral position, over the prior's contours
    :math:`|z| = r` for ``r`` in ``radii``.

    ``results`` is the dict returned by :func:`labcode.analyze_beta_vae` (or :func:`labcode.beta_sweep`).
    """
    if len(show) != 3:
        raise ValueError(f"show must name three β values, got {tuple(show)}")
    _check_betas(results, show)
    betas = sorted(results)
    fig, axes = new_figure(2, 3, width=8.8, height=6.4)
    ax_terms, ax_data, ax_rec = axes[0]
    latent_axes = axes[1]

    # (a) the two terms against beta
    pos = np.arange(len(betas))
    recon = [results[b]["reconstruction"] for b in betas]
    kl = [results[b]["kl_divergence"] for b in betas]
    ax_terms.plot(pos, recon, "o-", color=COLORS["reconstruction"], label="reconstruction")
    ax_terms.plot(pos, kl, "s-", color=COLORS["kl"], label="KL")
    ax_terms.axhline(0.0, color=COLORS["muted"], lw=0.8)
    ax_terms.set_yscale("symlog", linthresh=10.0, linscale=2.0)
    ticks = [-5, 0, 5, 10, 50]
    ax_terms.set_yticks(ticks, [str(t) for t in ticks])
    ax_terms.yaxis.set_minor_locator(NullLocator())
    ax_terms.set_xticks(pos, [f"{b:g}" for b in betas])
    ax_terms.set_xlabel("β")
    ax_terms.set_ylabel("nats per point")
    ax_terms.legend(loc="upper right", fontsize=8)
    panel_label(ax_terms, "(a)")

    # (b) data and (c) reconstructions of a few points
    d = to_numpy(data)
    spiral_scatter(ax_data, data, size=5)
    ax_rec.scatter(d[:, 0], d[:, 1], s=4, color=COLORS["muted"], alpha=0.35, linewidths=0)
    for ax in (ax_data, ax_rec):
        ax.set_aspect("equal")
        ax.set_xlabel("$x_1$")
    ax_data.set_ylabel("$x_2$")
    panel_label(ax_data, "(b)")
    idx = list(indices)
    orig = d[idx]
    markers, sizes = ["o", "s", "^"], [90, 45, 30]
    for k, beta in enumerate(show):
        rec = to_numpy(results[float(beta)]["reconstructions"])[idx]
        colour = SEQUENCE[betas.index(float(beta)) % len(SEQUENCE)]
        for o, r in zip(orig, rec, strict=True):
            ax_rec.plot([o[0], r[0]], [o[1], r[1]], color=colour, lw=0.8, alpha=0.7)
        ax_rec.scatter(rec[:, 0], rec[:, 1], s=sizes[k], facecolors="none", edgecolors=colour, linewidths=1.4,
                       marker=markers[k], zorder=3, label=_beta_label(beta))
    ax_rec.scatter(orig[:, 0], orig[:, 1], s=50, color=COLORS["data"], marker="x", zorder=4, label="original")
    ax_rec.set_ylim(ax_data.get_ylim()[0] - 4.5, ax_data.get_ylim()[1])
    ax_rec.legend(loc="lower center", fontsize=7, ncols=2, handletextpad=0.2, columnspacing=0.8)
    panel_label(ax_rec, "(c)")

    # (d) latent means, one panel per beta
    lim = max(1.07 * max(radii), *(float(np.abs(to_numpy(results[float(b)]["latent_means"])).max()) * 1.08 for b in show))
    for ax, beta in zip(latent_axes, show, strict=True):
        prior_circles(ax, radii)
        spiral_scatter(ax, results[float(beta)]["latent_means"], size=5)
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.set_xlabel("$z_1$")
        ax.text(0.97, 0.97, _beta_label(beta), transform=ax.transAxes, ha="right", va="top", fontsize=9)
    latent_axes[0].set_ylabel("$z_2$")
    panel_label(latent_axes[0], "(d)")
    return fig


@styled
def plot_two_forces(results: Mapping[float, Mapping], reconstruction: Tensor, kl: Tensor, *, beta: float = 1.0) -> Figure:
    """The two forces in the (KL, reconstruction) plane, from measured values.

    (a) each β of the sweep as one point (batch means of the two terms), the
    line of constant ELBO (slope 1) through the point with the largest ELBO,
    and arrows for the two pulls at that point; (b) per-point reconstruction
    term against KL, both (N,), for the model trained with ``beta``, coloured
    by spiral position, with lines of constant ELBO.
    """
    _check_betas(results, [beta])
    if reconstruction.shape != kl.shape or reconstruction.dim() != 1:
        raise ValueError(f"reconstruction and kl must be 1-D of one shape, got {tuple(reconstruction.shape)} "
                         f"and {tuple(kl.shape)}")
    betas = sorted(results)
    fig, (ax_sweep, ax_points) = new_figure(1, 2, width=8.8, height=3.6)

    # (a) the sweep
    rates = np.array([results[b]["kl_divergence"] for b in betas])
    recs = np.array([results[b]["reconstruction"] for b in betas])
    best = int(np.argmax(recs - rates))
    x0, y0 = rates[best], recs[best]
    y_lo, y_hi = recs.min() - 2.0, recs.max() + 2.0
    x_line = np.array([max(0.0, y_lo - (y0 - x0)), y_hi - (y0 - x0)])
    ax_sweep.plot(x_line, (y0 - x0) + x_line, color=COLORS["elbo"], lw=1.0, ls="--",
                  label=f"ELBO = {y0 - x0:.2f} (best)")
    ax_sweep.plot(rates, recs, color=COLORS["muted"], lw=0.8, zorder=1)
    for b, r, c in zip(betas, rates, recs, strict=True):
        ax_sweep.scatter(r, c, s=45, color=SEQUENCE[betas.index(b) % len(SEQUENCE)], zorder=3)
    for b, r, c in zip(betas, rates, recs, strict=True):
        same = [bb for bb, rr, cc in zip(betas, rates, recs, strict=True) if abs(rr - r) < 1e-2 and abs(cc - c) < 0.05]
        if b != same[0]:
            continue                                    # collapsed models sit on one spot: one label
        text = ", ".join(f"{bb:g}" for bb in same)
        ax_sweep.annotate(f"β = {text}", (r, c), textcoords="offset points", xytext=(6, 6), fontsize=8)
    span = rates.max()
    origin = (0.62, 0.3)                                 # a compass in the empty lower right, axes coordinates
    for tip, colour, text, offset in (((0.62, 0.52), COLORS["reconstruction"], "reconstruction", (0.015, -0.02)),
                                      ((0.42, 0.3), COLORS["kl"], "KL", (-0.01, 0.04))):
        ax_sweep.annotate("", xy=tip, xytext=origin, xycoords="axes fraction", textcoords="axes fraction",
                          arrowprops={"arrowstyle": "-|>", "color": colour, "lw": 1.8})
        ax_sweep.text(tip[0] + offset[0], tip[1] + offset[1], text, color=colour, fontsize=8,
                      transform=ax_sweep.transAxes, va="top" if text != "KL" else "bottom")
    ax_sweep.set_ylim(y_lo, y_hi)
    ax_sweep.set_xlim(-0.04 * span, span * 1.1)
    ax_sweep.set_xlabel("KL term")
    ax_sweep.set_ylabel("reconstruction term")
    ax_sweep.legend(loc="lower right", fontsize=8)
    panel_label(ax_sweep, "(a) the β sweep")

    # (b) per point, at one beta
    r, k = to_numpy(reconstruction), to_numpy(kl)
    pts = ax_points.scatter(k, r, c=np.arange(len(k)), cmap="viridis", s=10, alpha=0.85, linewidths=0)
    x_line = np.linspace(0, k.max() * 1.05, 2)
    for n, level in enumerate(np.quantile(r - k, [0.1, 0.5, 0.9])):
        ax_points.plot(x_line, level + x_line, color=COLORS["elbo"], lw=0.9, ls="--", alpha=0.7,
                       label="ELBO deciles 1, 5, 9" if n == 0 else None)
    ax_points.set_xlim(0, k.max() * 1.05)
    ax_points.set_ylim(r.min() - 0.5, r.max() + 0.5)
    fig.colorbar(pts, ax=ax_points, label="index along the spiral", shrink=0.85)
    ax_points.set_xlabel(r"KL$(q(z\mid x_i)\,\|\,p(z))$")
    ax_points.set_ylabel("reconstruction term")
    ax_points.legend(loc="lower right", fontsize=8)
    panel_label(ax_points, f"(b) per point, {_beta_label(beta)}")
    return fig
