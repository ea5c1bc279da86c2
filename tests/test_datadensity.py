"""Tests for labcode.datadensity: the law p_data of one spiral point, its samples and its entropy."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal

import labcode as lc
from labcode.datadensity import SpiralDensity
from labcode.gaussian import GaussianMixture2D

F64 = torch.float64


def reference_mixture(density: SpiralDensity) -> MixtureSameFamily:
    """p_data as a torch.distributions mixture of N isotropic Gaussians with equal weights."""
    centres = torch.tensor(lc.spiral_curve(density.n)[1].tolist(), dtype=F64)
    components = Independent(Normal(centres, torch.full_like(centres, density.noise)), 1)
    return MixtureSameFamily(Categorical(torch.ones(density.n, dtype=F64)), components)


def test_centres_are_the_noise_free_points_of_the_lab_data() -> None:
    density = SpiralDensity(500, 0.1)
    assert torch.equal(density.centres(), lc.make_spiral(500, 0.0))


def test_lab_data_minus_centres_is_gaussian_noise_of_the_stated_level() -> None:
    """A draw of the spiral is one point per component: residuals are N(0, σ² I) (tolerance 5 standard errors)."""
    spec = lc.SpiralSpec(n=500, noise=0.1, seed=3)
    residual = (lc.lab_data(spec) - SpiralDensity(spec.n, spec.noise).centres()).double()
    n = residual.numel()
    assert abs(residual.mean().item()) < 5 * spec.noise / math.sqrt(n)
    assert abs(residual.var().item() / spec.noise**2 - 1) < 5 * math.sqrt(2 / n)


@pytest.mark.parametrize("n, noise", [(1, 0.3), (7, 0.4), (500, 0.1)])
def test_log_prob_matches_torch_distributions(n: int, noise: float, device: torch.device, dtype: torch.dtype,
                                              tol: dict[str, float]) -> None:
    density = SpiralDensity(n, noise)
    x = density.sample(300, generator=torch.Generator().manual_seed(0), dtype=F64)
    x = torch.cat([x, torch.tensor([[20.0, -20.0], [0.0, 0.0]], dtype=F64)])   # far out and at the centre
    expected = reference_mixture(density).log_prob(x)
    got = density.log_prob(x.to(device=device, dtype=dtype))
    assert got.dtype == dtype and got.device.type == device.type and got.shape == (x.shape[0],)
    # float32 loses about |log p| * eps relative to float64 inputs rounded once
    scale = 1.0 if dtype == F64 else expected.abs().max().item()
    torch.testing.assert_close(got.double().cpu(), expected, rtol=tol["rtol"], atol=tol["atol"] * scale * 10)


def test_log_prob_works_in_blocks() -> None:
    density = SpiralDensity(50, 0.2)
    x = density.sample(9000, generator=torch.Generator().manual_seed(1), dtype=F64)   # more rows than one block
    torch.testing.assert_close(density.log_prob(x), reference_mixture(density).log_prob(x), rtol=1e-12, atol=1e-12)


def test_density_integrates_to_one() -> None:
    """The midpoint rule on a box holding the curve ± 10σ (cell 0.02, about σ/20): mass 1 to 1e-6."""
    density = SpiralDensity(7, 0.4)
    h = 0.02
    axis = torch.arange(-14.0 + h / 2, 14.0, h, dtype=F64)
    grid = torch.cartesian_prod(axis, axis)
    mass = density.log_prob(grid).exp().sum().item() * h * h
    assert abs(mass - 1) < 1e-6


def test_samples_have_the_mixtures_mean_and_covariance() -> None:
    """200 000 samples against the closed-form moments of the same mixture (GaussianMixture2D), within 5 s.e."""
    density = SpiralDensity(20, 0.3)
    centres = density.centres(F64)
    mixture = GaussianMixture2D(torch.full((20,), 1 / 20, dtype=F64), centres,
                                density.noise**2 * torch.eye(2, dtype=F64).expand(20, 2, 2).clone())
    m = 200_000
    x = density.sample(m, generator=torch.Generator().manual_seed(2), dtype=F64)
    cov = mixture.covariance()
    se_mean = (cov.diagonal() / m).sqrt()
    assert ((x.mean(0) - mixture.mean()).abs() < 5 * se_mean).all()
    # standard error of a sample variance: sqrt((m4 - var^2)/m), bounded here by sqrt(3 * var^2 / m) * 2 generously
    assert ((torch.cov(x.T) - cov).abs() < 5 * 2 * cov.diagonal().max() * math.sqrt(3 / m)).all()


def test_sample_respects_device_and_dtype_and_seed(device: torch.device, dtype: torch.dtype) -> None:
    density = SpiralDensity(30, 0.1)
    a = density.sample(100, generator=torch.Generator().manual_seed(4), dtype=dtype, device=device)
    b = density.sample(100, generator=torch.Generator().manual_seed(4), dtype=dtype)
    assert a.dtype == dtype and a.device.type == device.type and a.shape == (100, 2)
    assert torch.equal(a.cpu(), b)


def test_entropy_of_one_component_is_the_gaussian_entropy() -> None:
    """N = 1: H = log(2πeσ²) exactly; the estimate lies within 4 standard errors."""
    density = SpiralDensity(1, 0.3)
    estimate, stderr = density.entropy(20_000, generator=torch.Generator().manual_seed(5))
    exact = math.log(2 * math.pi * math.e * 0.3**2)
    assert stderr > 0 and abs(estimate - exact) < 4 * stderr


def test_entropy_of_separated_components_adds_log_n() -> None:
    """Components far apart: H = log N + log(2πeσ²) up to an overlap that is negligible here."""
    density = SpiralDensity(5, 0.01)
    estimate, stderr = density.entropy(20_000, generator=torch.Generator().manual_seed(6))
    exact = math.log(5) + math.log(2 * math.pi * math.e * 0.01**2)
    assert abs(estimate - exact) < 4 * stderr + 1e-9


def test_entropy_lies_between_its_bounds_for_the_lab_spiral() -> None:
    density = SpiralDensity(500, 0.1)
    estimate, stderr = density.entropy(5_000, generator=torch.Generator().manual_seed(7))
    one = math.log(2 * math.pi * math.e * 0.1**2)
    assert one < estimate - 4 * stderr and estimate + 4 * stderr < one + math.log(500)


def test_entropy_agrees_with_scipy_quadrature() -> None:
    """N = 3 overlapping components: -∫ p log p by SciPy's dblquad against the Monte Carlo estimate (4 s.e.)."""
    integrate = pytest.importorskip("scipy.integrate")
    density = SpiralDensity(3, 0.8)
    centres = density.centres(F64).tolist()
    var = density.noise**2

    def integrand(y: float, x: float) -> float:          # plain floats: an independent implementation of p_data
        p = sum(math.exp(-((x - a) ** 2 + (y - b) ** 2) / (2 * var)) for a, b in centres) / (3 * 2 * math.pi * var)
        return -p * math.log(p) if p > 0 else 0.0

    reach = 3 * math.pi + 8 * 0.8
    exact, _ = integrate.dblquad(integrand, -reach, reach, -reach, reach, epsabs=1e-7)
    estimate, stderr = density.entropy(40_000, generator=torch.Generator().manual_seed(8))
    assert abs(estimate - exact) < 4 * stderr


@pytest.mark.parametrize("kwargs, error, match", [
    ({"n": 0}, ValueError, "n must be > 0"),
    ({"n": 2.5}, TypeError, "n must be an int"),
    ({"noise": 0.0}, ValueError, "noise must be > 0"),
    ({"noise": -0.1}, ValueError, "noise must be > 0"),
    ({"noise": math.inf}, ValueError, "noise must be > 0"),
    ({"noise": "0.1"}, TypeError, "noise must be a real number"),
])
def test_invalid_parameters_are_rejected(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        SpiralDensity(**kwargs)


def test_invalid_arguments_are_rejected() -> None:
    density = SpiralDensity(10, 0.1)
    with pytest.raises(ValueError, match="x must have 2 columns"):
        density.log_prob(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="x must have shape"):
        density.log_prob(torch.zeros(4))
    with pytest.raises(TypeError, match="x must be a floating-point tensor"):
        density.log_prob(torch.zeros(4, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="x must be finite"):
        density.log_prob(torch.tensor([[math.nan, 0.0]]))
    with pytest.raises(ValueError, match="m must be > 0"):
        density.sample(0)
    with pytest.raises(ValueError, match="n_samples must be >= 2"):
        density.entropy(1)
