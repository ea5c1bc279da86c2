"""Tests for labcode.exact against closed forms, SciPy quadrature and the definitions."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

import labcode as lc
from labcode.diffusion import alpha_bar_schedule, linear_beta_schedule, prior_matching_kl
from labcode.estimators import latent_grid, linear_gaussian_log_evidence, linear_gaussian_posterior
from labcode.exact import (
    GaussianMixture2D,
    encoder_log_density,
    exact_log_moment_ratio,
    exact_terms,
    fit_gaussian_kl_2d,
    half_width_for_tail,
    importance_log_weights,
    iwae_bound,
    latent_quadrature,
    lattice_kl,
    leave_one_out_bound,
    posterior_on_grid,
    posterior_zooms,
    prior_log_density,
    prior_matching_sweep,
    prior_sampling_log_moment_ratio,
    tail_bound,
    truncated_log_moment_ratio,
    vae_exact_terms,
    vae_log_evidence,
    vae_quadrature,
)

F64 = torch.float64


class Linear(torch.nn.Module):
    """f(z) = W z + b."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.weight, self.bias = weight, bias

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z @ self.weight.T + self.bias


def linear_model(seed: int = 0, n: int = 6, sigma: float = 0.3) -> tuple[Linear, torch.Tensor]:
    """A random 2-D linear decoder and n points drawn from its model."""
    g = torch.Generator().manual_seed(seed)
    weight, bias = torch.randn(2, 2, generator=g, dtype=F64), torch.randn(2, generator=g, dtype=F64)
    z = torch.randn(n, 2, generator=g, dtype=F64)
    x = z @ weight.T + bias + sigma * torch.randn(n, 2, generator=g, dtype=F64)
    return Linear(weight, bias), x


def gaussian_moment_ratio(mean: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
    """C = exp(m^T (2I - S)^-1 m) / sqrt(det S det(2I - S)) (the chapter's proposition), per row of mean."""
    two_minus = 2 * torch.eye(2, dtype=F64) - cov
    quad = torch.einsum("bi,ij,bj->b", mean, torch.linalg.inv(two_minus), mean)
    return torch.exp(quad) / torch.sqrt(torch.det(cov) * torch.det(two_minus))


@pytest.fixture(scope="module")
def small_vae() -> tuple[lc.VAE, torch.Tensor]:
    """A quickly trained spiral VAE (float32) and its data."""
    data = lc.make_spiral(200, 0.1, generator=torch.Generator().manual_seed(0))
    model, _ = lc.fit_vae(data, lc.VAEConfig(steps=300, lr=3e-2, seed=0))
    return model, data


# ----------------------------------------------------------------------------- the box and its tail

def test_tail_bound_matches_normal_tail() -> None:
    a, sigma = 3.0, 0.5
    expected = -math.log(2 * math.pi * sigma**2) + math.log(1 - (1 - 2 * stats.norm.sf(a)) ** 2)
    assert tail_bound(a, sigma, 2, 2) == pytest.approx(expected, rel=1e-12)
    assert tail_bound(8.0, sigma, 2, 2) < tail_bound(7.0, sigma, 2, 2)
    with pytest.raises(ValueError, match="half_width"):
        tail_bound(-1.0, sigma, 2)
    with pytest.raises(ValueError, match="noise_std"):
        tail_bound(3.0, 0.0, 2)


# ----------------------------------------------------------------------------- the evidence by quadrature

@pytest.mark.parametrize("sigma", [0.3, 0.05])
def test_quadrature_matches_linear_gaussian_closed_form(sigma: float) -> None:
    decoder, x = linear_model(1, sigma=sigma)
    quad = latent_quadrature(decoder, x, sigma, tol=1e-6)
    exact = linear_gaussian_log_evidence(x, decoder.weight, decoder.bias, sigma)
    assert (quad.log_evidence - exact).abs().max().item() <= 1e-4
    assert (quad.log_tail_bound < math.log(1e-6)).all()
    mean, cov = linear_gaussian_posterior(x, decoder.weight, decoder.bias, sigma)
    post_mean, post_cov = quad.posterior_moments()
    torch.testing.assert_close(post_mean, mean, rtol=0, atol=1e-5)
    torch.testing.assert_close(post_cov, cov.expand_as(post_cov), rtol=0, atol=1e-5)


def test_moment_ratio_matches_closed_form() -> None:
    """The exact C(x) of the prior-sampling estimator, against the chapter's Gaussian formula."""
    sigma = 0.3
    decoder, x = linear_model(2, sigma=sigma)
    quad = latent_quadrature(decoder, x, sigma, tol=1e-6)
    mean, cov = linear_gaussian_posterior(x, decoder.weight, decoder.bias, sigma)
    log_c = exact_log_moment_ratio(quad, prior_log_density(quad))
    torch.testing.assert_close(log_c, torch.log(gaussian_moment_ratio(mean, cov)), rtol=0, atol=1e-4)


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
    mean, cov = linear_gaussian_posterior(x, decoder.weight, decoder.bias, sigma)
    logvar = torch.log(cov.diagonal()).expand_as(mean).clone()
    quad = latent_quadrature(decoder, x, sigma, q_mean=mean, q_logvar=logvar, tol=1e-6, max_levels=10)
    exact = linear_gaussian_log_evidence(x, decoder.weight, decoder.bias, sigma)
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


# ----------------------------------------------------------------------------- the ELBO and its gap

def test_exact_terms_match_linear_closed_forms() -> None:
    """Reconstruction term and KL(q || posterior) of a diagonal q, against closed forms."""
    sigma = 0.3
    decoder, x = linear_model(4, n=4, sigma=sigma)
    g = torch.Generator().manual_seed(9)
    post_mean, post_cov = linear_gaussian_posterior(x, decoder.weight, decoder.bias, sigma)
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


# ----------------------------------------------------------------------------- importance sampling and IWAE

def test_importance_log_weights_follow_the_definition(small_vae) -> None:
    model, data = small_vae
    x = data[[5, 150]]
    log_w = importance_log_weights(model, x, 50, generator=torch.Generator().manual_seed(4))
    eps = torch.randn((2, 50, 2), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        mu, logvar = model.encode(x)
        std = torch.exp(0.5 * logvar)
        z = mu[:, None] + std[:, None] * eps
        q = torch.distributions.Normal(mu[:, None], std[:, None]).log_prob(z).sum(-1)
        prior = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
        lik = torch.distributions.Normal(model.decode(z), model.noise_std).log_prob(x[:, None]).sum(-1)
    torch.testing.assert_close(log_w, lik + prior - q, rtol=1e-5, atol=1e-4)


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


def test_iwae_monotonicity_with_common_random_numbers() -> None:
    """Burda's inequality holds sample by sample, and L_K increases in expectation for lognormal weights."""
    g = torch.Generator().manual_seed(6)
    log_w = 1.5 * torch.randn(2000, 9, generator=g, dtype=F64)
    all_mean = torch.logsumexp(log_w, -1) - math.log(9)
    assert (all_mean >= leave_one_out_bound(log_w) - 1e-12).all()
    # lognormal weights: E[w] = exp(s^2 / 2), so log p = s^2 / 2
    s = 1.0
    pool = s * torch.randn(1, 2**20, generator=g, dtype=F64)
    estimates = [iwae_bound(pool, k) for k in (1, 2, 4, 8, 16, 64)]
    values = [e[0].item() for e in estimates]
    assert values[0] == pytest.approx(pool.mean().item())
    assert all(b > a for a, b in itertools.pairwise(values)), values
    assert values[-1] < s**2 / 2
    with pytest.raises(ValueError, match="log_weights"):
        leave_one_out_bound(torch.zeros(3, 1))


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
    mean, cov = linear_gaussian_posterior(x, decoder.weight, decoder.bias, sigma)
    torch.testing.assert_close(log_c[:, -1], torch.log(gaussian_moment_ratio(mean, cov)), rtol=0, atol=1e-4)


# ----------------------------------------------------------------------------- VAE helpers

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


def test_half_width_for_tail_is_the_smallest_box() -> None:
    log_mass = -40.0
    a = half_width_for_tail(log_mass, 0.5, 2)
    assert tail_bound(a, 0.5, 2) <= log_mass < tail_bound(0.98 * a, 0.5, 2)
    with pytest.raises(ValueError, match="half_width"):
        latent_quadrature(lambda z: z, torch.zeros(1, 2, dtype=F64), 1.0, half_width=-1.0)


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


# ----------------------------------------------------------------------------- two-dimensional Gaussian fits

def mixture() -> GaussianMixture2D:
    return GaussianMixture2D(torch.tensor([0.6, 0.4], dtype=F64), torch.tensor([[-2.0, -1.0], [2.0, 1.0]], dtype=F64),
                             torch.tensor([[[0.5, 0.2], [0.2, 0.4]], [[0.4, -0.15], [-0.15, 0.3]]], dtype=F64))


def test_mixture_density_and_moments() -> None:
    target = mixture()
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


def test_forward_fit_matches_moments_and_reverse_fits_find_each_mode() -> None:
    target = mixture()
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


# ----------------------------------------------------------------------------- diffusion's prior-matching term

def test_prior_matching_sweep() -> None:
    x0 = lc.make_spiral(100, 0.1, generator=torch.Generator().manual_seed(0))
    kl = prior_matching_sweep(x0, [10, 100, 1000], [0.01, 0.02])
    assert kl.shape == (2, 3)
    abar = alpha_bar_schedule(linear_beta_schedule(1000, 1e-4, 0.02))[-1]
    assert kl[1, 2].item() == pytest.approx(prior_matching_kl(x0.double(), abar).mean().item(), rel=1e-12)
    assert (kl[:, 1:] < kl[:, :-1]).all()
    assert (kl[1] < kl[0]).all()
    with pytest.raises(ValueError, match="n_steps"):
        prior_matching_sweep(x0, [1], [0.02])
