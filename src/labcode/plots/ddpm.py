"""Figures of the chapter "Training a diffusion model".

Every function takes computed results (training losses, ε-errors, the bound's terms, samples and
two-sample statistics) and returns a ``matplotlib.figure.Figure``; none trains, samples or changes
global matplotlib state. The reverse process is drawn with :func:`labcode.plots.diffusion.plot_forward_process`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor

from .style import COLORS, MARKER_SIZE, SEQUENCE, new_figure, styled, to_numpy
from .vae import running_mean


def _check_series(name: str, series: Mapping[str, Tensor], length: int) -> None:
    if not series:
        raise ValueError(f"{name} must not be empty")
    for label, values in series.items():
        if len(values) != length:
            raise ValueError(f"{name}[{label!r}] must have {length} entries, got {len(values)}")


@styled
def plot_training(losses: Sequence[float], step_errors: Tensor, data_dim: int, *, window: int = 100) -> Figure:
    """(a) The training loss :math:`L_{\\text{simple}}` per optimiser step (thin) and its running mean (thick);
    (b) the trained network's mean squared ε-error at each diffusion step :math:`t`.

    Args:
        losses: per-step batch means of the one-sample loss.
        step_errors: (T,) mean of :math:`\\|\\varepsilon - \\varepsilon_\\theta(x_t, t)\\|^2` over points and draws.
        data_dim: :math:`D`, the error of the predictor :math:`\\varepsilon_\\theta = 0` (dashed line).
        window: running-mean window in optimiser steps.
    """
    if isinstance(window, bool) or not isinstance(window, int) or window <= 0:
        raise ValueError(f"window must be a positive int, got {window!r}")
    values = to_numpy(losses)
    errors = to_numpy(step_errors)
    fig, (ax_loss, ax_err) = new_figure(1, 2, width=6.6, height=2.8)
    steps = np.arange(1, len(values) + 1)
    ax_loss.plot(steps, values, color=COLORS["loss"], lw=0.6, alpha=0.35)
    ax_loss.plot(steps, running_mean(values, window), color=COLORS["loss"])
    ax_loss.set_xlabel("optimiser step")
    ax_loss.set_ylabel("$L_{\\mathrm{simple}}$")
    ax_loss.set_title("(a) training", loc="left")
    t = np.arange(1, len(errors) + 1)
    ax_err.plot(t, errors, color=COLORS["p"], label="trained $\\varepsilon_\\theta$")
    ax_err.axhline(data_dim, color=COLORS["muted"], ls="--", lw=1.0, label="$\\varepsilon_\\theta = 0$")
    ax_err.set_xlabel("diffusion step $t$")
    ax_err.set_ylabel("mean $\\|\\varepsilon - \\varepsilon_\\theta\\|^2$")
    ax_err.set_ylim(0, data_dim * 1.15)
    ax_err.set_title("(b) error per step", loc="left")
    ax_err.legend(loc="center right")
    return fig


@styled
def plot_bound_terms(betas: Tensor, variances: Mapping[str, Tensor], weights: Mapping[str, Tensor],
                     terms: Mapping[str, Tensor]) -> Figure:
    """The bound step by step, for several choices of the reverse variances.

    (a) the weights :math:`\\lambda_t` of the ε-errors (log scale); (b) :math:`\\sigma_t^2 / (1 - \\alpha_t)`;
    (c) the data-averaged terms :math:`L_{t-1}` for :math:`t \\ge 2` (log scale; the decoder term
    :math:`L_0` at :math:`t = 1` is a log-density, negative here, and not drawn).

    Args:
        betas: (T,) noise variances :math:`1 - \\alpha_t`.
        variances, weights, terms: ``{label: (T,) tensor}`` with the same labels, in drawing order.
    """
    n_steps = len(betas)
    for name, series in (("variances", variances), ("weights", weights), ("terms", terms)):
        _check_series(name, series, n_steps)
    if not (list(variances) == list(weights) == list(terms)):
        raise ValueError("variances, weights and terms must have the same labels in the same order")
    b = to_numpy(betas)
    t = np.arange(1, n_steps + 1)
    fig, axes = new_figure(1, 3, width=6.8, height=2.6)
    ax_w, ax_v, ax_l = axes
    for i, label in enumerate(variances):
        colour = SEQUENCE[[3, 0, 2, 4][i % 4]]
        ax_w.semilogy(t, to_numpy(weights[label]), color=colour, label=label)
        ax_v.plot(t, to_numpy(variances[label]) / b, color=colour, label=label)
        ax_l.semilogy(t[1:], to_numpy(terms[label])[1:], color=colour, label=label)
    ax_w.set_title("(a) weights $\\lambda_t$", loc="left")
    ax_v.set_title("(b) $\\sigma_t^2 / (1 - \\alpha_t)$", loc="left")
    ax_l.set_title("(c) terms $L_{t-1}$ (nats)", loc="left")
    ax_v.set_ylim(0, 1.1)
    for ax in axes:
        ax.set_xlabel("step $t$")
    ax_v.legend(loc="lower right")
    return fig


def _scatter_samples(ax: Axes, samples: Tensor, data: Tensor, curve: Tensor, colour: str, label: str) -> None:
    d, s, c = to_numpy(data), to_numpy(samples), to_numpy(curve)
    ax.scatter(d[:, 0], d[:, 1], s=MARKER_SIZE / 2, color=COLORS["muted"], alpha=0.5, linewidths=0, label="data")
    ax.scatter(s[:, 0], s[:, 1], s=MARKER_SIZE / 2, color=colour, alpha=0.7, linewidths=0, label=label)
    ax.plot(c[:, 0], c[:, 1], color=COLORS["data"], lw=0.7, label="noise-free curve")
    ax.set_aspect("equal")
    ax.set_xlim(-11, 11)
    ax.set_ylim(-11, 11)
    ax.set_xlabel("$x_1$")


@styled
def plot_samples(data: Tensor, curve: Tensor, samples: Mapping[str, Tensor],
                 distances: Mapping[str, Sequence[float]]) -> Figure:
    """Samples over the data, and the two-sample statistic by source.

    One scatter panel per entry of ``samples`` (model samples over the data in grey and the noise-free
    curve), then a strip plot of the energy distances (V-statistic) to the data, one row per entry of
    ``distances`` (log scale), with each row's mean as a bar.

    Args:
        data: (N, 2) the data set; curve: (M, 2) the noise-free spiral.
        samples: ``{label: (n, 2) samples}``, one panel each (one or two).
        distances: ``{label: values}``, one row each.
    """
    if not 1 <= len(samples) <= 2:
        raise ValueError(f"samples must have one or two entries, got {len(samples)}")
    if not distances or any(len(v) == 0 for v in distances.values()):
        raise ValueError("distances must have at least one non-empty entry")
    fig = Figure(figsize=(6.8, 3.3), layout="constrained")
    sub = fig.subfigures(1, 2, width_ratios=[len(samples), 1.15])
    scatter_axes = sub[0].subplots(1, len(samples), sharey=True, squeeze=False)[0]
    colours = [COLORS["p"], COLORS["q"]]
    letters = "abc"
    for i, (ax, (label, x)) in enumerate(zip(scatter_axes, samples.items(), strict=True)):
        _scatter_samples(ax, x, data, curve, colours[i], label)
        ax.set_title(f"({letters[i]}) {label}", loc="left")
        ax.grid(True, alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
    scatter_axes[0].set_ylabel("$x_2$")
    scatter_axes[0].legend(loc="lower left", fontsize=7, markerscale=2, handlelength=1.2)
    ax = sub[1].subplots()
    ax.grid(True, alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)
    labels = list(distances)
    for row, label in enumerate(labels):
        values = to_numpy(distances[label])
        jitter = np.linspace(-0.18, 0.18, len(values))
        ax.scatter(values, row + jitter, s=MARKER_SIZE / 2, color=SEQUENCE[row % len(SEQUENCE)], alpha=0.8,
                   linewidths=0)
        ax.plot([values.mean()] * 2, [row - 0.3, row + 0.3], color=COLORS["data"], lw=1.6)
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("energy distance to the data")
    ax.set_title(f"({letters[len(samples)]}) distance to the data", loc="left")
    return fig
