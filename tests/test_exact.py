"""Tests for labcode.exact, against closed forms, torch.distributions, SciPy quadrature and brute force."""


from __future__ import annotations

import itertools
import math

import pytest
import torch

import labcode as lc
from helpers import linear_model
from labcode.exact import (
    encoder_log_density,
    exact_log_moment_ratio,
    exact_terms,
    posterior_on_grid,
    posterior_zooms,
    prior_log_density,
    prior_sampling_log_moment_ratio,
    truncated_log_moment_ratio,
    vae_exact_terms,
    vae_log_evidence,
    vae_quadrature,
)
from labcode.gaussian import LinearGaussianModel
from labcode.importance import importance_log_weights, iwae_bound
from labcode.lattice import latent_grid
from labcode.quadrature import latent_quadrature

F64 = torch.float64


def gaussian_moment_ratio(mean: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
    """C = exp(m^T (2I - S)^-1 m) / sqrt(det S det(2I - S)) (the chapter's proposition), per row of mean."""
    two_minus = 2 * torch.eye(2, dtype=F64) - cov
    quad = torch.einsum("bi,ij,bj->b", mean, torch.linalg.inv(two_minus), mean)
    return torch.exp(quad) / torch.sqrt(torch.det(cov) * torch.det(two_minus))


def test_moment_ratio_matches_closed_form() -> None:
    """The exact C(x) of the prior-sampling estimator, against the chapter's Gaussian formula."""
    sigma = 0.3
    decoder, x = linear_model(2, sigma=sigma)
    quad = latent_quadrature(decoder, x, sigma, tol=1e-6)
    mean, cov = LinearGaussianModel(decoder.weight, decoder.bias, sigma).posterior(x)
    log_c = exact_log_moment_ratio(quad, prior_log_density(quad))
    torch.testing.assert_close(log_c, torch.log(gaussian_moment_ratio(mean, cov)), rtol=0, atol=1e-4)


def test_exact_terms_match_linear_closed_forms() -> None:
    """Reconstruction term and KL(q || posterior) of a diagonal q, against closed forms."""
    sigma = 0.3
    decoder, x = linear_model(4, n=4, sigma=sigma)
    g = torch.Generator().manual_seed(9)
    post_mean, post_cov = LinearGaussianModel(decoder.weight, decoder.bias, sigma).posterior(x)
    q_mean = post_mean + 0.1 * torch.randn(post_mean.shape, generator=g, dtype=F64)
    q_logvar = torch.log(0.5 * post_cov.diagonal()).expand_as(q_mean) + 0.2 * torch.randn(q_mean.shape, generator=g, dtype=F64)
    quad = latent_quadrature(decoder, x, sigma, q_mean=q_mean, q_logvar=q_logvar, tol=1e-7)
    terms = exact_terms(quad, q_mean, q_logvar)
    w = decoder.weight
    residual = x - q_mean @ w.T - decoder.bias
    trace = torch.einsum("ij,bj,ij->b", w, torch.exp(q_logvar), w)
    reconstruction = -math.log(2 * math.pi * sigma**2) - ((residual**2).sum(1) + trace) / (2 * sigma**2)
    q = torch.distributions.MultivariateNormal(q_mean, torch.diag_embed(torch.exp(q_logvar)))
    posterior = torch.distributions.MultivariateNormal(post_mean, post_cov.expand(len(x), 2, 2))
    torch.testing.assert_close(terms.reconstruction, reconstruction, rtol=0, atol=1e-6)
    torch.testing.assert_close(terms.kl_posterior, torch.distributions.kl_divergence(q, posterior), rtol=0, atol=1e-5)
    torch.testing.assert_close(terms.q_mass, torch.ones(len(x), dtype=F64), rtol=0, atol=1e-8)


def test_identity_holds_for_a_trained_vae(small_vae) -> None:
    """ELBO + KL(q || p(z|x)) == log p(x) to quadrature accuracy; the gap is non-negative; ELBO agrees with MC."""
    model, data = small_vae
    x = data[::20]
    terms = vae_exact_terms(model, x, tol=1e-4)
    assert terms.discrepancy.abs().max().item() <= 1e-6
    assert (terms.kl_posterior >= -1e-6).all()
    assert (terms.elbo <= terms.log_evidence + 1e-6).all()
    assert (terms.log_tail_bound < math.log(1e-6)).all()
    mc = lc.evaluate_vae(model, x, n_samples=4000, generator=torch.Generator().manual_seed(1))
    se = 4 * (mc["reconstruction"] - mc["reconstruction"].mean()).std() / math.sqrt(4000) + 1e-3
    assert (mc["elbo"].double() - terms.elbo).abs().max().item() <= 0.05 + se.item()


def test_importance_sampling_is_unbiased_and_iwae_bounds_increase(small_vae) -> None:
    """E_q[w] = p(x); L_1 <= L_10 <= L_100 <= log p(x) (within standard errors); L_1 = exact ELBO."""
    model, data = small_vae
    x = data[[30, 170]]
    terms = vae_exact_terms(model, x, tol=1e-5)
    log_w = importance_log_weights(model, x, 200_000, generator=torch.Generator().manual_seed(5)).double()
    n = log_w.shape[1]
    mean_w = torch.logsumexp(log_w, 1) - math.log(n)
    assert (mean_w - terms.log_evidence).abs().max().item() < 0.02
    bounds = [iwae_bound(log_w, k) for k in (1, 10, 100)]
    for (lo, se_lo), (hi, se_hi) in itertools.pairwise(bounds):
        assert (hi > lo - 3 * (se_lo + se_hi)).all()
    top, se_top = bounds[-1]
    assert (top <= terms.log_evidence + 3 * se_top).all()
    est, se = bounds[0]
    assert ((est - terms.elbo).abs() <= 4 * se).all()


def test_truncated_moment_ratio_grows_to_the_full_integral() -> None:
    """The box integral of pi^2 / r grows with the box and reaches the full value once the box holds the mass."""
    sigma = 0.3
    decoder, x = linear_model(5, n=2, sigma=sigma)
    nodes, cell = latent_grid(6.0, 240, dtype=F64)
    quad = latent_quadrature(decoder, x, sigma, tol=1e-6)
    log_post = posterior_on_grid(decoder, x, sigma, quad.log_evidence, nodes)
    log_prior = -0.5 * (nodes**2).sum(1) - math.log(2 * math.pi)
    log_c = truncated_log_moment_ratio(log_post, log_prior.expand_as(log_post), nodes, cell, [1.0, 3.0, 6.0])
    assert (log_c[:, 1:] >= log_c[:, :-1]).all()
    mean, cov = LinearGaussianModel(decoder.weight, decoder.bias, sigma).posterior(x)
    torch.testing.assert_close(log_c[:, -1], torch.log(gaussian_moment_ratio(mean, cov)), rtol=0, atol=1e-4)


@pytest.mark.parametrize("seed", [0, 1])
def test_identity_holds_for_an_untrained_vae(seed: int) -> None:
    """A broad, off-centre q (an untrained VAE) must be held by the box: the identity to the rule's own error.

    Before the box followed q, seed 1's q at the outer point (standard deviation 3.4) lost 5 % of its
    mass outside [-7, 7]^2 and ELBO + KL(q || p(z|x)) - log p(x) was 0.26 nats.
    """
    model = lc.VAE(generator=torch.Generator().manual_seed(seed)).double()
    x = lc.lab_data()[[0, 150, 300, 450]].double()
    quad, mu, logvar = vae_quadrature(model, x)
    terms = exact_terms(quad, mu, logvar)
    reach = (mu.abs() + 8 * torch.exp(0.5 * logvar)).max().item()
    assert quad.half_width >= reach
    assert (quad.log_tail_bound <= math.log(1e-4)).all()
    assert (terms.discrepancy.abs() <= torch.clamp(terms.error_estimate, min=1e-12)).all(), terms.discrepancy.abs().max()
    assert ((terms.q_mass - 1).abs() * terms.log_evidence.abs().clamp(min=1) <= 1e-4).all()


def test_vae_helpers(small_vae) -> None:
    model, data = small_vae
    x = data[[0, 100]]
    quad = vae_log_evidence(model, x, tol=1e-4)
    quad_q, mu, logvar = vae_quadrature(model, x, tol=1e-4)
    torch.testing.assert_close(quad.log_evidence, quad_q.log_evidence, rtol=0, atol=1e-3)
    assert quad.half_width >= 8.0
    assert encoder_log_density(quad_q, mu, logvar).shape == quad_q.log_joint.shape
    # a larger noise level makes the posterior closer to the prior: C(x) falls
    c_small, c_large = (prior_sampling_log_moment_ratio(model, x, s, tol=1e-4) for s in (0.5, 2.0))
    assert (c_small > c_large).all() and (c_large > 0).all()
    mean, cov = quad_q.posterior_moments()
    zooms = posterior_zooms(model, x.double(), model.noise_std.detach().double(), quad_q.log_evidence, mean, cov,
                            points_per_axis=120, width=6.0)
    for a1, a2, log_post in zooms:
        mass = torch.exp(log_post).sum() * (a1[1] - a1[0]) * (a2[1] - a2[0])
        assert log_post.shape == (120, 120)
        assert 0.9 < mass.item() <= 1.01
    with pytest.raises(ValueError, match="noise_scale"):
        vae_quadrature(model, x, noise_scale=0.0)
