"""Tests of labcode.diffusion against independent references (closed forms, torch.distributions)."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

import labcode as lc
from labcode.diffusion import (
    alpha_bar_schedule,
    forward_chain,
    linear_beta_schedule,
    prior_matching_kl,
    prior_matching_sweep,
    q_posterior,
    q_sample,
)


@pytest.fixture(scope="module")
def betas() -> torch.Tensor:
    return linear_beta_schedule(1000, 1e-4, 0.02)


def test_linear_schedule(betas):
    assert betas.shape == (1000,)
    assert betas[0].item() == pytest.approx(1e-4) and betas[-1].item() == pytest.approx(0.02)
    assert torch.allclose(betas.diff(), torch.full((999,), (0.02 - 1e-4) / 999, dtype=torch.float64))


def test_alpha_bar_is_the_product_and_decreasing(betas):
    alpha_bar = alpha_bar_schedule(betas)
    assert alpha_bar.shape == (1001,) and alpha_bar[0].item() == 1.0
    for t in (1, 10, 500, 1000):
        product = math.prod(1 - b for b in betas[:t].tolist())
        assert alpha_bar[t].item() == pytest.approx(product, rel=1e-10)
    assert (alpha_bar.diff() < 0).all()
    # -b - b^2 <= log(1 - b) <= -b for b <= 1/2 brackets alpha_bar_T (DDPM's ends near pure noise)
    s1, s2 = betas.sum().item(), (betas**2).sum().item()
    assert math.exp(-s1 - s2) <= alpha_bar[-1].item() <= math.exp(-s1) < 1e-4


def test_q_sample_statistics_match_closed_form(betas):
    alpha_bar = alpha_bar_schedule(betas)
    n, t = 100_000, 300
    x0 = torch.tensor([[3.0, -1.5]]).expand(n, 2)
    xt = q_sample(x0, t, alpha_bar=alpha_bar, generator=torch.Generator().manual_seed(0))
    a = alpha_bar[t].item()
    mean_se, var_se = math.sqrt((1 - a) / n), (1 - a) * math.sqrt(2 / n)
    assert torch.allclose(xt.mean(0), math.sqrt(a) * x0[0], atol=5 * mean_se)
    assert torch.allclose(xt.var(0), torch.full((2,), 1 - a), atol=5 * var_se)


def test_q_sample_with_given_noise_and_per_row_steps(betas):
    alpha_bar = alpha_bar_schedule(betas)
    x0 = torch.tensor([[1.0, 2.0], [-1.0, 0.5], [0.0, 4.0]])
    eps = torch.tensor([[0.5, -0.5], [1.0, 1.0], [-2.0, 0.0]])
    t = torch.tensor([0, 10, 1000])
    xt = q_sample(x0, t, alpha_bar=alpha_bar, eps=eps)
    for i in range(3):
        a = alpha_bar[t[i]].item()
        assert torch.allclose(xt[i], math.sqrt(a) * x0[i] + math.sqrt(1 - a) * eps[i])
    assert torch.equal(q_sample(x0, 0, alpha_bar=alpha_bar, eps=eps), x0)


def test_forward_chain_matches_closed_form(betas):
    """t steps of the one-step kernel have the marginal N(sqrt(abar_t) x0, (1 - abar_t) I) (the induction)."""
    alpha_bar = alpha_bar_schedule(betas)
    n, t = 50_000, 200
    x0 = torch.tensor([[2.0, -3.0]]).expand(n, 2)
    xt = forward_chain(x0, betas[:t], generator=torch.Generator().manual_seed(1))
    a = alpha_bar[t].item()
    assert torch.allclose(xt.mean(0), math.sqrt(a) * x0[0], atol=5 * math.sqrt((1 - a) / n))
    assert torch.allclose(xt.var(0), torch.full((2,), 1 - a), atol=5 * (1 - a) * math.sqrt(2 / n))


@pytest.mark.parametrize("t", [2, 50, 999, 1000])
def test_q_posterior_is_gaussian_conditioning(betas, t):
    """Reference: condition the joint Gaussian of (x_{t-1}, x_t) given x0 on x_t."""
    alpha_bar = alpha_bar_schedule(betas).tolist()
    gen = torch.Generator().manual_seed(t)
    x0, xt = torch.randn(4, 2, generator=gen, dtype=torch.float64), torch.randn(4, 2, generator=gen, dtype=torch.float64)
    alpha = 1 - betas[t - 1].item()
    m_prev, m_t = math.sqrt(alpha_bar[t - 1]) * x0, math.sqrt(alpha_bar[t]) * x0
    var_prev, var_t = 1 - alpha_bar[t - 1], 1 - alpha_bar[t]
    cov = math.sqrt(alpha) * var_prev                       # Cov(x_{t-1}, x_t | x0)
    ref_mean = m_prev + cov / var_t * (xt - m_t)
    ref_var = var_prev - cov**2 / var_t
    mean, var = q_posterior(x0, xt, t, betas=betas)
    assert torch.allclose(mean, ref_mean, atol=1e-10)
    assert var == pytest.approx(ref_var, rel=1e-9)


def test_q_posterior_at_t1_is_x0(betas):
    x0, xt = torch.ones(2, 2), torch.zeros(2, 2)
    mean, var = q_posterior(x0, xt, 1, betas=betas)
    assert var == 0.0 and torch.allclose(mean, x0)


def test_prior_matching_kl_matches_torch_distributions(betas):
    alpha_bar = alpha_bar_schedule(betas)
    x0 = lc.make_spiral(200, 0.1, generator=torch.Generator().manual_seed(0))
    for t in (1, 100, 500, 1000):
        a = alpha_bar[t].item()
        ref = kl_divergence(Normal(math.sqrt(a) * x0, math.sqrt(1 - a)), Normal(0.0, 1.0)).sum(-1)
        assert torch.allclose(prior_matching_kl(x0, a), ref, rtol=1e-4, atol=1e-7)
    curve = prior_matching_kl(x0, alpha_bar[1:])
    assert curve.shape == (1000, 200)
    assert torch.allclose(curve[-1], prior_matching_kl(x0, alpha_bar[-1]))
    assert (curve.mean(1).diff() < 0).all()                  # the term shrinks as t grows
    assert torch.all(prior_matching_kl(x0, 0.0) == 0)         # alpha_bar_T = 0: exactly N(0, I)


def test_input_checks(betas):
    alpha_bar = alpha_bar_schedule(betas)
    x0 = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="t must lie"):
        q_sample(x0, 1001, alpha_bar=alpha_bar)
    with pytest.raises(TypeError, match="t must be"):
        q_sample(x0, 1.5, alpha_bar=alpha_bar)
    with pytest.raises(ValueError, match="eps"):
        q_sample(x0, 1, alpha_bar=alpha_bar, eps=torch.zeros(2, 2))
    with pytest.raises(ValueError, match="betas"):
        alpha_bar_schedule(torch.tensor([0.1, 1.0]))
    with pytest.raises(ValueError, match="beta_end"):
        linear_beta_schedule(10, 1e-4, 1.5)
    with pytest.raises(ValueError, match="alpha_bar_T"):
        prior_matching_kl(x0, 1.0)
    with pytest.raises(ValueError, match="t must be an int"):
        q_posterior(x0, x0, 0, betas=betas)


def test_device_and_dtype_are_respected(device, dtype, betas):
    alpha_bar = alpha_bar_schedule(betas)
    x0 = torch.randn(6, 2, generator=torch.Generator().manual_seed(0)).to(device=device, dtype=dtype)
    gen = torch.Generator().manual_seed(1)
    xt = q_sample(x0, torch.arange(6) * 200, alpha_bar=alpha_bar, generator=gen)
    assert xt.device.type == device.type and xt.dtype == dtype
    kl = prior_matching_kl(x0, alpha_bar[1:])
    assert kl.shape == (1000, 6) and kl.device.type == device.type and kl.dtype == dtype
    chain = forward_chain(x0, betas[:3], generator=gen)
    assert chain.device.type == device.type and chain.dtype == dtype


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
