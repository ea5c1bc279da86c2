"""The autograder's checks: one per function of the lab's checklist (:data:`labcode.lab.checklist.CHECKLIST`).

Each check calls the student's function on seeded inputs and compares the result
with an independent reference (``torch.distributions``, a closed form, ``labcode``)
at a stated tolerance. It returns ``(measured, expected)`` in words, or raises
:class:`CheckFailed` with a hint. :mod:`labcode.lab.runner` runs them.
Used by the lab (``python -m labcode.grade``) and the appendix "Checklist".
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torch.distributions import MultivariateNormal, Normal, kl_divergence

from ..data import make_spiral
from ..elbo import reconstruction_loss
from ..kl import standard_normal_kl
from ..vae import VAE, VAEConfig, evaluate_vae
from .checklist import BY_NAME

#: optimiser steps per β in the β-VAE check. Measured on a 2-core CPU: the
#: reference trains the three models in 1-3 s and ends with a mean KL of
#: 46.1, 1.8 and 0.0 for β = 0, 1, 10 (45.6, 2.5 and 0.0 after 1500 steps);
#: a plain Adam loop around compute_elbo gives 38.0, 1.8, 0.0 in 2-4 s. The
#: trend is already unmistakable.
BETA_STEPS = 400
BETA_VALUES = (0.0, 1.0, 10.0)


class CheckFailed(Exception):
    """A check's verdict: the measured and the expected value and a hint."""

    def __init__(self, measured: str, expected: str, hint: str) -> None:
        super().__init__(f"{measured} (expected {expected})")
        self.measured, self.expected, self.hint = measured, expected, hint


# --------------------------------------------------------------------------- helpers

def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _require(ok: bool, measured: str, expected: str, hint: str) -> None:
    if not ok:
        raise CheckFailed(measured, expected, hint)


def _tensor(value: Any, shape: tuple[int, ...], what: str, hint: str) -> Tensor:
    """``value`` as a detached tensor of the given shape, or a failed check."""
    _require(isinstance(value, Tensor), f"{what}: {type(value).__name__}", "a torch.Tensor", hint)
    _require(tuple(value.shape) == shape, f"{what}: shape {tuple(value.shape)}", f"shape {shape}", hint)
    return value.detach()


def _scalar(value: Any, what: str, hint: str) -> float:
    """``value`` as a float (a number or a one-element tensor), or a failed check."""
    if isinstance(value, Tensor):
        _require(value.numel() == 1, f"{what}: shape {tuple(value.shape)}", "a single number", hint)
        return float(value.detach())
    _require(isinstance(value, (int, float)) and not isinstance(value, bool),
             f"{what}: {type(value).__name__}", "a number", hint)
    return float(value)


def _close(actual: Tensor, expected: Tensor, *, rtol: float, atol: float, hint: str) -> str:
    """Fail unless ``actual`` matches ``expected`` elementwise; return the worst relative error."""
    actual, expected = actual.double(), expected.double()
    if not torch.isfinite(actual).all():
        raise CheckFailed("NaN or inf", f"{_fmt(expected)} (finite)", hint)
    excess = (actual - expected).abs() - (atol + rtol * expected.abs())
    worst = int(excess.flatten().argmax())
    if excess.flatten()[worst] > 0:
        where = f" (worst of {expected.numel()})" if expected.numel() > 1 else ""
        raise CheckFailed(f"{actual.flatten()[worst].item():.6g}{where}",
                          f"{expected.flatten()[worst].item():.6g} (rtol {rtol:g})", hint)
    rel = ((actual - expected).abs() / expected.abs().clamp_min(atol / rtol)).max().item()
    return f"max rel err {rel:.1e}"


def _fmt(t: Tensor) -> str:
    values = t.detach().flatten().tolist()
    return "[" + ", ".join(f"{v:.4g}" for v in values[:4]) + (", …]" if len(values) > 4 else "]")


def output_gradients(out: Any, inputs: list[Tensor]) -> tuple[Tensor | None, ...] | None:
    """The gradient of ``out.sum()`` with respect to each of ``inputs`` (``None`` for an input it does not depend on).

    ``None`` when ``out`` is not a tensor that carries a gradient.
    """
    if not (isinstance(out, Tensor) and out.requires_grad):
        return None
    return torch.autograd.grad(out.sum(), inputs, allow_unused=True)


def call_with_grad(f: Callable, args: tuple, kwargs: dict[str, Any],
                   wrt: tuple[int, ...]) -> tuple[Any, tuple[Tensor | None, ...] | None]:
    """``f(*args, **kwargs)`` and :func:`output_gradients` of it with respect to ``args[i]`` for each ``i`` in ``wrt``.

    For a student function in the grader's worker process (:class:`labcode.lab.sandbox.RemoteFunction`), the
    worker computes the gradients, where the computation graph is: the function's type provides ``call_with_grad``.
    """
    remote = getattr(type(f), "call_with_grad", None)
    if remote is not None:
        return remote(f, args, kwargs, wrt)
    out = f(*args, **kwargs)
    return out, output_gradients(out, [args[i] for i in wrt])


def _seeded_linear(seed: int, dtype: torch.dtype = torch.float64) -> nn.Linear:
    g = _gen(seed)
    layer = nn.Linear(2, 2).to(dtype)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(2, 2, generator=g, dtype=dtype))
        layer.bias.copy_(torch.randn(2, generator=g, dtype=dtype))
    return layer


# --------------------------------------------------------------------------- the checks
# Each check takes the student's function and returns (measured, expected) if
# it passes, or raises CheckFailed.

def check_sample_prior(f: Callable) -> tuple[str, str]:
    """``sample_prior``: 100000 draws in 3 dimensions have mean 0 and covariance I (within 0.02); the same seed gives the same draws."""
    n, d = 100_000, 3
    hint = "draw standard normal noise, torch.randn((n_samples, latent_dim), generator=generator)"
    z = _tensor(f(n, d, generator=_gen(0)), (n, d), "sample_prior(100000, 3)", hint)
    _require(z.is_floating_point(), f"dtype {z.dtype}", "a floating-point tensor", hint)
    zd = z.double()
    mean_err = zd.mean(0).abs().max().item()
    cov_err = (torch.cov(zd.T) - torch.eye(d, dtype=torch.float64)).abs().max().item()
    _require(mean_err <= 0.02, f"max |mean| {mean_err:.3f}", "≤ 0.02 (mean 0)", hint + " (randn, not rand)")
    _require(cov_err <= 0.02, f"max |cov − I| {cov_err:.3f}", "≤ 0.02 (covariance I)", hint)
    again = f(n, d, generator=_gen(0))
    _require(isinstance(again, Tensor) and torch.equal(again.detach(), z), "seed 0 twice: different samples",
             "identical samples", "pass generator=generator to torch.randn")
    return f"|mean| {mean_err:.3f}, |cov−I| {cov_err:.3f}", "≤ 0.02 each; same seed, same z"


def check_likelihood_given_z(f: Callable) -> tuple[str, str]:
    """``likelihood_given_z``: the density of ``Normal(decoder(z), sigma)`` at ``x`` (not its logarithm), rtol 1e-4."""
    batch, sigma = 16, 0.5
    decoder = _seeded_linear(1, torch.float32)
    g = _gen(2)
    z = torch.randn(batch, 2, generator=g)
    with torch.no_grad():
        mean = decoder(z)
        x = mean + sigma * torch.randn(batch, 2, generator=g)
        expected = Normal(mean, sigma).log_prob(x).sum(-1).exp()
    hint = "exp of Normal(decoder(z), noise_std).log_prob(x) summed over the last dimension"
    got = _tensor(f(decoder, x, z, sigma), (batch,), "p(x|z)", hint)
    if torch.allclose(got.double(), expected.double().log(), rtol=1e-4):
        raise CheckFailed(f"{got[0].item():.4g} (the log-likelihood)", f"{expected[0].item():.4g}",
                          "return the likelihood p(x|z), the exp of the log-density")
    return _close(got, expected, rtol=1e-4, atol=1e-12, hint=hint), "Normal(f(z), σ) density, rtol 1e-4"


def check_approximate_marginal_likelihood(f: Callable) -> tuple[str, str]:
    """``approximate_marginal_likelihood``: with a linear decoder, :math:`p(x)` is Gaussian and known exactly; the estimate (K = 2e5) is within 5 %."""
    # A linear decoder f(z) = Wz + b makes x ~ N(b, WWᵀ + σ²I) exactly. At
    # Mahalanobis distance 0.5 and 2 the reference estimator with K = 2e5 has
    # relative errors below 1% and 3% over 30 seeds.
    sigma, k = 0.5, 200_000
    decoder = nn.Linear(2, 2).double()
    with torch.no_grad():
        decoder.weight.copy_(torch.tensor([[1.0, 0.3], [-0.4, 0.8]]))
        decoder.bias.copy_(torch.tensor([0.5, -0.5]))
    w, b = decoder.weight.detach(), decoder.bias.detach()
    cov = w @ w.T + sigma**2 * torch.eye(2, dtype=torch.float64)
    direction = torch.linalg.cholesky(cov) @ torch.tensor([1.0, 1.0], dtype=torch.float64) / math.sqrt(2)
    x = torch.stack([b + 0.5 * direction, b + 2.0 * direction])
    exact = MultivariateNormal(b, cov).log_prob(x).exp()
    hint = ("average p(x|z_k) over prior samples in log space: "
            "logsumexp_k log p(x|z_k) − log K with log p(x|z_k) the Gaussian log-density "
            "(not p itself), then exp")
    got = _tensor(f(decoder, x, k, sigma, generator=_gen(3)), (2,), "p̂_K(x)", hint)
    _require(bool(torch.isfinite(got).all()), f"p̂ = {_fmt(got)}", f"p = {_fmt(exact)}", hint)
    rel = (got.double() / exact - 1).abs()
    _require(bool((rel < 0.05).all()), f"p̂ = {_fmt(got)}", f"p = {_fmt(exact)} ± 5%", hint)
    return f"rel err {_fmt(rel)}", "exact p(x) ± 5% (K = 2e5)"


def check_monte_carlo_kl(f: Callable) -> tuple[str, str]:
    """``monte_carlo_kl``: the estimate from 1e5 samples of the lab's Gaussians is within 0.01 of the closed form."""
    p, q = Normal(0.0, 0.5), Normal(1.0, 1.5)
    samples = 0.5 * torch.randn(100_000, generator=_gen(4))
    exact = kl_divergence(p, q).item()
    hint = "the mean over the samples (from p) of log p(x) − log q(x)"
    got = _scalar(f(samples, p.log_prob, q.log_prob), "KL estimate", hint)
    _require(abs(got - exact) <= 0.01, f"{got:.4f}", f"{exact:.4f} ± 0.01", hint)
    return f"{got:.4f}", f"{exact:.4f} ± 0.01 (N = 1e5)"


def check_gaussian_kl_closed_form(f: Callable) -> tuple[str, str]:
    """``gaussian_kl_closed_form``: torch's ``kl_divergence`` on a broadcast grid of means and widths, rtol 1e-5."""
    dt = torch.float64
    mu1 = torch.linspace(-2, 2, 5, dtype=dt)[:, None]               # (5, 1)
    sigma1 = torch.tensor([0.3, 1.0, 2.5, 0.8], dtype=dt)             # (4,)
    mu2 = torch.tensor(0.0, dtype=dt)                                 # ()
    sigma2 = torch.tensor([0.5, 2.0, 1.0, 0.7, 3.0], dtype=dt)[:, None]   # (5, 1); row 2 holds p = q
    expected = kl_divergence(Normal(mu1, sigma1), Normal(mu2, sigma2))
    hint = "log(σ₂/σ₁) + (σ₁² + (μ₁ − μ₂)²)/(2σ₂²) − ½, elementwise with broadcasting"
    got = _tensor(f(mu1, sigma1, mu2, sigma2), (5, 4), "KL on a (5,1)×(4,)×()×(5,1) grid", hint)
    return _close(got, expected, rtol=1e-5, atol=1e-10, hint=hint), "torch kl_divergence, rtol 1e-5"


def _check_kl_to_standard_normal(f: Callable, seed: int, shape: tuple[int, int]) -> tuple[str, str]:
    g = _gen(seed)
    mu = torch.randn(shape, generator=g, dtype=torch.float64)
    logvar = 0.7 * torch.randn(shape, generator=g, dtype=torch.float64)
    expected = kl_divergence(Normal(mu, torch.exp(0.5 * logvar)), Normal(0.0, 1.0)).sum(-1)
    hint = "½ (μ² + exp(logvar) − 1 − logvar), summed over the last (latent) dimension"
    got = _tensor(f(mu, logvar), (shape[0],), f"KL for {shape} inputs", hint)
    return _close(got, expected, rtol=1e-5, atol=1e-10, hint=hint), "torch kl_divergence summed, rtol 1e-5"


def check_standard_normal_kl(f: Callable) -> tuple[str, str]:
    """``standard_normal_kl``: :math:`\\mathrm{KL}(q \\,\\|\\, \\mathcal N(0, I))` summed over the latent dimension, against torch's ``kl_divergence``."""
    return _check_kl_to_standard_normal(f, 5, (8, 3))


def check_kl_regularization(f: Callable) -> tuple[str, str]:
    """``kl_regularization``: the same KL to the standard normal as :func:`check_standard_normal_kl`, on other inputs."""
    return _check_kl_to_standard_normal(f, 6, (16, 2))


def check_reparameterize(f: Callable) -> tuple[str, str]:
    """``reparameterize``: exact for a given ``eps``, gradients reach ``mu`` and ``logvar``, and 1e5 draws have the right mean and variance."""
    dt = torch.float64
    g = _gen(7)
    mu = torch.randn(4, 2, generator=g, dtype=dt).requires_grad_()
    logvar = (0.5 * torch.randn(4, 2, generator=g, dtype=dt)).requires_grad_()
    eps = torch.randn(4, 2, generator=g, dtype=dt)
    hint = "z = mu + exp(0.5·logvar)·eps: the noise is scaled by the standard deviation, not the variance"
    z, grads = call_with_grad(f, (mu, logvar), {"eps": eps}, wrt=(0, 1))    # grads of z.sum()
    expected = (mu + torch.exp(0.5 * logvar) * eps).detach()
    _close(_tensor(z, (4, 2), "z for given eps", hint), expected, rtol=1e-6, atol=1e-12, hint=hint)
    grad_hint = "build z from mu and logvar with tensor operations (no detach, no torch.normal, no no_grad)"
    _require(z.requires_grad and grads is not None, "z has no gradient", "gradients reach mu and logvar", grad_hint)
    mu_grad, logvar_grad = grads
    _require(mu_grad is not None and logvar_grad is not None, "no gradient for mu or logvar",
             "gradients reach mu and logvar", grad_hint)
    _close(logvar_grad, (0.5 * torch.exp(0.5 * logvar) * eps).detach(), rtol=1e-6, atol=1e-12, hint=grad_hint)

    n = 100_000
    mu0 = torch.tensor([1.0, -0.5], dtype=dt)
    logvar0 = torch.tensor([0.5, -0.2], dtype=dt)
    z = _tensor(f(mu0.expand(n, 2), logvar0.expand(n, 2), generator=_gen(8)), (n, 2), "1e5 samples", hint)
    mean_err = (z.double().mean(0) - mu0).abs().max().item()
    var_rel = (z.double().var(0) / logvar0.exp() - 1).abs().max().item()
    _require(mean_err <= 0.02, f"max |mean − μ| {mean_err:.3f}", "≤ 0.02", "draw eps ~ N(0, I) when eps is None; " + hint)
    _require(var_rel <= 0.02, f"variance off by {100 * var_rel:.1f}%", "exp(logvar) within 2%", hint)
    return f"|mean−μ| {mean_err:.3f}, var {100 * var_rel:.1f}% off", "exact for given eps; ±0.02, ±2%; grads"


def check_reconstruction_loss(f: Callable) -> tuple[str, str]:
    """``reconstruction_loss``: the Gaussian log-likelihood summed over the last dimension (not negated), rtol 1e-5."""
    dt = torch.float64
    g = _gen(9)
    x, x_mu = torch.randn(6, 3, generator=g, dtype=dt), torch.randn(6, 3, generator=g, dtype=dt)
    x_logvar = 0.5 * torch.randn(6, 3, generator=g, dtype=dt)
    expected = Normal(x_mu, torch.exp(0.5 * x_logvar)).log_prob(x).sum(-1)
    hint = "−½ (log 2π + x_logvar + (x − x_mu)²·exp(−x_logvar)), summed over the last dimension"
    got = _tensor(f(x, x_mu, x_logvar), (6,), "log p(x|z) for (6, 3) inputs", hint)
    if torch.allclose(got, -expected, rtol=1e-5):
        raise CheckFailed(f"{got[0].item():.4g} (negated)", f"{expected[0].item():.4g}",
                          "it is a log-likelihood, higher is better: do not negate it")
    return _close(got, expected, rtol=1e-5, atol=1e-10, hint=hint), "Normal log_prob summed, rtol 1e-5"


def check_compute_elbo(f: Callable) -> tuple[str, str]:
    """``compute_elbo``: its terms agree with the model's encoder and decoder and with labcode's ELBO terms, and its
    mean ELBO over many draws with :func:`labcode.evaluate_vae`."""
    model = VAE(generator=_gen(10))
    x = make_spiral(64, 0.1, generator=_gen(11))
    hint = "encode, reparameterize, decode, then reconstruction_loss − kl_regularization (see the TODO)"
    out = f(model, x, generator=_gen(12))
    keys = ("elbo", "reconstruction", "kl_divergence", "mu", "logvar", "z", "x_recon")
    _require(isinstance(out, Mapping), type(out).__name__, "a dict", hint)
    missing = [k for k in keys if k not in out]
    _require(not missing, f"missing keys {missing}", "keys " + ", ".join(keys), hint)
    shapes = {"elbo": (64,), "reconstruction": (64,), "kl_divergence": (64,), "mu": (64, 2),
              "logvar": (64, 2), "z": (64, 2), "x_recon": (64, 2)}
    t = {k: _tensor(out[k], shape, k, "one value (or one row) per data point") for k, shape in shapes.items()}
    _close(t["elbo"], t["reconstruction"] - t["kl_divergence"], rtol=1e-5, atol=1e-5,
           hint="elbo = reconstruction − kl_divergence")
    with torch.no_grad():
        mu, logvar = model.encode(x)
        x_recon = model.decode(t["z"])
        recon = reconstruction_loss(x, x_recon, model.decoder_logvar.expand_as(x_recon))
    _close(t["mu"], mu, rtol=1e-5, atol=1e-6, hint="mu, logvar = model.encode(x)")
    _close(t["logvar"], logvar, rtol=1e-5, atol=1e-6, hint="mu, logvar = model.encode(x)")
    _close(t["x_recon"], x_recon, rtol=1e-5, atol=1e-6, hint="x_recon = model.decode(z)")
    _close(t["kl_divergence"], standard_normal_kl(mu, logvar), rtol=1e-5, atol=1e-6,
           hint="kl_divergence = kl_regularization(mu, logvar)")
    _close(t["reconstruction"], recon, rtol=1e-5, atol=1e-5,
           hint="reconstruction = reconstruction_loss(x, x_recon, model.decoder_logvar.expand_as(x_recon))")
    _require(isinstance(out["elbo"], Tensor) and out["elbo"].requires_grad, "elbo has no gradient",
             "differentiable in the model's parameters", "do not detach or use torch.no_grad() inside")

    # Many draws in one batched call: z must be a draw from q(z|x), and the
    # mean ELBO must match labcode's (4096 draws per point). Their standard
    # error is about 0.01; the tolerance is 0.1.
    reps = 256
    big = f(model, x.repeat(reps, 1), generator=_gen(13))
    z = _tensor(big["z"], (64 * reps, 2), "z for 256 copies of x", hint)
    std_eps = (z - mu.repeat(reps, 1)) / torch.exp(0.5 * logvar.repeat(reps, 1))
    eps_mean, eps_var = std_eps.mean().item(), std_eps.var().item()
    _require(abs(eps_mean) <= 0.05 and abs(eps_var - 1) <= 0.05, f"(z − μ)/σ: mean {eps_mean:.3f}, var {eps_var:.3f}",
             "mean 0 ± 0.05, var 1 ± 0.05", "z = reparameterize(mu, logvar, generator=generator)")
    got = _tensor(big["elbo"], (64 * reps,), "elbo for 256 copies of x", hint).mean().item()
    ref = evaluate_vae(model, x, n_samples=4096, generator=_gen(14))["elbo"].mean().item()
    _require(abs(got - ref) <= 0.1, f"mean ELBO {got:.3f}", f"{ref:.3f} ± 0.1", hint)
    return f"mean ELBO {got:.2f}", f"{ref:.2f} ± 0.1; terms exact"


def check_analyze_beta_vae(f: Callable) -> tuple[str, str]:
    """``analyze_beta_vae``: trained for β = 0, 1, 10, the KL term does not increase with β and falls by more than 4x."""
    data = make_spiral(200, 0.1, generator=_gen(0))
    hint = ("train one VAE per β on −reconstruction + β·KL from the same seed "
            "(lc.train_vae(..., beta=beta)), then evaluate it")
    results = f(data, BETA_VALUES, steps=BETA_STEPS, seed=0, config=VAEConfig(lr=3e-2))
    _require(isinstance(results, Mapping), type(results).__name__, "a dict {beta: result}", hint)
    kls = []
    keys = ("reconstruction", "kl_divergence", "elbo", "latent_samples", "reconstructions")
    for beta in BETA_VALUES:
        _require(beta in results, f"no result for β = {beta}", f"keys {BETA_VALUES}", hint)
        res = results[beta]
        missing = [k for k in keys if not (isinstance(res, Mapping) and k in res)]
        _require(not missing, f"β = {beta}: missing {missing}", "keys " + ", ".join(keys), hint)
        for k in ("reconstruction", "elbo"):
            _scalar(res[k], f"β = {beta}: {k}", "batch means as numbers")
        for k in ("latent_samples", "reconstructions"):
            _tensor(res[k], (200, 2), f"β = {beta}: {k}", "one row per data point")
        kls.append(_scalar(res["kl_divergence"], f"β = {beta}: kl_divergence", "batch means as numbers"))
    measured = "KL " + ", ".join(f"{kl:.2f}" for kl in kls)
    expected = "non-increasing; KL(β=10) < KL(β=0)/4"
    ok = all(b <= a + 0.05 + 0.02 * abs(a) for a, b in itertools.pairwise(kls))
    _require(ok and kls[-1] < kls[0] / 4, measured, expected, "the loss is −reconstruction + β·KL: " + hint)
    return f"{measured} (β = 0, 1, 10)", expected


CHECKS: dict[str, tuple[Callable[[Callable], tuple[str, str]], str]] = {
    "sample_prior": (check_sample_prior, "mean 0, cov I (±0.02); seeded"),
    "likelihood_given_z": (check_likelihood_given_z, "Normal(f(z), σ) density, rtol 1e-4"),
    "approximate_marginal_likelihood": (check_approximate_marginal_likelihood, "exact p(x) ± 5% (K = 2e5)"),
    "monte_carlo_kl": (check_monte_carlo_kl, "closed-form KL ± 0.01 (N = 1e5)"),
    "gaussian_kl_closed_form": (check_gaussian_kl_closed_form, "torch kl_divergence, rtol 1e-5"),
    "standard_normal_kl": (check_standard_normal_kl, "torch kl_divergence summed, rtol 1e-5"),
    "reparameterize": (check_reparameterize, "mu + exp(logvar/2)·eps; grads"),
    "reconstruction_loss": (check_reconstruction_loss, "Normal log_prob summed, rtol 1e-5"),
    "kl_regularization": (check_kl_regularization, "torch kl_divergence summed, rtol 1e-5"),
    "compute_elbo": (check_compute_elbo, "labcode ELBO terms; mean ELBO ± 0.1"),
    "analyze_beta_vae": (check_analyze_beta_vae, "KL non-increasing in β"),
}
assert tuple(CHECKS) == tuple(BY_NAME), "one check per checklist item, in checklist order"


