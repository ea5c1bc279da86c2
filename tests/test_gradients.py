"""Tests of labcode.gradients against closed-form gradients and variances."""

import math

import numpy as np
import pytest
import torch

from labcode.gradients import GradientEstimates, gaussian_gradient_estimates, quadratic_estimator_variances

N = 400_000


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _close_within_se(estimates: torch.Tensor, target: torch.Tensor, k: float = 5.0) -> None:
    """The sample mean of ``estimates`` (K, ...) is within k standard errors of ``target``."""
    se = estimates.std(0) / math.sqrt(estimates.shape[0])
    assert torch.all((estimates.mean(0) - target).abs() <= k * se + 1e-6), (estimates.mean(0), target, se)


@pytest.mark.parametrize(("mu", "sigma"), [(1.0, 1.0), (-0.5, 0.3), (2.0, 1.5)])
def test_quadratic_gradients_unbiased(mu, sigma):
    # E[z^2] = mu^2 + sigma^2: d/dmu = 2 mu, d/dsigma = 2 sigma
    est = gaussian_gradient_estimates(lambda z: (z**2).sum(-1), torch.tensor([mu], dtype=torch.float64),
                                      torch.tensor([sigma], dtype=torch.float64), n_samples=N, generator=_gen(1))
    for name, target in (("reparam_mu", 2 * mu), ("score_mu", 2 * mu),
                         ("reparam_sigma", 2 * sigma), ("score_sigma", 2 * sigma)):
        _close_within_se(getattr(est, name), torch.tensor([target], dtype=torch.float64))


def test_sine_gradients_match_closed_form():
    # E[sin z] = sin(mu) exp(-sigma^2/2): an independent closed form, two coordinates at once
    mu = torch.tensor([0.3, -1.2], dtype=torch.float64)
    sigma = torch.tensor([0.7, 1.1], dtype=torch.float64)
    damp = torch.exp(-sigma**2 / 2)
    est = gaussian_gradient_estimates(lambda z: torch.sin(z).sum(-1), mu, sigma, n_samples=N, generator=_gen(2))
    _close_within_se(est.reparam_mu, torch.cos(mu) * damp)
    _close_within_se(est.score_mu, torch.cos(mu) * damp)
    _close_within_se(est.reparam_sigma, -sigma * torch.sin(mu) * damp)
    _close_within_se(est.score_sigma, -sigma * torch.sin(mu) * damp)


@pytest.mark.parametrize(("mu", "sigma", "shift"), [(1.0, 1.0, 0.0), (0.0, 0.5, 0.0), (2.0, 0.8, -4.64), (1.0, 1.0, 10.0)])
def test_quadratic_variances_match_monte_carlo(mu, sigma, shift):
    est = gaussian_gradient_estimates(lambda z: (z**2).sum(-1) + shift, torch.tensor([mu], dtype=torch.float64),
                                      torch.tensor([sigma], dtype=torch.float64), n_samples=N, generator=_gen(3))
    exact = quadratic_estimator_variances(mu, sigma, shift)
    var = est.variance()
    assert var["reparam_mu"].item() == pytest.approx(exact["reparam_mu"].item(), rel=0.02)
    assert var["score_mu"].item() == pytest.approx(exact["score_mu"].item(), rel=0.05)


def test_quadratic_variances_match_quadrature():
    # Gauss-Hermite quadrature (probabilists' weights) as a second, deterministic reference
    nodes, weights = np.polynomial.hermite_e.hermegauss(40)
    weights = weights / weights.sum()
    for mu, sigma, shift in [(1.0, 1.0, 0.0), (0.5, 2.0, 3.0), (-1.5, 0.4, -2.0)]:
        z = mu + sigma * nodes
        g = (z**2 + shift) * nodes / sigma
        var_score = (weights * g**2).sum() - (weights * g).sum() ** 2
        exact = quadratic_estimator_variances(mu, sigma, shift)
        assert exact["score_mu"].item() == pytest.approx(var_score, rel=1e-5)
        assert exact["reparam_mu"].item() == pytest.approx(4 * sigma**2, rel=1e-6)


def test_score_variance_exceeds_reparam_and_grows_with_shift():
    mu = torch.linspace(-3, 3, 13)
    for sigma in (0.1, 0.5, 1.0, 2.0):
        v = quadratic_estimator_variances(mu, sigma)
        assert torch.all(v["score_mu"] > v["reparam_mu"])
        assert torch.all(quadratic_estimator_variances(mu, sigma, 5.0)["score_mu"] > v["score_mu"] - 1e-4)


def test_baseline_keeps_mean_and_lowers_variance():
    mu, sigma = torch.tensor([1.5]), torch.tensor([0.5])
    eps = torch.randn(N, 1, generator=_gen(4))
    plain = gaussian_gradient_estimates(lambda z: (z**2).sum(-1), mu, sigma, eps=eps)
    based = gaussian_gradient_estimates(lambda z: (z**2).sum(-1), mu, sigma, eps=eps, baseline=mu**2 + sigma**2)
    assert torch.equal(plain.reparam_mu, based.reparam_mu)
    _close_within_se(based.score_mu, 2 * mu)
    exact = quadratic_estimator_variances(mu, sigma, -(mu**2 + sigma**2))["score_mu"]
    assert based.variance()["score_mu"].item() == pytest.approx(exact.item(), rel=0.05)
    assert based.variance()["score_mu"] < 0.5 * plain.variance()["score_mu"]


def test_batched_matches_per_point_and_shapes():
    torch.manual_seed(0)
    weight = torch.randn(3, 4)

    def f(z):  # a nonlinear function acting row by row: (K, B, 3) -> (K, B)
        return torch.tanh(z @ weight).pow(2).sum(-1)

    mu, sigma = torch.randn(5, 3), torch.rand(5, 3) + 0.1
    eps = torch.randn(7, 5, 3, generator=_gen(5))
    est = gaussian_gradient_estimates(f, mu, sigma, eps=eps)
    assert isinstance(est, GradientEstimates)
    assert est.reparam_mu.shape == (7, 5, 3) and est.values.shape == (7, 5)
    for k in range(7):
        for b in range(5):
            z = (mu[b] + sigma[b] * eps[k, b]).requires_grad_(True)
            (g,) = torch.autograd.grad(torch.tanh(z @ weight).pow(2).sum(), z)
            torch.testing.assert_close(est.reparam_mu[k, b], g)
            torch.testing.assert_close(est.reparam_sigma[k, b], g * eps[k, b])
            torch.testing.assert_close(est.score_mu[k, b], f(z.detach()[None, None])[0, 0] * eps[k, b] / sigma[b])
    assert set(est.mean()) == set(est.variance()) == {"reparam_mu", "reparam_sigma", "score_mu", "score_sigma"}


def test_scalar_inputs_and_reproducible():
    a = gaussian_gradient_estimates(lambda z: z.sum(-1), 0.0, 1.0, n_samples=10, generator=_gen(6))
    b = gaussian_gradient_estimates(lambda z: z.sum(-1), 0.0, 1.0, n_samples=10, generator=_gen(6))
    assert a.reparam_mu.shape == (10, 1)
    torch.testing.assert_close(a.score_mu, b.score_mu)
    torch.testing.assert_close(a.reparam_mu, torch.ones(10, 1))   # f linear: exact gradient 1, zero variance


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"mu": torch.zeros(2), "sigma": torch.tensor([1.0, -1.0]), "n_samples": 3}, "sigma must be > 0"),
    ({"mu": torch.zeros(2), "sigma": torch.ones(3), "n_samples": 3}, "mu and sigma must have the same shape"),
    ({"mu": torch.zeros(2), "sigma": torch.ones(2)}, "n_samples must be given"),
    ({"mu": torch.zeros(2), "sigma": torch.ones(2), "n_samples": 0}, "n_samples must be > 0"),
    ({"mu": torch.zeros(2), "sigma": torch.ones(2), "eps": torch.zeros(4, 3)}, "eps must have shape"),
    ({"mu": torch.tensor([float("nan"), 0.0]), "sigma": torch.ones(2), "n_samples": 3}, "mu must be finite"),
])
def test_bad_inputs_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        gaussian_gradient_estimates(lambda z: z.sum(-1), **kwargs)


def test_bad_f_output_shape_raises():
    with pytest.raises(ValueError, match="f must map"):
        gaussian_gradient_estimates(lambda z: z, torch.zeros(2), torch.ones(2), n_samples=3)


def test_quadratic_variances_bad_sigma():
    with pytest.raises(ValueError, match="sigma must be > 0"):
        quadratic_estimator_variances(1.0, 0.0)


def test_runs_on_device_and_matches_cpu(device):
    # noise drawn from a CPU generator, then moved: the same estimates on every device
    mu, sigma = torch.tensor([[0.5, -1.0]]), torch.tensor([[0.2, 0.7]])
    cpu = gaussian_gradient_estimates(lambda z: torch.sin(z).sum(-1), mu, sigma, n_samples=64, generator=_gen(7))
    dev = gaussian_gradient_estimates(lambda z: torch.sin(z).sum(-1), mu.to(device), sigma.to(device), n_samples=64,
                                      generator=_gen(7), baseline=torch.tensor(0.0))
    assert dev.reparam_mu.device.type == torch.device(device).type
    for name in ("reparam_mu", "reparam_sigma", "score_mu", "score_sigma"):
        torch.testing.assert_close(getattr(dev, name).cpu(), getattr(cpu, name), rtol=1e-5, atol=1e-6)
