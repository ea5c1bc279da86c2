"""Exact posteriors, exact ELBO gaps and exact second moments of a VAE, by quadrature.

Chapters "Beyond the lab: exact posteriors and better estimators" and "The rate–distortion view".

On the cells of the adaptive rule (:func:`labcode.quadrature.latent_quadrature`) this
module computes everything the VAE only bounds or estimates: the posterior density
:math:`p(z \\mid x) = p(x, z)/p(x)`, the ELBO
:math:`\\mathbb E_q[\\log p(x \\mid z)] - \\mathrm{KL}(q \\,\\|\\, p(z))`, the gap
:math:`\\mathrm{KL}(q(z\\mid x) \\,\\|\\, p(z \\mid x))` and the second moment
:math:`C = \\int \\pi^2 / g` that decides the effective sample size of an
importance sampler with proposal :math:`g`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ._checks import check_encoder_outputs, check_matrix, check_positive_int, check_positive_number, check_same_shape
from .gaussian import diagonal_gaussian_log_density, gaussian_log_density
from .kl import standard_normal_kl
from .lattice import grid_log_joint
from .likelihood import Decoder
from .quadrature import LatentQuadrature, decode_in_chunks, latent_quadrature, scatter_logsumexp


@dataclass(frozen=True)
class ExactTerms:
    """Per-point exact quantities of a VAE, each (B,), by :func:`latent_quadrature`."""

    log_evidence: Tensor     #: :math:`\log p(x)`
    reconstruction: Tensor   #: :math:`\mathbb E_q[\log p(x \mid z)]`
    kl_prior: Tensor         #: :math:`\mathrm{KL}(q(z \mid x) \,\|\, p(z))`, closed form
    elbo: Tensor             #: reconstruction − kl_prior
    kl_posterior: Tensor     #: :math:`\mathrm{KL}(q(z \mid x) \,\|\, p(z \mid x))`, the gap
    q_mass: Tensor           #: :math:`\int q` by the rule (1 up to its error)
    error_estimate: Tensor   #: the rule's error estimate for :math:`\log p(x)`
    log_tail_bound: Tensor   #: log of the bound (:func:`~labcode.quadrature.tail_bound`) on the relative mass outside the box

    @property
    def discrepancy(self) -> Tensor:
        """:math:`\\mathrm{ELBO} + \\mathrm{KL}(q \\,\\|\\, p(z \\mid x)) - \\log p(x)`, zero in exact arithmetic."""
        return self.elbo + self.kl_posterior - self.log_evidence



def encoder_log_density(quad: LatentQuadrature, q_mean: Tensor, q_logvar: Tensor) -> Tensor:
    """:math:`\\log q(z_k \\mid x)` at the cells of ``quad``: (n,), for (B, d) encoder outputs."""
    check_encoder_outputs(q_mean, q_logvar, quad.n_points, quad.nodes.shape[1])
    q_mean, q_logvar = q_mean.to(quad.nodes), q_logvar.to(quad.nodes)
    return diagonal_gaussian_log_density(quad.nodes, q_mean[quad.point], q_logvar[quad.point])



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
    check_positive_number("noise_scale", noise_scale)
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
    return scatter_logsumexp(2 * quad.log_posterior - log_proposal + quad.log_volume, quad.point, quad.n_points)



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

    def decode(z: Tensor) -> Tensor:
        return decode_in_chunks(decoder, z)

    return grid_log_joint(decode, x, nodes.to(x), noise_std) - log_evidence.to(x)[:, None]



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

    The decoder is the model's with :math:`\\sigma = s \\, \\sigma_x`, where :math:`s` is ``noise_scale``;
    :math:`K / C(x)` is the large-:math:`K` effective sample size of prior sampling.

    Returns:
        (B,) values, by :func:`vae_quadrature` and :func:`exact_log_moment_ratio`.
    """
    quad, _, _ = vae_quadrature(model, x, noise_scale=noise_scale, resolve_q=False, **quadrature)
    return exact_log_moment_ratio(quad, prior_log_density(quad))
