"""How well the evidence can be computed (chapters "The intractable likelihood" and "Bayes' rule and its circularity").

The simple Monte Carlo estimator of :math:`p(x) = \\int p(x \\mid z)\\, p(z)\\, dz`
averages the weights :math:`w_k = p(x \\mid z_k)`, :math:`z_k \\sim p(z)`:

.. math:: \\hat p_K(x) = \\frac1K \\sum_{k=1}^K w_k, \\qquad
          \\frac{\\operatorname{Var}[\\hat p_K(x)]}{p(x)^2} = \\frac{C(x) - 1}{K}, \\qquad
          C(x) = \\frac{\\mathbb E_{p(z)}[p(x \\mid z)^2]}{p(x)^2}.

This module measures that estimator (its spread over independent
repetitions, its effective sample size, its cost), gives :math:`C(x)` in
closed form for a Gaussian posterior, and, for the linear-Gaussian model
:math:`x = Wz + b + \\sigma_x\\varepsilon`, the exact evidence and posterior
together with their brute-force grid counterparts. Everything works in log
space.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ._checks import as_tensor, check_finite, check_matrix, check_positive, check_positive_int
from .likelihood import (
    Decoder,
    _check_noise_std,
    _prior_log_weight_blocks,
    effective_sample_size,
    gaussian_log_density,
    log_likelihood_matrix,
    log_marginal_likelihood_mc,
)


def prior_log_weights(decoder: Decoder, x: Tensor, n_samples: int, noise_std: Tensor | float, *,
                      generator: torch.Generator | None = None) -> Tensor:
    """Log-weights :math:`\\log w_{ik} = \\log p(x_i \\mid z_k)` of the prior-sampling estimator.

    Draws :math:`z_1, \\dots, z_K \\sim p(z) = \\mathcal N(0, I)` (shared by
    all rows of ``x``) and decodes them in chunks under ``torch.no_grad()``.
    The latent size is read from the decoder as in
    :func:`labcode.likelihood.log_marginal_likelihood_mc`.

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
    sigma = _check_noise_std(noise_std, x)
    with torch.no_grad():
        return torch.cat(list(_prior_log_weight_blocks(decoder, x, n_samples, sigma, generator)), dim=1)


def _check_log_weights(log_weights: Tensor) -> None:
    if log_weights.dim() < 1 or log_weights.shape[-1] == 0:
        raise ValueError(f"log_weights must have shape (..., K) with K > 0, got {tuple(log_weights.shape)}")
    if torch.isnan(log_weights).any() or (log_weights == math.inf).any():
        raise ValueError("log_weights must not contain NaN or +inf")


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
        log_weights: (..., N) log-weights, e.g. from :func:`prior_log_weights`.
        n_samples: block size :math:`K`, at most :math:`N`.

    Returns:
        ``(log_estimates, ess)``, each of shape (..., R).
    """
    _check_log_weights(log_weights)
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
    log_estimate_quantiles: Tensor   #: (batch, n_sizes, n_probs) quantiles of :math:`\\log \\hat p_K` over runs
    log_estimate_mean: Tensor        #: (batch, n_sizes) mean of :math:`\\log \\hat p_K` over runs
    log_estimate_std: Tensor         #: (batch, n_sizes) standard deviation of :math:`\\log \\hat p_K` over runs
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
    _check_log_weights(log_weights)
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


def time_log_marginal(decoder: Decoder, x: Tensor, sample_sizes: Sequence[int], noise_std: Tensor | float, *,
                      repeats: int = 3, generator: torch.Generator | None = None) -> list[float]:
    """Wall-clock seconds of one :func:`labcode.likelihood.log_marginal_likelihood_mc` call per :math:`K`.

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


def _check_linear_gaussian(x: Tensor, weight: Tensor, bias: Tensor, noise_std: Tensor | float) -> Tensor:
    check_matrix("x", x)
    check_matrix("weight", weight, None)
    check_finite("x", x)
    check_finite("weight", weight)
    check_finite("bias", bias)
    if weight.shape[0] != x.shape[1] or bias.shape != (x.shape[1],):
        raise ValueError(f"weight must be (data_dim, latent_dim) and bias (data_dim,) with data_dim = {x.shape[1]}, "
                         f"got {tuple(weight.shape)} and {tuple(bias.shape)}")
    return _check_noise_std(noise_std, x)


def linear_gaussian_log_evidence(x: Tensor, weight: Tensor, bias: Tensor, noise_std: Tensor | float) -> Tensor:
    """Exact :math:`\\log p(x)` for :math:`p(z) = \\mathcal N(0, I_d)`, :math:`p(x \\mid z) = \\mathcal N(Wz + b, \\sigma_x^2 I_D)`.

    :math:`x = Wz + b + \\sigma_x\\varepsilon` is a sum of independent
    Gaussians, so :math:`p(x) = \\mathcal N(x;\\ b,\\ WW^\\top + \\sigma_x^2 I_D)`.

    Args:
        x: (batch, D) points.
        weight: (D, d) matrix :math:`W`.
        bias: (D,) vector :math:`b`.
        noise_std: :math:`\\sigma_x > 0`.

    Returns:
        (batch,) log-evidences.
    """
    sigma = _check_linear_gaussian(x, weight, bias, noise_std)
    cov = weight @ weight.T + sigma ** 2 * torch.eye(x.shape[1], dtype=x.dtype, device=x.device)
    return torch.distributions.MultivariateNormal(bias, covariance_matrix=cov).log_prob(x)


def linear_gaussian_posterior(x: Tensor, weight: Tensor, bias: Tensor,
                              noise_std: Tensor | float) -> tuple[Tensor, Tensor]:
    """Exact posterior :math:`p(z \\mid x) = \\mathcal N(m(x), S)` of the linear-Gaussian model.

    Completing the square in :math:`\\log p(x \\mid z) + \\log p(z)`:

    .. math:: S = \\big(I_d + W^\\top W / \\sigma_x^2\\big)^{-1}, \\qquad m(x) = S\\, W^\\top (x - b) / \\sigma_x^2 .

    Args:
        x: (batch, D) points.
        weight: (D, d) matrix :math:`W`.
        bias: (D,) vector :math:`b`.
        noise_std: :math:`\\sigma_x > 0`.

    Returns:
        ``(mean, cov)``: (batch, d) posterior means and the (d, d)
        covariance, which does not depend on :math:`x`.
    """
    sigma = _check_linear_gaussian(x, weight, bias, noise_std)
    d = weight.shape[1]
    precision = torch.eye(d, dtype=x.dtype, device=x.device) + weight.T @ weight / sigma ** 2
    cov = torch.linalg.inv(precision)
    mean = (x - bias) @ weight @ cov.T / sigma ** 2
    return mean, cov


def latent_grid(half_width: float, points_per_axis: int, dim: int = 2, *,
                dtype: torch.dtype = torch.float64, device: torch.device | str | None = None) -> tuple[Tensor, float]:
    """A regular grid on the cube :math:`[-a, a]^d`: its :math:`G^d` nodes and the volume of one cell.

    The nodes are the midpoints of :math:`G` equal cells per axis (the
    midpoint rule), so a grid sum times the cell volume
    :math:`(2a/G)^d` approximates an integral over the cube.

    Args:
        half_width: :math:`a > 0`.
        points_per_axis: :math:`G > 0`.
        dim: :math:`d > 0`.

    Returns:
        ``(nodes, cell_volume)``: nodes (G**d, d), with the last coordinate
        varying fastest; cell_volume a float.
    """
    if not (isinstance(half_width, (int, float)) and math.isfinite(half_width) and half_width > 0):
        raise ValueError(f"half_width must be a finite number > 0, got {half_width}")
    check_positive_int("points_per_axis", points_per_axis)
    check_positive_int("dim", dim)
    step = 2 * half_width / points_per_axis
    axis = -half_width + step * (torch.arange(points_per_axis, dtype=dtype, device=device) + 0.5)
    nodes = torch.cartesian_prod(*[axis] * dim).reshape(-1, dim)
    return nodes, step ** dim


def grid_log_joint(decoder: Decoder, x: Tensor, nodes: Tensor, noise_std: Tensor | float) -> Tensor:
    """The unnormalised log-posterior :math:`\\log p(x, z) = \\log p(x \\mid z) + \\log p(z)` at grid nodes.

    Both terms are computable pointwise: this is all Bayes' rule needs
    except the normaliser :math:`p(x)`.

    Args:
        decoder: :math:`f`, maps (n, d) to (n, D).
        x: (batch, D) points.
        nodes: (n, d) latent points, e.g. from :func:`latent_grid`.
        noise_std: :math:`\\sigma_x > 0`.

    Returns:
        (batch, n) values of :math:`\\log p(x_i, z_j)`.
    """
    check_matrix("x", x)
    check_matrix("nodes", nodes)
    check_finite("x", x)
    check_finite("nodes", nodes)
    sigma = _check_noise_std(noise_std, x)
    with torch.no_grad():
        log_prior = gaussian_log_density(nodes, torch.zeros_like(nodes), 1.0)
        return log_likelihood_matrix(decoder, x, nodes, sigma) + log_prior


def grid_log_evidence(log_joint: Tensor, cell_volume: float) -> Tensor:
    """Midpoint-rule :math:`\\log p(x) \\approx \\log \\sum_j p(x, z_j) + \\log \\Delta`, by log-sum-exp.

    Args:
        log_joint: (..., n) values of :math:`\\log p(x, z_j)` on a grid.
        cell_volume: :math:`\\Delta > 0`, the volume of one grid cell.

    Returns:
        (...) approximate log-evidences.
    """
    _check_log_weights(log_joint)
    if not (isinstance(cell_volume, (int, float)) and math.isfinite(cell_volume) and cell_volume > 0):
        raise ValueError(f"cell_volume must be a finite number > 0, got {cell_volume}")
    return torch.logsumexp(log_joint, dim=-1) + math.log(cell_volume)
