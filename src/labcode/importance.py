"""Importance sampling of the evidence: weights, effective sample size, repeated estimates and the IWAE bound.

Chapters "The intractable likelihood", "Beyond the lab: exact posteriors and better estimators" and "Summary".

An importance sampler with proposal :math:`g` estimates :math:`p(x) = \\int p(x, z)\\, dz` by
averaging the weights :math:`w_k = p(x, z_k) / g(z_k)`, :math:`z_k \\sim g`. The prior
:math:`g = p(z)` gives :math:`w_k = p(x \\mid z_k)` (:func:`labcode.likelihood.prior_log_weights`),
the encoder :math:`g = q(z \\mid x)` gives the IWAE weights (:func:`importance_log_weights`):

.. math:: \\hat p_K(x) = \\frac1K \\sum_{k=1}^K w_k, \\qquad
          \\frac{\\operatorname{Var}[\\hat p_K(x)]}{p(x)^2} = \\frac{C(x) - 1}{K}, \\qquad
          C(x) = \\frac{\\mathbb E_g[w^2]}{p(x)^2}.

This module measures such estimators (their spread over independent
repetitions, their effective sample size), gives :math:`C(x)` in closed form
for a Gaussian posterior and the prior as proposal, and estimates the IWAE
bound :math:`\\mathcal L_K`. Everything works in log space.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ._checks import (
    as_tensor,
    check_finite,
    check_log_weights,
    check_matrix,
    check_positive,
    check_positive_int,
    randn,
)
from .gaussian import gaussian_log_density

#: rows (points times samples) decoded at once
_DECODE_ROWS = 1 << 18


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


def repeated_estimates(log_weights: Tensor, n_samples: int) -> tuple[Tensor, Tensor]:
    """Independent repetitions of :math:`\\log \\hat p_K(x)` and of its effective sample size.

    The last axis of ``log_weights`` holds :math:`N` i.i.d. log-weights; it is
    cut into :math:`R = \\lfloor N / K \\rfloor` disjoint blocks of
    :math:`K` = ``n_samples`` (leftover weights are dropped). Block
    :math:`r` gives

    .. math:: \\log \\hat p_K^{(r)} = \\operatorname{logsumexp}_{k \\in B_r} \\log w_k - \\log K,
              \\qquad \\mathrm{ESS}^{(r)} = \\frac{(\\sum_{k\\in B_r} w_k)^2}{\\sum_{k\\in B_r} w_k^2}.

    Disjoint blocks of i.i.d. samples are independent, so the :math:`R`
    values are :math:`R` independent runs of the estimator with :math:`K`
    samples each.

    Args:
        log_weights: (..., N) log-weights, e.g. from :func:`labcode.likelihood.prior_log_weights`.
        n_samples: block size :math:`K`, at most :math:`N`.

    Returns:
        ``(log_estimates, ess)``, each of shape (..., R).
    """
    check_log_weights("log_weights", log_weights)
    check_positive_int("n_samples", n_samples)
    total = log_weights.shape[-1]
    if n_samples > total:
        raise ValueError(f"n_samples must be <= the number of log-weights ({total}), got {n_samples}")
    repeats = total // n_samples
    blocks = log_weights[..., :repeats * n_samples].reshape(*log_weights.shape[:-1], repeats, n_samples)
    log_estimates = torch.logsumexp(blocks, dim=-1) - math.log(n_samples)
    return log_estimates, effective_sample_size(blocks, dim=-1)



@dataclass(frozen=True)
class SpreadStudy:
    """Summary of repeated runs of the prior-sampling estimator, one entry per sample size :math:`K`.

    Shapes: ``batch`` points, ``n_sizes`` sample sizes, ``n_probs`` quantile levels.
    """

    sample_sizes: list[int]
    repeats: list[int]               #: independent runs :math:`R` behind each :math:`K`
    probs: list[float]               #: quantile levels, e.g. [0.1, 0.5, 0.9]
    log_estimate_quantiles: Tensor   #: (batch, n_sizes, n_probs) quantiles of :math:`\log \hat p_K` over runs
    log_estimate_mean: Tensor        #: (batch, n_sizes) mean of :math:`\log \hat p_K` over runs
    log_estimate_std: Tensor         #: (batch, n_sizes) standard deviation of :math:`\log \hat p_K` over runs
    ess_quantiles: Tensor            #: (batch, n_sizes, n_probs) quantiles of the ESS over runs



def estimator_spread(log_weights: Tensor, sample_sizes: Sequence[int], *, max_repeats: int = 200,
                     probs: Sequence[float] = (0.1, 0.5, 0.9)) -> SpreadStudy:
    """Run :func:`repeated_estimates` for each :math:`K` and summarise the runs by quantiles and means.

    For each :math:`K` the first :math:`\\min(N, K \\cdot \\text{max\\_repeats})`
    log-weights are used, so :math:`R = \\min(\\text{max\\_repeats}, \\lfloor N/K \\rfloor)`.

    Args:
        log_weights: (batch, N) i.i.d. log-weights (float32 or float64).
        sample_sizes: the :math:`K` values, each at most :math:`N`.
        max_repeats: cap on the number of runs per :math:`K` (> 0).
        probs: quantile levels in [0, 1].

    Returns:
        a :class:`SpreadStudy` on the CPU, in float64.
    """
    check_matrix("log_weights", log_weights)
    check_positive_int("max_repeats", max_repeats)
    if len(sample_sizes) == 0:
        raise ValueError("sample_sizes must name at least one K")
    if not all(0.0 <= p <= 1.0 for p in probs):
        raise ValueError(f"probs must lie in [0, 1], got {list(probs)}")
    levels = torch.tensor(list(probs), dtype=torch.float64)
    repeats, est_q, est_mean, est_std, ess_q = [], [], [], [], []
    for k in sample_sizes:
        check_positive_int("sample_sizes[i]", k)
        log_est, ess = repeated_estimates(log_weights[:, :k * max_repeats], k)
        log_est, ess = log_est.double().cpu(), ess.double().cpu()
        repeats.append(log_est.shape[1])
        est_q.append(torch.quantile(log_est, levels, dim=1).T)
        est_mean.append(log_est.mean(dim=1))
        est_std.append(log_est.std(dim=1) if log_est.shape[1] > 1 else torch.full_like(log_est[:, 0], math.nan))
        ess_q.append(torch.quantile(ess, levels, dim=1).T)
    return SpreadStudy(list(sample_sizes), repeats, [float(p) for p in probs],
                       torch.stack(est_q, dim=1), torch.stack(est_mean, dim=1), torch.stack(est_std, dim=1),
                       torch.stack(ess_q, dim=1))



def log_moment_ratio(log_weights: Tensor) -> Tensor:
    """Plug-in estimate of :math:`\\log C(x)` from :math:`K` log-weights.

    .. math:: \\hat C = \\frac{\\tfrac1K \\sum_k w_k^2}{(\\tfrac1K \\sum_k w_k)^2} = \\frac{K}{\\mathrm{ESS}},

    consistent as :math:`K \\to \\infty` (strong law of large numbers in
    numerator and denominator).

    Args:
        log_weights: (..., K) log-weights.

    Returns:
        (...) values of :math:`\\log \\hat C`.
    """
    check_log_weights("log_weights", log_weights)
    return math.log(log_weights.shape[-1]) - torch.log(effective_sample_size(log_weights, dim=-1))



def gaussian_log_moment_ratio(mean: Tensor, std: Tensor) -> Tensor:
    """:math:`\\log C` when the posterior is :math:`\\mathcal N(m, \\operatorname{diag} s^2)` and the prior :math:`\\mathcal N(0, I)`.

    With :math:`\\pi` the posterior, :math:`C = \\int \\pi(z)^2 / p(z)\\, dz = 1 + \\chi^2(\\pi \\,\\|\\, p)`, and

    .. math:: \\log C = \\sum_{j=1}^d \\Big[ -\\log s_j - \\tfrac12 \\log(2 - s_j^2) + \\frac{m_j^2}{2 - s_j^2} \\Big],

    finite only when every :math:`s_j^2 < 2`. Each summand is :math:`\\ge 0`,
    with equality only at :math:`s_j = 1, m_j = 0`.

    Args:
        mean: (..., d) posterior means :math:`m`.
        std: (..., d) posterior standard deviations :math:`s`, in :math:`(0, \\sqrt 2)`.

    Returns:
        (...) values of :math:`\\log C`.
    """
    mean, std = as_tensor("mean", mean), as_tensor("std", std)
    check_finite("mean", mean)
    check_positive("std", std)
    if not (std < math.sqrt(2.0)).all():
        raise ValueError(f"std must be < sqrt(2) (else C is infinite), got {std.max().item()}")
    gap = 2 - std ** 2
    return (-torch.log(std) - 0.5 * torch.log(gap) + mean ** 2 / gap).sum(dim=-1)


@torch.no_grad()
def importance_log_weights(model: nn.Module, x: Tensor, n_samples: int, *,
                           generator: torch.Generator | None = None) -> Tensor:
    """Log-weights :math:`\\log w_k = \\log p(x, z_k) - \\log q(z_k \\mid x)`, :math:`z_k \\sim q(z \\mid x)`, of a :class:`labcode.VAE`.

    Each row of ``x`` gets its own :math:`K` = ``n_samples`` draws
    :math:`z_k = \\mu(x) + \\sigma(x) \\odot \\varepsilon_k` (noise from ``generator``,
    drawn on the CPU for reproducibility). :math:`\\mathbb E_q[w] = p(x)`, so
    :math:`\\frac1K \\sum_k w_k` is an unbiased estimate of :math:`p(x)`;
    :math:`\\log \\frac1K \\sum_k w_k` has expectation :math:`\\mathcal L_K`,
    the IWAE bound.

    Args:
        model: the VAE.
        x: (B, D) points.
        n_samples: :math:`K > 0`.
        generator: source of :math:`\\varepsilon`.

    Returns:
        (B, K) log-weights in the model's dtype, on its device.
    """
    check_matrix("x", x, model.data_dim)
    check_finite("x", x)
    check_positive_int("n_samples", n_samples)
    device = model.decoder_logvar.device
    x = x.to(device=device, dtype=model.decoder_logvar.dtype)
    mu, logvar = model.encode(x)
    std = torch.exp(0.5 * logvar)
    sigma = model.noise_std
    batch, d = mu.shape
    chunk = max(1, _DECODE_ROWS // batch)
    parts = []
    for start in range(0, n_samples, chunk):
        k = min(chunk, n_samples - start)
        eps = randn((batch, k, d), generator=generator, device=device, dtype=mu.dtype)
        z = mu[:, None] + std[:, None] * eps
        log_lik = gaussian_log_density(x[:, None], model.decode(z.reshape(-1, d)).reshape(batch, k, -1), sigma)
        log_prior = gaussian_log_density(z, torch.zeros_like(z), 1.0)
        log_q = -0.5 * (eps ** 2 + logvar[:, None] + math.log(2 * math.pi)).sum(dim=-1)
        parts.append(log_lik + log_prior - log_q)
    return torch.cat(parts, dim=1)



def iwae_bound(log_weights: Tensor, n_samples: int) -> tuple[Tensor, Tensor]:
    """Estimate of the IWAE bound :math:`\\mathcal L_K = \\mathbb E\\big[\\log \\frac1K \\sum_{k=1}^K w_k\\big]` and its standard error.

    The last axis of ``log_weights`` holds :math:`N` i.i.d. log-weights; it is
    cut into :math:`R = \\lfloor N/K \\rfloor` disjoint blocks
    (:func:`repeated_estimates`), each an independent draw
    of :math:`\\log \\frac1K \\sum_k w_k`; their mean estimates
    :math:`\\mathcal L_K` and their standard deviation over :math:`\\sqrt R`
    is its standard error. :math:`\\mathcal L_1` is the ELBO.

    Args:
        log_weights: (..., N) log-weights, e.g. from :func:`importance_log_weights`.
        n_samples: :math:`K`, at most :math:`N`.

    Returns:
        ``(estimate, stderr)``, each of shape (...); stderr is NaN when :math:`R = 1`.
    """
    log_estimates, _ = repeated_estimates(log_weights, n_samples)
    repeats = log_estimates.shape[-1]
    stderr = (log_estimates.std(dim=-1) / math.sqrt(repeats) if repeats > 1
              else torch.full(log_estimates.shape[:-1], math.nan, dtype=log_estimates.dtype))
    return log_estimates.mean(dim=-1), stderr



def leave_one_out_bound(log_weights: Tensor) -> Tensor:
    """:math:`\\frac{1}{K+1}\\sum_{i=1}^{K+1} \\log \\frac1K \\sum_{j \\ne i} w_j` for :math:`K + 1` weights (last axis).

    Burda et al.'s argument for :math:`\\mathcal L_K \\le \\mathcal L_{K+1}`:
    the mean of all :math:`K+1` weights is the average of the :math:`K+1`
    leave-one-out means, so by concavity
    :math:`\\log \\frac{1}{K+1}\\sum_j w_j \\ge` this value, for every sample.

    Args:
        log_weights: (..., K + 1) log-weights, K + 1 >= 2.

    Returns:
        (...) values.
    """
    log_weights = as_tensor("log_weights", log_weights)
    n = log_weights.shape[-1]
    if n < 2:
        raise ValueError(f"log_weights must hold at least 2 weights on the last axis, got {n}")
    eye = torch.eye(n, dtype=torch.bool, device=log_weights.device)
    masked = log_weights[..., None, :].expand(*log_weights.shape[:-1], n, n).masked_fill(eye, -math.inf)
    return (torch.logsumexp(masked, dim=-1) - math.log(n - 1)).mean(dim=-1)
