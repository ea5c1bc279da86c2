"""Figures of the chapters "Beyond the lab: exact posteriors and better estimators",
"Mode-covering and mode-seeking in two dimensions" and "The rate–distortion view"."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.patches import Ellipse
from torch import Tensor

from ..fits import GaussianFit2D
from ..importance import SpreadStudy
from .style import COLORS, POINT_COLORS, SEQUENCE, new_figure, panel_label, styled, to_numpy

#: one colour per chosen point (near, middle, far), as in the chapter "The intractable likelihood"


def _check_len(name: str, values: Sequence, n: int) -> None:
    if len(values) != n:
        raise ValueError(f"{name} must have {n} entries, got {len(values)}")


@styled
def plot_identity(log_evidence: Tensor, elbo: Tensor, discrepancy: Tensor, error_estimate: Tensor) -> Figure:
    """(a) :math:`\\log p(x_i)` and the ELBO of every data point against its index along the spiral, the gap
    between them shaded; (b) :math:`|\\mathrm{ELBO} + \\mathrm{KL}(q\\,\\|\\,p(z\\mid x)) - \\log p(x)|` and the
    quadrature's error estimate of :math:`\\log p(x)` per point (log axis). All inputs are (N,)."""
    n = log_evidence.shape[0]
    for name, t in (("elbo", elbo), ("discrepancy", discrepancy), ("error_estimate", error_estimate)):
        if t.shape != (n,):
            raise ValueError(f"{name} must have shape ({n},), got {tuple(t.shape)}")
    index = np.arange(n)
    log_p, lower = to_numpy(log_evidence), to_numpy(elbo)
    fig, (ax_a, ax_b) = new_figure(2, 1, width=6.4, height=5.4, sharex=True)
    ax_a.fill_between(index, lower, log_p, color=COLORS["kl"], alpha=0.35, lw=0,
                      label=r"gap $\mathrm{KL}(q \,\|\, p(z \mid x))$")
    ax_a.plot(index, log_p, color=COLORS["exact"], lw=1.2, label=r"$\log p(x)$")
    ax_a.plot(index, lower, color=COLORS["elbo"], lw=1.0, label="ELBO")
    ax_a.set_ylabel("nats")
    ax_a.legend(loc="lower left", ncol=3)
    floor = np.finfo(float).tiny
    ax_b.semilogy(index, np.maximum(np.abs(to_numpy(discrepancy)), floor), ".", ms=2.5, color=COLORS["q"],
                  label=r"$|\mathrm{ELBO} + \mathrm{KL} - \log p(x)|$")
    ax_b.semilogy(index, np.maximum(to_numpy(error_estimate), floor), ".", ms=2.5, color=COLORS["muted"],
                  label=r"error estimate of $\log p(x)$")
    ax_b.set_xlabel("index of the data point along the spiral")
    ax_b.set_ylabel("nats")
    ax_b.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, markerscale=4, fontsize=8)
    panel_label(ax_a, "(a)")
    panel_label(ax_b, "(b)")
    return fig


def ellipse_levels(ax: Axes, mean: np.ndarray, std: np.ndarray, colour: str, style: str = "--") -> None:
    """Contours of N(mean, diag std^2) where the density is e^{-1/2} and e^{-2} of its maximum."""
    for radius in (1.0, 2.0):
        ax.add_patch(Ellipse(tuple(mean), 2 * radius * std[0], 2 * radius * std[1], fill=False,
                             edgecolor=colour, lw=1.4, ls=style))


def fill_posterior(ax: Axes, axes: Sequence[tuple[Tensor, Tensor]], log_posteriors: Sequence[Tensor],
                   i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, str]:
    """Fill point i's exact posterior on its zoom grid where it is above :math:`e^{-4.5}`, :math:`e^{-2}` and
    :math:`e^{-1/2}` of its maximum, in the point's colour; returns (z1, z2, log_post, peak, colour).

    ``axes[i] = (z1, z2)`` are the (G1,) and (G2,) grid coordinates and ``log_posteriors[i]`` is (G1, G2).
    """
    z1, z2 = to_numpy(axes[i][0]), to_numpy(axes[i][1])
    log_post = to_numpy(log_posteriors[i])
    if log_post.shape != (z1.size, z2.size):
        raise ValueError(f"log_posteriors[{i}] must have shape ({z1.size}, {z2.size}), got {log_post.shape}")
    peak = log_post.max()
    colour = POINT_COLORS[i % len(POINT_COLORS)]
    shades = [to_rgba(colour, alpha) for alpha in (0.12, 0.3, 0.55)]
    ax.contourf(z1, z2, log_post.T, levels=[peak - 4.5, peak - 2.0, peak - 0.5, peak + 1e-9], colors=shades)
    return z1, z2, log_post, peak, colour


@styled
def plot_posterior_vs_q(axes: Sequence[tuple[Tensor, Tensor]], log_posteriors: Sequence[Tensor],
                        q_mean: Tensor, q_std: Tensor, labels: Sequence[str]) -> Figure:
    """One panel per point: the exact posterior (filled contours) and the encoder's :math:`q(z \\mid x)` (dashed).

    ``axes[i] = (z1, z2)`` are the (G1,) and (G2,) coordinates of point i's zoom
    grid, ``log_posteriors[i]`` its (G1, G2) :math:`\\log p(z \\mid x)`;
    ``q_mean``, ``q_std`` are (n, 2). Both densities are drawn where they fall to
    :math:`e^{-1/2}` and :math:`e^{-2}` of their own maximum (the posterior's
    filled region also shows :math:`e^{-4.5}`).
    """
    n = len(labels)
    _check_len("axes", axes, n)
    _check_len("log_posteriors", log_posteriors, n)
    if q_mean.shape != (n, 2) or q_std.shape != (n, 2):
        raise ValueError(f"q_mean and q_std must have shape ({n}, 2), got {tuple(q_mean.shape)} and {tuple(q_std.shape)}")
    fig, panels = new_figure(1, n, width=8.8, height=3.5)
    panels = np.atleast_1d(panels)
    for i, ax in enumerate(panels):
        z1, z2, log_post, peak, colour = fill_posterior(ax, axes, log_posteriors, i)
        ax.contour(z1, z2, log_post.T, levels=[peak - 2.0, peak - 0.5], colors=[colour], linewidths=1.2)
        ellipse_levels(ax, to_numpy(q_mean[i]), to_numpy(q_std[i]), COLORS["data"])
        ax.set_xlim(z1[0], z1[-1])
        ax.set_ylim(z2[0], z2[-1])
        ax.set_aspect("equal")
        ax.grid(False)
        ax.set_xlabel("$z_1$")
        ax.set_title(labels[i])
        panel_label(ax, f"({'abc'[i] if i < 3 else i})")
    panels[0].set_ylabel("$z_2$")
    panels[0].plot([], [], color=POINT_COLORS[0], lw=1.2, label=r"exact $p(z \mid x)$")
    panels[0].plot([], [], color=COLORS["data"], lw=1.4, ls="--", label=r"encoder $q(z \mid x)$")
    fig.legend(loc="lower center", ncol=2, bbox_to_anchor=(0.5, -0.08))
    return fig


def _bias_curve(ax: Axes, sizes: np.ndarray, bias: np.ndarray, stderr: np.ndarray, colour: str, style: str,
                marker: str) -> None:
    """Draw positive, significant biases (estimate > 2 standard errors) with ±2 se bars; others as open markers at 2 se."""
    significant = bias > 2 * stderr
    ax.plot(sizes[significant], bias[significant], style, color=colour, marker=marker, ms=5)
    lower = np.maximum(bias - 2 * stderr, bias * 1e-3)
    ax.vlines(sizes[significant], lower[significant], (bias + 2 * stderr)[significant], color=colour, lw=1.0)
    ax.plot(sizes[~significant], 2 * stderr[~significant], ls="none", marker="v", mfc="none", color=colour, ms=5)


@styled
def plot_estimators(prior: SpreadStudy, proposal: SpreadStudy, log_evidence: Tensor, elbo_gap: Tensor,
                    log_c_prior: Tensor, labels: Sequence[str]) -> Figure:
    """(a) Bias :math:`\\log p(x) - \\mathbb E[\\log \\hat p_K]` against :math:`K` (log–log) for prior sampling
    (dashed) and importance sampling with :math:`q` (solid; this bias is the IWAE gap
    :math:`\\log p(x) - \\mathcal L^{\\mathrm{IW}}_K`), with the exact ELBO gap at :math:`K = 1` (stars) and the
    prior-sampling prediction :math:`(C - 1)/(2K)` (dotted). Open triangles: bias not significant, drawn at
    two standard errors. (b) Median effective sample size over :math:`K` against :math:`K`, with
    :math:`1/C` for prior sampling (dotted).

    ``prior`` and ``proposal`` come from :func:`labcode.importance.estimator_spread` on the same sizes;
    ``log_evidence``, ``elbo_gap`` and ``log_c_prior`` are (n,) exact values.
    """
    n = len(labels)
    if prior.sample_sizes != proposal.sample_sizes:
        raise ValueError("prior and proposal must use the same sample sizes")
    for name, t in (("log_evidence", log_evidence), ("elbo_gap", elbo_gap), ("log_c_prior", log_c_prior)):
        if t.shape != (n,):
            raise ValueError(f"{name} must have shape ({n},), got {tuple(t.shape)}")
    sizes = np.asarray(prior.sample_sizes, dtype=float)
    log_p = to_numpy(log_evidence)
    c_prior = np.exp(to_numpy(log_c_prior))
    fig, (ax_a, ax_b) = new_figure(1, 2, width=8.8, height=3.8)
    for i, label in enumerate(labels):
        colour = POINT_COLORS[i % len(POINT_COLORS)]
        for study, style, marker in ((prior, "--", "s"), (proposal, "-", "o")):
            bias = log_p[i] - to_numpy(study.log_estimate_mean[i])
            stderr = to_numpy(study.log_estimate_std[i]) / np.sqrt(np.asarray(study.repeats, dtype=float))
            _bias_curve(ax_a, sizes, bias, stderr, colour, style, marker)
            ax_b.loglog(sizes, to_numpy(study.ess_quantiles[i, :, 1]) / sizes, style, color=colour, marker=marker, ms=4)
        ax_a.loglog(sizes, (c_prior[i] - 1) / (2 * sizes), ":", color=colour, lw=1.0)
        ax_a.plot([1.0], [float(elbo_gap[i])], "*", color=colour, ms=11, mec="white", mew=0.6)
        ax_b.axhline(1 / c_prior[i], color=colour, ls=":", lw=1.0)
        ax_b.plot([], [], color=colour, label=label)
    ax_a.set_xscale("log")
    ax_a.set_yscale("log")
    ax_a.set_xlabel("number of samples $K$")
    ax_a.set_ylabel(r"$\log p(x) - \mathbb{E}[\log \hat p_K(x)]$ (nats)")
    ax_b.set_xlabel("number of samples $K$")
    ax_b.set_ylabel(r"median ESS$\,/K$")
    ax_b.plot([], [], "k--", marker="s", ms=4, label="prior sampling")
    ax_b.plot([], [], "k-", marker="o", ms=4, label="sampling from $q$")
    ax_b.plot([], [], "k:", lw=1.0, label="$1/C$ (prior), $(C-1)/2K$ in (a)")
    ax_b.plot([], [], "k*", ms=9, ls="none", label="exact ELBO gap, (a)")
    fig.legend(*ax_b.get_legend_handles_labels(), loc="lower center", bbox_to_anchor=(0.5, -0.14), ncol=4, fontsize=8)
    panel_label(ax_a, "(a)")
    panel_label(ax_b, "(b)")
    return fig


@styled
def plot_noise_scaling(factors: Sequence[float], log_c_prior: Tensor, sampled_ess_ratio: Tensor,
                       half_widths: Sequence[float], log_c_box: Tensor, labels: Sequence[str], latent_dim: int = 2) -> Figure:
    """(a) The prior-sampling ESS fraction :math:`1/C(x)` against the factor that rescales the decoder's
    :math:`\\sigma_x` (log–log), exact (lines) and sampled (markers), with a line :math:`\\propto \\sigma^{d}`;
    (b) :math:`\\log \\int_{[-a,a]^2} p(z\\mid x)^2/q(z\\mid x)\\, dz` against the box size :math:`a`.

    ``log_c_prior`` and ``sampled_ess_ratio`` are (F, n) for the F factors; ``log_c_box`` is (n, A).
    """
    n = len(labels)
    f = np.asarray(factors, dtype=float)
    if log_c_prior.shape != (f.size, n) or sampled_ess_ratio.shape != (f.size, n):
        raise ValueError(f"log_c_prior and sampled_ess_ratio must have shape ({f.size}, {n})")
    if log_c_box.shape != (n, len(half_widths)):
        raise ValueError(f"log_c_box must have shape ({n}, {len(half_widths)}), got {tuple(log_c_box.shape)}")
    fig, (ax_a, ax_b) = new_figure(1, 2, width=8.8, height=3.6)
    ratio = np.exp(-to_numpy(log_c_prior))
    for i, label in enumerate(labels):
        colour = POINT_COLORS[i % len(POINT_COLORS)]
        ax_a.loglog(f, ratio[:, i], "-", color=colour, label=label)
        ax_a.loglog(f, to_numpy(sampled_ess_ratio[:, i]), "o", mfc="none", color=colour, ms=5)
        ax_b.plot(np.asarray(half_widths, dtype=float), to_numpy(log_c_box[i]), "-o", color=colour, ms=4, label=label)
    anchor = ratio[0].min() * 0.5
    ax_a.loglog(f, anchor * (f / f[0]) ** latent_dim, color=COLORS["muted"], ls="--", lw=1.0,
                label=rf"$\propto \sigma^{{{latent_dim}}}$")
    ax_a.plot([], [], "o", mfc="none", color=COLORS["data"], label="sampled ESS$/K$")
    ticks = [t for t in (0.25, 0.5, 1.0, 2.0, 4.0) if f.min() <= t <= f.max()]
    ax_a.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax_a.minorticks_off()
    ax_a.set_xlabel(r"noise scale $\sigma / \sigma_x$")
    ax_a.set_ylabel(r"prior sampling: $1/C(x)$")
    ax_a.legend(loc="lower right", fontsize=8)
    ax_b.set_xlabel("box half-width $a$")
    ax_b.set_ylabel(r"$\log \int_{[-a,a]^2} p(z \mid x)^2 / q(z \mid x)\, dz$")
    ax_b.legend(loc="upper left")
    panel_label(ax_a, "(a)")
    panel_label(ax_b, "(b)")
    return fig


def _gaussian_ellipse(ax: Axes, mean: np.ndarray, cov: np.ndarray, colour: str, ls: str, label: str | None) -> None:
    """The 1- and 2-standard-deviation ellipses of N(mean, cov)."""
    values, vectors = np.linalg.eigh(cov)
    angle = np.degrees(np.arctan2(vectors[1, -1], vectors[0, -1]))
    for k, radius in enumerate((1.0, 2.0)):
        ax.add_patch(Ellipse(tuple(mean), 2 * radius * np.sqrt(values[-1]), 2 * radius * np.sqrt(values[0]),
                             angle=angle, fill=False, edgecolor=colour, lw=1.6, ls=ls,
                             label=label if k == 0 else None))


def _target_panel(ax: Axes, axis: np.ndarray, log_p: np.ndarray) -> None:
    p = np.exp(log_p).T
    ax.contourf(axis, axis, p, levels=p.max() * np.array([0.01, 0.1, 0.3, 0.6, 1.0001]), cmap="Greys", alpha=0.7)
    ax.set_aspect("equal")
    ax.grid(False)
    ax.set_xlabel("$z_1$")


@styled
def plot_mode_fits_2d(axis: Tensor, log_target: Tensor, forward: GaussianFit2D, reverse: GaussianFit2D,
                      axis_corr: Tensor, log_target_corr: Tensor, forward_diag: GaussianFit2D,
                      reverse_diag: GaussianFit2D) -> Figure:
    """(a) A bimodal target (filled), its forward-KL Gaussian fit (solid) and reverse-KL fits from several
    starts (dashed), with the paths of the reverse fits' means (start: dot); (b) a correlated Gaussian target
    and its diagonal-covariance fits in both directions.

    ``log_target`` is (G, G) on ``axis`` x ``axis`` (first index = first coordinate); likewise ``log_target_corr``.
    """
    fig, (ax_a, ax_b) = new_figure(1, 2, width=8.8, height=4.2)
    _target_panel(ax_a, to_numpy(axis), to_numpy(log_target))
    _gaussian_ellipse(ax_a, to_numpy(forward.mean[0]), to_numpy(forward.cov[0]), COLORS["q"], "-", r"forward: min $\mathrm{KL}(p\|q)$")
    for j in range(reverse.mean.shape[0]):
        colour = SEQUENCE[(2 + j) % len(SEQUENCE)]
        path = to_numpy(reverse.path[:, j])
        ax_a.plot(path[:, 0], path[:, 1], color=colour, lw=1.0, alpha=0.9)
        ax_a.plot(path[0, 0], path[0, 1], "o", color=colour, ms=4)
        _gaussian_ellipse(ax_a, to_numpy(reverse.mean[j]), to_numpy(reverse.cov[j]), colour, "--",
                          rf"reverse, start {j + 1}")
    ax_a.set_ylabel("$z_2$")
    ax_a.legend(loc="upper left", fontsize=7.5)
    _target_panel(ax_b, to_numpy(axis_corr), to_numpy(log_target_corr))
    _gaussian_ellipse(ax_b, to_numpy(forward_diag.mean[0]), to_numpy(forward_diag.cov[0]), COLORS["q"], "-",
                      r"diagonal, min $\mathrm{KL}(p\|q)$")
    _gaussian_ellipse(ax_b, to_numpy(reverse_diag.mean[0]), to_numpy(reverse_diag.cov[0]), COLORS["reconstruction"], "--",
                      r"diagonal, min $\mathrm{KL}(q\|p)$")
    ax_b.legend(loc="upper left", fontsize=7.5)
    for ax, a in ((ax_a, to_numpy(axis)), (ax_b, to_numpy(axis_corr))):
        ax.set_xlim(a[0], a[-1])
        ax.set_ylim(a[0], a[-1])
    panel_label(ax_a, "(a)")
    panel_label(ax_b, "(b)")
    return fig


@styled
def plot_rate_distortion(betas: Sequence[float], rate: Sequence[float], distortion: Sequence[float],
                         neg_log_evidence: Sequence[float], zoom_rate: float | None = None) -> Figure:
    """The β sweep on the rate–distortion plane: each model at (rate, distortion) (markers), its line of constant
    ELBO :math:`\\mathcal R + \\mathcal D = -\\mathrm{ELBO}` (thin, solid) and the line
    :math:`\\mathcal R + \\mathcal D = -\\log p(x)` of its exact average log-likelihood (dotted, same colour);
    (a) all models, (b) rates up to ``zoom_rate`` (default: 1.15 times the second-largest rate, so that the
    panel leaves out only the model of largest rate). Inputs: one entry per β."""
    n = len(betas)
    for name, values in (("rate", rate), ("distortion", distortion), ("neg_log_evidence", neg_log_evidence)):
        _check_len(name, values, n)
    r, dist, nll = (np.asarray(v, dtype=float) for v in (rate, distortion, neg_log_evidence))
    if zoom_rate is None:
        zoom_rate = max(1.15 * (np.sort(r)[-2] if n > 1 else r.max()), 1.0)
    elif zoom_rate <= 0:
        raise ValueError(f"zoom_rate must be > 0, got {zoom_rate}")
    fig, (ax_a, ax_b) = new_figure(1, 2, width=8.8, height=4.0)
    for ax, right in ((ax_a, max(r.max() * 1.08, 1.0)), (ax_b, zoom_rate)):
        grid = np.linspace(-1.0, right, 400)
        for k, beta in enumerate(betas):
            colour = SEQUENCE[k % len(SEQUENCE)]
            ax.plot(grid, (r[k] + dist[k]) - grid, color=colour, lw=0.9, alpha=0.8)
            ax.plot(grid, nll[k] - grid, color=colour, lw=1.4, ls=":")
            ax.plot(r[k], dist[k], "o", color=colour, ms=8 - 1.5 * (k % 2), mec="white", mew=0.8,
                    label=f"β = {beta:g}", zorder=3)
        ax.set_xlim(grid[0], grid[-1])
        ax.set_ylim(dist.min() - 3, dist.max() + 3)
        ax.set_xlabel(r"rate $\mathcal{R}$ (nats)")
    ax_a.set_ylabel(r"distortion $\mathcal{D}$ (nats)")
    ax_b.plot([], [], color=COLORS["muted"], lw=0.9, label=r"$\mathcal{R} + \mathcal{D} = -\mathrm{ELBO}$")
    ax_b.plot([], [], color=COLORS["muted"], lw=1.4, ls=":", label=r"$\mathcal{R} + \mathcal{D} = -\log p(x)$, exact")
    ax_b.legend(loc="upper right", fontsize=8)
    panel_label(ax_a, "(a)")
    panel_label(ax_b, "(b)")
    return fig


@styled
def plot_prior_matching(n_steps: Sequence[int], noise_ends: Sequence[float], kl: Tensor) -> Figure:
    """The mean prior-matching term :math:`\\mathrm{KL}(q(x_T \\mid x_0)\\,\\|\\,\\mathcal N(0, I))` against the
    chain length :math:`T` (log–log), one line per last noise variance :math:`1 - \\alpha_T` of a linear
    schedule (Ho et al.'s :math:`\\beta_T`). ``kl`` is (len(noise_ends), len(n_steps))."""
    if kl.shape != (len(noise_ends), len(n_steps)):
        raise ValueError(f"kl must have shape ({len(noise_ends)}, {len(n_steps)}), got {tuple(kl.shape)}")
    t = np.asarray(n_steps, dtype=float)
    fig, ax = new_figure(1, 1, width=6.4, height=3.8)
    for k, noise_end in enumerate(noise_ends):
        ax.loglog(t, np.maximum(to_numpy(kl[k]), np.finfo(float).tiny), "-o", ms=3.5, color=SEQUENCE[k % len(SEQUENCE)],
                  label=rf"$1 - \alpha_T = {noise_end:g}$")
    ax.set_xlabel("number of steps $T$")
    ax.set_ylabel("prior-matching term (nats)")
    ax.legend(loc="lower left", fontsize=8)
    return fig
