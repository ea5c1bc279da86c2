"""Tests for labcode.estimators against closed forms, SciPy quadrature and brute-force loops."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy import integrate, stats
from torch.distributions import Normal

import labcode as lc
from labcode.estimators import (
    estimator_spread,
    gaussian_log_moment_ratio,
    grid_log_evidence,
    grid_log_joint,
    latent_grid,
    linear_gaussian_log_evidence,
    linear_gaussian_posterior,
    log_moment_ratio,
    prior_log_weights,
    repeated_estimates,
    time_log_marginal,
)


class Linear(torch.nn.Module):
    """f(z) = W z + b as an nn.Module, so the estimators can read its latent size."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.weight, self.bias = weight, bias
        self.latent_dim = weight.shape[1]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z @ self.weight.T + self.bias


def random_linear(seed: int, data_dim: int, latent_dim: int, dtype: torch.dtype = torch.float64) -> Linear:
    g = torch.Generator().manual_seed(seed)
    return Linear(torch.randn(data_dim, latent_dim, generator=g, dtype=dtype),
                  torch.randn(data_dim, generator=g, dtype=dtype))


# ----------------------------------------------------------------------------- prior-sampling weights

def test_prior_log_weights_match_normal_log_prob(device: torch.device) -> None:
    decoder = random_linear(0, 2, 2, torch.float32)
    decoder.weight, decoder.bias = decoder.weight.to(device), decoder.bias.to(device)
    x = torch.tensor([[0.3, -1.0], [2.0, 0.5]], device=device)
    log_w = prior_log_weights(decoder, x, 500, 0.4, generator=torch.Generator().manual_seed(7))
    z = lc.sample_prior(500, 2, generator=torch.Generator().manual_seed(7)).to(device)
    expected = Normal(decoder(z)[None], 0.4).log_prob(x[:, None]).sum(-1)
    assert log_w.shape == (2, 500)
    assert log_w.device.type == device.type
    torch.testing.assert_close(log_w, expected, rtol=1e-5, atol=1e-4)


def test_prior_log_weights_across_chunks() -> None:
    """More samples than one chunk holds: the chunks must join seamlessly."""
    decoder = random_linear(1, 2, 2, torch.float32)
    x = torch.zeros(3, 2)
    n = 800_000                              # one chunk holds 2**22 // 6 = 699050 samples here
    log_w = prior_log_weights(decoder, x, n, 0.5, generator=torch.Generator().manual_seed(2))
    z = lc.sample_prior(n, 2, generator=torch.Generator().manual_seed(2))
    tail = slice(n - 1000, n)
    expected = Normal(decoder(z[tail])[None], 0.5).log_prob(x[:, None]).sum(-1)
    torch.testing.assert_close(log_w[:, tail], expected, rtol=1e-5, atol=1e-4)


def test_prior_log_weights_check_inputs() -> None:
    decoder = random_linear(0, 2, 2, torch.float32)
    with pytest.raises(ValueError, match="n_samples"):
        prior_log_weights(decoder, torch.zeros(1, 2), 0, 0.5)
    with pytest.raises(ValueError, match="noise_std"):
        prior_log_weights(decoder, torch.zeros(1, 2), 5, -0.5)
    with pytest.raises(ValueError, match="x must"):
        prior_log_weights(decoder, torch.zeros(2), 5, 0.5)


# ----------------------------------------------------------------------------- repeated estimates and ESS

def test_repeated_estimates_match_a_loop() -> None:
    log_w = torch.randn(2, 23, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 3
    log_est, ess = repeated_estimates(log_w, 5)
    assert log_est.shape == ess.shape == (2, 4)            # 23 // 5 blocks, 3 weights dropped
    for i in range(2):
        for r in range(4):
            w = log_w[i, 5 * r:5 * (r + 1)].exp()
            assert math.isclose(log_est[i, r].item(), math.log(w.mean().item()), rel_tol=1e-12)
            assert math.isclose(ess[i, r].item(), (w.sum() ** 2 / (w ** 2).sum()).item(), rel_tol=1e-12)


def test_ess_extremes() -> None:
    equal = torch.full((1, 8), -700.0, dtype=torch.float64)          # far below exp's range: still exact
    one = torch.tensor([[0.0, -math.inf, -math.inf, -math.inf]], dtype=torch.float64)
    assert math.isclose(repeated_estimates(equal, 8)[1].item(), 8.0, rel_tol=1e-12)
    assert repeated_estimates(one, 4)[1].item() == 1.0
    assert repeated_estimates(equal, 8)[0].item() == pytest.approx(-700.0, abs=1e-12)


@given(st.integers(0, 10_000), st.integers(1, 30), st.floats(0.1, 50.0))
def test_ess_lies_between_one_and_k(seed: int, k: int, scale: float) -> None:
    log_w = scale * torch.randn(1, 3 * k, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    ess = repeated_estimates(log_w, k)[1]
    assert (ess >= 1 - 1e-9).all() and (ess <= k + 1e-9).all()
    torch.testing.assert_close(lc.effective_sample_size(log_w[:, :k]), ess[:, 0])


def test_repeated_estimates_check_inputs() -> None:
    with pytest.raises(ValueError, match="n_samples"):
        repeated_estimates(torch.zeros(1, 5), 6)
    with pytest.raises(ValueError, match="log_weights"):
        repeated_estimates(torch.tensor([[0.0, math.nan]]), 1)
    with pytest.raises(ValueError, match="log_weights"):
        repeated_estimates(torch.tensor([[0.0, math.inf]]), 1)


def test_prior_sampling_is_unbiased_and_log_is_biased_down() -> None:
    """E[p_hat] = p(x) within 4 standard errors; E[log p_hat] < log p(x) (Jensen)."""
    decoder = random_linear(3, 2, 2)
    x = torch.tensor([[0.5, -0.2]], dtype=torch.float64)
    log_px = linear_gaussian_log_evidence(x, decoder.weight, decoder.bias, 0.5).item()
    log_w = prior_log_weights(decoder, x, 400_000, 0.5, generator=torch.Generator().manual_seed(4))
    log_est, _ = repeated_estimates(log_w, 20)
    ratio = (log_est - log_px).exp()[0]                     # p_hat / p(x), 20000 runs
    assert abs(ratio.mean().item() - 1) < 4 * ratio.std().item() / math.sqrt(len(ratio))
    assert log_est.mean().item() < log_px


def test_relative_variance_matches_moment_ratio() -> None:
    """Var[p_hat]/p^2 = (C - 1)/K, with C from the closed form of a Gaussian posterior (d = 1)."""
    decoder = random_linear(5, 1, 1)
    x = torch.tensor([[1.2]], dtype=torch.float64)
    mean, cov = linear_gaussian_posterior(x, decoder.weight, decoder.bias, 0.3)
    c = gaussian_log_moment_ratio(mean, cov.diagonal().sqrt()[None]).exp().item()
    log_px = linear_gaussian_log_evidence(x, decoder.weight, decoder.bias, 0.3).item()
    log_w = prior_log_weights(decoder, x, 2_000_000, 0.3, generator=torch.Generator().manual_seed(6))
    k = 50
    ratio = (repeated_estimates(log_w, k)[0] - log_px).exp()[0]
    assert ratio.var().item() == pytest.approx((c - 1) / k, rel=0.1)
    assert log_moment_ratio(log_w).exp().item() == pytest.approx(c, rel=0.05)


def test_log_moment_ratio_is_k_over_ess() -> None:
    log_w = torch.randn(4, 100, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 4
    torch.testing.assert_close(log_moment_ratio(log_w), math.log(100) - lc.effective_sample_size(log_w).log())


# ----------------------------------------------------------------------------- spread study

def test_estimator_spread_summaries() -> None:
    log_w = torch.randn(2, 1000, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 2
    study = estimator_spread(log_w, [10, 100, 1000], max_repeats=50)
    assert study.repeats == [50, 10, 1]
    assert study.log_estimate_quantiles.shape == (2, 3, 3)
    assert study.ess_quantiles.shape == (2, 3, 3)
    q = study.log_estimate_quantiles
    assert (q[..., 0] <= q[..., 1]).all() and (q[..., 1] <= q[..., 2]).all()
    log_est, _ = repeated_estimates(log_w[:, :500], 10)
    torch.testing.assert_close(study.log_estimate_mean[:, 0], log_est.mean(dim=1))
    torch.testing.assert_close(study.log_estimate_std[:, 1], repeated_estimates(log_w, 100)[0].std(dim=1))
    assert torch.isnan(study.log_estimate_std[:, 2]).all()          # one run: no spread
    with pytest.raises(ValueError, match="probs"):
        estimator_spread(log_w, [10], probs=(0.1, 1.5))
    with pytest.raises(ValueError, match="sample_sizes"):
        estimator_spread(log_w, [])


def test_time_log_marginal_returns_one_positive_time_per_k() -> None:
    decoder = random_linear(0, 2, 2, torch.float32)
    times = time_log_marginal(decoder, torch.zeros(2, 2), [10, 1000], 0.5, repeats=2,
                              generator=torch.Generator().manual_seed(0))
    assert len(times) == 2 and all(t > 0 for t in times)
    with pytest.raises(ValueError, match="repeats"):
        time_log_marginal(decoder, torch.zeros(2, 2), [10], 0.5, repeats=0)


# ----------------------------------------------------------------------------- Gaussian moment ratio

@pytest.mark.parametrize(("m", "s"), [(0.0, 1.0), (0.0, 0.3), (1.5, 0.2), (-2.0, 1.2), (0.7, 0.05)])
def test_gaussian_moment_ratio_against_quadrature(m: float, s: float) -> None:
    def integrand(z: float) -> float:                   # pi(z)^2 / p(z), in log space against underflow
        return math.exp(2 * stats.norm.logpdf(z, m, s) - stats.norm.logpdf(z))

    width = 12 / math.sqrt(1 / s**2 - 0.5)                # the integrand is a Gaussian bump of this scale
    centre = m / (1 - s**2 / 2)
    reference, _ = integrate.quad(integrand, centre - width, centre + width, points=[centre], limit=200)
    got = gaussian_log_moment_ratio(torch.tensor([m], dtype=torch.float64), torch.tensor([s], dtype=torch.float64))
    assert got.exp().item() == pytest.approx(reference, rel=1e-8)


@given(st.lists(st.tuples(st.floats(-3, 3), st.floats(0.05, 1.4)), min_size=1, max_size=6))
def test_gaussian_moment_ratio_is_a_sum_of_non_negative_terms(pairs: list[tuple[float, float]]) -> None:
    mean = torch.tensor([m for m, _ in pairs], dtype=torch.float64)
    std = torch.tensor([s for _, s in pairs], dtype=torch.float64)
    total = gaussian_log_moment_ratio(mean, std)
    terms = torch.stack([gaussian_log_moment_ratio(mean[j:j + 1], std[j:j + 1]) for j in range(len(pairs))])
    assert (terms >= -1e-12).all()
    torch.testing.assert_close(total, terms.sum())


def test_gaussian_moment_ratio_checks() -> None:
    assert gaussian_log_moment_ratio(torch.zeros(3), torch.ones(3)).item() == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(ValueError, match="std must be < sqrt"):
        gaussian_log_moment_ratio(torch.zeros(1), torch.tensor([1.5]))
    with pytest.raises(ValueError, match="std must be > 0"):
        gaussian_log_moment_ratio(torch.zeros(1), torch.tensor([0.0]))


# ----------------------------------------------------------------------------- linear-Gaussian model

def test_linear_gaussian_evidence_against_quadrature() -> None:
    w, b, sigma, x = 1.7, -0.4, 0.25, 0.9

    def joint(z: float) -> float:
        return stats.norm.pdf(x, w * z + b, sigma) * stats.norm.pdf(z)

    reference, _ = integrate.quad(joint, -12, 12, points=[(x - b) / w], limit=200)
    got = linear_gaussian_log_evidence(torch.tensor([[x]], dtype=torch.float64), torch.tensor([[w]], dtype=torch.float64),
                                       torch.tensor([b], dtype=torch.float64), sigma)
    assert got.item() == pytest.approx(math.log(reference), abs=1e-9)


def test_linear_gaussian_posterior_against_gaussian_conditioning(dtype: torch.dtype, tol: dict[str, float]) -> None:
    """m = W^T (W W^T + s^2 I)^{-1} (x - b), S = I - W^T (W W^T + s^2 I)^{-1} W (joint-Gaussian conditioning)."""
    decoder = random_linear(8, 3, 2)
    sigma = 0.6
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    marginal_cov = decoder.weight @ decoder.weight.T + sigma ** 2 * torch.eye(3, dtype=torch.float64)
    gain = decoder.weight.T @ torch.linalg.inv(marginal_cov)
    mean_ref = (x - decoder.bias) @ gain.T
    cov_ref = torch.eye(2, dtype=torch.float64) - gain @ decoder.weight
    mean, cov = linear_gaussian_posterior(x.to(dtype), decoder.weight.to(dtype), decoder.bias.to(dtype), sigma)
    torch.testing.assert_close(mean, mean_ref.to(dtype), rtol=tol["rtol"] * 10, atol=tol["atol"] * 10)
    torch.testing.assert_close(cov, cov_ref.to(dtype), rtol=tol["rtol"] * 10, atol=tol["atol"] * 10)
    log_px = linear_gaussian_log_evidence(x, decoder.weight, decoder.bias, sigma)
    reference = stats.multivariate_normal(decoder.bias.numpy(), marginal_cov.numpy()).logpdf(x.numpy())
    np.testing.assert_allclose(log_px.numpy(), reference, rtol=1e-10)


def test_linear_gaussian_checks_shapes() -> None:
    with pytest.raises(ValueError, match="weight must be"):
        linear_gaussian_log_evidence(torch.zeros(1, 2), torch.zeros(3, 2), torch.zeros(2), 1.0)
    with pytest.raises(ValueError, match="noise_std"):
        linear_gaussian_posterior(torch.zeros(1, 2), torch.zeros(2, 2), torch.zeros(2), 0.0)


# ----------------------------------------------------------------------------- grids

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
    exact = linear_gaussian_log_evidence(x, decoder.weight, decoder.bias, 0.4)
    torch.testing.assert_close(grid_log_evidence(log_joint, cell), exact, rtol=0, atol=1e-8)
    mean, _ = linear_gaussian_posterior(x, decoder.weight, decoder.bias, 0.4)
    torch.testing.assert_close(torch.softmax(log_joint, dim=1) @ nodes, mean, rtol=0, atol=1e-8)


def test_grid_checks() -> None:
    with pytest.raises(ValueError, match="cell_volume"):
        grid_log_evidence(torch.zeros(3), 0.0)
    with pytest.raises(ValueError, match="nodes"):
        grid_log_joint(random_linear(0, 2, 2), torch.zeros(1, 2, dtype=torch.float64), torch.zeros(4), 0.5)
