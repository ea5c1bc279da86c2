"""Frames of the book's interactive figures: every value a reader can reach with a slider, computed here.

An interactive figure in the built book shows one *frame* at a time and lets the reader move
between frames (a slider or buttons) without a kernel: the browser only looks frames up. So
every number and every curve it shows is computed at build time by this module, from the
same functions and models as the chapter's static figures, and the plotting side
(:mod:`labcode.plots.interactive`) draws what it is given. Four kinds of frames:

* :func:`kl_explorer_frames` ("KL divergence"): a fixed :math:`p = \\mathcal N(\\mu_p, \\sigma_p^2)`
  and a grid of :math:`q = \\mathcal N(\\mu, \\sigma^2)`; per :math:`q` the density and the two integrands

  .. math:: p \\log\\frac{p}{q}, \\qquad q \\log\\frac{q}{p},

  whose areas are :math:`\\mathrm{KL}(p\\|q)` and :math:`\\mathrm{KL}(q\\|p)`, both given in closed form
  (:func:`labcode.kl.gaussian_kl_closed_form`).
* :func:`beta_sweep_frames` ("The two forces"): per :math:`\\beta` of the sweep, the encoder means
  :math:`\\mu_\\phi(x_i)`, the reconstructions and the averaged terms of the objective.
* :func:`forward_process_frames` ("Bridge to diffusion"): the spiral pushed through
  :math:`q(x_t \\mid x_0)`, :math:`x_t = \\sqrt{\\bar\\alpha_t}\\, x_0 + \\sqrt{1 - \\bar\\alpha_t}\\,\\varepsilon`,
  with *one* draw of :math:`\\varepsilon` for all :math:`t`, so that consecutive frames move continuously.
* :func:`iwae_frames` ("The exact posterior"): the IWAE bound
  :math:`\\mathcal L^{\\mathrm{IW}}_K = \\mathbb E[\\log \\frac1K \\sum_k w_k]` against :math:`K`, estimated from
  disjoint blocks of one pool of log-weights (:func:`labcode.importance.repeated_estimates`), with the
  histogram of the blocks' estimates at every :math:`K`.

Every result is a frozen dataclass of CPU tensors (float64 unless stated).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise

import torch
from torch import Tensor

from ._checks import as_tensor, check_finite, check_grid, check_matrix, check_positive_int, check_positive_number, randn
from .diffusion import prior_matching_kl, q_sample
from .importance import repeated_estimates
from .kl import gaussian_kl_closed_form


def _increasing(name: str, values: Sequence[float] | Tensor) -> Tensor:
    """``values`` as a checked float64 (n,) CPU tensor, n >= 1, finite and strictly increasing."""
    t = as_tensor(name, torch.as_tensor(values, dtype=torch.float64) if not isinstance(values, Tensor) else values)
    t = t.detach().double().cpu()
    if t.dim() != 1 or t.numel() == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence, got shape {tuple(t.shape)}")
    check_finite(name, t)
    if not (t[1:] > t[:-1]).all():
        raise ValueError(f"{name} must be strictly increasing")
    return t


# --- KL divergence: q's mean and width against a fixed p -------------------------------------------


@dataclass(frozen=True)
class KLFrames:
    """The KL asymmetry explorer: one frame per :math:`q = \\mathcal N(\\mu_a, \\sigma_b^2)`, frame ``(b, a)``.

    Attributes:
        mu_p, sigma_p: the fixed :math:`p`.
        mus: (A,) the means of :math:`q` on the slider; sigmas: (B,) its standard deviations.
        grid: (M,) the points where the curves are drawn.
        p_density: (M,) :math:`p(x)`.
        q_density: (B, A, M) :math:`q(x)`.
        integrand_pq: (B, A, M) :math:`p \\log(p/q)`, whose integral is :math:`\\mathrm{KL}(p\\|q)`.
        integrand_qp: (B, A, M) :math:`q \\log(q/p)`, whose integral is :math:`\\mathrm{KL}(q\\|p)`.
        kl_pq, kl_qp: (B, A) the two KLs in closed form ({prf:ref}`kl-prop-gauss`).
    """

    mu_p: float
    sigma_p: float
    mus: Tensor
    sigmas: Tensor
    grid: Tensor
    p_density: Tensor
    q_density: Tensor
    integrand_pq: Tensor
    integrand_qp: Tensor
    kl_pq: Tensor
    kl_qp: Tensor

    def index(self, mu: float, sigma: float) -> tuple[int, int]:
        """The frame ``(b, a)`` of the grid point nearest to :math:`(\\mu, \\sigma)`."""
        return int((self.sigmas - sigma).abs().argmin()), int((self.mus - mu).abs().argmin())


def kl_explorer_frames(mu_p: float, sigma_p: float, mus: Sequence[float] | Tensor,
                       sigmas: Sequence[float] | Tensor, grid: Tensor) -> KLFrames:
    """Densities, KL integrands and closed-form KLs for every :math:`q = \\mathcal N(\\mu, \\sigma^2)` of a grid.

    With :math:`\\ell_p = \\log p` and :math:`\\ell_q = \\log q` at the grid points,

    .. math:: p\\log\\frac pq = e^{\\ell_p}(\\ell_p - \\ell_q), \\qquad q\\log\\frac qp = e^{\\ell_q}(\\ell_q - \\ell_p),

    computed from the log-densities (no ratio of two small densities is formed). The KLs are
    :func:`labcode.kl.gaussian_kl_closed_form` in both directions, not integrals on ``grid``.

    Args:
        mu_p: mean of :math:`p` (finite); sigma_p: its standard deviation (> 0).
        mus: (A,) increasing means of :math:`q`; sigmas: (B,) increasing standard deviations, > 0.
        grid: (M,) increasing points, M >= 2.

    Returns:
        a :class:`KLFrames` in float64 on the CPU.
    """
    if not (isinstance(mu_p, (int, float)) and not isinstance(mu_p, bool) and math.isfinite(mu_p)):
        raise ValueError(f"mu_p must be a finite number, got {mu_p!r}")
    sigma_p = check_positive_number("sigma_p", sigma_p)
    mus, sigmas = _increasing("mus", mus), _increasing("sigmas", sigmas)
    if not (sigmas > 0).all():
        raise ValueError(f"sigmas must be > 0, got {sigmas.min().item()}")
    grid = check_grid(grid).detach().double().cpu()
    f64 = {"dtype": torch.float64}
    log_p = torch.distributions.Normal(torch.tensor(float(mu_p), **f64), torch.tensor(sigma_p, **f64)).log_prob(grid)  # (M,)
    q = torch.distributions.Normal(mus[None, :, None], sigmas[:, None, None])
    log_q = q.log_prob(grid)                                                                # (B, A, M)
    m, s = mus[None, :], sigmas[:, None]
    return KLFrames(
        mu_p=float(mu_p), sigma_p=sigma_p, mus=mus, sigmas=sigmas, grid=grid,
        p_density=log_p.exp(), q_density=log_q.exp(),
        integrand_pq=log_p.exp() * (log_p - log_q),                                        # p log(p/q)
        integrand_qp=log_q.exp() * (log_q - log_p),                                        # q log(q/p)
        kl_pq=gaussian_kl_closed_form(float(mu_p), sigma_p, m, s).expand(len(sigmas), len(mus)).clone(),
        kl_qp=gaussian_kl_closed_form(m, s, float(mu_p), sigma_p).expand(len(sigmas), len(mus)).clone(),
    )


# --- The β sweep ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BetaSweepFrames:
    """The β sweep, one frame per β (in increasing order).

    Attributes:
        betas: the S values of β.
        data: (N, 2) the data points (every ``stride``-th point of the data set), in spiral order.
        index: (N,) their positions in the full data set (for colouring along the spiral).
        latent_means: (S, N, 2) encoder means :math:`\\mu_\\phi(x_i)`.
        reconstructions: (S, N, 2) decoder means at one :math:`z \\sim q(z \\mid x_i)`.
        reconstruction, kl, elbo: (S,) the averaged terms, per data point, in nats.
    """

    betas: list[float]
    data: Tensor
    index: Tensor
    latent_means: Tensor
    reconstructions: Tensor
    reconstruction: Tensor
    kl: Tensor
    elbo: Tensor


def beta_sweep_frames(results: Mapping[float, Mapping], data: Tensor, *, stride: int = 1) -> BetaSweepFrames:
    """Collect the sweep's per-β results (from :func:`labcode.beta_sweep`) into frames; no model is run.

    Args:
        results: ``{β: {"latent_means": (N, 2), "reconstructions": (N, 2), "reconstruction": float,
            "kl_divergence": float, "elbo": float, ...}}``.
        data: (N, 2) the data the sweep was trained and evaluated on.
        stride: keep every ``stride``-th point (> 0), to keep the page light.

    Returns:
        a :class:`BetaSweepFrames` in float64 on the CPU.
    """
    if not isinstance(results, Mapping) or not results:
        raise ValueError("results must be a non-empty mapping {beta: result}")
    check_positive_int("stride", stride)
    data = as_tensor("data", data)
    check_matrix("data", data, 2)
    check_finite("data", data)
    betas = sorted(float(b) for b in results)
    keep = torch.arange(0, data.shape[0], stride)
    means, recs = [], []
    for beta in betas:
        entry = results[beta]
        missing = {"latent_means", "reconstructions", "reconstruction", "kl_divergence", "elbo"} - set(entry)
        if missing:
            raise ValueError(f"results[{beta:g}] lacks {sorted(missing)}")
        for key in ("latent_means", "reconstructions"):
            if tuple(entry[key].shape) != tuple(data.shape):
                raise ValueError(f"results[{beta:g}][{key!r}] must have the shape of data {tuple(data.shape)}, "
                                 f"got {tuple(entry[key].shape)}")
        means.append(entry["latent_means"].detach().double().cpu()[keep])
        recs.append(entry["reconstructions"].detach().double().cpu()[keep])
    terms = {key: torch.tensor([float(results[b][key]) for b in betas], dtype=torch.float64)
             for key in ("reconstruction", "kl_divergence", "elbo")}
    return BetaSweepFrames(betas=betas, data=data.detach().double().cpu()[keep], index=keep,
                           latent_means=torch.stack(means), reconstructions=torch.stack(recs),
                           reconstruction=terms["reconstruction"], kl=terms["kl_divergence"], elbo=terms["elbo"])


# --- The forward diffusion process ----------------------------------------------------------------


@dataclass(frozen=True)
class ForwardFrames:
    """The forward process on a data set, one frame per time step.

    Attributes:
        steps: the F time steps :math:`t`, increasing, in :math:`[0, T]`.
        alpha_bar: (F,) :math:`\\bar\\alpha_t` at those steps.
        x0: (N, 2) the data; eps: (N, 2) the one draw of noise shared by all frames.
        xt: (F, N, 2) :math:`\\sqrt{\\bar\\alpha_t}\\, x_0 + \\sqrt{1-\\bar\\alpha_t}\\, \\varepsilon`.
        prior_kl: (F,) :math:`\\mathrm{KL}(q(x_t \\mid x_0) \\,\\|\\, \\mathcal N(0, I))` averaged over the data
            (:func:`labcode.diffusion.prior_matching_kl`); :math:`+\\infty` at :math:`t = 0`, where
            :math:`q(x_0 \\mid x_0)` is a point mass.
    """

    steps: list[int]
    alpha_bar: Tensor
    x0: Tensor
    eps: Tensor
    xt: Tensor
    prior_kl: Tensor


def forward_process_frames(x0: Tensor, alpha_bar: Tensor, steps: Sequence[int], *,
                           eps: Tensor | None = None, generator: torch.Generator | None = None) -> ForwardFrames:
    """Samples of :math:`q(x_t \\mid x_0)` for every row of ``x0`` at each of ``steps``, with one shared noise draw.

    Each frame is :func:`labcode.diffusion.q_sample` at its step with the same ``eps``: for a fixed
    data point :math:`x_t` travels continuously from :math:`x_0` (at :math:`t = 0`) towards its own
    :math:`\\varepsilon` as :math:`t` grows, and at every single step the frame is an exact sample of
    :math:`q(x_t \\mid x_0)`. The noise is drawn in the dtype of ``x0``, as :func:`~labcode.diffusion.q_sample`
    draws it.

    Args:
        x0: (N, D) data.
        alpha_bar: (T + 1,) schedule from :func:`labcode.diffusion.alpha_bar_schedule`.
        steps: increasing ints in :math:`[0, T]`.
        eps: optional (N, D) standard normal noise; drawn from ``generator`` when omitted.

    Returns:
        a :class:`ForwardFrames` in float64 on the CPU.
    """
    check_matrix("x0", x0)
    check_finite("x0", x0)
    alpha_bar = as_tensor("alpha_bar", alpha_bar)
    if alpha_bar.dim() != 1 or alpha_bar.numel() < 2:
        raise ValueError(f"alpha_bar must be a 1-D schedule of length T + 1 >= 2, got shape {tuple(alpha_bar.shape)}")
    steps = list(steps)
    if not steps or any(isinstance(t, bool) or not isinstance(t, int) for t in steps):
        raise TypeError(f"steps must be a non-empty sequence of ints, got {steps!r}")
    if any(b <= a for a, b in pairwise(steps)) or steps[0] < 0 or steps[-1] > alpha_bar.numel() - 1:
        raise ValueError(f"steps must be increasing within [0, {alpha_bar.numel() - 1}], got {steps}")
    if eps is None:   # drawn as q_sample draws it for these data (in their dtype), then kept in float64
        eps = randn(tuple(x0.shape), generator=generator, dtype=x0.dtype)
    x0 = x0.detach().double().cpu()
    if tuple(eps.shape) != tuple(x0.shape):
        raise ValueError(f"eps must have the shape of x0 {tuple(x0.shape)}, got {tuple(eps.shape)}")
    eps = eps.detach().double().cpu()
    alpha_bar = alpha_bar.detach().double().cpu()
    xt = torch.stack([q_sample(x0, t, alpha_bar=alpha_bar, eps=eps) for t in steps])
    a = alpha_bar[steps]
    prior_kl = torch.full((len(steps),), math.inf, dtype=torch.float64)
    noisy = a < 1
    if noisy.any():
        prior_kl[noisy] = prior_matching_kl(x0, a[noisy]).mean(dim=1)
    return ForwardFrames(steps=steps, alpha_bar=a, x0=x0, eps=eps, xt=xt, prior_kl=prior_kl)


# --- ELBO, IWAE bound and log p(x) against K ------------------------------------------------------


@dataclass(frozen=True)
class IWAEFrames:
    """The IWAE bound against the number of samples :math:`K`, for B data points.

    Attributes:
        sizes: the S values of :math:`K`, increasing.
        repeats: (S,) the number R of independent runs (disjoint blocks of the pool) behind each :math:`K`.
        log_evidence: (B,) exact :math:`\\log p(x)`; elbo: (B,) exact ELBO (both from quadrature).
        bound: (B, S) :math:`\\widehat{\\mathcal L}^{\\mathrm{IW}}_K`, the mean of the R estimates :math:`\\log \\hat p_K`.
        stderr: (B, S) its standard error, the runs' standard deviation over :math:`\\sqrt R` (NaN for R = 1).
        edges: (B, S, H + 1) histogram bin edges per point and :math:`K`: from the ``tail`` quantile of
            the runs (or the ELBO, if lower) to the ``1 - tail`` quantile (or :math:`\\log p(x)`, if higher).
        density: (B, S, H) histogram of the R estimates, normalised to unit area; estimates
            outside the edges are counted in the first or last bin.
    """

    sizes: list[int]
    repeats: Tensor
    log_evidence: Tensor
    elbo: Tensor
    bound: Tensor
    stderr: Tensor
    edges: Tensor
    density: Tensor


def iwae_frames(log_weights: Tensor, sizes: Sequence[int], log_evidence: Tensor, elbo: Tensor, *,
                max_repeats: int = 2000, bins: int = 40, tail: float = 0.01) -> IWAEFrames:
    """Estimate :math:`\\mathcal L^{\\mathrm{IW}}_K` for each :math:`K` of ``sizes`` from one pool of log-weights.

    For each :math:`K` the first :math:`R K` weights, :math:`R = \\min(\\text{max\\_repeats}, \\lfloor N/K \\rfloor)`,
    are cut into R disjoint blocks; block r gives :math:`\\log \\hat p^{(r)}_K = \\operatorname{logsumexp}_{k}
    \\log w_k - \\log K`, an independent draw whose expectation is :math:`\\mathcal L^{\\mathrm{IW}}_K`
    ({prf:ref}`exact-thm-iwae`: :math:`\\mathrm{ELBO} = \\mathcal L^{\\mathrm{IW}}_1 \\le \\mathcal L^{\\mathrm{IW}}_K
    \\le \\log p(x)`). Each histogram spans the middle of its runs and both exact values, so that
    the ELBO and :math:`\\log p(x)` can be drawn on it whatever :math:`K`.

    Args:
        log_weights: (B, N) i.i.d. log-weights :math:`\\log p(x, z_k) - \\log q(z_k \\mid x)`, :math:`z_k \\sim q`.
        sizes: increasing ints :math:`K \\le N`.
        log_evidence, elbo: (B,) exact values.
        max_repeats: cap on the runs per :math:`K` (> 0); bins: histogram bins (> 0);
        tail: in [0, 0.5), the fraction of the runs at each end that a histogram may leave out of its range.

    Returns:
        an :class:`IWAEFrames` in float64 on the CPU.
    """
    check_matrix("log_weights", log_weights)
    check_finite("log_weights", log_weights)
    check_positive_int("max_repeats", max_repeats)
    check_positive_int("bins", bins)
    if not (isinstance(tail, (int, float)) and 0 <= tail < 0.5):
        raise ValueError(f"tail must lie in [0, 0.5), got {tail!r}")
    sizes = list(sizes)
    if not sizes or any(isinstance(k, bool) or not isinstance(k, int) for k in sizes):
        raise TypeError(f"sizes must be a non-empty sequence of ints, got {sizes!r}")
    n = log_weights.shape[1]
    if sizes[0] < 1 or sizes[-1] > n or any(b <= a for a, b in pairwise(sizes)):
        raise ValueError(f"sizes must be increasing within [1, {n}], got {sizes}")
    batch = log_weights.shape[0]
    log_evidence, elbo = as_tensor("log_evidence", log_evidence), as_tensor("elbo", elbo)
    for name, t in (("log_evidence", log_evidence), ("elbo", elbo)):
        if tuple(t.shape) != (batch,):
            raise ValueError(f"{name} must have shape ({batch},), got {tuple(t.shape)}")
        check_finite(name, t)
    log_weights = log_weights.detach().double().cpu()
    log_evidence, elbo = log_evidence.detach().double().cpu(), elbo.detach().double().cpu()

    runs = [repeated_estimates(log_weights[:, :k * max_repeats], k)[0] for k in sizes]   # each (B, R_k)
    repeats = torch.tensor([r.shape[1] for r in runs])
    bound = torch.stack([r.mean(dim=1) for r in runs], dim=1)
    stderr = torch.stack([r.std(dim=1) / math.sqrt(r.shape[1]) if r.shape[1] > 1
                          else torch.full((batch,), math.nan, dtype=torch.float64) for r in runs], dim=1)
    edges = torch.empty(batch, len(sizes), bins + 1, dtype=torch.float64)
    density = torch.empty(batch, len(sizes), bins, dtype=torch.float64)
    for j, r in enumerate(runs):
        low = torch.minimum(torch.quantile(r, tail, dim=1), elbo)
        high = torch.maximum(torch.quantile(r, 1 - tail, dim=1), log_evidence)
        pad = 0.03 * (high - low)
        for i in range(batch):
            edges[i, j] = torch.linspace((low[i] - pad[i]).item(), (high[i] + pad[i]).item(), bins + 1, dtype=torch.float64)
            which = torch.bucketize(r[i], edges[i, j, 1:-1])          # below the range -> 0, above -> bins - 1
            width = (edges[i, j, 1] - edges[i, j, 0]).item()
            density[i, j] = torch.bincount(which, minlength=bins).double() / (r.shape[1] * width)
    return IWAEFrames(sizes=sizes, repeats=repeats, log_evidence=log_evidence, elbo=elbo, bound=bound,
                      stderr=stderr, edges=edges, density=density)
