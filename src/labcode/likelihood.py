"""The intractable likelihood (Part 2, Task 2.1; chapters "The intractable likelihood", "Bayes' rule and its circularity", "Beyond the lab" and "Summary").

The generative model is :math:`p(z) = \\mathcal N(0, I)` and
:math:`p(x \\mid z) = \\mathcal N(x;\\ f_\\theta(z),\\ \\sigma_x^2 I)`. Its
marginal likelihood :math:`p(x) = \\int p(x \\mid z)\\, p(z)\\, dz` is
estimated by simple Monte Carlo with prior samples,

.. math:: \\hat p_K(x) = \\frac1K \\sum_{k=1}^K p(x \\mid z_k),\\quad z_k \\sim p(z),

computed in log space as
:math:`\\log \\hat p_K(x) = \\operatorname{logsumexp}_k \\log p(x\\mid z_k) - \\log K`.

A *decoder* is either a model with a Gaussian decoder (:class:`GaussianDecoderModel`:
``latent_dim``, ``decode``, ``noise_std``; the VAE and
:class:`labcode.gaussian.LinearGaussianModel` are two) or, as in the lab, a bare
network :math:`f_\\theta` whose first ``nn.Linear`` takes the latent code.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from ._checks import (
    check_finite,
    check_matrix,
    check_positive_int,
    positive_scalar,
    randn,
)
from .gaussian import gaussian_log_density


@runtime_checkable
class GaussianDecoderModel(Protocol):
    """A model :math:`p(z) = \\mathcal N(0, I_d)`, :math:`p(x \\mid z) = \\mathcal N(\\texttt{decode}(z),\\ \\sigma_x^2 I)`."""

    latent_dim: int          #: :math:`d`

    @property
    def noise_std(self) -> Tensor | float:
        """:math:`\\sigma_x > 0`."""

    def decode(self, z: Tensor) -> Tensor:
        """(n, d) -> (n, D) decoder means."""


Decoder = Callable[[Tensor], Tensor] | GaussianDecoderModel

#: entries of the (batch, chunk, data_dim) difference tensor held at once
_CHUNK_ELEMENTS = 1 << 22


def decoder_function(decoder: Decoder) -> Callable[[Tensor], Tensor]:
    """The map :math:`z \\mapsto f(z)`: ``decoder.decode`` for a :class:`GaussianDecoderModel`, else the decoder itself."""
    return decoder.decode if isinstance(decoder, GaussianDecoderModel) else decoder


def latent_dim_of(decoder: Decoder) -> int:
    """:math:`d`: a :class:`GaussianDecoderModel`'s ``latent_dim``, else (the lab's rule) the input size of the first ``nn.Linear``."""
    if isinstance(decoder, GaussianDecoderModel):
        return decoder.latent_dim
    if isinstance(decoder, torch.nn.Module):
        for module in decoder.modules():
            if isinstance(module, torch.nn.Linear):
                return module.in_features
    raise TypeError("decoder must be a model with latent_dim, decode and noise_std, "
                    "or an nn.Module with an nn.Linear input layer")


def sample_prior(n_samples: int, latent_dim: int, *, generator: torch.Generator | None = None,
                 device: torch.device | str | None = None) -> Tensor:
    """Draw :math:`z_k \\sim p(z) = \\mathcal N(0, I)`.

    Returns:
        z: (n_samples, latent_dim), float32, on ``device`` (default CPU).
    """
    check_positive_int("n_samples", n_samples)
    check_positive_int("latent_dim", latent_dim)
    return randn((n_samples, latent_dim), generator=generator, device=device)


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
    sigma = positive_scalar("noise_std", noise_std, x)
    return gaussian_log_density(x, decoder_function(decoder)(z), sigma)



def likelihood_given_z(decoder: Decoder, x: Tensor, z: Tensor, noise_std: Tensor | float) -> Tensor:
    """:math:`p(x_i \\mid z_i) = \\mathcal N(x_i;\\ f_\\theta(z_i),\\ \\sigma_x^2 I)` for paired rows: the density itself.

    It is the exponential of the log-density summed over the data dimension,
    and underflows to 0 in float32 once :math:`\\log p < -104`; the book works
    with the log.

    Args:
        decoder: :math:`f_\\theta`, an ``nn.Module`` from (batch, latent_dim) to (batch, data_dim), or a
            model with ``latent_dim``, ``decode`` and ``noise_std`` (a whole :class:`labcode.VAE`), whose
            ``decode`` is used.
        x: (batch, data_dim) data points.
        z: (batch, latent_dim) latent codes, row ``i`` paired with ``x[i]``.
        noise_std: the decoder's noise standard deviation :math:`\\sigma_x > 0`.

    Returns:
        (batch,) densities.
    """
    return log_likelihood_given_z(decoder, x, z, noise_std).exp()



def log_likelihood_matrix(decoder: Decoder, x: Tensor, z: Tensor, noise_std: Tensor | float) -> Tensor:
    """:math:`\\log p(x_i \\mid z_k)` for every pair: x (batch, D), z (K, d) -> (batch, K)."""
    return gaussian_log_density(x[:, None, :], decoder_function(decoder)(z)[None, :, :], noise_std)



def log_marginal_likelihood_mc(decoder: Decoder, x: Tensor, n_samples: int,
                               noise_std: Tensor | float, *,
                               generator: torch.Generator | None = None) -> Tensor:
    """Monte Carlo :math:`\\log \\hat p_K(x) = \\operatorname{logsumexp}_k \\log p(x \\mid z_k) - \\log K`.

    The same prior samples :math:`z_1..z_K \\sim \\mathcal N(0, I)` serve
    every row of ``x``. Samples are drawn and decoded in chunks, each
    chunk's log-sum-exp is kept, and the chunks are combined by one more
    log-sum-exp, so memory stays bounded for :math:`K = 10^6`. The latent size
    is :func:`latent_dim_of` the decoder. Runs under ``torch.no_grad()``.

    Args:
        decoder: :math:`f_\\theta` (an ``nn.Module``).
        x: (batch, data_dim) points.
        n_samples: :math:`K > 0`.
        noise_std: :math:`\\sigma_x > 0`.
        generator: source of the prior samples.

    Returns:
        (batch,) estimates of :math:`\\log p(x)`.
    """
    sigma = _check_mc_args(x, n_samples, noise_std)
    with torch.no_grad():
        parts = [torch.logsumexp(block, dim=1) for block in _prior_log_weight_blocks(decoder, x, n_samples, sigma, generator)]
        return torch.logsumexp(torch.stack(parts, dim=1), dim=1) - math.log(n_samples)


def _check_mc_args(x: Tensor, n_samples: int, noise_std: Tensor | float) -> Tensor:
    """The checks of the prior-sampling estimators' arguments; returns :math:`\\sigma_x` as a tensor like ``x``."""
    check_matrix("x", x)
    check_finite("x", x)
    check_positive_int("n_samples", n_samples)
    return positive_scalar("noise_std", noise_std, x)


def _prior_log_weight_blocks(decoder: Decoder, x: Tensor, n_samples: int, sigma: Tensor,
                             generator: torch.Generator | None) -> Iterator[Tensor]:
    """Blocks of :math:`\\log p(x_i \\mid z_k)`, (batch, chunk) each, for :math:`z_1..z_K \\sim p(z)` (unchecked).

    All K prior samples are drawn at once (8 MB at K = 10^6), so the result does not depend on
    the chunk size or on the other rows of x; only the decoding is chunked, to bound memory.
    """
    z = sample_prior(n_samples, latent_dim_of(decoder), generator=generator, device=x.device).to(x.dtype)
    chunk = max(1, min(n_samples, _CHUNK_ELEMENTS // max(1, x.shape[0] * x.shape[1])))
    for start in range(0, n_samples, chunk):
        yield log_likelihood_matrix(decoder, x, z[start:start + chunk], sigma)


def approximate_marginal_likelihood(decoder: Decoder, x: Tensor, n_samples: int,
                                    noise_std: Tensor | float, *,
                                    generator: torch.Generator | None = None) -> Tensor:
    """Monte Carlo :math:`\\hat p_K(x) = \\frac1K \\sum_k p(x \\mid z_k)`, :math:`z_k \\sim p(z)`, averaged in log space.

    The average is taken over log-densities with the log-sum-exp,
    :math:`\\log \\hat p_K(x) = \\operatorname{logsumexp}_k \\log p(x \\mid z_k) - \\log K`,
    and only the result is exponentiated: :math:`\\hat p_K(x)` itself is
    returned, which still underflows to exactly 0 for points the decoder
    explains poorly (the book works with the log). The same K prior samples
    serve every row of ``x``. Runs under ``torch.no_grad()``.

    Args:
        decoder: :math:`f_\\theta`: a model with ``latent_dim``, ``decode`` and ``noise_std`` (a whole
            :class:`labcode.VAE`) gives the latent size and the decoding; any other ``nn.Module`` is called
            directly, and its latent size is the input size of its first ``nn.Linear``.
        x: (batch, data_dim) points.
        n_samples: :math:`K > 0`.
        noise_std: :math:`\\sigma_x > 0`.
        generator: source of the prior samples.

    Returns:
        (batch,) estimates of :math:`p(x)`.
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
    sigma = _check_mc_args(x, n_samples, noise_std)
    with torch.no_grad():
        blocks = _prior_log_weight_blocks(decoder, x, n_samples, sigma, generator)
        return sum(block.exp().sum(dim=1) for block in blocks) / n_samples


def prior_log_weights(decoder: Decoder, x: Tensor, n_samples: int, noise_std: Tensor | float, *,
                      generator: torch.Generator | None = None) -> Tensor:
    """Log-weights :math:`\\log w_{ik} = \\log p(x_i \\mid z_k)` of the prior-sampling estimator.

    Draws :math:`z_1, \\dots, z_K \\sim p(z) = \\mathcal N(0, I)` (shared by
    all rows of ``x``) and decodes them in chunks under ``torch.no_grad()``.
    The latent size is :func:`latent_dim_of` the decoder.

    Args:
        decoder: :math:`f_\\theta` (an ``nn.Module``).
        x: (batch, data_dim) points.
        n_samples: :math:`K > 0`.
        noise_std: :math:`\\sigma_x > 0`.
        generator: source of the prior samples.

    Returns:
        (batch, n_samples) log-weights, on the device and in the dtype of ``x``.
    """
    check_matrix("x", x)
    check_finite("x", x)
    check_positive_int("n_samples", n_samples)
    sigma = positive_scalar("noise_std", noise_std, x)
    with torch.no_grad():
        return torch.cat(list(_prior_log_weight_blocks(decoder, x, n_samples, sigma, generator)), dim=1)



def time_log_marginal(decoder: Decoder, x: Tensor, sample_sizes: Sequence[int], noise_std: Tensor | float, *,
                      repeats: int = 3, generator: torch.Generator | None = None) -> list[float]:
    """Wall-clock seconds of one :func:`log_marginal_likelihood_mc` call per :math:`K`.

    Each :math:`K` is timed ``repeats`` times with ``time.perf_counter``
    (waiting for the GPU where ``x`` lives on one) and the fastest run is
    kept. Timings depend on the machine and its load.

    Returns:
        one time in seconds per entry of ``sample_sizes``.
    """
    check_positive_int("repeats", repeats)
    for k in sample_sizes:
        check_positive_int("sample_sizes[i]", k)

    def sync() -> None:
        if x.device.type == "cuda":
            torch.cuda.synchronize(x.device)

    log_marginal_likelihood_mc(decoder, x, 1, noise_std, generator=generator)   # warm-up
    times = []
    for k in sample_sizes:
        best = math.inf
        for _ in range(repeats):
            sync()
            start = time.perf_counter()
            log_marginal_likelihood_mc(decoder, x, k, noise_std, generator=generator)
            sync()
            best = min(best, time.perf_counter() - start)
        times.append(best)
    return times
