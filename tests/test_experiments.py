"""The shared experiments: one data set, one reference VAE, one β sweep for every chapter."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

import labcode as lc


def test_lab_data_is_the_specified_spiral() -> None:
    spec = lc.LAB_SPIRAL
    expected = lc.make_spiral(spec.n, spec.noise, generator=torch.Generator().manual_seed(spec.seed))
    assert torch.equal(lc.lab_data(), expected)
    assert lc.lab_data().shape == (spec.n, 2)


def test_lab_data_follows_its_spec() -> None:
    spec = lc.SpiralSpec(n=50, noise=0.3, seed=4)
    data = lc.lab_data(spec)
    assert data.shape == (50, 2)
    assert torch.equal(data, lc.make_spiral(50, 0.3, generator=torch.Generator().manual_seed(4)))
    assert not torch.equal(data, lc.lab_data(replace(spec, seed=5)))


def test_lab_data_rejects_a_non_spec() -> None:
    with pytest.raises(TypeError, match="spec"):
        lc.lab_data((500, 0.1, 0))


def test_reference_vae_is_fit_vae_with_the_reference_config() -> None:
    data = lc.lab_data(lc.SpiralSpec(n=40))
    cfg = replace(lc.REFERENCE_TRAINING, steps=20)
    model, history = lc.reference_vae(data, cfg)
    again, _ = lc.fit_vae(data, cfg)
    for a, b in zip(model.parameters(), again.parameters(), strict=True):
        assert torch.equal(a, b)
    assert len(history["loss"]) == 20


def test_beta_sweep_trains_one_model_per_beta() -> None:
    data = lc.lab_data(lc.SpiralSpec(n=40))
    cfg = replace(lc.REFERENCE_TRAINING, steps=10)
    results = lc.beta_sweep(data, (0.0, 2.0), cfg)
    assert list(results) == [0.0, 2.0]
    direct = lc.analyze_beta_vae(data, (0.0, 2.0), steps=10, seed=cfg.seed, config=cfg)
    for beta in results:
        assert results[beta]["elbo"] == direct[beta]["elbo"]
