"""Tests of labcode.lab.validation: the reference implementation passes, planted bugs fail loudly."""

from __future__ import annotations

import math

import pytest
import torch

import labcode.lab.validation as validation
from labcode.lab.validation import Check, checks_html, format_table, lab_kl_checks, require_all_passed, run_checks


@pytest.fixture(scope="module")
def checks() -> list[Check]:
    return run_checks(generator=torch.Generator().manual_seed(0))


def _by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


def test_all_checks_pass_for_reference_implementation(checks):
    assert len(checks) >= 7
    failed = [c.name for c in checks if not c.passed]
    assert failed == []
    require_all_passed(checks)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_checks_pass_for_other_seeds(seed):
    assert all(c.passed for c in run_checks(generator=torch.Generator().manual_seed(seed)))


def test_default_generator_is_reproducible():
    a, b = run_checks(), run_checks()
    assert [c.measured for c in a] == [c.measured for c in b]


def test_check_values_against_independent_numbers(checks):
    rows = _by_name(checks)
    # KL(N(0.5, 0.8^2) || N(0, 1)) = log(1/0.8) + (0.64 + 0.25)/2 - 1/2
    exact_kl = math.log(1 / 0.8) + (0.64 + 0.25) / 2 - 0.5
    assert rows["Gaussian KL = lab formula"].measured == pytest.approx(exact_kl, abs=1e-6)
    assert rows["Jensen gap on {1, 4, 9}"].measured == pytest.approx(math.log(14 / 3) - math.log(36) / 3, abs=1e-6)
    assert rows["ELBO ≤ log p(x)"].measured < 0


def test_planted_kl_bug_fails(monkeypatch):
    # the classic slip: sigma instead of sigma^2 in the variance ratio
    def wrong_kl(mu1, sigma1, mu2, sigma2):
        mu1, sigma1, mu2, sigma2 = (torch.as_tensor(v, dtype=torch.float32) for v in (mu1, sigma1, mu2, sigma2))
        return torch.log(sigma2 / sigma1) + (sigma1 + (mu1 - mu2) ** 2) / (2 * sigma2**2) - 0.5

    monkeypatch.setattr(validation, "gaussian_kl_closed_form", wrong_kl)
    rows = _by_name(run_checks())
    assert not rows["Gaussian KL = lab formula"].passed
    assert not rows["Gaussian KL = torch.distributions"].passed
    assert not rows["Monte Carlo KL ≈ closed form"].passed
    assert rows["Jensen gap on {1, 4, 9}"].passed          # unrelated checks are unaffected
    with pytest.raises(AssertionError, match="Gaussian KL"):
        require_all_passed(list(rows.values()))


def test_planted_reparameterize_bug_fails(monkeypatch):
    # exp(logvar) used as the standard deviation: the variance comes out as exp(2 logvar)
    def wrong_reparameterize(mu, logvar, *, eps=None, generator=None):
        eps = torch.randn(mu.shape, generator=generator) if eps is None else eps
        return mu + torch.exp(logvar) * eps

    monkeypatch.setattr(validation, "reparameterize", wrong_reparameterize)
    rows = _by_name(run_checks())
    assert rows["reparameterisation: mean"].passed
    assert not rows["reparameterisation: variance"].passed
    assert not rows["reparameterisation: gradients"].passed
    assert not rows["ELBO tight at q = p(z|x)"].passed


def test_planted_standard_normal_kl_bug_fails(monkeypatch):
    def wrong_kl(mu, logvar):   # forgets the factor 1/2
        return (mu**2 + torch.exp(logvar) - 1 - logvar).sum(-1)

    monkeypatch.setattr(validation, "standard_normal_kl", wrong_kl)
    rows = _by_name(run_checks())
    assert not rows["standard-normal KL = torch.distributions"].passed
    assert not rows["gap = KL(q ‖ p(z|x))"].passed


def test_planted_jensen_bug_fails(monkeypatch):
    monkeypatch.setattr(validation, "jensen_gap", lambda x: torch.log(x).mean() - torch.log(x.mean()))
    assert not _by_name(run_checks())["Jensen gap on {1, 4, 9}"].passed


def test_crash_propagates(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("not implemented")

    monkeypatch.setattr(validation, "reparameterize", broken)
    with pytest.raises(RuntimeError, match="not implemented"):
        run_checks()


def test_nan_measurement_fails():
    assert not validation._close("nan", float("nan"), 0.0, 1.0).passed
    assert validation._close("ok", 0.5, 0.0, 1.0).passed


def test_tables():
    rows = [Check("a < b", "x < 1", 0.5, 0.0, True), Check("c & d", "≈ 2", 3.0, 0.1, False)]
    text = format_table(rows)
    assert text.splitlines()[0].split() == ["check", "expected", "measured", "tolerance", "pass"]
    assert "FAIL" in text.splitlines()[3] and "✓" in text.splitlines()[2]
    page = checks_html(rows)
    assert page.startswith("<table") and page.count("<tr") == 3
    assert "a &lt; b" in page and "c &amp; d" in page


def test_checks_pass_on_device(device):
    checks = run_checks(generator=torch.Generator().manual_seed(0), device=device)
    assert [c.name for c in checks if not c.passed] == []


def test_number_format():
    assert validation._format_number(0.0) == "0"
    assert validation._format_number(0.1681442) == "0.168144"
    assert validation._format_number(1.2e-7) == "1.20e-07"
    assert validation._format_number(float("nan")) == "nan"


def test_checks_read_their_parameters_from_the_module(monkeypatch) -> None:
    """The chapter glues these constants; the checks must use them, and the exact Jensen gap refuses other values."""
    model = validation.default_linear_model()
    u = model.weight / torch.tensor(validation.LINEAR_SCALES)          # W = U diag(a): U is a rotation
    torch.testing.assert_close(u.T @ u, torch.eye(2), atol=1e-6, rtol=0)
    assert math.isclose(torch.linalg.det(u).item(), 1.0, abs_tol=1e-6)
    assert model.noise_std == validation.LINEAR_NOISE
    monkeypatch.setattr(validation, "BOUND_POINTS", 3)
    assert all(c.passed for c in validation.check_elbo_bound(generator=torch.Generator().manual_seed(0)))
    monkeypatch.setattr(validation, "JENSEN_VALUES", (1.0, 2.0))
    with pytest.raises(ValueError, match="JENSEN_VALUES"):
        validation.check_jensen()


def test_lab_kl_checks_all_pass() -> None:
    rows = lab_kl_checks(generator=torch.Generator().manual_seed(1))
    assert len(rows) == 5
    assert all(row["pass"] for row in rows)
    assert rows[0]["expected"] == pytest.approx(0.5 * (0.64 + 1 - 1 - math.log(0.64)), abs=1e-6)
