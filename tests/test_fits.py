"""Tests for labcode.fits, against closed forms, torch.distributions, SciPy quadrature and brute force."""


from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from torch.distributions import Normal

from helpers import bimodal, mixture_2d, mixtures
from labcode.fits import fit_gaussian_kl, fit_gaussian_kl_2d, gaussian_kl_landscape
from labcode.gaussian import GaussianMixture1D, GaussianMixture2D
from labcode.kl import lattice_kl, quadrature_kl
from labcode.lattice import latent_grid


def test_landscape_entries_are_kls() -> None:
    target = bimodal(torch.float64)
    grid = torch.linspace(-10.0, 10.0, 601, dtype=torch.float64)
    mus = torch.tensor([-1.0, 0.0, 2.0], dtype=torch.float64)
    log_sigmas = torch.tensor([-0.5, 0.5], dtype=torch.float64)
    for direction in ("forward", "reverse"):
        landscape = gaussian_kl_landscape(target.log_prob, grid, mus, log_sigmas, direction)
        assert landscape.shape == (2, 3)
        log_q = Normal(mus[2], math.exp(0.5)).log_prob(grid)
        log_p = target.log_prob(grid)
        expected = quadrature_kl(log_p, log_q, grid) if direction == "forward" else quadrature_kl(log_q, log_p, grid)
        torch.testing.assert_close(landscape[1, 2], expected, rtol=1e-10, atol=1e-10)


@settings(max_examples=5)
@given(mixtures())
def test_forward_fit_matches_moments(mixture: GaussianMixture1D) -> None:
    # the forward-KL optimum over Gaussians is moment matching (chapter "KL divergence")
    grid = torch.linspace(-16.0, 16.0, 801, dtype=torch.float64)
    start_sd = mixture.variance().sqrt().item()
    # Hessian at the optimum: diag(1/sd², 2) in (mu, log sigma); the step stays well below 2/λ_max
    lr = min(0.3, 0.5 * start_sd**2)
    fit = fit_gaussian_kl(mixture.log_prob, grid, "forward", [mixture.mean().item() + 1.0], [math.log(start_sd)],
                          steps=800, lr=lr)
    assert fit.mu.item() == pytest.approx(mixture.mean().item(), abs=1e-4)
    assert fit.sigma.item() == pytest.approx(start_sd, rel=1e-4)


def test_reverse_fits_lock_onto_modes() -> None:
    target = bimodal(torch.float64)
    grid = torch.linspace(-10.0, 10.0, 601, dtype=torch.float64)
    fit = fit_gaussian_kl(target.log_prob, grid, "reverse", [-1.0, 1.0], [0.0, 0.0])
    torch.testing.assert_close(fit.mu, torch.tensor([-2.0, 2.0], dtype=torch.float64), atol=0.01, rtol=0)
    torch.testing.assert_close(fit.sigma, torch.tensor([0.6, 0.6], dtype=torch.float64), atol=0.01, rtol=0)
    # KL(p_k || p) <= log(1/w_k), and the fits do at least as well as the component itself
    assert (fit.kl <= -torch.log(target.weights)).all()
    assert (fit.kl > 0).all()
    # a local minimum: the gradient vanishes at the end of the path
    assert (fit.path[-1] - fit.path[-2]).abs().max().item() < 1e-6


def test_fit_records_the_path_and_log_prob(device: torch.device) -> None:
    grid = torch.linspace(-10.0, 10.0, 601, device=device)
    fit = fit_gaussian_kl(bimodal().log_prob, grid, "reverse", [-1.0, 1.0, 0.5], [0.0, 0.0, 0.7], steps=7)
    assert fit.path.shape == (8, 3, 2)
    assert fit.mu.device.type == device.type
    torch.testing.assert_close(fit.path[0, :, 0], torch.tensor([-1.0, 1.0, 0.5], device=device))
    log_q = fit.log_prob(grid)
    assert log_q.shape == (3, 601)
    expected = Normal(fit.mu[1], fit.sigma[1]).log_prob(grid)
    torch.testing.assert_close(log_q[1], expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("kwargs", "exc", "match"), [
    ({"direction": "sideways"}, ValueError, "direction must be"),
    ({"steps": 0}, ValueError, "steps must be > 0"),
    ({"lr": -1.0}, ValueError, "lr must be > 0"),
    ({"mu0": [0.0, 1.0]}, ValueError, "same shape"),
])
def test_fit_rejects_bad_input(kwargs: dict, exc: type, match: str) -> None:
    args = {"target_log_prob": bimodal().log_prob, "grid": torch.linspace(-5, 5, 101), "direction": "forward",
            "mu0": [0.0], "log_sigma0": [0.0]} | kwargs
    with pytest.raises(exc, match=match):
        fit_gaussian_kl(**args)


F64 = torch.float64


def test_forward_fit_matches_moments_and_reverse_fits_find_each_mode() -> None:
    target = mixture_2d()
    forward = fit_gaussian_kl_2d(target.log_prob, 6.0, 80, "forward", [[1.0, 2.0]], [[1.0, 1.0]])
    torch.testing.assert_close(forward.mean[0], target.mean(), rtol=0, atol=1e-4)
    torch.testing.assert_close(forward.cov[0], target.covariance(), rtol=0, atol=1e-4)
    reverse = fit_gaussian_kl_2d(target.log_prob, 6.0, 80, "reverse", [[-1.5, -1.5], [1.5, 1.5]], [[0.7, 0.7], [0.7, 0.7]])
    for j in range(2):
        torch.testing.assert_close(reverse.mean[j], target.means[j], rtol=0, atol=2e-2)
        assert reverse.kl[j].item() <= math.log(1 / target.weights[j].item()) + 1e-6
    assert reverse.path.shape == (401, 2, 2)
    with pytest.raises(ValueError, match="direction"):
        fit_gaussian_kl_2d(target.log_prob, 6.0, 80, "both", [[0.0, 0.0]], [[1.0, 1.0]])
    with pytest.raises(ValueError, match="std0"):
        fit_gaussian_kl_2d(target.log_prob, 6.0, 80, "forward", [[0.0, 0.0]], [[-1.0, 1.0]])


@pytest.mark.parametrize("rho", [0.0, 0.6, 0.9])
def test_diagonal_fits_of_a_correlated_gaussian(rho: float) -> None:
    cov = torch.tensor([[1.0, rho], [rho, 1.0]], dtype=F64)
    target = GaussianMixture2D(torch.ones(1, dtype=F64), torch.zeros(1, 2, dtype=F64), cov[None])
    forward = fit_gaussian_kl_2d(target.log_prob, 4.0, 80, "forward", [[0.5, -0.5]], [[1.5, 0.7]], diagonal=True)
    reverse = fit_gaussian_kl_2d(target.log_prob, 4.0, 80, "reverse", [[0.5, -0.5]], [[1.5, 0.7]], diagonal=True)
    torch.testing.assert_close(forward.cov[0], torch.eye(2, dtype=F64), rtol=0, atol=2e-3)
    torch.testing.assert_close(reverse.cov[0], (1 - rho**2) * torch.eye(2, dtype=F64), rtol=0, atol=2e-3)
    nodes, _ = latent_grid(4.0, 80, dtype=F64)
    log_p = target.log_prob(nodes)
    kl = lattice_kl(reverse.log_prob(nodes)[0], log_p, 4.0, 80)
    assert kl.item() == pytest.approx(-0.5 * math.log(1 - rho**2), abs=2e-3)
