"""The lab's comprehensive checks, made quantitative (Part 6; chapter "Validation"), and the KL checks of Task 3.2 (chapter "KL divergence").

Each check compares a ``labcode`` function with an independent reference (a
hand-written formula, ``torch.distributions``, an exact value or a closed-form
model) and records the result in a :class:`Check`. :func:`run_checks` runs
them all; nothing is caught, so a function that crashes makes
:func:`run_checks` crash (a crash is a failure, never "pending").
:func:`require_all_passed` turns failed checks into an ``AssertionError``.

The functions under test are imported into this module's namespace
(``validation.reparameterize`` etc.), so a test can plant a bug by
monkeypatching one of them here.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.distributions import Normal, kl_divergence

from .._checks import check_positive_int, randn
from ..elbo import reconstruction_loss, reparameterize
from ..gaussian import LinearGaussianModel
from ..jensen import jensen_gap
from ..kl import gaussian_kl_closed_form, monte_carlo_kl, monte_carlo_kl_curve, standard_normal_kl
from ..vae import VAE

Device = torch.device | str | None


@dataclass(frozen=True)
class Check:
    """One row of the validation table.

    Attributes:
        name: what is checked.
        expected: the reference value or relation, in words.
        measured: the measured quantity (a float, or a short string).
        tolerance: the allowed deviation (``0.0`` for an exact relation).
        passed: whether the measurement meets the expectation.
    """

    name: str
    expected: str
    measured: str | float
    tolerance: float
    passed: bool


def _close(name: str, value: float, reference: float, tol: float, expected: str | None = None) -> Check:
    """A check that ``|value - reference| <= tol``; ``measured`` is ``value``.

    Written as ``deviation <= tol`` so that a NaN makes the check fail.
    """
    deviation = abs(value - reference)
    return Check(name, expected or f"{reference:.6g}", value, tol, bool(deviation <= tol))


def _max_abs(a: Tensor, b: Tensor) -> float:
    return (a - b).abs().max().item()


# -- 1. Gaussian KL in closed form ------------------------------------------------------------

#: the lab's test pair (mu1, sigma1, mu2, sigma2): KL(N(0.5, 0.8²) ‖ N(0, 1))
KL_TEST_PAIR: tuple[float, float, float, float] = (0.5, 0.8, 0.0, 1.0)
#: tolerance of the checks between closed forms (float32 rounding, not sampling)
CLOSED_FORM_TOL = 1e-6


def check_gaussian_kl(device: Device = None) -> list[Check]:
    """``gaussian_kl_closed_form`` on :data:`KL_TEST_PAIR` against the lab's formula and ``torch.distributions``.

    The lab's formula is
    :math:`\\tfrac12\\big[(\\sigma_1/\\sigma_2)^2 + ((\\mu_1-\\mu_2)/\\sigma_2)^2 - 1 - 2\\log(\\sigma_1/\\sigma_2)\\big]`.
    """
    mu1, sigma1, mu2, sigma2 = (torch.tensor(v, device=device) for v in KL_TEST_PAIR)
    kl = gaussian_kl_closed_form(mu1, sigma1, mu2, sigma2).item()
    manual = 0.5 * ((sigma1 / sigma2) ** 2 + ((mu1 - mu2) / sigma2) ** 2 - 1 - 2 * torch.log(sigma1 / sigma2))
    reference = kl_divergence(Normal(mu1, sigma1), Normal(mu2, sigma2))
    return [
        _close("Gaussian KL = lab formula", kl, manual.item(), CLOSED_FORM_TOL, f"{manual.item():.6f} (lab formula)"),
        _close("Gaussian KL = torch.distributions", kl, reference.item(), CLOSED_FORM_TOL,
               f"{reference.item():.6f} (torch.distributions)"),
    ]


# -- 2. Jensen's inequality ---------------------------------------------------------------------

#: the lab's three values: X uniform on {1, 4, 9}
JENSEN_VALUES: tuple[float, ...] = (1.0, 4.0, 9.0)


def check_jensen() -> list[Check]:
    """Jensen on :math:`X` uniform on {1, 4, 9}: :math:`\\log \\E X - \\E \\log X = \\log\\tfrac{14}{3} - \\tfrac23\\log 6 > 0`."""
    if JENSEN_VALUES != (1.0, 4.0, 9.0):
        raise ValueError(f"the exact gap below is for (1, 4, 9), got JENSEN_VALUES = {JENSEN_VALUES}")
    values = torch.tensor(JENSEN_VALUES)
    gap = jensen_gap(values).item()
    log_mean, mean_log = torch.log(values.mean()).item(), torch.log(values).mean().item()
    exact = math.log(14 / 3) - 2 * math.log(6) / 3
    return [
        Check("Jensen: log E[X] ≥ E[log X]", "log-mean − mean-log ≥ 0", log_mean - mean_log, 0.0,
              bool(log_mean >= mean_log)),
        _close("Jensen gap on {1, 4, 9}", gap, exact, CLOSED_FORM_TOL, f"log(14/3) − (2/3) log 6 = {exact:.6f}"),
    ]


# -- 3. The ELBO's decomposition ----------------------------------------------------------------

#: number of random points on which the ELBO's decomposition is checked
DECOMPOSITION_POINTS = 5


def check_elbo_decomposition(*, generator: torch.Generator, device: Device = None) -> list[Check]:
    """``VAE.compute_elbo`` on :data:`DECOMPOSITION_POINTS` random points of an untrained VAE, term by term.

    Reference: :math:`\\log \\mathcal N(x;\\ \\hat x,\\ \\sigma_x^2 I)` and
    :math:`\\mathrm{KL}(q\\,\\|\\,\\mathcal N(0, I))` from ``torch.distributions``,
    with the returned ``z`` and ``x_recon``; the ELBO must equal their difference.
    """
    model = VAE(2, 2, 32, generator=generator).to(device)
    x = randn((DECOMPOSITION_POINTS, 2), generator=generator, device=device)
    with torch.no_grad():
        out = model.compute_elbo(x, generator=generator)
        sigma_x = model.noise_std
        recon_ref = Normal(out["x_recon"], sigma_x).log_prob(x).sum(-1)
        kl_ref = kl_divergence(Normal(out["mu"], torch.exp(0.5 * out["logvar"])), Normal(0.0, 1.0)).sum(-1)
        decoded = model.decode(out["z"])
    return [
        _close("ELBO = reconstruction − KL", _max_abs(out["elbo"], recon_ref - kl_ref), 0.0, 1e-5,
               "max |ELBO − (log N(x; x̂, σ²I) − KL)| = 0"),
        _close("ELBO decodes its own z", _max_abs(decoded, out["x_recon"]), 0.0, 1e-6,
               "max |f(z) − x_recon| = 0"),
    ]


# -- 4. The reparameterisation trick ------------------------------------------------------------

REPARAM_MU = (1.0, -0.5)
REPARAM_LOGVAR = (0.5, -0.2)
REPARAM_SAMPLES = 100_000
REPARAM_TOL = 0.02


def check_reparameterization(*, generator: torch.Generator, device: Device = None) -> list[Check]:
    """One batched call of :math:`10^5` samples: mean :math:`\\mu`, variance :math:`e^{\\texttt{logvar}}`, gradients.

    With :math:`z = \\mu + e^{\\ell/2}\\varepsilon`,
    :math:`\\partial z/\\partial\\mu = 1` and
    :math:`\\partial z/\\partial \\ell = \\tfrac12 e^{\\ell/2}\\varepsilon = \\tfrac12 (z - \\mu)`,
    so the gradient of :math:`\\sum_k z_k` is :math:`n` for ``mu`` and
    :math:`\\tfrac12\\sum_k (z_k-\\mu)` for ``logvar``.
    """
    n = REPARAM_SAMPLES
    mu = torch.tensor(REPARAM_MU, device=device).expand(n, 2).clone().requires_grad_(True)
    logvar = torch.tensor(REPARAM_LOGVAR, device=device).expand(n, 2).clone().requires_grad_(True)
    z = reparameterize(mu, logvar, generator=generator)
    z.sum().backward()
    with torch.no_grad():
        target_mean = torch.tensor(REPARAM_MU, device=device)
        target_var = torch.exp(torch.tensor(REPARAM_LOGVAR, device=device))
        mean_dev = _max_abs(z.mean(0), target_mean)
        var_dev = _max_abs(z.var(0), target_var)
        grad_dev = max(_max_abs(mu.grad, torch.ones_like(mu)), _max_abs(logvar.grad, 0.5 * (z - mu)))
    return [
        _close("reparameterisation: mean", mean_dev, 0.0, REPARAM_TOL, "max |mean − μ| ≤ tol"),
        _close("reparameterisation: variance", var_dev, 0.0, REPARAM_TOL, "max |var − exp(logvar)| ≤ tol"),
        _close("reparameterisation: gradients", grad_dev, 0.0, 1e-5, "∂z/∂μ = 1, ∂z/∂logvar = (z − μ)/2"),
    ]


# -- 5. KL to the standard normal ----------------------------------------------------------------

#: rows (mu, logvar) of the standard-normal KL check, and the scale of their standard-normal entries
SNKL_ROWS = 1000
SNKL_SCALE = 2.0


def check_standard_normal_kl(*, generator: torch.Generator, device: Device = None) -> list[Check]:
    """``standard_normal_kl`` on :data:`SNKL_ROWS` random (mu, logvar) rows in 2-D against ``torch.distributions``."""
    mu = SNKL_SCALE * randn((SNKL_ROWS, 2), generator=generator, device=device)
    logvar = SNKL_SCALE * randn((SNKL_ROWS, 2), generator=generator, device=device)
    kl = standard_normal_kl(mu, logvar)
    reference = kl_divergence(Normal(mu, torch.exp(0.5 * logvar)), Normal(0.0, 1.0)).sum(-1)
    relative = ((kl - reference).abs() / reference.abs().clamp_min(1.0)).max().item()
    return [_close("standard-normal KL = torch.distributions", relative, 0.0, 1e-5,
                   "max relative deviation = 0")]


# -- 6. ELBO ≤ log p(x) for a linear-Gaussian model ------------------------------------------------

#: the default linear-Gaussian model: W = U diag(scales) with U the rotation by ``angle``, bias b, noise sigma_x
LINEAR_ANGLE = 0.6
LINEAR_SCALES: tuple[float, float] = (2.0, 0.7)
LINEAR_BIAS: tuple[float, float] = (0.5, -1.0)
LINEAR_NOISE = 0.4


def default_linear_model(device: Device = None) -> LinearGaussianModel:
    """The linear-Gaussian model of the bound check: :math:`W = U \\operatorname{diag}(a)` with :math:`U` the rotation by
    :data:`LINEAR_ANGLE`, :math:`a` = :data:`LINEAR_SCALES`, :math:`b` = :data:`LINEAR_BIAS`, :math:`\\sigma_x` = :data:`LINEAR_NOISE`.

    :math:`W` has orthogonal columns, so :math:`W^\\top W` and the posterior covariance are diagonal and the
    posterior is a member of the encoder's diagonal-Gaussian family
    (:meth:`labcode.gaussian.LinearGaussianModel.diagonal_posterior`).
    """
    angle = torch.tensor(LINEAR_ANGLE)
    rotation = torch.stack([torch.stack([angle.cos(), -angle.sin()]), torch.stack([angle.sin(), angle.cos()])])
    weight = rotation @ torch.diag(torch.tensor(LINEAR_SCALES))    # W = U diag(a)
    return LinearGaussianModel(weight.to(device), torch.tensor(LINEAR_BIAS, device=device), LINEAR_NOISE)


ELBO_SAMPLES = 100_000
ELBO_STDERRS = 5.0   # Monte Carlo tolerance, in standard errors
BOUND_POINTS = 5     # points drawn from the linear-Gaussian model
Q_SHIFT = 0.3        # the q that is not the posterior: mean shifted by Q_SHIFT ...
Q_SCALE = 1.2        # ... and standard deviation scaled by Q_SCALE


def monte_carlo_elbo(model: LinearGaussianModel, x: Tensor, mu: Tensor, logvar: Tensor, *,
                     n_samples: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """ELBO of :math:`q = \\mathcal N(\\mu, \\operatorname{diag} e^{\\texttt{logvar}})` built from labcode's pieces.

    :math:`\\frac1S\\sum_s \\log p(x \\mid z_s) - \\mathrm{KL}(q\\,\\|\\,p(z))` with
    :math:`z_s` from :func:`labcode.reparameterize` and the KL from
    :func:`labcode.standard_normal_kl`.

    Args:
        x, mu, logvar: (n, 2).
        n_samples: :math:`S`.

    Returns:
        (elbo, stderr), each (n,): the estimate and its Monte Carlo standard
        error (sample std of :math:`\\log p(x\\mid z_s)` over :math:`\\sqrt S`).
    """
    shape = (n_samples, *mu.shape)
    z = reparameterize(mu.expand(shape), logvar.expand(shape), generator=generator)
    log_noise_var = torch.full_like(x, 2 * math.log(model.noise_std))
    recon = reconstruction_loss(x.expand(shape), model.decode(z), log_noise_var.expand(shape))
    stderr = recon.std(0) / math.sqrt(n_samples)
    return recon.mean(0) - standard_normal_kl(mu, logvar), stderr


def check_elbo_bound(*, generator: torch.Generator, device: Device = None) -> list[Check]:
    """:math:`\\mathrm{ELBO}(x; q) \\le \\log p(x)`, with gap :math:`\\mathrm{KL}(q\\,\\|\\,p(z\\mid x))`, tight at the posterior.

    :data:`BOUND_POINTS` points drawn from the model; ``q`` is the exact posterior with its
    mean shifted by :data:`Q_SHIFT` and its standard deviation scaled by :data:`Q_SCALE`. The two
    identities are checked to within :data:`ELBO_STDERRS` Monte Carlo standard errors.
    """
    model = default_linear_model(device)
    z_true = randn((BOUND_POINTS, 2), generator=generator, device=device)
    x = model.decode(z_true) + model.noise_std * randn((BOUND_POINTS, 2), generator=generator, device=device)
    log_px = model.log_evidence(x)
    post_mu, post_logvar = model.diagonal_posterior(x)
    q_mu, q_logvar = post_mu + Q_SHIFT, post_logvar + 2 * math.log(Q_SCALE)
    elbo_q, se_q = monte_carlo_elbo(model, x, q_mu, q_logvar, n_samples=ELBO_SAMPLES, generator=generator)
    elbo_post, se_post = monte_carlo_elbo(model, x, post_mu, post_logvar, n_samples=ELBO_SAMPLES,
                                          generator=generator)
    kl_q_post = kl_divergence(Normal(q_mu, torch.exp(0.5 * q_logvar)),
                              Normal(post_mu, torch.exp(0.5 * post_logvar))).sum(-1)
    worst = (elbo_q - log_px).max().item()
    return [
        Check("ELBO ≤ log p(x)", "max (ELBO − log p(x)) < 0", worst, 0.0, bool(worst < 0)),
        _close("gap = KL(q ‖ p(z|x))", _max_abs(log_px - elbo_q, kl_q_post), 0.0,
               ELBO_STDERRS * se_q.max().item(), f"max |log p(x) − ELBO − KL| ≤ {ELBO_STDERRS:g} s.e."),
        _close("ELBO tight at q = p(z|x)", _max_abs(elbo_post, log_px), 0.0,
               ELBO_STDERRS * se_post.max().item(), f"max |ELBO − log p(x)| ≤ {ELBO_STDERRS:g} s.e."),
    ]


# -- 7. Monte Carlo KL --------------------------------------------------------------------------

MC_KL_SAMPLES = 100_000
MC_KL_TOL = 0.01


def check_monte_carlo_kl(*, generator: torch.Generator, device: Device = None) -> list[Check]:
    """``monte_carlo_kl`` with :data:`MC_KL_SAMPLES` samples of :math:`p` against the closed form, for :data:`KL_TEST_PAIR`."""
    mu1, sigma1, mu2, sigma2 = KL_TEST_PAIR
    p, q = Normal(torch.tensor(mu1, device=device), sigma1), Normal(torch.tensor(mu2, device=device), sigma2)
    samples = mu1 + sigma1 * randn((MC_KL_SAMPLES,), generator=generator, device=device)
    estimate = monte_carlo_kl(samples, p.log_prob, q.log_prob).item()
    exact = gaussian_kl_closed_form(*KL_TEST_PAIR).item()
    return [_close("Monte Carlo KL ≈ closed form", estimate, exact, MC_KL_TOL, f"{exact:.6f} (closed form)")]


# -- the KL checks of Task 3.2 (chapter "KL divergence") ---------------------------------------

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


# -- all checks ---------------------------------------------------------------------------------

def run_checks(*, generator: torch.Generator | None = None, device: Device = None) -> list[Check]:
    """Run every check of the chapter "Validation", in the order of the lab.

    Args:
        generator: source of all random numbers; defaults to
            ``torch.Generator().manual_seed(0)`` so the table is reproducible.
        device: where tensors live (default CPU).

    Returns:
        the list of :class:`Check` rows. Exceptions raised by the code under
        test propagate.
    """
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    return [
        *check_gaussian_kl(device),
        *check_jensen(),
        *check_elbo_decomposition(generator=generator, device=device),
        *check_reparameterization(generator=generator, device=device),
        *check_standard_normal_kl(generator=generator, device=device),
        *check_elbo_bound(generator=generator, device=device),
        *check_monte_carlo_kl(generator=generator, device=device),
    ]


def require_all_passed(checks: list[Check]) -> None:
    """Raise ``AssertionError`` naming every failed check (a failing check fails the build)."""
    failed = [c for c in checks if not c.passed]
    if failed:
        raise AssertionError("validation failed:\n" + format_table(failed))


# -- display ------------------------------------------------------------------------------------

COLUMNS = ("check", "expected", "measured", "tolerance", "pass")


def _format_number(value: float) -> str:
    """Six decimals (comparable with the expected values), scientific notation below 1e-3."""
    if value == 0:
        return "0"
    if not math.isfinite(value):
        return str(value)
    return f"{value:.6f}" if abs(value) >= 1e-3 else f"{value:.2e}"


def _cells(check: Check) -> tuple[str, str, str, str, str]:
    measured = check.measured if isinstance(check.measured, str) else _format_number(check.measured)
    tolerance = "—" if check.tolerance == 0 else f"{check.tolerance:.2g}"
    return check.name, check.expected, measured, tolerance, "✓" if check.passed else "✗ FAIL"


def format_table(checks: list[Check]) -> str:
    """A plain-text table of the checks, one row per check."""
    rows = [COLUMNS, *(_cells(c) for c in checks)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def checks_html(checks: list[Check]) -> str:
    """An HTML ``<table>`` of the checks (escaped), for ``IPython.display.HTML``."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
    body = []
    for check in checks:
        cells = _cells(check)
        style = "" if check.passed else ' style="color:#D55E00;font-weight:bold"'
        body.append(f"<tr{style}>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    return (f'<table class="table validation-table"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table>")
