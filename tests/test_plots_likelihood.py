"""Smoke tests for labcode.plots.likelihood: figures, axes counts, untouched rcParams."""

from __future__ import annotations

import pytest
import torch
from matplotlib.figure import Figure

from labcode.importance import estimator_spread
from labcode.lattice import latent_grid
from labcode.plots.likelihood import plot_chosen_points, plot_ess_and_cost, plot_estimator_spread, plot_grid_posterior

LABELS = ["near", "middle", "far"]


@pytest.fixture(scope="module")
def study():
    log_w = 3 * torch.randn(3, 20_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return estimator_spread(log_w, [10, 100, 1000], max_repeats=20)


def gaussian_grid(g: int = 40) -> tuple[torch.Tensor, torch.Tensor]:
    nodes, _ = latent_grid(3.0, g)
    return nodes[::g, 0], -0.5 * (nodes ** 2).sum(dim=1).reshape(g, g)


def test_plot_chosen_points(rc_unchanged) -> None:
    data = torch.randn(50, 2, generator=torch.Generator().manual_seed(1))
    axis, log_density = gaussian_grid()
    fig = plot_chosen_points(data, [1, 20, 40], LABELS, torch.randn(100, 2), axis, log_density.expand(3, -1, -1))
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 2
    with pytest.raises(ValueError, match="labels"):
        plot_chosen_points(data, [1, 2], LABELS, torch.randn(10, 2), axis, log_density.expand(2, -1, -1))


def test_plot_estimator_spread(study, rc_unchanged) -> None:
    fig = plot_estimator_spread(study, torch.zeros(3), LABELS)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 3
    with pytest.raises(ValueError, match="reference"):
        plot_estimator_spread(study, torch.zeros(2), LABELS)


def test_plot_ess_and_cost(study, rc_unchanged) -> None:
    fig = plot_ess_and_cost(study, torch.tensor([1.0, 2.0, 3.0]), [1e-4, 2e-4, 1e-3, 1e-2], LABELS,
                            timed_sizes=[10, 100, 1000, 10000])
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 2
    with pytest.raises(ValueError, match="seconds"):
        plot_ess_and_cost(study, torch.zeros(3), [1e-4], LABELS)


def test_plot_grid_posterior(rc_unchanged) -> None:
    axis, log_density = gaussian_grid()
    fig = plot_grid_posterior(axis, log_density - 2.0, log_density, log_density, (-1.0, 1.0, -1.0, 1.0))
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 3                 # two panels and the colour bar
    with pytest.raises(ValueError, match="log_prior"):
        plot_grid_posterior(axis, log_density, log_density, log_density[:5], (-1.0, 1.0, -1.0, 1.0))
