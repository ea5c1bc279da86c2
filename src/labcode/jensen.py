"""Jensen's inequality for the logarithm (the lab's Part 4; chapters "Jensen's inequality" and "Validation").

For a positive random variable :math:`X` and the concave :math:`\\log`,
:math:`\\log \\mathbb E[X] \\ge \\mathbb E[\\log X]`; the gap is zero only
when :math:`X` is constant. This module holds the sample gap with its
delta-method standard error, and the exact gaps of the lab's three
distributions (uniform, exponential, Gamma) and of a two-point law.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ._checks import as_tensor, check_finite, check_positive, check_positive_int


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


def jensen_gap_stderr(samples: Tensor) -> Tensor:
    """Delta-method standard error of the sample Jensen gap :func:`labcode.jensen_gap`.

    The sample gap :math:`\\log \\bar X - \\overline{\\log X}` is a smooth
    function of two sample means; linearising :math:`\\log` at
    :math:`\\bar X` gives the per-sample influence
    :math:`X_i/\\bar X - \\log X_i`, so

    .. math:: \\mathrm{se} \\approx \\frac{\\operatorname{sd}\\big(X_i/\\bar X - \\log X_i\\big)}{\\sqrt n}.

    Args:
        samples: (n,) positive samples, n >= 2.

    Returns:
        0-dim tensor.
    """
    samples = as_tensor("samples", samples)
    if samples.dim() != 1 or samples.shape[0] < 2:
        raise ValueError(f"samples must have shape (n,) with n >= 2, got {tuple(samples.shape)}")
    check_positive("samples", samples)
    influence = samples / samples.mean() - torch.log(samples)
    return influence.std() / math.sqrt(samples.shape[0])



def _common_tensors(dtype: torch.dtype | None = None, **values: Tensor | float) -> list[Tensor]:
    """The values as tensors of one dtype and device.

    The dtype is ``dtype`` if given, else the promoted dtype of the tensor
    values (the default dtype if there are none); Python numbers are
    converted straight to it, without rounding through float32.
    """
    tensors = {name: as_tensor(name, v) for name, v in values.items() if isinstance(v, Tensor)}
    for name, v in values.items():
        if name not in tensors:
            as_tensor(name, v)                                  # type check only
    like = next(iter(tensors.values()), torch.tensor(0.0))
    if dtype is None:
        dtype = like.dtype
        for t in tensors.values():
            dtype = torch.promote_types(dtype, t.dtype)
    return [tensors[name].to(like.device, dtype) if name in tensors else like.new_tensor(float(v), dtype=dtype)
            for name, v in values.items()]



def uniform_jensen_gap(a: float, b: float) -> Tensor:
    """Exact :math:`\\log\\mathbb E[X] - \\mathbb E[\\log X]` for :math:`X \\sim \\mathrm{Uniform}[a, b]`, :math:`0 < a < b`.

    .. math:: \\mathbb E[X] = \\frac{a+b}2,\\qquad
              \\mathbb E[\\log X] = \\frac{1}{b-a}\\int_a^b \\log x \\,dx
              = \\frac{(b\\log b - b) - (a \\log a - a)}{b - a}.

    Returns:
        0-dim float64 tensor.
    """
    a_t, b_t = _common_tensors(torch.float64, a=a, b=b)
    check_positive("a", a_t)
    if not b_t > a_t:
        raise ValueError(f"b must be > a, got a={a}, b={b}")
    def antiderivative(x: Tensor) -> Tensor:   # of log x
        return x * torch.log(x) - x

    mean_log = (antiderivative(b_t) - antiderivative(a_t)) / (b_t - a_t)
    return torch.log((a_t + b_t) / 2) - mean_log



def gamma_jensen_gap(concentration: float) -> Tensor:
    """Exact :math:`\\log\\mathbb E[X] - \\mathbb E[\\log X] = \\log k - \\psi(k)` for :math:`X \\sim \\mathrm{Gamma}(k, \\lambda)`.

    With shape :math:`k` and rate :math:`\\lambda`, :math:`\\mathbb E[X] = k/\\lambda` and
    :math:`\\mathbb E[\\log X] = \\psi(k) - \\log \\lambda` (:math:`\\psi` the
    digamma function), so the rate cancels: the gap is scale invariant.
    :math:`k = 1` is the exponential distribution, with gap
    :math:`-\\psi(1) = \\gamma_{\\mathrm E}` (Euler–Mascheroni); :math:`k = 2` gives
    :math:`\\log 2 - (1 - \\gamma_{\\mathrm E})`.

    Returns:
        0-dim float64 tensor.
    """
    (k,) = _common_tensors(torch.float64, concentration=concentration)
    check_positive("concentration", k)
    return torch.log(k) - torch.special.digamma(k)



def two_point_jensen_gap(x1: Tensor | float, x2: Tensor | float, lam: Tensor | float) -> Tensor:
    """Jensen gap of the two-point law :math:`P(X = x_1) = \\lambda`, :math:`P(X = x_2) = 1 - \\lambda`, elementwise.

    .. math:: \\log\\big(\\lambda x_1 + (1-\\lambda) x_2\\big) - \\big(\\lambda \\log x_1 + (1-\\lambda)\\log x_2\\big)

    Args:
        x1, x2: broadcastable positive points.
        lam: broadcastable weights in [0, 1].

    Returns:
        the broadcast shape, in the promoted dtype of the tensor arguments.
    """
    x1, x2, lam = _common_tensors(x1=x1, x2=x2, lam=lam)
    check_positive("x1", x1)
    check_positive("x2", x2)
    check_finite("lam", lam)
    if not ((lam >= 0) & (lam <= 1)).all():
        raise ValueError("lam must lie in [0, 1]")
    return torch.log(lam * x1 + (1 - lam) * x2) - (lam * torch.log(x1) + (1 - lam) * torch.log(x2))



@dataclass(frozen=True)
class JensenCase:
    """One of the lab's test distributions for :math:`\\log\\mathbb E[X] \\ge \\mathbb E[\\log X]`.

    Attributes:
        name: e.g. ``"Uniform[1, 4]"``.
        samples: (n,) positive samples.
        exact_gap: the exact gap :math:`\\log\\mathbb E[X] - \\mathbb E[\\log X]` (0-dim float64).
    """

    name: str
    samples: Tensor
    exact_gap: Tensor



def lab_jensen_cases(n: int, *, generator: torch.Generator) -> list[JensenCase]:
    """The lab's three distributions Uniform[1, 4], Exponential(1) and Gamma(2, 1), with ``n`` samples each.

    Samples come from ``generator`` by inversion: :math:`X = 1 + 3U` for the
    uniform, :math:`E = -\\log U` for the exponential, and
    :math:`E_1 + E_2` (two independent exponentials) for Gamma(2, 1).
    :math:`U` is drawn in float64 and shifted by a quarter grid step into the
    open interval :math:`(0, 1)`, so every sample is finite and positive.

    Returns:
        three :class:`JensenCase`, in the lab's order; samples (n,) float32 on the CPU.
    """
    check_positive_int("n", n)
    u = torch.rand(4, n, generator=generator, dtype=torch.float64) + 2.0**-55   # in [2^-55, 1 - 2^-53]
    uniform = 1.0 + 3.0 * u[0]
    exponential = -torch.log(u[1])
    gamma2 = -torch.log(u[2]) - torch.log(u[3])
    uniform, exponential, gamma2 = (t.float() for t in (uniform, exponential, gamma2))
    return [
        JensenCase("Uniform[1, 4]", uniform, uniform_jensen_gap(1.0, 4.0)),
        JensenCase("Exponential(1)", exponential, gamma_jensen_gap(1.0)),
        JensenCase("Gamma(2, 1)", gamma2, gamma_jensen_gap(2.0)),
    ]
