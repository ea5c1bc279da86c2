"""Tests for labcode.lattice, against closed forms, torch.distributions, SciPy quadrature and brute force."""


from __future__ import annotations

import pytest
import torch

import labcode as lc
from helpers import mixture_2d, random_linear
from labcode.gaussian import GaussianMixture2D, LinearGaussianModel
from labcode.lattice import grid_log_evidence, grid_log_joint, latent_grid


def test_latent_grid_nodes_and_cell() -> None:
    nodes, cell = latent_grid(1.0, 4, dim=2)
    assert nodes.shape == (16, 2)
    assert cell == pytest.approx(0.25)
    torch.testing.assert_close(nodes[:4, 1], torch.tensor([-0.75, -0.25, 0.25, 0.75], dtype=torch.float64))
    assert (nodes[:4, 0] == -0.75).all()                   # last coordinate varies fastest
    with pytest.raises(ValueError, match="half_width"):
        latent_grid(0.0, 4)
    with pytest.raises(ValueError, match="points_per_axis"):
        latent_grid(1.0, 0)


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_grid_integrates_the_prior_to_one(dim: int) -> None:
    nodes, cell = latent_grid(7.0, {1: 400, 2: 120, 3: 40}[dim], dim=dim)
    log_prior = lc.gaussian_log_density(nodes, torch.zeros_like(nodes), 1.0)
    assert grid_log_evidence(log_prior, cell).item() == pytest.approx(0.0, abs=1e-8)


def test_grid_evidence_matches_closed_form(device: torch.device) -> None:
    decoder = random_linear(6, 2, 2)
    decoder.weight, decoder.bias = decoder.weight.to(device), decoder.bias.to(device)
    x = torch.tensor([[0.4, 1.1], [-2.0, 0.3]], dtype=torch.float64, device=device)
    nodes, cell = latent_grid(5.0, 300, device=device)
    log_joint = grid_log_joint(decoder, x, nodes, 0.4)
    assert log_joint.shape == (2, 300 ** 2)
    exact = LinearGaussianModel(decoder.weight, decoder.bias, 0.4).log_evidence(x)
    torch.testing.assert_close(grid_log_evidence(log_joint, cell), exact, rtol=0, atol=1e-8)
    mean, _ = LinearGaussianModel(decoder.weight, decoder.bias, 0.4).posterior(x)
    torch.testing.assert_close(torch.softmax(log_joint, dim=1) @ nodes, mean, rtol=0, atol=1e-8)


def test_grid_checks() -> None:
    with pytest.raises(ValueError, match="cell_volume"):
        grid_log_evidence(torch.zeros(3), 0.0)
    with pytest.raises(ValueError, match="nodes"):
        grid_log_joint(random_linear(0, 2, 2), torch.zeros(1, 2, dtype=torch.float64), torch.zeros(4), 0.5)


F64 = torch.float64


def test_mixture_density_and_moments() -> None:
    target = mixture_2d()
    nodes, cell = latent_grid(8.0, 200, dtype=F64)
    p = torch.exp(target.log_prob(nodes)) * cell
    assert p.sum().item() == pytest.approx(1.0, abs=1e-8)
    mean = p @ nodes
    torch.testing.assert_close(mean, target.mean(), rtol=0, atol=1e-8)
    cov = (p[:, None, None] * (nodes - mean)[:, :, None] * (nodes - mean)[:, None, :]).sum(0)
    torch.testing.assert_close(cov, target.covariance(), rtol=0, atol=1e-7)
    with pytest.raises(ValueError, match="sum to 1"):
        GaussianMixture2D(torch.tensor([0.5, 0.4]), target.means, target.covs)
    with pytest.raises(ValueError, match="positive definite"):
        GaussianMixture2D(torch.tensor([1.0]), torch.zeros(1, 2), torch.tensor([[[1.0, 2.0], [2.0, 1.0]]]))
