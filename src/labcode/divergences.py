"""Computational helpers for the chapters "Jensen's inequality" and "KL divergence" (the lab's Parts 4 and 3).

The closed forms themselves live in :mod:`labcode.kl` and :mod:`labcode.jensen`;
this module holds what the two chapters need to *show* them:

* a one-dimensional Gaussian mixture :math:`p(x) = \\sum_k w_k\\, \\mathcal N(x;\\ m_k, s_k^2)`
  (the bimodal target of the mode-covering / mode-seeking experiment);
* :math:`\\mathrm{KL}(p\\,\\|\\,q) = \\int p(x) \\log\\frac{p(x)}{q(x)} \\,dx` by the
  trapezoidal rule on a fixed grid, and Gaussian fits
  :math:`q = \\mathcal N(\\mu, \\sigma^2)` that minimise either direction;
* the Monte Carlo estimate of :math:`\\mathrm{KL}(p\\,\\|\\,q)` with its
  standard error, as the sample size grows;
* exact Jensen gaps :math:`\\log \\mathbb E[X] - \\mathbb E[\\log X]` for the
  lab's three distributions, and a delta-method standard error for the
  sample gap.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Literal

import torch
from torch import Tensor
from torch.distributions import Normal, kl_divergence

from ._checks import as_tensor, check_finite, check_positive, check_positive_int
from .kl import gaussian_kl_closed_form, monte_carlo_kl, standard_normal_kl

LogProb = Callable[[Tensor], Tensor]
Direction = Literal["forward", "reverse"]


# --------------------------------------------------------------------------------------------
# A one-dimensional Gaussian mixture
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class GaussianMixture1D:
    """:math:`p(x) = \\sum_{k=1}^K w_k\\, \\mathcal N(x;\\ m_k, s_k^2)` on the real line.

    Attributes:
        weights: (K,) :math:`w_k > 0`, summing to one.
        means: (K,) :math:`m_k`.
        sigmas: (K,) :math:`s_k > 0`.
    """

    weights: Tensor
    means: Tensor
    sigmas: Tensor

    def __post_init__(self) -> None:
        for name in ("weights", "means", "sigmas"):
            value = as_tensor(name, getattr(self, name))
            if value.dim() != 1 or value.shape[0] == 0:
                raise ValueError(f"{name} must have shape (K,) with K > 0, got {tuple(value.shape)}")
            object.__setattr__(self, name, value)
        if not (self.weights.shape == self.means.shape == self.sigmas.shape):
            raise ValueError("weights, means and sigmas must have the same shape, got "
                             f"{tuple(self.weights.shape)}, {tuple(self.means.shape)}, {tuple(self.sigmas.shape)}")
        check_positive("weights", self.weights)
        check_finite("means", self.means)
        check_positive("sigmas", self.sigmas)
        total = self.weights.sum().item()
        if abs(total - 1.0) > 1e-5:
            raise ValueError(f"weights must sum to 1, got {total}")

    def log_prob(self, x: Tensor) -> Tensor:
        """:math:`\\log p(x) = \\operatorname{logsumexp}_k\\big[\\log w_k + \\log \\mathcal N(x;\\ m_k, s_k^2)\\big]`, elementwise.

        Args:
            x: (...) points.

        Returns:
            (...) log-densities.
        """
        x = as_tensor("x", x)
        w, m, s = (t.to(device=x.device, dtype=x.dtype) for t in (self.weights, self.means, self.sigmas))
        z = (x.unsqueeze(-1) - m) / s
        log_components = -0.5 * z**2 - torch.log(s) - 0.5 * math.log(2 * math.pi)
        return torch.logsumexp(torch.log(w) + log_components, dim=-1)

    def mean(self) -> Tensor:
        """:math:`\\mathbb E_p[X] = \\sum_k w_k m_k` (0-dim)."""
        return (self.weights * self.means).sum()

    def variance(self) -> Tensor:
        """:math:`\\operatorname{Var}_p[X] = \\sum_k w_k (s_k^2 + m_k^2) - (\\mathbb E_p X)^2` (0-dim)."""
        return (self.weights * (self.sigmas**2 + self.means**2)).sum() - self.mean() ** 2


# --------------------------------------------------------------------------------------------
# KL by quadrature, and Gaussian fits by forward / reverse KL
# --------------------------------------------------------------------------------------------

def _check_grid(grid: Tensor) -> Tensor:
    grid = as_tensor("grid", grid)
    if grid.dim() != 1 or grid.shape[0] < 2:
        raise ValueError(f"grid must have shape (M,) with M >= 2, got {tuple(grid.shape)}")
    check_finite("grid", grid)
    if not (grid[1:] > grid[:-1]).all():
        raise ValueError("grid must be strictly increasing")
    return grid


def quadrature_kl(log_p: Tensor, log_q: Tensor, grid: Tensor) -> Tensor:
    """:math:`\\mathrm{KL}(p\\,\\|\\,q) \\approx \\int p(x)\\,[\\log p(x) - \\log q(x)] \\,dx` by the trapezoidal rule.

    The grid must cover (numerically) all of the mass of ``p``; both
    log-densities must be finite on it (densities positive), so that the
    integrand :math:`e^{\\log p}(\\log p - \\log q)` is finite everywhere.

    Args:
        log_p: (..., M) :math:`\\log p` at the grid points.
        log_q: (..., M) :math:`\\log q` at the grid points (broadcasts against ``log_p``).
        grid: (M,) strictly increasing points, M >= 2.

    Returns:
        (...) the KL for each leading index.
    """
    grid = _check_grid(grid)
    log_p, log_q = as_tensor("log_p", log_p), as_tensor("log_q", log_q)
    for name, t in (("log_p", log_p), ("log_q", log_q)):
        check_finite(name, t)
        if t.dim() == 0 or t.shape[-1] != grid.shape[0]:
            raise ValueError(f"{name} must have last dimension {grid.shape[0]} (the grid), got {tuple(t.shape)}")
    return _quadrature_kl(log_p, log_q, grid)


def _quadrature_kl(log_p: Tensor, log_q: Tensor, grid: Tensor) -> Tensor:
    """Unchecked :func:`quadrature_kl`, for the optimisation loop."""
    return torch.trapezoid(torch.exp(log_p) * (log_p - log_q), x=grid, dim=-1)


def _gaussian_log_prob_grid(grid: Tensor, mu: Tensor, log_sigma: Tensor) -> Tensor:
    """:math:`\\log \\mathcal N(x_i;\\ \\mu, e^{2\\log\\sigma})` for grid (M,) and parameters (...) -> (..., M)."""
    z = (grid - mu.unsqueeze(-1)) * torch.exp(-log_sigma).unsqueeze(-1)
    return -0.5 * z**2 - log_sigma.unsqueeze(-1) - 0.5 * math.log(2 * math.pi)


def _gaussian_kl_to_target(direction: Direction, log_target: Tensor, grid: Tensor,
                           mu: Tensor, log_sigma: Tensor) -> Tensor:
    """KL between the target (log-density (M,) on the grid) and :math:`\\mathcal N(\\mu, \\sigma^2)` for parameters (...)."""
    log_q = _gaussian_log_prob_grid(grid, mu, log_sigma)
    if direction == "forward":                     # KL(p || q): average over the target
        return _quadrature_kl(log_target, log_q, grid)
    return _quadrature_kl(log_q, log_target, grid)  # KL(q || p): average over q


def _check_direction(direction: str) -> None:
    if direction not in ("forward", "reverse"):
        raise ValueError(f"direction must be 'forward' or 'reverse', got {direction!r}")


def gaussian_kl_landscape(target_log_prob: LogProb, grid: Tensor, mus: Tensor, log_sigmas: Tensor,
                          direction: Direction) -> Tensor:
    """KL between a target :math:`p` and :math:`q = \\mathcal N(\\mu, \\sigma^2)` on a grid of :math:`(\\mu, \\log\\sigma)`.

    ``direction="forward"`` gives :math:`\\mathrm{KL}(p\\,\\|\\,q)` ("inclusive"),
    ``"reverse"`` gives :math:`\\mathrm{KL}(q\\,\\|\\,p)` ("exclusive"); both by
    :func:`quadrature_kl` on ``grid``.

    Args:
        target_log_prob: :math:`\\log p`, (M,) -> (M,).
        grid: (M,) quadrature points covering the mass of :math:`p` and of every :math:`q`.
        mus: (A,) means.
        log_sigmas: (B,) log standard deviations.
        direction: ``"forward"`` or ``"reverse"``.

    Returns:
        (B, A) KL values, row ``b`` for ``log_sigmas[b]``, column ``a`` for ``mus[a]``.
    """
    _check_direction(direction)
    grid = _check_grid(grid)
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
        return _gaussian_log_prob_grid(x, self.mu.to(x), torch.log(self.sigma).to(x))


def fit_gaussian_kl(target_log_prob: LogProb, grid: Tensor, direction: Direction,
                    mu0: Tensor | Sequence[float], log_sigma0: Tensor | Sequence[float], *,
                    steps: int = 500, lr: float = 0.1) -> GaussianFit:
    """Fit :math:`q = \\mathcal N(\\mu, \\sigma^2)` to a target :math:`p` by gradient descent on one KL direction.

    The objective is :func:`quadrature_kl` on the fixed ``grid`` (deterministic,
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
    _check_direction(direction)
    grid = _check_grid(grid)
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


# --------------------------------------------------------------------------------------------
# Monte Carlo KL as the sample size grows
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MonteCarloCurve:
    """Monte Carlo estimates :math:`\\widehat{\\mathrm{KL}}_N` from the first :math:`N` samples, for growing :math:`N`.

    Attributes:
        n: (L,) sample sizes, increasing.
        estimate: (L,) :math:`\\frac1N \\sum_{i \\le N} r_i`, :math:`r_i = \\log p(x_i) - \\log q(x_i)`.
        stderr: (L,) :math:`s_N / \\sqrt N`, :math:`s_N` the sample standard deviation of :math:`r_1, \\dots, r_N`.
    """

    n: Tensor
    estimate: Tensor
    stderr: Tensor


def monte_carlo_kl_curve(p_samples: Tensor, p_log_prob: LogProb, q_log_prob: LogProb,
                         sizes: Sequence[int]) -> MonteCarloCurve:
    """The estimator of :func:`labcode.monte_carlo_kl` on nested prefixes of one sample.

    With :math:`r_i = \\log p(x_i) - \\log q(x_i)`, :math:`x_i \\sim p`,

    .. math:: \\widehat{\\mathrm{KL}}_N = \\frac1N \\sum_{i=1}^N r_i,\\qquad
              \\mathrm{se}_N = \\frac{s_N}{\\sqrt N},\\quad
              s_N^2 = \\frac1{N-1}\\sum_{i=1}^N (r_i - \\widehat{\\mathrm{KL}}_N)^2 .

    Using prefixes of one sample shows one realisation of the estimator
    converging, as a student running the lab with more and more samples
    would see it.

    Args:
        p_samples: (N_max,) samples from :math:`p`.
        p_log_prob, q_log_prob: log-densities, (N,) -> (N,).
        sizes: increasing sample sizes, each in [2, N_max].

    Returns:
        a :class:`MonteCarloCurve` with L = len(sizes).
    """
    p_samples = as_tensor("p_samples", p_samples)
    if p_samples.dim() != 1:
        raise ValueError(f"p_samples must have shape (N,), got {tuple(p_samples.shape)}")
    sizes = [int(n) for n in sizes]
    if not sizes or sizes[0] < 2 or sizes[-1] > p_samples.shape[0] or any(b <= a for a, b in pairwise(sizes)):
        raise ValueError(f"sizes must be increasing, within [2, {p_samples.shape[0]}], got {sizes}")
    check_finite("p_samples", p_samples)
    r = p_log_prob(p_samples) - q_log_prob(p_samples)
    check_finite("log p - log q at p_samples", r)
    estimate = torch.stack([r[:n].mean() for n in sizes])
    stderr = torch.stack([r[:n].std() / math.sqrt(n) for n in sizes])
    return MonteCarloCurve(n=torch.tensor(sizes), estimate=estimate, stderr=stderr)


# --------------------------------------------------------------------------------------------
# Jensen gaps
# --------------------------------------------------------------------------------------------

def _common_tensors(dtype: torch.dtype | None = None, **values: Tensor | float) -> list[Tensor]:
    """The values as tensors of one dtype and device.

    The dtype is ``dtype`` if given, else the promoted dtype of the tensor
    values (the default dtype if there are none); Python numbers are
    converted straight to it, without rounding through float32.
    """
    tensors = {name: as_tensor(name, v) for name, v in values.items() if isinstance(v, Tensor)}
    for name, v in values.items():
        if name not in tensors:
            as_tensor(name, v)                                  # type check only
    like = next(iter(tensors.values()), torch.tensor(0.0))
    if dtype is None:
        dtype = like.dtype
        for t in tensors.values():
            dtype = torch.promote_types(dtype, t.dtype)
    return [tensors[name].to(like.device, dtype) if name in tensors else like.new_tensor(float(v), dtype=dtype)
            for name, v in values.items()]


def uniform_jensen_gap(a: float, b: float) -> Tensor:
    """Exact :math:`\\log\\mathbb E[X] - \\mathbb E[\\log X]` for :math:`X \\sim \\mathrm{Uniform}[a, b]`, :math:`0 < a < b`.

    .. math:: \\mathbb E[X] = \\frac{a+b}2,\\qquad
              \\mathbb E[\\log X] = \\frac{1}{b-a}\\int_a^b \\log x \\,dx
              = \\frac{(b\\log b - b) - (a \\log a - a)}{b - a}.

    Returns:
        0-dim float64 tensor.
    """
    a_t, b_t = _common_tensors(torch.float64, a=a, b=b)
    check_positive("a", a_t)
    if not b_t > a_t:
        raise ValueError(f"b must be > a, got a={a}, b={b}")
    def antiderivative(x: Tensor) -> Tensor:   # of log x
        return x * torch.log(x) - x

    mean_log = (antiderivative(b_t) - antiderivative(a_t)) / (b_t - a_t)
    return torch.log((a_t + b_t) / 2) - mean_log


def gamma_jensen_gap(concentration: float) -> Tensor:
    """Exact :math:`\\log\\mathbb E[X] - \\mathbb E[\\log X] = \\log k - \\psi(k)` for :math:`X \\sim \\mathrm{Gamma}(k, \\lambda)`.

    With shape :math:`k` and rate :math:`\\lambda`, :math:`\\mathbb E[X] = k/\\lambda` and
    :math:`\\mathbb E[\\log X] = \\psi(k) - \\log \\lambda` (:math:`\\psi` the
    digamma function), so the rate cancels: the gap is scale invariant.
    :math:`k = 1` is the exponential distribution, with gap
    :math:`-\\psi(1) = \\gamma_{\\mathrm E}` (Euler–Mascheroni); :math:`k = 2` gives
    :math:`\\log 2 - (1 - \\gamma_{\\mathrm E})`.

    Returns:
        0-dim float64 tensor.
    """
    (k,) = _common_tensors(torch.float64, concentration=concentration)
    check_positive("concentration", k)
    return torch.log(k) - torch.special.digamma(k)


def two_point_jensen_gap(x1: Tensor | float, x2: Tensor | float, lam: Tensor | float) -> Tensor:
    """Jensen gap of the two-point law :math:`P(X = x_1) = \\lambda`, :math:`P(X = x_2) = 1 - \\lambda`, elementwise.

    .. math:: \\log\\big(\\lambda x_1 + (1-\\lambda) x_2\\big) - \\big(\\lambda \\log x_1 + (1-\\lambda)\\log x_2\\big)

    Args:
        x1, x2: broadcastable positive points.
        lam: broadcastable weights in [0, 1].

    Returns:
        the broadcast shape, in the promoted dtype of the tensor arguments.
    """
    x1, x2, lam = _common_tensors(x1=x1, x2=x2, lam=lam)
    check_positive("x1", x1)
    check_positive("x2", x2)
    check_finite("lam", lam)
    if not ((lam >= 0) & (lam <= 1)).all():
        raise ValueError("lam must lie in [0, 1]")
    return torch.log(lam * x1 + (1 - lam) * x2) - (lam * torch.log(x1) + (1 - lam) * torch.log(x2))


def jensen_gap_stderr(samples: Tensor) -> Tensor:
    """Delta-method standard error of the sample Jensen gap :func:`labcode.jensen_gap`.

    The sample gap :math:`\\log \\bar X - \\overline{\\log X}` is a smooth
    function of two sample means; linearising :math:`\\log` at
    :math:`\\bar X` gives the per-sample influence
    :math:`X_i/\\bar X - \\log X_i`, so

    .. math:: \\mathrm{se} \\approx \\frac{\\operatorname{sd}\\big(X_i/\\bar X - \\log X_i\\big)}{\\sqrt n}.

    Args:
        samples: (n,) positive samples, n >= 2.

    Returns:
        0-dim tensor.
    """
    samples = as_tensor("samples", samples)
    if samples.dim() != 1 or samples.shape[0] < 2:
        raise ValueError(f"samples must have shape (n,) with n >= 2, got {tuple(samples.shape)}")
    check_positive("samples", samples)
    influence = samples / samples.mean() - torch.log(samples)
    return influence.std() / math.sqrt(samples.shape[0])


@dataclass(frozen=True)
class JensenCase:
    """One of the lab's test distributions for :math:`\\log\\mathbb E[X] \\ge \\mathbb E[\\log X]`.

    Attributes:
        name: e.g. ``"Uniform[1, 4]"``.
        samples: (n,) positive samples.
        exact_gap: the exact gap :math:`\\log\\mathbb E[X] - \\mathbb E[\\log X]` (0-dim float64).
    """

    name: str
    samples: Tensor
    exact_gap: Tensor


def lab_jensen_cases(n: int, *, generator: torch.Generator) -> list[JensenCase]:
    """The lab's three distributions Uniform[1, 4], Exponential(1) and Gamma(2, 1), with ``n`` samples each.

    Samples come from ``generator`` by inversion: :math:`X = 1 + 3U` for the
    uniform, :math:`E = -\\log U` for the exponential, and
    :math:`E_1 + E_2` (two independent exponentials) for Gamma(2, 1).
    :math:`U` is drawn in float64 and shifted by a quarter grid step into the
    open interval :math:`(0, 1)`, so every sample is finite and positive.

    Returns:
        three :class:`JensenCase`, in the lab's order; samples (n,) float32 on the CPU.
    """
    check_positive_int("n", n)
    u = torch.rand(4, n, generator=generator, dtype=torch.float64) + 2.0**-55   # in [2^-55, 1 - 2^-53]
    uniform = 1.0 + 3.0 * u[0]
    exponential = -torch.log(u[1])
    gamma2 = -torch.log(u[2]) - torch.log(u[3])
    uniform, exponential, gamma2 = (t.float() for t in (uniform, exponential, gamma2))
    return [
        JensenCase("Uniform[1, 4]", uniform, uniform_jensen_gap(1.0, 4.0)),
        JensenCase("Exponential(1)", exponential, gamma_jensen_gap(1.0)),
        JensenCase("Gamma(2, 1)", gamma2, gamma_jensen_gap(2.0)),
    ]


# --------------------------------------------------------------------------------------------
# The lab's checks of Task 3.2
# --------------------------------------------------------------------------------------------

def lab_kl_checks(*, n_samples: int = 10_000, generator: torch.Generator) -> list[dict[str, object]]:
    """Run the lab's KL checks of Task 3.2 against independent references.

    Each row compares a ``labcode`` function ("measured") with a reference
    ("expected"): the lab's hand-written formulas, ``torch.distributions``,
    and, for the Monte Carlo estimator, the closed form, with tolerance three
    estimated standard errors.

    Returns:
        rows with keys ``check``, ``expected``, ``measured``, ``|difference|``,
        ``tolerance`` (floats) and ``pass`` (bool).
    """
    check_positive_int("n_samples", n_samples)
    rows: list[dict[str, object]] = []

    def add(check: str, expected: Tensor, measured: Tensor, tolerance: float) -> None:
        expected_f, measured_f = float(expected), float(measured)
        difference = abs(measured_f - expected_f)
        rows.append({"check": check, "expected": expected_f, "measured": measured_f,
                     "|difference|": difference, "tolerance": tolerance, "pass": difference <= tolerance})

    def lab_manual(mu1: Tensor, sigma1: Tensor, mu2: Tensor, sigma2: Tensor) -> Tensor:   # the lab's formula
        return 0.5 * ((sigma1 / sigma2) ** 2 + ((mu1 - mu2) / sigma2) ** 2 - 1 - 2 * torch.log(sigma1 / sigma2))

    m1, s1, m2, s2 = torch.tensor(1.0), torch.tensor(0.8), torch.tensor(0.0), torch.tensor(1.0)
    closed = gaussian_kl_closed_form(m1, s1, m2, s2)
    add("closed form vs lab's formula, N(1, 0.8²) ‖ N(0, 1)", lab_manual(m1, s1, m2, s2), closed, 1e-5)
    p, q = Normal(m1, s1), Normal(m2, s2)
    add("closed form vs torch.distributions, same pair", kl_divergence(p, q), closed, 1e-5)
    x = m1 + s1 * torch.randn(n_samples, generator=generator)
    curve = monte_carlo_kl_curve(x, p.log_prob, q.log_prob, [n_samples])
    add(f"Monte Carlo ({n_samples} samples) vs closed form, same pair",
        closed, monte_carlo_kl(x, p.log_prob, q.log_prob), 3 * curve.stderr.item())

    mu, logvar = torch.tensor([1.0, -0.5]), torch.tensor([0.5, -0.2])
    measured = standard_normal_kl(mu, logvar)
    add("standard-normal KL vs lab's formula, μ = (1, −0.5), log σ² = (0.5, −0.2)",
        0.5 * (mu**2 + torch.exp(logvar) - 1 - logvar).sum(), measured, 1e-5)
    reference = kl_divergence(Normal(mu, torch.exp(0.5 * logvar)), Normal(torch.zeros(2), torch.ones(2))).sum()
    add("standard-normal KL vs torch.distributions, same μ, log σ²", reference, measured, 1e-5)
    return rows
