"""The shared experiments: one data set, one reference VAE, one β sweep for every chapter."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

import labcode as lc
from labcode import experiments


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


def test_shared_models_come_back_on_the_requested_device(monkeypatch: pytest.MonkeyPatch) -> None:
    """``lc.beta_sweep``'s tensors and models, and ``lc.reference_vae``'s model, are on the ``device`` asked for, also
    when the store hands back its CPU payload. (``lc.analyze_beta_vae`` and ``lc.evaluate_vae`` return their tensors
    on the CPU instead: a chapter that mixes a sweep's tensors with its data must keep both on ``device``.) Checked
    with PyTorch's data-less "meta" device, which every machine has and which refuses to mix with CPU tensors as
    CUDA does, so a CPU-only run catches a result left on the CPU."""
    data = lc.lab_data(lc.SpiralSpec(n=20))
    cfg = replace(lc.REFERENCE_TRAINING, steps=3)
    payloads = {}
    real = experiments.cached_training

    def capture(kind, config, data_, device, train):
        payloads[kind] = real(kind, config, data_, device, train)
        return payloads[kind]

    monkeypatch.setattr(experiments, "cached_training", capture)
    lc.beta_sweep(data, (0.0, 1.0), cfg)
    lc.reference_vae(data, cfg)
    assert all(t.device.type == "cpu" for entry in payloads["beta_sweep"]["results"]
               for t in entry.values() if isinstance(t, torch.Tensor)), "the store holds CPU tensors"
    monkeypatch.setattr(experiments, "cached_training", lambda kind, *args: payloads[kind])
    with pytest.warns(UserWarning, match="meta"):        # loading values into data-less parameters is a no-op
        sweep = lc.beta_sweep(data, (0.0, 1.0), cfg, device="meta")
        model, _ = lc.reference_vae(data, cfg, device="meta")
    for beta, result in sweep.items():
        tensors = {k: v for k, v in result.items() if isinstance(v, torch.Tensor)}
        assert {"latent_samples", "latent_means", "reconstructions"} <= set(tensors), beta
        assert all(t.device.type == "meta" for t in tensors.values()), beta
        assert all(p.device.type == "meta" for p in result["model"].parameters()), beta
    assert all(p.device.type == "meta" for p in model.parameters())
    with pytest.raises(RuntimeError):                     # what the chapter "The two forces" once did on CUDA
        sweep[1.0]["reconstructions"] - data
