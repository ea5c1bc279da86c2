"""Jensen's inequality for the logarithm (the lab's Part 4; chapter "Jensen's inequality").

For a positive random variable :math:`X` and the concave :math:`\\log`,
:math:`\\log \\mathbb E[X] \\ge \\mathbb E[\\log X]`; the gap is zero only
when :math:`X` is constant.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ._checks import check_positive


def jensen_gap(samples: Tensor, dim: int = 0) -> Tensor:
    """Sample Jensen gap :math:`\\log\\big(\\frac1n\\sum_i x_i\\big) - \\frac1n\\sum_i \\log x_i \\ge 0`.

    Computed from :math:`\\log x_i` with a log-sum-exp, so huge or tiny
    samples neither overflow nor underflow. By the AM-GM inequality the
    sample gap is itself non-negative (it is Jensen for the empirical
    distribution).

    Args:
        samples: (n, ...) positive, finite samples; reduced along ``dim``.

    Returns:
        the shape of ``samples`` without ``dim``.
    """
    if not isinstance(samples, Tensor) or not samples.is_floating_point():
        raise TypeError("samples must be a floating-point tensor")
    if samples.dim() == 0 or samples.shape[dim] == 0:
        raise ValueError(f"samples must hold at least one sample along dim {dim}")
    check_positive("samples", samples)
    log_x = torch.log(samples)
    centred = log_x - log_x.amax(dim=dim, keepdim=True)        # the scale cancels; constant samples give exactly 0
    n = samples.shape[dim]
    log_mean = torch.logsumexp(centred, dim=dim) - math.log(n)  # log E[X], up to the common shift
    return log_mean - centred.mean(dim=dim)                     # minus E[log X], same shift
