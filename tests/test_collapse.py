"""Tests for labcode.collapse: activity, the remedies' objectives, the decoder with a noisy copy, training, the bound.

References: hand computations, torch.distributions (per-unit KL, Gaussian log-densities),
labcode.evaluate_vae, and a Monte Carlo evaluation of the degenerate model that the bound
of flat_decoder_bound describes. The training tests use tiny models and budgets (well under a
second each on a CPU).
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from torch.distributions import Normal, kl_divergence

import labcode as lc
from labcode import store
from labcode.collapse import (
    ACTIVITY_THRESHOLD,
    RUNS,
    CollapseConfig,
    SkipVAE,
    active_units,
    activity,
    collapse_experiment,
    evaluate_model,
    flat_decoder_bound,
    free_bits_objective,
    kl_per_unit,
    kl_warmup,
    train_variants,
)

F64 = torch.float64


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def small_spiral(n: int = 60) -> torch.Tensor:
    return lc.make_spiral(n, 0.1, generator=_gen(0))


# --- activity and active units -------------------------------------------------------------------

def test_activity_against_a_hand_computation():
    mu = torch.tensor([[0.0, 1.0, 0.30], [2.0, 1.0, 0.10], [4.0, 1.0, 0.20]], dtype=F64)
    # unit 1: mean 2, squared deviations 4, 0, 4 -> 8/3; unit 2: constant -> 0; unit 3: mean 0.2 -> (0.01 + 0.01 + 0)/3
    expected = torch.tensor([8 / 3, 0.0, 0.02 / 3], dtype=F64)
    torch.testing.assert_close(activity(mu), expected, rtol=1e-12, atol=1e-15)
    assert active_units(mu) == 1                       # 8/3 > 1e-2 > 0.0067 > 0
    assert active_units(mu, threshold=1e-3) == 2
    assert ACTIVITY_THRESHOLD == 1e-2                  # Burda et al.'s threshold


@given(arrays(np.float64, st.tuples(st.integers(1, 12), st.integers(1, 4)),
              elements=st.floats(-50, 50, allow_nan=False)))
def test_activity_is_the_population_variance_of_each_column(values):
    mu = torch.from_numpy(values)
    torch.testing.assert_close(activity(mu), torch.from_numpy(values.var(axis=0, ddof=0)), rtol=1e-9, atol=1e-9)
    assert (activity(mu) >= 0).all()
    torch.testing.assert_close(activity(mu + 3.0), activity(mu), rtol=1e-7, atol=1e-7)   # a shift changes nothing


def test_activity_respects_device_and_dtype(device, dtype):
    mu = torch.randn(20, 3, generator=_gen(1)).to(device=device, dtype=dtype)
    a = activity(mu)
    assert a.device.type == torch.device(device).type and a.dtype == dtype


@pytest.mark.parametrize(("mu", "error", "match"), [
    (torch.zeros(4), ValueError, "mu must have shape"),
    (torch.zeros(0, 2), ValueError, "at least one row"),
    (torch.tensor([[math.nan, 0.0]]), ValueError, "mu must be finite"),
])
def test_activity_rejects_bad_input(mu, error, match):
    with pytest.raises(error, match=match):
        activity(mu)


@pytest.mark.parametrize("threshold", [0.0, -1.0, math.inf, "0.01"])
def test_active_units_rejects_bad_thresholds(threshold):
    with pytest.raises(ValueError, match="threshold"):
        active_units(torch.zeros(3, 2), threshold=threshold)


# --- per-unit KL and the free-bits objective --------------------------------------------------------

def test_kl_per_unit_matches_torch_distributions_and_sums_to_the_kl_term():
    mu = torch.randn(7, 3, generator=_gen(2), dtype=F64)
    logvar = torch.randn(7, 3, generator=_gen(3), dtype=F64)
    reference = kl_divergence(Normal(mu, torch.exp(0.5 * logvar)), Normal(torch.zeros_like(mu), torch.ones_like(mu)))
    torch.testing.assert_close(kl_per_unit(mu, logvar), reference, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(kl_per_unit(mu, logvar).sum(-1), lc.standard_normal_kl(mu, logvar), rtol=1e-12, atol=1e-12)


def test_kl_per_unit_rejects_bad_input():
    with pytest.raises(ValueError, match="same shape"):
        kl_per_unit(torch.zeros(3, 2), torch.zeros(3, 1))
    with pytest.raises(ValueError, match="logvar must be finite"):
        kl_per_unit(torch.zeros(1, 2), torch.tensor([[0.0, math.inf]]))


def _free_bits_by_definition(rec, mu, logvar, floor, beta):
    """The objective written out from Kingma et al.'s definition, one unit at a time, with torch.distributions."""
    q = Normal(mu, torch.exp(0.5 * logvar))
    p = Normal(torch.zeros_like(mu), torch.ones_like(mu))
    kl = kl_divergence(q, p)                                       # (N, d)
    penalty = sum(max(floor, kl[:, u].mean().item()) for u in range(mu.shape[1]))
    return rec.mean().item() - beta * penalty


@pytest.mark.parametrize("floor", [0.0, 0.05, 0.5, 3.0])
@pytest.mark.parametrize("beta", [0.0, 0.3, 1.0])
def test_free_bits_objective_matches_its_definition(floor, beta):
    rec = torch.randn(9, generator=_gen(4), dtype=F64)
    mu = 0.6 * torch.randn(9, 3, generator=_gen(5), dtype=F64)
    logvar = 0.5 * torch.randn(9, 3, generator=_gen(6), dtype=F64)
    value = free_bits_objective(rec, mu, logvar, floor=floor, beta=beta)
    assert value.shape == ()
    assert value.item() == pytest.approx(_free_bits_by_definition(rec, mu, logvar, floor, beta), rel=1e-12, abs=1e-12)


def test_free_bits_at_zero_floor_is_the_average_elbo_and_a_large_floor_frees_the_kl():
    rec = torch.randn(9, generator=_gen(7), dtype=F64)
    mu = torch.randn(9, 2, generator=_gen(8), dtype=F64)
    logvar = torch.randn(9, 2, generator=_gen(9), dtype=F64)
    elbo = (rec - lc.standard_normal_kl(mu, logvar)).mean()
    torch.testing.assert_close(free_bits_objective(rec, mu, logvar, floor=0.0), elbo, rtol=1e-12, atol=1e-12)
    big = 1e3                                                     # above every unit's KL: the penalty is constant
    mu.requires_grad_(True)
    value = free_bits_objective(rec, mu, logvar, floor=big)
    assert value.item() == pytest.approx(rec.mean().item() - 2 * big, rel=1e-12)
    (grad,) = torch.autograd.grad(value, mu)
    assert (grad == 0).all()                                      # below the floor the KL has no gradient


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"floor": -0.1}, "floor must be a finite number >= 0"),
    ({"floor": math.nan}, "floor must be a finite number >= 0"),
    ({"floor": 0.1, "beta": -1.0}, "beta must be a finite number >= 0"),
    ({"floor": True}, "floor must be a finite number >= 0"),
])
def test_free_bits_objective_rejects_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        free_bits_objective(torch.zeros(3), torch.zeros(3, 2), torch.zeros(3, 2), **kwargs)


def test_free_bits_objective_rejects_bad_shapes():
    with pytest.raises(ValueError, match="reconstruction must have shape"):
        free_bits_objective(torch.zeros(4), torch.zeros(3, 2), torch.zeros(3, 2), floor=0.1)
    with pytest.raises(ValueError, match="reconstruction must be finite"):
        free_bits_objective(torch.tensor([0.0, math.nan, 0.0]), torch.zeros(3, 2), torch.zeros(3, 2), floor=0.1)


# --- the β schedule ------------------------------------------------------------------------------

def test_kl_warmup_values():
    torch.testing.assert_close(kl_warmup(6, 4), torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0, 1.0], dtype=F64))
    torch.testing.assert_close(kl_warmup(3, 1), torch.tensor([0.0, 1.0, 1.0], dtype=F64))
    longer = kl_warmup(5, 10)                                     # warm-up longer than training: never reaches 1
    torch.testing.assert_close(longer, torch.arange(5, dtype=F64) / 10)


@given(st.integers(1, 300), st.integers(1, 300))
def test_kl_warmup_is_min_of_one_and_t_over_warmup(steps, warmup):
    betas = kl_warmup(steps, warmup)
    assert betas.shape == (steps,) and betas[0] == 0.0
    expected = [min(1.0, t / warmup) for t in range(steps)]
    assert betas.tolist() == pytest.approx(expected, abs=1e-15)
    assert (betas[1:] >= betas[:-1]).all()


@pytest.mark.parametrize(("args", "error"), [((0, 5), ValueError), ((5, 0), ValueError), ((5.0, 2), TypeError),
                                            ((5, True), TypeError)])
def test_kl_warmup_rejects_bad_arguments(args, error):
    with pytest.raises(error):
        kl_warmup(*args)


# --- the decoder with a noisy copy ------------------------------------------------------------------

def test_skip_vae_elbo_matches_torch_distributions(device):
    model = SkipVAE(2, 3, 8, side_noise=0.2, generator=_gen(10)).to(device=device, dtype=F64)
    x = small_spiral(5).to(device=device, dtype=F64)
    eps = torch.randn(5, 3, generator=_gen(11), dtype=F64).to(device)
    eta = torch.randn(5, 2, generator=_gen(12), dtype=F64).to(device)
    out = model.compute_elbo(x, eps=eps, eta=eta)
    mu, logvar = model.encode(x)
    z = mu + torch.exp(0.5 * logvar) * eps
    x_side = x + 0.2 * eta
    mean = model.decoder(torch.cat([z, x_side], dim=1))
    rec = Normal(mean, model.noise_std).log_prob(x).sum(-1)
    kl = kl_divergence(Normal(mu, torch.exp(0.5 * logvar)), Normal(0.0, 1.0)).sum(-1)
    torch.testing.assert_close(out["reconstruction"], rec, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(out["kl_divergence"], kl, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(out["elbo"], rec - kl, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(model.decode(z, x_side), mean)
    assert model.noise_std.item() == pytest.approx(1.0)           # log σ_x² starts at 0


def test_skip_vae_draws_noise_from_the_generator_and_trains_every_parameter():
    model = SkipVAE(side_noise=0.1, generator=_gen(13))
    x = small_spiral(6)
    a = model.compute_elbo(x, generator=_gen(14))["elbo"]
    b = model.compute_elbo(x, generator=_gen(14))["elbo"]
    torch.testing.assert_close(a, b)
    a.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"side_noise": 0.0}, ValueError, "side_noise must be a finite number > 0"),
    ({"side_noise": -1.0}, ValueError, "side_noise"),
    ({"side_noise": 0.1, "latent_dim": 0}, ValueError, "latent_dim must be > 0"),
    ({"side_noise": 0.1, "hidden": 2.5}, TypeError, "hidden must be an int"),
])
def test_skip_vae_rejects_bad_sizes(kwargs, error, match):
    with pytest.raises(error, match=match):
        SkipVAE(**kwargs)


def test_skip_vae_rejects_bad_noise():
    model = SkipVAE(side_noise=0.1)
    x = small_spiral(4)
    with pytest.raises(ValueError, match="eta and x must have the same shape"):
        model.compute_elbo(x, eps=torch.zeros(4, 2), eta=torch.zeros(4, 3))
    with pytest.raises(ValueError, match="eps must be finite"):
        model.compute_elbo(x, eps=torch.full((4, 2), math.nan))
    with pytest.raises(ValueError, match="x must have 2 columns"):
        model.compute_elbo(torch.zeros(4, 3))


# --- training ------------------------------------------------------------------------------------

def test_the_skip_model_collapses_and_the_lab_model_does_not_on_a_tiny_case():
    data = small_spiral(60)
    steps = 200
    ones = torch.ones(1, steps, dtype=F64)
    skip = [SkipVAE(2, 2, 16, side_noise=0.05, generator=_gen(0))]
    vae = [lc.VAE(2, 2, 16, generator=_gen(0))]
    skip_log = train_variants(skip, data, ones, [0.0], lr=3e-2, generator=_gen(1))
    vae_log = train_variants(vae, data, ones, [0.0], lr=3e-2, generator=_gen(1))
    skip_eval = evaluate_model(skip[0], data, generator=_gen(2))
    vae_eval = evaluate_model(vae[0], data, generator=_gen(2))
    assert skip_eval["kl_divergence"].max() < 1e-2 and active_units(skip_eval["mu"]) == 0
    assert skip_log["kl"][0, -20:].max() < 1e-2
    assert vae_eval["kl_divergence"].mean() > 0.5 and active_units(vae_eval["mu"]) >= 1
    assert vae_log["elbo"].shape == (1, steps)


def test_train_variants_log_and_schedules():
    data = small_spiral(30)
    steps = 40
    models = [SkipVAE(2, 2, 8, side_noise=0.1, generator=_gen(0)) for _ in range(3)]
    betas = torch.stack([torch.ones(steps, dtype=F64), kl_warmup(steps, 20), torch.ones(steps, dtype=F64)])
    log = train_variants(models, data, betas, [0.0, 0.0, 0.4], lr=1e-2, generator=_gen(1))
    assert set(log) == {"reconstruction", "kl", "objective", "elbo", "log_noise_std", "beta"}
    assert all(v.shape == (3, steps) for v in log.values())
    torch.testing.assert_close(log["elbo"], log["reconstruction"] - log["kl"])
    torch.testing.assert_close(log["beta"][1], kl_warmup(steps, 20))
    # the first step: all models are equal, so the objectives differ only by β and the floor
    rec0, kl0 = log["reconstruction"][0, 0], log["kl"][0, 0]
    torch.testing.assert_close(log["objective"][0, 0], rec0 - kl0)
    torch.testing.assert_close(log["objective"][1, 0], rec0)                      # β_0 = 0
    assert log["objective"][2, 0] <= rec0 - 2 * 0.4 + 1e-6                         # each unit pays at least λ
    assert log["log_noise_std"][:, 0].abs().max() == 0                             # σ_x starts at 1
    for model, name in zip(models, ("plain", "annealed", "free bits"), strict=True):
        assert not model.training, name


def test_stacked_training_equals_training_alone():
    data = small_spiral(30)
    steps = 25
    betas = torch.stack([torch.ones(steps, dtype=F64), kl_warmup(steps, 10)])
    pair = [SkipVAE(2, 2, 8, side_noise=0.1, generator=_gen(0)) for _ in range(2)]
    log = train_variants(pair, data, betas, [0.0, 0.3], lr=1e-2, generator=_gen(1))
    for m in range(2):
        alone = [SkipVAE(2, 2, 8, side_noise=0.1, generator=_gen(0))]
        log_alone = train_variants(alone, data, betas[m:m + 1], [[0.0, 0.3][m]], lr=1e-2, generator=_gen(1))
        torch.testing.assert_close(log["objective"][m], log_alone["objective"][0], rtol=1e-4, atol=1e-4)
        for p, q in zip(pair[m].parameters(), alone[0].parameters(), strict=True):
            torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-4)


def test_train_variants_runs_on_every_device(device):
    data = small_spiral(20)
    models = [lc.VAE(2, 2, 8, generator=_gen(0)).to(device)]
    log = train_variants(models, data, torch.ones(1, 5, dtype=F64), [0.0], lr=1e-2, generator=_gen(1))
    assert log["kl"].device.type == "cpu" and torch.isfinite(log["objective"]).all()
    assert next(models[0].parameters()).device.type == torch.device(device).type


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"models": []}, ValueError, "at least one model"),
    ({"models": "mixed"}, TypeError, "all be VAE or all be SkipVAE"),
    ({"models": "sizes"}, ValueError, "same sizes"),
    ({"models": "noise"}, ValueError, "same side_noise"),
    ({"betas": torch.ones(3, 5)}, ValueError, "betas must be a tensor of shape"),
    ({"betas": -torch.ones(2, 5)}, ValueError, "betas must be >= 0"),
    ({"betas": torch.full((2, 5), math.nan)}, ValueError, "betas must be finite"),
    ({"floors": [0.0]}, ValueError, "floors must hold 2"),
    ({"floors": [0.0, -1.0]}, ValueError, "floors must hold 2"),
    ({"lr": 0.0}, ValueError, "lr must be a finite number > 0"),
    ({"data": torch.zeros(5, 3)}, ValueError, "data must have 2 columns"),
])
def test_train_variants_rejects_bad_arguments(kwargs, error, match):
    models = {
        "mixed": [SkipVAE(side_noise=0.1), lc.VAE()],
        "sizes": [SkipVAE(side_noise=0.1), SkipVAE(hidden=8, side_noise=0.1)],
        "noise": [SkipVAE(side_noise=0.1), SkipVAE(side_noise=0.2)],
    }
    args = {"models": [SkipVAE(side_noise=0.1), SkipVAE(side_noise=0.1)], "data": small_spiral(5),
            "betas": torch.ones(2, 5), "floors": [0.0, 0.0], "lr": 1e-2, **kwargs}
    if isinstance(args["models"], str):
        args["models"] = models[args["models"]]
    with pytest.raises(error, match=match):
        train_variants(args["models"], args["data"], args["betas"], args["floors"], lr=args["lr"])


# --- evaluation ----------------------------------------------------------------------------------

def test_evaluate_model_is_evaluate_vae_for_a_vae_and_averages_draws_for_a_skip_vae():
    data = small_spiral(12)
    vae = lc.VAE(generator=_gen(3))
    ours = evaluate_model(vae, data, n_samples=16, generator=_gen(4))
    theirs = lc.evaluate_vae(vae, data, n_samples=16, generator=_gen(4))
    for key in ("elbo", "reconstruction", "kl_divergence", "mu", "logvar"):
        torch.testing.assert_close(ours[key], theirs[key])
    skip = SkipVAE(side_noise=0.1, generator=_gen(5))
    out = evaluate_model(skip, data, n_samples=16, generator=_gen(6))
    torch.testing.assert_close(out["elbo"], out["reconstruction"] - out["kl_divergence"])
    g = _gen(6)                                                          # the same draws, one at a time
    eps = torch.randn(16, 12, 2, generator=g)
    eta = torch.randn(16, 12, 2, generator=g)
    one = torch.stack([skip.compute_elbo(data, eps=eps[k], eta=eta[k])["reconstruction"] for k in range(16)])
    torch.testing.assert_close(out["reconstruction"], one.mean(0).detach(), rtol=1e-5, atol=1e-5)


def test_evaluate_model_rejects_bad_arguments():
    with pytest.raises(TypeError, match="model must be a VAE or a SkipVAE"):
        evaluate_model(torch.nn.Linear(2, 2), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="n_samples must be > 0"):
        evaluate_model(SkipVAE(side_noise=0.1), torch.zeros(3, 2), n_samples=0)


# --- the chapter's experiment ----------------------------------------------------------------------

def test_collapse_experiment_runs_and_is_stored(tmp_path, monkeypatch):
    monkeypatch.setenv(store.STORE_ENV, str(tmp_path / "models"))
    data = small_spiral(20)
    cfg = CollapseConfig(steps=12, warmup=6, hidden=8)
    first = collapse_experiment(data, cfg)
    assert list(first) == [name for name, *_ in RUNS]
    assert isinstance(first["lab"]["model"], lc.VAE) and isinstance(first["plain"]["model"], SkipVAE)
    assert first["annealed"]["history"]["beta"] == kl_warmup(12, 6).tolist()
    for name, b in (("lab", 1.0), ("lab_beta0", 0.0), ("lab_beta1.5", 1.5), ("lab_beta2", 2.0), ("lab_beta3", 3.0)):
        assert first[name]["history"]["beta"] == [b] * 12, name
        assert isinstance(first[name]["model"], lc.VAE)
    assert len(list((tmp_path / "models").glob("collapse_experiment-*.pt"))) == 1
    second = collapse_experiment(data, cfg)                                       # from the store
    for name in first:
        for p, q in zip(first[name]["model"].parameters(), second[name]["model"].parameters(), strict=True):
            torch.testing.assert_close(p, q, rtol=0, atol=0)
    collapse_experiment(data, replace(cfg, floor=0.2))                            # another config, another entry
    assert len(list((tmp_path / "models").glob("collapse_experiment-*.pt"))) == 2


def test_collapse_experiment_rejects_bad_arguments():
    with pytest.raises(TypeError, match="cfg must be a CollapseConfig"):
        collapse_experiment(small_spiral(5), lc.VAEConfig())
    with pytest.raises(ValueError, match="warmup must be > 0"):
        collapse_experiment(small_spiral(5), CollapseConfig(warmup=0))
    with pytest.raises(ValueError, match="data must be finite"):
        collapse_experiment(torch.full((3, 2), math.nan))


# --- the bound on the degenerate models ----------------------------------------------------------

def _degenerate_elbo_monte_carlo(data, scale, n_samples):
    """The ELBO of the model of flat_decoder_bound, by Monte Carlo over z_1, with σ_x² = e(σ_q)/D as there."""
    n, dim = data.shape
    codes = torch.linspace(-1.0, 1.0, n, dtype=F64)
    r = (codes[1] - codes[0]) / 4
    knots = torch.stack([codes - r, codes + r], dim=1).reshape(-1)              # 2N breakpoints
    values = data.repeat_interleave(2, dim=0)                                  # f = x_i on [c_i - r, c_i + r]

    def decoder(z1):                                                           # piecewise linear, flat at the ends
        z1 = z1.clamp(knots[0], knots[-1])
        k = torch.searchsorted(knots, z1, right=True).clamp(1, len(knots) - 1)
        w = ((z1 - knots[k - 1]) / (knots[k] - knots[k - 1]))[..., None]
        return (1 - w) * values[k - 1] + w * values[k]

    eps = torch.randn(n_samples, n, generator=_gen(20), dtype=F64)
    err = ((data - decoder(codes + scale * eps)) ** 2).sum(-1)                # (S, N)
    diameter_sq = torch.cdist(data, data).max() ** 2
    e = (diameter_sq * math.erfc(r.item() / (scale * math.sqrt(2)))).item()   # R² P(|ε| > r/σ_q)
    var = e / dim
    rec = -0.5 * dim * math.log(2 * math.pi * var) - err.mean(0) / (2 * var)
    kl = 0.5 * (codes**2 + scale**2 - 1 - math.log(scale**2))
    return (rec - kl).mean().item(), (err.mean(0).std() / math.sqrt(n_samples)).item(), var


def test_flat_decoder_bound_is_below_the_monte_carlo_elbo_of_its_model():
    data = small_spiral(6).double()
    n = len(data)
    r = (2 / (n - 1)) / 4
    for scale in (r, r / 2):
        bound = flat_decoder_bound(data, torch.tensor([scale]), beta=1.0).item()
        mc, err_se, var = _degenerate_elbo_monte_carlo(data, scale, 200_000)
        slack = 4 * err_se / (2 * var)                                         # 4 standard errors of the error term
        assert mc >= bound - slack, (scale, mc, bound)


def test_flat_decoder_bound_grows_without_bound_and_orders_the_betas():
    data = small_spiral(50)
    scales = torch.logspace(-2, -6, 9, dtype=F64)
    b0 = flat_decoder_bound(data, scales, beta=0.0)
    b1 = flat_decoder_bound(data, scales, beta=1.0)
    b3 = flat_decoder_bound(data, scales, beta=3.0)
    assert b0.dtype == F64 and b0.shape == (9,)
    assert (b0 >= b1).all() and (b1 >= b3).all()                              # the KL term is >= 0
    assert (b1[-5:][1:] > b1[-5:][:-1]).all() and b3[-1] > 1e4                 # rising fast at the smallest scales
    assert torch.isfinite(b3).all()                                            # log Φ keeps tiny scales finite


@pytest.mark.parametrize(("args", "kwargs", "match"), [
    ((torch.zeros(1, 2), torch.ones(3)), {"beta": 1.0}, "at least 2 points"),
    ((torch.zeros(4, 2), torch.ones(3)), {"beta": 1.0}, "single repeated point"),
    ((small_spiral(5), torch.ones(3, 1)), {"beta": 1.0}, "scales must be a 1-D tensor"),
    ((small_spiral(5), torch.tensor([0.1, 0.0])), {"beta": 1.0}, "scales must be > 0"),
    ((small_spiral(5), torch.ones(3)), {"beta": -1.0}, "beta must be a finite number >= 0"),
    ((torch.zeros(5), torch.ones(3)), {"beta": 1.0}, "data must have shape"),
])
def test_flat_decoder_bound_rejects_bad_arguments(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        flat_decoder_bound(*args, **kwargs)
