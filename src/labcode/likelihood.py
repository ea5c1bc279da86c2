"""The intractable likelihood (Part 2, Task 2.1; chapter "The intractable likelihood").

The generative model is :math:`p(z) = \\mathcal N(0, I)` and
:math:`p(x \\mid z) = \\mathcal N(x;\\ f_\\theta(z),\\ \\sigma_x^2 I)`. Its
marginal likelihood :math:`p(x) = \\int p(x \\mid z)\\, p(z)\\, dz` is
estimated by simple Monte Carlo with prior samples,

.. math:: \\hat p_K(x) = \\frac1K \\sum_{k=1}^K p(x \\mid z_k),\\quad z_k \\sim p(z),

computed in log space as
:math:`\\log \\hat p_K(x) = \\operatorname{logsumexp}_k \\log p(x\\mid z_k) - \\log K`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch
from torch import Tensor

from ._checks import (
    check_finite,
    check_matrix,
    check_positive_int,
    positive_scalar,
    randn,
)

Decoder = Callable[[Tensor], Tensor]

#: entries of the (batch, chunk, data_dim) difference tensor held at once
_CHUNK_ELEMENTS = 1 << 22


def sample_prior(n_samples: int, latent_dim: int, *, generator: torch.Generator | None = None,
                 device: torch.device | str | None = None) -> Tensor:
    """Draw :math:`z_k \\sim p(z) = \\mathcal N(0, I)`.

    Returns:
        z: (n_samples, latent_dim), float32, on ``device`` (default CPU).
    """
    check_positive_int("n_samples", n_samples)
    check_positive_int("latent_dim", latent_dim)
    return randn((n_samples, latent_dim), generator=generator, device=device)


def gaussian_log_density(x: Tensor, mean: Tensor, noise_std: Tensor | float) -> Tensor:
    """:math:`\\log \\mathcal N(x;\\ \\text{mean},\\ \\sigma_x^2 I)`, summed over the last dim.

    ``x`` and ``mean`` broadcast against each other; ``noise_std`` is a
    positive scalar. Used by the estimators below; no argument checks.
    """
    d = x.shape[-1]
    var = torch.as_tensor(noise_std, dtype=x.dtype, device=x.device) ** 2
    sq = ((x - mean) ** 2).sum(dim=-1)
    return -0.5 * (sq / var + d * torch.log(2 * math.pi * var))


def _check_noise_std(noise_std: Tensor | float, like: Tensor) -> Tensor:
    return positive_scalar("noise_std", noise_std, like)


def log_likelihood_given_z(decoder: Decoder, x: Tensor, z: Tensor,
                           noise_std: Tensor | float) -> Tensor:
    """:math:`\\log p(x_i \\mid z_i) = \\log \\mathcal N(x_i;\\ f_\\theta(z_i),\\ \\sigma_x^2 I)` for paired rows.

    Args:
        decoder: :math:`f_\\theta`, maps (batch, latent_dim) to (batch, data_dim).
        x: (batch, data_dim) data points.
        z: (batch, latent_dim) latent codes, row ``i`` paired with ``x[i]``.
        noise_std: the decoder's noise standard deviation :math:`\\sigma_x > 0`.

    Returns:
        (batch,) log-likelihoods.
    """
    check_matrix("x", x)
    check_matrix("z", z)
    check_finite("x", x)
    check_finite("z", z)
    if x.shape[0] != z.shape[0]:
        raise ValueError(f"x and z must have the same number of rows, got {x.shape[0]} and {z.shape[0]}")
    sigma = _check_noise_std(noise_std, x)
    return gaussian_log_density(x, decoder(z), sigma)


def likelihood_given_z(decoder: Decoder, x: Tensor, z: Tensor, noise_std: Tensor | float) -> Tensor:
    """:math:`p(x_i \\mid z_i)`, the exponential of :func:`log_likelihood_given_z` (the lab's name).

    Underflows to 0 in float32 once :math:`\\log p < -103`; prefer the log.
    """
    return log_likelihood_given_z(decoder, x, z, noise_std).exp()


def log_likelihood_matrix(decoder: Decoder, x: Tensor, z: Tensor, noise_std: Tensor | float) -> Tensor:
    """:math:`\\log p(x_i \\mid z_k)` for every pair: x (batch, D), z (K, d) -> (batch, K)."""
    return gaussian_log_density(x[:, None, :], decoder(z)[None, :, :], noise_std)


def log_marginal_likelihood_mc(decoder: Decoder, x: Tensor, n_samples: int,
                               noise_std: Tensor | float, *,
                               generator: torch.Generator | None = None) -> Tensor:
    """Monte Carlo :math:`\\log \\hat p_K(x) = \\operatorname{logsumexp}_k \\log p(x \\mid z_k) - \\log K`.

    The same prior samples :math:`z_1..z_K \\sim \\mathcal N(0, I)` serve
    every row of ``x``. Samples are drawn and decoded in chunks, each
    chunk's log-sum-exp is kept, and the chunks are combined by one more
    log-sum-exp, so memory stays bounded for :math:`K = 10^6`. The decoder's
    latent size is read from its first ``nn.Linear`` (or pass a module with a
    ``latent_dim`` attribute). Runs under ``torch.no_grad()``.

    Args:
        decoder: :math:`f_\\theta` (an ``nn.Module``).
        x: (batch, data_dim) points.
        n_samples: :math:`K > 0`.
        noise_std: :math:`\\sigma_x > 0`.
        generator: source of the prior samples.

    Returns:
        (batch,) estimates of :math:`\\log p(x)`.
    """
    check_matrix("x", x)
    check_finite("x", x)
    check_positive_int("n_samples", n_samples)
    sigma = _check_noise_std(noise_std, x)
    with torch.no_grad():
        parts = [torch.logsumexp(block, dim=1) for block in _prior_log_weight_blocks(decoder, x, n_samples, sigma, generator)]
        return torch.logsumexp(torch.stack(parts, dim=1), dim=1) - math.log(n_samples)


def _prior_log_weight_blocks(decoder: Decoder, x: Tensor, n_samples: int, sigma: Tensor,
                             generator: torch.Generator | None) -> Iterator[Tensor]:
    """Blocks of :math:`\\log p(x_i \\mid z_k)`, (batch, chunk) each, for :math:`z_1..z_K \\sim p(z)` (unchecked).

    All K prior samples are drawn at once (8 MB at K = 10^6), so the result does not depend on
    the chunk size or on the other rows of x; only the decoding is chunked, to bound memory.
    """
    z = sample_prior(n_samples, _latent_dim(decoder), generator=generator, device=x.device).to(x.dtype)
    chunk = max(1, min(n_samples, _CHUNK_ELEMENTS // max(1, x.shape[0] * x.shape[1])))
    for start in range(0, n_samples, chunk):
        yield log_likelihood_matrix(decoder, x, z[start:start + chunk], sigma)


def approximate_marginal_likelihood(decoder: Decoder, x: Tensor, n_samples: int,
                                    noise_std: Tensor | float, *,
                                    generator: torch.Generator | None = None) -> Tensor:
    """:math:`\\hat p_K(x)`, the exponential of :func:`log_marginal_likelihood_mc` (the lab's name).

    Underflows to exactly 0 for points the decoder explains poorly; the book
    works with the log.
    """
    return log_marginal_likelihood_mc(decoder, x, n_samples, noise_std, generator=generator).exp()


def mean_likelihood_mc(decoder: Decoder, x: Tensor, n_samples: int, noise_std: Tensor | float, *,
                       generator: torch.Generator | None = None) -> Tensor:
    """:math:`\\hat p_K(x) = \\frac1K \\sum_k p(x \\mid z_k)` as the lab handout computes it: averaging probabilities.

    Each term :math:`p(x \\mid z_k) = \\exp \\log p(x \\mid z_k)` is formed in the dtype of ``x``
    before the average, so a term whose log-likelihood lies below the logarithm of the
    smallest positive number (about -103 in float32, -745 in float64) is exactly 0, and the
    estimate is exactly 0 when every term is. With the same ``generator`` state it uses the
    same prior samples as :func:`log_marginal_likelihood_mc`, which computes the same average
    in log space and never underflows; the chapter shows both side by side.

    Args:
        decoder: :math:`f_\\theta` (an ``nn.Module``).
        x: (batch, data_dim) points.
        n_samples: :math:`K > 0`.
        noise_std: :math:`\\sigma_x > 0`.
        generator: source of the prior samples.

    Returns:
        (batch,) estimates of :math:`p(x)` (not its logarithm).
    """
    check_matrix("x", x)
    check_finite("x", x)
    check_positive_int("n_samples", n_samples)
    sigma = _check_noise_std(noise_std, x)
    with torch.no_grad():
        blocks = _prior_log_weight_blocks(decoder, x, n_samples, sigma, generator)
        return sum(block.exp().sum(dim=1) for block in blocks) / n_samples


def effective_sample_size(log_weights: Tensor, dim: int = -1) -> Tensor:
    """Kish's effective sample size :math:`(\\sum_k w_k)^2 / \\sum_k w_k^2` from log-weights.

    Computed as :math:`\\exp(2\\,\\mathrm{lse}(\\log w) - \\mathrm{lse}(2\\log w))`.
    It lies in :math:`[1, K]`; for the prior-sampling estimator the weights
    are :math:`w_k = p(x \\mid z_k)`.

    Args:
        log_weights: (..., K) log-weights (``-inf`` allowed, not all of them).

    Returns:
        (...) effective sample sizes.
    """
    if torch.isnan(log_weights).any():
        raise ValueError("log_weights must not contain NaN")
    return torch.exp(2 * torch.logsumexp(log_weights, dim=dim) - torch.logsumexp(2 * log_weights, dim=dim))


def _latent_dim(decoder: Decoder) -> int:
    latent_dim = getattr(decoder, "latent_dim", None)
    if isinstance(latent_dim, int):
        return latent_dim
    if isinstance(decoder, torch.nn.Module):
        for module in decoder.modules():
            if isinstance(module, torch.nn.Linear):
                return module.in_features
    raise TypeError("decoder must be an nn.Module with an nn.Linear input layer or a latent_dim attribute")
