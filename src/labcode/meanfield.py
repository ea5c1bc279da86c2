"""Mean-field variational inference by coordinate ascent (CAVI), for a Gaussian target (chapter "The ELBO").

The ELBO in its entropy form is :math:`\\mathrm{ELBO}(x; q) = \\mathbb E_q[\\log p(x, z)] + H[q]`. Over
factorised :math:`q(z) = \\prod_j q_j(z_j)`, with every factor but :math:`q_j` held fixed, it is maximised by

.. math:: q_j^*(z_j) \\ \\propto\\ \\exp \\mathbb E_{q_{-j}}\\big[\\log p(x, z)\\big].

When the log-joint is a quadratic in :math:`z` with a positive definite precision :math:`\\Lambda`,

.. math:: \\log p(x, z) = -\\tfrac12 z^\\top \\Lambda z + h^\\top z + \\text{const}, \\qquad
          p(z \\mid x) = \\mathcal N(m, S),\\ S = \\Lambda^{-1},\\ m = \\Lambda^{-1} h,

the optimal factor is :math:`q_j = \\mathcal N(\\mu_j, 1/\\Lambda_{jj})` with

.. math:: \\mu_j = \\frac{h_j - \\sum_{k \\ne j} \\Lambda_{jk} \\mu_k}{\\Lambda_{jj}}
              = m_j - \\Lambda_{jj}^{-1} \\sum_{k \\ne j} \\Lambda_{jk} (\\mu_k - m_k),

one Gauss–Seidel step for :math:`\\Lambda \\mu = h`: a sweep over :math:`j` needs no matrix inverse.
(Letters as in the chapter: :math:`m, S` the posterior's mean and covariance, :math:`\\mu_j, v_j` a factor's.) For the
linear-Gaussian model (chapter "Bayes' rule", ``bayes-prop-linear``),
:math:`\\Lambda = I_d + W^\\top W/\\sigma_x^2` and :math:`h = W^\\top (x - b)/\\sigma_x^2`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ._checks import check_finite, check_matrix, check_positive, check_positive_int
from .gaussian import LinearGaussianModel, gaussian_log_density


@dataclass(frozen=True)
class MeanFieldTrace:
    """The factors of :math:`q = \\prod_j \\mathcal N(\\mu_j, v_j)` after every coordinate update of :func:`cavi_gaussian`.

    Attributes:
        means: (U + 1, B, d) :math:`\\mu` after each of the :math:`U = \\text{sweeps} \\cdot d` updates; row 0 is the start.
        variances: (U + 1, B, d) :math:`v` likewise.
        coordinate: (U + 1,) the coordinate :math:`j` updated to reach each row (-1 for the start).
    """

    means: Tensor
    variances: Tensor
    coordinate: Tensor

    @property
    def sweep_ends(self) -> Tensor:
        """Row indices of the start and of the end of every sweep: :math:`0, d, 2d, \\dots` (long)."""
        d = self.means.shape[-1]
        return torch.arange(0, self.means.shape[0], d)


def linear_gaussian_natural_parameters(model: LinearGaussianModel, x: Tensor) -> tuple[Tensor, Tensor]:
    """:math:`\\Lambda = I_d + W^\\top W/\\sigma_x^2` and :math:`h = W^\\top (x - b)/\\sigma_x^2`, so that
    :math:`\\log p(x, z) = -\\tfrac12 z^\\top \\Lambda z + h^\\top z + \\text{const}`.

    Args:
        model: the linear-Gaussian model.
        x: (B, D) data points.

    Returns:
        ``(precision, shift)``: (d, d) and (B, d), in ``x``'s dtype.
    """
    if not isinstance(model, LinearGaussianModel):
        raise TypeError(f"model must be a LinearGaussianModel, got {type(model).__name__}")
    check_matrix("x", x, model.data_dim)
    check_finite("x", x)
    weight, bias = model.weight.to(x), model.bias.to(x)
    var = torch.as_tensor(model.noise_std, dtype=x.dtype, device=x.device) ** 2
    precision = torch.eye(model.latent_dim, dtype=x.dtype, device=x.device) + weight.T @ weight / var
    return precision, (x - bias) @ weight / var


def _check_precision(precision: Tensor) -> None:
    if not isinstance(precision, Tensor) or not precision.is_floating_point():
        raise TypeError("precision must be a floating-point tensor")
    if precision.dim() != 2 or precision.shape[0] != precision.shape[1] or precision.shape[0] == 0:
        raise ValueError(f"precision must have shape (d, d), got {tuple(precision.shape)}")
    check_finite("precision", precision)
    if not torch.allclose(precision, precision.T):
        raise ValueError("precision must be symmetric")
    if torch.linalg.cholesky_ex(precision).info.item() != 0:
        raise ValueError("precision must be positive definite")


def cavi_gaussian(precision: Tensor, shift: Tensor, init_mean: Tensor, init_var: Tensor, sweeps: int) -> MeanFieldTrace:
    """Coordinate ascent on the ELBO over :math:`q = \\prod_j \\mathcal N(\\mu_j, v_j)` for the target
    :math:`\\log p(x, z) = -\\tfrac12 z^\\top \\Lambda z + h^\\top z + \\text{const}`.

    Each update :math:`j = 1, \\dots, d` (in order, ``sweeps`` times) sets :math:`v_j = 1/\\Lambda_{jj}` and
    :math:`\\mu_j = (h_j - \\sum_{k \\ne j} \\Lambda_{jk} \\mu_k)/\\Lambda_{jj}`, the exact maximiser of the ELBO over
    :math:`q_j` with the other factors fixed; the ELBO never decreases, and the means converge to the
    posterior mean :math:`m = \\Lambda^{-1} h` (Gauss–Seidel). Batched over :math:`B` targets that share :math:`\\Lambda`
    (one per data point of a linear-Gaussian model).

    Args:
        precision: (d, d) symmetric positive definite :math:`\\Lambda`.
        shift: (B, d) :math:`h`, one row per target.
        init_mean: (B, d) the starting means.
        init_var: (B, d) the starting variances (> 0); they only set the starting ELBO.
        sweeps: the number of sweeps (> 0).

    Returns:
        a :class:`MeanFieldTrace` with ``sweeps * d + 1`` rows, in ``shift``'s dtype and on its device.
    """
    _check_precision(precision)
    check_positive_int("sweeps", sweeps)
    d = precision.shape[0]
    if not isinstance(shift, Tensor) or not shift.is_floating_point():
        raise TypeError("shift must be a floating-point tensor")
    check_matrix("shift", shift, d)
    check_finite("shift", shift)
    for name, value in (("init_mean", init_mean), ("init_var", init_var)):
        if not isinstance(value, Tensor) or not value.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor")
        if value.shape != shift.shape:
            raise ValueError(f"{name} must have shape {tuple(shift.shape)}, got {tuple(value.shape)}")
    check_finite("init_mean", init_mean)
    check_positive("init_var", init_var)
    precision = precision.to(shift)
    diag = precision.diagonal()
    mean, var = init_mean.to(shift).clone(), init_var.to(shift).clone()
    means, variances, coordinate = [mean.clone()], [var.clone()], [-1]
    for _ in range(sweeps):
        for j in range(d):              # coordinates in turn: each update uses the latest values of the others
            others = mean @ precision[j] - diag[j] * mean[:, j]            # sum_{k != j} Λ_jk m_k
            mean[:, j] = (shift[:, j] - others) / diag[j]
            var[:, j] = 1 / diag[j]
            means.append(mean.clone())
            variances.append(var.clone())
            coordinate.append(j)
    return MeanFieldTrace(torch.stack(means), torch.stack(variances), torch.tensor(coordinate))


def diagonal_gaussian_elbo(model: LinearGaussianModel, x: Tensor, mean: Tensor, var: Tensor) -> Tensor:
    """:math:`\\mathrm{ELBO}(x; q) = \\mathbb E_q[\\log p(x \\mid z)] + \\mathbb E_q[\\log p(z)] + H[q]` for the
    linear-Gaussian model and :math:`q = \\mathcal N(\\mu, \\operatorname{diag} v)`, each term in closed form:

    .. math:: \\mathbb E_q[\\log p(x \\mid z)] = \\log \\mathcal N(x;\\ W\\mu + b,\\ \\sigma_x^2 I_D) - \\frac{1}{2\\sigma_x^2} \\sum_j \\|w_j\\|^2 v_j,

    .. math:: \\mathbb E_q[\\log p(z)] = -\\tfrac12\\big(\\|\\mu\\|^2 + \\textstyle\\sum_j v_j\\big) - \\tfrac d2 \\log 2\\pi, \\qquad
              H[q] = \\tfrac12 \\textstyle\\sum_j \\log(2\\pi e\\, v_j),

    with :math:`w_j` the :math:`j`-th column of :math:`W` (the first line because
    :math:`\\mathbb E_q\\|x - b - Wz\\|^2 = \\|x - b - W\\mu\\|^2 + \\sum_j \\|w_j\\|^2 v_j`).

    Args:
        model: the linear-Gaussian model.
        x: (B, D) data points.
        mean, var: (..., B, d) the factors' means and variances (> 0), e.g. a :class:`MeanFieldTrace`'s rows.

    Returns:
        (..., B) ELBOs, in ``x``'s dtype.
    """
    if not isinstance(model, LinearGaussianModel):
        raise TypeError(f"model must be a LinearGaussianModel, got {type(model).__name__}")
    check_matrix("x", x, model.data_dim)
    check_finite("x", x)
    expected = (x.shape[0], model.latent_dim)
    for name, value in (("mean", mean), ("var", var)):
        if not isinstance(value, Tensor) or not value.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor")
        if value.dim() < 2 or tuple(value.shape[-2:]) != expected:
            raise ValueError(f"{name} must have shape (..., {expected[0]}, {expected[1]}), got {tuple(value.shape)}")
    check_finite("mean", mean)
    check_positive("var", var)
    if mean.shape != var.shape:
        raise ValueError(f"mean and var must have the same shape, got {tuple(mean.shape)} and {tuple(var.shape)}")
    weight, bias = model.weight.to(x), model.bias.to(x)
    mean, var = mean.to(x), var.to(x)
    noise_var = torch.as_tensor(model.noise_std, dtype=x.dtype, device=x.device) ** 2
    d = model.latent_dim
    reconstruction = (gaussian_log_density(x, mean @ weight.T + bias, noise_var.sqrt())
                      - (var * (weight**2).sum(0)).sum(-1) / (2 * noise_var))           # E_q log p(x | z)
    log_prior = -0.5 * ((mean**2).sum(-1) + var.sum(-1)) - 0.5 * d * math.log(2 * math.pi)   # E_q log p(z)
    entropy = 0.5 * torch.log(2 * math.pi * math.e * var).sum(-1)                          # H[q]
    return reconstruction + log_prior + entropy
