"""Tests for labcode.vae: the ELBO of the VAE, training, evaluation and the β sweep.

The training tests share one 1500-step fit and one β sweep (module-scoped
fixtures) on the lab's spiral; together they take a few seconds on a CPU.
"""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pytest
import torch
from torch.distributions import Independent, Normal, kl_divergence

import labcode as lc
from labcode.likelihood import GaussianDecoderModel, decoder_function, latent_dim_of
from labcode.vae import NOISE_BLOCK, _step_noise

CONFIG = lc.VAEConfig(steps=1500, lr=3e-2)
SHORT = lc.VAEConfig(steps=40, lr=3e-2)
BETAS = (0.0, 0.1, 1.0, 5.0, 10.0)
ELBO_KEYS = {"elbo", "reconstruction", "kl_divergence", "mu", "logvar", "z", "x_recon"}
HISTORY_KEYS = {"loss", "reconstruction", "kl", "elbo"}
RECONSTRUCTION_SLACK = 0.5   # nats; see test_reconstruction_falls_as_beta_grows


@pytest.fixture(scope="module")
def spiral() -> torch.Tensor:
    return lc.make_spiral(500, 0.1, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def trained(spiral) -> tuple[lc.VAE, dict[str, list[float]]]:
    return lc.fit_vae(spiral, CONFIG)


@pytest.fixture(scope="module")
def sweep(spiral) -> dict[float, dict]:
    return lc.analyze_beta_vae(spiral, BETAS, steps=CONFIG.steps, seed=CONFIG.seed, config=lc.VAEConfig(lr=CONFIG.lr))


def mean_elbo(model: lc.VAE, data: torch.Tensor) -> float:
    """Mean ELBO over the data, 64 reparameterised draws per point, fixed seed."""
    return lc.evaluate_vae(model, data, generator=torch.Generator().manual_seed(2))["elbo"].mean().item()


def points(n: int = 7, device: torch.device | str = "cpu") -> torch.Tensor:
    return lc.make_spiral(n, 0.1, generator=torch.Generator().manual_seed(1)).to(device)


# --- VAE.compute_elbo ----------------------------------------------------------------------------

def test_compute_elbo_keys_shapes_and_identity(device):
    model = lc.VAE.from_config(lc.VAEConfig(latent_dim=3), device=device)
    out = model.compute_elbo(points(7, device), generator=torch.Generator().manual_seed(0))
    assert set(out) == ELBO_KEYS
    for key in ("elbo", "reconstruction", "kl_divergence"):
        assert out[key].shape == (7,)
    for key in ("mu", "logvar", "z"):
        assert out[key].shape == (7, 3)
    assert out["x_recon"].shape == (7, 2)
    for key, value in out.items():
        assert value.device.type == device.type and value.dtype == torch.float32, key
    torch.testing.assert_close(out["elbo"], out["reconstruction"] - out["kl_divergence"], rtol=0, atol=1e-6)


def test_compute_elbo_matches_torch_distributions():
    model = lc.VAE.from_config(lc.VAEConfig())
    with torch.no_grad():
        model.decoder_logvar.fill_(-0.7)
    x = points(9)
    eps = torch.randn(9, 2, generator=torch.Generator().manual_seed(3))
    out = model.compute_elbo(x, eps=eps)
    with torch.no_grad():
        mu, logvar = model.encoder(x).chunk(2, dim=-1)
        z = mu + torch.exp(0.5 * logvar) * eps
        reconstruction = Normal(model.decoder(z), math.exp(-0.35)).log_prob(x).sum(-1)
        kl = kl_divergence(Independent(Normal(mu, torch.exp(0.5 * logvar)), 1), Independent(Normal(torch.zeros_like(mu), 1.0), 1))
    torch.testing.assert_close(out["z"], z)
    torch.testing.assert_close(out["reconstruction"], reconstruction, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out["kl_divergence"], kl, rtol=1e-5, atol=1e-5)


def test_compute_elbo_is_deterministic_for_given_noise():
    model = lc.VAE.from_config(lc.VAEConfig())
    x, eps = points(), torch.randn(7, 2, generator=torch.Generator().manual_seed(4))
    first, second = model.compute_elbo(x, eps=eps), model.compute_elbo(x, eps=eps)
    for key in ELBO_KEYS:
        assert torch.equal(first[key], second[key]), key
    seeded = [model.compute_elbo(x, generator=torch.Generator().manual_seed(4))["elbo"] for _ in range(2)]
    assert torch.equal(seeded[0], seeded[1])


def test_compute_elbo_gradients_reach_every_parameter():
    model = lc.VAE.from_config(lc.VAEConfig())
    model.compute_elbo(points(), generator=torch.Generator().manual_seed(0))["elbo"].mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_compute_elbo_rejects_bad_input():
    model = lc.VAE.from_config(lc.VAEConfig())
    with pytest.raises(ValueError, match="x must be finite"):
        model.compute_elbo(torch.tensor([[0.0, float("nan")]]))
    with pytest.raises(ValueError, match="x must have 2 columns"):
        model.compute_elbo(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="eps and mu must have the same shape"):
        model.compute_elbo(torch.zeros(4, 2), eps=torch.zeros(4, 3))


def test_compute_elbo_rejects_nan_noise():
    model = lc.VAE.from_config(lc.VAEConfig())
    with pytest.raises(ValueError, match="eps must be finite"):
        model.compute_elbo(torch.zeros(4, 2), eps=torch.full((4, 2), float("nan")))


# --- the model ---------------------------------------------------------------------------------

def test_from_config_is_deterministic_per_seed():
    a, b = lc.VAE.from_config(lc.VAEConfig(seed=5)), lc.VAE.from_config(lc.VAEConfig(seed=5))
    c = lc.VAE.from_config(lc.VAEConfig(seed=6))
    for (name, pa), pb, pc in zip(a.named_parameters(), b.parameters(), c.parameters(), strict=True):
        assert torch.equal(pa, pb), name
        if name != "decoder_logvar":   # starts at 0 whatever the seed
            assert not torch.equal(pa, pc), name


def test_vae_is_a_gaussian_decoder_model_with_unit_initial_noise():
    model = lc.VAE.from_config(lc.VAEConfig())
    z = torch.randn(5, 2, generator=torch.Generator().manual_seed(0))
    assert isinstance(model, GaussianDecoderModel) and latent_dim_of(model) == 2
    assert torch.equal(decoder_function(model)(z), model.decoder(z))
    assert model.noise_std.shape == () and model.noise_std.item() == 1.0


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"data_dim": 0}, ValueError, "data_dim must be > 0"),
    ({"latent_dim": -1}, ValueError, "latent_dim must be > 0"),
    ({"hidden": 1.5}, TypeError, "hidden must be an int"),
])
def test_vae_rejects_bad_sizes(kwargs, error, match):
    with pytest.raises(error, match=match):
        lc.VAE(**kwargs)


# --- train_vae and fit_vae ---------------------------------------------------------------------

def test_train_vae_returns_one_entry_per_step(device):
    model = lc.VAE.from_config(SHORT, device=device)
    history = lc.train_vae(model, points(50), steps=SHORT.steps, lr=SHORT.lr, beta=0.5,
                           generator=torch.Generator().manual_seed(1))
    assert set(history) == HISTORY_KEYS
    for key, values in history.items():
        assert len(values) == SHORT.steps and all(math.isfinite(v) for v in values), key
    recon, kl = np.array(history["reconstruction"]), np.array(history["kl"])
    np.testing.assert_allclose(history["elbo"], recon - kl, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(history["loss"], -(recon - 0.5 * kl), rtol=1e-5, atol=1e-5)
    assert all(p.device.type == device.type for p in model.parameters())
    assert not model.training


def test_fit_vae_is_deterministic(spiral):
    model_a, history_a = lc.fit_vae(spiral, SHORT)
    model_b, history_b = lc.fit_vae(spiral, SHORT)
    assert history_a == history_b
    for pa, pb in zip(model_a.parameters(), model_b.parameters(), strict=True):
        assert torch.equal(pa, pb)


def test_training_raises_the_elbo(spiral, trained):
    model, history = trained
    before, after = mean_elbo(lc.VAE.from_config(CONFIG), spiral), mean_elbo(model, spiral)
    # measured: -17.7 nats before, -5.2 after (+12.5); the training log agrees
    assert after - before > 5.0
    assert history["elbo"][-1] - history["elbo"][0] > 5.0


def test_elbo_is_below_the_log_likelihood(spiral, trained):
    model, _ = trained
    data = spiral[::5]
    elbo = lc.evaluate_vae(model, data, n_samples=256, generator=torch.Generator().manual_seed(2))["elbo"]
    log_p = lc.log_marginal_likelihood_mc(model, data, 100_000, model.noise_std.detach(),
                                          generator=torch.Generator().manual_seed(3))
    # ELBO <= log p(x); measured mean gap 0.07 nats, Monte Carlo error of either side < 0.01
    assert elbo.mean() < log_p.mean()


def test_evaluate_vae_keys_shapes_and_identity(trained, spiral):
    model, _ = trained
    out = lc.evaluate_vae(model, spiral[:10], n_samples=8, generator=torch.Generator().manual_seed(0))
    assert set(out) == ELBO_KEYS
    assert all(v.device.type == "cpu" for v in out.values())
    assert out["elbo"].shape == (10,) and out["z"].shape == (10, 2) and out["x_recon"].shape == (10, 2)
    torch.testing.assert_close(out["elbo"], out["reconstruction"] - out["kl_divergence"], rtol=0, atol=1e-6)


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"steps": 0}, ValueError, "steps must be > 0"),
    ({"steps": 2.5}, TypeError, "steps must be an int"),
    ({"lr": 0.0}, ValueError, "lr must be a finite number > 0"),
    ({"lr": float("nan")}, ValueError, "lr must be a finite number > 0"),
    ({"beta": -1.0}, ValueError, "beta must be a finite number >= 0"),
    ({"beta": float("inf")}, ValueError, "beta must be a finite number >= 0"),
    ({"data": torch.zeros(5, 3)}, ValueError, "data must have 2 columns"),
    ({"data": torch.full((5, 2), float("nan"))}, ValueError, "data must be finite"),
])
def test_train_vae_rejects_bad_arguments(kwargs, error, match):
    args = {"data": torch.zeros(5, 2), "steps": 1, "lr": 1e-2, "beta": 1.0} | kwargs
    with pytest.raises(error, match=match):
        lc.train_vae(lc.VAE(), **args)


def test_evaluate_vae_rejects_bad_arguments():
    with pytest.raises(ValueError, match="n_samples must be > 0"):
        lc.evaluate_vae(lc.VAE(), torch.zeros(5, 2), n_samples=0)
    with pytest.raises(ValueError, match="must be finite"):
        lc.evaluate_vae(lc.VAE(), torch.full((5, 2), float("nan")))


# --- the β sweep --------------------------------------------------------------------------------

def test_beta_sweep_results(sweep):
    assert list(sweep) == list(BETAS)
    for beta, result in sweep.items():
        assert {"reconstruction", "kl_divergence", "elbo", "noise_std", "latent_samples", "latent_means",
                "reconstructions", "history", "model"} <= set(result)
        assert result["elbo"] == pytest.approx(result["reconstruction"] - result["kl_divergence"], abs=1e-4), beta
        assert result["latent_samples"].shape == result["latent_means"].shape == (500, 2)
        assert result["reconstructions"].shape == (500, 2)
        assert all(len(values) == CONFIG.steps for values in result["history"].values())


def test_kl_falls_as_beta_grows(sweep):
    kl = [sweep[beta]["kl_divergence"] for beta in BETAS]   # measured 45, 12, 2.7, 1e-5, 7e-6
    assert all(later <= earlier + 1e-3 for earlier, later in itertools.pairwise(kl))
    assert kl[-1] < kl[0]


def test_reconstruction_falls_as_beta_grows(sweep):
    recon = [sweep[beta]["reconstruction"] for beta in BETAS]   # measured 5.13, 5.16, -2.5, -5.5, -5.5
    # At the optimum of rec - β KL both terms fall as β grows. The finite run leaves
    # β = 0 and β = 0.1 (both fit the data down to the noise) a little apart in the
    # wrong order: +0.03 nats with torch 2.13 on a CPU, +0.19 with torch 2.11.
    assert all(later <= earlier + RECONSTRUCTION_SLACK for earlier, later in itertools.pairwise(recon)), recon
    assert recon[-1] < recon[1] - 5.0, recon


def test_stacked_training_equals_training_alone(sweep, trained, spiral):
    model, history = trained
    stacked = sweep[1.0]
    # The vmap-stacked trainer (several models) and the single-model path compute the same
    # objective with differently ordered float operations: the first 200 steps agree to
    # float32 rounding, and after 1500 chaotic Adam steps the parameters differ (measured: up
    # to 0.15) but the trained models are equally good: their ELBOs agree to 0.02 nats
    # (measured: 1e-3).
    for key in HISTORY_KEYS:
        np.testing.assert_allclose(stacked["history"][key][:200], history[key][:200], rtol=0, atol=1e-4)
    alone = lc.evaluate_vae(model, spiral, generator=torch.Generator().manual_seed(2))
    assert abs(alone["elbo"].mean().item() - stacked["elbo"]) < 0.02


def test_stacked_training_equals_training_alone_on_every_device(spiral, device):
    # On a GPU, batched and single matrix products round differently and 1500 chaotic
    # Adam steps amplify that to O(1) parameter differences; over 25 steps it stays tiny.
    cfg = lc.VAEConfig(steps=25, lr=3e-2)
    stacked = lc.analyze_beta_vae(spiral, (0.0, 1.0, 5.0), steps=cfg.steps, seed=cfg.seed, config=cfg, device=device)
    model, history = lc.fit_vae(spiral, cfg, device=device)
    for (name, p), q in zip(model.named_parameters(), stacked[1.0]["model"].parameters(), strict=True):
        torch.testing.assert_close(q, p, rtol=0, atol=1e-4, msg=name)
    np.testing.assert_allclose(stacked[1.0]["history"]["loss"], history["loss"], rtol=0, atol=1e-4)


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"betas": ()}, ValueError, "betas must name at least one value"),
    ({"betas": (1.0, -0.5)}, ValueError, "beta must be a finite number >= 0"),
    ({"steps": 0}, ValueError, "steps must be > 0"),
    ({"data": torch.zeros(5, 3)}, ValueError, "data must have 2 columns"),
])
def test_analyze_beta_vae_rejects_bad_arguments(kwargs, error, match):
    args = {"data": torch.zeros(5, 2), "steps": 1, "seed": 0} | kwargs
    with pytest.raises(error, match=match):
        lc.analyze_beta_vae(**args)


def test_analyze_beta_vae_checks_the_learning_rate():
    with pytest.raises(ValueError, match="lr"):
        lc.analyze_beta_vae(torch.zeros(5, 2), (1.0,), steps=2, seed=0, config=lc.VAEConfig(lr=float("inf")))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")
def test_training_on_the_gpu_synchronises_per_block_not_per_step() -> None:
    """The loop keeps its log on the device and moves noise in blocks: 50 and 450 steps (both within one
    noise block) make the same number of synchronising CUDA calls."""
    def count(steps: int) -> int:
        data = lc.lab_data(device="cuda")
        model = lc.VAE.from_config(lc.VAEConfig(), device="cuda")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                lc.train_vae(model, data, steps=steps, lr=1e-2, generator=torch.Generator().manual_seed(0))
        finally:
            torch.cuda.set_sync_debug_mode("default")
        return sum("synchroniz" in str(w.message) for w in caught)

    assert 450 <= NOISE_BLOCK
    assert count(50) == count(450)


def test_step_noise_is_the_per_step_stream_across_blocks() -> None:
    """Noise drawn in blocks equals noise drawn step by step from the same generator (so numbers do not depend
    on the block size)."""
    steps = NOISE_BLOCK + 3
    blocks = list(_step_noise((7, 2), steps, torch.Generator().manual_seed(5), torch.device("cpu"), torch.float32))
    gen = torch.Generator().manual_seed(5)
    assert len(blocks) == steps
    for eps in blocks:
        assert torch.equal(eps, torch.randn((7, 2), generator=gen))
