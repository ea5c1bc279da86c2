"""The best Gaussian for each data point, and the split of the ELBO's gap into approximation and amortisation.

Chapter "Approximation gap and amortisation gap".

The encoder gives every point :math:`x` a diagonal Gaussian :math:`q_\\phi(z \\mid x)` from one
network. The best member of the same family for that point alone,

.. math:: q^*(\\cdot \\mid x) = \\operatorname*{arg\\,max}_{q \\in \\mathcal Q} \\mathrm{ELBO}(x; q), \\qquad
          \\mathcal Q = \\{\\mathcal N(m, \\operatorname{diag} e^{\\ell}) : m, \\ell \\in \\mathbb R^d\\},

splits the gap of the ELBO (Cremer, Li and Duvenaud, 2018):

.. math:: \\log p(x) - \\mathrm{ELBO}(x; q_\\phi)
          = \\underbrace{\\log p(x) - \\mathrm{ELBO}(x; q^*)}_{\\text{approximation gap}}
          + \\underbrace{\\mathrm{ELBO}(x; q^*) - \\mathrm{ELBO}(x; q_\\phi)}_{\\text{amortisation gap}}.

Here the ELBO is the exact one, integrated on the cells of the quadrature rule of
:mod:`labcode.quadrature` (as :func:`labcode.exact.exact_terms` does): for fixed cells it is a
smooth function of :math:`\\theta = (m, \\ell)` whose gradient and Hessian are sums over the same
cells, so :func:`best_gaussian` maximises it by Newton's method, for all points at once.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from ._checks import check_encoder_outputs, check_finite, check_matrix, check_positive_int, check_positive_number, randn
from .elbo import elbo_terms
from .exact import ExactTerms, exact_terms, prior_log_density, vae_quadrature
from .gaussian import diagonal_gaussian_log_density, gaussian_log_density
from .kl import standard_normal_kl_unchecked
from .quadrature import LatentQuadrature, decode_in_chunks, latent_quadrature
from .store import cached_training, code_fingerprint, tensor_fingerprint
from .vae import VAE

#: the Levenberg–Marquardt damping of the first step, relative to the largest eigenvalue of -H
_DAMP0 = 1e-3

#: a point whose damping has grown beyond this (every recent step rejected) stops
_STUCK = 1e10

#: in :func:`vae_gap_split` a search from another start than the encoder's continues on the book's rule, and
#: replaces the encoder's, only where it is better by more than this (nats)
_CLEAR = 1e-6

#: cells processed at once by :func:`elbo_newton_terms` (bounds the memory of the (cells, 2d, 2d) products)
_CHUNK = 1 << 14


@dataclass(frozen=True)
class NewtonTerms:
    """The rule's ELBO of :math:`q = \\mathcal N(m, \\operatorname{diag} e^{\\ell})` and its derivatives in :math:`\\theta = (m, \\ell)`, per point."""

    value: Tensor      #: (B,) :math:`\mathrm{ELBO}(x; q)` on the rule
    gradient: Tensor   #: (B, 2d) :math:`\nabla_\theta \mathrm{ELBO}`, the :math:`m` part first
    hessian: Tensor    #: (B, 2d, 2d) :math:`\nabla^2_\theta \mathrm{ELBO}`
    q_mass: Tensor     #: (B,) :math:`\int q` by the rule (1 when the cells resolve :math:`q`)


@dataclass(frozen=True)
class _Cells:
    """A midpoint rule's cells for ``n_points`` points, flattened: cell k belongs to point ``point[k]``, has
    midpoint ``nodes[k]``, volume :math:`e^{\\texttt{log\\_volume}_k}` and the log-likelihood
    ``log_lik[k]`` :math:`= \\log p(x \\mid z_k)`."""

    point: Tensor
    nodes: Tensor
    log_volume: Tensor
    log_lik: Tensor
    n_points: int

    @classmethod
    def of(cls, quad: LatentQuadrature) -> _Cells:
        return cls(quad.point, quad.nodes, quad.log_volume, quad.log_joint - prior_log_density(quad), quad.n_points)

    def value(self, mean: Tensor, logvar: Tensor) -> tuple[Tensor, Tensor]:
        """The ELBO (n_points,) of :math:`\\mathcal N(m, \\operatorname{diag} e^{\\ell})` for every point, and the rule's :math:`\\int q`."""
        log_q = diagonal_gaussian_log_density(self.nodes, mean[self.point], logvar[self.point]) + self.log_volume
        weight = torch.exp(log_q)
        zeros = torch.zeros(self.n_points, dtype=mean.dtype, device=mean.device)
        reconstruction = zeros.index_add(0, self.point, weight * self.log_lik)
        return reconstruction - standard_normal_kl_unchecked(mean, logvar), zeros.index_add(0, self.point, weight)

    def taylor(self, rows: Tensor, mean: Tensor, logvar: Tensor) -> NewtonTerms:
        """:class:`NewtonTerms` of the points ``rows`` (A,), increasing, at ``mean``, ``logvar`` (A, d), in one pass
        over their cells. The formulas are those of :func:`elbo_newton_terms`.
        """
        a_points, d = mean.shape
        device = mean.device
        every = a_points == self.n_points                          # all points: the cells as they are
        if every:
            slot, cells = self.point, None
        else:
            row_of = torch.full((self.n_points,), -1, dtype=torch.long, device=device)
            row_of[rows] = torch.arange(a_points, device=device)
            slot = row_of[self.point]
            cells = (slot >= 0).nonzero().squeeze(1)
            slot = slot[cells]                                     # the row of each of these cells
        std = torch.exp(0.5 * logvar)
        zeros = dict(dtype=mean.dtype, device=device)
        mass, moment0 = torch.zeros(a_points, **zeros), torch.zeros(a_points, **zeros)
        moment1, moment2 = torch.zeros(a_points, 2 * d, **zeros), torch.zeros(a_points, 2 * d, 2 * d, **zeros)
        log_norm = -0.5 * logvar.sum(dim=1) - 0.5 * d * math.log(2 * math.pi)
        for s in range(0, slot.shape[0], _CHUNK):
            p = slot[s:s + _CHUNK]
            k = slice(s, s + _CHUNK) if every else cells[s:s + _CHUNK]
            u = (self.nodes[k] - mean[p]) / std[p]                                        # standardised midpoints
            u2 = u * u
            w = torch.exp(log_norm[p] + self.log_volume[k] - 0.5 * u2.sum(dim=1))       # Δ_k q(z_k)
            a = w * self.log_lik[k]                                                       # Δ_k q(z_k) ℓ_k
            phi = torch.cat([u, u2 - 1], dim=1)                                           # the scores' building blocks
            a_phi = a[:, None] * phi
            mass.index_add_(0, p, w)
            moment0.index_add_(0, p, a)
            moment1.index_add_(0, p, a_phi)
            moment2.index_add_(0, p, a_phi[:, :, None] * phi[:, None, :])
        eye = torch.eye(d, **zeros)
        inv_std = 1 / std
        u_part, sq_part = moment1[:, :d], moment1[:, d:]
        value = moment0 - standard_normal_kl_unchecked(mean, logvar)
        gradient = torch.cat([u_part * inv_std - mean, 0.5 * sq_part - 0.5 * torch.expm1(logvar)], dim=1)
        h_mm = (moment2[:, :d, :d] - moment0[:, None, None] * eye) * inv_std[:, :, None] * inv_std[:, None, :] - eye
        h_mv = 0.5 * moment2[:, :d, d:] * inv_std[:, :, None] - torch.diag_embed(u_part * inv_std)
        h_vv = 0.25 * moment2[:, d:, d:] - 0.5 * torch.diag_embed(sq_part + moment0[:, None] + torch.exp(logvar))
        hessian = torch.cat([torch.cat([h_mm, h_mv], dim=2), torch.cat([h_mv.transpose(1, 2), h_vv], dim=2)], dim=1)
        return NewtonTerms(value=value, gradient=gradient, hessian=hessian, q_mass=mass)


def _check_quadrature(quad: object) -> LatentQuadrature:
    if not isinstance(quad, LatentQuadrature):
        raise TypeError(f"quad must be a LatentQuadrature, got {type(quad).__name__}")
    return quad


def elbo_newton_terms(quad: LatentQuadrature, mean: Tensor, logvar: Tensor) -> NewtonTerms:
    """The ELBO of :math:`q = \\mathcal N(m, \\operatorname{diag} e^{\\ell})` on the rule of ``quad``, with its gradient and Hessian.

    On the cells :math:`z_k` (volumes :math:`\\Delta_k`) of one point, with
    :math:`L_k = \\log p(x \\mid z_k)`, :math:`s_j = e^{\\ell_j/2}` and :math:`u = (z - m)/s`,

    .. math:: \\mathrm{ELBO}(\\theta) = R(\\theta) - \\mathrm{KL}(q \\,\\|\\, p(z)), \\qquad
              R(\\theta) = \\textstyle\\sum_k \\Delta_k\\, q_\\theta(z_k)\\, L_k,

    the prior KL in closed form, as in :func:`labcode.exact.exact_terms` (so the value at the
    encoder's output is that function's ``elbo``). Differentiating :math:`q_\\theta(z_k)` at the
    fixed cells, :math:`\\partial_{m_j} \\log q = u_j/s_j` and :math:`\\partial_{\\ell_j} \\log q = (u_j^2 - 1)/2`, so with
    :math:`E[g] = \\sum_k \\Delta_k q_\\theta(z_k) L_k\\, g(u_k)`:

    .. math:: \\partial_{m_j} R = E[u_j]/s_j, \\quad \\partial_{\\ell_j} R = \\tfrac12 E[u_j^2 - 1], \\quad
              \\partial_{m_j}\\partial_{m_l} R = E[u_j u_l - \\delta_{jl}]/(s_j s_l),

    .. math:: \\partial_{m_j}\\partial_{\\ell_l} R = \\tfrac12 E[u_j (u_l^2 - 1)]/s_j - \\delta_{jl} E[u_j]/s_j, \\quad
              \\partial_{\\ell_j}\\partial_{\\ell_l} R = \\tfrac14 E[(u_j^2 - 1)(u_l^2 - 1)] - \\tfrac12 \\delta_{jl} E[u_j^2],

    all moments of :math:`\\Delta_k q_\\theta(z_k) L_k` against :math:`(u, u^2 - 1)` and their products,
    accumulated in one pass over the cells. The KL term contributes :math:`-m_j` and
    :math:`-\\tfrac12(e^{\\ell_j} - 1)` to the gradient and :math:`-I`, :math:`-\\tfrac12 \\operatorname{diag} e^{\\ell}` to the Hessian.

    Args:
        quad: from :func:`labcode.quadrature.latent_quadrature`; its cells must resolve :math:`q`.
        mean, logvar: (B, d) :math:`m` and :math:`\\ell`, one row per point of ``quad``.

    Returns:
        a :class:`NewtonTerms` in the dtype and on the device of ``quad``.
    """
    quad = _check_quadrature(quad)
    check_encoder_outputs(mean, logvar, quad.n_points, quad.nodes.shape[1])
    rows = torch.arange(quad.n_points, device=quad.nodes.device)
    return _Cells.of(quad).taylor(rows, mean.to(quad.nodes), logvar.to(quad.nodes))


@dataclass(frozen=True)
class GaussianOptimum:
    """The best diagonal Gaussian :math:`q^*(z \\mid x) = \\mathcal N(m^*, \\operatorname{diag} e^{\\ell^*})` found per point, on a rule."""

    mean: Tensor          #: (B, d) :math:`m^*`
    logvar: Tensor        #: (B, d) :math:`\ell^*`
    elbo: Tensor          #: (B,) :math:`\mathrm{ELBO}(x; q^*)` on the rule
    start_elbo: Tensor    #: (B,) the ELBO at the start (``-inf`` where the rule does not resolve the start)
    #: (B,) :math:`\tfrac12 g^\top (-H)^{-1} g` at :math:`q^*`, the gain a further Newton step predicts
    #: (inf where :math:`-H` is not positive definite)
    decrement: Tensor
    q_mass: Tensor        #: (B,) :math:`\int q^*` by the rule (1 when the cells resolve :math:`q^*`)
    iterations: int       #: Newton iterations used


def _pick(take: Tensor, a: GaussianOptimum, b: GaussianOptimum) -> GaussianOptimum:
    """Per point, ``a``'s optimum where ``take`` (B,) holds and ``b``'s elsewhere; the start values stay ``b``'s."""
    def pick(u: Tensor, v: Tensor) -> Tensor:
        return torch.where(take.reshape(-1, *[1] * (u.dim() - 1)), u, v)

    return GaussianOptimum(mean=pick(a.mean, b.mean), logvar=pick(a.logvar, b.logvar), elbo=pick(a.elbo, b.elbo),
                           start_elbo=b.start_elbo, decrement=pick(a.decrement, b.decrement),
                           q_mass=pick(a.q_mass, b.q_mass), iterations=max(a.iterations, b.iterations))


def best_gaussian(quad: LatentQuadrature, mean: Tensor, logvar: Tensor, *, max_iter: int = 50,
                  gain_tol: float = 1e-10, mass_tol: float = 1e-4) -> GaussianOptimum:
    """Maximise the rule's ELBO over diagonal Gaussians, for every point of ``quad``, from ``(mean, logvar)``.

    Damped Newton's method in :math:`\\theta = (m, \\ell)` (:math:`\\ell = \\log s^2`, as the encoder's ``logvar``), one
    independent problem per point, all points batched: with the gradient :math:`g` and
    Hessian :math:`H` of :func:`elbo_newton_terms`, the step is

    .. math:: \\Delta\\theta = (-H + \\mu I)^{-1} g,

    where :math:`\\mu \\ge 0` is the smallest shift that gives :math:`-H + \\mu I` eigenvalues of at
    least :math:`\\lambda` times its largest (Levenberg–Marquardt damping). A step is taken only
    if it raises the point's ELBO and the rule still resolves the new :math:`q`
    (:math:`|\\int q - 1| \\le` ``mass_tol``: a Gaussian that slips between or outside the cells
    would have a spurious ELBO); then :math:`\\lambda` shrinks tenfold, otherwise it grows
    tenfold and the next step is shorter. The ELBO of a point therefore never decreases. A
    point stops when :math:`-H` is positive definite and the Newton decrement
    :math:`\\tfrac12 g^\\top (-H)^{-1} g`, the gain the undamped step promises, is below
    ``gain_tol`` nats (near such a maximum the iteration converges quadratically), or when
    no step is accepted any more. The maximum is a local one, reached from the
    start: the approximation gap it gives is an upper bound on the family's, the
    amortisation gap a lower bound. A start that the rule does not resolve gets
    ``start_elbo = -inf``, and the first step to a Gaussian that it resolves is taken (if there is
    none, ``elbo`` stays ``-inf``).

    Args:
        quad: from :func:`labcode.quadrature.latent_quadrature`, with cells that resolve the
            posterior and the Gaussians visited.
        mean, logvar: (B, d) the start, e.g. the encoder's output.
        max_iter: at most this many Newton iterations (> 0).
        gain_tol: the stopping threshold on the predicted gain, in nats (> 0).
        mass_tol: how far the rule's :math:`\\int q` may be from 1 (> 0).

    Returns:
        a :class:`GaussianOptimum` in the dtype and on the device of ``quad``.
    """
    quad = _check_quadrature(quad)
    check_encoder_outputs(mean, logvar, quad.n_points, quad.nodes.shape[1])
    check_positive_int("max_iter", max_iter)
    check_positive_number("gain_tol", gain_tol)
    check_positive_number("mass_tol", mass_tol)
    return _newton(_Cells.of(quad), mean.to(quad.nodes), logvar.to(quad.nodes), max_iter, gain_tol, mass_tol)


def _newton_decrement(gradient: Tensor, eig: Tensor, vec: Tensor) -> Tensor:
    """:math:`\\tfrac12 g^\\top (-H)^{-1} g` from the eigenpairs of :math:`-H`; inf unless :math:`-H` is positive definite."""
    proj = (vec.transpose(1, 2) @ gradient[:, :, None]).squeeze(2)
    gain = 0.5 * (proj**2 / eig.clamp(min=torch.finfo(eig.dtype).tiny)).sum(dim=1)
    return torch.where(eig[:, 0] > 0, gain, torch.full_like(gain, math.inf))


def _newton(cells: _Cells, mean: Tensor, logvar: Tensor, max_iter: int, gain_tol: float,
            mass_tol: float, only: Tensor | None = None) -> GaussianOptimum:
    """The iteration of :func:`best_gaussian` on ``cells`` (arguments checked; ``max_iter = 0`` only evaluates).

    With ``only`` (a (B,) mask) only those points are evaluated and moved; the others get ``elbo = -inf``.
    """
    n_points, d = mean.shape
    device = mean.device
    theta = torch.cat([mean, logvar], dim=1)
    active = torch.ones(n_points, dtype=torch.bool, device=device) if only is None else only.clone()
    value = torch.full((n_points,), -math.inf, dtype=theta.dtype, device=device)
    gradient = torch.zeros_like(theta)
    hessian = -torch.eye(2 * d, dtype=theta.dtype, device=device).repeat(n_points, 1, 1)
    mass = torch.full_like(value, math.nan)
    first = active.nonzero().squeeze(1)
    current = cells.taylor(first, theta[first, :d], theta[first, d:])
    resolved = (current.q_mass - 1).abs() <= mass_tol                       # a start the cells do not resolve: -inf
    value[first] = torch.where(resolved, current.value, -math.inf)
    gradient[first], hessian[first], mass[first] = current.gradient, current.hessian, current.q_mass
    start = value.clone()
    damping = torch.full((n_points,), _DAMP0, dtype=theta.dtype, device=device)
    iterations = 0
    for _ in range(max_iter):
        rows = active.nonzero().squeeze(1)
        if rows.numel() == 0:
            break
        iterations += 1
        eig, vec = torch.linalg.eigh(-hessian[rows])
        # converged (the undamped Newton step promises less than gain_tol), or stuck (no step is accepted)
        done = (_newton_decrement(gradient[rows], eig, vec) < gain_tol) | (damping[rows] > _STUCK)
        active[rows[done]] = False
        keep = ~done
        rows, eig, vec = rows[keep], eig[keep], vec[keep]
        if rows.numel() == 0:
            break
        shift = (damping[rows] * eig.abs().amax(dim=1) - eig[:, 0]).clamp(min=0)
        proj = (vec.transpose(1, 2) @ gradient[rows][:, :, None]).squeeze(2)
        trial = theta[rows] + (vec @ (proj / (eig + shift[:, None]))[:, :, None]).squeeze(2)   # + (-H + shift I)^{-1} g
        new = cells.taylor(rows, trial[:, :d], trial[:, d:])
        better = (new.value > value[rows]) & ((new.q_mass - 1).abs() <= mass_tol)
        up = rows[better]
        theta[up], value[up], gradient[up] = trial[better], new.value[better], new.gradient[better]
        hessian[up], mass[up] = new.hessian[better], new.q_mass[better]
        damping[rows] = torch.where(better, damping[rows] / 10, damping[rows] * 10).clamp(min=1e-12)
    decrement = torch.where(torch.isfinite(value), _newton_decrement(gradient, *torch.linalg.eigh(-hessian)), math.inf)
    return GaussianOptimum(mean=theta[:, :d], logvar=theta[:, d:], elbo=value, start_elbo=start,
                           decrement=decrement, q_mass=mass, iterations=iterations)



#: the searches on the per-point lattices of :func:`vae_gap_split` stop at this predicted gain (nats)
_SEARCH_GAIN = 1e-6

#: the starts of the searches in :func:`vae_gap_split`, in the order of :attr:`GapSplit.start`
STARTS = ("encoder", "posterior moments", "posterior mode")


def _box_cells(model: nn.Module, x: Tensor, noise_std: Tensor, low: Tensor, high: Tensor, points_per_axis: int) -> _Cells:
    """The midpoint rule on :math:`G^d` equal cells of the box ``[low[i], high[i]]`` (B, d) of each point."""
    n_points, d = low.shape
    unit = (torch.arange(points_per_axis, dtype=x.dtype, device=x.device) + 0.5) / points_per_axis
    nodes = low[:, None, :] + (high - low)[:, None, :] * torch.cartesian_prod(*[unit] * d).reshape(1, -1, d)
    per_point = nodes.shape[1]
    decoded = decode_in_chunks(model, nodes.reshape(-1, d)).reshape(n_points, per_point, -1)
    log_lik = gaussian_log_density(x[:, None, :], decoded, noise_std).reshape(-1)
    point = torch.arange(n_points, device=x.device).repeat_interleave(per_point)
    log_volume = torch.log((high - low) / points_per_axis).sum(dim=1)[point]
    return _Cells(point, nodes.reshape(-1, d), log_volume, log_lik, n_points)


@dataclass(frozen=True)
class GapSplit:
    """The ELBO's gap per data point, split by the best Gaussian :math:`q^*` (all tensors (B,))."""

    log_evidence: Tensor      #: :math:`\log p(x)` by the rule
    encoder_elbo: Tensor      #: :math:`\mathrm{ELBO}(x; q_\phi)`
    best: GaussianOptimum     #: :math:`q^*` and :math:`\mathrm{ELBO}(x; q^*)`, both on the rule
    start: Tensor             #: (B,) int64, the index in :data:`STARTS` of the search that found :math:`q^*`
    encoder_start_elbo: Tensor  #: the ELBO that the search from the encoder alone reaches (at least the encoder's)
    error_estimate: Tensor    #: the rule's error estimate for :math:`\log p(x)`
    #: the rule's cells (kept by :func:`vae_gap_split` for :meth:`elbo`; dropped by :meth:`select`)
    cells: _Cells | None = field(default=None, repr=False, compare=False)

    def elbo(self, mean: Tensor, logvar: Tensor) -> tuple[Tensor, Tensor]:
        """:math:`\\mathrm{ELBO}(x; \\mathcal N(m, \\operatorname{diag} e^{\\ell}))` (B,) for every point on the same rule as
        the split, and the rule's :math:`\\int q` (B,), which is 1 where the cells resolve that Gaussian;
        ``mean``, ``logvar``: (B, d)."""
        if self.cells is None:
            raise ValueError("this GapSplit keeps no cells (a select()ion): call elbo on the full split")
        if not (isinstance(mean, Tensor) and isinstance(logvar, Tensor)):
            raise TypeError("mean and logvar must be tensors")
        check_encoder_outputs(mean, logvar, self.cells.n_points, self.cells.nodes.shape[1])
        return self.cells.value(mean.to(self.cells.nodes), logvar.to(self.cells.nodes))

    @property
    def approximation_gap(self) -> Tensor:
        """:math:`\\log p(x) - \\mathrm{ELBO}(x; q^*) = \\mathrm{KL}(q^* \\,\\|\\, p(z \\mid x))`: the family's share."""
        return self.log_evidence - self.best.elbo

    @property
    def amortization_gap(self) -> Tensor:
        """:math:`\\mathrm{ELBO}(x; q^*) - \\mathrm{ELBO}(x; q_\\phi) \\ge 0`: the encoder's share."""
        return self.best.elbo - self.encoder_elbo

    @property
    def total_gap(self) -> Tensor:
        """:math:`\\log p(x) - \\mathrm{ELBO}(x; q_\\phi) = \\mathrm{KL}(q_\\phi \\,\\|\\, p(z \\mid x))`, the sum of the two."""
        return self.log_evidence - self.encoder_elbo

    def select(self, index: Tensor | slice) -> GapSplit:
        """The split of the points ``index`` only (any index that selects rows of a (B,) tensor)."""
        best = self.best
        return GapSplit(log_evidence=self.log_evidence[index], encoder_elbo=self.encoder_elbo[index],
                        best=GaussianOptimum(mean=best.mean[index], logvar=best.logvar[index], elbo=best.elbo[index],
                                             start_elbo=best.start_elbo[index], decrement=best.decrement[index],
                                             q_mass=best.q_mass[index], iterations=best.iterations),
                        start=self.start[index], encoder_start_elbo=self.encoder_start_elbo[index],
                        error_estimate=self.error_estimate[index])

    def means(self) -> dict[str, float]:
        """Averages over the points: ``log_evidence``, ``encoder_elbo``, ``best_elbo``, ``approximation_gap``,
        ``amortization_gap``, ``total_gap``, and ``amortization_share``, the ratio of the last two."""
        values = {"log_evidence": self.log_evidence, "encoder_elbo": self.encoder_elbo, "best_elbo": self.best.elbo,
                  "approximation_gap": self.approximation_gap, "amortization_gap": self.amortization_gap,
                  "total_gap": self.total_gap}
        means = {key: float(value.mean()) for key, value in values.items()}
        means["amortization_share"] = means["amortization_gap"] / means["total_gap"]
        return means


def vae_gap_split(model: nn.Module, x: Tensor, *, search_points: int = 32, max_iter: int = 50,
                  gain_tol: float = 1e-10, mass_tol: float = 1e-4, **quadrature) -> GapSplit:
    """:class:`GapSplit` of a :class:`labcode.VAE` at the points ``x`` (B, D), with :math:`q^*` from three starts.

    1. **The rule.** :func:`labcode.exact.vae_quadrature` (cells that resolve the posterior and the
       encoder's :math:`q_\\phi`; ``quadrature`` passes its options, e.g. ``tol``) gives
       :math:`\\log p(x)`, the posterior's mean :math:`\\bar z`, covariance :math:`\\Sigma` and highest cell
       :math:`\\hat z` (the midpoint with the largest :math:`p(x, z)`), and :math:`\\mathrm{ELBO}(x; q_\\phi)`.
    2. **Three searches on a cheaper rule.** The ELBO over diagonal Gaussians can have several local
       maxima (a curved posterior, or one in several pieces), so Newton's method (:func:`best_gaussian`)
       starts at each of :data:`STARTS`: the encoder's :math:`q_\\phi`;
       :math:`\\mathcal N(\\bar z, \\operatorname{diag}(1/\\Lambda_{jj}))`, :math:`\\Lambda = \\Sigma^{-1}`, the best
       diagonal Gaussian if the posterior were :math:`\\mathcal N(\\bar z, \\Sigma)`; and
       :math:`\\mathcal N(\\hat z, \\operatorname{diag} \\sigma_\\phi^2)`. These run on a lattice per point of
       ``search_points``:math:`^d` equal cells on the box, axis by axis, that holds
       :math:`\\mu_\\phi \\pm 6\\sigma_\\phi` and :math:`\\bar z \\pm 4 \\sqrt{\\Sigma_{jj}}` (its cells stretch with the
       posterior, where the book's rule has square cells everywhere).
    3. **On the book's rule.** Newton's method continues from the first search's result, and from
       another's where that was better on the lattice by more than :data:`_CLEAR` nats; :math:`q^*` is the
       best result (an earlier start on a tie), or :math:`q_\\phi` itself if none beats it.

    So :math:`\\mathrm{ELBO}(x; q_\\phi) \\le \\mathrm{ELBO}(x; q^*)` on the rule for every point, and
    :math:`q^*` is a local maximum there (check :attr:`GaussianOptimum.decrement`).
    """
    check_positive_int("search_points", search_points)
    check_positive_int("max_iter", max_iter)
    check_positive_number("gain_tol", gain_tol)
    check_positive_number("mass_tol", mass_tol)
    options = dict(max_iter=max_iter, gain_tol=gain_tol, mass_tol=mass_tol)
    quad, mu, logvar = vae_quadrature(model, x, resolve_q=True, **quadrature)
    post_mean, post_cov = quad.posterior_moments()
    peak = torch.full_like(quad.log_evidence, -math.inf).scatter_reduce(0, quad.point, quad.log_joint, reduce="amax")
    highest = (quad.log_joint == peak[quad.point]).nonzero().squeeze(1)
    mode = torch.zeros_like(mu)
    mode[quad.point[highest]] = quad.nodes[highest]
    starts = [(mu, logvar), (post_mean, -torch.log(torch.linalg.inv(post_cov).diagonal(dim1=1, dim2=2))), (mode, logvar)]
    # 2. the searches on per-point lattices
    post_sd, q_sd = post_cov.diagonal(dim1=1, dim2=2).sqrt(), torch.exp(0.5 * logvar)
    low = torch.minimum(mu - 6 * q_sd, post_mean - 4 * post_sd)
    high = torch.maximum(mu + 6 * q_sd, post_mean + 4 * post_sd)
    box = _box_cells(model, x.to(quad.nodes), model.noise_std.detach().to(quad.nodes), low, high, search_points)
    rough = {**options, "gain_tol": max(gain_tol, _SEARCH_GAIN)}           # the lattice only has to find the hill
    searched = [_newton(box, m, v, **rough) for m, v in starts]
    # 3. on the book's rule
    cells = _Cells.of(quad)
    value, mass = cells.value(mu, logvar)                                    # the encoder, evaluated
    encoder = GaussianOptimum(mean=mu, logvar=logvar, elbo=value, start_elbo=value, iterations=0, q_mass=mass,
                              decrement=torch.full_like(value, math.inf))
    best = first = _newton(cells, searched[0].mean, searched[0].logvar, **options)
    start = torch.zeros(quad.n_points, dtype=torch.long, device=mu.device)
    for i, found in enumerate(searched[1:], start=1):
        promising = found.elbo > searched[0].elbo + _CLEAR
        if promising.any():
            other = _newton(cells, found.mean, found.logvar, only=promising, **options)
            wins = other.elbo > best.elbo + _CLEAR
            best, start = _pick(wins, other, best), torch.where(wins, i, start)
    below = encoder.elbo > best.elbo                                          # no search beats q_phi
    return GapSplit(log_evidence=quad.log_evidence, encoder_elbo=encoder.elbo, best=_pick(below, encoder, best),
                    start=torch.where(below, 0, start), encoder_start_elbo=torch.maximum(first.elbo, encoder.elbo),
                    error_estimate=quad.error_estimate, cells=cells)


def vae_gaussian_terms(model: nn.Module, x: Tensor, mean: Tensor, logvar: Tensor, *,
                       dtype: torch.dtype = torch.float64, **quadrature) -> ExactTerms:
    """:func:`labcode.exact.exact_terms` of a :class:`labcode.VAE` for given Gaussians, on a rule that resolves them.

    Like :func:`labcode.exact.vae_exact_terms`, but the rule of
    :func:`labcode.quadrature.latent_quadrature` is guided by :math:`\\mathcal N(m, \\operatorname{diag} e^{\\ell})`
    (``mean``, ``logvar``: (B, d)) instead of the encoder's output: an independent check of
    :math:`\\mathrm{ELBO}(x; q^*)` computed on cells that were built for :math:`q_\\phi`.
    """
    check_matrix("x", x, model.data_dim)
    check_encoder_outputs(mean, logvar, x.shape[0], model.latent_dim)
    device = model.decoder_logvar.device
    x, mean, logvar = (t.to(device=device, dtype=dtype) for t in (x, mean, logvar))
    quad = latent_quadrature(model, x, model.noise_std.detach().to(dtype), latent_dim=model.latent_dim,
                             q_mean=mean, q_logvar=logvar, **quadrature)
    return exact_terms(quad, mean, logvar)


def gauss_hermite_elbo(model: nn.Module, x: Tensor, mean: Tensor, logvar: Tensor, *, points_per_axis: int = 20) -> Tensor:
    """:math:`\\mathrm{ELBO}(x; q)` of a :class:`labcode.VAE` for :math:`q = \\mathcal N(m, \\operatorname{diag} e^{\\ell})`
    by the tensor-product Gauss–Hermite rule (the alternative the chapter measures against the book's rule).

    With the :math:`n` Gauss–Hermite nodes :math:`t_a` and weights :math:`w_a` (for the weight :math:`e^{-t^2}`),

    .. math:: \\mathbb E_q[\\log p(x \\mid z)] \\approx \\pi^{-d/2} \\sum_{a_1, \\dots, a_d} w_{a_1} \\cdots w_{a_d}\\,
              \\log p\\big(x \\mid m + s \\odot \\sqrt2\\, (t_{a_1}, \\dots, t_{a_d})\\big), \\qquad s = e^{\\ell/2},

    minus the prior KL in closed form. The rule is exact when :math:`\\log p(x \\mid z)` is a polynomial
    of degree below :math:`2n` in each coordinate (a linear decoder gives degree 2), and converges slowly
    where it is not smooth: a ReLU decoder's :math:`\\log p(x \\mid z)` has kinks.

    Args:
        model: the VAE (its decoder and :math:`\\sigma_x`).
        x: (B, D) points; mean, logvar: (B, d).
        points_per_axis: :math:`n > 0`.

    Returns:
        (B,) ELBO values in the dtype of ``mean``.
    """
    check_matrix("x", x, model.data_dim)
    check_encoder_outputs(mean, logvar, x.shape[0], model.latent_dim)
    check_positive_int("points_per_axis", points_per_axis)
    nodes, weights = np.polynomial.hermite.hermgauss(points_per_axis)
    dtype, device = mean.dtype, model.decoder_logvar.device
    t = torch.tensor(nodes, dtype=dtype, device=device) * math.sqrt(2.0)
    w = torch.tensor(weights, dtype=dtype, device=device) / math.sqrt(math.pi)
    d = mean.shape[1]
    grid = torch.cartesian_prod(*[t] * d).reshape(-1, d)                     # (n^d, d)
    grid_weight = torch.cartesian_prod(*[w] * d).reshape(-1, d).prod(dim=1)  # (n^d,)
    mean, logvar, x = mean.to(device), logvar.to(device), x.to(device=device, dtype=dtype)
    z = mean[:, None, :] + torch.exp(0.5 * logvar)[:, None, :] * grid[None]
    decoded = decode_in_chunks(model, z.reshape(-1, d)).reshape(*z.shape[:2], -1)
    log_lik = gaussian_log_density(x[:, None, :], decoded, model.noise_std.detach().to(dtype))
    return (log_lik * grid_weight).sum(dim=1) - standard_normal_kl_unchecked(mean, logvar)


@torch.enable_grad()
def _train_encoder(model: VAE, data: Tensor, steps: int, lr: float, generator: torch.Generator) -> list[float]:
    """Adam with a cosine-decayed learning rate on the encoder's parameters only; returns the one-sample ELBO
    (the batch mean, before each step's update) per step."""
    params = list(model.encoder.parameters())
    optimiser = torch.optim.Adam(params, lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=steps)
    history = torch.empty(steps, device=data.device)
    for step in range(steps):
        mu, logvar = model.encoder(data).chunk(2, dim=-1)
        eps = randn(tuple(mu.shape), generator=generator, device=mu.device, dtype=mu.dtype)
        elbo = elbo_terms(data, mu, logvar, eps, model.decoder, model.decoder_logvar)["elbo"].mean()
        optimiser.zero_grad(set_to_none=True)
        (-elbo).backward()
        optimiser.step()
        schedule.step()
        history[step] = elbo.detach()
    return history.cpu().tolist()


def retrain_encoder(model: VAE, data: Tensor, hidden: int, *, steps: int, lr: float = 1e-2, seed: int = 0,
                    device: torch.device | str | None = None) -> tuple[VAE, list[float]]:
    """A new encoder of width ``hidden`` for the frozen decoder of ``model``: the fixed-decoder experiment.

    The decoder :math:`f_\\theta` and :math:`\\sigma_x` are copied from ``model`` and not trained; a fresh
    one-hidden-layer ReLU encoder :math:`\\phi` of width ``hidden`` (initialised from ``seed``) maximises

    .. math:: \\frac1N \\sum_i \\big[\\log p_\\theta(x_i \\mid \\mu_\\phi(x_i) + \\sigma_\\phi(x_i) \\odot \\varepsilon_i)
              - \\mathrm{KL}(q_\\phi(\\cdot \\mid x_i) \\,\\|\\, p(z))\\big],

    one reparameterised sample per point and step (noise from ``seed + 1``), by full-batch Adam with a
    cosine-decayed learning rate over ``steps`` steps, as :func:`labcode.vae.train_vae` trains the whole VAE.
    With :math:`\\theta` fixed, :math:`\\log p_\\theta(x)` and the best Gaussians :math:`q^*` do not change
    (item 4 of the chapter's theorem), so every change of the gap is the encoder's.

    The result goes through :func:`labcode.store.cached_training` (keyed by the decoder's parameters,
    the data, the settings and this module's source).

    Args:
        model: a :class:`labcode.VAE`; its decoder and ``decoder_logvar`` are used, never changed.
        data: (N, D) training points.
        hidden: the new encoder's width (> 0).
        steps: optimiser steps (> 0); lr: peak learning rate (> 0); seed: initialisation and noise.
        device: where to train (default: ``model``'s device).

    Returns:
        (the VAE with the new encoder and a copy of ``model``'s decoder, in eval mode, the per-step
        one-sample ELBO of training as a list).
    """
    if not isinstance(model, VAE):
        raise TypeError(f"model must be a labcode.VAE, got {type(model).__name__}")
    check_matrix("data", data, model.data_dim)
    check_finite("data", data)
    check_positive_int("hidden", hidden)
    check_positive_int("steps", steps)
    check_positive_number("lr", lr)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    device = torch.device(device) if device is not None else model.decoder_logvar.device

    def build() -> VAE:
        new = VAE(model.data_dim, model.latent_dim, hidden, generator=torch.Generator().manual_seed(seed))
        new.decoder = copy.deepcopy(model.decoder)
        new.decoder_logvar = nn.Parameter(model.decoder_logvar.detach().clone())
        new = new.to(device)
        for p in (*new.decoder.parameters(), new.decoder_logvar):
            p.requires_grad_(False)
        return new

    def train() -> dict:
        new = build()
        history = _train_encoder(new, data.to(device), steps, lr, torch.Generator().manual_seed(seed + 1))
        return {"encoder": {k: v.detach().cpu() for k, v in new.encoder.state_dict().items()}, "history": history}

    decoder = torch.cat([p.detach().flatten().cpu().double() for p in (*model.decoder.parameters(), model.decoder_logvar)])
    config = {"hidden": hidden, "steps": steps, "lr": float(lr), "seed": seed, "decoder": tensor_fingerprint(decoder),
              "code": code_fingerprint(("amortization.py",))}
    payload = cached_training("fixed_decoder_encoder", config, data, device, train)
    new = build()
    new.encoder.load_state_dict(payload["encoder"])
    return new.eval(), payload["history"]
