"""Figures of the chapter "Jensen's inequality"."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from matplotlib.figure import Figure
from torch import Tensor

from .style import COLORS, SEQUENCE, new_figure, panel_label, styled


@styled
def plot_jensen_geometry(x1: float, x2: float, lam: float, lams: Tensor, gap_curves: Mapping[float, Tensor]) -> Figure:
    """Jensen's inequality for :math:`\\log` and the two-point law :math:`P(X=x_1)=\\lambda`, :math:`P(X=x_2)=1-\\lambda`.

    (a) the concave :math:`\\log`, the chord between :math:`(x_1, \\log x_1)` and
    :math:`(x_2, \\log x_2)`, the tangent at :math:`\\mathbb E[X]` (the supporting line
    of the proof), and the gap between :math:`\\log\\mathbb E[X]` (on the curve) and
    :math:`\\mathbb E[\\log X]` (on the chord); (b) the gap as a function of :math:`\\lambda`,
    one curve per second point.

    Args:
        x1, x2, lam: the two points (positive) and the weight of ``x1`` shown in (a).
        lams: (L,) weights in [0, 1] for (b).
        gap_curves: maps a second point :math:`x_2'` to the (L,) gaps for :math:`(x_1, x_2')` over ``lams``.
    """
    if not (0 < x1 and 0 < x2 and 0 <= lam <= 1):
        raise ValueError(f"need x1, x2 > 0 and lam in [0, 1], got x1={x1}, x2={x2}, lam={lam}")
    mean = lam * x1 + (1 - lam) * x2
    log_mean, mean_log = np.log(mean), lam * np.log(x1) + (1 - lam) * np.log(x2)
    lo, hi = 0.4 * min(x1, x2), 1.4 * max(x1, x2)

    fig, (ax_a, ax_b) = new_figure(1, 2, height=3.3)
    x = np.linspace(lo, hi, 400)
    ax_a.plot(x, np.log(x), color=COLORS["p"], label=r"$\log x$")
    ax_a.plot(x, log_mean + (x - mean) / mean, color=COLORS["muted"], ls=":", lw=1.4,
              label=r"tangent at $\mathbb{E}[X]$")
    ax_a.plot([x1, x2], [np.log(x1), np.log(x2)], color=COLORS["q"], ls="--", lw=1.4, marker="o", ms=5,
              label="chord")
    ax_a.plot([mean], [log_mean], "o", color=COLORS["p"], ms=7, label=r"$\log \mathbb{E}[X]$")
    ax_a.plot([mean], [mean_log], "s", color=COLORS["q"], ms=6, label=r"$\mathbb{E}[\log X]$")
    ax_a.annotate("", xy=(mean, log_mean), xytext=(mean, mean_log),
                  arrowprops={"arrowstyle": "<->", "color": COLORS["kl"], "lw": 1.6, "shrinkA": 0, "shrinkB": 0})
    ax_a.text(mean + 0.06 * (hi - lo), 0.5 * (log_mean + mean_log), f"gap = {log_mean - mean_log:.3f}",
              color=COLORS["kl"], va="center")
    ax_a.axvline(mean, color=COLORS["muted"], lw=0.6)
    ax_a.set_xlim(lo, hi)
    ax_a.set_ylim(np.log(lo), np.log(hi) + 0.15)
    ax_a.set_xlabel("$x$")
    ax_a.set_ylabel("$y$")
    ax_a.legend(loc="lower right", fontsize=7.5)

    lam_axis = lams.detach().cpu().double().numpy()
    for i, (second, gaps) in enumerate(sorted(gap_curves.items())):
        ax_b.plot(lam_axis, gaps.detach().cpu().double().numpy(), color=SEQUENCE[(2 * i) % len(SEQUENCE)],
                  label=rf"$x_2 = {second:g}$")
    if x2 in gap_curves:
        ax_b.plot([lam], [log_mean - mean_log], "o", color=COLORS["kl"], ms=6, zorder=3)
    ax_b.set_xlabel(r"weight $\lambda$ of $x_1 = " + f"{x1:g}$")
    ax_b.set_ylabel(r"$\log \mathbb{E}[X] - \mathbb{E}[\log X]$")
    ax_b.set_ylim(bottom=0)
    ax_b.legend(loc="upper right")

    panel_label(ax_a, "(a)")
    panel_label(ax_b, "(b)")
    return fig
