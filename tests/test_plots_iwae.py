"""Smoke tests for labcode.plots.iwae: figures, axes counts, input checks, untouched rcParams."""

from __future__ import annotations

import pytest
import torch
from matplotlib.figure import Figure

from labcode.iwae import SNRStudy
from labcode.plots.iwae import plot_snr, plot_trained_models

F64 = torch.float64


def test_plot_trained_models(rc_unchanged) -> None:
    g = torch.Generator().manual_seed(0)
    index = torch.arange(0, 50, 5)
    log_p = -4 + 0.3 * torch.randn(3, 10, generator=g, dtype=F64)
    gap, ratio = torch.rand(3, 10, generator=g, dtype=F64) + 0.1, 3 * torch.rand(3, 10, generator=g, dtype=F64) + 0.1
    fig = plot_trained_models([1, 5, 50], index, log_p, gap, ratio)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 3
    with pytest.raises(ValueError, match="kl_posterior"):
        plot_trained_models([1, 5, 50], index, log_p, gap[:2], ratio)
    with pytest.raises(ValueError, match="sample_sizes"):
        plot_trained_models([], index, log_p[:0], gap[:0], ratio[:0])


def _study(estimator: str, sizes: list[int], slope: float) -> SNRStudy:
    k = torch.tensor(sizes, dtype=F64)
    sq = 0.3 * k ** (2 * slope)
    se = torch.full_like(sq, 0.01)
    return SNRStudy(estimator, sizes, 100, sq, 1 / sq, se, se, sq.sqrt(), (1 / sq).sqrt())


def test_plot_snr(rc_unchanged) -> None:
    sizes = [1, 3, 10, 30, 100]
    studies = [_study("iwae", sizes, -0.5), _study("dreg", sizes, 0.5)]
    fig = plot_snr(studies, ["model"] * 2, colour_index=[2, 2])
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 2
    assert plot_snr(studies[:1], ["a"]) is not None
    with pytest.raises(ValueError, match="model_labels"):
        plot_snr(studies, ["model"])
    with pytest.raises(ValueError, match="colour_index"):
        plot_snr(studies, ["a", "b"], colour_index=[0])
