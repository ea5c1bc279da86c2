"""Adaptive quadrature of the evidence in a low-dimensional latent space.

Chapters "Beyond the lab: exact posteriors and better estimators" and "The rate–distortion view".

With :math:`d = 2` latent dimensions the evidence
:math:`p(x) = \\int p(x \\mid z)\\, p(z)\\, dz` is a two-dimensional integral,
and a quadrature rule computes it to any accuracy we are willing to pay for.
This module does so with a *locally refined midpoint rule*: a coarse lattice
(:mod:`labcode.lattice`) on the box :math:`[-a, a]^d` locates the mass, every
cell that holds more than a negligible part of it is split, level by level,
so that the mass sits on one fine uniform lattice, and the refinement stops
when one more level no longer changes the result. The box leaves out a part
of the integral that is bounded in closed form (:func:`tail_bound`).

The cells it returns (:class:`LatentQuadrature`) carry the posterior density
:math:`p(z \\mid x) = p(x, z)/p(x)`; :mod:`labcode.exact` integrates the ELBO,
its gap and the second moments of importance weights on them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ._checks import (
    check_encoder_outputs,
    check_finite,
    check_matrix,
    check_positive_int,
    check_positive_number,
    positive_scalar,
)
from .gaussian import diagonal_gaussian_log_density, gaussian_log_density
from .lattice import grid_log_joint, latent_grid
from .likelihood import Decoder, decoder_function

#: rows decoded at once (bounds the memory of the hidden activations)
_DECODE_ROWS = 1 << 18



#: entries of the (rows, nodes, data_dim) difference tensor of the coarse lattice held at once
_CHUNK_ELEMENTS = 1 << 22



#: cells holding less than this fraction of both densities are dropped from the result
_PRUNE = 1e-30



#: the default box half-width, and how many of q's standard deviations around its mean the box holds at least
DEFAULT_HALF_WIDTH = 7.0
Q_BOX_SDS = 8.0


def _log_scale(log_evidence: Tensor) -> Tensor:
    """:math:`\\max(1, |\\log p(x)|)`: how much a missing part of q's mass moves the identity, per unit of mass."""
    return log_evidence.abs().clamp(min=1.0)



def _param_dtype(decoder: Decoder) -> torch.dtype | None:
    if isinstance(decoder, nn.Module):
        for p in decoder.parameters():
            return p.dtype
    return None



def decode_in_chunks(decoder: Decoder, z: Tensor) -> Tensor:
    """Decode (n, d) rows in chunks, in the decoder's own dtype; the result comes back in ``z``'s dtype."""
    dtype = _param_dtype(decoder) or z.dtype
    with torch.no_grad():
        f = decoder_function(decoder)
        parts = [f(z[s:s + _DECODE_ROWS].to(dtype)).to(z.dtype) for s in range(0, z.shape[0], _DECODE_ROWS)]
    return torch.cat(parts) if parts else z.new_zeros(0, 0)



def scatter_logsumexp(values: Tensor, index: Tensor, size: int) -> Tensor:
    """:math:`\\log \\sum_{k: \\text{index}_k = i} e^{v_k}` for each ``i < size`` (``-inf`` for empty groups)."""
    peak = torch.full((size,), -math.inf, dtype=values.dtype, device=values.device)
    peak = peak.scatter_reduce(0, index, values, reduce="amax")
    shift = torch.where(torch.isfinite(peak), peak, torch.zeros_like(peak))
    total = torch.zeros(size, dtype=values.dtype, device=values.device).index_add_(0, index, torch.exp(values - shift[index]))
    return torch.log(total) + shift



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
    check_positive_number("half_width", half_width)
    check_positive_number("noise_std", noise_std)
    check_positive_int("data_dim", data_dim)
    check_positive_int("latent_dim", latent_dim)
    outside_one = torch.special.erfc(torch.tensor(half_width / math.sqrt(2), dtype=torch.float64))
    log_outside = torch.log(-torch.expm1(latent_dim * torch.log1p(-outside_one))).item()
    return -0.5 * data_dim * math.log(2 * math.pi * noise_std ** 2) + log_outside



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
    log_volume: Tensor      #: (n,) :math:`\log \Delta_k`
    log_joint: Tensor       #: (n,) :math:`\log p(x, z_k)`
    log_evidence: Tensor    #: (B,) :math:`\log p(x) \approx \log \sum_k \Delta_k\, p(x, z_k)`
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
       (:func:`labcode.lattice.latent_grid`), the joint at their midpoints
       by :func:`labcode.lattice.grid_log_joint`. It locates the mass.
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
    if half_width is not None:
        check_positive_number("half_width", half_width)
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
    check_encoder_outputs(q_mean, q_logvar, batch, latent_dim)
    sigma = positive_scalar("noise_std", noise_std, x)
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

    def decode(z: Tensor) -> Tensor:
        return decode_in_chunks(decoder, z)

    log_joint0 = torch.cat([grid_log_joint(decode, x[s:s + rows], nodes0, sigma) for s in range(0, batch, rows)])
    log_q0 = diagonal_gaussian_log_density(nodes0[None], q_mean[:, None], q_logvar[:, None]) if use_q and resolve_q else None
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
                                            scatter_logsumexp(kept_log_joint + log_volume, kept_point, batch))
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
        log_joint = gaussian_log_density(x[point], decode_in_chunks(decoder, z), sigma) + gaussian_log_density(z, torch.zeros_like(z), 1.0)
        log_q = diagonal_gaussian_log_density(z, q_mean[point], q_logvar[point]) if use_q and resolve_q else None
        # 3. the estimate with this level against the one without it
        new_log_evidence = torch.logaddexp(done_log_evidence, scatter_logsumexp(log_joint + log_volume, point, batch))
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
