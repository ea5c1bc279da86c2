"""Tests for labcode.importance, against closed forms, torch.distributions, SciPy quadrature and brute force."""


from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy import integrate, stats

import labcode as lc
from helpers import random_linear
from labcode.gaussian import LinearGaussianModel
from labcode.importance import (
    estimator_spread,
    gaussian_log_moment_ratio,
    importance_log_weights,
    iwae_bound,
    leave_one_out_bound,
    log_moment_ratio,
    repeated_estimates,
)
from labcode.likelihood import prior_log_weights


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
    log_px = LinearGaussianModel(decoder.weight, decoder.bias, 0.5).log_evidence(x).item()
    log_w = prior_log_weights(decoder, x, 400_000, 0.5, generator=torch.Generator().manual_seed(4))
    log_est, _ = repeated_estimates(log_w, 20)
    ratio = (log_est - log_px).exp()[0]                     # p_hat / p(x), 20000 runs
    assert abs(ratio.mean().item() - 1) < 4 * ratio.std().item() / math.sqrt(len(ratio))
    assert log_est.mean().item() < log_px


def test_relative_variance_matches_moment_ratio() -> None:
    """Var[p_hat]/p^2 = (C - 1)/K, with C from the closed form of a Gaussian posterior (d = 1)."""
    decoder = random_linear(5, 1, 1)
    x = torch.tensor([[1.2]], dtype=torch.float64)
    mean, cov = LinearGaussianModel(decoder.weight, decoder.bias, 0.3).posterior(x)
    c = gaussian_log_moment_ratio(mean, cov.diagonal().sqrt()[None]).exp().item()
    log_px = LinearGaussianModel(decoder.weight, decoder.bias, 0.3).log_evidence(x).item()
    log_w = prior_log_weights(decoder, x, 2_000_000, 0.3, generator=torch.Generator().manual_seed(6))
    k = 50
    ratio = (repeated_estimates(log_w, k)[0] - log_px).exp()[0]
    assert ratio.var().item() == pytest.approx((c - 1) / k, rel=0.1)
    assert log_moment_ratio(log_w).exp().item() == pytest.approx(c, rel=0.05)


def test_log_moment_ratio_is_k_over_ess() -> None:
    log_w = torch.randn(4, 100, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 4
    torch.testing.assert_close(log_moment_ratio(log_w), math.log(100) - lc.effective_sample_size(log_w).log())


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


F64 = torch.float64


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


def test_iwae_bound_of_one_block_has_no_standard_error_and_two_blocks_have_one() -> None:
    log_w = torch.randn(3, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    estimate, stderr = iwae_bound(log_w, 8)
    assert torch.isnan(stderr).all()
    torch.testing.assert_close(estimate, torch.logsumexp(log_w, dim=-1) - math.log(8))
    _, stderr_two = iwae_bound(log_w, 4)
    assert torch.isfinite(stderr_two).all() and (stderr_two > 0).all()


def test_iwae_and_leave_one_out_bounds_batch_over_leading_axes() -> None:
    log_w = torch.randn(2, 3, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    estimate, stderr = iwae_bound(log_w, 2)
    loo = leave_one_out_bound(log_w)
    assert estimate.shape == stderr.shape == loo.shape == (2, 3)
    for i, j in itertools.product(range(2), range(3)):
        one, one_se = iwae_bound(log_w[i, j], 2)
        torch.testing.assert_close(estimate[i, j], one)
        torch.testing.assert_close(stderr[i, j], one_se)
        torch.testing.assert_close(loo[i, j], leave_one_out_bound(log_w[i, j]))


def test_leave_one_out_bound_of_two_weights() -> None:
    """K + 1 = 2, the smallest case: the average of the two single log-weights."""
    log_w = torch.tensor([0.3, -1.2], dtype=torch.float64)
    torch.testing.assert_close(leave_one_out_bound(log_w), log_w.mean())


def test_estimator_spread_accepts_the_extreme_quantile_levels_and_two_runs_have_a_spread() -> None:
    log_w = torch.randn(2, 8, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    study = estimator_spread(log_w, [4, 8], probs=(0.0, 1.0))
    assert study.repeats == [2, 1]
    assert torch.isfinite(study.log_estimate_std[:, 0]).all() and torch.isnan(study.log_estimate_std[:, 1]).all()
    estimates, _ = repeated_estimates(log_w, 4)
    torch.testing.assert_close(study.log_estimate_quantiles[:, 0, 0], estimates.min(dim=-1).values)
    torch.testing.assert_close(study.log_estimate_quantiles[:, 0, 1], estimates.max(dim=-1).values)


def test_leave_one_out_bound_of_three_weights_by_hand() -> None:
    """w = (1, 2, 3): the mean of log((2+3)/2), log((1+3)/2) and log((1+2)/2)."""
    log_w = torch.log(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
    expected = (math.log(2.5) + math.log(2.0) + math.log(1.5)) / 3
    torch.testing.assert_close(leave_one_out_bound(log_w), torch.tensor(expected, dtype=torch.float64))
