"""Tests for labcode.elbo: reparameterisation, reconstruction term and KL regulariser."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from torch.distributions import Independent, Normal, kl_divergence

import labcode as lc

#: the lab's check of the reparameterisation (Part 5)
LAB_MU = (1.0, -0.5)
LAB_LOGVAR = (0.5, -0.2)
N_SAMPLES = 100_000


@st.composite
def gaussian_rows(draw: st.DrawFn, bound: float = 10.0, logvar_bound: float = 10.0) -> tuple[np.ndarray, ...]:
    """(x, x_mu, x_logvar): float64 arrays of one common shape (batch, data_dim)."""
    shape = draw(hnp.array_shapes(min_dims=2, max_dims=2, max_side=6))
    values = st.floats(-bound, bound)
    x = draw(hnp.arrays(np.float64, shape, elements=values))
    x_mu = draw(hnp.arrays(np.float64, shape, elements=values))
    x_logvar = draw(hnp.arrays(np.float64, shape, elements=st.floats(-logvar_bound, logvar_bound)))
    return x, x_mu, x_logvar


def as_tensors(arrays, dtype: torch.dtype, device: torch.device | str = "cpu") -> list[torch.Tensor]:
    return [torch.as_tensor(a, dtype=dtype, device=device) for a in arrays]


def reference_log_likelihood(x: torch.Tensor, x_mu: torch.Tensor, x_logvar: torch.Tensor) -> torch.Tensor:
    """sum_j log N(x_j; mu_j, e^logvar_j) from torch.distributions, in float64."""
    return Normal(x_mu.double(), torch.exp(0.5 * x_logvar.double())).log_prob(x.double()).sum(-1)


def lab_mu_logvar(dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu",
                  n: int = N_SAMPLES) -> tuple[torch.Tensor, torch.Tensor]:
    mu = torch.tensor(LAB_MU, dtype=dtype, device=device).expand(n, 2)
    logvar = torch.tensor(LAB_LOGVAR, dtype=dtype, device=device).expand(n, 2)
    return mu, logvar


# --- reparameterize ------------------------------------------------------------------------------

def test_reparameterize_has_the_target_mean_and_variance(device, dtype):
    mu, logvar = lab_mu_logvar(dtype, device)
    z = lc.reparameterize(mu, logvar, generator=torch.Generator().manual_seed(0))   # one batched call
    assert z.shape == (N_SAMPLES, 2)
    assert z.device.type == device.type and z.dtype == dtype
    # standard errors: 0.004 for the means, 0.007 and 0.004 for the variances
    torch.testing.assert_close(z.mean(0).double().cpu(), torch.tensor(LAB_MU, dtype=torch.float64), rtol=0, atol=0.02)
    torch.testing.assert_close(z.var(0).double().cpu(), torch.tensor(LAB_LOGVAR, dtype=torch.float64).exp(), rtol=0, atol=0.02)


def test_reparameterize_with_given_noise_is_mu_plus_sigma_eps(dtype, tol):
    mu, logvar = lab_mu_logvar(dtype, n=5)
    eps = torch.randn(5, 2, generator=torch.Generator().manual_seed(1), dtype=dtype)
    z = lc.reparameterize(mu, logvar, eps=eps)
    torch.testing.assert_close(z, mu + torch.exp(logvar).sqrt() * eps, **tol)


def test_reparameterize_is_deterministic_for_a_seeded_generator():
    mu, logvar = lab_mu_logvar(n=10)
    a = lc.reparameterize(mu, logvar, generator=torch.Generator().manual_seed(3))
    b = lc.reparameterize(mu, logvar, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_reparameterize_draws_the_same_noise_on_every_device(device):
    mu, logvar = lab_mu_logvar(n=10)
    on_cpu = lc.reparameterize(mu, logvar, generator=torch.Generator().manual_seed(3))
    on_device = lc.reparameterize(mu.to(device), logvar.to(device), generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(on_device.cpu(), on_cpu)


def test_reparameterize_gradients_are_the_analytic_ones(device, dtype, tol):
    mu = torch.tensor(LAB_MU, dtype=dtype, device=device).repeat(4, 1).requires_grad_()
    logvar = torch.tensor(LAB_LOGVAR, dtype=dtype, device=device).repeat(4, 1).requires_grad_()
    eps = torch.randn(4, 2, generator=torch.Generator().manual_seed(2), dtype=dtype).to(device)
    lc.reparameterize(mu, logvar, eps=eps).sum().backward()
    for grad in (mu.grad, logvar.grad):
        assert grad is not None and torch.isfinite(grad).all() and (grad != 0).all()
    torch.testing.assert_close(mu.grad, torch.ones_like(mu), **tol)                                   # dz/dmu = 1
    torch.testing.assert_close(logvar.grad, 0.5 * torch.exp(0.5 * logvar.detach()) * eps, **tol)     # dz/dlogvar = sigma eps / 2


def test_reparameterize_gradients_with_sampled_noise_reach_mu_and_logvar():
    mu, logvar = (t.clone().requires_grad_() for t in lab_mu_logvar(n=10_000))
    z = lc.reparameterize(mu, logvar, generator=torch.Generator().manual_seed(0))
    (z**2).sum(1).mean().backward()
    # E[z^2] = mu^2 + sigma^2: d/dmu = 2 mu and d/dlogvar = sigma^2, up to Monte Carlo error (s.e. <= 0.03)
    torch.testing.assert_close(mu.grad.sum(0), 2 * torch.tensor(LAB_MU), rtol=0, atol=0.1)
    torch.testing.assert_close(logvar.grad.sum(0), torch.tensor(LAB_LOGVAR).exp(), rtol=0, atol=0.1)


@given(params=gaussian_rows(bound=1e3, logvar_bound=30.0))
def test_reparameterize_is_finite_for_extreme_inputs(dtype, params):
    _, mu, logvar = as_tensors(params, dtype)
    z = lc.reparameterize(mu, logvar, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(z).all()


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"mu": torch.zeros(3, 2), "logvar": torch.zeros(3, 3)}, "mu and logvar must have the same shape"),
    ({"mu": torch.zeros(3, 2), "logvar": torch.zeros(3, 2), "eps": torch.zeros(3, 1)}, "eps and mu must have the same shape"),
    ({"mu": torch.tensor([float("nan")]), "logvar": torch.zeros(1)}, "mu must be finite"),
    ({"mu": torch.zeros(1), "logvar": torch.tensor([float("inf")])}, "logvar must be finite"),
    ({"mu": torch.zeros(1), "logvar": torch.zeros(1), "eps": torch.tensor([float("nan")])}, "eps must be finite"),
])
def test_reparameterize_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        lc.reparameterize(**kwargs)


def test_reparameterize_rejects_integer_tensors():
    with pytest.raises(TypeError, match="logvar must be a floating-point tensor"):
        lc.reparameterize(torch.zeros(2), torch.zeros(2, dtype=torch.int32))


# --- reconstruction_loss ------------------------------------------------------------------------

@given(params=gaussian_rows())
def test_reconstruction_loss_matches_normal_log_prob(dtype, tol, params):
    x, x_mu, x_logvar = as_tensors(params, dtype)
    got = lc.reconstruction_loss(x, x_mu, x_logvar)
    assert got.shape == x.shape[:-1] and got.dtype == dtype
    torch.testing.assert_close(got.double(), reference_log_likelihood(x, x_mu, x_logvar), **tol)


def test_reconstruction_loss_broadcasts_a_shared_log_variance(tol, dtype):
    x = torch.randn(6, 2, generator=torch.Generator().manual_seed(0), dtype=dtype)
    x_mu = torch.zeros(2, dtype=dtype)
    x_logvar = torch.tensor([0.3], dtype=dtype)
    got = lc.reconstruction_loss(x, x_mu, x_logvar)
    assert got.shape == (6,)
    torch.testing.assert_close(got.double(), reference_log_likelihood(x, x_mu.expand_as(x), x_logvar.expand_as(x)), **tol)


def test_reconstruction_loss_is_a_log_likelihood_higher_is_better():
    x = torch.tensor([[1.0, 2.0]])
    logvar = torch.zeros(1, 2)
    exact = lc.reconstruction_loss(x, x, logvar)
    assert exact.item() == pytest.approx(-math.log(2 * math.pi), abs=1e-6)
    assert (lc.reconstruction_loss(x, x + 0.5, logvar) < exact).all()


@given(params=gaussian_rows(bound=1e3, logvar_bound=30.0))
def test_reconstruction_loss_is_finite_for_extreme_inputs(dtype, params):
    x, x_mu, x_logvar = as_tensors(params, dtype)
    got = lc.reconstruction_loss(x, x_mu, x_logvar)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got.double(), reference_log_likelihood(x, x_mu, x_logvar), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize(("args", "match"), [
    ((torch.zeros(3, 2), torch.zeros(3, 4), torch.zeros(1)), "must broadcast"),
    ((torch.zeros(2), torch.zeros(3, 2), torch.zeros(2)), "x_mu and x_logvar must broadcast to the shape of x"),
    ((torch.tensor([float("nan")]), torch.zeros(1), torch.zeros(1)), "x must be finite"),
    ((torch.zeros(1), torch.tensor([float("inf")]), torch.zeros(1)), "x_mu must be finite"),
    ((torch.zeros(1), torch.zeros(1), torch.tensor([float("nan")])), "x_logvar must be finite"),
])
def test_reconstruction_loss_rejects_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        lc.reconstruction_loss(*args)


def test_reconstruction_loss_rejects_wrong_types():
    with pytest.raises(TypeError, match="x_mu must be a tensor or a real number"):
        lc.reconstruction_loss(torch.zeros(2), "0", torch.zeros(2))


# --- kl_regularization ---------------------------------------------------------------------------

@given(params=gaussian_rows())
def test_kl_regularization_matches_torch_distributions(dtype, tol, params):
    _, mu, logvar = as_tensors(params, dtype)
    q = Independent(Normal(mu.double(), torch.exp(0.5 * logvar.double())), 1)
    p = Independent(Normal(torch.zeros_like(mu.double()), 1.0), 1)
    got = lc.kl_regularization(mu, logvar)
    assert got.dtype == dtype
    torch.testing.assert_close(got.double(), kl_divergence(q, p), **tol)


@given(params=gaussian_rows(bound=1e3, logvar_bound=30.0))
def test_kl_regularization_is_finite_for_extreme_inputs(dtype, params):
    _, mu, logvar = as_tensors(params, dtype)
    kl = lc.kl_regularization(mu, logvar)
    assert torch.isfinite(kl).all() and (kl >= 0).all()


def test_kl_regularization_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="mu and logvar must have the same shape"):
        lc.kl_regularization(torch.zeros(3, 2), torch.zeros(2, 3))


# --- device and dtype --------------------------------------------------------------------------

def test_elbo_terms_keep_device_and_dtype(device, dtype):
    g = torch.Generator().manual_seed(0)
    x, x_mu, mu, logvar = (torch.randn(4, 2, generator=g, dtype=dtype).to(device) for _ in range(4))
    outputs = {
        "reparameterize": lc.reparameterize(mu, logvar, generator=g),
        "reparameterize(eps)": lc.reparameterize(mu, logvar, eps=torch.zeros_like(mu)),
        "reconstruction_loss": lc.reconstruction_loss(x, x_mu, logvar),
        "kl_regularization": lc.kl_regularization(mu, logvar),
    }
    for name, out in outputs.items():
        assert out.device.type == device.type, name
        assert out.dtype == dtype, name


def test_reparameterised_noise_has_normal_tails() -> None:
    """Beyond 1, 2, 3 and 4 standard deviations z falls as often as a normal does (five standard errors of a
    binomial count): a sampler that clamps or truncates the noise (which leaves the first two moments within a few
    per cent) fails here."""
    n = 400_000
    z = lc.reparameterize(torch.full((n,), 0.5, dtype=torch.float64), torch.full((n,), math.log(4.0), dtype=torch.float64),
                          generator=torch.Generator().manual_seed(11))
    standardised = (z - 0.5) / 2.0
    for k in (1.0, 2.0, 3.0, 4.0):
        p = math.erfc(k / math.sqrt(2))
        observed = (standardised.abs() > k).double().mean().item()
        assert abs(observed - p) <= 5 * math.sqrt(p * (1 - p) / n), (k, observed, p)
