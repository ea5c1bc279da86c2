"""Two-sample statistics: how far apart two samples' distributions are (chapter "Training a diffusion model").

The energy distance of two distributions :math:`P, Q` on :math:`\\mathbb R^D` with finite first moments
(Székely and Rizzo 2013) is

.. math:: \\mathcal E(P, Q) = 2\\, \\mathbb E\\|X - Y\\| - \\mathbb E\\|X - X'\\| - \\mathbb E\\|Y - Y'\\|,
          \\qquad X, X' \\sim P,\\ Y, Y' \\sim Q \\text{ independent};

it is :math:`\\ge 0`, and zero only for :math:`P = Q`. (Some authors, and :func:`scipy.stats.energy_distance`,
call its square root the energy distance; here, as in the chapter, :math:`\\mathcal E` itself is.) Between
two samples :func:`energy_distance` evaluates it for their empirical distributions (the V-statistic, all
pairs including :math:`i = i'`), or, with ``unbiased=True``, averages the within-sample distances over
distinct pairs only (the U-statistic). In one dimension :math:`\\mathcal E = 2 \\int (F_P - F_Q)^2`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._checks import check_finite, check_matrix


def _distance_sum(a: Tensor, b: Tensor) -> Tensor:
    """:math:`\\sum_{i, j} \\|a_i - b_j\\|`, each distance computed directly (not through a matrix product, which
    loses the exact zeros of :math:`i = j`)."""
    return torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist").sum()


def energy_distance(x: Tensor, y: Tensor, *, unbiased: bool = False) -> float:
    """The energy distance :math:`\\mathcal E` between two samples :math:`x_1, \\dots, x_n` and :math:`y_1, \\dots, y_m`.

    The V-statistic (default) is :math:`\\mathcal E(\\hat P_x, \\hat P_y)` of the empirical distributions,

    .. math:: \\mathcal E_V = \\frac{2}{nm}\\sum_{i,j} \\|x_i - y_j\\| - \\frac{1}{n^2}\\sum_{i,i'} \\|x_i - x_{i'}\\|
              - \\frac{1}{m^2}\\sum_{j,j'} \\|y_j - y_{j'}\\| \\ \\ge 0 .

    For i.i.d. samples of :math:`P` and :math:`Q` its expectation is
    :math:`\\mathcal E(P, Q) + \\frac1n \\mathbb E\\|X - X'\\| + \\frac1m \\mathbb E\\|Y - Y'\\|`: positive even for
    :math:`P = Q`, so compare values only at equal sample sizes. With ``unbiased=True`` the within-sample
    sums are divided by :math:`n(n-1)` and :math:`m(m-1)` (the U-statistic :math:`\\mathcal E_U`, which needs
    :math:`n, m \\ge 2`); its expectation is exactly :math:`\\mathcal E(P, Q)` for i.i.d. samples, and it can be
    negative. Neither is unbiased when a sample is not i.i.d. (the chapter's data sets are stratified).
    Cost :math:`O((n + m)^2)` distances.

    Args:
        x: (n, D) sample; y: (m, D) sample, the same D.
        unbiased: the U-statistic instead of the V-statistic.

    Returns:
        the value as a Python float (computed in float64 on the device of ``x``).
    """
    check_matrix("x", x)
    check_matrix("y", y, x.shape[1])
    if not isinstance(unbiased, bool):
        raise TypeError(f"unbiased must be a bool, got {type(unbiased).__name__}")
    n, m = x.shape[0], y.shape[0]
    smallest = 2 if unbiased else 1
    if n < smallest or m < smallest:
        rows = "row" if smallest == 1 else "rows"
        raise ValueError(f"x and y must have at least {smallest} {rows}, got shapes {tuple(x.shape)} and {tuple(y.shape)}")
    check_finite("x", x)
    check_finite("y", y)
    x = x.double()
    y = y.to(device=x.device, dtype=torch.float64)
    pairs_x, pairs_y = (n * (n - 1), m * (m - 1)) if unbiased else (n * n, m * m)
    value = 2 * _distance_sum(x, y) / (n * m) - _distance_sum(x, x) / pairs_x - _distance_sum(y, y) / pairs_y
    return float(value)
