"""The lab's autograder: ``python -m labcode.grade PATH``.

``PATH`` is a student's notebook (``.ipynb``, or a MyST ``.md`` notebook) or a
Python module (``.py``). Its code cells run in order in one fresh namespace;
IPython magics and shell lines (``%...``, ``!...``) are dropped, and a cell
that raises is recorded and skipped. Then each of the eleven functions of
:data:`labcode.checklist.CHECKLIST` is checked **in isolation**: the student's
function is rebuilt with a copy of the namespace in which the *other* ten
names are ``labcode``'s reference implementations, so a bug in one function
fails only its own check. A crash (``NotImplementedError`` included) fails
that check and the next one runs.

The checks compare against independent references (``torch.distributions``,
closed forms, ``labcode``) with a seeded ``torch.Generator`` and a stated
tolerance. The table shows, per function, pass or fail, the measured and the
expected value and, on failure, a hint; then the score. The exit status is 0
only if every check passes.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import math
import os
import sys
import time
import types
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.distributions import MultivariateNormal, Normal, kl_divergence

from .checklist import BY_NAME, CHECKLIST
from .data import make_spiral
from .elbo import reconstruction_loss
from .kl import standard_normal_kl
from .vae import VAE, VAEConfig, evaluate_vae

#: optimiser steps per β in the β-VAE check. Measured on a 2-core CPU: the
#: reference trains the three models in 1-3 s and ends with a mean KL of
#: 46.1, 1.8 and 0.0 for β = 0, 1, 10 (45.6, 2.5 and 0.0 after 1500 steps);
#: a plain Adam loop around compute_elbo gives 38.0, 1.8, 0.0 in 2-4 s. The
#: trend is already unmistakable.
BETA_STEPS = 400
BETA_VALUES = (0.0, 1.0, 10.0)

#: set while a notebook's cells run, so that a self-grading cell inside the
#: notebook does not start a second grading
_executing_student_code = False


@dataclass(frozen=True)
class Result:
    """One row of the grading table.

    Attributes:
        name: the checklist function.
        passed: whether every check of that function passed.
        measured: what the student's function gave (or the error it raised).
        expected: the reference value or relation, with its tolerance.
        hint: on failure, what to look at.
        seconds: time the check took.
    """

    name: str
    passed: bool
    measured: str
    expected: str
    hint: str = ""
    seconds: float = 0.0


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
    p, q = Normal(0.0, 0.5), Normal(1.0, 1.5)
    samples = 0.5 * torch.randn(100_000, generator=_gen(4))
    exact = kl_divergence(p, q).item()
    hint = "the mean over the samples (from p) of log p(x) − log q(x)"
    got = _scalar(f(samples, p.log_prob, q.log_prob), "KL estimate", hint)
    _require(abs(got - exact) <= 0.01, f"{got:.4f}", f"{exact:.4f} ± 0.01", hint)
    return f"{got:.4f}", f"{exact:.4f} ± 0.01 (N = 1e5)"


def check_gaussian_kl_closed_form(f: Callable) -> tuple[str, str]:
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
    return _check_kl_to_standard_normal(f, 5, (8, 3))


def check_kl_regularization(f: Callable) -> tuple[str, str]:
    return _check_kl_to_standard_normal(f, 6, (16, 2))


def check_reparameterize(f: Callable) -> tuple[str, str]:
    dt = torch.float64
    g = _gen(7)
    mu = torch.randn(4, 2, generator=g, dtype=dt).requires_grad_()
    logvar = (0.5 * torch.randn(4, 2, generator=g, dtype=dt)).requires_grad_()
    eps = torch.randn(4, 2, generator=g, dtype=dt)
    hint = "z = mu + exp(0.5·logvar)·eps: the noise is scaled by the standard deviation, not the variance"
    z = f(mu, logvar, eps=eps)
    expected = (mu + torch.exp(0.5 * logvar) * eps).detach()
    _close(_tensor(z, (4, 2), "z for given eps", hint), expected, rtol=1e-6, atol=1e-12, hint=hint)
    grad_hint = "build z from mu and logvar with tensor operations (no detach, no torch.normal, no no_grad)"
    _require(z.requires_grad, "z has no gradient", "gradients reach mu and logvar", grad_hint)
    z.sum().backward()
    _require(mu.grad is not None and logvar.grad is not None, "no gradient for mu or logvar",
             "gradients reach mu and logvar", grad_hint)
    _close(logvar.grad, (0.5 * torch.exp(0.5 * logvar) * eps).detach(), rtol=1e-6, atol=1e-12, hint=grad_hint)

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


# --------------------------------------------------------------------------- isolation and grading

def isolated(name: str, ns: Mapping[str, Any]) -> Callable:
    """The student's ``ns[name]``, rebuilt so that the other checklist names resolve to the references.

    A plain Python function gets a new globals dict: a copy of its own
    globals (the student's namespace, for a function defined in a notebook
    cell) with the other ten checklist functions replaced by ``labcode``'s;
    defaults, keyword defaults and closure are kept. Other callables are
    returned as they are.
    """
    f = ns[name]
    if not isinstance(f, types.FunctionType):
        return f
    scope = dict(f.__globals__)
    scope.update({item.name: item.reference for item in CHECKLIST if item.name != name})
    g = types.FunctionType(f.__code__, scope, f.__name__, f.__defaults__, f.__closure__)
    g.__kwdefaults__ = f.__kwdefaults__
    g.__dict__.update(f.__dict__)
    return g


@contextlib.contextmanager
def _grading_threads() -> Iterator[None]:
    """One intra-op thread: the checks use small tensors, for which extra threads only add contention."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def grade_namespace(ns: Mapping[str, Any]) -> list[Result]:
    """Grade the eleven checklist functions found in ``ns`` (a student's globals); one :class:`Result` each.

    Called from a cell of a notebook that the grader is executing, it returns
    ``[]`` (that notebook is graded once, after all its cells have run).
    """
    if _executing_student_code:
        return []
    results = []
    with _grading_threads():
        for item in CHECKLIST:
            check, expected = CHECKS[item.name]
            start = time.perf_counter()
            if item.name not in ns:
                results.append(Result(item.name, False, "not defined", expected, f"define {item.name}"))
                continue
            if not callable(ns[item.name]):
                results.append(Result(item.name, False, f"not a function ({type(ns[item.name]).__name__})",
                                      expected, f"define {item.name} with def"))
                continue
            try:
                measured, expected = check(isolated(item.name, ns))
                result = Result(item.name, True, measured, expected)
            except CheckFailed as fail:
                result = Result(item.name, False, fail.measured, fail.expected, fail.hint)
            except NotImplementedError as err:
                untouched = str(err) == f"TODO: implement {item.name}"
                measured = "not implemented (TODO)" if untouched else f"NotImplementedError: {err}"
                result = Result(item.name, False, measured, expected, "replace the TODO body")
            except Exception as err:
                result = Result(item.name, False, f"{type(err).__name__}: {err}", expected,
                                "it raised an error; see the TODO hints: " + item.hints[0])
            results.append(replace(result, seconds=time.perf_counter() - start))
    return results


@dataclass(frozen=True)
class CellError:
    """A code cell that raised while the student's file ran."""

    index: int
    error: str


def code_cells(path: Path) -> list[str]:
    """The code cells of a notebook (``.ipynb``, MyST ``.md``) or module (``.py``, one cell)."""
    suffix = path.suffix.lower()
    if suffix == ".py":
        return [path.read_text(encoding="utf-8")]
    if suffix == ".ipynb":
        import nbformat
        nb = nbformat.read(path, as_version=4)
    elif suffix == ".md":
        import jupytext
        nb = jupytext.read(path)
    else:
        raise ValueError(f"path must be a .ipynb, .md or .py file, got {path.name!r}")
    return [cell.source for cell in nb.cells if cell.cell_type == "code"]


def _strip_magics(source: str) -> str:
    """Drop IPython magics and shell escapes (lines starting with % or !)."""
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())


def run_cells(cells: list[str], *, name: str = "__main__") -> tuple[dict[str, Any], list[CellError]]:
    """Run ``cells`` in order in one fresh namespace; a cell that raises is recorded and skipped.

    The cells' printed output is discarded; matplotlib draws off screen.
    """
    global _executing_student_code
    os.environ.setdefault("MPLBACKEND", "Agg")
    ns: dict[str, Any] = {"__name__": name}
    errors = []
    _executing_student_code = True
    try:
        for index, source in enumerate(cells):
            sink = io.StringIO()
            try:
                code = compile(_strip_magics(source), f"<cell {index + 1}>", "exec")
                with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                    exec(code, ns)
            except (Exception, SystemExit) as err:   # a cell calling exit() must not end the grading
                errors.append(CellError(index + 1, f"{type(err).__name__}: {err}"))
    finally:
        _executing_student_code = False
    return ns, errors


def grade_path(path: str | Path) -> list[Result]:
    """Run the student's file (see :func:`code_cells`) and grade its namespace."""
    return grade_path_verbose(path)[0]


def grade_path_verbose(path: str | Path) -> tuple[list[Result], list[CellError]]:
    """:func:`grade_path`, also returning the cells that raised."""
    path = Path(path)
    cells = code_cells(path)
    ns, errors = run_cells(cells, name="__main__" if path.suffix.lower() != ".py" else "__student__")
    return grade_namespace(ns), errors


# --------------------------------------------------------------------------- the report

def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def format_report(results: list[Result], errors: list[CellError] = ()) -> str:
    """The grading table (function, result, measured, expected, hint on failure) and the score."""
    lines = []
    for err in errors:
        lines.append(f"note: cell {err.index} raised {_clip(err.error, 100)}")
    if errors:
        lines.append("")
    if not results:
        return "\n".join([*lines, "nothing graded"])
    widths = (max(len(r.name) for r in results), 4, 44, 40)
    header = ("function", "", "measured", "expected")
    lines.append("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + "  hint")
    lines.append("  ".join("-" * w for w in widths) + "  ----")
    for r in results:
        cells = (r.name, "pass" if r.passed else "FAIL", _clip(r.measured, widths[2]), _clip(r.expected, widths[3]))
        row = "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True))
        lines.append((row + "  " + " ".join(r.hint.split())) if not r.passed else row.rstrip())
    score = sum(r.passed for r in results)
    lines.append("")
    lines.append(f"Score: {score}/{len(results)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line: grade PATH, print the table; exit status 0 only if every check passes."""
    parser = argparse.ArgumentParser(prog="python -m labcode.grade", description=__doc__.split("\n\n")[0])
    parser.add_argument("path", type=Path, help="the student's notebook (.ipynb, MyST .md) or module (.py)")
    args = parser.parse_args(argv)
    if not args.path.is_file():
        print(f"error: no such file: {args.path}", file=sys.stderr)
        return 2
    try:
        results, errors = grade_path_verbose(args.path)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(format_report(results, errors))
    return 0 if results and all(r.passed for r in results) else 1


if __name__ == "__main__":
    # Run the imported module's main, so that a notebook cell that imports
    # labcode.grade sees the same module state (_executing_student_code).
    from labcode.grade import main as _main

    sys.exit(_main())
