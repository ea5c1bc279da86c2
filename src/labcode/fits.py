"""Gaussian fits to a target by forward or reverse KL, in one and two dimensions.

Chapters "KL divergence" and "Mode-covering and mode-seeking in two dimensions".

A Gaussian :math:`q` fitted to a multimodal target :math:`p` by minimising the forward
:math:`\\mathrm{KL}(p\\,\\|\\,q)` ("inclusive") covers every mode; minimised in the reverse
direction :math:`\\mathrm{KL}(q\\,\\|\\,p)` ("exclusive", the direction of the ELBO) it seeks one.
Both objectives are computed by quadrature on a fixed grid (:func:`labcode.kl.trapezoid_kl`
in one dimension, :func:`labcode.kl.midpoint_kl` on a planar lattice), so they are
deterministic and smooth in the parameters, and minimised by gradient descent.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from ._checks import as_tensor, check_direction, check_finite, check_grid, check_positive_int
from .gaussian import normal_log_density_grid
from .kl import midpoint_kl, trapezoid_kl
from .lattice import latent_grid

LogProb = Callable[[Tensor], Tensor]
Direction = Literal["forward", "reverse"]


def _gaussian_kl_to_target(direction: Direction, log_target: Tensor, grid: Tensor,
                           mu: Tensor, log_sigma: Tensor) -> Tensor:
    """KL between the target (log-density (M,) on the grid) and :math:`\\mathcal N(\\mu, \\sigma^2)` for parameters (...)."""
    log_q = normal_log_density_grid(grid, mu, log_sigma)
    if direction == "forward":                     # KL(p || q): average over the target
        return trapezoid_kl(log_target, log_q, grid)
    return trapezoid_kl(log_q, log_target, grid)  # KL(q || p): average over q



def gaussian_kl_landscape(target_log_prob: LogProb, grid: Tensor, mus: Tensor, log_sigmas: Tensor,
                          direction: Direction) -> Tensor:
    """KL between a target :math:`p` and :math:`q = \\mathcal N(\\mu, \\sigma^2)` on a grid of :math:`(\\mu, \\log\\sigma)`.

    ``direction="forward"`` gives :math:`\\mathrm{KL}(p\\,\\|\\,q)` ("inclusive"),
    ``"reverse"`` gives :math:`\\mathrm{KL}(q\\,\\|\\,p)` ("exclusive"); both by
    :func:`~labcode.kl.quadrature_kl` on ``grid``.

    Args:
        target_log_prob: :math:`\\log p`, (M,) -> (M,).
        grid: (M,) quadrature points covering the mass of :math:`p` and of every :math:`q`.
        mus: (A,) means.
        log_sigmas: (B,) log standard deviations.
        direction: ``"forward"`` or ``"reverse"``.

    Returns:
        (B, A) KL values, row ``b`` for ``log_sigmas[b]``, column ``a`` for ``mus[a]``.
    """
    check_direction(direction)
    grid = check_grid(grid)
    mus, log_sigmas = as_tensor("mus", mus), as_tensor("log_sigmas", log_sigmas)
    for name, t in (("mus", mus), ("log_sigmas", log_sigmas)):
        if t.dim() != 1:
            raise ValueError(f"{name} must be 1-D, got shape {tuple(t.shape)}")
        check_finite(name, t)
    log_target = target_log_prob(grid)
    check_finite("target_log_prob(grid)", log_target)
    mu, log_sigma = torch.meshgrid(mus, log_sigmas, indexing="xy")   # (B, A) each
    return _gaussian_kl_to_target(direction, log_target, grid, mu, log_sigma)



@dataclass(frozen=True)
class GaussianFit:
    """Gaussians :math:`q_j = \\mathcal N(\\mu_j, \\sigma_j^2)` fitted to a target by minimising one KL direction.

    Attributes:
        direction: ``"forward"`` (minimised :math:`\\mathrm{KL}(p\\|q)`) or ``"reverse"`` (:math:`\\mathrm{KL}(q\\|p)`).
        mu: (J,) fitted means, one per starting point.
        sigma: (J,) fitted standard deviations.
        kl: (J,) the minimised KL at the fit.
        path: (steps + 1, J, 2) the iterates :math:`(\\mu, \\log\\sigma)`, starting point first.
    """

    direction: str
    mu: Tensor
    sigma: Tensor
    kl: Tensor
    path: Tensor

    def log_prob(self, x: Tensor) -> Tensor:
        """:math:`\\log q_j(x)` for every fit: x (M,) -> (J, M)."""
        x = as_tensor("x", x)
        return normal_log_density_grid(x, self.mu.to(x), torch.log(self.sigma).to(x))



def fit_gaussian_kl(target_log_prob: LogProb, grid: Tensor, direction: Direction,
                    mu0: Tensor | Sequence[float], log_sigma0: Tensor | Sequence[float], *,
                    steps: int = 500, lr: float = 0.1) -> GaussianFit:
    """Fit :math:`q = \\mathcal N(\\mu, \\sigma^2)` to a target :math:`p` by gradient descent on one KL direction.

    The objective is :func:`~labcode.kl.quadrature_kl` on the fixed ``grid`` (deterministic,
    so plain gradient descent applies), in the parameters
    :math:`\\theta = (\\mu, \\log\\sigma)`:
    :math:`\\theta \\leftarrow \\theta - \\eta\\, \\nabla_\\theta \\mathrm{KL}`.
    ``direction="forward"`` minimises :math:`\\mathrm{KL}(p\\,\\|\\,q)`,
    ``"reverse"`` minimises :math:`\\mathrm{KL}(q\\,\\|\\,p)`. The :math:`J`
    starting points are optimised together (their objectives are
    independent, so the gradient of the sum is each one's own). Reverse KL is
    not convex in :math:`\\theta` for a multimodal target: different starts
    can end in different local minima. The step ``lr`` must be below
    :math:`2/\\lambda_{\\max}` of the Hessian along the path.

    Args:
        target_log_prob: :math:`\\log p`, (M,) -> (M,).
        grid: (M,) quadrature points covering the mass of :math:`p` and of every :math:`q`.
        direction: ``"forward"`` or ``"reverse"``.
        mu0, log_sigma0: (J,) starting points.
        steps: number of gradient steps, > 0.
        lr: step size :math:`\\eta > 0`.

    Returns:
        a :class:`GaussianFit` on the device and dtype of ``grid``.
    """
    check_direction(direction)
    grid = check_grid(grid)
    check_positive_int("steps", steps)
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    mu0 = torch.as_tensor(mu0, dtype=grid.dtype, device=grid.device)
    log_sigma0 = torch.as_tensor(log_sigma0, dtype=grid.dtype, device=grid.device)
    if mu0.dim() != 1 or mu0.shape != log_sigma0.shape:
        raise ValueError(f"mu0 and log_sigma0 must have the same shape (J,), got {tuple(mu0.shape)} and {tuple(log_sigma0.shape)}")
    check_finite("mu0", mu0)
    check_finite("log_sigma0", log_sigma0)
    log_target = target_log_prob(grid).detach()
    check_finite("target_log_prob(grid)", log_target)

    theta = torch.stack([mu0, log_sigma0], dim=-1)   # (J, 2)
    path = [theta]
    for _ in range(steps):
        theta = theta.detach().requires_grad_(True)
        kl = _gaussian_kl_to_target(direction, log_target, grid, theta[:, 0], theta[:, 1])
        (grad,) = torch.autograd.grad(kl.sum(), theta)
        theta = theta.detach() - lr * grad
        path.append(theta)
    path_t = torch.stack(path)
    check_finite("the fitted parameters (lower lr?)", path_t)
    with torch.no_grad():
        kl = _gaussian_kl_to_target(direction, log_target, grid, theta[:, 0], theta[:, 1])
    return GaussianFit(direction=direction, mu=theta[:, 0], sigma=torch.exp(theta[:, 1]), kl=kl, path=path_t)



def _gaussian_from_params(theta: Tensor, diagonal: bool = False) -> tuple[Tensor, Tensor]:
    """theta (J, 5) = (m1, m2, log l11, l21, log l22) -> mean (J, 2), Cholesky factor (J, 2, 2); l21 = 0 if diagonal."""
    mean = theta[:, :2]
    zero = torch.zeros_like(theta[:, 2])
    chol = torch.stack([torch.stack([torch.exp(theta[:, 2]), zero], -1),
                        torch.stack([zero if diagonal else theta[:, 3], torch.exp(theta[:, 4])], -1)], -2)
    return mean, chol



def _gaussian_log_prob_params(nodes: Tensor, theta: Tensor, diagonal: bool = False) -> Tensor:
    """:math:`\\log \\mathcal N(z_n;\\ m_j, L_j L_j^\\top)` for nodes (n, 2) and parameters (J, 5) -> (J, n)."""
    mean, chol = _gaussian_from_params(theta, diagonal)
    diff = nodes[None] - mean[:, None]                                           # (J, n, 2)
    white = torch.linalg.solve_triangular(chol, diff.transpose(1, 2), upper=False)  # (J, 2, n)
    log_det = torch.log(chol.diagonal(dim1=1, dim2=2)).sum(-1)
    return -0.5 * (white ** 2).sum(1) - log_det[:, None] - math.log(2 * math.pi)



@dataclass(frozen=True)
class GaussianFit2D:
    """Full-covariance Gaussian fits :math:`q_j = \\mathcal N(m_j, S_j)` from :math:`J` starting points.

    Attributes:
        direction: ``"forward"`` (minimise :math:`\\mathrm{KL}(p\\|q)`) or ``"reverse"`` (:math:`\\mathrm{KL}(q\\|p)`).
        mean: (J, 2) fitted means.
        cov: (J, 2, 2) fitted covariances.
        kl: (J,) the minimised KL.
        path: (steps + 1, J, 2) the means along the optimisation, start first.
    """

    direction: str
    mean: Tensor
    cov: Tensor
    kl: Tensor
    path: Tensor

    def log_prob(self, z: Tensor) -> Tensor:
        """:math:`\\log q_j(z)` for z (..., 2) -> (J, ...)."""
        dist = torch.distributions.MultivariateNormal(self.mean.to(z), covariance_matrix=self.cov.to(z))
        return dist.log_prob(z[..., None, :]).movedim(-1, 0)



def fit_gaussian_kl_2d(target_log_prob: Callable[[Tensor], Tensor], half_width: float, points_per_axis: int,
                       direction: Direction, mean0: Tensor | Sequence[Sequence[float]],
                       std0: Tensor | Sequence[Sequence[float]], *, diagonal: bool = False, steps: int = 400,
                       lr: float = 0.05) -> GaussianFit2D:
    """Fit :math:`q = \\mathcal N(m, LL^\\top)` to a planar target by minimising one direction of KL on a lattice.

    The two-dimensional counterpart of :func:`fit_gaussian_kl`:
    the KL is the midpoint rule on the lattice of
    :func:`labcode.lattice.latent_grid` (deterministic and smooth in the
    parameters; the lattice must resolve the target and every iterate),
    minimised by Adam over
    :math:`\\theta = (m_1, m_2, \\log L_{11}, L_{21}, \\log L_{22})` (a Cholesky
    factor, so every iterate is a valid covariance). The :math:`J` starting
    points are optimised together; their objectives are independent.

    Args:
        target_log_prob: :math:`\\log p`, (n, 2) -> (n,).
        half_width, points_per_axis: the lattice on :math:`[-a, a]^2`; it must hold the mass of :math:`p` and every :math:`q`.
        direction: ``"forward"`` or ``"reverse"``.
        mean0: (J, 2) starting means.
        std0: (J, 2) starting standard deviations (axis-aligned start).
        diagonal: restrict :math:`q` to diagonal covariances (:math:`L_{21} = 0`), the family of a VAE's encoder.
        steps: optimisation steps (> 0).
        lr: Adam's step size (> 0).

    Returns:
        a :class:`GaussianFit2D` in float64 on the CPU.
    """
    check_direction(direction)
    check_positive_int("steps", steps)
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    mean0 = torch.as_tensor(mean0, dtype=torch.float64)
    std0 = torch.as_tensor(std0, dtype=torch.float64)
    if mean0.dim() != 2 or mean0.shape[1] != 2 or std0.shape != mean0.shape:
        raise ValueError(f"mean0 and std0 must both have shape (J, 2), got {tuple(mean0.shape)} and {tuple(std0.shape)}")
    check_finite("mean0", mean0)
    if not (std0 > 0).all():
        raise ValueError("std0 must be > 0")
    nodes, cell = latent_grid(half_width, points_per_axis, 2, dtype=torch.float64)
    log_cell = math.log(cell)
    log_p = target_log_prob(nodes).detach()
    check_finite("target_log_prob(nodes)", log_p)

    def kl(theta: Tensor) -> Tensor:
        log_q = _gaussian_log_prob_params(nodes, theta, diagonal)
        return midpoint_kl(log_p, log_q, log_cell) if direction == "forward" else midpoint_kl(log_q, log_p, log_cell)

    theta = torch.cat([mean0, torch.log(std0[:, :1]), torch.zeros_like(std0[:, :1]), torch.log(std0[:, 1:])], dim=1)
    theta = theta.clone().requires_grad_(True)
    optimiser = torch.optim.Adam([theta], lr=lr)
    path = [theta.detach()[:, :2].clone()]
    for _ in range(steps):
        optimiser.zero_grad()
        kl(theta).sum().backward()
        optimiser.step()
        path.append(theta.detach()[:, :2].clone())
    theta = theta.detach()
    check_finite("the fitted parameters (lower lr?)", theta)
    mean, chol = _gaussian_from_params(theta, diagonal)
    return GaussianFit2D(direction=direction, mean=mean, cov=chol @ chol.transpose(1, 2), kl=kl(theta),
                         path=torch.stack(path))
