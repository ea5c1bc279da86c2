"""Smoke tests for labcode.plots.exact: figures, axes counts, input checks, untouched rcParams."""

from __future__ import annotations

import pytest
import torch
from matplotlib.figure import Figure

from labcode.fits import fit_gaussian_kl_2d
from labcode.gaussian import GaussianMixture2D
from labcode.importance import estimator_spread
from labcode.lattice import latent_grid
from labcode.plots.exact import (
    plot_estimators,
    plot_identity,
    plot_mode_fits_2d,
    plot_noise_scaling,
    plot_posterior_vs_q,
    plot_prior_matching,
    plot_rate_distortion,
)

LABELS = ["near", "middle", "far"]
F64 = torch.float64


def test_plot_identity(rc_unchanged) -> None:
    g = torch.Generator().manual_seed(0)
    log_p = -4 + 0.3 * torch.randn(50, generator=g, dtype=F64)
    gap = torch.rand(50, generator=g, dtype=F64)
    fig = plot_identity(log_p, log_p - gap, 1e-8 * torch.randn(50, generator=g, dtype=F64), 1e-4 * torch.rand(50, dtype=F64))
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 2
    with pytest.raises(ValueError, match="elbo"):
        plot_identity(log_p, log_p[:10], log_p, log_p)


def test_plot_posterior_vs_q(rc_unchanged) -> None:
    nodes, _ = latent_grid(2.0, 30, dtype=F64)
    axis = nodes[::30, 0]
    log_post = -0.5 * (nodes**2).sum(1).reshape(30, 30)
    fig = plot_posterior_vs_q([(axis, axis)] * 3, [log_post] * 3, torch.zeros(3, 2), 0.5 * torch.ones(3, 2), LABELS)
    assert len(fig.axes) == 3
    with pytest.raises(ValueError, match="q_mean"):
        plot_posterior_vs_q([(axis, axis)] * 3, [log_post] * 3, torch.zeros(2, 2), torch.ones(2, 2), LABELS)


def test_plot_estimators(rc_unchanged) -> None:
    g = torch.Generator().manual_seed(1)
    sizes = [1, 10, 100]
    prior = estimator_spread(3 * torch.randn(3, 20_000, generator=g, dtype=F64), sizes, max_repeats=50)
    proposal = estimator_spread(0.3 * torch.randn(3, 20_000, generator=g, dtype=F64), sizes, max_repeats=50)
    fig = plot_estimators(prior, proposal, torch.zeros(3, dtype=F64), 0.1 * torch.ones(3, dtype=F64),
                          torch.log(torch.tensor([50.0, 100.0, 300.0], dtype=F64)), LABELS)
    assert len(fig.axes) == 2
    other = estimator_spread(torch.randn(3, 2000, generator=g, dtype=F64), [1, 10], max_repeats=10)
    with pytest.raises(ValueError, match="sample sizes"):
        plot_estimators(prior, other, torch.zeros(3), torch.zeros(3), torch.zeros(3), LABELS)


def test_plot_noise_scaling(rc_unchanged) -> None:
    factors = [0.5, 1.0, 2.0]
    log_c = torch.log(torch.tensor([[400.0, 800.0, 1600.0], [100.0, 200.0, 400.0], [25.0, 50.0, 100.0]], dtype=F64))
    fig = plot_noise_scaling(factors, log_c, torch.exp(-log_c), [1.0, 2.0], torch.tensor([[0.0, 5.0]] * 3), LABELS)
    assert len(fig.axes) == 2
    with pytest.raises(ValueError, match="log_c_box"):
        plot_noise_scaling(factors, log_c, torch.exp(-log_c), [1.0, 2.0, 3.0], torch.zeros(3, 2), LABELS)


def test_plot_mode_fits_2d(rc_unchanged) -> None:
    target = GaussianMixture2D(torch.tensor([0.5, 0.5], dtype=F64), torch.tensor([[-1.5, 0.0], [1.5, 0.0]], dtype=F64),
                               0.3 * torch.eye(2, dtype=F64).expand(2, 2, 2).clone())
    forward = fit_gaussian_kl_2d(target.log_prob, 4.0, 40, "forward", [[0.0, 0.5]], [[1.0, 1.0]], steps=20)
    reverse = fit_gaussian_kl_2d(target.log_prob, 4.0, 40, "reverse", [[-1.0, 0.0], [1.0, 0.0]], [[0.5, 0.5]] * 2, steps=20)
    nodes, _ = latent_grid(4.0, 40, dtype=F64)
    axis, log_p = nodes[::40, 0], target.log_prob(nodes).reshape(40, 40)
    fig = plot_mode_fits_2d(axis, log_p, forward, reverse, axis, log_p, forward, reverse)
    assert len(fig.axes) == 2


def test_plot_rate_distortion_and_prior_matching(rc_unchanged) -> None:
    fig = plot_rate_distortion([0.0, 1.0, 10.0], [50.0, 4.7, 0.0], [-6.5, -0.3, 5.5], [24.0, 4.1, 5.5])
    assert len(fig.axes) == 2
    with pytest.raises(ValueError, match="distortion"):
        plot_rate_distortion([0.0, 1.0], [1.0, 2.0], [1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="zoom_rate"):
        plot_rate_distortion([0.0, 1.0], [1.0, 2.0], [1.0, 0.5], [1.0, 2.0], zoom_rate=-1.0)


def test_plot_rate_distortion_zooms_on_all_but_the_largest_rate(rc_unchanged) -> None:
    fig = plot_rate_distortion([0.0, 0.1, 1.0, 10.0], [50.0, 14.0, 4.7, 0.0], [-6.5, -5.0, -0.3, 5.5],
                               [24.0, 9.0, 4.1, 5.5])
    right = fig.axes[1].get_xlim()[1]
    assert 14.0 < right < 50.0
    fig = plot_prior_matching([10, 100], [0.01, 0.02], torch.tensor([[1.0, 0.1], [0.5, 1e-3]], dtype=F64))
    assert len(fig.axes) == 1
    with pytest.raises(ValueError, match="kl"):
        plot_prior_matching([10, 100], [0.01], torch.ones(2, 2))
