"""Regular lattices in latent space and the midpoint rule on them.

Chapters "The intractable likelihood", "Bayes' rule and its circularity",
"Mode-covering and mode-seeking in two dimensions" and "Beyond the lab".

A lattice of :math:`G` equal cells per axis on the cube :math:`[-a, a]^d` turns an integral
over the latent space into a sum over the cells' midpoints,

.. math:: \\int_{[-a,a]^d} g(z)\\, dz \\approx \\Delta \\sum_j g(z_j), \\qquad \\Delta = (2a/G)^d,

which is how Bayes' rule is carried out by brute force: the unnormalised posterior
:math:`\\log p(x, z_j)` at every node, and the evidence by one log-sum-exp. The
adaptive rule built on this lattice is :mod:`labcode.quadrature`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ._checks import check_finite, check_log_weights, check_matrix, check_positive_int, check_positive_number, positive_scalar
from .gaussian import gaussian_log_density
from .likelihood import Decoder, log_likelihood_matrix


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
    check_positive_number("half_width", half_width)
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
    sigma = positive_scalar("noise_std", noise_std, x)
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
    check_log_weights("log_joint", log_joint)
    check_positive_number("cell_volume", cell_volume)
    return torch.logsumexp(log_joint, dim=-1) + math.log(cell_volume)
