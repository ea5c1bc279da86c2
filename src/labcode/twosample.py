"""Two-sample statistics: how far apart two samples' distributions are (chapter "Training a diffusion model").

The energy distance of two distributions :math:`P, Q` on :math:`\\mathbb R^D` with finite first moments
(Székely and Rizzo 2013) is

.. math:: \\mathcal E(P, Q) = 2\\, \\mathbb E\\|X - Y\\| - \\mathbb E\\|X - X'\\| - \\mathbb E\\|Y - Y'\\|,
          \\qquad X, X' \\sim P,\\ Y, Y' \\sim Q \\text{ independent};

it is :math:`\\ge 0`, and zero only for :math:`P = Q`. Between two samples this module evaluates it for
their empirical distributions (the V-statistic, all pairs including :math:`i = j`), which is again an
energy distance and so never negative. In one dimension
:math:`\\mathcal E = 2 \\int (F_P - F_Q)^2`, and :func:`scipy.stats.energy_distance` returns
:math:`\\sqrt{\\mathcal E}`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._checks import check_finite, check_matrix


def _mean_distance(a: Tensor, b: Tensor) -> Tensor:
    """:math:`\\frac{1}{nm} \\sum_{i, j} \\|a_i - b_j\\|`, each distance computed directly (not through a matrix product,
    which loses the exact zeros of :math:`i = j`)."""
    return torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist").mean()


def squared_energy_distance(x: Tensor, y: Tensor) -> float:
    """:math:`\\mathcal E(\\hat P_x, \\hat P_y)` of the empirical distributions of two samples.

    .. math:: \\mathcal E = \\frac{2}{nm}\\sum_{i,j} \\|x_i - y_j\\| - \\frac{1}{n^2}\\sum_{i,i'} \\|x_i - x_{i'}\\|
              - \\frac{1}{m^2}\\sum_{j,j'} \\|y_j - y_{j'}\\| \\ \\ge 0 .

    For samples of :math:`P` and :math:`Q` its expectation is
    :math:`\\mathcal E(P, Q) + \\frac1n \\mathbb E\\|X - X'\\| + \\frac1m \\mathbb E\\|Y - Y'\\|`: positive even for
    :math:`P = Q`, so compare values only at equal sample sizes. Cost :math:`O((n + m)^2)` distances.

    Args:
        x: (n, D) sample; y: (m, D) sample, the same D.

    Returns:
        the value as a Python float (computed in float64 on the device of ``x``; non-negative up to rounding).
    """
    check_matrix("x", x)
    check_matrix("y", y, x.shape[1])
    if x.shape[0] == 0 or y.shape[0] == 0:
        raise ValueError(f"x and y must be non-empty, got shapes {tuple(x.shape)} and {tuple(y.shape)}")
    check_finite("x", x)
    check_finite("y", y)
    x = x.double()
    y = y.to(device=x.device, dtype=torch.float64)
    return float(2 * _mean_distance(x, y) - _mean_distance(x, x) - _mean_distance(y, y))
