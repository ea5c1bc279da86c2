"""Figures of the chapter "KL divergence"."""


from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor

from ..fits import GaussianFit
from ..kl import MonteCarloCurve
from .style import COLORS, SEQUENCE, new_figure, panel_label, styled, to_numpy


def _mc_panel(ax: Axes, curve: MonteCarloCurve, exact: float, colour: str, label: str) -> None:
    n, est, se = to_numpy(curve.n), to_numpy(curve.estimate), to_numpy(curve.stderr)
    ax.fill_between(n, est - 2 * se, est + 2 * se, color=colour, alpha=0.25, lw=0, label="± 2 standard errors")
    ax.plot(n, est, color=colour, label="Monte Carlo estimate")
    ax.axhline(exact, color=COLORS["exact"], ls="--", lw=1.2, label="closed form")
    ax.set_xscale("log")
    ax.set_xlabel("number of samples $N$")
    ax.set_ylabel(label)


@styled
def plot_mc_convergence(curves: Sequence[MonteCarloCurve], exact: Sequence[float], labels: Sequence[str]) -> Figure:
    """One panel per Monte Carlo curve: the estimate with a ±2 standard-error band against N (log axis),
    and the closed form as a dashed line. ``labels`` are the y-axis labels (e.g. ``r"$\\mathrm{KL}(p\\|q)$"``)."""
    if not (len(curves) == len(exact) == len(labels)) or not curves:
        raise ValueError("curves, exact and labels must have the same non-zero length")
    fig, axes = new_figure(1, len(curves), height=2.9)
    axes = np.atleast_1d(axes)
    for i, (ax, curve, value, label) in enumerate(zip(axes, curves, exact, labels, strict=True)):
        _mc_panel(ax, curve, value, SEQUENCE[3 - 3 * (i % 2)], label)
        panel_label(ax, f"({'abcd'[i]})")
    axes[0].legend(loc="upper right")
    return fig


@styled
def plot_kl_asymmetry(grid: Tensor, log_p: Tensor, log_q: Tensor, ratio_under_p: Tensor, ratio_under_q: Tensor,
                      kl_pq: float, kl_qp: float, p_label: str = "$p$", q_label: str = "$q$") -> Figure:
    """Four panels on the two directions of KL between fixed densities ``p`` and ``q``.

    (a) the densities; (b) the integrand :math:`p\\log(p/q)` of :math:`\\mathrm{KL}(p\\|q)`,
    its signed area shaded; (c) the integrand :math:`q\\log(q/p)` of :math:`\\mathrm{KL}(q\\|p)`;
    (d) histograms of the Monte Carlo summands :math:`\\log(p/q)(x)`, :math:`x \\sim p`, and
    :math:`\\log(q/p)(x)`, :math:`x \\sim q`, with their means (the two estimates).

    Args:
        grid: (M,) points; log_p, log_q: (M,) log-densities on it.
        ratio_under_p: (N,) :math:`\\log p(x_i) - \\log q(x_i)`, :math:`x_i \\sim p`.
        ratio_under_q: (N,) :math:`\\log q(x_i) - \\log p(x_i)`, :math:`x_i \\sim q`.
        kl_pq, kl_qp: the exact KLs, written into panels (b) and (c).
    """
    x, lp, lq = to_numpy(grid), to_numpy(log_p), to_numpy(log_q)
    p, q = np.exp(lp), np.exp(lq)
    fig, axes = new_figure(2, 2, height=5.4)
    (ax_d, ax_pq), (ax_qp, ax_mc) = axes

    ax_d.plot(x, p, color=COLORS["p"], label=p_label)
    ax_d.plot(x, q, color=COLORS["q"], label=q_label)
    ax_d.set_xlabel("$x$")
    ax_d.set_ylabel("density")
    ax_d.legend(loc="upper right")

    for ax, w, log_ratio, colour, name, value in (
        (ax_pq, p, lp - lq, COLORS["p"], r"$p \log(p/q)$", kl_pq),
        (ax_qp, q, lq - lp, COLORS["q"], r"$q \log(q/p)$", kl_qp),
    ):
        integrand = w * log_ratio
        ax.fill_between(x, 0, integrand, where=integrand >= 0, color=colour, alpha=0.3, lw=0)
        ax.fill_between(x, 0, integrand, where=integrand < 0, color=COLORS["muted"], alpha=0.5, lw=0)
        ax.plot(x, integrand, color=colour)
        ax.axhline(0, color=COLORS["data"], lw=0.8)
        ax.set_xlabel("$x$")
        ax.set_ylabel(name)
        ax.text(0.03, 0.93, f"area = {value:.3f}", transform=ax.transAxes, ha="left", va="top")

    r_p, r_q = to_numpy(ratio_under_p), to_numpy(ratio_under_q)
    hi = float(np.quantile(np.concatenate([r_p, r_q]), 0.995))
    lo = float(min(r_p.min(), r_q.min()))
    bins = np.linspace(lo, hi, 80)
    for r, colour, label in ((r_p, COLORS["p"], r"$\log(p/q)$, $x \sim p$"),
                             (r_q, COLORS["q"], r"$\log(q/p)$, $x \sim q$")):
        ax_mc.hist(r, bins=bins, density=True, color=colour, alpha=0.35, histtype="stepfilled", label=label)
        ax_mc.hist(r, bins=bins, density=True, color=colour, histtype="step", lw=1.0)
    ax_mc.axvline(r_p.mean(), color=COLORS["p"], ls="--", lw=1.2)
    ax_mc.axvline(r_q.mean(), color=COLORS["q"], ls="--", lw=1.2)
    ax_mc.set_yscale("log")
    ax_mc.set_xlabel("log-ratio at a sample")
    ax_mc.set_ylabel("density (log scale)")
    ax_mc.legend(loc="upper right")

    for ax, letter in zip(axes.flat, "abcd", strict=True):
        panel_label(ax, f"({letter})")
    ax_pq.sharex(ax_d)
    ax_qp.sharex(ax_d)
    return fig


@styled
def plot_mode_fits(grid: Tensor, log_p: Tensor, forward: GaussianFit, reverse: GaussianFit,
                   mus: Tensor, log_sigmas: Tensor, forward_landscape: Tensor, reverse_landscape: Tensor) -> Figure:
    """Forward (mass-covering) versus reverse (mode-seeking) Gaussian fits to a target ``p``.

    (a) the target and the fitted Gaussians; (b) :math:`\\mathrm{KL}(p\\|q)` over
    :math:`(\\mu, \\sigma)` with the optimiser's path; (c) the same for
    :math:`\\mathrm{KL}(q\\|p)`, one path per start; (d) what each fit would
    pay in the *other* direction: the integrand :math:`q\\log(q/p)` of the
    forward fit and :math:`p\\log(p/q)` of the first reverse fit.

    Args:
        grid: (M,) points; log_p: (M,) target log-density.
        forward, reverse: fits from :func:`labcode.fits.fit_gaussian_kl`.
        mus: (A,), log_sigmas: (B,) the landscape axes; forward_landscape, reverse_landscape: (B, A).
    """
    x, lp = to_numpy(grid), to_numpy(log_p)
    fig, axes = new_figure(2, 2, height=5.6)
    (ax_d, ax_f), (ax_r, ax_x) = axes
    fwd_colour = COLORS["q"]
    rev_styles = [(SEQUENCE[2], "--"), (SEQUENCE[4], "--"), (SEQUENCE[5], "-.")]
    if len(reverse.mu) > len(rev_styles):
        raise ValueError(f"at most {len(rev_styles)} reverse fits can be drawn, got {len(reverse.mu)}")
    x_lim = (max(x[0], -6.0), min(x[-1], 6.0))

    log_qf, log_qr = to_numpy(forward.log_prob(grid))[0], to_numpy(reverse.log_prob(grid))
    ax_d.fill_between(x, 0, np.exp(lp), color=COLORS["p"], alpha=0.25, lw=0, label="target $p$")
    ax_d.plot(x, np.exp(log_qf), color=fwd_colour, label="forward fit")
    for j in range(len(reverse.mu)):
        colour, ls = rev_styles[j]
        ax_d.plot(x, np.exp(log_qr[j]), color=colour, ls=ls, label=f"reverse fit {j + 1}")
    ax_d.set_xlim(*x_lim)
    ax_d.set_ylim(0, 1.6 * max(np.exp(lp).max(), np.exp(log_qr).max()))
    ax_d.set_xlabel("$x$")
    ax_d.set_ylabel("density")
    ax_d.legend(loc="upper center", fontsize=7, ncols=3, columnspacing=0.8, handlelength=1.5, borderaxespad=0.2)

    m_axis, s_axis = to_numpy(mus), np.exp(to_numpy(log_sigmas))
    for ax, landscape, fit, styles in ((ax_f, forward_landscape, forward, [(fwd_colour, "-")]),
                                       (ax_r, reverse_landscape, reverse, rev_styles)):
        z = to_numpy(landscape)
        levels = np.quantile(z, np.linspace(0, 0.9, 14)) if z.min() < z.max() else 10
        ax.contourf(m_axis, s_axis, z, levels=levels, cmap="Greys_r", alpha=0.75, extend="max")
        ax.contour(m_axis, s_axis, z, levels=levels, colors="white", linewidths=0.4)
        path = to_numpy(fit.path)
        for j in range(path.shape[1]):
            colour, ls = styles[j]
            ax.plot(path[:, j, 0], np.exp(path[:, j, 1]), color=colour, ls=ls, lw=1.4)
            ax.plot(path[0, j, 0], np.exp(path[0, j, 1]), "o", color=colour, ms=5)
            ax.plot(path[-1, j, 0], np.exp(path[-1, j, 1]), "*", color=colour, ms=11, mec="white", mew=0.6)
        ax.set_yscale("log")
        ax.set_xlim(m_axis[0], m_axis[-1])
        ax.set_ylim(s_axis[0], s_axis[-1])
        ticks = [t for t in (0.25, 0.5, 1.0, 2.0, 4.0) if s_axis[0] <= t <= s_axis[-1]]
        ax.set_yticks(ticks, [f"{t:g}" for t in ticks])
        ax.set_yticks([], minor=True)
        ax.set_xlabel(r"$\mu$")
        ax.set_ylabel(r"$\sigma$")
        ax.grid(False)
    ax_f.set_title(r"$\mathrm{KL}(p\|q)$ over $(\mu, \sigma)$")
    ax_r.set_title(r"$\mathrm{KL}(q\|p)$ over $(\mu, \sigma)$")

    ax_x.plot(x, np.exp(log_qf) * (log_qf - lp), color=fwd_colour, label=r"$q\log(q/p)$, forward fit")
    ax_x.plot(x, np.exp(lp) * (lp - log_qr[0]), color=rev_styles[0][0], ls="--", label=r"$p\log(p/q)$, reverse fit 1")
    ax_x.axhline(0, color=COLORS["data"], lw=0.8)
    ax_x.set_xlabel("$x$")
    ax_x.set_ylabel("integrand")
    ax_x.legend(loc="upper left", fontsize=7.5)
    ax_x.sharex(ax_d)

    for ax, letter in zip(axes.flat, "abcd", strict=True):
        panel_label(ax, f"({letter})")
    return fig
