"""Figures of the chapter "IWAE as a training objective"."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
from torch import Tensor

from ..iwae import SNRStudy
from .style import COLORS, POINT_COLORS, new_figure, panel_label, styled, to_numpy

#: line style and marker per gradient estimator
_ESTIMATOR_STYLE = {"iwae": "-", "dreg": "--"}
_ESTIMATOR_MARKER = {"iwae": "o", "dreg": "s"}
_ESTIMATOR_NAME = {"iwae": "IWAE", "dreg": "DReG"}


def _check_rows(name: str, t: Tensor, shape: tuple[int, int]) -> None:
    if tuple(t.shape) != shape:
        raise ValueError(f"{name} must have shape {shape}, got {tuple(t.shape)}")


@styled
def plot_trained_models(sample_sizes: Sequence[int], index: Tensor, log_evidence: Tensor, kl_posterior: Tensor,
                        variance_ratio: Tensor) -> Figure:
    """Exact per-point results of models trained with :math:`\\mathcal L_K`, one colour per :math:`K`, against the point's index.

    Panels: (a) :math:`\\log p(x)` of each model minus that of the first (the first's is the zero line);
    (b) the ELBO's gap :math:`\\mathrm{KL}(q(z \\mid x) \\,\\|\\, p(z \\mid x))` (log axis);
    (c) :math:`r`, the largest ratio of posterior to :math:`q` variance over directions (log axis), with
    the line :math:`r = 2` above which a Gaussian posterior of that covariance would give the importance
    weights an infinite variance.

    Args:
        sample_sizes: the M training values of :math:`K`.
        index: (N,) the points' indices along the spiral.
        log_evidence, kl_posterior, variance_ratio: (M, N).
    """
    m, n = len(sample_sizes), index.shape[0]
    if m == 0:
        raise ValueError("sample_sizes must name at least one K")
    for name, t in (("log_evidence", log_evidence), ("kl_posterior", kl_posterior), ("variance_ratio", variance_ratio)):
        _check_rows(name, t, (m, n))
    idx = to_numpy(index)
    log_p, gap, ratio = to_numpy(log_evidence), to_numpy(kl_posterior), to_numpy(variance_ratio)
    fig, (ax_a, ax_b, ax_c) = new_figure(3, 1, width=6.4, height=7.2, sharex=True)
    ax_a.axhline(0.0, color=COLORS["muted"], lw=1.0)
    for j, k in enumerate(sample_sizes):
        colour = POINT_COLORS[j % len(POINT_COLORS)]
        if j > 0:
            ax_a.plot(idx, log_p[j] - log_p[0], ".-", color=colour, lw=0.8, ms=3)
        ax_b.semilogy(idx, gap[j], ".-", color=colour, lw=0.8, ms=3)
        ax_c.semilogy(idx, ratio[j], ".-", color=colour, lw=0.8, ms=3, label=f"$K = {k}$")
    ax_c.axhline(2.0, color=COLORS["data"], ls=":", lw=1.2, label="$r = 2$")
    ax_a.set_ylabel(f"$\\log p(x) - \\log p(x)|_{{K = {sample_sizes[0]}}}$")
    ax_b.set_ylabel(r"$\mathrm{KL}(q \,\|\, p(z \mid x))$")
    ax_c.set_ylabel("$r$")
    ax_c.set_xlabel("index of the data point along the spiral")
    ax_c.legend(loc="lower center", bbox_to_anchor=(0.5, -0.62), ncol=m + 1)
    for ax, label in zip((ax_a, ax_b, ax_c), ("(a)", "(b)", "(c)"), strict=True):
        panel_label(ax, label)
    return fig


def _snr_curve(ax: Axes, study: SNRStudy, group: str, colour: str) -> None:
    """Resolved root-mean-square SNRs as a line with markers; the others as open triangles at sqrt(mean + 2 se)."""
    sizes = np.asarray(study.sample_sizes, dtype=float)
    rms = to_numpy(study.rms(group))
    resolved = to_numpy(study.resolved(group)).astype(bool)
    square, se = (to_numpy(t) for t in study.squared(group))
    style = _ESTIMATOR_STYLE[study.estimator]
    ax.plot(sizes[resolved], rms[resolved], style, color=colour, marker=_ESTIMATOR_MARKER[study.estimator], ms=4)
    bound = np.sqrt(np.maximum(square, 0) + 2 * se)
    ax.plot(sizes[~resolved], bound[~resolved], ls="none", marker="v", mfc="none", color=colour, ms=5)


@styled
def plot_snr(studies: Sequence[SNRStudy], model_labels: Sequence[str], colour_index: Sequence[int] | None = None) -> Figure:
    """Root-mean-square SNR of the gradient against :math:`K` (log–log): (a) the encoder's parameters, (b) the decoder's.

    One colour per model (``model_labels[i]`` names the model of ``studies[i]``; equal labels share a
    colour, the ``colour_index[i]``-th of the point colours, by default the order of first appearance),
    solid with circles for the IWAE estimator, dashed with squares for DReG; open triangles mark a mean squared SNR below two
    jackknife standard errors, drawn at :math:`\\sqrt{\\text{estimate} + 2\\,\\mathrm{se}}`.
    Dotted lines of slope :math:`\\mp 1/2`, the rates of the large-:math:`K` theory, pass through the
    first study's values at the smallest :math:`K`. Only the IWAE studies are drawn in (b) (DReG
    changes only the encoder's gradient).
    """
    if len(studies) == 0 or len(studies) != len(model_labels):
        raise ValueError(f"studies and model_labels must be non-empty and of equal length, got {len(studies)} and "
                         f"{len(model_labels)}")
    if colour_index is None:
        firsts = list(dict.fromkeys(model_labels))
        colour_index = [firsts.index(label) for label in model_labels]
    if len(colour_index) != len(studies):
        raise ValueError(f"colour_index must have {len(studies)} entries, got {len(colour_index)}")
    colours = {label: POINT_COLORS[i % len(POINT_COLORS)] for label, i in zip(model_labels, colour_index, strict=True)}
    fig, (ax_a, ax_b) = new_figure(1, 2, width=8.8, height=3.8)
    for study, label in zip(studies, model_labels, strict=True):
        _snr_curve(ax_a, study, "encoder", colours[label])
        if study.estimator == "iwae":
            _snr_curve(ax_b, study, "decoder", colours[label])
    first = studies[0]
    sizes = np.asarray(first.sample_sizes, dtype=float)
    for ax, group, power in ((ax_a, "encoder", -0.5), (ax_b, "decoder", 0.5)):
        start = float(first.rms(group)[0])
        ax.plot(sizes, start * (sizes / sizes[0]) ** power, ":", color=COLORS["muted"], lw=1.2)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("number of samples $K$")
    ax_a.set_ylabel("root-mean-square SNR, encoder")
    ax_b.set_ylabel("root-mean-square SNR, decoder")
    for label, colour in colours.items():
        ax_b.plot([], [], color=colour, label=label)
    for estimator in sorted({s.estimator for s in studies}, key=list(_ESTIMATOR_STYLE).index):
        ax_b.plot([], [], "k" + _ESTIMATOR_STYLE[estimator], marker=_ESTIMATOR_MARKER[estimator], ms=4,
                  label=f"{_ESTIMATOR_NAME[estimator]} estimator")
    ax_b.plot([], [], ":", color=COLORS["muted"], label=r"slope $\mp 1/2$")
    fig.legend(*ax_b.get_legend_handles_labels(), loc="lower center", bbox_to_anchor=(0.5, -0.14), ncol=3, fontsize=8)
    panel_label(ax_a, "(a)")
    panel_label(ax_b, "(b)")
    return fig
