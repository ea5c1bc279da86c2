"""The VAE, its training loop and the β sweep (Part 5; chapters "The ELBO" and "The two forces").

Training maximises the β-weighted objective
:math:`\\mathbb E_q[\\log p(x\\mid z)] - \\beta\\, \\mathrm{KL}(q(z\\mid x)\\,\\|\\,p(z))`
(the ELBO at :math:`\\beta = 1`) with full-batch Adam and a cosine-decayed
learning rate, one reparameterised sample per point and step.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, replace
from functools import partial

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from ._checks import check_finite, check_matrix, check_positive_int, check_same_shape, randn
from .elbo import elbo_terms, kl_regularization, reconstruction_loss


@dataclass(frozen=True)
class VAEConfig:
    """Sizes and training budget of one VAE run; ``replace(cfg, beta=5.0)`` makes a sweep."""

    data_dim: int = 2
    latent_dim: int = 2
    hidden: int = 32
    steps: int = 2000
    lr: float = 1e-2
    beta: float = 1.0
    seed: int = 0


def mlp(n_in: int, hidden: int, n_out: int, generator: torch.Generator | None) -> nn.Sequential:
    """The book's one-hidden-layer ReLU network, (..., n_in) -> (..., n_out), initialised from ``generator`` when given."""
    net = nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, n_out))
    if generator is not None:   # PyTorch's default init, drawn from the given generator
        for layer in (net[0], net[2]):
            nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
            bound = 1 / math.sqrt(layer.in_features)
            nn.init.uniform_(layer.bias, -bound, bound, generator=generator)
    return net


class VAE(nn.Module):
    """The lab's VAE: :math:`q_\\phi(z\\mid x) = \\mathcal N(\\mu_\\phi(x), \\operatorname{diag} e^{\\texttt{logvar}_\\phi(x)})`,
    :math:`p_\\theta(x \\mid z) = \\mathcal N(f_\\theta(z), e^{\\texttt{decoder\\_logvar}} I)`, :math:`p(z) = \\mathcal N(0, I)`.

    Encoder and decoder are one-hidden-layer ReLU MLPs of width ``hidden``;
    ``decoder_logvar`` is one learned scalar :math:`\\log\\sigma_x^2`.
    Pass ``generator`` for a reproducible initialisation.
    """

    def __init__(self, data_dim: int = 2, latent_dim: int = 2, hidden: int = 32, *,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        for name, value in (("data_dim", data_dim), ("latent_dim", latent_dim), ("hidden", hidden)):
            check_positive_int(name, value)
        self.data_dim, self.latent_dim = data_dim, latent_dim
        self.encoder = mlp(data_dim, hidden, 2 * latent_dim, generator)
        self.decoder = mlp(latent_dim, hidden, data_dim, generator)
        self.decoder_logvar = nn.Parameter(torch.zeros(1))

    @classmethod
    def from_config(cls, cfg: VAEConfig, device: torch.device | str | None = None) -> VAE:
        """A VAE sized by ``cfg`` and initialised from ``cfg.seed``."""
        model = cls(cfg.data_dim, cfg.latent_dim, cfg.hidden,
                    generator=torch.Generator().manual_seed(cfg.seed))
        return model.to(device) if device is not None else model

    @property
    def noise_std(self) -> Tensor:
        """:math:`\\sigma_x = e^{\\texttt{decoder\\_logvar}/2}`, a 0-dim tensor."""
        return torch.exp(0.5 * self.decoder_logvar[0])

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x: (batch, data_dim) -> (mu, logvar), each (batch, latent_dim)."""
        check_matrix("x", x, self.data_dim)
        mu, logvar = self.encoder(x).chunk(2, dim=-1)
        return mu, logvar

    def decode(self, z: Tensor) -> Tensor:
        """z: (batch, latent_dim) -> decoder means :math:`f_\\theta(z)`, (batch, data_dim)."""
        return self.decoder(z)

    def compute_elbo(self, x: Tensor, *, generator: torch.Generator | None = None,
                     eps: Tensor | None = None) -> dict[str, Tensor]:
        """One-sample ELBO per point: :math:`\\log p_\\theta(x\\mid z) - \\mathrm{KL}(q_\\phi(z\\mid x)\\|p(z))`, :math:`z = \\mu + \\sigma\\varepsilon`.

        Args:
            x: (batch, data_dim) points.
            generator: source of :math:`\\varepsilon` (ignored when ``eps`` is given).
            eps: optional (batch, latent_dim) noise.

        Returns a dict: ``elbo``, ``reconstruction``, ``kl_divergence`` (batch,);
        ``mu``, ``logvar``, ``z`` (batch, latent_dim); ``x_recon`` (batch, data_dim),
        the decoder mean at ``z``. ``elbo == reconstruction - kl_divergence``.
        """
        check_finite("x", x)
        mu, logvar = self.encode(x)
        if eps is None:
            eps = randn(tuple(mu.shape), generator=generator, device=mu.device, dtype=mu.dtype)
        else:
            check_same_shape("eps", eps, "mu", mu)
            check_finite("eps", eps)
        return elbo_terms(x, mu, logvar, eps, self.decoder, self.decoder_logvar)


def _objective(template: VAE, params: dict[str, Tensor], x: Tensor, eps: Tensor, beta: Tensor) -> Tensor:
    """[mean reconstruction, mean KL, loss] of one model given its parameters (for ``vmap``)."""
    def sub(prefix: str) -> dict[str, Tensor]:
        return {k[len(prefix):]: v for k, v in params.items() if k.startswith(prefix)}

    mu, logvar = functional_call(template.encoder, sub("encoder."), (x,)).chunk(2, dim=-1)
    out = elbo_terms(x, mu, logvar, eps, lambda z: functional_call(template.decoder, sub("decoder."), (z,)),
                      params["decoder_logvar"])
    recon, kl = out["reconstruction"].mean(), out["kl_divergence"].mean()
    return torch.stack([recon, kl, -(recon - beta * kl)])


#: steps of training noise drawn and moved to the device at once (one host-to-device copy per block, not per step)
NOISE_BLOCK = 500


def _step_noise(shape: tuple[int, ...], steps: int, generator: torch.Generator | None,
                device: torch.device, dtype: torch.dtype) -> Iterator[Tensor]:
    """The noise of each training step, ``shape`` each: drawn one step at a time on the generator's device
    (the same stream, so the same numbers, as a draw per step) and moved in blocks of :data:`NOISE_BLOCK` steps,
    so that a GPU run makes no host-device copy, and so no synchronisation, per step."""
    for start in range(0, steps, NOISE_BLOCK):
        count = min(NOISE_BLOCK, steps - start)
        block = torch.stack([randn(shape, generator=generator, dtype=dtype,
                                   device=None if generator is not None else device) for _ in range(count)])
        yield from block.to(device).unbind(0)


def _train_stacked(models: list[VAE], data: Tensor, betas: list[float], *, steps: int, lr: float,
                   generator: torch.Generator | None, progress: bool) -> Tensor:
    """Train several same-shaped VAEs at once, model ``m`` on weight ``betas[m]``; returns a (M, steps, 3) log.

    The parameters are stacked and the objectives evaluated with ``torch.func.vmap``;
    the summed loss has independent gradients per model and Adam acts
    elementwise, so this is the same as training each model alone (up to
    float rounding), at the cost of about one. All models see the same noise.
    """
    template = models[0]
    device = template.decoder_logvar.device
    params, _ = stack_module_state(models)
    beta_t = torch.tensor(betas, device=device, dtype=data.dtype)
    optimiser = torch.optim.Adam(params.values(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=steps)
    if len(models) > 1:
        objective = vmap(partial(_objective, template), in_dims=(0, None, None, 0))
    else:   # one model: the same objective on the single slice, without vmap's overhead
        def objective(p: dict[str, Tensor], x: Tensor, eps: Tensor, beta: Tensor) -> Tensor:
            return _objective(template, {k: v[0] for k, v in p.items()}, x, eps, beta[0])[None]
    log = torch.empty(steps, len(models), 3, device=device)
    iterator = range(steps)
    if progress:
        from tqdm.auto import tqdm
        iterator = tqdm(iterator, desc="training")
    noise = _step_noise((data.shape[0], template.latent_dim), steps, generator, device, data.dtype)
    for step, eps in zip(iterator, noise, strict=True):
        values = objective(params, data, eps, beta_t)
        optimiser.zero_grad(set_to_none=True)
        values[:, 2].sum().backward()
        optimiser.step()
        schedule.step()
        log[step] = values.detach()
    with torch.no_grad():
        for m, model in enumerate(models):
            for name, p in model.named_parameters():
                p.copy_(params[name][m])
            model.eval()
    return log.transpose(0, 1).cpu()


def _check_training_args(steps: int, lr: float, beta: float) -> None:
    check_positive_int("steps", steps)
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a finite number > 0, got {lr}")
    if not (isinstance(beta, (int, float)) and math.isfinite(beta) and beta >= 0):
        raise ValueError(f"beta must be a finite number >= 0, got {beta}")


def _history(log: Tensor) -> dict[str, list[float]]:
    recon, kl, loss = log.T.tolist()
    return {"loss": loss, "reconstruction": recon, "kl": kl, "elbo": [r - k for r, k in zip(recon, kl, strict=True)]}


def train_vae(model: VAE, data: Tensor, *, steps: int, lr: float, beta: float = 1.0,
              generator: torch.Generator | None = None, progress: bool = False) -> dict[str, list[float]]:
    """Full-batch Adam on :math:`-\\frac1N\\sum_i\\big[\\mathrm{rec}_i - \\beta\\,\\mathrm{KL}_i\\big]`, cosine-decayed learning rate.

    Args:
        model: the VAE, trained in place on its own device.
        data: (N, data_dim) training points (moved to the model's device).
        steps: number of optimiser steps (> 0).
        lr: peak learning rate (> 0).
        beta: weight of the KL term (>= 0); 1 is the ELBO.
        generator: source of the reparameterisation noise.
        progress: show a tqdm progress bar.

    Returns:
        per-step lists ``loss``, ``reconstruction``, ``kl`` and ``elbo``
        (batch means of one-sample estimates, before each step's update).
    """
    _check_training_args(steps, lr, beta)
    check_matrix("data", data, model.data_dim)
    check_finite("data", data)
    data = data.to(model.decoder_logvar.device)
    log = _train_stacked([model], data, [float(beta)], steps=steps, lr=lr,
                         generator=generator, progress=progress)
    return _history(log[0])


@torch.no_grad()
def evaluate_vae(model: VAE, data: Tensor, *, n_samples: int = 64,
                 generator: torch.Generator | None = None) -> dict[str, Tensor]:
    """Per-point ELBO terms averaged over ``n_samples`` reparameterised draws.

    Returns ``elbo``, ``reconstruction``, ``kl_divergence`` (N,) averaged over
    draws, and from one draw ``mu``, ``logvar``, ``z``, ``x_recon``; all on the CPU.
    """
    check_positive_int("n_samples", n_samples)
    data = data.to(model.decoder_logvar.device)
    mu, logvar = model.encode(data)
    eps = randn((n_samples, *mu.shape), generator=generator, device=mu.device, dtype=mu.dtype)
    z = mu + torch.exp(0.5 * logvar) * eps                       # (S, N, d)
    x_mu = model.decode(z)
    recon = reconstruction_loss(data.expand_as(x_mu), x_mu, model.decoder_logvar.expand_as(x_mu)).mean(0)
    kl = kl_regularization(mu, logvar)
    return {k: v.cpu() for k, v in {
        "elbo": recon - kl, "reconstruction": recon, "kl_divergence": kl,
        "mu": mu, "logvar": logvar, "z": z[0], "x_recon": x_mu[0]}.items()}


def fit_vae(data: Tensor, cfg: VAEConfig = VAEConfig(), *, device: torch.device | str | None = None,
            progress: bool = False) -> tuple[VAE, dict[str, list[float]]]:
    """Build a VAE from ``cfg`` and train it on ``data``: returns (model, history).

    Initialisation and training noise both come from ``cfg.seed``.
    """
    model = VAE.from_config(cfg, device=device)
    history = train_vae(model, data, steps=cfg.steps, lr=cfg.lr, beta=cfg.beta,
                        generator=torch.Generator().manual_seed(cfg.seed + 1), progress=progress)
    return model, history


def analyze_beta_vae(data: Tensor, betas: tuple[float, ...] = (0.0, 0.1, 1.0, 5.0, 10.0), *,
                     steps: int, seed: int, config: VAEConfig | None = None,
                     device: torch.device | str | None = None) -> dict[float, dict]:
    """Train one VAE per β on ``data``, every one from the same seed, and evaluate it.

    Each model minimises :math:`-\\mathrm{rec} + \\beta\\,\\mathrm{KL}`. The
    evaluation averages over 64 reparameterised draws per point.

    Returns:
        ``{beta: result}`` where ``result`` has the batch means
        ``reconstruction``, ``kl_divergence``, ``elbo`` (floats, the ELBO at
        β = 1 whatever the training β), ``noise_std`` (float), the per-point
        tensors ``latent_samples`` (one z per point), ``latent_means``,
        ``reconstructions`` (decoder means at that one sampled z), the training ``history`` and the
        trained ``model``.
    """
    if len(betas) == 0:
        raise ValueError("betas must name at least one value")
    cfg = replace(config or VAEConfig(), steps=steps, seed=seed)
    for beta in betas:
        _check_training_args(steps, cfg.lr, beta)
    check_matrix("data", data, cfg.data_dim)
    check_finite("data", data)
    models = [VAE.from_config(cfg, device=device) for _ in betas]
    data = data.to(models[0].decoder_logvar.device)
    logs = _train_stacked(models, data, [float(b) for b in betas], steps=cfg.steps, lr=cfg.lr,
                          generator=torch.Generator().manual_seed(cfg.seed + 1), progress=False)
    results: dict[float, dict] = {}
    for beta, model, log in zip(betas, models, logs, strict=True):
        ev = evaluate_vae(model, data, generator=torch.Generator().manual_seed(cfg.seed + 2))
        results[float(beta)] = {
            "reconstruction": ev["reconstruction"].mean().item(),
            "kl_divergence": ev["kl_divergence"].mean().item(),
            "elbo": ev["elbo"].mean().item(),
            "noise_std": model.noise_std.item(),
            "latent_samples": ev["z"], "latent_means": ev["mu"],
            "reconstructions": ev["x_recon"], "history": _history(log), "model": model,
        }
    return results
