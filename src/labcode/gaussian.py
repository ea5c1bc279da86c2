"""Gaussian densities: isotropic, diagonal and full Gaussians, mixtures in one and two dimensions, and the linear-Gaussian model.

Every density the book evaluates lives here, in log space:

.. math:: \\log \\mathcal N(x;\\ m, \\sigma^2 I_D) = -\\frac{\\|x - m\\|^2}{2\\sigma^2} - \\frac D2 \\log(2\\pi\\sigma^2),
          \\qquad p(x) = \\sum_k w_k\\, \\mathcal N(x;\\ m_k, S_k).

The linear-Gaussian model :math:`p(z) = \\mathcal N(0, I_d)`,
:math:`p(x \\mid z) = \\mathcal N(Wz + b, \\sigma_x^2 I_D)` is the one latent-variable
model whose evidence and posterior are Gaussian in closed form; it is a model
with a Gaussian decoder (:class:`labcode.likelihood.GaussianDecoderModel`).

Used by the chapters "The intractable likelihood", "Bayes' rule and its circularity",
"KL divergence", "Mode-covering and mode-seeking in two dimensions", "Beyond the lab"
and "Validation" (and, through them, by most of labcode).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.distributions import MultivariateNormal

from ._checks import as_tensor, check_finite, check_matrix, check_positive, positive_scalar


def gaussian_log_density(x: Tensor, mean: Tensor, noise_std: Tensor | float) -> Tensor:
    """:math:`\\log \\mathcal N(x;\\ \\text{mean},\\ \\sigma_x^2 I)`, summed over the last dim.

    ``x`` and ``mean`` broadcast against each other; ``noise_std`` is a
    positive scalar. No argument checks (callers check at their boundary).
    """
    d = x.shape[-1]
    var = torch.as_tensor(noise_std, dtype=x.dtype, device=x.device) ** 2
    sq = ((x - mean) ** 2).sum(dim=-1)
    return -0.5 * (sq / var + d * torch.log(2 * math.pi * var))


def diagonal_gaussian_log_density(z: Tensor, mean: Tensor, logvar: Tensor) -> Tensor:
    """:math:`\\log \\mathcal N(z;\\ m, \\operatorname{diag} e^{\\texttt{logvar}})`, summed over the last dim (unchecked)."""
    return -0.5 * (((z - mean) ** 2) * torch.exp(-logvar) + logvar + math.log(2 * math.pi)).sum(dim=-1)


def normal_log_density_grid(grid: Tensor, mu: Tensor, log_sigma: Tensor) -> Tensor:
    """:math:`\\log \\mathcal N(x_i;\\ \\mu, e^{2\\log\\sigma})` for grid (M,) and parameters (...) -> (..., M) (unchecked)."""
    z = (grid - mu.unsqueeze(-1)) * torch.exp(-log_sigma).unsqueeze(-1)
    return -0.5 * z**2 - log_sigma.unsqueeze(-1) - 0.5 * math.log(2 * math.pi)


@dataclass(frozen=True)
class GaussianMixture1D:
    """:math:`p(x) = \\sum_{k=1}^K w_k\\, \\mathcal N(x;\\ m_k, s_k^2)` on the real line.

    Attributes:
        weights: (K,) :math:`w_k > 0`, summing to one.
        means: (K,) :math:`m_k`.
        sigmas: (K,) :math:`s_k > 0`.
    """

    weights: Tensor
    means: Tensor
    sigmas: Tensor

    def __post_init__(self) -> None:
        for name in ("weights", "means", "sigmas"):
            value = as_tensor(name, getattr(self, name))
            if value.dim() != 1 or value.shape[0] == 0:
                raise ValueError(f"{name} must have shape (K,) with K > 0, got {tuple(value.shape)}")
            object.__setattr__(self, name, value)
        if not (self.weights.shape == self.means.shape == self.sigmas.shape):
            raise ValueError("weights, means and sigmas must have the same shape, got "
                             f"{tuple(self.weights.shape)}, {tuple(self.means.shape)}, {tuple(self.sigmas.shape)}")
        check_positive("weights", self.weights)
        check_finite("means", self.means)
        check_positive("sigmas", self.sigmas)
        total = self.weights.sum().item()
        if abs(total - 1.0) > 1e-5:
            raise ValueError(f"weights must sum to 1, got {total}")

    def log_prob(self, x: Tensor) -> Tensor:
        """:math:`\\log p(x) = \\operatorname{logsumexp}_k\\big[\\log w_k + \\log \\mathcal N(x;\\ m_k, s_k^2)\\big]`, elementwise.

        Args:
            x: (...) points.

        Returns:
            (...) log-densities.
        """
        x = as_tensor("x", x)
        w, m, s = (t.to(device=x.device, dtype=x.dtype) for t in (self.weights, self.means, self.sigmas))
        z = (x.unsqueeze(-1) - m) / s
        log_components = -0.5 * z**2 - torch.log(s) - 0.5 * math.log(2 * math.pi)
        return torch.logsumexp(torch.log(w) + log_components, dim=-1)

    def mean(self) -> Tensor:
        """:math:`\\mathbb E_p[X] = \\sum_k w_k m_k` (0-dim)."""
        return (self.weights * self.means).sum()

    def variance(self) -> Tensor:
        """:math:`\\operatorname{Var}_p[X] = \\sum_k w_k (s_k^2 + m_k^2) - (\\mathbb E_p X)^2` (0-dim)."""
        return (self.weights * (self.sigmas**2 + self.means**2)).sum() - self.mean() ** 2


@dataclass(frozen=True)
class GaussianMixture2D:
    """:math:`p(z) = \\sum_k w_k\\, \\mathcal N(z;\\ m_k, S_k)` in the plane.

    Attributes:
        weights: (K,) :math:`w_k > 0`, summing to one.
        means: (K, 2) :math:`m_k`.
        covs: (K, 2, 2) symmetric positive definite :math:`S_k`.
    """

    weights: Tensor
    means: Tensor
    covs: Tensor

    def __post_init__(self) -> None:
        for name in ("weights", "means", "covs"):
            object.__setattr__(self, name, as_tensor(name, getattr(self, name)))
        k = self.weights.shape[0] if self.weights.dim() == 1 else -1
        if k < 1 or self.means.shape != (k, 2) or self.covs.shape != (k, 2, 2):
            raise ValueError("weights, means and covs must have shapes (K,), (K, 2), (K, 2, 2), got "
                             f"{tuple(self.weights.shape)}, {tuple(self.means.shape)}, {tuple(self.covs.shape)}")
        if not (self.weights > 0).all() or abs(self.weights.sum().item() - 1) > 1e-6:
            raise ValueError("weights must be > 0 and sum to 1")
        check_finite("means", self.means)
        if not torch.allclose(self.covs, self.covs.transpose(1, 2)) or not (torch.linalg.eigvalsh(self.covs) > 0).all():
            raise ValueError("covs must be symmetric positive definite")

    def log_prob(self, z: Tensor) -> Tensor:
        """:math:`\\log p(z)` for z (..., 2) -> (...)."""
        components = MultivariateNormal(self.means.to(z), covariance_matrix=self.covs.to(z))
        return torch.logsumexp(torch.log(self.weights.to(z)) + components.log_prob(z[..., None, :]), dim=-1)

    def mean(self) -> Tensor:
        """(2,) :math:`\\sum_k w_k m_k`."""
        return self.weights @ self.means

    def covariance(self) -> Tensor:
        """(2, 2) :math:`\\sum_k w_k (S_k + m_k m_k^\\top) - \\bar m \\bar m^\\top`."""
        second = (self.weights[:, None, None] * (self.covs + self.means[:, :, None] * self.means[:, None, :])).sum(0)
        m = self.mean()
        return second - torch.outer(m, m)


@dataclass(frozen=True)
class LinearGaussianModel:
    """:math:`p(z) = \\mathcal N(0, I_d)`, :math:`p(x \\mid z) = \\mathcal N(Wz + b,\\ \\sigma_x^2 I_D)`.

    :math:`x = Wz + b + \\sigma_x\\varepsilon` is a sum of independent Gaussians, so (chapter "Bayes' rule",
    ``bayes-prop-linear``) :math:`p(x) = \\mathcal N(b,\\ WW^\\top + \\sigma_x^2 I_D)`, and completing the square in
    :math:`\\log p(x \\mid z) + \\log p(z)` gives the posterior

    .. math:: p(z \\mid x) = \\mathcal N\\big(S\\, W^\\top (x - b) / \\sigma_x^2,\\ S\\big), \\qquad
              S = \\big(I_d + W^\\top W / \\sigma_x^2\\big)^{-1}.

    The arguments are checked once, here. A model with a Gaussian decoder: it has
    ``latent_dim``, ``decode`` and ``noise_std``.

    Attributes:
        weight: (D, d) matrix :math:`W`.
        bias: (D,) vector :math:`b`.
        noise_std: :math:`\\sigma_x > 0` (a number or a 0-dim tensor).
    """

    weight: Tensor
    bias: Tensor
    noise_std: Tensor | float

    def __post_init__(self) -> None:
        check_matrix("weight", self.weight)
        check_finite("weight", self.weight)
        check_finite("bias", self.bias)
        if self.bias.shape != (self.weight.shape[0],):
            raise ValueError(f"weight must be (data_dim, latent_dim) and bias (data_dim,), "
                             f"got {tuple(self.weight.shape)} and {tuple(self.bias.shape)}")
        positive_scalar("noise_std", self.noise_std, self.weight)

    @property
    def latent_dim(self) -> int:
        """:math:`d`."""
        return self.weight.shape[1]

    @property
    def data_dim(self) -> int:
        """:math:`D`."""
        return self.weight.shape[0]

    def _check_x(self, x: Tensor) -> None:
        check_matrix("x", x, self.data_dim)
        check_finite("x", x)

    def decode(self, z: Tensor) -> Tensor:
        """(..., d) -> (..., D): the decoder mean :math:`Wz + b`."""
        return z @ self.weight.T + self.bias

    def log_evidence(self, x: Tensor) -> Tensor:
        """Exact :math:`\\log p(x) = \\log \\mathcal N(x;\\ b,\\ WW^\\top + \\sigma_x^2 I_D)`: (batch, D) -> (batch,)."""
        self._check_x(x)
        cov = self.weight @ self.weight.T + self.noise_std ** 2 * torch.eye(self.data_dim, dtype=x.dtype, device=x.device)
        return MultivariateNormal(self.bias, covariance_matrix=cov).log_prob(x)

    def posterior(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Exact posterior :math:`\\mathcal N(m(x), S)`: ``(mean, cov)``, (batch, d) means and the (d, d) covariance, the same for every :math:`x`."""
        self._check_x(x)
        precision = torch.eye(self.latent_dim, dtype=x.dtype, device=x.device) + self.weight.T @ self.weight / self.noise_std ** 2
        cov = torch.linalg.inv(precision)
        mean = (x - self.bias) @ self.weight @ cov.T / self.noise_std ** 2
        return mean, cov

    def diagonal_posterior(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The posterior as ``(mean, logvar)``, each (batch, d), when :math:`W` has orthogonal columns.

        Then :math:`W^\\top W = \\operatorname{diag}(\\|w_j\\|^2)` and
        :math:`S_{jj} = 1 / (1 + \\|w_j\\|^2 / \\sigma_x^2)`: the posterior is a member of the
        encoder's diagonal-Gaussian family (the chapter "Validation" relies on this).
        """
        self._check_x(x)
        var = 1.0 / (1.0 + (self.weight**2).sum(0) / self.noise_std**2)   # diagonal of S
        mean = var * ((x - self.bias) @ self.weight) / self.noise_std**2
        return mean, torch.log(var).expand_as(mean)
