"""KL divergence (the lab's Part 3; chapter "KL divergence").

.. math:: \\mathrm{KL}(p \\,\\|\\, q) = \\mathbb E_{x \\sim p}\\big[\\log p(x) - \\log q(x)\\big] \\ \\ge 0.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ._checks import as_tensor, as_tensors, check_finite, check_positive, check_same_shape

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
    return _standard_normal_kl(mu, logvar)


def _standard_normal_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """Unchecked :func:`standard_normal_kl`, for the training loop."""
    return 0.5 * (mu**2 + torch.expm1(logvar) - logvar).sum(dim=-1)
