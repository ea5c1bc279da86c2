"""KL divergence (the lab's Part 3; chapters "KL divergence", "The ELBO", "Mode-covering and mode-seeking in two dimensions").

.. math:: \\mathrm{KL}(p \\,\\|\\, q) = \\mathbb E_{x \\sim p}\\big[\\log p(x) - \\log q(x)\\big] \\ \\ge 0.

Three ways to compute it: in closed form between Gaussians; by Monte Carlo from
samples of :math:`p` (with its standard error as the sample grows); and by
quadrature, :math:`\\int p \\log(p/q)` on a grid (the trapezoidal rule in one
dimension, the midpoint rule on a planar lattice).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise

import torch
from torch import Tensor

from ._checks import as_tensor, as_tensors, check_finite, check_grid, check_positive, check_same_shape
from .lattice import latent_grid

LogProb = Callable[[Tensor], Tensor]


def monte_carlo_kl(p_samples: Tensor, p_log_prob: LogProb, q_log_prob: LogProb) -> Tensor:
    """Monte Carlo :math:`\\widehat{\\mathrm{KL}}(p\\|q) = \\frac1N \\sum_i [\\log p(x_i) - \\log q(x_i)]`, :math:`x_i \\sim p`.

    Unbiased; its standard error falls like :math:`1/\\sqrt N`. Unlike the
    true KL, a single estimate can be negative.

    Args:
        p_samples: (N, ...) samples from ``p``, N > 0.
        p_log_prob, q_log_prob: callables returning log-densities, (N, ...) -> (N,); a
            callable that returns per-coordinate log-densities (N, d) of independent
            coordinates is summed over them (the log-density of the joint), so the result
            is the joint KL, the sum of the coordinates' KLs.

    Returns:
        0-dim tensor.
    """
    if not isinstance(p_samples, Tensor):
        raise TypeError(f"p_samples must be a tensor, got {type(p_samples).__name__}")
    if p_samples.dim() == 0 or p_samples.shape[0] == 0:
        raise ValueError(f"p_samples must have at least one sample, got shape {tuple(p_samples.shape)}")
    check_finite("p_samples", p_samples)
    log_ratio = p_log_prob(p_samples) - q_log_prob(p_samples)
    check_finite("log p - log q at p_samples", log_ratio)
    if log_ratio.dim() == 0 or log_ratio.shape[0] != p_samples.shape[0]:
        raise ValueError(f"log-probabilities must have one row per sample ({p_samples.shape[0]}), "
                         f"got shape {tuple(log_ratio.shape)}")
    return log_ratio.reshape(log_ratio.shape[0], -1).sum(dim=1).mean()


def gaussian_kl_closed_form(mu1: Tensor | float, sigma1: Tensor | float,
                            mu2: Tensor | float, sigma2: Tensor | float) -> Tensor:
    """:math:`\\mathrm{KL}(\\mathcal N(\\mu_1, \\sigma_1^2) \\,\\|\\, \\mathcal N(\\mu_2, \\sigma_2^2))`, elementwise.

    .. math:: \\mathrm{KL} = \\tfrac12\\big(r - 1 - \\log r\\big) + \\frac{(\\mu_1-\\mu_2)^2}{2\\sigma_2^2},
              \\qquad r = \\sigma_1^2/\\sigma_2^2,

    which equals :math:`\\log(\\sigma_2/\\sigma_1) + (\\sigma_1^2 + (\\mu_1-\\mu_2)^2)/(2\\sigma_2^2) - \\tfrac12`.
    :math:`r - 1 - \\log r` is evaluated as ``expm1(l) - l`` with
    :math:`l = \\log r`, which keeps it accurate (and non-negative) when
    :math:`\\sigma_1 \\approx \\sigma_2`.

    Args:
        mu1, sigma1, mu2, sigma2: broadcastable tensors (or numbers); sigmas > 0.

    Returns:
        the broadcast shape of the inputs.
    """
    mu1, sigma1, mu2, sigma2 = as_tensors(mu1=mu1, sigma1=sigma1, mu2=mu2, sigma2=sigma2)
    check_finite("mu1", mu1)
    check_finite("mu2", mu2)
    check_positive("sigma1", sigma1)
    check_positive("sigma2", sigma2)
    try:
        torch.broadcast_shapes(mu1.shape, sigma1.shape, mu2.shape, sigma2.shape)
    except RuntimeError as err:
        raise ValueError(f"mu1, sigma1, mu2 and sigma2 must broadcast, got shapes {tuple(mu1.shape)}, "
                         f"{tuple(sigma1.shape)}, {tuple(mu2.shape)} and {tuple(sigma2.shape)}") from err
    log_var_ratio = 2 * (torch.log(sigma1) - torch.log(sigma2))   # log r
    variance_term = torch.expm1(log_var_ratio) - log_var_ratio      # r - 1 - log r
    mean_term = ((mu1 - mu2) / sigma2) ** 2                          # squared mean distance
    return 0.5 * (variance_term + mean_term)


def standard_normal_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """:math:`\\mathrm{KL}(\\mathcal N(\\mu, \\operatorname{diag}\\sigma^2) \\,\\|\\, \\mathcal N(0, I))`, summed over the last dim.

    .. math:: \\mathrm{KL} = \\tfrac12 \\sum_j \\big(\\mu_j^2 + \\sigma_j^2 - 1 - \\log \\sigma_j^2\\big),
              \\qquad \\log\\sigma_j^2 = \\texttt{logvar}_j.

    The variance part :math:`\\sigma^2 - 1 - \\log\\sigma^2` is computed as
    ``expm1(logvar) - logvar`` (accurate near :math:`\\sigma = 1`).

    Args:
        mu: (..., latent_dim) means.
        logvar: (..., latent_dim) log-variances, same shape as ``mu``.

    Returns:
        (...) KL per row.
    """
    mu, logvar = as_tensor("mu", mu), as_tensor("logvar", logvar)
    check_same_shape("mu", mu, "logvar", logvar)
    check_finite("mu", mu)
    check_finite("logvar", logvar)
    if mu.dim() == 0:
        raise ValueError("mu must have a latent dimension (last axis), got a 0-dim tensor")
    return standard_normal_kl_unchecked(mu, logvar)


def standard_normal_kl_unchecked(mu: Tensor, logvar: Tensor) -> Tensor:
    """:func:`standard_normal_kl` without the checks, for callers that checked their inputs (the training loop)."""
    return 0.5 * (mu**2 + torch.expm1(logvar) - logvar).sum(dim=-1)


@dataclass(frozen=True)
class MonteCarloCurve:
    """Monte Carlo estimates :math:`\\widehat{\\mathrm{KL}}_N` from the first :math:`N` samples, for growing :math:`N`.

    Attributes:
        n: (L,) sample sizes, increasing.
        estimate: (L,) :math:`\\frac1N \\sum_{i \\le N} r_i`, :math:`r_i = \\log p(x_i) - \\log q(x_i)`.
        stderr: (L,) :math:`s_N / \\sqrt N`, :math:`s_N` the sample standard deviation of :math:`r_1, \\dots, r_N`.
    """

    n: Tensor
    estimate: Tensor
    stderr: Tensor


def monte_carlo_kl_curve(p_samples: Tensor, p_log_prob: LogProb, q_log_prob: LogProb,
                         sizes: Sequence[int]) -> MonteCarloCurve:
    """The estimator of :func:`labcode.monte_carlo_kl` on nested prefixes of one sample.

    With :math:`r_i = \\log p(x_i) - \\log q(x_i)`, :math:`x_i \\sim p`,

    .. math:: \\widehat{\\mathrm{KL}}_N = \\frac1N \\sum_{i=1}^N r_i,\\qquad
              \\mathrm{se}_N = \\frac{s_N}{\\sqrt N},\\quad
              s_N^2 = \\frac1{N-1}\\sum_{i=1}^N (r_i - \\widehat{\\mathrm{KL}}_N)^2 .

    Using prefixes of one sample shows one realisation of the estimator
    converging, as a student running the lab with more and more samples
    would see it.

    Args:
        p_samples: (N_max,) samples from :math:`p`.
        p_log_prob, q_log_prob: log-densities, (N,) -> (N,).
        sizes: increasing sample sizes, each in [2, N_max].

    Returns:
        a :class:`MonteCarloCurve` with L = len(sizes).
    """
    p_samples = as_tensor("p_samples", p_samples)
    if p_samples.dim() != 1:
        raise ValueError(f"p_samples must have shape (N,), got {tuple(p_samples.shape)}")
    sizes = [int(n) for n in sizes]
    if not sizes or sizes[0] < 2 or sizes[-1] > p_samples.shape[0] or any(b <= a for a, b in pairwise(sizes)):
        raise ValueError(f"sizes must be increasing, within [2, {p_samples.shape[0]}], got {sizes}")
    check_finite("p_samples", p_samples)
    r = p_log_prob(p_samples) - q_log_prob(p_samples)
    check_finite("log p - log q at p_samples", r)
    estimate = torch.stack([r[:n].mean() for n in sizes])
    stderr = torch.stack([r[:n].std() / math.sqrt(n) for n in sizes])
    return MonteCarloCurve(n=torch.tensor(sizes), estimate=estimate, stderr=stderr)


def quadrature_kl(log_p: Tensor, log_q: Tensor, grid: Tensor) -> Tensor:
    """:math:`\\mathrm{KL}(p\\,\\|\\,q) \\approx \\int p(x)\\,[\\log p(x) - \\log q(x)] \\,dx` by the trapezoidal rule.

    The grid must cover (numerically) all of the mass of ``p``; both
    log-densities must be finite on it (densities positive), so that the
    integrand :math:`e^{\\log p}(\\log p - \\log q)` is finite everywhere.

    Args:
        log_p: (..., M) :math:`\\log p` at the grid points.
        log_q: (..., M) :math:`\\log q` at the grid points (broadcasts against ``log_p``).
        grid: (M,) strictly increasing points, M >= 2.

    Returns:
        (...) the KL for each leading index.
    """
    grid = check_grid(grid)
    log_p, log_q = as_tensor("log_p", log_p), as_tensor("log_q", log_q)
    for name, t in (("log_p", log_p), ("log_q", log_q)):
        check_finite(name, t)
        if t.dim() == 0 or t.shape[-1] != grid.shape[0]:
            raise ValueError(f"{name} must have last dimension {grid.shape[0]} (the grid), got {tuple(t.shape)}")
    return trapezoid_kl(log_p, log_q, grid)


def trapezoid_kl(log_p: Tensor, log_q: Tensor, grid: Tensor) -> Tensor:
    """Unchecked :func:`quadrature_kl`: :math:`\\int p \\log(p/q)` by the trapezoidal rule on ``grid``, (..., M) -> (...)."""
    return torch.trapezoid(torch.exp(log_p) * (log_p - log_q), x=grid, dim=-1)


def lattice_kl(log_p: Tensor, log_q: Tensor, half_width: float, points_per_axis: int) -> Tensor:
    """:math:`\\mathrm{KL}(p\\|q)` by the midpoint rule on the lattice of :func:`labcode.quadrature.latent_grid` (2-D).

    Args:
        log_p, log_q: (..., G*G) log-densities at the lattice nodes (broadcastable).
        half_width, points_per_axis: the lattice.

    Returns:
        (...) the KL.
    """
    log_p, log_q = as_tensor("log_p", log_p), as_tensor("log_q", log_q)
    n = points_per_axis ** 2
    for name, t in (("log_p", log_p), ("log_q", log_q)):
        if t.dim() == 0 or t.shape[-1] != n:
            raise ValueError(f"{name} must have last dimension {n} (the lattice), got {tuple(t.shape)}")
        check_finite(name, t)
    _, cell = latent_grid(half_width, points_per_axis, 2)
    return midpoint_kl(log_p, log_q, math.log(cell))


def midpoint_kl(log_p: Tensor, log_q: Tensor, log_cell: float) -> Tensor:
    """Midpoint rule for :math:`\\int p \\log(p/q)` on a lattice of cells of volume :math:`e^{\\texttt{log\\_cell}}`: (..., n) -> (...) (unchecked)."""
    return (torch.exp(log_p + log_cell) * (log_p - log_q)).sum(-1)
