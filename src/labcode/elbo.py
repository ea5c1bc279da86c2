"""The ELBO's building blocks (Part 5, Task 5.1; chapters "The ELBO" and, for :func:`reparameterize`, "Gradients of the ELBO").

For an encoder :math:`q_\\phi(z \\mid x) = \\mathcal N(\\mu_\\phi(x), \\operatorname{diag}\\sigma^2_\\phi(x))`
and a decoder :math:`p_\\theta(x \\mid z) = \\mathcal N(f_\\theta(z), \\sigma_x^2 I)`,

.. math:: \\mathrm{ELBO}(x) = \\mathbb E_{q_\\phi(z\\mid x)}[\\log p_\\theta(x \\mid z)]
          - \\mathrm{KL}(q_\\phi(z \\mid x) \\,\\|\\, p(z)) \\ \\le\\ \\log p_\\theta(x).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ._checks import as_tensor, as_tensors, check_finite, check_same_shape, randn
from .kl import standard_normal_kl, standard_normal_kl_unchecked


def reparameterize(mu: Tensor, logvar: Tensor, *, eps: Tensor | None = None,
                   generator: torch.Generator | None = None) -> Tensor:
    """:math:`z = \\mu + \\sigma \\odot \\varepsilon`, :math:`\\sigma = \\exp(\\tfrac12 \\texttt{logvar})`, :math:`\\varepsilon \\sim \\mathcal N(0, I)`.

    The randomness sits in :math:`\\varepsilon`, which does not depend on
    :math:`(\\mu, \\sigma)`, so gradients flow to ``mu`` and ``logvar``.

    Args:
        mu: (..., latent_dim) means.
        logvar: log-variances, same shape as ``mu``.
        eps: optional noise, same shape; drawn from ``generator`` if omitted.
        generator: source of ``eps``.

    Returns:
        z with the shape of ``mu``.
    """
    mu, logvar = as_tensor("mu", mu), as_tensor("logvar", logvar)
    check_same_shape("mu", mu, "logvar", logvar)
    check_finite("mu", mu)
    check_finite("logvar", logvar)
    if eps is None:
        eps = randn(tuple(mu.shape), generator=generator, device=mu.device, dtype=mu.dtype)
    else:
        check_same_shape("eps", eps, "mu", mu)
        check_finite("eps", eps)
    return reparameterize_unchecked(mu, logvar, eps)


def reparameterize_unchecked(mu: Tensor, logvar: Tensor, eps: Tensor) -> Tensor:
    """Unchecked :func:`reparameterize` with given noise, for the training loop."""
    return mu + torch.exp(0.5 * logvar) * eps


def reconstruction_loss(x: Tensor, x_mu: Tensor, x_logvar: Tensor) -> Tensor:
    """The ELBO's reconstruction term :math:`\\log \\mathcal N(x;\\ \\mu_x,\\ \\operatorname{diag} e^{\\texttt{x\\_logvar}})`, summed over the last dim.

    .. math:: \\log p(x \\mid z) = -\\tfrac12 \\sum_j \\Big[\\log 2\\pi + \\ell_j + (x_j - \\mu_j)^2 e^{-\\ell_j}\\Big]

    Despite the lab's name this is a **log-likelihood: higher is better**;
    the training loss uses its negative. Evaluated at one reparameterised
    :math:`z \\sim q(z \\mid x)`, it is an unbiased one-sample estimate of
    :math:`\\mathbb E_q[\\log p(x\\mid z)]`.

    Args:
        x: (..., data_dim) data.
        x_mu: decoder means, broadcastable to ``x``.
        x_logvar: decoder log-variances :math:`\\ell`, broadcastable to ``x``.

    Returns:
        (...) log-likelihood per row.
    """
    x, x_mu, x_logvar = as_tensors(x=x, x_mu=x_mu, x_logvar=x_logvar)
    for name, t in (("x", x), ("x_mu", x_mu), ("x_logvar", x_logvar)):
        check_finite(name, t)
    try:
        shape = torch.broadcast_shapes(x.shape, x_mu.shape, x_logvar.shape)
    except RuntimeError as err:
        raise ValueError(
            f"x, x_mu and x_logvar must broadcast, got {tuple(x.shape)}, "
            f"{tuple(x_mu.shape)} and {tuple(x_logvar.shape)}") from err
    if shape != x.shape:
        raise ValueError(f"x_mu and x_logvar must broadcast to the shape of x {tuple(x.shape)}, got {tuple(shape)}")
    return _gaussian_log_likelihood(x, x_mu, x_logvar)


def _gaussian_log_likelihood(x: Tensor, x_mu: Tensor, x_logvar: Tensor) -> Tensor:
    """Unchecked :func:`reconstruction_loss`, for the training loop."""
    sq_err = (x - x_mu) ** 2 * torch.exp(-x_logvar)   # squared error in units of the variance
    return -0.5 * (math.log(2 * math.pi) + x_logvar + sq_err).sum(dim=-1)


def kl_regularization(mu: Tensor, logvar: Tensor) -> Tensor:
    """The ELBO's regulariser :math:`\\mathrm{KL}(q(z\\mid x) \\,\\|\\, \\mathcal N(0, I))` per row.

    .. math:: \\mathrm{KL} = \\tfrac12 \\sum_j \\big(\\mu_j^2 + \\sigma_j^2 - 1 - \\log \\sigma_j^2\\big),
              \\qquad \\log\\sigma_j^2 = \\texttt{logvar}_j,

    the same quantity as ``standard_normal_kl``: (..., latent_dim) -> (...).
    """
    return standard_normal_kl(mu, logvar)


def elbo_terms(x: Tensor, mu: Tensor, logvar: Tensor, eps: Tensor,
                decode, decoder_logvar: Tensor) -> dict[str, Tensor]:
    """One-sample ELBO terms at :math:`z = \\mu + \\sigma \\odot \\varepsilon`, unchecked (``VAE.compute_elbo`` and the training loops check their inputs).

    Args:
        x: (batch, data_dim) data.
        mu, logvar, eps: (batch, latent_dim) encoder outputs and noise.
        decode: the decoder mean :math:`f_\\theta`, (batch, latent_dim) -> (batch, data_dim).
        decoder_logvar: :math:`\\log\\sigma_x^2`, broadcastable to ``x``.

    Returns:
        ``elbo``, ``reconstruction``, ``kl_divergence`` (batch,) and ``mu``, ``logvar``, ``z``, ``x_recon``.
    """
    z = reparameterize_unchecked(mu, logvar, eps)
    x_recon = decode(z)
    recon = _gaussian_log_likelihood(x, x_recon, decoder_logvar.expand_as(x_recon))
    kl = standard_normal_kl_unchecked(mu, logvar)
    return {"elbo": recon - kl, "reconstruction": recon, "kl_divergence": kl,
            "mu": mu, "logvar": logvar, "z": z, "x_recon": x_recon}
