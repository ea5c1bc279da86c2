"""Gradient estimators for Gaussian expectations (Part 5, Task 5.1; chapter "Gradients of the ELBO").

For :math:`q_\\phi(z) = \\mathcal N(\\mu, \\operatorname{diag}\\sigma^2)` and a function
:math:`f`, the gradient of :math:`F(\\mu, \\sigma) = \\mathbb E_{q}[f(z)]` has two
unbiased one-sample estimators, both written with :math:`z = \\mu + \\sigma \\odot \\varepsilon`,
:math:`\\varepsilon \\sim \\mathcal N(0, I)`:

.. math:: \\text{reparameterised:}\\quad \\hat g_\\mu = \\nabla f(z), \\qquad
          \\hat g_\\sigma = \\nabla f(z) \\odot \\varepsilon,

.. math:: \\text{score function (REINFORCE):}\\quad \\hat g_\\mu = (f(z) - b)\\,\\frac{\\varepsilon}{\\sigma}, \\qquad
          \\hat g_\\sigma = (f(z) - b)\\,\\frac{\\varepsilon^2 - 1}{\\sigma},

since :math:`\\nabla_\\mu \\log q(z) = (z - \\mu)/\\sigma^2 = \\varepsilon/\\sigma` and
:math:`\\nabla_\\sigma \\log q(z) = ((z-\\mu)^2/\\sigma^2 - 1)/\\sigma = (\\varepsilon^2 - 1)/\\sigma`
(coordinatewise). The baseline :math:`b` (a constant, or anything independent
of :math:`\\varepsilon`) leaves the score-function estimator unbiased because the
score has mean zero. The reparameterised estimator uses the derivative of
:math:`f`; the score-function estimator uses only values of :math:`f`, multiplied
by a zero-mean factor, so its variance grows with :math:`(f - b)^2`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ._checks import as_tensor, check_finite, check_positive, check_positive_int, check_same_shape, randn

#: f maps (n_samples, ..., latent_dim) to (n_samples, ...), row by row
Objective = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class GradientEstimates:
    """Per-sample gradient estimates of :math:`\\mathbb E_{q}[f(z)]`, each (n_samples, ..., latent_dim).

    Attributes:
        reparam_mu, reparam_sigma: :math:`\\nabla f(z)` and :math:`\\nabla f(z) \\odot \\varepsilon`.
        score_mu, score_sigma: :math:`(f(z) - b)\\,\\varepsilon/\\sigma` and :math:`(f(z) - b)(\\varepsilon^2 - 1)/\\sigma`.
        values: :math:`f(z)`, (n_samples, ...).
    """

    reparam_mu: Tensor
    reparam_sigma: Tensor
    score_mu: Tensor
    score_sigma: Tensor
    values: Tensor

    def mean(self) -> dict[str, Tensor]:
        """Monte Carlo gradient estimates: the average over samples of each estimator, (..., latent_dim)."""
        return {name: getattr(self, name).mean(0) for name in _ESTIMATORS}

    def variance(self) -> dict[str, Tensor]:
        """Per-sample variance of each estimator (unbiased, over the sample axis), (..., latent_dim).

        The variance of an average of :math:`K` samples is this divided by :math:`K`.
        """
        return {name: getattr(self, name).var(0) for name in _ESTIMATORS}


_ESTIMATORS = ("reparam_mu", "reparam_sigma", "score_mu", "score_sigma")


def gaussian_gradient_estimates(f: Objective, mu: Tensor | float, sigma: Tensor | float, *,
                                n_samples: int | None = None, eps: Tensor | None = None,
                                generator: torch.Generator | None = None,
                                baseline: Tensor | float = 0.0) -> GradientEstimates:
    """Both one-sample estimators of :math:`\\nabla_{\\mu,\\sigma}\\, \\mathbb E_{z \\sim \\mathcal N(\\mu, \\operatorname{diag}\\sigma^2)}[f(z)]`, batched.

    All samples are evaluated in one call of ``f`` (no Python loop); the
    reparameterised gradients come from one ``autograd`` call on
    :math:`\\sum_k f(z_k)`, which is exact per sample because ``f`` must act
    row by row (sample ``k`` of the output depends on sample ``k`` of the input only).

    Args:
        f: differentiable function, (n_samples, ..., latent_dim) -> (n_samples, ...).
        mu: (..., latent_dim) means (a number is treated as shape (1,)).
        sigma: standard deviations > 0, same shape as ``mu``.
        n_samples: number of draws K; required unless ``eps`` is given.
        eps: optional noise (K, ..., latent_dim); drawn from ``generator`` if omitted.
        generator: source of ``eps``.
        baseline: :math:`b` for the score-function estimator, broadcastable to
            ``f``'s output (..., ) per sample; must not depend on ``eps``.

    Returns:
        :class:`GradientEstimates`; every estimator is unbiased for the same gradient.
    """
    mu, sigma = as_tensor("mu", mu), as_tensor("sigma", sigma)
    if mu.dim() == 0:
        mu, sigma = mu.reshape(1), sigma.reshape(1)
    check_same_shape("mu", mu, "sigma", sigma)
    check_finite("mu", mu)
    check_positive("sigma", sigma)
    if eps is None:
        if n_samples is None:
            raise ValueError("n_samples must be given when eps is None")
        check_positive_int("n_samples", n_samples)
        eps = randn((n_samples, *mu.shape), generator=generator, device=mu.device, dtype=mu.dtype)
    else:
        eps = as_tensor("eps", eps)
        if tuple(eps.shape[1:]) != tuple(mu.shape) or eps.shape[0] == 0:
            raise ValueError(f"eps must have shape (n_samples, *mu.shape) = (K, {', '.join(map(str, mu.shape))}), "
                             f"got {tuple(eps.shape)}")
        check_finite("eps", eps)
    baseline = as_tensor("baseline", baseline).to(device=mu.device, dtype=mu.dtype)
    check_finite("baseline", baseline)

    mu, sigma = mu.detach(), sigma.detach()
    z = (mu + sigma * eps).requires_grad_(True)
    with torch.enable_grad():
        values = f(z)
        expected = (eps.shape[0], *mu.shape[:-1])
        if tuple(values.shape) != expected:
            raise ValueError(f"f must map (n_samples, ..., latent_dim) to (n_samples, ...) = {expected}, "
                             f"got output shape {tuple(values.shape)}")
        (grad_z,) = torch.autograd.grad(values.sum(), z)
    values = values.detach()
    check_finite("f(z)", values)
    centred = (values - baseline).unsqueeze(-1)          # (K, ..., 1): f(z) - b
    return GradientEstimates(
        reparam_mu=grad_z,                               # dz/dmu = 1
        reparam_sigma=grad_z * eps,                      # dz/dsigma = eps
        score_mu=centred * eps / sigma,                  # grad_mu log q = eps / sigma
        score_sigma=centred * (eps**2 - 1) / sigma,      # grad_sigma log q = (eps^2 - 1) / sigma
        values=values,
    )


def quadratic_estimator_variances(mu: Tensor | float, sigma: Tensor | float,
                                  shift: Tensor | float = 0.0) -> dict[str, Tensor]:
    """Exact per-sample variances of the two estimators of :math:`\\tfrac{d}{d\\mu}\\,\\mathbb E_{z \\sim \\mathcal N(\\mu, \\sigma^2)}[z^2 + c]`.

    The gradient is :math:`2\\mu` for every :math:`c`. With :math:`z = \\mu + \\sigma\\varepsilon`:

    .. math:: \\operatorname{Var}[2z] = 4\\sigma^2, \\qquad
              \\operatorname{Var}\\Big[f(z)\\frac{\\varepsilon}{\\sigma}\\Big]
              = \\frac{(\\mu^2 + c)^2 + 6(\\mu^2 + c)\\sigma^2 + 12\\mu^2\\sigma^2 + 15\\sigma^4}{\\sigma^2} - 4\\mu^2,

    from :math:`\\mathbb E\\varepsilon^2 = 1`, :math:`\\mathbb E\\varepsilon^4 = 3`,
    :math:`\\mathbb E\\varepsilon^6 = 15` and vanishing odd moments. A baseline
    :math:`b` is the shift :math:`c = -b`; the reparameterised variance does not depend on :math:`c`.

    Args:
        mu, sigma, shift: broadcastable tensors or numbers; ``sigma`` > 0.

    Returns:
        ``{"reparam_mu": ..., "score_mu": ...}`` in the broadcast shape.
    """
    mu, sigma, shift = as_tensor("mu", mu), as_tensor("sigma", sigma), as_tensor("shift", shift)
    check_finite("mu", mu)
    check_positive("sigma", sigma)
    check_finite("shift", shift)
    a = mu**2 + shift                      # f(mu), the constant part of f(z)
    s2 = sigma**2
    second_moment = (a**2 + 6 * a * s2 + 12 * mu**2 * s2 + 15 * s2**2) / s2
    return {"reparam_mu": (4 * s2).expand_as(second_moment), "score_mu": second_moment - 4 * mu**2}
