"""Exact posteriors, exact ELBO gaps and better estimators in a two-dimensional latent space.

Chapters "Beyond the lab: exact posteriors and better estimators", "Mode-covering and
mode-seeking in two dimensions" and "The rate–distortion view".

With :math:`d = 2` latent dimensions the evidence
:math:`p(x) = \\int p(x \\mid z)\\, p(z)\\, dz` is a two-dimensional integral,
and a quadrature rule computes it to any accuracy we are willing to pay for.
This module does so with a *locally refined midpoint rule*: a coarse lattice
on the box :math:`[-a, a]^d` locates the mass, every cell that holds more
than a negligible part of it is split, level by level, so that the mass sits
on one fine uniform lattice, and the refinement stops when one more level no
longer changes the result. The box leaves out a part of the integral that is
bounded in closed form (:func:`tail_bound`).

On the same cells it computes everything the VAE only bounds or estimates:
the posterior density :math:`p(z \\mid x) = p(x, z)/p(x)`, the ELBO
:math:`\\mathbb E_q[\\log p(x \\mid z)] - \\mathrm{KL}(q \\,\\|\\, p(z))`, the gap
:math:`\\mathrm{KL}(q(z\\mid x) \\,\\|\\, p(z \\mid x))` and the second moment
:math:`C = \\int \\pi^2 / g` that decides the effective sample size of an
importance sampler with proposal :math:`g`. It also holds the importance
sampler with the encoder as proposal (the IWAE bound), Gaussian fits to a
two-dimensional target by either direction of KL, and the prior-matching term
of a diffusion model as a function of its schedule.

Low-level tools come from :mod:`labcode.estimators` (``latent_grid``,
``grid_log_joint``, ``repeated_estimates``) and :mod:`labcode.likelihood`
(``gaussian_log_density``, ``effective_sample_size``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from ._checks import (
    as_tensor,
    check_finite,
    check_matrix,
    check_positive_int,
    check_same_shape,
    positive_scalar,
    randn,
)
from .diffusion import alpha_bar_schedule, linear_beta_schedule, prior_matching_kl
from .estimators import grid_log_joint, latent_grid, repeated_estimates
from .kl import standard_normal_kl
from .likelihood import Decoder, gaussian_log_density

#: rows decoded at once (bounds the memory of the hidden activations)
_DECODE_ROWS = 1 << 18
#: entries of the (rows, nodes, data_dim) difference tensor of the coarse lattice held at once
_CHUNK_ELEMENTS = 1 << 22
#: cells holding less than this fraction of both densities are dropped from the result
_PRUNE = 1e-30

#: the default box half-width, and how many of q's standard deviations around its mean the box holds at least
DEFAULT_HALF_WIDTH = 7.0
Q_BOX_SDS = 8.0

Direction = Literal["forward", "reverse"]


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------

def _noise_std(noise_std: Tensor | float, like: Tensor) -> Tensor:
    """The checked noise level as a 0-dim tensor in the dtype and on the device of ``like``."""
    return positive_scalar("noise_std", noise_std, like)


def _log_scale(log_evidence: Tensor) -> Tensor:
    """:math:`\\max(1, |\\log p(x)|)`: how much a missing part of q's mass moves the identity, per unit of mass."""
    return log_evidence.abs().clamp(min=1.0)


def _check_direction(direction: str) -> None:
    if direction not in ("forward", "reverse"):
        raise ValueError(f"direction must be 'forward' or 'reverse', got {direction!r}")


def _param_dtype(decoder: Decoder) -> torch.dtype | None:
    if isinstance(decoder, nn.Module):
        for p in decoder.parameters():
            return p.dtype
    return None


def _decode(decoder: Decoder, z: Tensor) -> Tensor:
    """Decode (n, d) rows in chunks, in the decoder's own dtype; the result comes back in ``z``'s dtype."""
    dtype = _param_dtype(decoder) or z.dtype
    with torch.no_grad():
        parts = [decoder(z[s:s + _DECODE_ROWS].to(dtype)).to(z.dtype) for s in range(0, z.shape[0], _DECODE_ROWS)]
    return torch.cat(parts) if parts else z.new_zeros(0, 0)


def _scatter_logsumexp(values: Tensor, index: Tensor, size: int) -> Tensor:
    """:math:`\\log \\sum_{k: \\text{index}_k = i} e^{v_k}` for each ``i < size`` (``-inf`` for empty groups)."""
    peak = torch.full((size,), -math.inf, dtype=values.dtype, device=values.device)
    peak = peak.scatter_reduce(0, index, values, reduce="amax")
    shift = torch.where(torch.isfinite(peak), peak, torch.zeros_like(peak))
    total = torch.zeros(size, dtype=values.dtype, device=values.device).index_add_(0, index, torch.exp(values - shift[index]))
    return torch.log(total) + shift


def _diag_gaussian_log_prob(z: Tensor, mean: Tensor, logvar: Tensor) -> Tensor:
    """:math:`\\log \\mathcal N(z;\\ m, \\operatorname{diag} e^{\\texttt{logvar}})`, summed over the last dim."""
    return -0.5 * (((z - mean) ** 2) * torch.exp(-logvar) + logvar + math.log(2 * math.pi)).sum(dim=-1)


def _neighbour_max(values: Tensor) -> Tensor:
    """Maximum over each node and its 3^d - 1 lattice neighbours, for a (B, G, ..., G) array."""
    out = values
    for axis in range(1, values.dim()):
        padded = torch.nn.functional.pad(out.movedim(axis, -1), (1, 1)).movedim(-1, axis)
        n = values.shape[axis]
        out = torch.maximum(torch.maximum(padded.narrow(axis, 0, n), padded.narrow(axis, 2, n)), out)
    return out


def _children_offsets(refine: int, dim: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """Midpoints of the refine**dim sub-cells of the unit cell centred at 0, as (refine**dim, dim)."""
    axis = (torch.arange(refine, dtype=dtype, device=device) + 0.5) / refine - 0.5
    return torch.cartesian_prod(*[axis] * dim).reshape(-1, dim)


def tail_bound(half_width: float, noise_std: float, data_dim: int, latent_dim: int = 2) -> float:
    """Upper bound on :math:`\\int_{z \\notin [-a, a]^d} p(x, z)\\, dz`, the part of the evidence outside the box.

    Since :math:`p(x \\mid z) = \\mathcal N(x;\\ f(z), \\sigma^2 I_D) \\le (2\\pi\\sigma^2)^{-D/2}` for every :math:`z`,

    .. math:: \\int_{z \\notin B} p(x \\mid z)\\, p(z)\\, dz \\le (2\\pi\\sigma^2)^{-D/2}\\, P(Z \\notin B)
              = (2\\pi\\sigma^2)^{-D/2} \\Big(1 - \\big(1 - \\operatorname{erfc}(a/\\sqrt 2)\\big)^d\\Big),

    whatever the decoder :math:`f`. Divided by :math:`p(x)` it bounds the relative
    mass the box misses.

    Returns:
        the natural logarithm of the bound (a float).
    """
    if not (isinstance(half_width, (int, float)) and math.isfinite(half_width) and half_width > 0):
        raise ValueError(f"half_width must be a finite number > 0, got {half_width}")
    if not (isinstance(noise_std, (int, float)) and math.isfinite(noise_std) and noise_std > 0):
        raise ValueError(f"noise_std must be a finite number > 0, got {noise_std}")
    check_positive_int("data_dim", data_dim)
    check_positive_int("latent_dim", latent_dim)
    outside_one = torch.special.erfc(torch.tensor(half_width / math.sqrt(2), dtype=torch.float64))
    log_outside = torch.log(-torch.expm1(latent_dim * torch.log1p(-outside_one))).item()
    return -0.5 * data_dim * math.log(2 * math.pi * noise_std ** 2) + log_outside


# --------------------------------------------------------------------------------------------
# Adaptive quadrature of the evidence
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LatentQuadrature:
    """The cells of an adaptive composite midpoint rule for :math:`B` data points, flattened.

    Cell :math:`k` belongs to data point ``point[k]``, has midpoint ``nodes[k]``
    and volume :math:`\\Delta_k`; the rule is
    :math:`\\int g(z)\\, dz \\approx \\sum_k \\Delta_k\\, g(z_k)` over the cells of
    one point. Shapes: ``n`` cells in all, ``B`` points, latent size ``d``.
    """

    point: Tensor           #: (n,) int64, the row of x each cell belongs to
    nodes: Tensor           #: (n, d) cell midpoints :math:`z_k`
    log_volume: Tensor      #: (n,) :math:`\\log \\Delta_k`
    log_joint: Tensor       #: (n,) :math:`\\log p(x, z_k)`
    log_evidence: Tensor    #: (B,) :math:`\\log p(x) \\approx \\log \\sum_k \\Delta_k\\, p(x, z_k)`
    error_estimate: Tensor  #: (B,) change of log p(x) (or of the mass of q) made by the last refinement
    log_tail_bound: Tensor  #: (B,) log of :func:`tail_bound` / :math:`p(x)`: relative mass outside the box
    half_width: float       #: :math:`a`, the box is :math:`[-a, a]^d`
    levels: int             #: refinement levels used (0 = the coarse lattice only)

    @property
    def n_points(self) -> int:
        return self.log_evidence.shape[0]

    @property
    def log_posterior(self) -> Tensor:
        """(n,) :math:`\\log p(z_k \\mid x) = \\log p(x, z_k) - \\log p(x)`: the posterior density at the cells."""
        return self.log_joint - self.log_evidence[self.point]

    def posterior_moments(self) -> tuple[Tensor, Tensor]:
        """Posterior mean (B, d) and covariance (B, d, d), :math:`\\sum_k \\Delta_k\\, p(z_k \\mid x)\\, z_k` and so on."""
        weights = torch.exp(self.log_posterior + self.log_volume)
        z = self.nodes
        d = z.shape[1]
        mean = torch.zeros(self.n_points, d, dtype=z.dtype, device=z.device).index_add_(0, self.point, weights[:, None] * z)
        centred = z - mean[self.point]
        outer = weights[:, None, None] * centred[:, :, None] * centred[:, None, :]
        cov = torch.zeros(self.n_points, d, d, dtype=z.dtype, device=z.device).index_add_(0, self.point, outer)
        return mean, cov

    def integrate(self, log_density: Tensor, values: Tensor | None = None) -> Tensor:
        """:math:`\\sum_k \\Delta_k\\, e^{\\log \\rho(z_k)}\\, v_k` for each point: the rule applied to :math:`\\rho\\, v`.

        Args:
            log_density: (n,) :math:`\\log \\rho` at the cells (e.g. :attr:`log_posterior`).
            values: (n,) :math:`v` at the cells; ``None`` means 1 (the mass of :math:`\\rho`).

        Returns:
            (B,) integrals.
        """
        if log_density.shape != self.log_joint.shape:
            raise ValueError(f"log_density must have shape {tuple(self.log_joint.shape)}, got {tuple(log_density.shape)}")
        weights = torch.exp(log_density + self.log_volume)
        if values is not None:
            if values.shape != weights.shape:
                raise ValueError(f"values must have shape {tuple(weights.shape)}, got {tuple(values.shape)}")
            weights = weights * values
        return torch.zeros(self.n_points, dtype=weights.dtype, device=weights.device).index_add_(0, self.point, weights)


def _check_encoder_args(q_mean: Tensor | None, q_logvar: Tensor | None, batch: int, dim: int) -> None:
    if (q_mean is None) != (q_logvar is None):
        raise ValueError("q_mean and q_logvar must be given together")
    if q_mean is not None:
        check_same_shape("q_mean", q_mean, "q_logvar", q_logvar)
        if q_mean.shape != (batch, dim):
            raise ValueError(f"q_mean must have shape ({batch}, {dim}), got {tuple(q_mean.shape)}")
        check_finite("q_mean", q_mean)
        check_finite("q_logvar", q_logvar)


@torch.no_grad()
def latent_quadrature(decoder: Decoder, x: Tensor, noise_std: Tensor | float, *, latent_dim: int = 2,
                      q_mean: Tensor | None = None, q_logvar: Tensor | None = None, half_width: float | None = None,
                      points_per_axis: int = 70, refine: int = 3, mass_threshold: float = 1e-10,
                      tol: float = 1e-4, max_levels: int = 6, resolve_q: bool = True) -> LatentQuadrature:
    """Locally refined midpoint rule for :math:`p(x) = \\int_{[-a,a]^d} p(x \\mid z)\\, p(z)\\, dz`, batched over points.

    The rule integrates, for each data point, the density
    :math:`m(z) = \\tfrac12\\big(p(z \\mid x) + q(z \\mid x)\\big)` (just
    :math:`p(z \\mid x)` without an encoder), so that its cells resolve both the
    posterior and :math:`q`; the evidence is then read off the same cells.

    1. **Coarse lattice.** :math:`G^d` equal cells of side :math:`h_0 = 2a/G`
       (:func:`labcode.estimators.latent_grid`), the joint at their midpoints
       by :func:`labcode.estimators.grid_log_joint`. It locates the mass.
    2. **Refinement where the mass is.** Every cell that holds more than
       ``mass_threshold`` of :math:`m` is split into ``refine``:math:`^d`
       equal sub-cells, so the cells holding all but a negligible part of the
       mass form one fine uniform lattice, and the change of cell size happens
       only where the integrand is negligible. Cells that :math:`q`'s
       6-standard-deviation box meets are split too while :math:`q` is
       narrower than the cell, so a sharp :math:`q` (and a posterior near it)
       is found even between coarse nodes.
    3. **Convergence.** A point is finished when one more level changes
       :math:`\\log p(x)` by less than ``tol`` and :math:`\\int q` is within
       ``tol`` :math:`/ \\max(1, |\\log p(x)|)` of 1 (on the coarse lattice:
       when the lattice of every second node agrees to these tolerances). The
       scale matters because a missing part :math:`\\epsilon` of :math:`q`'s
       mass moves the identity :math:`\\mathrm{ELBO} + \\mathrm{KL}(q \\,\\|\\, p(z \\mid x)) = \\log p(x)`
       by :math:`\\epsilon \\log p(x)`. The last change is returned as
       :attr:`LatentQuadrature.error_estimate`. Once the cells resolve the
       integrand, each level divides the error by about ``refine``:math:`^2`
       (or much more for a smooth integrand), so the finer rule's error is
       well below that change.

    Nothing outside :math:`[-a, a]^d` is integrated; :func:`tail_bound` bounds
    that part. Without ``half_width`` the box is chosen so that it holds both
    densities to the tolerance: it contains :math:`q`'s box of
    :data:`Q_BOX_SDS` standard deviations around its mean for every point (and
    :math:`[-7, 7]^d`), and when the tail bound relative to the computed
    :math:`p(x)` exceeds ``tol`` for some point, the rule is run again on the
    box that makes the bound smaller than ``tol``. A posterior mode narrower
    than :math:`h_0` that lies away from :math:`q` can be missed by any grid:
    choose :math:`h_0` accordingly.

    Args:
        decoder: :math:`f`, maps (n, d) to (n, D) (an ``nn.Module`` is run in its own dtype).
        x: (B, D) points; the rule works in ``x``'s dtype (float64 recommended).
        noise_std: :math:`\\sigma > 0`.
        latent_dim: :math:`d`.
        q_mean, q_logvar: optional (B, d) means and log-variances of :math:`q(z \\mid x)`.
        half_width: :math:`a > 0`; ``None`` (the default) chooses it as described above.
        points_per_axis: :math:`G >= 2`.
        refine: sub-cells per axis of a split cell (>= 2).
        mass_threshold: cells above this fraction of :math:`m` are split (in (0, 1)).
        tol: convergence tolerance on :math:`\\log p(x)` and :math:`\\int q` (> 0).
        max_levels: maximal number of refinement levels (>= 0).

    Returns:
        a :class:`LatentQuadrature` on ``x``'s device and dtype.
    """
    check_matrix("x", x)
    check_finite("x", x)
    check_positive_int("latent_dim", latent_dim)
    if half_width is not None and not (isinstance(half_width, (int, float)) and math.isfinite(half_width) and half_width > 0):
        raise ValueError(f"half_width must be a finite number > 0, got {half_width}")
    check_positive_int("points_per_axis", points_per_axis)
    if points_per_axis < 2:
        raise ValueError(f"points_per_axis must be >= 2, got {points_per_axis}")
    if not (isinstance(refine, int) and refine >= 2):
        raise ValueError(f"refine must be an int >= 2, got {refine}")
    if not (isinstance(max_levels, int) and max_levels >= 0):
        raise ValueError(f"max_levels must be an int >= 0, got {max_levels}")
    if not 0 < mass_threshold < 1:
        raise ValueError(f"mass_threshold must be in (0, 1), got {mass_threshold}")
    if not tol > 0:
        raise ValueError(f"tol must be > 0, got {tol}")
    batch, data_dim = x.shape
    _check_encoder_args(q_mean, q_logvar, batch, latent_dim)
    sigma = _noise_std(noise_std, x)
    options = dict(latent_dim=latent_dim, q_mean=q_mean, q_logvar=q_logvar, points_per_axis=points_per_axis,
                   refine=refine, mass_threshold=mass_threshold, tol=tol, max_levels=max_levels, resolve_q=resolve_q)
    if half_width is not None:
        return _latent_quadrature(decoder, x, sigma, half_width=float(half_width), **options)
    box = DEFAULT_HALF_WIDTH
    if q_mean is not None:
        reach = q_mean.abs() + Q_BOX_SDS * torch.exp(0.5 * q_logvar)
        box = max(box, reach.max().item())
    quad = _latent_quadrature(decoder, x, sigma, half_width=box, **options)
    if quad.log_tail_bound.max().item() > math.log(tol):
        needed = half_width_for_tail(quad.log_evidence.min().item() + math.log(tol), float(sigma), data_dim, latent_dim)
        quad = _latent_quadrature(decoder, x, sigma, half_width=max(needed, box), **options)
    return quad


def half_width_for_tail(log_mass: float, noise_std: float, data_dim: int, latent_dim: int = 2) -> float:
    """The smallest box half-width :math:`a` (to 1 %) whose :func:`tail_bound` is at most ``exp(log_mass)``."""
    low, high = 1.0, 2.0
    while tail_bound(high, noise_std, data_dim, latent_dim) > log_mass:
        low, high = high, 2 * high
        if high > 1e3:
            raise ValueError(f"no box below 1000 bounds the tail by exp({log_mass})")
    while high - low > 0.01 * low:
        mid = 0.5 * (low + high)
        low, high = (mid, high) if tail_bound(mid, noise_std, data_dim, latent_dim) > log_mass else (low, mid)
    return high


def _latent_quadrature(decoder: Decoder, x: Tensor, sigma: Tensor, *, latent_dim: int, q_mean: Tensor | None,
                       q_logvar: Tensor | None, half_width: float, points_per_axis: int, refine: int,
                       mass_threshold: float, tol: float, max_levels: int, resolve_q: bool) -> LatentQuadrature:
    """The rule of :func:`latent_quadrature` on the box of half-width ``half_width`` (arguments already checked)."""
    batch, data_dim = x.shape
    d = latent_dim
    log_tail = tail_bound(half_width, float(sigma), data_dim, d)
    dtype, device = x.dtype, x.device
    use_q = q_mean is not None
    if use_q:
        q_mean, q_logvar = q_mean.to(device, dtype), q_logvar.to(device, dtype)
        q_std = torch.exp(0.5 * q_logvar)
        q_width = q_std.min(dim=1).values                                   # (B,) narrowest direction of q

    def covered_by_q(point: Tensor, z: Tensor, h: float) -> Tensor:
        """Cells of side h that meet q's 6-sd box while q is narrower than h."""
        if not use_q:
            return torch.zeros(point.shape, dtype=torch.bool, device=device)
        reach = 6 * q_std[point] + h / 2
        return ((z - q_mean[point]).abs() <= reach).all(dim=-1) & (q_width[point] < h)

    def mixture_mass(log_joint: Tensor, log_q: Tensor | None, log_volume: float, log_evidence: Tensor) -> Tensor:
        log_m = log_joint - log_evidence
        if log_q is not None:
            log_m = torch.logaddexp(log_m, log_q) - math.log(2.0)
        return torch.exp(log_m + log_volume)

    # 1. the coarse lattice, shared by all points; dense (B, G^d) arrays
    nodes0, volume0 = latent_grid(half_width, points_per_axis, d, dtype=dtype, device=device)
    rows = max(1, _CHUNK_ELEMENTS // (nodes0.shape[0] * data_dim))

    def wrapped(z: Tensor) -> Tensor:
        return _decode(decoder, z)

    log_joint0 = torch.cat([grid_log_joint(wrapped, x[s:s + rows], nodes0, sigma) for s in range(0, batch, rows)])
    log_q0 = _diag_gaussian_log_prob(nodes0[None], q_mean[:, None], q_logvar[:, None]) if use_q and resolve_q else None
    log_volume = math.log(volume0)
    lattice = (batch, *[points_per_axis] * d)

    def lattice_summary(log_joint: Tensor, log_q: Tensor | None, log_volume: float) -> tuple[Tensor, Tensor]:
        log_evidence = torch.logsumexp(log_joint.reshape(batch, -1), dim=1) + log_volume
        q_mass = (torch.exp(log_q + log_volume).reshape(batch, -1).sum(dim=1) if log_q is not None
                  else torch.ones(batch, dtype=dtype, device=device))
        return log_evidence, q_mass

    log_evidence, q_mass = lattice_summary(log_joint0, log_q0, log_volume)
    # the lattice of every second node per axis (cells 2^d times larger): the same rule at half the resolution
    every_second = (slice(None),) + (slice(None, None, 2),) * d
    coarser = lattice_summary(log_joint0.reshape(lattice)[every_second],
                              None if log_q0 is None else log_q0.reshape(lattice)[every_second],
                              log_volume + d * math.log(2.0))
    change = (log_evidence - coarser[0]).abs()
    if resolve_q:
        change = torch.maximum(change, (q_mass - coarser[1]).abs() * _log_scale(log_evidence))
    h = 2 * half_width / points_per_axis
    point = torch.arange(batch, device=device)[:, None].expand(-1, nodes0.shape[0])
    z = nodes0[None].expand(batch, -1, -1)
    log_joint, log_q = log_joint0, log_q0
    offsets = _children_offsets(refine, d, dtype, device)
    n_children = offsets.shape[0]
    zeros = torch.zeros(batch, dtype=dtype, device=device)
    done_log_evidence = torch.full((batch,), -math.inf, dtype=dtype, device=device)
    done_q_mass = zeros.clone()
    cells: dict[str, list[Tensor]] = {"point": [], "z": [], "log_joint": [], "log_volume": []}
    levels = 0
    while True:
        unresolved_q = (q_width < h) if use_q else torch.zeros(batch, dtype=torch.bool, device=device)
        open_points = change > tol
        if resolve_q:
            open_points |= ((q_mass - 1).abs() * _log_scale(log_evidence) > tol) | unresolved_q
        mass = mixture_mass(log_joint, log_q, log_volume, log_evidence[point])
        if levels < max_levels and open_points.any():
            proxy = _neighbour_max(mass.reshape(lattice)).reshape(batch, -1) if levels == 0 else mass
            split = open_points[point] & (proxy > mass_threshold)
            if unresolved_q.any():
                split |= covered_by_q(point, z, h)
        else:
            split = torch.zeros_like(point, dtype=torch.bool)
        keep = ~split
        kept_point, kept_log_joint = point[keep], log_joint[keep]
        done_log_evidence = torch.logaddexp(done_log_evidence,
                                            _scatter_logsumexp(kept_log_joint + log_volume, kept_point, batch))
        if log_q is not None:
            done_q_mass = done_q_mass.index_add(0, kept_point, torch.exp(log_q[keep] + log_volume))
        # record the kept cells, without those that carry no mass of either density (< 1e-30 each)
        record = keep & (mass >= _PRUNE)
        cells["point"].append(point[record])
        cells["z"].append(z[record])
        cells["log_joint"].append(log_joint[record])
        cells["log_volume"].append(torch.full((int(record.sum()),), log_volume, dtype=dtype, device=device))
        if not split.any():
            break
        # 2. one more level: every split cell becomes refine**d sub-cells (batched over all split cells)
        levels += 1
        parent_point, parent_z = point[split], z[split]
        point = parent_point.repeat_interleave(n_children)
        z = (parent_z[:, None, :] + h * offsets[None]).reshape(-1, d)
        h, log_volume = h / refine, log_volume - d * math.log(refine)
        log_joint = gaussian_log_density(x[point], _decode(decoder, z), sigma) + gaussian_log_density(z, torch.zeros_like(z), 1.0)
        log_q = _diag_gaussian_log_prob(z, q_mean[point], q_logvar[point]) if use_q and resolve_q else None
        # 3. the estimate with this level against the one without it
        new_log_evidence = torch.logaddexp(done_log_evidence, _scatter_logsumexp(log_joint + log_volume, point, batch))
        new_q_mass = done_q_mass.index_add(0, point, torch.exp(log_q + log_volume)) if log_q is not None else q_mass
        refined = torch.zeros(batch, dtype=torch.bool, device=device)
        refined[parent_point] = True
        step = (new_log_evidence - log_evidence).abs()
        if resolve_q:
            step = torch.maximum(step, (new_q_mass - q_mass).abs() * _log_scale(new_log_evidence))
        change = torch.where(refined, step, change)
        log_evidence, q_mass = new_log_evidence, new_q_mass

    point, nodes, log_joint, log_volume = (torch.cat(cells[key]) for key in ("point", "z", "log_joint", "log_volume"))
    return LatentQuadrature(point=point, nodes=nodes, log_volume=log_volume, log_joint=log_joint,
                            log_evidence=log_evidence, error_estimate=change,
                            log_tail_bound=log_tail - log_evidence, half_width=float(half_width), levels=levels)


# --------------------------------------------------------------------------------------------
# The ELBO, its gap and the second moments of importance weights, by quadrature
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ExactTerms:
    """Per-point exact quantities of a VAE, each (B,), by :func:`latent_quadrature`."""

    log_evidence: Tensor     #: :math:`\\log p(x)`
    reconstruction: Tensor   #: :math:`\\mathbb E_q[\\log p(x \\mid z)]`
    kl_prior: Tensor         #: :math:`\\mathrm{KL}(q(z \\mid x) \\,\\|\\, p(z))`, closed form
    elbo: Tensor             #: reconstruction − kl_prior
    kl_posterior: Tensor     #: :math:`\\mathrm{KL}(q(z \\mid x) \\,\\|\\, p(z \\mid x))`, the gap
    q_mass: Tensor           #: :math:`\\int q` by the rule (1 up to its error)
    error_estimate: Tensor   #: the rule's error estimate for :math:`\\log p(x)`
    log_tail_bound: Tensor   #: log of the bound (:func:`tail_bound`) on the relative mass outside the box

    @property
    def discrepancy(self) -> Tensor:
        """:math:`\\mathrm{ELBO} + \\mathrm{KL}(q \\,\\|\\, p(z \\mid x)) - \\log p(x)`, zero in exact arithmetic."""
        return self.elbo + self.kl_posterior - self.log_evidence


def encoder_log_density(quad: LatentQuadrature, q_mean: Tensor, q_logvar: Tensor) -> Tensor:
    """:math:`\\log q(z_k \\mid x)` at the cells of ``quad``: (n,), for (B, d) encoder outputs."""
    _check_encoder_args(q_mean, q_logvar, quad.n_points, quad.nodes.shape[1])
    q_mean, q_logvar = q_mean.to(quad.nodes), q_logvar.to(quad.nodes)
    return _diag_gaussian_log_prob(quad.nodes, q_mean[quad.point], q_logvar[quad.point])


def exact_terms(quad: LatentQuadrature, q_mean: Tensor, q_logvar: Tensor) -> ExactTerms:
    """The ELBO and its gap for :math:`q = \\mathcal N(\\mu, \\operatorname{diag} e^{\\texttt{logvar}})`, by the rule of ``quad``.

    .. math:: \\mathrm{ELBO} = \\underbrace{\\textstyle\\sum_k \\Delta_k\\, q(z_k)\\, \\log p(x \\mid z_k)}_{\\text{reconstruction}}
              - \\mathrm{KL}(q \\,\\|\\, p(z)),\\qquad
              \\mathrm{KL}(q \\,\\|\\, p(z \\mid x)) = \\textstyle\\sum_k \\Delta_k\\, q(z_k)\\,
              \\big[\\log q(z_k) - \\log p(z_k \\mid x)\\big],

    with the prior KL in closed form (:func:`labcode.standard_normal_kl`, as in
    training) and :math:`\\log p(z \\mid x) = \\log p(x, z) - \\log p(x)` from
    the rule. Build ``quad`` with the same ``q_mean, q_logvar`` so that its
    cells resolve :math:`q`.

    Args:
        quad: from :func:`latent_quadrature`.
        q_mean, q_logvar: (B, d) encoder outputs.

    Returns:
        an :class:`ExactTerms`.
    """
    log_q = encoder_log_density(quad, q_mean, q_logvar)
    log_prior = gaussian_log_density(quad.nodes, torch.zeros_like(quad.nodes), 1.0)
    reconstruction = quad.integrate(log_q, quad.log_joint - log_prior)
    kl_prior = standard_normal_kl(q_mean.to(quad.nodes), q_logvar.to(quad.nodes))
    kl_posterior = quad.integrate(log_q, log_q - quad.log_posterior)
    return ExactTerms(log_evidence=quad.log_evidence, reconstruction=reconstruction, kl_prior=kl_prior,
                      elbo=reconstruction - kl_prior, kl_posterior=kl_posterior, q_mass=quad.integrate(log_q),
                      error_estimate=quad.error_estimate, log_tail_bound=quad.log_tail_bound)


def vae_quadrature(model: nn.Module, x: Tensor, *, noise_scale: float = 1.0, resolve_q: bool = True,
                   dtype: torch.dtype = torch.float64, **quadrature) -> tuple[LatentQuadrature, Tensor, Tensor]:
    """:func:`latent_quadrature` for a :class:`labcode.VAE` at the points ``x`` (B, D), guided by its encoder.

    The decoder is the model's, with noise level ``noise_scale`` times its
    :math:`\\sigma_x` (1 for the trained model); the encoder's
    :math:`q(z \\mid x)` guides the refinement (with ``resolve_q`` the rule
    also resolves :math:`q`, as :func:`exact_terms` needs; without, :math:`q`
    only points at where to look). ``quadrature`` passes options to
    :func:`latent_quadrature`; the rule runs in ``dtype`` on the model's device.

    Returns:
        ``(quad, q_mean, q_logvar)``, the encoder outputs (B, d) in ``dtype``.
    """
    check_matrix("x", x, model.data_dim)
    if not (isinstance(noise_scale, (int, float)) and math.isfinite(noise_scale) and noise_scale > 0):
        raise ValueError(f"noise_scale must be a finite number > 0, got {noise_scale}")
    x = x.to(device=model.decoder_logvar.device)
    with torch.no_grad():
        mu, logvar = model.encode(x)
    x, mu, logvar = x.to(dtype), mu.to(dtype), logvar.to(dtype)
    noise_std = model.noise_std.detach().to(dtype) * noise_scale
    quad = latent_quadrature(model, x, noise_std, latent_dim=model.latent_dim, q_mean=mu, q_logvar=logvar,
                             resolve_q=resolve_q, **quadrature)
    return quad, mu, logvar


def vae_log_evidence(model: nn.Module, x: Tensor, *, half_width: float | None = None, **quadrature) -> LatentQuadrature:
    """:math:`\\log p(x)` of a :class:`labcode.VAE` by :func:`vae_quadrature`, the encoder only guiding the refinement.

    Without ``half_width`` the box is :math:`[-a, a]^d` with
    :math:`a = \\max(8, 1.5 \\max_{i,j} |\\mu_j(x_i)|)`, so that it holds the
    encoder's means with room to spare (a model trained without the KL term
    places them far out); check :attr:`LatentQuadrature.log_tail_bound`.

    Returns:
        the :class:`LatentQuadrature`; its ``log_evidence`` is (B,).
    """
    if half_width is None:
        with torch.no_grad():
            mu, _ = model.encode(x.to(device=model.decoder_logvar.device))
        half_width = max(8.0, 1.5 * mu.abs().max().item())
    quad, _, _ = vae_quadrature(model, x, resolve_q=False, half_width=half_width, **quadrature)
    return quad


def vae_exact_terms(model: nn.Module, x: Tensor, **quadrature) -> ExactTerms:
    """:func:`exact_terms` of a :class:`labcode.VAE` at the points ``x`` (B, D), by :func:`vae_quadrature`."""
    quad, mu, logvar = vae_quadrature(model, x, resolve_q=True, **quadrature)
    return exact_terms(quad, mu, logvar)


def exact_log_moment_ratio(quad: LatentQuadrature, log_proposal: Tensor) -> Tensor:
    """:math:`\\log C_g(x) = \\log \\int \\frac{p(z \\mid x)^2}{g(z)}\\, dz` by the rule of ``quad``.

    For importance sampling of :math:`p(x)` with proposal :math:`g` and weights
    :math:`w = p(x, z)/g(z)`, :math:`C_g = \\mathbb E_g[w^2]/p(x)^2 = 1 + \\chi^2(p(\\cdot\\mid x) \\,\\|\\, g)`
    and the effective sample size of :math:`K` weights tends to :math:`K / C_g`.
    :math:`r = p(z)` is the prior-sampling estimator of the chapter "The intractable likelihood".

    Args:
        quad: from :func:`latent_quadrature`.
        log_proposal: (n,) :math:`\\log g(z_k)` at its cells.

    Returns:
        (B,) values of :math:`\\log C_g`.
    """
    if log_proposal.shape != quad.log_joint.shape:
        raise ValueError(f"log_proposal must have shape {tuple(quad.log_joint.shape)}, got {tuple(log_proposal.shape)}")
    return _scatter_logsumexp(2 * quad.log_posterior - log_proposal + quad.log_volume, quad.point, quad.n_points)


def truncated_log_moment_ratio(log_posterior: Tensor, log_proposal: Tensor, nodes: Tensor, cell_volume: float,
                               half_widths: Sequence[float]) -> Tensor:
    """:math:`\\log \\int_{[-a, a]^d} p(z \\mid x)^2 / g(z)\\, dz` on a lattice, for growing boxes :math:`a`.

    A midpoint sum over the lattice nodes inside each box. When
    :math:`\\int p(z \\mid x)^2 / g = \\infty` (the proposal's tails are lighter
    than the posterior's), these values grow without bound with :math:`a`.

    Args:
        log_posterior: (B, n) :math:`\\log p(z_k \\mid x)` at the nodes (e.g. from :func:`posterior_on_grid`).
        log_proposal: (B, n) :math:`\\log g(z_k)`.
        nodes: (n, d) lattice nodes.
        cell_volume: the lattice's cell volume (> 0).
        half_widths: the box sizes :math:`a`.

    Returns:
        (B, len(half_widths)) log-integrals.
    """
    check_same_shape("log_posterior", log_posterior, "log_proposal", log_proposal)
    if log_posterior.dim() != 2 or log_posterior.shape[1] != nodes.shape[0]:
        raise ValueError(f"log_posterior must have shape (B, {nodes.shape[0]}), got {tuple(log_posterior.shape)}")
    if not cell_volume > 0:
        raise ValueError(f"cell_volume must be > 0, got {cell_volume}")
    integrand = 2 * log_posterior - log_proposal + math.log(cell_volume)
    radius = nodes.abs().max(dim=1).values
    return torch.stack([torch.logsumexp(integrand.masked_fill(radius[None] > a, -math.inf), dim=1)
                        for a in half_widths], dim=1)


def prior_log_density(quad: LatentQuadrature) -> Tensor:
    """:math:`\\log p(z_k) = \\log \\mathcal N(z_k;\\ 0, I)` at the cells of ``quad``: (n,)."""
    return gaussian_log_density(quad.nodes, torch.zeros_like(quad.nodes), 1.0)


def posterior_on_grid(decoder: Decoder, x: Tensor, noise_std: Tensor | float, log_evidence: Tensor,
                      nodes: Tensor) -> Tensor:
    """:math:`\\log p(z \\mid x_i) = \\log p(x_i, z) - \\log p(x_i)` on given nodes (e.g. a zoom for a contour plot).

    Args:
        decoder, noise_std: the model.
        x: (B, D) points.
        log_evidence: (B,) :math:`\\log p(x_i)`, e.g. from :func:`latent_quadrature`.
        nodes: (n, d) latent points.

    Returns:
        (B, n) log-densities in ``x``'s dtype.
    """
    check_matrix("x", x)
    if log_evidence.shape != (x.shape[0],):
        raise ValueError(f"log_evidence must have shape ({x.shape[0]},), got {tuple(log_evidence.shape)}")

    def wrapped(z: Tensor) -> Tensor:
        return _decode(decoder, z)

    return grid_log_joint(wrapped, x, nodes.to(x), noise_std) - log_evidence.to(x)[:, None]


def posterior_zooms(decoder: Decoder, x: Tensor, noise_std: Tensor | float, log_evidence: Tensor, mean: Tensor,
                    cov: Tensor, *, points_per_axis: int = 150, width: float = 4.5) -> list[tuple[Tensor, Tensor, Tensor]]:
    """:math:`\\log p(z \\mid x_i)` on a regular grid around each posterior, for contour plots.

    The grid of point :math:`i` is a square centred at ``mean[i]`` that spans
    :math:`\\pm` ``width`` times the larger posterior standard deviation (from
    ``cov[i]``) on both axes, so shapes are not distorted, with ``points_per_axis``
    nodes per axis; the density is normalised by the given :math:`\\log p(x_i)`
    (:func:`posterior_on_grid`).

    Args:
        decoder, noise_std: the model.
        x: (B, D) points; log_evidence: (B,); mean: (B, d); cov: (B, d, d), e.g. from
            :meth:`LatentQuadrature.posterior_moments`.

    Returns:
        for each point ``(axis_1, axis_2, log_posterior)`` with shapes (G,), (G,), (G, G), first index = first axis.
    """
    check_matrix("x", x)
    check_positive_int("points_per_axis", points_per_axis)
    if mean.shape != (x.shape[0], 2) or cov.shape != (x.shape[0], 2, 2):
        raise ValueError(f"mean and cov must have shapes ({x.shape[0]}, 2) and ({x.shape[0]}, 2, 2), "
                         f"got {tuple(mean.shape)} and {tuple(cov.shape)}")
    unit = torch.linspace(-width, width, points_per_axis, dtype=x.dtype, device=x.device)
    zooms = []
    for i in range(x.shape[0]):        # one grid per plotted point (a handful)
        sd = cov[i].diagonal().sqrt().max().to(x)
        axes = [mean[i, j].to(x) + sd * unit for j in range(2)]
        nodes = torch.cartesian_prod(*axes)
        log_post = posterior_on_grid(decoder, x[i:i + 1], noise_std, log_evidence[i:i + 1], nodes)[0]
        zooms.append((axes[0], axes[1], log_post.reshape(points_per_axis, points_per_axis)))
    return zooms


def prior_sampling_log_moment_ratio(model: nn.Module, x: Tensor, noise_scale: float = 1.0, **quadrature) -> Tensor:
    """Exact :math:`\\log C(x) = \\log \\int p(z \\mid x)^2 / p(z)\\, dz` of a :class:`labcode.VAE` whose noise level is rescaled.

    The decoder is the model's with :math:`\\sigma = ` ``noise_scale`` :math:`\\cdot \\sigma_x`;
    :math:`K / C(x)` is the large-:math:`K` effective sample size of prior sampling.

    Returns:
        (B,) values, by :func:`vae_quadrature` and :func:`exact_log_moment_ratio`.
    """
    quad, _, _ = vae_quadrature(model, x, noise_scale=noise_scale, resolve_q=False, **quadrature)
    return exact_log_moment_ratio(quad, prior_log_density(quad))


# --------------------------------------------------------------------------------------------
# Importance sampling with the encoder, and the IWAE bound
# --------------------------------------------------------------------------------------------

@torch.no_grad()
def importance_log_weights(model: nn.Module, x: Tensor, n_samples: int, *,
                           generator: torch.Generator | None = None) -> Tensor:
    """Log-weights :math:`\\log w_k = \\log p(x, z_k) - \\log q(z_k \\mid x)`, :math:`z_k \\sim q(z \\mid x)`, of a :class:`labcode.VAE`.

    Each row of ``x`` gets its own :math:`K` = ``n_samples`` draws
    :math:`z_k = \\mu(x) + \\sigma(x) \\odot \\varepsilon_k` (noise from ``generator``,
    drawn on the CPU for reproducibility). :math:`\\mathbb E_q[w] = p(x)`, so
    :math:`\\frac1K \\sum_k w_k` is an unbiased estimate of :math:`p(x)`;
    :math:`\\log \\frac1K \\sum_k w_k` has expectation :math:`\\mathcal L_K`,
    the IWAE bound.

    Args:
        model: the VAE.
        x: (B, D) points.
        n_samples: :math:`K > 0`.
        generator: source of :math:`\\varepsilon`.

    Returns:
        (B, K) log-weights in the model's dtype, on its device.
    """
    check_matrix("x", x, model.data_dim)
    check_finite("x", x)
    check_positive_int("n_samples", n_samples)
    device = model.decoder_logvar.device
    x = x.to(device=device, dtype=model.decoder_logvar.dtype)
    mu, logvar = model.encode(x)
    std = torch.exp(0.5 * logvar)
    sigma = model.noise_std
    batch, d = mu.shape
    chunk = max(1, _DECODE_ROWS // batch)
    parts = []
    for start in range(0, n_samples, chunk):
        k = min(chunk, n_samples - start)
        eps = randn((batch, k, d), generator=generator, device=device, dtype=mu.dtype)
        z = mu[:, None] + std[:, None] * eps
        log_lik = gaussian_log_density(x[:, None], model.decode(z.reshape(-1, d)).reshape(batch, k, -1), sigma)
        log_prior = gaussian_log_density(z, torch.zeros_like(z), 1.0)
        log_q = -0.5 * (eps ** 2 + logvar[:, None] + math.log(2 * math.pi)).sum(dim=-1)
        parts.append(log_lik + log_prior - log_q)
    return torch.cat(parts, dim=1)


def iwae_bound(log_weights: Tensor, n_samples: int) -> tuple[Tensor, Tensor]:
    """Estimate of the IWAE bound :math:`\\mathcal L_K = \\mathbb E\\big[\\log \\frac1K \\sum_{k=1}^K w_k\\big]` and its standard error.

    The last axis of ``log_weights`` holds :math:`N` i.i.d. log-weights; it is
    cut into :math:`R = \\lfloor N/K \\rfloor` disjoint blocks
    (:func:`labcode.estimators.repeated_estimates`), each an independent draw
    of :math:`\\log \\frac1K \\sum_k w_k`; their mean estimates
    :math:`\\mathcal L_K` and their standard deviation over :math:`\\sqrt R`
    is its standard error. :math:`\\mathcal L_1` is the ELBO.

    Args:
        log_weights: (..., N) log-weights, e.g. from :func:`importance_log_weights`.
        n_samples: :math:`K`, at most :math:`N`.

    Returns:
        ``(estimate, stderr)``, each of shape (...); stderr is NaN when :math:`R = 1`.
    """
    log_estimates, _ = repeated_estimates(log_weights, n_samples)
    repeats = log_estimates.shape[-1]
    stderr = (log_estimates.std(dim=-1) / math.sqrt(repeats) if repeats > 1
              else torch.full(log_estimates.shape[:-1], math.nan, dtype=log_estimates.dtype))
    return log_estimates.mean(dim=-1), stderr


def leave_one_out_bound(log_weights: Tensor) -> Tensor:
    """:math:`\\frac{1}{K+1}\\sum_{i=1}^{K+1} \\log \\frac1K \\sum_{j \\ne i} w_j` for :math:`K + 1` weights (last axis).

    Burda et al.'s argument for :math:`\\mathcal L_K \\le \\mathcal L_{K+1}`:
    the mean of all :math:`K+1` weights is the average of the :math:`K+1`
    leave-one-out means, so by concavity
    :math:`\\log \\frac{1}{K+1}\\sum_j w_j \\ge` this value, for every sample.

    Args:
        log_weights: (..., K + 1) log-weights, K + 1 >= 2.

    Returns:
        (...) values.
    """
    log_weights = as_tensor("log_weights", log_weights)
    n = log_weights.shape[-1]
    if n < 2:
        raise ValueError(f"log_weights must hold at least 2 weights on the last axis, got {n}")
    eye = torch.eye(n, dtype=torch.bool, device=log_weights.device)
    masked = log_weights[..., None, :].expand(*log_weights.shape[:-1], n, n).masked_fill(eye, -math.inf)
    return (torch.logsumexp(masked, dim=-1) - math.log(n - 1)).mean(dim=-1)


# --------------------------------------------------------------------------------------------
# Gaussian fits to a two-dimensional target by either direction of KL
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class GaussianMixture2D:
    """:math:`p(z) = \\sum_k w_k\\, \\mathcal N(z;\\ m_k, S_k)` in the plane.

    Attributes:
        weights: (K,) :math:`w_k > 0`, summing to one.
        means: (K, 2) :math:`m_k`.
        covs: (K, 2, 2) symmetric positive definite :math:`S_k`.
    """

    weights: Tensor
    means: Tensor
    covs: Tensor

    def __post_init__(self) -> None:
        for name in ("weights", "means", "covs"):
            object.__setattr__(self, name, as_tensor(name, getattr(self, name)))
        k = self.weights.shape[0] if self.weights.dim() == 1 else -1
        if k < 1 or self.means.shape != (k, 2) or self.covs.shape != (k, 2, 2):
            raise ValueError("weights, means and covs must have shapes (K,), (K, 2), (K, 2, 2), got "
                             f"{tuple(self.weights.shape)}, {tuple(self.means.shape)}, {tuple(self.covs.shape)}")
        if not (self.weights > 0).all() or abs(self.weights.sum().item() - 1) > 1e-6:
            raise ValueError("weights must be > 0 and sum to 1")
        check_finite("means", self.means)
        if not torch.allclose(self.covs, self.covs.transpose(1, 2)) or not (torch.linalg.eigvalsh(self.covs) > 0).all():
            raise ValueError("covs must be symmetric positive definite")

    def log_prob(self, z: Tensor) -> Tensor:
        """:math:`\\log p(z)` for z (..., 2) -> (...)."""
        components = torch.distributions.MultivariateNormal(self.means.to(z), covariance_matrix=self.covs.to(z))
        return torch.logsumexp(torch.log(self.weights.to(z)) + components.log_prob(z[..., None, :]), dim=-1)

    def mean(self) -> Tensor:
        """(2,) :math:`\\sum_k w_k m_k`."""
        return self.weights @ self.means

    def covariance(self) -> Tensor:
        """(2, 2) :math:`\\sum_k w_k (S_k + m_k m_k^\\top) - \\bar m \\bar m^\\top`."""
        second = (self.weights[:, None, None] * (self.covs + self.means[:, :, None] * self.means[:, None, :])).sum(0)
        m = self.mean()
        return second - torch.outer(m, m)


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


def _grid_kl(log_p: Tensor, log_q: Tensor, log_cell: float) -> Tensor:
    """Midpoint rule for :math:`\\int p \\log(p/q)` on a lattice: (..., n) -> (...)."""
    return (torch.exp(log_p + log_cell) * (log_p - log_q)).sum(-1)


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

    The two-dimensional counterpart of :func:`labcode.divergences.fit_gaussian_kl`:
    the KL is the midpoint rule on the lattice of
    :func:`labcode.estimators.latent_grid` (deterministic and smooth in the
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
    _check_direction(direction)
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
        return _grid_kl(log_p, log_q, log_cell) if direction == "forward" else _grid_kl(log_q, log_p, log_cell)

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


def lattice_kl(log_p: Tensor, log_q: Tensor, half_width: float, points_per_axis: int) -> Tensor:
    """:math:`\\mathrm{KL}(p\\|q)` by the midpoint rule on the lattice of :func:`labcode.estimators.latent_grid` (2-D).

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
    return _grid_kl(log_p, log_q, math.log(cell))


# --------------------------------------------------------------------------------------------
# The prior-matching term of a diffusion model, as a function of its schedule
# --------------------------------------------------------------------------------------------

def prior_matching_sweep(x0: Tensor, n_steps: Sequence[int], beta_ends: Sequence[float], *,
                         beta_start: float = 1e-4) -> Tensor:
    """Mean over the data of :math:`\\mathrm{KL}(q(x_T \\mid x_0) \\,\\|\\, \\mathcal N(0, I))` for linear schedules.

    For each end value :math:`\\beta_T` in ``beta_ends`` and each length
    :math:`T` in ``n_steps``, the schedule rises linearly from ``beta_start``
    to :math:`\\beta_T` (:func:`labcode.diffusion.linear_beta_schedule`), and the
    term is :func:`labcode.diffusion.prior_matching_kl` at
    :math:`\\bar\\alpha_T = \\prod_t (1 - \\beta_t)`.

    Args:
        x0: (N, D) data.
        n_steps: chain lengths :math:`T` (ints > 1).
        beta_ends: end values in (0, 1).
        beta_start: first value in (0, 1).

    Returns:
        (len(beta_ends), len(n_steps)) mean KL in nats, float64.
    """
    check_matrix("x0", x0)
    if not n_steps or not beta_ends:
        raise ValueError("n_steps and beta_ends must be non-empty")
    rows = []
    for beta_end in beta_ends:
        row = []
        for t in n_steps:
            if isinstance(t, bool) or not isinstance(t, int) or t < 2:
                raise ValueError(f"n_steps must hold ints >= 2, got {t}")
            alpha_bar_t = alpha_bar_schedule(linear_beta_schedule(t, beta_start, beta_end))[-1]
            row.append(prior_matching_kl(x0.double(), alpha_bar_t).mean())
        rows.append(torch.stack(row))
    return torch.stack(rows).cpu()
