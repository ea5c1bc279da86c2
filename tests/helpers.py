"""Models and strategies shared by several test modules (a linear Gaussian decoder, the chapter's bimodal target)."""

from __future__ import annotations

import torch
from hypothesis import strategies as st

from labcode.gaussian import GaussianMixture1D, GaussianMixture2D

F64 = torch.float64


class Linear(torch.nn.Module):
    """f(z) = W z + b as an nn.Module with ``latent_dim``, ``decode`` and ``noise_std`` (a model with a Gaussian decoder)."""

    noise_std = 1.0   # the tests pass their own noise level to the estimators

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.weight, self.bias = weight, bias
        self.latent_dim = weight.shape[1]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return z @ self.weight.T + self.bias

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.decode(z)


def random_linear(seed: int, data_dim: int, latent_dim: int, dtype: torch.dtype = torch.float64) -> Linear:
    g = torch.Generator().manual_seed(seed)
    return Linear(torch.randn(data_dim, latent_dim, generator=g, dtype=dtype),
                  torch.randn(data_dim, generator=g, dtype=dtype))


def linear_model(seed: int = 0, n: int = 6, sigma: float = 0.3) -> tuple[Linear, torch.Tensor]:
    """A random 2-D linear decoder and n points drawn from its model."""
    g = torch.Generator().manual_seed(seed)
    weight, bias = torch.randn(2, 2, generator=g, dtype=F64), torch.randn(2, generator=g, dtype=F64)
    z = torch.randn(n, 2, generator=g, dtype=F64)
    x = z @ weight.T + bias + sigma * torch.randn(n, 2, generator=g, dtype=F64)
    return Linear(weight, bias), x


def bimodal(dtype: torch.dtype = torch.float32) -> GaussianMixture1D:
    """The chapter's target 0.6 N(-2, 0.6²) + 0.4 N(2, 0.6²)."""
    return GaussianMixture1D(torch.tensor([0.6, 0.4], dtype=dtype), torch.tensor([-2.0, 2.0], dtype=dtype),
                             torch.tensor([0.6, 0.6], dtype=dtype))


@st.composite
def mixtures(draw: st.DrawFn) -> GaussianMixture1D:
    """Mixtures of 1 to 3 components with means in [-3, 3] and sigmas in [0.3, 2] (float64)."""
    k = draw(st.integers(1, 3))
    raw = [draw(st.floats(0.1, 1.0)) for _ in range(k)]
    weights = torch.tensor(raw, dtype=torch.float64)
    weights = weights / weights.sum()
    means = torch.tensor([draw(st.floats(-3.0, 3.0)) for _ in range(k)], dtype=torch.float64)
    sigmas = torch.tensor([draw(st.floats(0.3, 2.0)) for _ in range(k)], dtype=torch.float64)
    return GaussianMixture1D(weights, means, sigmas)


def mixture_2d() -> GaussianMixture2D:
    """The two-component correlated 2-D mixture that the fit and lattice tests share."""
    return GaussianMixture2D(torch.tensor([0.6, 0.4], dtype=F64), torch.tensor([[-2.0, -1.0], [2.0, 1.0]], dtype=F64),
                             torch.tensor([[[0.5, 0.2], [0.2, 0.4]], [[0.4, -0.15], [-0.15, 0.3]]], dtype=F64))
