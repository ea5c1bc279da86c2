"""Tests for labcode.iwae: the IWAE objective against labcode.importance and torch.distributions, its gradient
(K = 1 against the ELBO's, per-draw gradients against a loop, DReG against its definition), training, the
signal-to-noise estimators against known answers, and the exact ordering log p(x) >= L_K >= ELBO."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from torch.distributions import Normal

import labcode as lc
from labcode._checks import randn
from labcode.exact import vae_exact_terms
from labcode.importance import importance_log_weights, iwae_bound, repeated_estimates
from labcode.iwae import (
    JACKKNIFE_GROUPS,
    SNRStudy,
    _dreg_backward,
    _mean_squared_snr,
    fit_iwae,
    gradient_draws,
    iwae_models,
    iwae_objective,
    log_weights,
    parameter_groups,
    signal_to_noise,
    snr_study,
    squared_snr,
    train_iwae,
)

F64 = torch.float64
SMALL = lc.VAEConfig(hidden=16, steps=60, lr=3e-2, seed=3)


def small_model(dtype: torch.dtype = F64, device: torch.device | str = "cpu", seed: int = 3) -> lc.VAE:
    """An untrained, small VAE whose encoder outputs vary across points (a fixed initialisation)."""
    return lc.VAE.from_config(replace(SMALL, seed=seed)).to(device=device, dtype=dtype)


def points(n: int = 5, dtype: torch.dtype = F64, device: torch.device | str = "cpu") -> torch.Tensor:
    return lc.make_spiral(n, 0.1, generator=torch.Generator().manual_seed(1)).to(device=device, dtype=dtype)


# --- the objective -------------------------------------------------------------------------------------------


def test_objective_is_the_iwae_bound_of_importance(device: torch.device, dtype: torch.dtype, tol: dict) -> None:
    """Same noise: log-weights equal importance_log_weights, and log Z_K its block estimate of L_K."""
    model, x, k = small_model(dtype, device), points(6, dtype, device), 7
    reference = importance_log_weights(model, x, k, generator=torch.Generator().manual_seed(5))
    eps = randn((6, k, 2), generator=torch.Generator().manual_seed(5), device=device, dtype=dtype)
    with torch.no_grad():
        mu, logvar = model.encode(x)
        torch.testing.assert_close(log_weights(x, mu, logvar, eps, model.decode, model.decoder_logvar), reference, **tol)
        objective = iwae_objective(model, x, eps)
    torch.testing.assert_close(objective, repeated_estimates(reference, k)[0][:, 0], **tol)
    torch.testing.assert_close(objective, iwae_bound(reference, k)[0], **tol)
    assert objective.dtype == dtype and objective.device.type == torch.device(device).type


def test_one_sample_objective_against_torch_distributions() -> None:
    """K = 1: log p(x | z) + log p(z) - log q(z | x), each from torch.distributions, at z = mu + sigma * eps."""
    model, x = small_model(), points(4)
    eps = torch.randn(4, 1, 2, generator=torch.Generator().manual_seed(2), dtype=F64)
    with torch.no_grad():
        mu, logvar = model.encode(x)
        std = torch.exp(0.5 * logvar)
        z = mu + std * eps[:, 0]
        expected = (Normal(model.decode(z), model.noise_std).log_prob(x).sum(-1)
                    + Normal(torch.zeros_like(z), 1.0).log_prob(z).sum(-1) - Normal(mu, std).log_prob(z).sum(-1))
        torch.testing.assert_close(iwae_objective(model, x, eps), expected, rtol=1e-12, atol=1e-12)
        fixed = log_weights(x, mu, logvar, eps, model.decode, model.decoder_logvar, fixed_q=True)
    torch.testing.assert_close(fixed[:, 0], expected, rtol=1e-12, atol=1e-12)


def test_one_sample_gradient_is_the_elbo_gradient_on_antithetic_pairs() -> None:
    """With eps in {-1, 1}^d, the mean over (eps, -eps) of log w equals that of the lab's ELBO estimator
    (closed-form KL): the sampled log p(z) - log q(z | x) averages to -KL exactly, so values and gradients agree."""
    model, x = small_model(), points(5)
    signs = torch.randint(0, 2, (5, 2), generator=torch.Generator().manual_seed(4)).to(F64) * 2 - 1
    iwae = 0.5 * (iwae_objective(model, x, signs[:, None]) + iwae_objective(model, x, -signs[:, None])).sum()
    elbo = 0.5 * (model.compute_elbo(x, eps=signs)["elbo"] + model.compute_elbo(x, eps=-signs)["elbo"]).sum()
    params = list(model.parameters())
    torch.testing.assert_close(iwae, elbo, rtol=1e-12, atol=1e-12)
    for g_iwae, g_elbo in zip(torch.autograd.grad(iwae, params), torch.autograd.grad(elbo, params), strict=True):
        torch.testing.assert_close(g_iwae, g_elbo, rtol=1e-10, atol=1e-12)


def test_objective_checks_its_inputs() -> None:
    model, x = small_model(), points(3)
    with pytest.raises(ValueError, match="eps"):
        iwae_objective(model, x, torch.zeros(3, 2, dtype=F64))
    with pytest.raises(ValueError, match="eps"):
        iwae_objective(model, x, torch.zeros(2, 4, 2, dtype=F64))
    with pytest.raises(ValueError, match="eps"):
        iwae_objective(model, x, torch.zeros(3, 0, 2, dtype=F64))
    with pytest.raises(ValueError, match="eps"):
        iwae_objective(model, x, torch.full((3, 2, 2), math.nan, dtype=F64))
    with pytest.raises(ValueError, match="x"):
        iwae_objective(model, x[:, :1], torch.zeros(3, 2, 2, dtype=F64))


# --- per-draw gradients ---------------------------------------------------------------------------------------


def loop_gradients(model: lc.VAE, x: torch.Tensor, eps: torch.Tensor) -> dict[str, torch.Tensor]:
    """The reference: one autograd call per (draw, point) of log Z_K, eps (R, B, K, d)."""
    out = {name: torch.zeros(*eps.shape[:2], *p.shape, dtype=p.dtype) for name, p in model.named_parameters()}
    for r in range(eps.shape[0]):
        for i in range(eps.shape[1]):
            grads = torch.autograd.grad(iwae_objective(model, x[i:i + 1], eps[r, i:i + 1]).sum(), list(model.parameters()))
            for (name, _), g in zip(model.named_parameters(), grads, strict=True):
                out[name][r, i] = g.cpu()
    return out


def test_gradient_draws_match_a_loop(device: torch.device) -> None:
    model, x, k, draws = small_model(F64, device), points(3, F64, device), 5, 4
    fast = gradient_draws(model, x, k, draws, generator=torch.Generator().manual_seed(8))
    eps = torch.randn(draws * 3, k, 2, generator=torch.Generator().manual_seed(8), dtype=F64).reshape(draws, 3, k, 2)
    slow = loop_gradients(model, x, eps.to(device))
    assert set(fast) == set(slow)
    for name in fast:
        assert fast[name].shape == (draws, 3, *dict(model.named_parameters())[name].shape)
        torch.testing.assert_close(fast[name].cpu(), slow[name], rtol=1e-9, atol=1e-11)


def test_dreg_decoder_entries_are_the_iwae_ones_and_one_sample_is_sticking_the_landing() -> None:
    model, x = small_model(), points(3)
    iwae = gradient_draws(model, x, 4, 3, generator=torch.Generator().manual_seed(9))
    dreg = gradient_draws(model, x, 4, 3, estimator="dreg", generator=torch.Generator().manual_seed(9))
    groups = parameter_groups(model)
    for name in groups["decoder"]:
        torch.testing.assert_close(dreg[name], iwae[name], rtol=1e-12, atol=1e-12)
    # K = 1: the gradient of log w with q's parameters held fixed inside log q (Roeder et al.), by torch.distributions
    one = gradient_draws(model, x, 1, 2, estimator="dreg", generator=torch.Generator().manual_seed(10))
    eps = torch.randn(2 * 3, 1, 2, generator=torch.Generator().manual_seed(10), dtype=F64).reshape(2, 3, 2)
    for r in range(2):
        mu, logvar = model.encode(x)
        std = torch.exp(0.5 * logvar)
        z = mu + std * eps[r]
        log_w = (Normal(model.decode(z), model.noise_std).log_prob(x).sum(-1) + Normal(torch.zeros_like(z), 1.0).log_prob(z).sum(-1)
                 - Normal(mu.detach(), std.detach()).log_prob(z).sum(-1))
        encoder = [p for n, p in model.named_parameters() if n in groups["encoder"]]
        for i in range(3):
            grads = torch.autograd.grad(log_w[i], encoder, retain_graph=True)
            for name, g in zip(groups["encoder"], grads, strict=True):
                torch.testing.assert_close(one[name][r, i], g, rtol=1e-10, atol=1e-12)


def test_dreg_and_iwae_have_the_same_expectation() -> None:
    """Both estimate the encoder's gradient of L_K without bias: their means over many draws agree within 4 s.e."""
    model, x, draws = small_model(seed=5), points(2), 6000
    iwae = gradient_draws(model, x, 4, draws, generator=torch.Generator().manual_seed(11))
    dreg = gradient_draws(model, x, 4, draws, estimator="dreg", generator=torch.Generator().manual_seed(12))
    for name in parameter_groups(model)["encoder"]:
        a, b = iwae[name].flatten(1), dreg[name].flatten(1)
        se = torch.sqrt(a.var(0) / draws + b.var(0) / draws)
        varies = se > 0
        z = ((a.mean(0) - b.mean(0)).abs()[varies] / se[varies])
        assert z.max() < 4.5, f"{name}: DReG and IWAE means differ by {z.max():.1f} standard errors"
        assert (b.var(0)[varies] < a.var(0)[varies]).double().mean() > 0.5, f"{name}: DReG should mostly reduce the variance"


def test_gradient_draws_check_inputs() -> None:
    model, x = small_model(), points(2)
    with pytest.raises(ValueError, match="estimator"):
        gradient_draws(model, x, 2, 2, estimator="reinforce")
    with pytest.raises(ValueError, match="n_draws"):
        gradient_draws(model, x, 2, 0)
    with pytest.raises(TypeError, match="n_samples"):
        gradient_draws(model, x, 2.0, 2)
    with pytest.raises(ValueError, match="x"):
        gradient_draws(model, x[:, :1], 2, 2)


# --- signal-to-noise estimators ------------------------------------------------------------------------------


@pytest.mark.parametrize("ratio", [0.0, 0.2, 1.5])
def test_signal_to_noise_against_known_ratio(ratio: float) -> None:
    """Gaussian draws with |m| / s known: the plain estimate converges; at m = 0 it sits at the floor sqrt(2/(pi R))."""
    draws, entries, s = 400, 3000, 2.0
    g = torch.Generator().manual_seed(13)
    x = -ratio * s + s * torch.randn(draws, entries, generator=g, dtype=F64)
    snr = signal_to_noise(x)
    assert snr.shape == (entries,)
    expected = ratio if ratio > 0 else math.sqrt(2 / (math.pi * draws))
    assert abs(snr.mean().item() - expected) < 0.05 * max(expected, 0.05) + 3 * snr.std().item() / math.sqrt(entries)


@pytest.mark.parametrize(("ratio", "draws"), [(0.0, 8), (0.1, 8), (0.3, 20), (1.0, 50)])
def test_squared_snr_is_unbiased_for_gaussian_draws(ratio: float, draws: int) -> None:
    """E[(R-3)/(R-1) gbar^2 / s^2 - 1/R] = m^2 / s^2 exactly for Gaussian draws: check to 4 standard errors."""
    entries = 1_600_000 // draws
    x = ratio + torch.randn(draws, entries, generator=torch.Generator().manual_seed(14), dtype=F64)
    estimate = squared_snr(x)
    se = estimate.std().item() / math.sqrt(entries)
    assert abs(estimate.mean().item() - ratio ** 2) < 4 * se
    # the plain estimate squared is biased by about 1/R
    assert (signal_to_noise(x) ** 2).mean().item() > ratio ** 2 + 0.5 / draws


def test_constant_entries_are_nan_or_inf() -> None:
    x = torch.zeros(10, 3, dtype=F64)
    x[:, 1] = 2.0
    x[:, 2] = torch.arange(10, dtype=F64)
    snr = signal_to_noise(x)
    assert math.isnan(snr[0]) and math.isinf(snr[1]) and math.isfinite(snr[2])


def test_snr_estimators_check_inputs() -> None:
    with pytest.raises(TypeError, match="draws"):
        signal_to_noise(torch.zeros(5, 2, dtype=torch.int64))
    with pytest.raises(ValueError, match="draws"):
        signal_to_noise(torch.zeros(1, 2, dtype=F64))
    with pytest.raises(ValueError, match="draws"):
        squared_snr(torch.randn(3, 2, dtype=F64))
    with pytest.raises(ValueError, match="draws"):
        squared_snr(torch.full((5, 2), math.inf, dtype=F64))


def test_squared_snr_bias_for_skewed_draws_is_the_first_order_one() -> None:
    """Exponential draws (skewness 2, excess kurtosis 6), SNR 0.3, R = 50: the bias of the mean estimate is
    (kappa SNR^2 - 2 gamma SNR) / R up to O(R^-2), far from zero (the docstring's expansion)."""
    draws, entries, snr = 50, 80_000, 0.3
    x = torch.empty(draws, entries, dtype=F64).exponential_(1.0, generator=torch.Generator().manual_seed(21)) - 1 + snr
    estimate = squared_snr(x)
    bias, se = estimate.mean().item() - snr ** 2, estimate.std().item() / math.sqrt(entries)
    first_order = (6 * snr ** 2 - 2 * 2 * snr) / draws
    assert abs(bias) > 10 * se, "skewed draws should show a clear bias"
    assert abs(bias - first_order) < 0.15 * abs(first_order) + 4 * se, f"bias {bias:.5f}, first order {first_order:.5f}"


@pytest.mark.parametrize("draws", [400, 403])
def test_jackknife_matches_the_direct_computation(draws: int) -> None:
    """The one-pass jackknife of the mean squared SNR equals leaving each group out explicitly."""
    g = torch.Generator().manual_seed(15)
    x = 0.2 + torch.randn(draws, 300, generator=g, dtype=F64)
    x[:, :20] = 1.0                        # constant: left out
    x[:, 20:30] = 0.0
    x[3, 20:30] = 1.0                      # varies in one draw only: left out, a leave-out subset is constant
    estimate, se, plain = _mean_squared_snr(x)
    label = torch.arange(draws) % JACKKNIFE_GROUPS
    subsets = [x[label != j] for j in range(JACKKNIFE_GROUPS)]
    varies = torch.stack([part.var(0) > 0 for part in subsets]).all(0)
    assert varies.sum() == 270
    leave_out = torch.stack([squared_snr(part)[varies].mean() for part in subsets])
    direct_se = math.sqrt((JACKKNIFE_GROUPS - 1) / JACKKNIFE_GROUPS * ((leave_out - leave_out.mean()) ** 2).sum())
    assert math.isclose(estimate, squared_snr(x)[varies].mean().item(), rel_tol=1e-12)
    assert math.isclose(se, direct_se, rel_tol=1e-8)
    assert math.isclose(plain, signal_to_noise(x)[varies].mean().item(), rel_tol=1e-12)


def study(sq: list[float], se: list[float], sizes: list[int]) -> SNRStudy:
    t = torch.tensor(sq, dtype=F64)
    return SNRStudy("iwae", sizes, 100, t, 2 * t, torch.tensor(se, dtype=F64), torch.tensor(se, dtype=F64), t, t)


def test_snr_study_summaries() -> None:
    sizes = [1, 2, 4, 8, 16]
    exact = study([0.5 / k for k in sizes], [1e-4] * 5, sizes)
    assert math.isclose(exact.slope("encoder"), -0.5, abs_tol=1e-12)
    assert math.isclose(exact.slope("decoder", min_size=2), -0.5, abs_tol=1e-12)
    torch.testing.assert_close(exact.rms("encoder") ** 2, torch.tensor([0.5 / k for k in sizes], dtype=F64))
    noisy = study([0.4, 0.1, -0.01, 0.001, 0.3], [0.01, 0.01, 0.01, 0.01, 0.2], sizes)
    assert noisy.resolved("encoder").tolist() == [True, True, False, False, False]
    assert noisy.rms("encoder")[2] == 0                       # a negative mean squared SNR is reported as 0
    assert math.isnan(noisy.slope("encoder", min_size=2))    # one resolved size left
    assert math.isclose(exact.noise_floor, math.sqrt(2 / (math.pi * 100)))
    with pytest.raises(ValueError, match="group"):
        exact.rms("prior")


def test_slope_standard_error() -> None:
    """Two sizes: sd(b) = sqrt(sd_1^2 + sd_2^2) / |log K_2 - log K_1| with sd_i = se_i / (2 SNR^2_i); and with many
    sizes it matches the spread of slopes refitted to mean squared SNRs perturbed by their standard errors."""
    two = study([0.4, 0.1], [0.02, 0.01], [2, 8])
    expected = math.sqrt((0.02 / 0.8) ** 2 + (0.01 / 0.2) ** 2) / math.log(4)
    assert math.isclose(two.slope_se("encoder"), expected, rel_tol=1e-12)
    assert math.isclose(two.slope("encoder"), 0.5 * math.log(0.25) / math.log(4), rel_tol=1e-12)
    sizes = [1, 3, 10, 30, 100]
    sq = torch.tensor([0.5 / k for k in sizes], dtype=F64)
    se = 0.01 * sq
    fitted = study(sq.tolist(), se.tolist(), sizes)
    g = torch.Generator().manual_seed(22)
    refits = [study((sq + se * torch.randn(5, generator=g, dtype=F64)).tolist(), se.tolist(), sizes).slope("encoder")
              for _ in range(2000)]
    spread = torch.tensor(refits).std().item()
    assert abs(spread / fitted.slope_se("encoder") - 1) < 0.08
    assert fitted.slope_sizes("encoder", min_size=3) == [3, 10, 30, 100]
    assert math.isnan(study([0.4, -0.1], [0.01, 0.01], [1, 2]).slope_se("encoder"))


def test_snr_study_on_a_model() -> None:
    model, x = small_model(), points(2)
    result = snr_study(model, x, [1, 8], 40, generator=torch.Generator().manual_seed(16))
    for name in ("encoder_sq", "decoder_sq", "encoder_sq_se", "decoder_sq_se", "encoder_mean", "decoder_mean"):
        assert getattr(result, name).shape == (2,)
    assert (result.encoder_sq_se > 0).all() and (result.decoder_mean > 0).all()
    groups = parameter_groups(model)
    assert all(n.startswith("encoder.") for n in groups["encoder"])
    assert "decoder_logvar" in groups["decoder"] and (len(groups["encoder"]), len(groups["decoder"])) == (4, 5)
    with pytest.raises(ValueError, match="n_draws"):
        snr_study(model, x, [1], 39)
    with pytest.raises(ValueError, match="sample_sizes"):
        snr_study(model, x, [], 40)


# --- training ---------------------------------------------------------------------------------------------------


def test_fit_iwae_is_deterministic_and_continues_from_a_start() -> None:
    data = points(40, torch.float32)
    model, history = fit_iwae(data, 3, SMALL)
    again, _ = fit_iwae(data, 3, SMALL)
    for a, b in zip(model.parameters(), again.parameters(), strict=True):
        assert torch.equal(a, b)
    assert len(history["bound"]) == SMALL.steps
    assert sum(history["bound"][-10:]) > sum(history["bound"][:10]), "training should raise the bound"
    before = {n: t.clone() for n, t in model.state_dict().items()}
    short = replace(SMALL, steps=1)
    continued, _ = fit_iwae(data, 3, short, start=model)
    assert all(torch.equal(before[n], t) for n, t in model.state_dict().items()), "the start must not change"
    moved = [not torch.equal(before[n], t) for n, t in continued.state_dict().items()]
    assert any(moved)
    models = iwae_models(data, [1, 3], short, start=model)
    for a, b in zip(models[3][0].parameters(), continued.parameters(), strict=True):
        assert torch.equal(a, b)
    assert not models[1][0].training


def test_dreg_training_step_is_the_mean_of_the_per_point_dreg_gradients() -> None:
    """One full-batch DReG step's gradient equals minus the mean over points of gradient_draws(estimator="dreg")
    with the same noise; the decoder's part is the IWAE gradient's."""
    model, x, k = small_model(), points(4), 6
    eps = randn((4, k, 2), generator=torch.Generator().manual_seed(23), device="cpu", dtype=F64)
    mu, logvar = model.encoder(x).chunk(2, dim=-1)
    _dreg_backward(model, log_weights(x, mu, logvar, eps, model.decode, model.decoder_logvar, fixed_q=True))
    dreg = gradient_draws(model, x, k, 1, estimator="dreg", generator=torch.Generator().manual_seed(23))
    iwae = gradient_draws(model, x, k, 1, generator=torch.Generator().manual_seed(23))
    decoder = parameter_groups(model)["decoder"]
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, -dreg[name][0].mean(0), rtol=1e-10, atol=1e-12)
        if name in decoder:
            torch.testing.assert_close(p.grad, -iwae[name][0].mean(0), rtol=1e-10, atol=1e-12)


def test_dreg_training_is_deterministic_and_differs_from_iwae_training() -> None:
    data = points(40, torch.float32)
    short = replace(SMALL, steps=20)
    dreg, history = fit_iwae(data, 4, short, estimator="dreg")
    again, _ = fit_iwae(data, 4, short, estimator="dreg")
    iwae, iwae_history = fit_iwae(data, 4, short)
    assert all(torch.equal(a, b) for a, b in zip(dreg.parameters(), again.parameters(), strict=True))
    assert history["bound"][0] == iwae_history["bound"][0], "same start and noise: the same first bound"
    assert not torch.equal(dreg.encoder[0].weight, iwae.encoder[0].weight)
    models = iwae_models(data, [4], short, estimator="dreg")
    assert all(torch.equal(a, b) for a, b in zip(models[4][0].parameters(), dreg.parameters(), strict=True))


def test_training_checks_its_inputs() -> None:
    data = points(10, torch.float32)
    model = lc.VAE.from_config(SMALL)
    with pytest.raises(ValueError, match="n_samples"):
        train_iwae(model, data, n_samples=0, steps=5, lr=1e-2)
    with pytest.raises(ValueError, match="steps"):
        train_iwae(model, data, n_samples=2, steps=0, lr=1e-2)
    with pytest.raises(ValueError, match="lr"):
        train_iwae(model, data, n_samples=2, steps=5, lr=-1.0)
    with pytest.raises(ValueError, match="data"):
        train_iwae(model, data[:, :1], n_samples=2, steps=5, lr=1e-2)
    with pytest.raises(ValueError, match="beta"):
        fit_iwae(data, 2, replace(SMALL, beta=2.0))
    with pytest.raises(TypeError, match="cfg"):
        fit_iwae(data, 2, {"steps": 5})
    with pytest.raises(ValueError, match="sample_sizes"):
        iwae_models(data, [], SMALL)
    with pytest.raises(ValueError, match="estimator"):
        train_iwae(model, data, n_samples=2, steps=5, lr=1e-2, estimator="reinforce")
    with pytest.raises(ValueError, match="estimator"):
        iwae_models(data, [2], SMALL, estimator="score")


def test_exact_evidence_bounds_iwae_bounds_elbo_on_a_trained_model() -> None:
    """log p(x) (quadrature) >= L_50 >= L_5 >= ELBO (exact) for a small model trained with K = 5."""
    data = lc.make_spiral(60, 0.1, generator=torch.Generator().manual_seed(2))
    model, _ = fit_iwae(data, 5, replace(SMALL, steps=300))
    x = data[::12]
    exact = vae_exact_terms(model, x, tol=1e-4)
    log_w = importance_log_weights(model, x, 50 * 400, generator=torch.Generator().manual_seed(17)).double()
    bounds = {k: iwae_bound(log_w, k) for k in (5, 50)}
    log_p, elbo = exact.log_evidence.cpu(), exact.elbo.cpu()
    for k, (estimate, se) in bounds.items():
        assert (estimate <= log_p + 4 * se + 1e-3).all(), f"L_{k} above log p(x)"
        assert (estimate >= elbo - 4 * se).all(), f"L_{k} below the ELBO"
    l5, se5 = bounds[5]
    l50, se50 = bounds[50]
    assert (l50 >= l5 - 4 * torch.sqrt(se5 ** 2 + se50 ** 2)).all()
    assert (log_p - elbo > 0).all() and (l5 - elbo > 4 * se5).any(), "the bounds should be strictly ordered somewhere"
