"""The forward (noising) process of a diffusion model (chapters "Bridge to diffusion" and, for the prior-matching sweep, "The rate–distortion view").

The forward process is a fixed Markov chain of Gaussian kernels

.. math:: q(x_t \\mid x_{t-1}) = \\mathcal N\\big(\\sqrt{\\alpha_t}\\, x_{t-1},\\ (1-\\alpha_t) I\\big),
          \\qquad t = 1, \\dots, T,

with :math:`\\bar\\alpha_t = \\prod_{s\\le t} \\alpha_s` (:math:`\\bar\\alpha_0 = 1`). Each step adds
noise of variance :math:`1 - \\alpha_t`, which Ho et al. (2020) write :math:`\\beta_t`; in the
book :math:`\\beta` is only the KL weight, so the rendered mathematics uses :math:`1 - \\alpha_t`,
while the code keeps the literature's names (``linear_beta_schedule``, ``betas``) for the
tensor of noise variances. Marginals and posteriors are Gaussian in closed form:

.. math:: q(x_t \\mid x_0) = \\mathcal N\\big(\\sqrt{\\bar\\alpha_t}\\, x_0,\\ (1-\\bar\\alpha_t) I\\big),

.. math:: q(x_{t-1} \\mid x_t, x_0) = \\mathcal N(\\tilde\\mu_t, \\tilde\\sigma_t^2 I),\\quad
          \\tilde\\mu_t = \\frac{\\sqrt{\\bar\\alpha_{t-1}}\\,(1-\\alpha_t)}{1-\\bar\\alpha_t} x_0
                        + \\frac{\\sqrt{\\alpha_t}\\,(1-\\bar\\alpha_{t-1})}{1-\\bar\\alpha_t} x_t,\\quad
          \\tilde\\sigma_t^2 = \\frac{1-\\bar\\alpha_{t-1}}{1-\\bar\\alpha_t}(1-\\alpha_t).

Schedules are indexed so that ``alpha_bar[t]`` is :math:`\\bar\\alpha_t` for
:math:`t = 0, \\dots, T` and ``betas[t - 1]`` is :math:`1 - \\alpha_t`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from ._checks import as_tensor, check_finite, check_matrix, check_positive_int, randn
from .kl import standard_normal_kl


def linear_beta_schedule(n_steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> Tensor:
    """DDPM's linear schedule of noise variances :math:`1 - \\alpha_t`, evenly spaced from ``beta_start`` to ``beta_end``.

    Ho et al. (2020), who write :math:`\\beta_t = 1 - \\alpha_t`, use :math:`T = 1000`,
    :math:`1 - \\alpha_1 = 10^{-4}` and :math:`1 - \\alpha_T = 0.02`.

    Returns:
        betas: (n_steps,) float64; ``betas[t - 1]`` is :math:`1 - \\alpha_t`.
    """
    check_positive_int("n_steps", n_steps)
    for name, value in (("beta_start", beta_start), ("beta_end", beta_end)):
        if not (isinstance(value, (int, float)) and 0 < value < 1):
            raise ValueError(f"{name} must be in (0, 1), got {value}")
    return torch.linspace(beta_start, beta_end, n_steps, dtype=torch.float64)


def alpha_bar_schedule(betas: Tensor) -> Tensor:
    """:math:`\\bar\\alpha_t = \\prod_{s=1}^t \\alpha_s` for :math:`t = 0, \\dots, T`, from the noise variances :math:`1 - \\alpha_s`.

    Computed as :math:`\\exp \\sum_s \\log \\alpha_s` (``log1p(-betas)``), accurate even when
    :math:`\\bar\\alpha_T` is tiny.

    Args:
        betas: (T,) noise variances :math:`1 - \\alpha_t` in (0, 1).

    Returns:
        alpha_bar: (T + 1,), same dtype; ``alpha_bar[0] == 1``, strictly decreasing.
    """
    betas = as_tensor("betas", betas)
    if betas.dim() != 1 or betas.numel() == 0:
        raise ValueError(f"betas must be a non-empty 1-D tensor, got shape {tuple(betas.shape)}")
    if not ((betas > 0) & (betas < 1)).all():
        raise ValueError("betas must lie in (0, 1)")
    log_alpha_bar = torch.cumsum(torch.log1p(-betas), dim=0)
    return torch.cat([torch.ones(1, dtype=betas.dtype, device=betas.device), torch.exp(log_alpha_bar)])


def _timesteps(t: int | Tensor, alpha_bar: Tensor, batch: int) -> Tensor:
    """Validate ``t`` (an int or (batch,) integer tensor in [0, T]) and return it as a (batch,) long tensor."""
    n_steps = alpha_bar.numel() - 1
    if isinstance(t, bool):
        raise TypeError("t must be an int or an integer tensor, got bool")
    if isinstance(t, int):
        t = torch.full((batch,), t, dtype=torch.long)
    elif isinstance(t, Tensor) and not t.is_floating_point() and t.dtype != torch.bool:
        if t.dim() == 0:
            t = t.expand(batch)
        if t.shape != (batch,):
            raise ValueError(f"t must be an int or have shape ({batch},), got {tuple(t.shape)}")
    else:
        raise TypeError(f"t must be an int or an integer tensor, got {type(t).__name__}")
    if (t < 0).any() or (t > n_steps).any():
        raise ValueError(f"t must lie in [0, {n_steps}], got values in [{t.min().item()}, {t.max().item()}]")
    return t.to(alpha_bar.device)


def q_sample(x0: Tensor, t: int | Tensor, *, alpha_bar: Tensor, eps: Tensor | None = None,
             generator: torch.Generator | None = None) -> Tensor:
    """Sample :math:`x_t \\sim q(x_t \\mid x_0)` in one step: :math:`x_t = \\sqrt{\\bar\\alpha_t}\\, x_0 + \\sqrt{1-\\bar\\alpha_t}\\,\\varepsilon`.

    This is the closed form of :math:`t` steps of the chain (a
    reparameterisation, as in the VAE).

    Args:
        x0: (batch, data_dim) clean data.
        t: an int in :math:`[0, T]`, or a (batch,) integer tensor (one step per row).
        alpha_bar: (T + 1,) schedule from :func:`alpha_bar_schedule`.
        eps: optional (batch, data_dim) standard normal noise.
        generator: source of ``eps`` when it is omitted.

    Returns:
        x_t: (batch, data_dim), dtype and device of ``x0``.
    """
    check_matrix("x0", x0)
    check_finite("x0", x0)
    alpha_bar = as_tensor("alpha_bar", alpha_bar)
    if alpha_bar.dim() != 1 or alpha_bar.numel() < 2:
        raise ValueError(f"alpha_bar must be a 1-D schedule of length T + 1 >= 2, got shape {tuple(alpha_bar.shape)}")
    t = _timesteps(t, alpha_bar, x0.shape[0])
    if eps is None:
        eps = randn(tuple(x0.shape), generator=generator, device=x0.device, dtype=x0.dtype)
    elif eps.shape != x0.shape:
        raise ValueError(f"eps must have the shape of x0 {tuple(x0.shape)}, got {tuple(eps.shape)}")
    a = alpha_bar[t].to(device=x0.device, dtype=x0.dtype)[:, None]
    return torch.sqrt(a) * x0 + torch.sqrt(1 - a) * eps


def forward_chain(x0: Tensor, betas: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
    """Run the forward chain step by step: :math:`x_t = \\sqrt{\\alpha_t}\\, x_{t-1} + \\sqrt{1-\\alpha_t}\\, \\varepsilon_t`.

    The loop is over time steps (the chain is sequential), each step batched
    over all rows. Used to check :func:`q_sample`'s closed form against the
    definition.

    Args:
        x0: (batch, data_dim) starting points.
        betas: (t,) the first :math:`t` noise variances :math:`1 - \\alpha_s`.
        generator: source of the noise.

    Returns:
        x_t: (batch, data_dim) after ``len(betas)`` steps.
    """
    check_matrix("x0", x0)
    check_finite("x0", x0)
    betas = as_tensor("betas", betas)
    alpha_bar_schedule(betas)   # validates betas
    x = x0
    for beta in betas.tolist():
        noise = randn(tuple(x0.shape), generator=generator, device=x0.device, dtype=x0.dtype)
        x = math.sqrt(1 - beta) * x + math.sqrt(beta) * noise
    return x


def q_posterior(x0: Tensor, xt: Tensor, t: int, *, betas: Tensor) -> tuple[Tensor, float]:
    """Mean and variance of :math:`q(x_{t-1} \\mid x_t, x_0) = \\mathcal N(\\tilde\\mu_t, \\tilde\\sigma_t^2 I)`, :math:`t \\ge 1`.

    .. math:: \\tilde\\mu_t = \\frac{\\sqrt{\\bar\\alpha_{t-1}}\\,(1-\\alpha_t)}{1-\\bar\\alpha_t} x_0
              + \\frac{\\sqrt{\\alpha_t}\\,(1-\\bar\\alpha_{t-1})}{1-\\bar\\alpha_t} x_t,
              \\qquad \\tilde\\sigma_t^2 = \\frac{1-\\bar\\alpha_{t-1}}{1-\\bar\\alpha_t}\\,(1-\\alpha_t)

    (at :math:`t = 1`, :math:`\\tilde\\sigma_1^2 = 0` and :math:`\\tilde\\mu_1 = x_0`).

    Args:
        x0, xt: (batch, data_dim).
        t: an int in :math:`[1, T]`.
        betas: (T,) noise variances :math:`1 - \\alpha_t`.

    Returns:
        (mean (batch, data_dim), variance as a float).
    """
    check_matrix("x0", x0)
    check_matrix("xt", xt, x0.shape[1])
    alpha_bar = alpha_bar_schedule(betas)
    n_steps = betas.numel()
    if isinstance(t, bool) or not isinstance(t, int) or not 1 <= t <= n_steps:
        raise ValueError(f"t must be an int in [1, {n_steps}], got {t}")
    beta, ab, ab_prev = betas[t - 1].item(), alpha_bar[t].item(), alpha_bar[t - 1].item()
    coef_x0 = math.sqrt(ab_prev) * beta / (1 - ab)
    coef_xt = math.sqrt(1 - beta) * (1 - ab_prev) / (1 - ab)
    return coef_x0 * x0 + coef_xt * xt, (1 - ab_prev) / (1 - ab) * beta


def prior_matching_kl(x0: Tensor, alpha_bar_T: float | Tensor) -> Tensor:
    """The prior-matching term :math:`\\mathrm{KL}(q(x_T \\mid x_0) \\,\\|\\, \\mathcal N(0, I))` per row.

    With :math:`q(x_T\\mid x_0) = \\mathcal N(\\sqrt{\\bar\\alpha_T}x_0, (1-\\bar\\alpha_T)I)`,

    .. math:: \\mathrm{KL} = \\tfrac12 \\sum_j \\big(\\bar\\alpha_T x_{0j}^2 - \\bar\\alpha_T - \\log(1-\\bar\\alpha_T)\\big)
              \\approx \\tfrac12 \\bar\\alpha_T \\|x_0\\|^2 \\quad (\\bar\\alpha_T \\to 0),

    computed by :func:`labcode.standard_normal_kl`.

    Args:
        x0: (batch, data_dim) data.
        alpha_bar_T: :math:`\\bar\\alpha_T \\in [0, 1)`: a float or 0-dim tensor, or an
            (S,) tensor of values (e.g. a whole schedule without :math:`\\bar\\alpha_0 = 1`).

    Returns:
        (batch,) KL in nats, or (S, batch) for an (S,) ``alpha_bar_T``.
    """
    check_matrix("x0", x0)
    check_finite("x0", x0)
    a = as_tensor("alpha_bar_T", alpha_bar_T)
    if a.dim() > 1:
        raise ValueError(f"alpha_bar_T must be a scalar or 1-D, got shape {tuple(a.shape)}")
    if not ((a >= 0) & (a < 1)).all():
        raise ValueError("alpha_bar_T must lie in [0, 1)")
    a = a.to(device=x0.device, dtype=x0.dtype)[..., None, None]   # (S, 1, 1) or (1, 1)
    mean = torch.sqrt(a) * x0
    logvar = torch.log1p(-a).expand_as(mean)
    return standard_normal_kl(mean, logvar)


def prior_matching_sweep(x0: Tensor, n_steps: Sequence[int], beta_ends: Sequence[float], *,
                         beta_start: float = 1e-4) -> Tensor:
    """Mean over the data of :math:`\\mathrm{KL}(q(x_T \\mid x_0) \\,\\|\\, \\mathcal N(0, I))` for linear schedules.

    For each end value :math:`\\beta_T` in ``beta_ends`` and each length
    :math:`T` in ``n_steps``, the schedule rises linearly from ``beta_start``
    to :math:`\\beta_T` (:func:`linear_beta_schedule`), and the
    term is :func:`prior_matching_kl` at
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
