"""Smoke tests of labcode.plots.kl: each figure has the right panels and leaves rcParams alone."""

from __future__ import annotations

import math

import matplotlib as mpl
import pytest
import torch
from matplotlib.figure import Figure
from torch.distributions import Normal

from labcode.fits import fit_gaussian_kl, gaussian_kl_landscape
from labcode.gaussian import GaussianMixture1D
from labcode.kl import monte_carlo_kl_curve
from labcode.plots.kl import plot_kl_asymmetry, plot_mc_convergence, plot_mode_fits

P, Q = Normal(0.0, 0.5), Normal(1.0, 1.5)


def _draw(fig: object, before: dict, n_axes: int) -> None:
    assert isinstance(fig, Figure)
    assert len(fig.axes) == n_axes
    assert dict(mpl.rcParams) == before
    fig.canvas.draw()                    # renders without error


def _samples(n: int, seed: int, dist: Normal) -> torch.Tensor:
    return dist.loc + dist.scale * torch.randn(n, generator=torch.Generator().manual_seed(seed))


def test_plot_mc_convergence() -> None:
    before = dict(mpl.rcParams)
    curves = [monte_carlo_kl_curve(_samples(1000, 0, P), P.log_prob, Q.log_prob, [10, 100, 1000]),
              monte_carlo_kl_curve(_samples(1000, 1, Q), Q.log_prob, P.log_prob, [10, 100, 1000])]
    _draw(plot_mc_convergence(curves, [0.88, 4.9], ["a", "b"]), before, 2)
    with pytest.raises(ValueError, match="same non-zero length"):
        plot_mc_convergence(curves, [0.88], ["a", "b"])


def test_plot_kl_asymmetry() -> None:
    before = dict(mpl.rcParams)
    grid = torch.linspace(-4.0, 6.0, 201)
    x_p, x_q = _samples(500, 0, P), _samples(500, 1, Q)
    fig = plot_kl_asymmetry(grid, P.log_prob(grid), Q.log_prob(grid), P.log_prob(x_p) - Q.log_prob(x_p),
                            Q.log_prob(x_q) - P.log_prob(x_q), 0.88, 4.9)
    _draw(fig, before, 4)


def test_plot_mode_fits() -> None:
    before = dict(mpl.rcParams)
    target = GaussianMixture1D(torch.tensor([0.6, 0.4]), torch.tensor([-2.0, 2.0]), torch.tensor([0.6, 0.6]))
    grid = torch.linspace(-10.0, 10.0, 301)
    forward = fit_gaussian_kl(target.log_prob, grid, "forward", [1.5], [0.0], steps=20)
    reverse = fit_gaussian_kl(target.log_prob, grid, "reverse", [-1.0, 1.0, 0.5], [0.0, 0.0, math.log(2.0)], steps=20)
    mus, log_sigmas = torch.linspace(-4.0, 4.0, 21), torch.linspace(-1.5, 1.5, 11)
    landscapes = [gaussian_kl_landscape(target.log_prob, grid, mus, log_sigmas, d) for d in ("forward", "reverse")]
    fig = plot_mode_fits(grid, target.log_prob(grid), forward, reverse, mus, log_sigmas, *landscapes)
    _draw(fig, before, 4)
