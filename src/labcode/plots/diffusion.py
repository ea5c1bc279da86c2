"""Figures of the chapter "Bridge to diffusion"."""

from __future__ import annotations

import math

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from torch import Tensor

from .style import COLORS, FONT_SIZE, MARKER_SIZE, blank, new_figure, styled

_NODE_AREA = 1000     # scatter marker area (points^2): a circle of diameter ~32 pt
_NODE_SHRINK = 17     # arrow ends stop this many points from a node's centre
_GAP_SHRINK = 8       # ... and from an ellipsis


def _node(ax: Axes, x: float, y: float, label: str, color: str) -> None:
    """A fixed-size circle (a scatter marker, round whatever the aspect) with a label, or an ellipsis."""
    if label == "⋯":
        ax.text(x, y, "$\\cdots$", ha="center", va="center", fontsize=FONT_SIZE + 2)
        return
    ax.scatter([x], [y], s=_NODE_AREA, facecolor="white", edgecolor=color, linewidths=1.2, zorder=3,
               transform=ax.transAxes, clip_on=False)
    ax.text(x, y, label, ha="center", va="center", fontsize=FONT_SIZE + 1, zorder=4, transform=ax.transAxes)


def _arc(ax: Axes, start: tuple[float, float], end: tuple[float, float], *, color: str, learned: bool,
         rad: float, shrink_a: float = _NODE_SHRINK, shrink_b: float = _NODE_SHRINK) -> None:
    ax.annotate("", xy=end, xytext=start, xycoords="axes fraction", textcoords="axes fraction",
                arrowprops={"arrowstyle": "-|>", "color": color, "lw": 1.4, "linestyle": "-" if learned else "--",
                            "connectionstyle": f"arc3,rad={rad}", "shrinkA": shrink_a, "shrinkB": shrink_b,
                            "mutation_scale": 11})


@styled
def plot_vae_vs_diffusion() -> Figure:
    """Diagram: the VAE's one latent step and diffusion's Markov chain of latents.

    (a) VAE: :math:`x \\to z` through the learned encoder :math:`q_\\phi(z\\mid x)`,
    :math:`z \\to x` through the learned decoder :math:`p_\\theta(x\\mid z)`.
    (b) Diffusion: :math:`x_0 \\to x_1 \\to \\dots \\to x_T` through fixed Gaussian
    kernels :math:`q(x_t\\mid x_{t-1})` and back through learned kernels
    :math:`p_\\theta(x_{t-1}\\mid x_t)`. Colour: inference direction (q) or
    generative direction (p); line style: learned (solid) or fixed (dashed).
    """
    fig, (ax_vae, ax_diff) = new_figure(2, 1, width=6.6, height=4.6)
    for ax in (ax_vae, ax_diff):
        blank(ax)
    y = 0.5
    q_col, p_col = COLORS["q"], COLORS["p"]

    # (a) VAE
    ax_vae.set_title("(a) VAE: one latent variable", loc="left")
    left, right = (0.3, y), (0.7, y)
    _node(ax_vae, *left, "$x$", COLORS["data"])
    _node(ax_vae, *right, "$z$", COLORS["data"])
    _arc(ax_vae, left, right, color=q_col, learned=True, rad=-0.45)
    _arc(ax_vae, right, left, color=p_col, learned=True, rad=-0.45)
    ax_vae.text(0.5, 0.93, "encoder $q_\\phi(z \\mid x)$", ha="center", va="center", color=q_col)
    ax_vae.text(0.5, 0.07, "decoder $p_\\theta(x \\mid z)$", ha="center", va="center", color=p_col)
    ax_vae.text(0.77, y, "$p(z) = \\mathcal{N}(0, I)$", ha="left", va="center", color=COLORS["muted"])
    ax_vae.text(0.23, y, "data", ha="right", va="center", color=COLORS["muted"])

    # (b) diffusion
    ax_diff.set_title("(b) diffusion: a Markov chain of latent variables", loc="left")
    labels = ["$x_0$", "$x_1$", "⋯", "$x_{t-1}$", "$x_t$", "⋯", "$x_T$"]
    xs = np.linspace(0.06, 0.94, len(labels))
    for x, label in zip(xs, labels, strict=True):
        _node(ax_diff, x, y, label, COLORS["data"])
    for i in range(len(labels) - 1):
        a, b = (xs[i], y), (xs[i + 1], y)
        shrink_a = _GAP_SHRINK if labels[i] == "⋯" else _NODE_SHRINK
        shrink_b = _GAP_SHRINK if labels[i + 1] == "⋯" else _NODE_SHRINK
        _arc(ax_diff, a, b, color=q_col, learned=False, rad=-0.6, shrink_a=shrink_a, shrink_b=shrink_b)
        _arc(ax_diff, b, a, color=p_col, learned=True, rad=-0.6, shrink_a=shrink_b, shrink_b=shrink_a)
    mid = 0.5 * (xs[3] + xs[4])
    ax_diff.text(mid, 0.8, "$q(x_t \\mid x_{t-1})$", ha="center", va="center", color=q_col)
    ax_diff.text(mid, 0.2, "$p_\\theta(x_{t-1} \\mid x_t)$", ha="center", va="center", color=p_col)
    ax_diff.text(xs[0], 0.2, "data", ha="center", va="center", color=COLORS["muted"])
    ax_diff.text(xs[-1], 0.2, "$\\approx \\mathcal{N}(0, I)$", ha="center", va="center", color=COLORS["muted"])

    handles = [
        Line2D([], [], color=q_col, lw=1.4, label="inference direction ($q$)"),
        Line2D([], [], color=p_col, lw=1.4, label="generative direction ($p$)"),
        Line2D([], [], color=COLORS["data"], lw=1.4, label="learned"),
        Line2D([], [], color=COLORS["data"], lw=1.4, linestyle="--", label="fixed"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncol=4, handlelength=2.2, columnspacing=1.2)
    return fig


def _latex_number(value: float) -> str:
    """Two significant digits; powers of ten written out below 0.01 (e.g. ``4.0\\times 10^{-5}``)."""
    if value == 0 or value >= 0.01:
        return f"{value:.2g}"
    exponent = math.floor(math.log10(value))
    return f"{value / 10**exponent:.1f}\\times 10^{{{exponent}}}"


@styled
def plot_forward_process(samples: dict[int, Tensor], alpha_bar: Tensor) -> Figure:
    """The forward process on the spiral: one scatter panel per time step.

    Args:
        samples: ``{t: x_t}``, each (N, 2), rows in the order of the spiral
            (coloured dark to yellow along it).
        alpha_bar: (T + 1,) schedule, for the panel titles.
    """
    steps = sorted(samples)
    ncols = 3
    nrows = math.ceil(len(steps) / ncols)
    fig, axes = new_figure(nrows, ncols, width=6.6, height=2.35 * nrows + 0.1, sharex=True, sharey=True)
    axes = np.atleast_1d(axes).ravel()
    circle = np.linspace(0, 2 * np.pi, 200)
    for ax, t in zip(axes, steps, strict=False):
        x = samples[t].detach().cpu()
        ax.scatter(x[:, 0], x[:, 1], c=range(len(x)), s=MARKER_SIZE / 2, cmap="viridis", alpha=0.8,
                   linewidths=0)
        ax.plot(2 * np.cos(circle), 2 * np.sin(circle), color=COLORS["q"], lw=1.0, ls="--", zorder=3)
        ax.set_title(f"$t = {t}$, $\\bar\\alpha_t = {_latex_number(alpha_bar[t].item())}$")
        ax.set_aspect("equal")
        ax.set_xlim(-11, 11)
        ax.set_ylim(-11, 11)
    for ax in axes[len(steps):]:
        ax.set_visible(False)
    for ax in axes[(nrows - 1) * ncols:]:
        ax.set_xlabel("$x_1$")
    for ax in axes[::ncols]:
        ax.set_ylabel("$x_2$")
    return fig


@styled
def plot_schedule(alpha_bar: Tensor, prior_kl: Tensor) -> Figure:
    """(a) signal scale :math:`\\sqrt{\\bar\\alpha_t}` and noise scale :math:`\\sqrt{1-\\bar\\alpha_t}` against t;
    (b) the data-averaged :math:`\\mathrm{KL}(q(x_t\\mid x_0)\\,\\|\\,\\mathcal N(0,I))` against t (log scale).

    Args:
        alpha_bar: (T + 1,) schedule.
        prior_kl: (T,) mean KL for t = 1..T.
    """
    alpha_bar = alpha_bar.detach().cpu().double()
    prior_kl = prior_kl.detach().cpu().double()
    steps = np.arange(len(alpha_bar))
    fig, (ax_a, ax_b) = new_figure(1, 2, width=6.6, height=2.8)
    ax_a.plot(steps, alpha_bar.sqrt(), color=COLORS["p"], label="signal $\\sqrt{\\bar\\alpha_t}$")
    ax_a.plot(steps, (1 - alpha_bar).sqrt(), color=COLORS["q"], label="noise $\\sqrt{1-\\bar\\alpha_t}$")
    ax_a.set_xlabel("step $t$")
    ax_a.set_ylabel("scale")
    ax_a.set_title("(a) schedule", loc="left")
    ax_a.legend(loc="center right")
    ax_b.semilogy(steps[1:], prior_kl, color=COLORS["kl"])
    ax_b.plot([steps[-1]], [prior_kl[-1].item()], "o", color=COLORS["kl"], ms=5)
    ax_b.set_xlabel("step $t$")
    ax_b.set_ylabel("KL to $\\mathcal{N}(0, I)$ (nats)")
    ax_b.set_title("(b) distance from the prior", loc="left")
    return fig
