"""Tests of labcode.plots.ddpm: figures are returned, styled locally, and show what they claim."""

from __future__ import annotations

import matplotlib as mpl
import pytest
import torch
from matplotlib.figure import Figure

import labcode as lc
from labcode.ddpm import epsilon_weights, reverse_variances
from labcode.diffusion import linear_beta_schedule
from labcode.plots.ddpm import plot_bound_terms, plot_samples, plot_training

BETAS = linear_beta_schedule(20, 1e-2, 0.3)


def test_training_figure():
    before = dict(mpl.rcParams)
    fig = plot_training([1.5 - 0.001 * i for i in range(300)], torch.linspace(1.9, 0.01, 20), 2, window=20)
    assert isinstance(fig, Figure) and dict(mpl.rcParams) == before
    ax_loss, ax_err = fig.axes
    assert len(ax_loss.lines) == 2 and len(ax_loss.lines[0].get_xdata()) == 300
    assert ax_err.lines[1].get_ydata()[0] == 2          # the dashed reference at D
    with pytest.raises(ValueError, match="window"):
        plot_training([1.0], torch.ones(3), 2, window=0)


def test_bound_figure():
    variances = {"forward": reverse_variances(BETAS, "forward"), "posterior": reverse_variances(BETAS, "posterior")}
    weights = {k: epsilon_weights(BETAS, v) for k, v in variances.items()}
    terms = {k: torch.linspace(1.0, 0.01, 20) for k in variances}
    fig = plot_bound_terms(BETAS, variances, weights, terms)
    ax_w, ax_v, ax_l = fig.axes
    assert ax_w.get_yscale() == "log" and ax_l.get_yscale() == "log"
    assert len(ax_l.lines[0].get_xdata()) == 19               # t >= 2 only
    assert ax_v.lines[0].get_ydata() == pytest.approx([1.0] * 20)
    with pytest.raises(ValueError, match="same labels"):
        plot_bound_terms(BETAS, variances, weights, {"other": terms["forward"], "forward": terms["forward"]})
    with pytest.raises(ValueError, match="must have 20 entries"):
        plot_bound_terms(BETAS, variances, weights, {k: v[:5] for k, v in terms.items()})


def test_samples_figure():
    data = lc.make_spiral(60, 0.1, generator=torch.Generator().manual_seed(0))
    _, curve = lc.spiral_curve(60)
    samples = {"model": data + 0.1, "other": data - 0.1}
    distances = {"a": [0.01, 0.02], "b": [0.03]}
    fig = plot_samples(data, curve, samples, distances)
    axes = fig.axes
    assert len(axes) == 3
    assert axes[-1].get_xscale() == "log"
    assert [t.get_text() for t in axes[-1].get_yticklabels()] == ["a", "b"]
    with pytest.raises(ValueError, match="one or two"):
        plot_samples(data, curve, {}, distances)
    with pytest.raises(ValueError, match="non-empty"):
        plot_samples(data, curve, samples, {"a": []})
