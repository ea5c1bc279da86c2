"""Smoke tests for labcode.plots.amortization: figures, axes counts, input checks, untouched rcParams."""

from __future__ import annotations

import pytest
import torch
from matplotlib.figure import Figure

from labcode.lattice import latent_grid
from labcode.plots.amortization import plot_best_gaussians, plot_gap_split, plot_gap_sweeps

F64 = torch.float64


def test_plot_gap_split(rc_unchanged) -> None:
    g = torch.Generator().manual_seed(0)
    tau = torch.linspace(0, 9.4, 60, dtype=F64)
    approx, amort = torch.rand(60, generator=g, dtype=F64), 0.3 * torch.rand(60, generator=g, dtype=F64)
    fig = plot_gap_split(tau, approx, amort, torch.rand(60, generator=g, dtype=F64))
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 2
    with pytest.raises(ValueError, match="amortization_gap"):
        plot_gap_split(tau, approx, amort[:10], approx)


def test_plot_best_gaussians(rc_unchanged) -> None:
    nodes, _ = latent_grid(2.0, 30, dtype=F64)
    axis = nodes[::30, 0]
    log_post = -0.5 * (nodes**2).sum(1).reshape(30, 30)
    mean, std = torch.zeros(2, 2), 0.5 * torch.ones(2, 2)
    fig = plot_best_gaussians([(axis, axis)] * 2, [log_post] * 2, mean, std, mean + 0.1, std, ["a", "b"])
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 2
    with pytest.raises(ValueError, match="best_std"):
        plot_best_gaussians([(axis, axis)] * 2, [log_post] * 2, mean, std, mean, std[:1], ["a", "b"])
    with pytest.raises(ValueError, match="log_posteriors"):
        plot_best_gaussians([(axis, axis)] * 2, [log_post[:5]] * 2, mean, std, mean, std, ["a", "b"])


def test_plot_gap_sweeps(rc_unchanged) -> None:
    fig = plot_gap_sweeps([("width", ["8", "32"], [0.1, 0.2], [0.01, 0.02]), ("steps", ["1", "2", "3"], [0.1] * 3, [0.0] * 3)])
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 2
    with pytest.raises(ValueError, match="same length"):
        plot_gap_sweeps([("width", ["8", "32"], [0.1], [0.01, 0.02])])
    with pytest.raises(ValueError, match="at least one"):
        plot_gap_sweeps([])
