"""The autograder's checks: one per function of the lab's checklist (:data:`labcode.lab.checklist.CHECKLIST`).

Each check calls the student's function on seeded inputs and compares the result
with an independent reference (``torch.distributions``, a closed form, ``labcode``)
at a stated tolerance. It returns ``(measured, expected)`` in words, or raises
:class:`CheckFailed` with a hint. :mod:`labcode.lab.runner` runs them.
Used by the lab (``python -m labcode.grade``) and the appendix "Checklist".

Each check tests the lesson of its chapter, not only the formula: the marginal
likelihood where single densities exceed float32's range (in float32 only an average
in log space survives), the Monte Carlo KL of three independent coordinates, the closed
form on Python numbers and on mixed numbers and tensors, the ELBO of a model whose
decoder variance is not 1, reproducible noise from a ``generator``, and the ELBO
(β = 1) reported by a β-VAE whatever β it was trained with.

The *expected* texts state the property that is checked, never the answer's
formula. A failure's hint names the likely mistake where the check can tell it
(variance for standard deviation, a probability average that overflows, a mean
over coordinates, ``torch.log`` on a number, ...) and points to the section of the
chapter that teaches the lesson (:func:`see`); it never gives a line of the solution.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torch.distributions import MultivariateNormal, Normal, kl_divergence

from ..data import make_spiral
from ..elbo import reconstruction_loss
from ..kl import standard_normal_kl
from ..vae import VAE, VAEConfig, evaluate_vae
from .checklist import BY_NAME, CHAPTER_TITLES

#: optimiser steps per β in the β-VAE check. Measured on a 2-core CPU: the
#: reference trains the three models in 1-3 s and ends with a mean KL of
#: 46.1, 1.8 and 0.0 for β = 0, 1, 10 (45.6, 2.5 and 0.0 after 1500 steps);
#: a plain Adam loop around compute_elbo gives 38.0, 1.8, 0.0 in 2-4 s. The
#: trend is already unmistakable.
BETA_STEPS = 400
BETA_VALUES = (0.0, 1.0, 10.0)

#: the decoder log-variance of the model in the compute_elbo check: not 0, so that an ELBO that leaves the
#: decoder's variance out (unit variance) differs from the model's
DECODER_LOGVAR = -0.7

#: the sections of the chapters that teach the lessons: key -> (chapter, ``book/<chapter>.md``; section title)
SECTIONS: dict[str, tuple[str, str]] = {
    "model": ("likelihood", "The model and its evidence"),
    "monte_carlo": ("likelihood", "The simple Monte Carlo estimator"),
    "log_space": ("likelihood", "The implementation"),
    "underflow": ("likelihood", "Probabilities underflow, log-probabilities do not"),
    "kl_monte_carlo": ("kl", "Monte Carlo estimation"),
    "kl_closed_form": ("kl", "Two Gaussians in closed form"),
    "kl_product": ("kl", "Diagonal Gaussians and the standard normal"),
    "reparameterisation": ("gradients", "The reparameterisation trick"),
    "vae_model": ("elbo", "The model"),
    "two_terms": ("elbo", "The two terms"),
    "beta": ("two_forces", "The β-VAE objective"),
}

#: the section a function's crash hint points to (:func:`crash_hint`)
FUNCTION_SECTIONS: dict[str, str] = {
    "sample_prior": "model",
    "likelihood_given_z": "model",
    "approximate_marginal_likelihood": "log_space",
    "monte_carlo_kl": "kl_monte_carlo",
    "gaussian_kl_closed_form": "kl_closed_form",
    "standard_normal_kl": "kl_product",
    "reparameterize": "reparameterisation",
    "reconstruction_loss": "two_terms",
    "kl_regularization": "two_terms",
    "compute_elbo": "two_terms",
    "analyze_beta_vae": "beta",
}


class CheckFailed(Exception):
    """A check's verdict: the measured and the expected value and a hint."""

    def __init__(self, measured: str, expected: str, hint: str) -> None:
        super().__init__(f"{measured} (expected {expected})")
        self.measured, self.expected, self.hint = measured, expected, hint


def see(key: str) -> str:
    """Where the chapters teach the lesson ``key`` of :data:`SECTIONS`: ``see “Chapter”, § Section``."""
    chapter, section = SECTIONS[key]
    return f"see “{CHAPTER_TITLES[chapter]}”, § {section}"


def crash_hint(name: str) -> str:
    """The hint of a row whose function raised an error: the section of the chapter that teaches it."""
    return f"it raised an error (the message is in the measured column); {see(FUNCTION_SECTIONS[name])}"


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


def _matches(actual: Tensor, wrong: Tensor, *, rtol: float = 1e-4, atol: float = 1e-8) -> bool:
    """Whether ``actual`` is ``wrong`` (a likely mistake's result) within the tolerance."""
    return (tuple(actual.shape) == tuple(wrong.shape) and bool(torch.isfinite(actual).all())
            and torch.allclose(actual.double(), wrong.double(), rtol=rtol, atol=atol))


def _name_mistake(actual: Tensor, expected: Tensor, mistakes: list[tuple[str, Tensor, str]]) -> None:
    """Fail with the hint of the first mistake ``(label, its result, hint)`` that ``actual`` reproduces."""
    for label, wrong, hint in mistakes:
        if _matches(actual, wrong):
            raise CheckFailed(f"{actual.flatten()[0].item():.4g} ({label})",
                              f"{expected.flatten()[0].item():.4g}", hint)


def _call(f: Callable, args: tuple, kwargs: dict[str, Any], expected: str,
          diagnose: Callable[[str], str | None]) -> Any:
    """``f(*args, **kwargs)``; an error that ``diagnose`` recognises (from ``"Type: message"``) fails the check
    with the hint it returns, any other error propagates (the runner's crash hint)."""
    try:
        return f(*args, **kwargs)
    except (CheckFailed, NotImplementedError):
        raise
    except Exception as err:
        from .runner import error_message, error_name  # the runner imports this module
        measured = f"{error_name(err)}: {error_message(err)}"
        hint = diagnose(measured)
        if hint is None:
            raise
        raise CheckFailed(measured, expected, hint) from None


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


def _same_seed_same_draws(draw: Callable[[int], Any], shape: tuple[int, ...], what: str, hint: str) -> None:
    """Fail unless ``draw(seed)`` gives the same tensor for the same seed twice and another for another seed."""
    first = _tensor(draw(1), shape, what, hint)
    again, other = draw(1), draw(2)
    _require(isinstance(again, Tensor) and torch.equal(again.detach(), first), f"{what}, seed 1 twice: different",
             "the same draws for the same seed", hint)
    _require(isinstance(other, Tensor) and not torch.equal(other.detach(), first), f"{what}, seeds 1 and 2: the same",
             "other draws for another seed", hint)


# --------------------------------------------------------------------------- the checks
# Each check takes the student's function and returns (measured, expected) if
# it passes, or raises CheckFailed.

def check_sample_prior(f: Callable) -> tuple[str, str]:
    """``sample_prior``: 100000 draws in 3 dimensions have mean 0 and covariance I (within 0.02); the same seed gives the same draws, another seed others."""
    n, d = 100_000, 3
    hint = "the prior p(z) is the standard normal N(0, I): independent standard normal entries; " + see("model")
    z = _tensor(f(n, d, generator=_gen(0)), (n, d), "sample_prior(100000, 3)", hint)
    _require(z.is_floating_point(), f"dtype {z.dtype}", "a floating-point tensor", hint)
    zd = z.double()
    mean, cov = zd.mean(0), torch.cov(zd.T)
    mean_err = mean.abs().max().item()
    cov_err = (cov - torch.eye(d, dtype=torch.float64)).abs().max().item()
    if (mean - 0.5).abs().max() <= 0.02 and (cov.diagonal() - 1 / 12).abs().max() <= 0.01:
        raise CheckFailed(f"max |mean| {mean_err:.3f}: mean ½, variance 1/12", "mean 0, covariance I",
                          "uniform draws on [0, 1) (rand, not randn): the prior is the standard normal; " + see("model"))
    _require(mean_err <= 0.02, f"max |mean| {mean_err:.3f}", "≤ 0.02 (mean 0)", hint)
    _require(cov_err <= 0.02, f"max |cov − I| {cov_err:.3f}", "≤ 0.02 (covariance I)", hint)
    _same_seed_same_draws(lambda seed: f(1000, d, generator=_gen(seed)), (1000, d), "sample_prior(1000, 3)",
                          "take the randomness from the generator passed in: the same seed must give the same "
                          "samples, so that every result can be reproduced; " + see("model"))
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
        per_coordinate = Normal(mean, sigma).log_prob(x)
        log_p = per_coordinate.sum(-1)
        expected = log_p.exp()
    hint = ("p(x | z) is the Gaussian density of x with mean decoder(z) and standard deviation noise_std in each of "
            "the independent coordinates, one value per row; " + see("model"))
    out = f(decoder, x, z, sigma)
    _require(not (isinstance(out, Tensor) and tuple(out.shape) == (batch, 2)), f"p(x|z): shape {(batch, 2)}",
             f"shape ({batch},)", "one density per row, not one per coordinate: the densities of independent "
             "coordinates multiply (their log-densities add); " + see("model"))
    got = _tensor(out, (batch,), "p(x|z)", hint)
    _name_mistake(got, expected, [
        ("the log-density", log_p, "return the likelihood p(x | z), the density itself, not its logarithm; "
                                   + see("model")),
        ("noise_std as the variance", Normal(mean, math.sqrt(sigma)).log_prob(x).sum(-1).exp(),
         "noise_std is the standard deviation σ, not the variance σ²; " + see("model")),
        ("the coordinates averaged", per_coordinate.mean(-1).exp(),
         "the log-densities of independent coordinates add, they are not averaged; " + see("model")),
    ])
    return _close(got, expected, rtol=1e-4, atol=1e-12, hint=hint), "Gaussian density p(x|z), rtol 1e-4"


#: the data size D of the narrow decoder of the log-space check (:func:`narrow_decoder`)
NARROW_DATA_DIM = 32
#: its latent size
NARROW_LATENT_DIM = 2
#: the logarithm of its largest density (2πσ²)^(−D/2), beyond float32's largest number e^88.72
NARROW_LOG_PEAK = 90.0
#: s²/σ², the variance the prior's spread gives the decoder's mean (its weights' scale s, squared) in units of its
#: noise variance σ²
NARROW_RATIO = 10.0


def narrow_decoder() -> tuple[nn.Linear, float, Tensor, Tensor]:
    """A linear decoder in float32 whose densities p(x | z) exceed float32's range while p(x) does not.

    f(z) = Wz + b with W = s·Q (Q: 32 × 2 with orthonormal columns) and noise σ such that the largest density
    (2πσ²)^(−D/2) is e^90, beyond float32's largest number e^88.72. Then x ~ N(b, WWᵀ + σ²I) exactly, and at
    x = b + W z₀ the log-weights are log p(x | z) = 90 − (s²/σ²)‖z − z₀‖²/2, so
    log p(x) = 90 − log(1 + s²/σ²) − (s²/σ²)‖z₀‖²/(2(1 + s²/σ²)) = 87.54 and 87.42 at the two points:
    representable (3.3 and 3.7 times below the largest float32), while the prior draws near z₀ have
    p(x | z) ≈ e^90, 3.6 times too large.

    Returns:
        (decoder, σ, x (2, 32) float32, the exact p(x) (2,) float64).
    """
    d_x, d_z = NARROW_DATA_DIM, NARROW_LATENT_DIM
    sigma = math.exp(-(NARROW_LOG_PEAK / d_x + 0.5 * math.log(2 * math.pi)))
    g = _gen(15)
    q, _ = torch.linalg.qr(torch.randn(d_x, d_z, generator=g, dtype=torch.float64))
    w = math.sqrt(NARROW_RATIO) * sigma * q
    b = 0.5 * torch.randn(d_x, generator=g, dtype=torch.float64)
    z0 = torch.tensor([[0.3, -0.2], [-0.5, 0.4]], dtype=torch.float64)
    x = b + z0 @ w.T
    cov = w @ w.T + sigma**2 * torch.eye(d_x, dtype=torch.float64)
    exact = MultivariateNormal(b, cov).log_prob(x).exp()
    decoder = nn.Linear(d_z, d_x)
    with torch.no_grad():
        decoder.weight.copy_(w.float())
        decoder.bias.copy_(b.float())
    return decoder, sigma, x.float(), exact


def check_approximate_marginal_likelihood(f: Callable) -> tuple[str, str]:
    """``approximate_marginal_likelihood``: with a linear decoder, :math:`p(x)` is Gaussian and known exactly; the
    estimate is within 5 %, also for a narrow decoder in float32 whose single densities overflow float32."""
    # 1. A linear decoder f(z) = Wz + b makes x ~ N(b, WWᵀ + σ²I) exactly. At
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
    hint = ("p̂ is the average of p(x | z_k) over K draws z_k from the prior, computed in log space; "
            + see("monte_carlo"))
    got = _tensor(f(decoder, x, k, sigma, generator=_gen(3)), (2,), "p̂_K(x)", hint)
    _require(bool(torch.isfinite(got).all()), f"p̂ = {_fmt(got)}", f"p = {_fmt(exact)}", hint)
    rel = (got.double() / exact - 1).abs()
    _require(bool((rel < 0.05).all()), f"p̂ = {_fmt(got)}", f"p = {_fmt(exact)} ± 5%", hint)

    # 2. Where, in float32, only an average in log space works. p̂ is a probability density, so a point where
    # every p(x | z_k) underflows has a p̂ that underflows as well (an average is at most its largest term): there
    # p(x)'s float32 value is 0 too. What an average of probabilities gets wrong, and log space right, is a point
    # where single terms leave float32's range and the average does not: the narrow decoder's densities
    # reach e^90 > 3.4e38 = e^88.72, while p(x) = 1.05e38 and 9.2e37. Measured with K = 1e5: the reference
    # and an average in log space (log-sum-exp − log K, then exp) are within 0.6% of p(x) with the check's
    # seed and within 1.9% for seeds 0-9 (the tolerance is 5%); an average of probabilities (exp, then
    # mean) gives p̂ = inf at both points.
    narrow, narrow_sigma, x32, exact32 = narrow_decoder()
    k32 = 100_000
    got32 = _tensor(f(narrow, x32, k32, narrow_sigma, generator=_gen(16)), (2,),
                    "p̂_K(x), narrow decoder in float32", hint)
    peak = f"e^{NARROW_LOG_PEAK:g}"
    if torch.isinf(got32).any():
        raise CheckFailed(f"p̂ = {_fmt(got32)}", f"p = {_fmt(exact32)}, finite",
                          f"an average of probabilities overflows: this narrow decoder's densities p(x | z_k) reach "
                          f"{peak}, beyond float32's largest number, although p(x) itself fits; average in log "
                          f"space and exponentiate only the estimate; " + see("log_space"))
    if (got32 == 0).any():
        raise CheckFailed(f"p̂ = {_fmt(got32)}", f"p = {_fmt(exact32)} (positive)",
                          "p̂ = 0, although no log-density at this point is below float32's smallest number: look for "
                          "a sign error or a wrong scale in the log-densities, or a sum where the log-sum-exp belongs; "
                          + see("underflow"))
    _require(bool(torch.isfinite(got32).all()), f"p̂ = {_fmt(got32)}", f"p = {_fmt(exact32)}", hint)
    rel32 = (got32.double() / exact32 - 1).abs()
    _require(bool((rel32 < 0.05).all()), f"narrow decoder: p̂ = {_fmt(got32)}", f"p = {_fmt(exact32)} ± 5%", hint)
    return f"rel err {rel.max().item():.1e}; narrow decoder {rel32.max().item():.1e}", CHECKS["approximate_marginal_likelihood"][1]


def check_monte_carlo_kl(f: Callable) -> tuple[str, str]:
    """``monte_carlo_kl``: the estimates from 1e5 samples are within 0.01 of the closed form for the lab's
    Gaussians, and within 0.05 of the joint KL for three independent coordinates given per coordinate, (N, 3)."""
    n = 100_000
    p, q = Normal(0.0, 0.5), Normal(1.0, 1.5)
    samples = 0.5 * torch.randn(n, generator=_gen(4))
    exact = kl_divergence(p, q).item()
    hint = "the average, over the samples drawn from p, of the log-density ratio log p − log q; " + see("kl_monte_carlo")
    got = _scalar(f(samples, p.log_prob, q.log_prob), "KL estimate", hint)
    _require(abs(got / n - exact) > 0.01, f"{got:.4g} (N times the KL)", f"{exact:.4f} ± 0.01",
             "the log-ratios are summed over the samples, not averaged; " + see("kl_monte_carlo"))
    _require(abs(got - exact) <= 0.01, f"{got:.4f}", f"{exact:.4f} ± 0.01", hint)

    # Three independent coordinates, the log-densities given per coordinate, (N, 3): the joint log-density is
    # their sum, and the joint KL the sum of the coordinates' KLs (3.367). The standard error of the estimate
    # is 0.012 (seeds 18-21); the tolerance is four of them. The mean over all N·3 log-ratios gives 1.12, the
    # average coordinate's KL.
    p3 = Normal(torch.tensor([0.0, 1.0, -0.5]), torch.tensor([0.5, 1.0, 2.0]))
    q3 = Normal(torch.tensor([1.0, 0.0, 0.5]), torch.tensor([1.5, 0.7, 1.0]))
    samples3 = p3.loc + p3.scale * torch.randn(n, 3, generator=_gen(18))
    exact3 = kl_divergence(p3, q3).sum().item()
    hint3 = ("one number, the KL of the joint distribution: the log-density of independent coordinates is the sum "
             "of theirs, and so is the KL; " + see("kl_product"))
    got3 = _scalar(f(samples3, p3.log_prob, q3.log_prob), "KL estimate, 3 coordinates", hint3)
    _require(abs(got3 - exact3 / 3) > 0.05 / 3, f"{got3:.4f} (the KL / 3)", f"{exact3:.4f} ± 0.05",
             "averaged over the 3 coordinates as well as over the samples: the log-density of independent "
             "coordinates is the sum of theirs, so the joint KL is the sum of the coordinates' KLs; "
             + see("kl_product"))
    _require(abs(got3 - exact3) <= 0.05, f"3 coordinates: {got3:.4f}", f"{exact3:.4f} ± 0.05", hint3)
    return f"{got:.4f}; 3 coordinates {got3:.4f}", f"{exact:.4f} ± 0.01; {exact3:.4f} ± 0.05 (N = 1e5)"


def _number_or_tensor(measured: str) -> str | None:
    """The hint for an error of a math function given the wrong kind of argument, if ``measured`` is one."""
    if "must be Tensor, not" in measured or re.search(r"'(float|int)' object has no attribute", measured):
        return ("a torch function or tensor method (torch.log, ...) was given a Python number: the function is also called with "
                "plain numbers, as the chapter does, and with numbers mixed with tensors; make every argument a "
                "tensor first; " + see("kl_closed_form"))
    if "only one element tensors can be converted" in measured or "cannot be converted to Scalar" in measured:
        return ("a function of the math module (math.log, ...) was given a tensor of many values: it takes one "
                "number, and the KL must work elementwise on tensors and broadcast; " + see("kl_closed_form"))
    return None


def check_gaussian_kl_closed_form(f: Callable) -> tuple[str, str]:
    """``gaussian_kl_closed_form``: torch's ``kl_divergence`` on a broadcast grid of means and widths, on Python
    numbers, and on numbers mixed with tensors, rtol 1e-5."""
    dt = torch.float64
    mu1 = torch.linspace(-2, 2, 5, dtype=dt)[:, None]               # (5, 1)
    sigma1 = torch.tensor([0.3, 1.0, 2.5, 0.8], dtype=dt)             # (4,)
    mu2 = torch.tensor(0.0, dtype=dt)                                 # ()
    sigma2 = torch.tensor([0.5, 2.0, 1.0, 0.7, 3.0], dtype=dt)[:, None]   # (5, 1); element (2, 1) holds p = q
    expected = kl_divergence(Normal(mu1, sigma1), Normal(mu2, sigma2))
    hint = ("KL(N(μ₁, σ₁²) ‖ N(μ₂, σ₂²)) in closed form, elementwise, for tensors of broadcastable shapes and for "
            "numbers; " + see("kl_closed_form"))
    what = "KL on a (5,1)×(4,)×()×(5,1) grid"
    got = _tensor(_call(f, (mu1, sigma1, mu2, sigma2), {}, "the KL of every pair, shape (5, 4)", _number_or_tensor),
                  (5, 4), what, hint)
    if bool(torch.isfinite(got).all()) and got.min() < -1e-9:
        raise CheckFailed(f"min {got.min().item():.4g} (negative)", "≥ 0 everywhere (Gibbs' inequality)",
                          "a KL divergence is never negative: look at the ratio inside the logarithm; "
                          + see("kl_closed_form"))
    grid = _close(got, expected, rtol=1e-5, atol=1e-10, hint=hint)

    # Python numbers, as the chapter calls it, and numbers mixed with tensors (broadcast to (2, 3))
    numbers = (0.5, 0.8, -1.0, 1.5)
    exact = kl_divergence(Normal(*(torch.tensor(v, dtype=dt) for v in numbers[:2])),
                          Normal(*(torch.tensor(v, dtype=dt) for v in numbers[2:]))).item()
    args = "(" + ", ".join(f"{v:g}" for v in numbers) + ")"
    value = _call(f, numbers, {}, f"{exact:.6g} for {args}", _number_or_tensor)
    got_numbers = _scalar(value, f"KL of the numbers {args}", hint)
    _require(abs(got_numbers - exact) <= 1e-5 * abs(exact), f"{got_numbers:.6g} for the numbers {args}",
             f"{exact:.6g} (rtol 1e-5)", hint)
    mixed = (torch.tensor([-1.0, 0.0, 2.0], dtype=dt), 0.7, -0.5, torch.tensor([[0.6], [1.8]], dtype=dt))
    expected_mixed = kl_divergence(Normal(mixed[0], mixed[1]), Normal(mixed[2], mixed[3]))
    got_mixed = _tensor(_call(f, mixed, {}, "shape (2, 3)", _number_or_tensor), (2, 3),
                        "KL of (3,) tensor, number, number, (2,1) tensor", hint)
    _close(got_mixed, expected_mixed, rtol=1e-5, atol=1e-10, hint=hint)
    return f"{grid}; numbers {abs(got_numbers / exact - 1):.0e}", CHECKS["gaussian_kl_closed_form"][1]


def _check_kl_to_standard_normal(f: Callable, seed: int, shape: tuple[int, int]) -> tuple[str, str]:
    g = _gen(seed)
    mu = torch.randn(shape, generator=g, dtype=torch.float64)
    logvar = 0.7 * torch.randn(shape, generator=g, dtype=torch.float64)
    per_coordinate = kl_divergence(Normal(mu, torch.exp(0.5 * logvar)), Normal(0.0, 1.0))
    expected = per_coordinate.sum(-1)
    hint = ("KL(N(μ, diag σ²) ‖ N(0, I)) in closed form, with logvar = log σ², one value per row; "
            + see("kl_product"))
    summed = ("one KL per row: the KL of independent coordinates is the sum of the coordinates' KLs, over the "
              "last (latent) dimension; " + see("kl_product"))
    out = f(mu, logvar)
    _require(not (isinstance(out, Tensor) and tuple(out.shape) == shape), f"KL: shape {shape}",
             f"shape ({shape[0]},)", summed)
    got = _tensor(out, (shape[0],), f"KL for {shape} inputs", hint)
    _name_mistake(got, expected, [("the mean over the coordinates", per_coordinate.mean(-1), summed)])
    return _close(got, expected, rtol=1e-5, atol=1e-10, hint=hint), "torch kl_divergence summed, rtol 1e-5"


def check_standard_normal_kl(f: Callable) -> tuple[str, str]:
    """``standard_normal_kl``: :math:`\\mathrm{KL}(q \\,\\|\\, \\mathcal N(0, I))` summed over the latent dimension, against torch's ``kl_divergence``."""
    return _check_kl_to_standard_normal(f, 5, (8, 3))


def check_kl_regularization(f: Callable) -> tuple[str, str]:
    """``kl_regularization``: the same KL to the standard normal as :func:`check_standard_normal_kl`, on other inputs."""
    return _check_kl_to_standard_normal(f, 6, (16, 2))


def check_reparameterize(f: Callable) -> tuple[str, str]:
    """``reparameterize``: exact for a given ``eps``, gradients reach ``mu`` and ``logvar``, 1e5 draws have the
    right mean and variance, and the same ``generator`` seed gives the same draws."""
    dt = torch.float64
    g = _gen(7)
    mu = torch.randn(4, 2, generator=g, dtype=dt).requires_grad_()
    logvar = (0.5 * torch.randn(4, 2, generator=g, dtype=dt)).requires_grad_()
    eps = torch.randn(4, 2, generator=g, dtype=dt)
    hint = ("z is the draw of N(μ, σ²) made from the given noise ε, with logvar = log σ²; "
            + see("reparameterisation"))
    z, grads = call_with_grad(f, (mu, logvar), {"eps": eps}, wrt=(0, 1))    # grads of z.sum()
    mu_, logvar_ = mu.detach(), logvar.detach()
    expected = mu_ + torch.exp(0.5 * logvar_) * eps
    got = _tensor(z, (4, 2), "z for given eps", hint)
    _name_mistake(got, expected, [
        ("noise scaled by the variance", mu_ + torch.exp(logvar_) * eps,
         "the noise is scaled by the variance instead of the standard deviation (logvar is the log of the "
         "variance σ²); " + see("reparameterisation")),
        ("noise scaled by logvar", mu_ + logvar_ * eps,
         "logvar is the log of the variance, not the standard deviation; " + see("reparameterisation")),
    ])
    _close(got, expected, rtol=1e-6, atol=1e-12, hint=hint)
    grad_hint = ("build z from mu and logvar with tensor operations (no detach, no torch.normal, no no_grad), so "
                 "that gradients reach both; " + see("reparameterisation"))
    _require(z.requires_grad and grads is not None, "z has no gradient", "gradients reach mu and logvar", grad_hint)
    mu_grad, logvar_grad = grads
    _require(mu_grad is not None and logvar_grad is not None, "no gradient for mu or logvar",
             "gradients reach mu and logvar", grad_hint)
    _close(logvar_grad, (0.5 * torch.exp(0.5 * logvar_) * eps), rtol=1e-6, atol=1e-12, hint=grad_hint)

    n = 100_000
    mu0 = torch.tensor([1.0, -0.5], dtype=dt)
    logvar0 = torch.tensor([0.5, -0.2], dtype=dt)
    z = _tensor(f(mu0.expand(n, 2), logvar0.expand(n, 2), generator=_gen(8)), (n, 2), "1e5 samples", hint)
    noise = (z.double() - mu0) / torch.exp(0.5 * logvar0)
    mean_err = (z.double().mean(0) - mu0).abs().max().item()
    var_rel = (z.double().var(0) / logvar0.exp() - 1).abs().max().item()
    if (noise.mean(0) - 0.5).abs().max() <= 0.02:
        raise CheckFailed(f"(z − μ)/σ has mean {noise.mean().item():.3f}", "mean 0 (standard normal noise)",
                          "uniform noise on [0, 1) (rand, not randn): ε is standard normal; "
                          + see("reparameterisation"))
    _require(mean_err <= 0.02, f"max |mean − μ| {mean_err:.3f}", "≤ 0.02",
             "when eps is None, draw ε from the standard normal N(0, I); " + see("reparameterisation"))
    _require(var_rel <= 0.02, f"variance off by {100 * var_rel:.1f}%", "the variance within 2%", hint)
    _same_seed_same_draws(lambda seed: f(mu0.expand(1000, 2), logvar0.expand(1000, 2), generator=_gen(seed)),
                          (1000, 2), "z of 1000 draws",
                          "when eps is None, draw ε from the generator passed in: the same seed must give the same "
                          "z, so that training and every figure can be reproduced; " + see("reparameterisation"))
    return (f"|mean−μ| {mean_err:.3f}, var {100 * var_rel:.1f}% off",
            "given ε exact; ±0.02, ±2%; seeded; grads")


def check_reconstruction_loss(f: Callable) -> tuple[str, str]:
    """``reconstruction_loss``: the Gaussian log-likelihood summed over the last dimension (not negated), rtol 1e-5."""
    dt = torch.float64
    g = _gen(9)
    x, x_mu = torch.randn(6, 3, generator=g, dtype=dt), torch.randn(6, 3, generator=g, dtype=dt)
    x_logvar = 0.5 * torch.randn(6, 3, generator=g, dtype=dt)
    expected = Normal(x_mu, torch.exp(0.5 * x_logvar)).log_prob(x).sum(-1)
    hint = ("log p(x | z), the Gaussian log-density of x with mean x_mu and log-variance x_logvar, summed over "
            "the coordinates; " + see("two_terms"))
    out = f(x, x_mu, x_logvar)
    _require(not (isinstance(out, Tensor) and tuple(out.shape) == (6, 3)), "log p(x|z): shape (6, 3)", "shape (6,)",
             "one value per row: the log-densities of independent coordinates add; " + see("two_terms"))
    got = _tensor(out, (6,), "log p(x|z) for (6, 3) inputs", hint)
    _name_mistake(got, expected, [
        ("negated", -expected, "it is a log-likelihood, higher is better: do not negate it; " + see("two_terms")),
        ("without the constant", expected + 1.5 * math.log(2 * math.pi),
         "the normalising constant of the Gaussian (log 2π, per coordinate) is missing; " + see("two_terms")),
    ])
    return _close(got, expected, rtol=1e-5, atol=1e-10, hint=hint), "Gaussian log-density per row, rtol 1e-5"


def check_compute_elbo(f: Callable) -> tuple[str, str]:
    """``compute_elbo``: its terms agree with the model's encoder and decoder (whose log-variance is
    :data:`DECODER_LOGVAR`, not 0) and with labcode's ELBO terms, and its mean ELBO over many draws with
    :func:`labcode.evaluate_vae`."""
    model = VAE(generator=_gen(10))
    with torch.no_grad():
        model.decoder_logvar.fill_(DECODER_LOGVAR)
    x = make_spiral(64, 0.1, generator=_gen(11))
    hint = ("encode x, draw z from q(z | x) with the reparameterisation, decode it, and take the reconstruction "
            "term minus the KL term; " + see("two_terms"))
    out = f(model, x, generator=_gen(12))
    keys = ("elbo", "reconstruction", "kl_divergence", "mu", "logvar", "z", "x_recon")
    _require(isinstance(out, Mapping), type(out).__name__, "a dict", hint)
    missing = [k for k in keys if k not in out]
    _require(not missing, f"missing keys {missing}", "keys " + ", ".join(keys), hint)
    shapes = {"elbo": (64,), "reconstruction": (64,), "kl_divergence": (64,), "mu": (64, 2),
              "logvar": (64, 2), "z": (64, 2), "x_recon": (64, 2)}
    per_point = "one value (or one row) per data point; " + see("two_terms")
    t = {k: _tensor(out[k], shape, k, per_point) for k, shape in shapes.items()}
    _close(t["elbo"], t["reconstruction"] - t["kl_divergence"], rtol=1e-5, atol=1e-5,
           hint="elbo is the reconstruction term minus the KL term; " + see("two_terms"))
    with torch.no_grad():
        mu, logvar = model.encode(x)
        x_recon = model.decode(t["z"])
        recon = reconstruction_loss(x, x_recon, model.decoder_logvar.expand_as(x_recon))
        recon_unit = reconstruction_loss(x, x_recon, torch.zeros_like(x_recon))
    encoder_hint = "mu and logvar are the model's encoder outputs for x; " + see("vae_model")
    _close(t["mu"], mu, rtol=1e-5, atol=1e-6, hint=encoder_hint)
    _close(t["logvar"], logvar, rtol=1e-5, atol=1e-6, hint=encoder_hint)
    _close(t["x_recon"], x_recon, rtol=1e-5, atol=1e-6,
           hint="x_recon is the model's decoder mean at the sampled z; " + see("vae_model"))
    _close(t["kl_divergence"], standard_normal_kl(mu, logvar), rtol=1e-5, atol=1e-6,
           hint="kl_divergence is KL(q(z | x) ‖ p(z)) for the encoder's mu and logvar, one per point; "
                + see("two_terms"))
    if _matches(t["reconstruction"], recon_unit, rtol=1e-5, atol=1e-5):
        raise CheckFailed(f"{t['reconstruction'][0].item():.4g} (unit decoder variance)",
                          f"{recon[0].item():.4g} (decoder_logvar {DECODER_LOGVAR:g})",
                          "the reconstruction term ignores the decoder's variance: the model's decoder_logvar is "
                          f"its learned log σ_x², here {DECODER_LOGVAR:g}, not 0; " + see("vae_model"))
    _close(t["reconstruction"], recon, rtol=1e-5, atol=1e-5,
           hint="reconstruction is log p(x | z) under the model's decoder (its mean at z and its variance); "
                + see("two_terms"))
    _require(isinstance(out["elbo"], Tensor) and out["elbo"].requires_grad, "elbo has no gradient",
             "differentiable in the model's parameters",
             "do not detach or use torch.no_grad() inside: training needs the gradient; " + see("reparameterisation"))

    # Many draws in one batched call: z must be a draw from q(z|x), and the
    # mean ELBO must match labcode's (4096 draws per point). Their standard
    # error is about 0.015 (decoder_logvar −0.7); the tolerance is 0.1.
    reps = 256
    big = f(model, x.repeat(reps, 1), generator=_gen(13))
    z = _tensor(big["z"], (64 * reps, 2), "z for 256 copies of x", hint)
    std_eps = (z - mu.repeat(reps, 1)) / torch.exp(0.5 * logvar.repeat(reps, 1))
    eps_mean, eps_var = std_eps.mean().item(), std_eps.var().item()
    _require(abs(eps_mean) <= 0.05 and abs(eps_var - 1) <= 0.05, f"(z − μ)/σ: mean {eps_mean:.3f}, var {eps_var:.3f}",
             "mean 0 ± 0.05, var 1 ± 0.05",
             "z is one draw from q(z | x) per point, made with the reparameterisation and the generator; "
             + see("reparameterisation"))
    got = _tensor(big["elbo"], (64 * reps,), "elbo for 256 copies of x", hint).mean().item()
    ref = evaluate_vae(model, x, n_samples=4096, generator=_gen(14))["elbo"].mean().item()
    _require(abs(got - ref) <= 0.1, f"mean ELBO {got:.3f}", f"{ref:.3f} ± 0.1", hint)
    return f"mean ELBO {got:.2f}", f"{ref:.2f} ± 0.1; terms exact"


def elbo_is_unweighted(elbo: float, reconstruction: float, kl: float) -> bool:
    """Whether a β sweep's reported ``elbo`` is reconstruction − KL (the ELBO, β = 1) within 0.1 + 1 %: the
    tolerance of both :func:`check_analyze_beta_vae` and the end-to-end row's β stage."""
    return abs(elbo - (reconstruction - kl)) <= 0.1 + 0.01 * abs(reconstruction - kl)


def check_analyze_beta_vae(f: Callable) -> tuple[str, str]:
    """``analyze_beta_vae``: trained for β = 0, 1, 10, the KL term does not increase with β and falls by more
    than 4x, and every result's ``elbo`` is the ELBO (reconstruction − KL, β = 1) whatever the training β."""
    data = make_spiral(200, 0.1, generator=_gen(0))
    hint = ("train one VAE per β, every one from the same seed, on −reconstruction + β·KL, then evaluate it; "
            + see("beta"))
    results = f(data, BETA_VALUES, steps=BETA_STEPS, seed=0, config=VAEConfig(lr=3e-2))
    _require(isinstance(results, Mapping), type(results).__name__, "a dict {beta: result}", hint)
    kls = []
    keys = ("reconstruction", "kl_divergence", "elbo", "latent_samples", "reconstructions")
    for beta in BETA_VALUES:
        _require(beta in results, f"no result for β = {beta}", f"keys {BETA_VALUES}", hint)
        res = results[beta]
        missing = [k for k in keys if not (isinstance(res, Mapping) and k in res)]
        _require(not missing, f"β = {beta}: missing {missing}", "keys " + ", ".join(keys), hint)
        for k in ("latent_samples", "reconstructions"):
            _tensor(res[k], (200, 2), f"β = {beta}: {k}", "one row per data point; " + see("beta"))
        rec, kl, elbo = (_scalar(res[k], f"β = {beta}: {k}", "batch means as numbers; " + see("beta"))
                         for k in ("reconstruction", "kl_divergence", "elbo"))
        # the ELBO at β = 1, whatever the training β: at β = 0 the β-weighted objective is the reconstruction
        # alone, off by the KL (46 for the reference, 38 for an Adam loop around compute_elbo)
        if not elbo_is_unweighted(elbo, rec, kl):
            weighted = abs(elbo - (rec - beta * kl)) <= 1e-3 + 1e-4 * abs(rec)
            raise CheckFailed(f"β = {beta:g}: elbo {elbo:.2f}, reconstruction − KL {rec - kl:.2f}",
                              "elbo = reconstruction − KL at every β",
                              ("elbo reports the β-weighted training objective: " if weighted else "")
                              + "the ELBO is the β = 1 objective, the quantity that compares models trained with "
                              "different β; β changes what is trained, not what is reported; " + see("beta"))
        kls.append(kl)
    measured = "KL " + ", ".join(f"{kl:.2f}" for kl in kls)
    expected = "non-increasing; KL(β=10) < KL(β=0)/4"
    ok = all(b <= a + 0.05 + 0.02 * abs(a) for a, b in itertools.pairwise(kls))
    _require(ok and kls[-1] < kls[0] / 4, measured, expected,
             "the KL must fall as β grows: each model is trained on its own β; " + hint)
    return f"{measured} (β = 0, 1, 10)", "KL falls >4x with β; elbo at β = 1"


CHECKS: dict[str, tuple[Callable[[Callable], tuple[str, str]], str]] = {
    "sample_prior": (check_sample_prior, "mean 0, cov I (±0.02); same seed, same z"),
    "likelihood_given_z": (check_likelihood_given_z, "Gaussian density p(x|z), rtol 1e-4"),
    "approximate_marginal_likelihood": (check_approximate_marginal_likelihood, "exact p(x) ± 5%, also past float32"),
    "monte_carlo_kl": (check_monte_carlo_kl, "closed-form KL, 1 and 3 coordinates"),
    "gaussian_kl_closed_form": (check_gaussian_kl_closed_form, "torch KL, rtol 1e-5; numbers, broadcast"),
    "standard_normal_kl": (check_standard_normal_kl, "torch kl_divergence summed, rtol 1e-5"),
    "reparameterize": (check_reparameterize, "draws of N(μ, σ²) ±2%; seeded; grads"),
    "reconstruction_loss": (check_reconstruction_loss, "Gaussian log-density per row, rtol 1e-5"),
    "kl_regularization": (check_kl_regularization, "torch kl_divergence summed, rtol 1e-5"),
    "compute_elbo": (check_compute_elbo, "ELBO terms exact; mean ELBO ± 0.1"),
    "analyze_beta_vae": (check_analyze_beta_vae, "KL falls with β; elbo at β = 1"),
}
assert tuple(CHECKS) == tuple(BY_NAME), "one check per checklist item, in checklist order"
assert set(FUNCTION_SECTIONS) == set(CHECKS), "a section for every function's crash hint"
