"""The book's shared experiments: one definition of the lab's data set, its reference VAE and its β sweep.

Every chapter that works on "the spiral" calls :func:`lab_data`, every chapter that
needs "the trained VAE" calls :func:`reference_vae`, and the two chapters that train
the β sweep call :func:`beta_sweep`. Trained models are shared through :mod:`labcode.store`: within one
build each configuration is trained once. Changing a constant here (the noise level
:math:`\\sigma_{\\text{data}}`, the number of points, the sweep's β values, the
training budget) changes every page that uses it, and the pages glue these
parameters rather than typing them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch
from torch import Tensor

from .data import make_spiral
from .store import cached_training
from .vae import VAE, VAEConfig, analyze_beta_vae, fit_vae


@dataclass(frozen=True)
class SpiralSpec:
    """The lab's data set: ``n`` points of the spiral with noise ``noise`` drawn from ``seed``."""

    n: int = 500
    noise: float = 0.1
    seed: int = 0


#: the data set every chapter uses (the lab's n = 500, σ_data = 0.1, seed 0)
LAB_SPIRAL = SpiralSpec()

#: the training of the book's reference VAE (the lab's architecture; Adam with a cosine schedule)
REFERENCE_TRAINING = VAEConfig(steps=4000, lr=3e-2, seed=0)

#: the β values of the β sweep (chapters "The two forces" and "Rate and distortion"), trained with REFERENCE_TRAINING's budget
BETA_SWEEP: tuple[float, ...] = (0.0, 0.1, 1.0, 5.0, 10.0)


def lab_data(spec: SpiralSpec = LAB_SPIRAL, *, device: torch.device | str | None = None) -> Tensor:
    """The lab's spiral, ``(spec.n, 2)``, drawn on the CPU from ``spec.seed`` and moved to ``device``."""
    if not isinstance(spec, SpiralSpec):
        raise TypeError(f"spec must be a SpiralSpec, got {type(spec).__name__}")
    data = make_spiral(spec.n, spec.noise, generator=torch.Generator().manual_seed(spec.seed))
    return data if device is None else data.to(device)


def _cpu(value):
    """A payload with every tensor moved to the CPU (what the store holds)."""
    if isinstance(value, Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: _cpu(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_cpu(v) for v in value]
    return value


def _model(cfg: VAEConfig, state: dict[str, Tensor], device: torch.device | str | None) -> VAE:
    model = VAE.from_config(cfg, device=device)
    model.load_state_dict(state)
    return model


def reference_vae(data: Tensor | None = None, cfg: VAEConfig = REFERENCE_TRAINING, *,
                  device: torch.device | str | None = None) -> tuple[VAE, dict[str, list[float]]]:
    """The book's reference VAE: :func:`fit_vae` on ``data`` (default :func:`lab_data`) with ``cfg``.

    Within a build the result comes from :mod:`labcode.store` when another chapter trained it already.
    """
    if data is None:
        data = lab_data()

    def train() -> dict:
        model, history = fit_vae(data, cfg, device=device)
        return _cpu({"state": model.state_dict(), "history": history})

    payload = cached_training("reference_vae", asdict(cfg), data, device, train)
    return _model(cfg, payload["state"], device), payload["history"]


def beta_sweep(data: Tensor | None = None, betas: tuple[float, ...] = BETA_SWEEP,
               cfg: VAEConfig = REFERENCE_TRAINING, *, device: torch.device | str | None = None) -> dict[float, dict]:
    """The β sweep: one VAE per β in ``betas``, each trained like the reference VAE (see :func:`analyze_beta_vae`).

    Within a build the result comes from :mod:`labcode.store` when another chapter trained it already.
    Tensors come back on ``device`` (the CPU by default), as :func:`analyze_beta_vae` returns them.
    """
    if data is None:
        data = lab_data()
    cfg = replace(cfg, beta=1.0)
    betas = tuple(float(b) for b in betas)

    def train() -> dict:
        results = analyze_beta_vae(data, betas=betas, steps=cfg.steps, seed=cfg.seed, config=cfg, device=device)
        return _cpu({"betas": list(betas), "results": [
            {**{k: v for k, v in results[b].items() if k != "model"}, "state": results[b]["model"].state_dict()}
            for b in betas]})

    payload = cached_training("beta_sweep", {**asdict(cfg), "betas": list(betas)}, data, device, train)
    target = torch.device(device) if device is not None else data.device
    sweep = {}
    for beta, entry in zip(payload["betas"], payload["results"], strict=True):
        result = {k: (v.to(target) if isinstance(v, Tensor) else v) for k, v in entry.items() if k != "state"}
        result["model"] = _model(cfg, entry["state"], device)
        sweep[float(beta)] = result
    return sweep
