"""Tests for labcode.gaussian, against closed forms, torch.distributions, SciPy quadrature and brute force."""


from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from scipy import integrate, stats
from torch.distributions import Categorical, MixtureSameFamily, Normal

from helpers import mixtures, random_linear
from labcode.gaussian import GaussianMixture1D, GaussianMixture2D, LinearGaussianModel


@given(mixtures())
def test_mixture_log_prob_matches_torch_distributions(mixture: GaussianMixture1D) -> None:
    reference = MixtureSameFamily(Categorical(probs=mixture.weights), Normal(mixture.means, mixture.sigmas))
    x = torch.linspace(-8.0, 8.0, 97, dtype=torch.float64)
    torch.testing.assert_close(mixture.log_prob(x), reference.log_prob(x), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(mixture.mean(), reference.mean, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(mixture.variance(), reference.variance, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"weights": torch.tensor([0.5, 0.4]), "means": torch.zeros(2), "sigmas": torch.ones(2)}, "sum to 1"),
    ({"weights": torch.tensor([0.5, 0.5]), "means": torch.zeros(2), "sigmas": torch.tensor([1.0, -1.0])}, "sigmas must be > 0"),
    ({"weights": torch.tensor([1.0]), "means": torch.zeros(2), "sigmas": torch.ones(2)}, "same shape"),
    ({"weights": torch.tensor([1.5, -0.5]), "means": torch.zeros(2), "sigmas": torch.ones(2)}, "weights must be > 0"),
    ({"weights": torch.ones(1, 1), "means": torch.zeros(1, 1), "sigmas": torch.ones(1, 1)}, "shape \\(K,\\)"),
])
def test_mixture_rejects_bad_parameters(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        GaussianMixture1D(**kwargs)


def test_linear_gaussian_evidence_against_quadrature() -> None:
    w, b, sigma, x = 1.7, -0.4, 0.25, 0.9

    def joint(z: float) -> float:
        return stats.norm.pdf(x, w * z + b, sigma) * stats.norm.pdf(z)

    reference, _ = integrate.quad(joint, -12, 12, points=[(x - b) / w], limit=200)
    model = LinearGaussianModel(torch.tensor([[w]], dtype=torch.float64), torch.tensor([b], dtype=torch.float64), sigma)
    got = model.log_evidence(torch.tensor([[x]], dtype=torch.float64))
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
    mean, cov = LinearGaussianModel(decoder.weight.to(dtype), decoder.bias.to(dtype), sigma).posterior(x.to(dtype))
    torch.testing.assert_close(mean, mean_ref.to(dtype), rtol=tol["rtol"] * 10, atol=tol["atol"] * 10)
    torch.testing.assert_close(cov, cov_ref.to(dtype), rtol=tol["rtol"] * 10, atol=tol["atol"] * 10)
    log_px = LinearGaussianModel(decoder.weight, decoder.bias, sigma).log_evidence(x)
    reference = stats.multivariate_normal(decoder.bias.numpy(), marginal_cov.numpy()).logpdf(x.numpy())
    np.testing.assert_allclose(log_px.numpy(), reference, rtol=1e-10)


def test_linear_gaussian_checks_shapes() -> None:
    with pytest.raises(ValueError, match="weight must be"):
        LinearGaussianModel(torch.zeros(3, 2), torch.zeros(2), 1.0).log_evidence(torch.zeros(1, 2))
    with pytest.raises(ValueError, match="noise_std"):
        LinearGaussianModel(torch.zeros(2, 2), torch.zeros(2), 0.0).posterior(torch.zeros(1, 2))


def test_mixture_log_prob_works_elementwise_on_any_shape() -> None:
    mixture = GaussianMixture1D(torch.tensor([0.3, 0.7]), torch.tensor([-1.0, 2.0]), torch.tensor([0.5, 1.5]))
    x = torch.linspace(-3, 3, 6).reshape(2, 3)
    values = mixture.log_prob(x)
    assert values.shape == (2, 3)
    torch.testing.assert_close(values.flatten(), mixture.log_prob(x.flatten()))


def test_2d_mixture_rejects_bad_shapes_and_asymmetric_covariances() -> None:
    weights, means, covs = torch.tensor([0.5, 0.5]), torch.zeros(2, 2), torch.eye(2).expand(2, 2, 2).clone()
    with pytest.raises(ValueError, match="shapes"):
        GaussianMixture2D(weights, torch.zeros(2, 3), covs)
    with pytest.raises(ValueError, match="shapes"):
        GaussianMixture2D(weights, means, torch.eye(3).expand(2, 3, 3))
    asymmetric = covs.clone()
    asymmetric[0, 0, 1] = 0.5
    with pytest.raises(ValueError, match="covs"):
        GaussianMixture2D(weights, means, asymmetric)


def test_2d_mixture_log_prob_follows_the_dtype_of_its_argument() -> None:
    mixture = GaussianMixture2D(torch.tensor([0.6, 0.4], dtype=torch.float64), torch.tensor([[-1.0, 0.0], [1.0, 0.5]],
                                dtype=torch.float64), torch.tensor([[[1.0, 0.3], [0.3, 0.5]], [[0.4, 0.0], [0.0, 0.9]]],
                                                                   dtype=torch.float64))
    z = torch.tensor([[0.2, -0.1], [1.5, 0.3]])
    assert mixture.log_prob(z).dtype == torch.float32
    torch.testing.assert_close(mixture.log_prob(z), mixture.log_prob(z.double()).float())
