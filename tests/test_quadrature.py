"""Tests for labcode.quadrature, against closed forms, torch.distributions, SciPy quadrature and brute force."""


from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from helpers import linear_model
from labcode.gaussian import LinearGaussianModel
from labcode.lattice import grid_log_joint, latent_grid
from labcode.quadrature import _children_offsets, _neighbour_max, half_width_for_tail, latent_quadrature, tail_bound

F64 = torch.float64


def test_tail_bound_matches_normal_tail() -> None:
    a, sigma = 3.0, 0.5
    expected = -math.log(2 * math.pi * sigma**2) + math.log(1 - (1 - 2 * stats.norm.sf(a)) ** 2)
    assert tail_bound(a, sigma, 2, 2) == pytest.approx(expected, rel=1e-12)
    assert tail_bound(8.0, sigma, 2, 2) < tail_bound(7.0, sigma, 2, 2)
    with pytest.raises(ValueError, match="half_width"):
        tail_bound(-1.0, sigma, 2)
    with pytest.raises(ValueError, match="noise_std"):
        tail_bound(3.0, 0.0, 2)


@pytest.mark.parametrize("sigma", [0.3, 0.05])
def test_quadrature_matches_linear_gaussian_closed_form(sigma: float) -> None:
    decoder, x = linear_model(1, sigma=sigma)
    quad = latent_quadrature(decoder, x, sigma, tol=1e-6)
    exact = LinearGaussianModel(decoder.weight, decoder.bias, sigma).log_evidence(x)
    assert (quad.log_evidence - exact).abs().max().item() <= 1e-4
    assert (quad.log_tail_bound < math.log(1e-6)).all()
    mean, cov = LinearGaussianModel(decoder.weight, decoder.bias, sigma).posterior(x)
    post_mean, post_cov = quad.posterior_moments()
    torch.testing.assert_close(post_mean, mean, rtol=0, atol=1e-5)
    torch.testing.assert_close(post_cov, cov.expand_as(post_cov), rtol=0, atol=1e-5)


def test_refinement_converges_on_a_relu_decoder(small_vae) -> None:
    """The error against a tight reference falls level by level."""
    model, data = small_vae
    x = data[[20, 120, 190]].double()
    sigma = model.noise_std.detach().double()
    reference = latent_quadrature(model, x, sigma, tol=1e-7, max_levels=8).log_evidence
    errors = [(latent_quadrature(model, x, sigma, tol=1e-12, max_levels=levels).log_evidence - reference).abs().max().item()
              for levels in (0, 1, 2, 3)]
    assert all(b < a for a, b in itertools.pairwise(errors)), errors
    assert errors[-1] < 1e-3


def test_quadrature_matches_scipy_dblquad(small_vae) -> None:
    """A trained ReLU decoder, three points, against SciPy's adaptive quadrature in float64 (nquad = dblquad with options)."""
    model, data = small_vae
    idx = [10, 100, 180]
    x = data[idx].double()
    sigma = model.noise_std.item()
    quad = latent_quadrature(model, x, sigma, tol=1e-5)
    mean, cov = quad.posterior_moments()
    w1, b1 = (t.detach().double().numpy() for t in (model.decoder[0].weight, model.decoder[0].bias))
    w2, b2 = (t.detach().double().numpy() for t in (model.decoder[2].weight, model.decoder[2].bias))
    for i in range(len(idx)):
        xi = x[i].numpy()
        shift = quad.log_evidence[i].item()

        def integrand(z2: float, z1: float, xi=xi, shift=shift) -> float:
            z = np.array([z1, z2])
            f = w2 @ np.maximum(w1 @ z + b1, 0.0) + b2
            log_joint = (-0.5 * np.sum((xi - f) ** 2) / sigma**2 - math.log(2 * math.pi * sigma**2)
                         - 0.5 * z @ z - math.log(2 * math.pi))
            return math.exp(log_joint - shift)

        half = 10 * cov[i].diagonal().sqrt().numpy()
        lo, hi = np.maximum(mean[i].numpy() - half, -7.0), np.minimum(mean[i].numpy() + half, 7.0)
        value, _ = integrate.nquad(integrand, [[lo[1], hi[1]], [lo[0], hi[0]]],
                                   opts={"epsabs": 1e-5, "epsrel": 1e-5, "limit": 200})
        assert abs(math.log(value)) <= 1e-3, (idx[i], math.log(value))


def test_quadrature_finds_a_sharp_posterior_through_q() -> None:
    """A posterior far narrower than the coarse lattice is found through the encoder's q."""
    sigma = 0.002
    decoder, x = linear_model(3, n=2, sigma=sigma)
    mean, cov = LinearGaussianModel(decoder.weight, decoder.bias, sigma).posterior(x)
    logvar = torch.log(cov.diagonal()).expand_as(mean).clone()
    quad = latent_quadrature(decoder, x, sigma, q_mean=mean, q_logvar=logvar, tol=1e-6, max_levels=10)
    exact = LinearGaussianModel(decoder.weight, decoder.bias, sigma).log_evidence(x)
    assert (quad.log_evidence - exact).abs().max().item() <= 1e-4


def test_quadrature_checks_inputs() -> None:
    decoder, x = linear_model()
    with pytest.raises(ValueError, match="noise_std"):
        latent_quadrature(decoder, x, -1.0)
    with pytest.raises(ValueError, match="refine"):
        latent_quadrature(decoder, x, 0.3, refine=1)
    with pytest.raises(ValueError, match="mass_threshold"):
        latent_quadrature(decoder, x, 0.3, mass_threshold=0.0)
    with pytest.raises(ValueError, match="tol"):
        latent_quadrature(decoder, x, 0.3, tol=0.0)
    with pytest.raises(ValueError, match="q_mean and q_logvar"):
        latent_quadrature(decoder, x, 0.3, q_mean=torch.zeros(len(x), 2, dtype=F64))
    with pytest.raises(ValueError, match="q_mean"):
        latent_quadrature(decoder, x, 0.3, q_mean=torch.zeros(1, 2, dtype=F64), q_logvar=torch.zeros(1, 2, dtype=F64))
    with pytest.raises(ValueError, match="x"):
        latent_quadrature(decoder, x[0], 0.3)


def test_half_width_for_tail_is_the_smallest_box() -> None:
    log_mass = -40.0
    a = half_width_for_tail(log_mass, 0.5, 2)
    assert tail_bound(a, 0.5, 2) <= log_mass < tail_bound(0.98 * a, 0.5, 2)
    with pytest.raises(ValueError, match="half_width"):
        latent_quadrature(lambda z: z, torch.zeros(1, 2, dtype=F64), 1.0, half_width=-1.0)


def test_half_width_for_tail_uses_the_data_and_latent_sizes() -> None:
    """The box is the smallest for the given D and d (not the defaults): checked for D = 5, d = 3."""
    log_mass = -30.0
    a = half_width_for_tail(log_mass, 0.4, 5, 3)
    assert tail_bound(a, 0.4, 5, 3) <= log_mass < tail_bound(0.98 * a, 0.4, 5, 3)


def test_the_reported_tail_bound_is_for_the_latent_size_used() -> None:
    """With d = 1 the rule's tail bound is tail_bound(a, sigma, D, 1) relative to p(x), not the 2-D default."""
    g = torch.Generator().manual_seed(3)
    weight = torch.randn(2, 1, generator=g, dtype=F64)
    x = torch.randn(3, 2, generator=g, dtype=F64)

    def decoder(z: torch.Tensor) -> torch.Tensor:
        return z @ weight.T

    quad = latent_quadrature(decoder, x, 0.5, latent_dim=1, half_width=6.0, tol=1e-6)
    expected = tail_bound(6.0, 0.5, 2, 1) - quad.log_evidence
    torch.testing.assert_close(quad.log_tail_bound, expected, rtol=0, atol=1e-12)


def test_encoder_outputs_in_another_dtype_give_the_same_rule() -> None:
    """q's mean and log-variance are used in x's dtype: float32 encoder outputs with float64 data give the float64 rule."""
    decoder, x = linear_model(2, n=3)
    mu = torch.tensor([[0.1, -0.2], [0.3, 0.0], [-0.5, 0.4]], dtype=F64)
    logvar = torch.full((3, 2), -2.0, dtype=F64)
    a = latent_quadrature(decoder, x, 0.3, q_mean=mu.float().double(), q_logvar=logvar.float().double(), tol=1e-5)
    b = latent_quadrature(decoder, x, 0.3, q_mean=mu.float(), q_logvar=logvar.float(), tol=1e-5)
    assert b.log_evidence.dtype == F64
    torch.testing.assert_close(b.log_evidence, a.log_evidence, rtol=0, atol=0)


def test_neighbour_max_spreads_a_spike_to_its_neighbours_on_every_axis() -> None:
    values = torch.zeros(2, 5, 5)
    values[1, 2, 3] = 1.0
    spread = _neighbour_max(values)
    expected = torch.zeros(2, 5, 5)
    expected[1, 1:4, 2:5] = 1.0
    assert torch.equal(spread, expected)


def test_children_offsets_are_the_sub_cell_midpoints_in_the_requested_dtype() -> None:
    offsets = _children_offsets(3, 2, F64, torch.device("cpu"))
    axis = torch.tensor([-1 / 3, 0.0, 1 / 3], dtype=F64)
    assert offsets.dtype == F64
    torch.testing.assert_close(offsets, torch.cartesian_prod(axis, axis), rtol=0, atol=1e-15)


def test_the_coarse_lattices_error_estimate_is_its_change_from_every_second_node() -> None:
    """Without refinement, the error estimate is |log p(x) on the G-lattice - log p(x) on the lattice of every
    second node per axis (cells 2^d times larger)|, computed here directly."""
    decoder, x = linear_model(4, n=3)
    quad = latent_quadrature(decoder, x, 0.3, half_width=5.0, points_per_axis=20, max_levels=0)
    nodes, cell = latent_grid(5.0, 20, 2, dtype=F64)
    log_joint = grid_log_joint(decoder, x, nodes, 0.3)                        # (3, 400)
    fine = torch.logsumexp(log_joint, dim=1) + math.log(cell)
    coarse = torch.logsumexp(log_joint.reshape(3, 20, 20)[:, ::2, ::2].reshape(3, -1), dim=1) + math.log(4 * cell)
    torch.testing.assert_close(quad.log_evidence, fine)
    torch.testing.assert_close(quad.error_estimate, (fine - coarse).abs())


def test_half_width_for_tail_brackets_with_the_given_sizes() -> None:
    """With a small noise level the data size moves the bound by nats: the search must use D and d throughout."""
    a = half_width_for_tail(-10.0, 0.05, 20, 3)
    assert tail_bound(a, 0.05, 20, 3) <= -10.0 < tail_bound(0.98 * a, 0.05, 20, 3)
