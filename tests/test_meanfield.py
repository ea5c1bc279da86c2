"""Tests for labcode.meanfield: CAVI for a Gaussian target against the closed forms and torch.distributions."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.distributions import MultivariateNormal, kl_divergence

from labcode.gaussian import LinearGaussianModel
from labcode.meanfield import cavi_gaussian, diagonal_gaussian_elbo, linear_gaussian_natural_parameters

F64 = torch.float64


def random_model(seed: int, d: int = 2, data_dim: int = 3, noise_std: float = 0.5,
                 dtype: torch.dtype = F64) -> LinearGaussianModel:
    gen = torch.Generator().manual_seed(seed)
    weight = torch.randn(data_dim, d, generator=gen, dtype=F64).to(dtype)
    bias = torch.randn(data_dim, generator=gen, dtype=F64).to(dtype)
    return LinearGaussianModel(weight, bias, noise_std)


def points(seed: int, batch: int, data_dim: int, dtype: torch.dtype = F64) -> torch.Tensor:
    return 2 * torch.randn(batch, data_dim, generator=torch.Generator().manual_seed(seed), dtype=F64).to(dtype)


def run(model: LinearGaussianModel, x: torch.Tensor, sweeps: int):
    precision, shift = linear_gaussian_natural_parameters(model, x)
    start_mean, start_var = torch.zeros_like(shift), torch.ones_like(shift)       # the prior
    return cavi_gaussian(precision, shift, start_mean, start_var, sweeps)


def test_natural_parameters_give_the_posterior_of_bayes_prop_linear() -> None:
    model = random_model(0, d=3, data_dim=4)
    x = points(1, 5, 4)
    precision, shift = linear_gaussian_natural_parameters(model, x)
    mean, cov = model.posterior(x)
    torch.testing.assert_close(torch.linalg.inv(precision), cov, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(torch.linalg.solve(precision, shift.T).T, mean, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("d", [1, 2, 4])
def test_fixed_point_has_the_exact_mean_and_the_conditional_variances(d: int) -> None:
    """After many sweeps: μ = m to 1e-10, v_j = 1/Λ_jj exactly, and 1/Λ_jj <= S_jj."""
    model = random_model(2, d=d, data_dim=d + 1)
    x = points(3, 6, d + 1)
    trace = run(model, x, sweeps=400)
    mean, cov = model.posterior(x)
    precision = torch.linalg.inv(cov)
    torch.testing.assert_close(trace.means[-1], mean, rtol=0, atol=1e-10)
    torch.testing.assert_close(trace.variances[-1], (1 / precision.diagonal()).expand_as(mean), rtol=1e-12, atol=0)
    assert (trace.variances[-1] <= cov.diagonal() * (1 + 1e-12)).all()


def test_two_dimensional_error_shrinks_by_rho_squared_per_sweep() -> None:
    """d = 2: after the first sweep the error of μ_2 is multiplied by ρ² = Λ_12²/(Λ_11 Λ_22) in every sweep."""
    model = random_model(4, d=2, data_dim=2)
    x = points(5, 3, 2)
    trace = run(model, x, sweeps=8)
    precision, _ = linear_gaussian_natural_parameters(model, x)
    rho2 = (precision[0, 1] ** 2 / (precision[0, 0] * precision[1, 1])).item()
    error = trace.means[trace.sweep_ends] - model.posterior(x)[0]          # (sweeps + 1, B, 2)
    ratio = error[2:, :, 1] / error[1:-1, :, 1]
    torch.testing.assert_close(ratio, torch.full_like(ratio, rho2), rtol=1e-8, atol=0)


def test_diagonal_posterior_is_reached_in_one_sweep_with_zero_gap() -> None:
    """W with orthogonal columns: Λ is diagonal, one sweep gives the exact posterior and ELBO = log p(x)."""
    weight = torch.tensor([[1.0, -0.5], [1.0, 0.5], [0.0, 0.0]], dtype=F64)
    model = LinearGaussianModel(weight, torch.zeros(3, dtype=F64), 0.4)
    x = points(6, 4, 3)
    trace = run(model, x, sweeps=1)
    mean, _ = model.posterior(x)
    torch.testing.assert_close(trace.means[-1], mean, rtol=1e-12, atol=1e-12)
    elbo = diagonal_gaussian_elbo(model, x, trace.means[-1], trace.variances[-1])
    torch.testing.assert_close(elbo, model.log_evidence(x), rtol=1e-12, atol=1e-12)


@given(seed=st.integers(0, 10_000), d=st.integers(1, 4))
def test_fixed_point_maximises_the_elbo_over_diagonal_gaussians(seed: int, d: int) -> None:
    """Part 3 of elbo-prop-cavi-gauss: ELBO(q) < ELBO(q*) for random diagonal q ≠ q*, q* = ∏ N(m_j, 1/Λ_jj)."""
    model = random_model(seed, d=d, data_dim=d + 1)
    x = points(seed + 1, 1, d + 1)
    precision, _ = linear_gaussian_natural_parameters(model, x)
    post_mean, _ = model.posterior(x)
    best = diagonal_gaussian_elbo(model, x, post_mean, 1 / precision.diagonal()[None])
    gen = torch.Generator().manual_seed(seed)
    mean = post_mean + torch.randn(200, 1, d, generator=gen, dtype=F64)
    var = torch.exp(torch.randn(200, 1, d, generator=gen, dtype=F64)) / precision.diagonal()
    elbo = diagonal_gaussian_elbo(model, x, mean, var)
    assert (elbo < best).all()


@pytest.mark.parametrize("d", [2, 3, 5])
def test_mean_field_gap_is_the_log_determinant_of_the_rescaled_precision(d: int) -> None:
    """elbo-cor-cavi-gap: log p(x) - ELBO(q*) = -1/2 log det(D^-1 Λ); for d = 2 it is -1/2 log(1 - ρ²)."""
    model = random_model(20 + d, d=d, data_dim=d)
    x = points(30 + d, 3, d)
    precision, _ = linear_gaussian_natural_parameters(model, x)
    post_mean, post_cov = model.posterior(x)
    gap = model.log_evidence(x) - diagonal_gaussian_elbo(model, x, post_mean, (1 / precision.diagonal()).expand_as(post_mean))
    expected = -0.5 * torch.logdet(precision / precision.diagonal()[:, None])
    torch.testing.assert_close(gap, expected.expand_as(gap), rtol=1e-10, atol=1e-12)
    if d == 2:
        rho = post_cov[0, 1] / post_cov.diagonal().prod().sqrt()
        torch.testing.assert_close(expected, -0.5 * torch.log1p(-rho**2), rtol=1e-12, atol=0)
        torch.testing.assert_close(1 / precision.diagonal(), (1 - rho**2) * post_cov.diagonal(), rtol=1e-12, atol=0)


def test_elbo_equals_log_evidence_minus_kl_from_torch_distributions(device: torch.device, dtype: torch.dtype,
                                                                     tol: dict[str, float]) -> None:
    """ELBO(x; q) = log p(x) - KL(q || p(z | x)) (elbo-thm-gap) for random diagonal q, KL by torch.distributions."""
    model64 = random_model(7, d=3, data_dim=4)
    x64 = points(8, 5, 4)
    gen = torch.Generator().manual_seed(9)
    mean64 = torch.randn(5, 3, generator=gen, dtype=F64)
    var64 = torch.exp(torch.randn(5, 3, generator=gen, dtype=F64))
    post_mean, post_cov = model64.posterior(x64)
    q = MultivariateNormal(mean64, covariance_matrix=torch.diag_embed(var64))
    expected = model64.log_evidence(x64) - kl_divergence(q, MultivariateNormal(post_mean, covariance_matrix=post_cov))
    model = LinearGaussianModel(model64.weight.to(device=device, dtype=dtype), model64.bias.to(device=device, dtype=dtype),
                                0.5)
    got = diagonal_gaussian_elbo(model, x64.to(device=device, dtype=dtype), mean64.to(device=device, dtype=dtype),
                                 var64.to(device=device, dtype=dtype))
    assert got.dtype == dtype and got.device.type == device.type and got.shape == (5,)
    scale = expected.abs().max().item()
    torch.testing.assert_close(got.double().cpu(), expected, rtol=tol["rtol"] * 10, atol=tol["atol"] * 10 * scale)


def test_elbo_broadcasts_over_a_trace() -> None:
    model = random_model(10)
    x = points(11, 4, 3)
    trace = run(model, x, sweeps=3)
    elbo = diagonal_gaussian_elbo(model, x, trace.means, trace.variances)
    assert elbo.shape == (7, 4)
    torch.testing.assert_close(elbo[3], diagonal_gaussian_elbo(model, x, trace.means[3], trace.variances[3]))


@given(seed=st.integers(0, 10_000), d=st.integers(1, 4), noise_std=st.floats(0.05, 3.0))
def test_elbo_never_decreases_and_stays_below_log_evidence(seed: int, d: int, noise_std: float) -> None:
    """Property: every coordinate update raises the ELBO (to rounding), and ELBO <= log p(x) throughout."""
    model = random_model(seed, d=d, data_dim=d + 1, noise_std=noise_std)
    x = points(seed + 1, 3, d + 1)
    trace = run(model, x, sweeps=6)
    elbo = diagonal_gaussian_elbo(model, x, trace.means, trace.variances)
    log_evidence = model.log_evidence(x)
    slack = 1e-9 * (1 + elbo.abs().max().item())
    assert (elbo.diff(dim=0) >= -slack).all()
    assert (elbo <= log_evidence + slack).all()


def test_trace_bookkeeping_and_device(device: torch.device, dtype: torch.dtype) -> None:
    model = random_model(12, dtype=dtype)
    x = points(13, 2, 3, dtype).to(device)
    model = LinearGaussianModel(model.weight.to(device), model.bias.to(device), 0.5)
    trace = run(model, x, sweeps=3)
    assert trace.means.shape == trace.variances.shape == (7, 2, 2)
    assert trace.means.dtype == dtype and trace.means.device.type == device.type
    assert trace.coordinate.tolist() == [-1, 0, 1, 0, 1, 0, 1]
    assert trace.sweep_ends.tolist() == [0, 2, 4, 6]


def test_invalid_arguments_are_rejected() -> None:
    precision = torch.tensor([[2.0, 0.5], [0.5, 1.0]], dtype=F64)
    shift = torch.zeros(3, 2, dtype=F64)
    ones = torch.ones(3, 2, dtype=F64)
    with pytest.raises(ValueError, match="precision must be symmetric"):
        cavi_gaussian(torch.tensor([[2.0, 0.5], [0.4, 1.0]], dtype=F64), shift, shift, ones, 1)
    with pytest.raises(ValueError, match="precision must be positive definite"):
        cavi_gaussian(torch.tensor([[1.0, 2.0], [2.0, 1.0]], dtype=F64), shift, shift, ones, 1)
    with pytest.raises(ValueError, match="precision must have shape"):
        cavi_gaussian(torch.ones(2, 3, dtype=F64), shift, shift, ones, 1)
    with pytest.raises(TypeError, match="precision must be a floating-point tensor"):
        cavi_gaussian([[1.0]], shift, shift, ones, 1)
    with pytest.raises(ValueError, match="shift must have 2 columns"):
        cavi_gaussian(precision, torch.zeros(3, 3, dtype=F64), shift, ones, 1)
    with pytest.raises(ValueError, match="init_var must be > 0"):
        cavi_gaussian(precision, shift, shift, -ones, 1)
    with pytest.raises(ValueError, match="init_mean must have shape"):
        cavi_gaussian(precision, shift, torch.zeros(2, 2, dtype=F64), ones, 1)
    with pytest.raises(ValueError, match="sweeps must be > 0"):
        cavi_gaussian(precision, shift, shift, ones, 0)
    with pytest.raises(TypeError, match="sweeps must be an int"):
        cavi_gaussian(precision, shift, shift, ones, 2.0)
    model = random_model(14)
    x = points(15, 3, 3)
    with pytest.raises(ValueError, match="var must be > 0"):
        diagonal_gaussian_elbo(model, x, shift, torch.zeros(3, 2, dtype=F64))
    with pytest.raises(ValueError, match="mean must have shape"):
        diagonal_gaussian_elbo(model, x, torch.zeros(4, 2, dtype=F64), ones)
    with pytest.raises(ValueError, match="x must have 3 columns"):
        linear_gaussian_natural_parameters(model, torch.zeros(3, 2, dtype=F64))
    with pytest.raises(TypeError, match="model must be a LinearGaussianModel"):
        linear_gaussian_natural_parameters(object(), x)
    assert math.isfinite(diagonal_gaussian_elbo(model, x, shift, ones).sum().item())
