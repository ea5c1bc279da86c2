"""Figures of the chapter "Approximation gap and amortisation gap"."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from torch import Tensor

from .exact import ellipse_levels, fill_posterior
from .style import COLORS, POINT_COLORS, new_figure, panel_label, styled, to_numpy


def _check_shape(name: str, t: Tensor, shape: tuple[int, ...]) -> None:
    if tuple(t.shape) != shape:
        raise ValueError(f"{name} must have shape {shape}, got {tuple(t.shape)}")


@styled
def plot_gap_split(position: Tensor, approximation_gap: Tensor, amortization_gap: Tensor, mean_shift: Tensor) -> Figure:
    """(a) The approximation gap (bottom) and the amortisation gap (stacked on top) of every data point against
    its position along the spiral; their sum is :math:`\\log p(x) - \\mathrm{ELBO}(x; q_\\phi)`. (b) How far the
    encoder's mean is from the best Gaussian's, in standard deviations of :math:`q^*` (the larger coordinate).
    All inputs are (N,), in the order of ``position`` (the spiral's curve parameter :math:`\\tau`)."""
    n = position.shape[0]
    for name, t in (("approximation_gap", approximation_gap), ("amortization_gap", amortization_gap),
                    ("mean_shift", mean_shift)):
        _check_shape(name, t, (n,))
    tau, approx, amort = to_numpy(position), to_numpy(approximation_gap), to_numpy(amortization_gap)
    fig, (ax_a, ax_b) = new_figure(2, 1, width=6.4, height=5.4, sharex=True)
    ax_a.fill_between(tau, 0, approx, color=COLORS["p"], alpha=0.45, lw=0,
                      label=r"approximation gap $\log p(x) - \mathrm{ELBO}(q^*)$")
    ax_a.fill_between(tau, approx, approx + amort, color=COLORS["q"], alpha=0.55, lw=0,
                      label=r"amortisation gap $\mathrm{ELBO}(q^*) - \mathrm{ELBO}(q_\phi)$")
    ax_a.plot(tau, approx + amort, color=COLORS["exact"], lw=0.8)
    ax_a.set_ylim(bottom=0)
    ax_a.set_ylabel("nats")
    ax_a.legend(loc="upper left", fontsize=8)
    ax_b.plot(tau, to_numpy(mean_shift), ".", ms=2.5, color=COLORS["q"])
    ax_b.set_ylim(bottom=0)
    ax_b.set_xlabel(r"position along the spiral, $\tau$")
    ax_b.set_ylabel(r"$\max_j |\mu_{\phi,j} - m^*_j| / s^*_j$")
    panel_label(ax_a, "(a)")
    panel_label(ax_b, "(b)")
    return fig


@styled
def plot_best_gaussians(axes: Sequence[tuple[Tensor, Tensor]], log_posteriors: Sequence[Tensor], q_mean: Tensor,
                        q_std: Tensor, best_mean: Tensor, best_std: Tensor, labels: Sequence[str]) -> Figure:
    """One panel per point: the exact posterior (filled), the encoder's :math:`q_\\phi(z \\mid x)` (dashed) and
    the best diagonal Gaussian :math:`q^*(z \\mid x)` (solid).

    ``axes[i] = (z1, z2)`` are the (G1,) and (G2,) coordinates of point i's zoom grid and
    ``log_posteriors[i]`` its (G1, G2) :math:`\\log p(z \\mid x)` (e.g. from
    :func:`labcode.exact.posterior_on_grid`; the two axes of a panel may have different scales); the
    four Gaussian parameters are (n, 2). Every
    density is drawn where it falls to :math:`e^{-1/2}` and :math:`e^{-2}` of its own maximum (the
    posterior's filled region also shows :math:`e^{-4.5}`).
    """
    n = len(labels)
    if len(axes) != n or len(log_posteriors) != n:
        raise ValueError(f"axes and log_posteriors must have {n} entries, got {len(axes)} and {len(log_posteriors)}")
    for name, t in (("q_mean", q_mean), ("q_std", q_std), ("best_mean", best_mean), ("best_std", best_std)):
        _check_shape(name, t, (n, 2))
    fig, panels = new_figure(1, n, width=3.2 * n + 0.8, height=3.6)
    panels = np.atleast_1d(panels)
    for i, ax in enumerate(panels):
        z1, z2, *_ = fill_posterior(ax, axes, log_posteriors, i)
        ellipse_levels(ax, to_numpy(q_mean[i]), to_numpy(q_std[i]), COLORS["data"], "--")
        ellipse_levels(ax, to_numpy(best_mean[i]), to_numpy(best_std[i]), COLORS["q"], "-")
        ax.set_xlim(z1[0], z1[-1])
        ax.set_ylim(z2[0], z2[-1])
        ax.grid(False)
        ax.set_xlabel("$z_1$")
        ax.set_title(labels[i], fontsize=9)
        panel_label(ax, f"({chr(ord('a') + i)})")
    panels[0].set_ylabel("$z_2$")
    panels[0].fill_between([], [], color=to_rgba(POINT_COLORS[0], 0.3), label=r"exact $p(z \mid x)$")
    panels[0].plot([], [], color=COLORS["data"], lw=1.4, ls="--", label=r"encoder $q_\phi(z \mid x)$")
    panels[0].plot([], [], color=COLORS["q"], lw=1.4, label=r"best Gaussian $q^*(z \mid x)$")
    fig.legend(loc="lower center", ncol=3, bbox_to_anchor=(0.5, -0.09))
    return fig


@styled
def plot_gap_sweeps(sweeps: Sequence[tuple[str, Sequence[str], Sequence[float], Sequence[float]]]) -> Figure:
    """One panel per sweep: for each setting the mean approximation gap (bottom) and the mean amortisation gap
    (stacked on top), as bars.

    ``sweeps[k] = (title, setting labels, approximation gaps, amortisation gaps)``, the last three with one
    entry per setting.
    """
    if len(sweeps) == 0:
        raise ValueError("sweeps must name at least one sweep")
    fig, panels = new_figure(1, len(sweeps), width=6.4, height=3.4, sharey=True)
    panels = np.atleast_1d(panels)
    for k, (ax, (title, labels, approx, amort)) in enumerate(zip(panels, sweeps, strict=True)):
        if not (len(labels) == len(approx) == len(amort)):
            raise ValueError(f"sweep {title!r}: labels, approximation and amortisation gaps must have the same length")
        slots = np.arange(len(labels))
        a, b = np.asarray(approx, dtype=float), np.asarray(amort, dtype=float)
        ax.bar(slots, a, color=COLORS["p"], alpha=0.6, label="approximation gap")
        ax.bar(slots, b, bottom=a, color=COLORS["q"], alpha=0.7, label="amortisation gap")
        ax.set_xticks(slots, labels)
        ax.set_xlabel(title)
        ax.grid(axis="x", visible=False)
        panel_label(ax, f"({chr(ord('a') + k)})")
    panels[0].set_ylabel("mean over the points (nats)")
    panels[0].legend(loc="upper left", fontsize=8)
    return fig
