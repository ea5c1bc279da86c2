"""Tests of labcode.ddpm against torch.distributions, direct computations and an exactly solvable chain."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.distributions import Normal, kl_divergence

import labcode as lc
from labcode.ddpm import (
    REFERENCE_DDPM,
    VARIANCE_KINDS,
    DDPMConfig,
    EpsilonNet,
    ancestral_sample,
    best_reverse_variances,
    bound_constants,
    epsilon_errors,
    epsilon_weights,
    fit_ddpm,
    mixture_noise_posterior_mean,
    reference_ddpm,
    reverse_mean,
    reverse_variances,
    sample_path,
    simple_loss,
    time_embedding,
    train_ddpm,
    variational_bound,
)
from labcode.diffusion import alpha_bar_schedule, linear_beta_schedule, prior_matching_kl, q_posterior

BETAS = linear_beta_schedule(10, 1e-2, 0.3)   # a short chain: every step matters
TINY = DDPMConfig(n_steps=10, noise_start=1e-2, noise_end=0.3, hidden=16, embed_dim=4, steps=30, lr=1e-2)


def _tiny_model(seed: int = 0, dtype: torch.dtype = torch.float64) -> EpsilonNet:
    return EpsilonNet.from_config(replace(TINY, seed=seed)).to(dtype)


class _StationaryEps(EpsilonNet):
    """The exact noise predictor for x_0 ~ N(0, I): E[eps | x_t] = sqrt(1 - alpha_bar_t) x_t."""

    def __init__(self, betas: torch.Tensor) -> None:
        super().__init__(betas.numel(), 2, 4, 4)
        self.alpha_bar = alpha_bar_schedule(betas)

    def _unchecked(self, x_t, t):
        return torch.sqrt(1 - self.alpha_bar[t]).to(x_t)[:, None] * x_t


# --- the parameterisation and the per-step terms -------------------------------------------------

@given(seed=st.integers(0, 10_000), t=st.integers(2, 10))
def test_reverse_mean_with_the_true_noise_is_the_posterior_mean(seed, t):
    g = torch.Generator().manual_seed(seed)
    alpha_bar = alpha_bar_schedule(BETAS)
    x0 = 3 * torch.randn(4, 2, generator=g, dtype=torch.float64)
    eps = torch.randn(4, 2, generator=g, dtype=torch.float64)
    xt = alpha_bar[t].sqrt() * x0 + (1 - alpha_bar[t]).sqrt() * eps
    mean, _ = q_posterior(x0, xt, t, betas=BETAS)
    steps = torch.full((4,), t)
    torch.testing.assert_close(reverse_mean(xt, steps, eps, BETAS), mean, rtol=1e-10, atol=1e-10)


@given(seed=st.integers(0, 10_000), t=st.integers(2, 10), kind=st.sampled_from((*VARIANCE_KINDS, "random")))
def test_per_step_kl_is_the_weighted_epsilon_error(seed, t, kind):
    """KL(q(x_{t-1} | x_t, x_0) || p_theta(x_{t-1} | x_t)) = lambda_t ||eps - eps_hat||^2 + c_t."""
    g = torch.Generator().manual_seed(seed)
    alpha_bar = alpha_bar_schedule(BETAS)
    sigma2 = (reverse_variances(BETAS, kind) if kind != "random"
              else BETAS * (0.2 + 2 * torch.rand(10, generator=g, dtype=torch.float64)))
    x0 = 3 * torch.randn(5, 2, generator=g, dtype=torch.float64)
    eps = torch.randn(5, 2, generator=g, dtype=torch.float64)
    eps_hat = eps + torch.randn(5, 2, generator=g, dtype=torch.float64)
    xt = alpha_bar[t].sqrt() * x0 + (1 - alpha_bar[t]).sqrt() * eps
    post_mean, post_var = q_posterior(x0, xt, t, betas=BETAS)
    model_mean = reverse_mean(xt, torch.full((5,), t), eps_hat, BETAS)
    reference = kl_divergence(Normal(post_mean, math.sqrt(post_var)),
                              Normal(model_mean, sigma2[t - 1].sqrt())).sum(dim=1)
    weighted = (epsilon_weights(BETAS, sigma2)[t - 1] * ((eps - eps_hat) ** 2).sum(dim=1)
                + bound_constants(BETAS, sigma2, 2)[t - 1])
    torch.testing.assert_close(weighted, reference, rtol=1e-9, atol=1e-9)


@given(seed=st.integers(0, 10_000), scale=st.floats(0.3, 3.0))
def test_decoder_term_is_the_weighted_epsilon_error(seed, scale):
    """-log N(x_0; mu_theta(x_1, 1), sigma_1^2 I) = lambda_1 ||eps - eps_hat||^2 + c_1 for any sigma_1^2."""
    g = torch.Generator().manual_seed(seed)
    sigma2 = BETAS * scale
    x0 = 3 * torch.randn(5, 2, generator=g, dtype=torch.float64)
    eps = torch.randn(5, 2, generator=g, dtype=torch.float64)
    eps_hat = eps + torch.randn(5, 2, generator=g, dtype=torch.float64)
    x1 = (1 - BETAS[0]).sqrt() * x0 + BETAS[0].sqrt() * eps
    mean = reverse_mean(x1, torch.ones(5, dtype=torch.long), eps_hat, BETAS)
    reference = -Normal(mean, sigma2[0].sqrt()).log_prob(x0).sum(dim=1)
    weighted = (epsilon_weights(BETAS, sigma2)[0] * ((eps - eps_hat) ** 2).sum(dim=1)
                + bound_constants(BETAS, sigma2, 2)[0])
    torch.testing.assert_close(weighted, reference, rtol=1e-9, atol=1e-9)


def test_weights_and_constants_in_closed_form():
    alpha, alpha_bar = 1 - BETAS, alpha_bar_schedule(BETAS)
    forward = epsilon_weights(BETAS, reverse_variances(BETAS, "forward"))
    torch.testing.assert_close(forward, BETAS / (2 * alpha * (1 - alpha_bar[1:])))
    assert forward[0].item() == pytest.approx(1 / (2 * alpha[0].item()))
    posterior = epsilon_weights(BETAS, reverse_variances(BETAS, "posterior"))
    torch.testing.assert_close(posterior[1:], BETAS[1:] / (2 * alpha[1:] * (1 - alpha_bar[1:-1])))
    assert (posterior[1:] > forward[1:]).all()          # sigma~^2 < 1 - alpha_t: the posterior choice weighs more
    constants = bound_constants(BETAS, reverse_variances(BETAS, "posterior"), 2)
    assert constants[0].item() == pytest.approx(math.log(2 * math.pi * BETAS[0].item()))
    torch.testing.assert_close(constants[1:], torch.zeros(9, dtype=torch.float64))
    assert (bound_constants(BETAS, reverse_variances(BETAS, "forward"), 2)[1:] > 0).all()


def test_simple_loss_is_the_bound_reweighted():
    """L_simple = (1/T) sum_t (term_t - c_t) / lambda_t: the bound's terms with weights 1/T instead of lambda_t."""
    model = _tiny_model()
    g = torch.Generator().manual_seed(3)
    x0 = torch.randn(6, 2, generator=g, dtype=torch.float64)
    eps = torch.randn(2, 6, 10, 2, generator=g, dtype=torch.float64)
    errors = epsilon_errors(model, x0, BETAS, n_draws=2, eps=eps)
    sigma2 = reverse_variances(BETAS, "forward")
    bound = variational_bound(errors, x0, BETAS, sigma2)
    recovered = ((bound.steps - bound_constants(BETAS, sigma2, 2)) / epsilon_weights(BETAS, sigma2)).mean(dim=1)
    torch.testing.assert_close(recovered, errors.mean(dim=0).mean(dim=1))
    # the per-row training loss at step t is the same squared error
    alpha_bar = alpha_bar_schedule(BETAS)
    t = torch.arange(1, 7)
    rows = simple_loss(model, x0, alpha_bar, t, eps[0, torch.arange(6), t - 1])
    torch.testing.assert_close(rows, errors[0, torch.arange(6), t - 1])


# --- the bound ------------------------------------------------------------------------------------

def test_bound_terms_against_a_direct_computation():
    """Every term from the Gaussians themselves: torch.distributions KLs and log-densities, step by step."""
    betas = linear_beta_schedule(3, 0.05, 0.4)
    alpha_bar = alpha_bar_schedule(betas)
    model = EpsilonNet(3, 2, 8, 4, generator=torch.Generator().manual_seed(0)).double()
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(2, 2, generator=g, dtype=torch.float64) * 2
    eps = torch.randn(2, 2, 3, 2, generator=g, dtype=torch.float64)
    for kind in VARIANCE_KINDS:
        sigma2 = reverse_variances(betas, kind)
        bound = variational_bound(epsilon_errors(model, x0, betas, n_draws=2, eps=eps), x0, betas, sigma2)
        direct = torch.zeros(2, 2, 3, dtype=torch.float64)
        for k in range(2):
            for t in (1, 2, 3):
                xt = alpha_bar[t].sqrt() * x0 + (1 - alpha_bar[t]).sqrt() * eps[k, :, t - 1]
                steps = torch.full((2,), t)
                with torch.no_grad():
                    mean = reverse_mean(xt, steps, model(xt, steps), betas)
                p = Normal(mean, sigma2[t - 1].sqrt())
                if t == 1:
                    direct[k, :, 0] = -p.log_prob(x0).sum(dim=1)
                else:
                    post_mean, post_var = q_posterior(x0, xt, t, betas=betas)
                    direct[k, :, t - 1] = kl_divergence(Normal(post_mean, math.sqrt(post_var)), p).sum(dim=1)
        torch.testing.assert_close(bound.steps, direct.mean(dim=0), rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(bound.steps_var, direct.var(dim=0) / 2, rtol=1e-9, atol=1e-9)
        prior = kl_divergence(Normal(alpha_bar[-1].sqrt() * x0, (1 - alpha_bar[-1]).sqrt()), Normal(0.0, 1.0))
        torch.testing.assert_close(bound.prior, prior.sum(dim=1), rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(bound.total, bound.prior + bound.decoder + bound.denoising)
        assert bound.standard_error() == pytest.approx(math.sqrt(bound.steps_var.sum().item()) / 2)


def test_bound_is_exact_for_the_stationary_chain():
    """x_0 ~ N(0, I), the exact eps* and sigma_t^2 = 1 - alpha_t: p_theta = q, the gap is 0, bound = -log N(x_0; 0, I)."""
    betas = linear_beta_schedule(8, 0.05, 0.5)
    model = _StationaryEps(betas).double()
    x0 = torch.tensor([[0.0, 0.0], [1.0, -2.0], [2.5, 0.5]], dtype=torch.float64)
    errors = epsilon_errors(model, x0, betas, n_draws=4000, generator=torch.Generator().manual_seed(2))
    bound = variational_bound(errors, x0, betas, reverse_variances(betas, "forward"))
    exact = -Normal(0.0, 1.0).log_prob(x0).sum(dim=1)
    se = bound.steps_var.sum(dim=1).sqrt()
    assert ((bound.total - exact).abs() < 4 * se).all(), (bound.total, exact, se)
    # the posterior variance is not optimal here: it gives a larger bound (Ho et al., section 3.2)
    worse = variational_bound(errors, x0, betas, reverse_variances(betas, "posterior"))
    assert (worse.total > bound.total + 4 * se).all()
    # averaged over x_0 ~ N(0, I), the best fixed variances are the forward ones, 1 - alpha_t
    g = torch.Generator().manual_seed(3)
    x0 = torch.randn(4000, 2, generator=g, dtype=torch.float64)
    best = best_reverse_variances(epsilon_errors(model, x0, betas, n_draws=2, generator=g), betas, 2)
    torch.testing.assert_close(best, betas, rtol=0.03, atol=0)


def test_best_variances_minimise_the_bound():
    model = _tiny_model(1)
    g = torch.Generator().manual_seed(4)
    x0 = 2 * torch.randn(20, 2, generator=g, dtype=torch.float64)
    errors = epsilon_errors(model, x0, BETAS, n_draws=3, generator=g)
    best = best_reverse_variances(errors, BETAS, 2)
    value = variational_bound(errors, x0, BETAS, best).total.mean()
    for factor in (0.9, 1.1):
        for t in (0, 1, 5, 9):
            other = best.clone()
            other[t] *= factor
            assert variational_bound(errors, x0, BETAS, other).total.mean() > value
    assert (best[1:] >= reverse_variances(BETAS, "posterior")[1:]).all()


def _mixture_sample(centres, noise, n, g):
    index = torch.randint(len(centres), (n,), generator=g)
    return centres[index] + noise * torch.randn(n, centres.shape[1], generator=g, dtype=torch.float64)


def test_mixture_noise_posterior_mean_for_one_standard_component_is_linear():
    """x_0 ~ N(0, I): E[eps | x_t] = sqrt(1 - alpha_bar_t) x_t (the stationary chain's exact predictor)."""
    g = torch.Generator().manual_seed(5)
    x_t = torch.randn(50, 3, generator=g, dtype=torch.float64)
    t = torch.randint(1, 11, (50,), generator=g)
    alpha_bar = alpha_bar_schedule(BETAS)
    expected = torch.sqrt(1 - alpha_bar[t])[:, None] * x_t
    got = mixture_noise_posterior_mean(x_t, t, BETAS, torch.zeros(1, 3, dtype=torch.float64), 1.0)
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("t", [1, 4, 10])
def test_mixture_noise_posterior_mean_against_quadrature(t):
    """One dimension, three components: E[eps | x_t] = (x_t - sqrt(a) E[x_0 | x_t]) / sqrt(1 - a) by SciPy quad."""
    from scipy import integrate, stats
    centres, noise = torch.tensor([[-2.0], [0.5], [3.0]], dtype=torch.float64), 0.4
    a = alpha_bar_schedule(BETAS)[t].item()

    def density(x0, x_t):
        prior = sum(stats.norm.pdf(x0, c, noise) for c in centres[:, 0].tolist()) / len(centres)
        return prior * stats.norm.pdf(x_t, math.sqrt(a) * x0, math.sqrt(1 - a))

    points = torch.tensor([[-2.5], [-0.3], [0.9], [2.2]], dtype=torch.float64)
    expected = []
    for x_t in points[:, 0].tolist():
        mass = integrate.quad(density, -10, 10, args=(x_t,), points=[-2, 0.5, 3], limit=200)[0]
        mean = integrate.quad(lambda x0, x_t=x_t: x0 * density(x0, x_t), -10, 10, points=[-2, 0.5, 3], limit=200)[0]
        expected.append((x_t - math.sqrt(a) * mean / mass) / math.sqrt(1 - a))
    got = mixture_noise_posterior_mean(points, torch.full((4,), t), BETAS, centres, noise)
    torch.testing.assert_close(got[:, 0], torch.tensor(expected, dtype=torch.float64), rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("spread", [0.3, 3.0])
def test_best_mean_variance_lies_within_the_bounds(spread):
    """ddpm-prop-variance-bounds: with the best mean, sigma~_t^2 <= s*_t <= f(u_{t-1}) < (1 - alpha_t)/alpha_t,
    and s*_t <= 1 - alpha_t for data of at most unit variance per coordinate."""
    g = torch.Generator().manual_seed(6)
    centres = spread * torch.randn(6, 2, generator=g, dtype=torch.float64)
    noise, n = 0.2, 20_000
    x0 = _mixture_sample(centres, noise, n, g)
    v = x0.var(dim=0).mean().item()                                          # tr Cov(x_0) / D
    alpha_bar = alpha_bar_schedule(BETAS)
    posterior = reverse_variances(BETAS, "posterior")
    for t in range(2, 11):
        a, beta = alpha_bar[t].item(), BETAS[t - 1].item()
        eps = torch.randn(n, 2, generator=g, dtype=torch.float64)
        x_t = math.sqrt(a) * x0 + math.sqrt(1 - a) * eps
        err = ((eps - mixture_noise_posterior_mean(x_t, torch.full((n,), t), BETAS, centres, noise)) ** 2).sum(1)
        scale = beta**2 / ((1 - beta) * (1 - a)) / 2                      # A_t / D per unit of error
        best, best_se = posterior[t - 1].item() + scale * err.mean().item(), scale * err.std().item() / math.sqrt(n)
        u = alpha_bar[t - 1].item() * v + 1 - alpha_bar[t - 1].item()
        bound = u * beta / ((1 - beta) * u + beta)
        assert posterior[t - 1].item() < best < bound + 3 * best_se
        assert bound < beta / (1 - beta)
        if v <= 1:
            assert best < beta + 3 * best_se
    assert (v <= 1) == (spread < 1)                                         # both cases are exercised


@pytest.mark.book
def test_chapter_quotes_the_elbo_chapters_kl(built_book: Path):
    """The chapter recomputes the ELBO chapter's estimate of KL(p_data || p_theta) to compare it with its own;
    the recomputation must be the value that chapter prints (up to the quadrature lattice's rounding)."""
    glued = json.loads((built_book / "glued-values.json").read_text())
    assert glued["book/ddpm"]["ddpm_kl_elbo"] == pytest.approx(glued["book/elbo"]["mlkl_kl_model"], abs=1e-3)
    assert glued["book/ddpm"]["ddpm_kl_elbo_se"] == pytest.approx(glued["book/elbo"]["mlkl_kl_model_se"], abs=1e-3)


# --- the network, training and sampling ---------------------------------------------------------

def test_time_embedding():
    t = torch.tensor([0, 1, 7])
    code = time_embedding(t, 6, period=10.0)
    assert code.shape == (3, 6)
    torch.testing.assert_close(code[0], torch.tensor([0.0, 0, 0, 1, 1, 1]))
    freqs = 10.0 ** (-torch.arange(3) / 3)
    torch.testing.assert_close(code[2, :3], torch.sin(7 * freqs))
    torch.testing.assert_close(code[2, 3:], torch.cos(7 * freqs))
    # the docstring's lowest frequency: period^(2/dim) radians over `period` steps
    assert freqs[-1].item() * 10.0 == pytest.approx(10.0 ** (2 / 6))


def test_training_is_deterministic_and_lowers_the_loss():
    data = lc.make_spiral(100, 0.1, generator=torch.Generator().manual_seed(0))
    cfg = replace(TINY, steps=150, hidden=32)
    model_a, losses_a = fit_ddpm(data, cfg)
    model_b, losses_b = fit_ddpm(data, cfg)
    assert losses_a == losses_b
    for p, q in zip(model_a.parameters(), model_b.parameters(), strict=True):
        assert torch.equal(p, q)
    assert sum(losses_a[-30:]) < sum(losses_a[:30])


def test_reference_ddpm_goes_through_the_store(tmp_path, monkeypatch):
    monkeypatch.setenv("LABCODE_MODEL_STORE", str(tmp_path))
    data = lc.make_spiral(50, 0.1, generator=torch.Generator().manual_seed(0))
    model, losses = reference_ddpm(data, TINY)
    assert len(list(tmp_path.glob("ddpm-*.pt"))) == 1
    again, losses_again = reference_ddpm(data, TINY)
    assert losses_again == losses
    for p, q in zip(model.parameters(), again.parameters(), strict=True):
        assert torch.equal(p, q)


def test_sampling_shapes_and_determinism():
    model = _tiny_model(dtype=torch.float32)
    sigma2 = reverse_variances(BETAS, "forward")
    path = sample_path(model, 7, BETAS, sigma2, generator=torch.Generator().manual_seed(5), keep=(10, 3))
    assert sorted(path) == [0, 3, 10]
    assert all(x.shape == (7, 2) and x.dtype == torch.float32 for x in path.values())
    again = ancestral_sample(model, 7, BETAS, sigma2, generator=torch.Generator().manual_seed(5))
    assert torch.equal(again, path[0])
    other = ancestral_sample(model, 7, BETAS, sigma2, generator=torch.Generator().manual_seed(6))
    assert not torch.equal(other, path[0])


def test_sampling_follows_the_reverse_kernels():
    """The sampler against a loop written from the definition, with the same noise."""
    model = _tiny_model()
    sigma2 = reverse_variances(BETAS, "posterior")
    x0 = ancestral_sample(model, 5, BETAS, sigma2, generator=torch.Generator().manual_seed(8))
    g = torch.Generator().manual_seed(8)
    x = torch.randn(5, 2, generator=g, dtype=torch.float64)
    for t in range(10, 0, -1):
        steps = torch.full((5,), t)
        with torch.no_grad():
            mean = reverse_mean(x, steps, model(x, steps), BETAS)
        x = mean + sigma2[t - 1].sqrt() * torch.randn(5, 2, generator=g, dtype=torch.float64)
    torch.testing.assert_close(x0, x, rtol=1e-12, atol=1e-12)


def test_stationary_chain_samples_the_standard_normal():
    betas = linear_beta_schedule(8, 0.05, 0.5)
    x = ancestral_sample(_StationaryEps(betas).double(), 20_000, betas, reverse_variances(betas, "forward"),
                         generator=torch.Generator().manual_seed(0))
    se = 1 / math.sqrt(20_000)
    assert x.mean(0).abs().max() < 4 * se
    assert (x.var(0) - 1).abs().max() < 4 * math.sqrt(2) * se


def test_device(device):
    model = _tiny_model(dtype=torch.float32)
    data = lc.make_spiral(20, 0.1, generator=torch.Generator().manual_seed(0))
    errors_cpu = epsilon_errors(model, data, BETAS, generator=torch.Generator().manual_seed(1))
    errors_dev = epsilon_errors(model.to(device), data.to(device), BETAS, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(errors_dev, errors_cpu, rtol=1e-4, atol=1e-5)
    x = ancestral_sample(model, 4, BETAS, reverse_variances(BETAS, "forward"), generator=torch.Generator().manual_seed(2))
    assert x.device.type == torch.device(device).type


def test_reference_config_reaches_pure_noise():
    betas = REFERENCE_DDPM.betas()
    assert betas.shape == (REFERENCE_DDPM.n_steps,)
    data = lc.lab_data()
    assert prior_matching_kl(data, alpha_bar_schedule(betas)[-1]).mean() < 1e-3


# --- input validation ---------------------------------------------------------------------------

def test_input_validation():
    model = _tiny_model()
    x = torch.zeros(3, 2, dtype=torch.float64)
    sigma2 = reverse_variances(BETAS, "forward")
    with pytest.raises(ValueError, match="kind must be one of"):
        reverse_variances(BETAS, "learned")
    with pytest.raises(ValueError, match="betas must lie in"):
        reverse_variances(torch.tensor([0.1, 1.5]), "forward")
    with pytest.raises(ValueError, match="sigma2 must have the shape of betas"):
        epsilon_weights(BETAS, sigma2[:5])
    with pytest.raises(ValueError, match="sigma2 must be > 0"):
        bound_constants(BETAS, sigma2 * 0, 2)
    with pytest.raises(TypeError, match="data_dim must be an int"):
        bound_constants(BETAS, sigma2, 2.0)
    with pytest.raises(ValueError, match=r"t must lie in \[1, 10\]"):
        reverse_mean(x, torch.tensor([0, 1, 2]), x, BETAS)
    with pytest.raises(TypeError, match="t must be an integer tensor"):
        reverse_mean(x, torch.tensor([1.0, 1.0, 1.0]), x, BETAS)
    with pytest.raises(ValueError, match="eps_hat must have 2 columns"):
        reverse_mean(x, torch.ones(3, dtype=torch.long), torch.zeros(3, 3), BETAS)
    with pytest.raises(ValueError, match="dim must be even"):
        time_embedding(torch.ones(2), 5, 10.0)
    with pytest.raises(ValueError, match="period must be"):
        time_embedding(torch.ones(2), 4, 1.0)
    with pytest.raises(ValueError, match="n_steps must be > 0"):
        EpsilonNet(0)
    with pytest.raises(ValueError, match="embed_dim must be even"):
        EpsilonNet(10, embed_dim=3)
    with pytest.raises(ValueError, match="x_t must have 2 columns"):
        model(torch.zeros(3, 3, dtype=torch.float64), torch.ones(3, dtype=torch.long))
    with pytest.raises(ValueError, match="n_draws must be >= 2"):
        epsilon_errors(model, x, BETAS, n_draws=1)
    with pytest.raises(ValueError, match=r"betas must have model\.n_steps"):
        epsilon_errors(model, x, BETAS[:5])
    with pytest.raises(ValueError, match="eps must have shape"):
        epsilon_errors(model, x, BETAS, eps=torch.zeros(2, 3, 10, 3))
    errors = epsilon_errors(model, x, BETAS, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="errors must have shape"):
        variational_bound(errors[:1], x, BETAS, sigma2)
    with pytest.raises(ValueError, match="errors must be >= 0"):
        variational_bound(-errors, x, BETAS, sigma2)
    with pytest.raises(ValueError, match="keep must hold ints"):
        sample_path(model, 2, BETAS, sigma2, keep=(11,))
    with pytest.raises(ValueError, match="n must be > 0"):
        ancestral_sample(model, 0, BETAS, sigma2)
    with pytest.raises(ValueError, match="lr must be"):
        train_ddpm(model, x, BETAS, steps=2, lr=-1.0)
    with pytest.raises(ValueError, match="data must be finite"):
        train_ddpm(model, torch.full((3, 2), math.nan), BETAS, steps=2, lr=1e-3)
    with pytest.raises(ValueError, match="eps must have the shape of x0"):
        simple_loss(model, x, alpha_bar_schedule(BETAS), torch.ones(3, dtype=torch.long), torch.zeros(3, 3))
    with pytest.raises(ValueError, match=r"alpha_bar must have shape \(11,\)"):
        simple_loss(model, x, alpha_bar_schedule(BETAS)[:5], torch.ones(3, dtype=torch.long), x)
    with pytest.raises(ValueError, match="errors must have a positive mean"):
        best_reverse_variances(torch.zeros(2, 3, 10), BETAS, 2)
    ones = torch.ones(3, dtype=torch.long)
    with pytest.raises(ValueError, match="centres must have 2 columns"):
        mixture_noise_posterior_mean(x, ones, BETAS, torch.zeros(4, 3), 0.1)
    with pytest.raises(ValueError, match="centres must have at least one row"):
        mixture_noise_posterior_mean(x, ones, BETAS, torch.zeros(0, 2), 0.1)
    with pytest.raises(ValueError, match="noise must be a finite number > 0"):
        mixture_noise_posterior_mean(x, ones, BETAS, torch.zeros(4, 2), 0.0)
    with pytest.raises(ValueError, match=r"t must lie in \[1, 10\]"):
        mixture_noise_posterior_mean(x, ones * 11, BETAS, torch.zeros(4, 2), 0.1)
