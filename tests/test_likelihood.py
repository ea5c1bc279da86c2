"""Tests for labcode.likelihood: the decoder likelihood and the Monte Carlo marginal likelihood.

The reference for the marginal likelihood is a linear decoder f(z) = W z + b:
with z ~ N(0, I) and x | z ~ N(W z + b, σ² I), x ~ N(b, W Wᵀ + σ² I) exactly.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from torch import nn
from torch.distributions import MultivariateNormal, Normal

import labcode as lc
import labcode.likelihood
from helpers import random_linear
from labcode.likelihood import prior_log_weights, time_log_marginal

WEIGHT = ((1.0, 0.5), (-0.3, 0.8), (0.2, -0.6))   # W: (data_dim=3, latent_dim=2)
BIAS = (0.5, -1.0, 0.25)                           # b: (3,)
NOISE_STD = 0.5


def linear_decoder(dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> nn.Linear:
    """The reference decoder f(z) = W z + b as an ``nn.Linear(2, 3)``."""
    decoder = nn.Linear(2, 3, dtype=dtype, device=device)
    with torch.no_grad():
        decoder.weight.copy_(torch.tensor(WEIGHT, dtype=torch.float64))
        decoder.bias.copy_(torch.tensor(BIAS, dtype=torch.float64))
    return decoder


def exact_log_marginal(x: torch.Tensor, noise_std: float = NOISE_STD) -> torch.Tensor:
    """log N(x; b, W Wᵀ + σ² I) in float64, the exact log p(x) of the linear decoder."""
    w, b = torch.tensor(WEIGHT, dtype=torch.float64), torch.tensor(BIAS, dtype=torch.float64)
    cov = w @ w.T + noise_std**2 * torch.eye(3, dtype=torch.float64)
    return MultivariateNormal(b, covariance_matrix=cov).log_prob(x.double().cpu())


def points_near_the_mean(n: int = 8, dtype: torch.dtype = torch.float64, seed: int = 0) -> torch.Tensor:
    """(n, 3) points b + 0.5 ε, ε ~ N(0, I): typical points of the linear model."""
    eps = torch.randn(n, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return (torch.tensor(BIAS, dtype=torch.float64) + 0.5 * eps).to(dtype)


def estimate(x: torch.Tensor, n_samples: int, seed: int = 1, decoder: nn.Module | None = None) -> torch.Tensor:
    decoder = decoder if decoder is not None else linear_decoder(x.dtype, x.device)
    return lc.log_marginal_likelihood_mc(decoder, x, n_samples, NOISE_STD, generator=torch.Generator().manual_seed(seed))


# --- sample_prior ------------------------------------------------------------------------------

def test_sample_prior_is_standard_normal():
    z = lc.sample_prior(100_000, 2, generator=torch.Generator().manual_seed(0))
    assert z.shape == (100_000, 2) and z.dtype == torch.float32
    torch.testing.assert_close(z.mean(0), torch.zeros(2), rtol=0, atol=0.02)   # s.e. 0.003
    torch.testing.assert_close(z.T.cov(), torch.eye(2), rtol=0, atol=0.02)      # s.e. <= 0.005


def test_sample_prior_is_deterministic_and_device_independent(device):
    on_cpu = lc.sample_prior(10, 3, generator=torch.Generator().manual_seed(4))
    on_device = lc.sample_prior(10, 3, generator=torch.Generator().manual_seed(4), device=device)
    assert on_device.device.type == device.type
    assert torch.equal(on_device.cpu(), on_cpu)


@pytest.mark.parametrize(("args", "error", "match"), [
    ((0, 2), ValueError, "n_samples must be > 0"),
    ((-3, 2), ValueError, "n_samples must be > 0"),
    ((2, 0), ValueError, "latent_dim must be > 0"),
    ((2.0, 2), TypeError, "n_samples must be an int"),
    ((2, True), TypeError, "latent_dim must be an int"),
])
def test_sample_prior_rejects_bad_sizes(args, error, match):
    with pytest.raises(error, match=match):
        lc.sample_prior(*args)


# --- log p(x | z) ------------------------------------------------------------------------------

@st.composite
def paired_rows(draw: st.DrawFn, bound: float = 10.0) -> tuple[np.ndarray, np.ndarray, float]:
    """(x (batch, 3), z (batch, 2), noise_std) in float64."""
    batch = draw(st.integers(1, 8))
    values = st.floats(-bound, bound)
    x = draw(hnp.arrays(np.float64, (batch, 3), elements=values))
    z = draw(hnp.arrays(np.float64, (batch, 2), elements=values))
    return x, z, math.exp(draw(st.floats(-3.0, 1.5)))


@given(case=paired_rows())
def test_log_likelihood_given_z_matches_normal_log_prob(dtype, tol, case):
    x, z, noise_std = (torch.as_tensor(a, dtype=dtype) for a in case)
    decoder = linear_decoder(dtype)
    got = lc.log_likelihood_given_z(decoder, x, z, noise_std)
    assert got.shape == (x.shape[0],) and got.dtype == dtype
    mean = z.double() @ decoder.weight.double().T + decoder.bias.double()   # the decoder's own (rounded) weights
    expected = Normal(mean, noise_std.double()).log_prob(x.double()).sum(-1)
    torch.testing.assert_close(got.double(), expected, **tol)


def test_python_float_noise_std_keeps_float64_precision():
    x, z = torch.zeros(1, 3, dtype=torch.float64), torch.zeros(1, 2, dtype=torch.float64)
    got = lc.log_likelihood_given_z(linear_decoder(torch.float64), x, z, math.e)
    expected = Normal(torch.tensor(BIAS, dtype=torch.float64), math.e).log_prob(x).sum(-1)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def test_likelihood_given_z_is_the_exponential():
    x, z = points_near_the_mean(5, torch.float32), torch.randn(5, 2, generator=torch.Generator().manual_seed(2))
    log_lik = lc.log_likelihood_given_z(linear_decoder(), x, z, NOISE_STD)
    torch.testing.assert_close(lc.likelihood_given_z(linear_decoder(), x, z, NOISE_STD), log_lik.exp())


def test_gaussian_log_density_matches_normal_log_prob():
    x, mean = torch.randn(2, 4, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    expected = Normal(mean, 0.7).log_prob(x).sum(-1)
    torch.testing.assert_close(lc.gaussian_log_density(x, mean, 0.7), expected, rtol=1e-12, atol=1e-12)


def test_log_likelihood_matrix_holds_every_pair():
    x = points_near_the_mean(4, torch.float32)
    z = lc.sample_prior(5, 2, generator=torch.Generator().manual_seed(0))
    matrix = lc.log_likelihood_matrix(linear_decoder(), x, z, NOISE_STD)
    assert matrix.shape == (4, 5)
    pairs = lc.log_likelihood_given_z(linear_decoder(), x.repeat_interleave(5, dim=0), z.repeat(4, 1), NOISE_STD)
    torch.testing.assert_close(matrix, pairs.reshape(4, 5))


@pytest.mark.parametrize(("x", "z", "noise_std", "match"), [
    (torch.zeros(3, 3), torch.zeros(2, 2), 1.0, "x and z must have the same number of rows"),
    (torch.zeros(3), torch.zeros(3, 2), 1.0, r"x must have shape \(batch, dim\)"),
    (torch.zeros(3, 3), torch.zeros(3, 2, 1), 1.0, r"z must have shape \(batch, dim\)"),
    (torch.full((1, 3), float("nan")), torch.zeros(1, 2), 1.0, "x must be finite"),
    (torch.zeros(1, 3), torch.full((1, 2), float("inf")), 1.0, "z must be finite"),
    (torch.zeros(1, 3), torch.zeros(1, 2), 0.0, "noise_std must be > 0"),
    (torch.zeros(1, 3), torch.zeros(1, 2), -0.1, "noise_std must be > 0"),
    (torch.zeros(1, 3), torch.zeros(1, 2), float("nan"), "noise_std must be finite"),
    (torch.zeros(1, 3), torch.zeros(1, 2), torch.ones(3), "noise_std must be a scalar"),
])
def test_log_likelihood_given_z_rejects_bad_input(x, z, noise_std, match):
    with pytest.raises(ValueError, match=match):
        lc.log_likelihood_given_z(linear_decoder(), x, z, noise_std)


def test_log_likelihood_given_z_rejects_a_non_numeric_noise_std():
    with pytest.raises(TypeError, match="noise_std"):
        lc.log_likelihood_given_z(linear_decoder(), torch.zeros(1, 3), torch.zeros(1, 2), "0.5")


# --- log p(x) by Monte Carlo ---------------------------------------------------------------------

def test_log_marginal_likelihood_mc_converges_to_the_exact_value(dtype):
    x = points_near_the_mean(8, dtype)
    exact = exact_log_marginal(x)
    errors = {k: (estimate(x, k).double() - exact).abs() for k in (10**2, 10**4, 10**6)}
    # measured mean errors 0.13, 0.007, 0.0006; the error falls like K^(-1/2)
    assert errors[10**2].mean() > errors[10**4].mean() > errors[10**6].mean()
    assert errors[10**6].mean() < 0.1 * errors[10**2].mean()
    assert errors[10**6].max() < 0.01


def test_log_marginal_likelihood_mc_is_deterministic_for_a_seeded_generator():
    x = points_near_the_mean(4, torch.float32)
    assert torch.equal(estimate(x, 1000, seed=3), estimate(x, 1000, seed=3))
    assert not torch.equal(estimate(x, 1000, seed=3), estimate(x, 1000, seed=4))


def test_log_marginal_likelihood_mc_with_one_sample_is_log_p_x_given_that_sample():
    x = points_near_the_mean(4, torch.float32)
    z = lc.sample_prior(1, 2, generator=torch.Generator().manual_seed(1))
    expected = lc.log_likelihood_given_z(linear_decoder(), x, z.expand(4, 2), NOISE_STD)
    torch.testing.assert_close(estimate(x, 1, seed=1), expected)


def test_chunked_estimate_is_still_accurate(monkeypatch):
    x = points_near_the_mean(8, torch.float64)
    monkeypatch.setattr(labcode.likelihood, "_CHUNK_ELEMENTS", 1000 * x.numel())   # 1000 samples a chunk
    errors = (estimate(x, 100_000) - exact_log_marginal(x)).abs()
    assert errors.max() < 0.02   # one chunk: 0.008 at K = 10^5


def test_chunking_does_not_change_the_estimate(monkeypatch):
    x = points_near_the_mean(8, torch.float64)
    one_chunk = estimate(x, 10_000)
    monkeypatch.setattr(labcode.likelihood, "_CHUNK_ELEMENTS", 100 * x.numel())   # 100 chunks of 100 samples
    torch.testing.assert_close(estimate(x, 10_000), one_chunk, rtol=0, atol=1e-5)


def test_estimate_for_a_point_does_not_depend_on_the_rest_of_the_batch():
    x = points_near_the_mean(16, torch.float64)   # 16 x 3 entries: 2 chunks (87381 + 12619 samples) at K = 10^5
    alone = estimate(x[:1], 100_000)              # one chunk
    torch.testing.assert_close(estimate(x, 100_000)[:1], alone, rtol=0, atol=1e-5)


def test_approximate_marginal_likelihood_is_the_exponential():
    x = points_near_the_mean(4, torch.float64)
    p_hat = lc.approximate_marginal_likelihood(linear_decoder(torch.float64), x, 5000, NOISE_STD,
                                               generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(p_hat, estimate(x, 5000).exp(), rtol=1e-12, atol=0)


def test_mean_likelihood_mc_averages_the_probabilities_of_the_same_prior_samples():
    x = points_near_the_mean(4, torch.float64)
    decoder = linear_decoder(torch.float64)
    got = labcode.likelihood.mean_likelihood_mc(decoder, x, 3000, NOISE_STD, generator=torch.Generator().manual_seed(1))
    z = lc.sample_prior(3000, 2, generator=torch.Generator().manual_seed(1)).double()
    by_hand = torch.stack([lc.likelihood_given_z(decoder, row.expand(3000, 3), z, NOISE_STD).mean() for row in x])
    torch.testing.assert_close(got, by_hand, rtol=1e-12, atol=0)
    torch.testing.assert_close(got, estimate(x, 3000).exp(), rtol=1e-10, atol=0)   # same samples, log space


def test_mean_likelihood_mc_underflows_where_the_log_space_estimate_does_not():
    vae = lc.VAE.from_config(lc.VAEConfig())   # untrained: codes decode near the origin
    x = torch.tensor([[30.0, -30.0], [0.0, 0.0]])
    p = labcode.likelihood.mean_likelihood_mc(vae, x, 1000, 0.2, generator=torch.Generator().manual_seed(0))
    log_p = lc.log_marginal_likelihood_mc(vae, x, 1000, 0.2, generator=torch.Generator().manual_seed(0))
    assert p[0].item() == 0.0 and torch.isfinite(log_p).all() and log_p[0] < -104   # below float32's smallest number
    assert p[1].item() > 0 and math.isclose(p[1].item(), log_p[1].exp().item(), rel_tol=1e-4)


@pytest.mark.parametrize("bad", [0, -3])
def test_mean_likelihood_mc_checks_its_arguments(bad):
    with pytest.raises(ValueError, match="n_samples"):
        labcode.likelihood.mean_likelihood_mc(linear_decoder(), torch.zeros(1, 3), bad, NOISE_STD)
    with pytest.raises(ValueError, match="noise_std"):
        labcode.likelihood.mean_likelihood_mc(linear_decoder(), torch.zeros(1, 3), 10, float(bad))


def test_far_away_points_have_a_finite_log_likelihood():
    vae = lc.VAE.from_config(lc.VAEConfig())   # the lab's decoder, untrained
    x = torch.tensor([[1e3, -1e3], [0.0, 0.0]])
    log_p = lc.log_marginal_likelihood_mc(vae, x, 10_000, 0.1, generator=torch.Generator().manual_seed(0))
    log_p_given_z = lc.log_likelihood_given_z(vae.decode, x, torch.zeros(2, 2), 0.1)
    assert torch.isfinite(log_p).all() and torch.isfinite(log_p_given_z).all()
    assert log_p[0] < -1e7   # about -(1e6 + 1e6) / (2 * 0.01)
    assert lc.approximate_marginal_likelihood(vae, x[:1], 100, 0.1).item() == 0.0   # why the book uses the log


def test_latent_dim_is_read_from_the_decoder():
    x = torch.zeros(2, 2)
    sequential = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    assert lc.log_marginal_likelihood_mc(sequential, x, 10, 1.0).shape == (2,)
    assert lc.log_marginal_likelihood_mc(lc.VAE(latent_dim=5), x, 10, 1.0).shape == (2,)
    with pytest.raises(TypeError, match="decoder"):
        lc.log_marginal_likelihood_mc(lambda z: z, x, 10, 1.0)


@pytest.mark.parametrize(("x", "n_samples", "noise_std", "error", "match"), [
    (torch.zeros(2, 3), 0, 1.0, ValueError, "n_samples must be > 0"),
    (torch.zeros(2, 3), -10, 1.0, ValueError, "n_samples must be > 0"),
    (torch.zeros(2, 3), 10.0, 1.0, TypeError, "n_samples must be an int"),
    (torch.zeros(2, 3), 10, 0.0, ValueError, "noise_std must be > 0"),
    (torch.zeros(2, 3), 10, -1.0, ValueError, "noise_std must be > 0"),
    (torch.zeros(2, 3), 10, torch.tensor(float("inf")), ValueError, "noise_std must be finite"),
    (torch.zeros(3), 10, 1.0, ValueError, r"x must have shape \(batch, dim\)"),
    (torch.tensor([[0.0, float("nan"), 0.0]]), 10, 1.0, ValueError, "x must be finite"),
])
def test_log_marginal_likelihood_mc_rejects_bad_input(x, n_samples, noise_std, error, match):
    with pytest.raises(error, match=match):
        lc.log_marginal_likelihood_mc(linear_decoder(), x, n_samples, noise_std)


# --- effective sample size ---------------------------------------------------------------------

def reference_ess(log_weights: np.ndarray) -> np.ndarray:
    """(sum w)^2 / sum w^2 along the last axis, in float64 numpy (weights rescaled by their max)."""
    w = np.exp(log_weights - log_weights.max(axis=-1, keepdims=True))
    return w.sum(-1) ** 2 / (w**2).sum(-1)


@given(c=st.floats(-100.0, 100.0), k=st.integers(1, 1000))
def test_effective_sample_size_of_equal_weights_is_k(dtype, c, k):
    ess = lc.effective_sample_size(torch.full((k,), c, dtype=dtype))
    assert ess.item() == pytest.approx(k, rel=64 * torch.finfo(dtype).eps * (abs(c) + math.log(k) + 1))


def test_effective_sample_size_of_one_dominant_weight_is_one(dtype):
    log_weights = torch.full((2, 100), -math.inf, dtype=dtype)
    log_weights[0, 17] = 3.0
    log_weights[1] = -1000.0
    log_weights[1, 5] = 0.0   # all others are e^-1000 times smaller
    torch.testing.assert_close(lc.effective_sample_size(log_weights), torch.ones(2, dtype=dtype), rtol=0, atol=1e-6)


@given(log_weights=hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=2, max_side=50), elements=st.floats(-30.0, 30.0)))
def test_effective_sample_size_matches_the_numpy_formula(dtype, log_weights):
    lw = torch.as_tensor(log_weights, dtype=dtype)
    ess = lc.effective_sample_size(lw)
    assert ess.dtype == dtype and ess.shape == lw.shape[:-1]
    expected = reference_ess(lw.double().numpy())
    rtol = 64 * torch.finfo(dtype).eps * (np.abs(log_weights).max() + math.log(lw.shape[-1]) + 1)
    np.testing.assert_allclose(ess.double().numpy(), expected, rtol=rtol)
    k = lw.shape[-1]
    assert ((ess >= 1 - rtol) & (ess <= k * (1 + rtol))).all()


def test_effective_sample_size_along_another_dim():
    lw = torch.randn(7, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    np.testing.assert_allclose(lc.effective_sample_size(lw, dim=0).numpy(), reference_ess(lw.T.numpy()), rtol=1e-12)


def test_effective_sample_size_rejects_nan():
    with pytest.raises(ValueError, match="log_weights must not contain NaN"):
        lc.effective_sample_size(torch.tensor([0.0, float("nan")]))


# --- device and dtype --------------------------------------------------------------------------

def test_likelihood_functions_keep_device_and_dtype(device, dtype):
    decoder = linear_decoder(dtype, device)
    x = points_near_the_mean(4, dtype).to(device)
    z = lc.sample_prior(4, 2, generator=torch.Generator().manual_seed(0), device=device).to(dtype)
    g = torch.Generator().manual_seed(0)
    outputs = {
        "log_likelihood_given_z": lc.log_likelihood_given_z(decoder, x, z, NOISE_STD),
        "likelihood_given_z": lc.likelihood_given_z(decoder, x, z, torch.tensor(NOISE_STD, device=device)),
        "log_likelihood_matrix": lc.log_likelihood_matrix(decoder, x, z, NOISE_STD),
        "log_marginal_likelihood_mc": lc.log_marginal_likelihood_mc(decoder, x, 100, NOISE_STD, generator=g),
        "approximate_marginal_likelihood": lc.approximate_marginal_likelihood(decoder, x, 100, NOISE_STD, generator=g),
        "effective_sample_size": lc.effective_sample_size(torch.zeros(4, 10, dtype=dtype, device=device)),
    }
    for name, out in outputs.items():
        assert out.device.type == device.type, name
        assert out.dtype == dtype, name
    # the same seed gives the same prior samples, so the same estimate, on every device
    on_device = outputs["log_marginal_likelihood_mc"].double().cpu()
    on_cpu = estimate(x.cpu(), 100, seed=0)
    torch.testing.assert_close(on_device, on_cpu.double(), rtol=1e-5, atol=1e-5)


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


def test_time_log_marginal_returns_one_positive_time_per_k() -> None:
    decoder = random_linear(0, 2, 2, torch.float32)
    times = time_log_marginal(decoder, torch.zeros(2, 2), [10, 1000], 0.5, repeats=2,
                              generator=torch.Generator().manual_seed(0))
    assert len(times) == 2 and all(t > 0 for t in times)
    with pytest.raises(ValueError, match="repeats"):
        time_log_marginal(decoder, torch.zeros(2, 2), [10], 0.5, repeats=0)


def test_prior_samples_are_moved_to_the_requested_device() -> None:
    """Drawn on the generator's device, then moved: checked with PyTorch's data-less "meta" device, which any
    machine has (the CUDA case is the device-parametrised tests')."""
    z = lc.sample_prior(4, 3, generator=torch.Generator().manual_seed(0), device="meta")
    assert z.device.type == "meta" and z.shape == (4, 3)
