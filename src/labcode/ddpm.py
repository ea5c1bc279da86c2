"""Training a diffusion model: noise prediction, the reweighted bound, ancestral sampling (chapter "Training a diffusion model").

The forward process and the schedule are those of :mod:`labcode.diffusion`
(``betas[t - 1]`` is the noise variance :math:`1 - \\alpha_t`, ``alpha_bar[t]`` is
:math:`\\bar\\alpha_t`). The reverse step is
:math:`p_\\theta(x_{t-1} \\mid x_t) = \\mathcal N(\\mu_\\theta(x_t, t), \\sigma_t^2 I)` with the
mean written through a noise-prediction network :math:`\\varepsilon_\\theta` (Ho et al. 2020):

.. math:: \\mu_\\theta(x_t, t) = \\frac{1}{\\sqrt{\\alpha_t}}\\Big(x_t - \\frac{1 - \\alpha_t}{\\sqrt{1 - \\bar\\alpha_t}}\\,
          \\varepsilon_\\theta(x_t, t)\\Big).

With :math:`x_t = \\sqrt{\\bar\\alpha_t}\\, x_0 + \\sqrt{1 - \\bar\\alpha_t}\\, \\varepsilon`, every term of the
diffusion ELBO (the KL terms for :math:`t \\ge 2` and the Gaussian decoder
:math:`p_\\theta(x_0 \\mid x_1) = \\mathcal N(\\mu_\\theta(x_1, 1), \\sigma_1^2 I)` at :math:`t = 1`) is a
weighted squared error in :math:`\\varepsilon` plus a constant,

.. math:: \\lambda_t\\, \\mathbb E\\,\\|\\varepsilon - \\varepsilon_\\theta(x_t, t)\\|^2 + c_t, \\qquad
          \\lambda_t = \\frac{(1 - \\alpha_t)^2}{2 \\sigma_t^2\\, \\alpha_t\\, (1 - \\bar\\alpha_t)},

with :math:`c_t = \\frac D2 (\\omega_t - 1 - \\log \\omega_t)`, :math:`\\omega_t = \\tilde\\sigma_t^2 / \\sigma_t^2`, for
:math:`t \\ge 2` and :math:`c_1 = \\frac D2 \\log(2\\pi\\sigma_1^2)`. Training uses
:math:`L_{\\text{simple}} = \\mathbb E_{t, \\varepsilon} \\|\\varepsilon - \\varepsilon_\\theta(x_t, t)\\|^2` with
:math:`t` uniform on :math:`\\{1, \\dots, T\\}`: the same squared errors with the weights :math:`\\lambda_t`
replaced by :math:`1/T`, and without the constants :math:`c_t` and the prior term :math:`L_T` (neither depends
on the network).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from ._checks import as_tensor, check_finite, check_matrix, check_positive_int, randn
from .diffusion import alpha_bar_schedule, linear_beta_schedule, prior_matching_kl
from .store import cached_training, code_fingerprint

#: rows per block in :func:`mixture_noise_posterior_mean` (bounds the (rows, K) matrix of distances)
_BLOCK = 4096

#: the variance choices of Ho et al. (2020, section 3.2): the forward step's 1 - alpha_t, or the posterior's
VARIANCE_KINDS = ("forward", "posterior")


@dataclass(frozen=True)
class DDPMConfig:
    """A noise-prediction model on the spiral and its training budget.

    The schedule is :func:`labcode.diffusion.linear_beta_schedule` with ``n_steps`` steps from
    ``noise_start`` to ``noise_end``. Training is full-batch Adam on :math:`L_{\\text{simple}}` with a
    cosine-decayed learning rate, one fresh :math:`(t, \\varepsilon)` per point and step.
    """

    n_steps: int = 100
    noise_start: float = 1e-3
    noise_end: float = 0.2
    data_dim: int = 2
    hidden: int = 96
    embed_dim: int = 16
    steps: int = 2500
    lr: float = 1e-2
    seed: int = 0

    def betas(self) -> Tensor:
        """(T,) float64 noise variances :math:`1 - \\alpha_t`."""
        return linear_beta_schedule(self.n_steps, self.noise_start, self.noise_end)


#: the chapter's model: T = 100 steps with DDPM's linear schedule scaled by 1000 / T
REFERENCE_DDPM = DDPMConfig()


def _check_betas(betas: Tensor) -> tuple[Tensor, Tensor]:
    """``betas`` validated, and the schedule :math:`\\bar\\alpha_0, \\dots, \\bar\\alpha_T` (both as given)."""
    betas = as_tensor("betas", betas)
    return betas, alpha_bar_schedule(betas)


def _check_sigma2(sigma2: Tensor, betas: Tensor) -> Tensor:
    sigma2 = as_tensor("sigma2", sigma2)
    if sigma2.shape != betas.shape:
        raise ValueError(f"sigma2 must have the shape of betas {tuple(betas.shape)}, got {tuple(sigma2.shape)}")
    check_finite("sigma2", sigma2)
    if not (sigma2 > 0).all():
        raise ValueError("sigma2 must be > 0 for every step")
    return sigma2


def _check_steps(t: Tensor, n_steps: int, batch: int) -> Tensor:
    if not isinstance(t, Tensor) or t.is_floating_point() or t.dtype == torch.bool:
        raise TypeError(f"t must be an integer tensor, got {type(t).__name__ if not isinstance(t, Tensor) else t.dtype}")
    if t.shape != (batch,):
        raise ValueError(f"t must have shape ({batch},), got {tuple(t.shape)}")
    if (t < 1).any() or (t > n_steps).any():
        raise ValueError(f"t must lie in [1, {n_steps}], got values in [{t.min().item()}, {t.max().item()}]")
    return t


def reverse_variances(betas: Tensor, kind: str) -> Tensor:
    """The fixed reverse variances :math:`\\sigma_t^2`, :math:`t = 1, \\dots, T`, of Ho et al. (2020, section 3.2).

    ``"forward"``: :math:`\\sigma_t^2 = 1 - \\alpha_t`. ``"posterior"``: :math:`\\sigma_t^2 = \\tilde\\sigma_t^2
    = \\frac{1 - \\bar\\alpha_{t-1}}{1 - \\bar\\alpha_t}(1 - \\alpha_t)` for :math:`t \\ge 2`. The posterior
    variance of step 1 is :math:`\\tilde\\sigma_1^2 = 0` (the forward posterior
    :math:`q(x_0 \\mid x_1, x_0)` is a point mass), which a Gaussian decoder cannot have, so both choices use
    :math:`\\sigma_1^2 = 1 - \\alpha_1` at :math:`t = 1`. (Ho et al.'s code uses :math:`\\tilde\\sigma_2^2` there
    in its posterior choice.)

    Args:
        betas: (T,) noise variances :math:`1 - \\alpha_t` in (0, 1).
        kind: ``"forward"`` or ``"posterior"``.

    Returns:
        (T,) variances, dtype and device of ``betas``; entry ``t - 1`` is :math:`\\sigma_t^2`.
    """
    betas, alpha_bar = _check_betas(betas)
    if kind not in VARIANCE_KINDS:
        raise ValueError(f"kind must be one of {VARIANCE_KINDS}, got {kind!r}")
    if kind == "forward":
        return betas.clone()
    posterior = (1 - alpha_bar[:-1]) / (1 - alpha_bar[1:]) * betas
    return torch.cat([betas[:1], posterior[1:]])


def epsilon_weights(betas: Tensor, sigma2: Tensor) -> Tensor:
    """The weights :math:`\\lambda_t = \\frac{(1 - \\alpha_t)^2}{2\\sigma_t^2\\, \\alpha_t\\, (1 - \\bar\\alpha_t)}` of the bound's ε-errors.

    Args:
        betas: (T,) noise variances :math:`1 - \\alpha_t`.
        sigma2: (T,) reverse variances :math:`\\sigma_t^2 > 0` (e.g. from :func:`reverse_variances`).

    Returns:
        (T,) weights; entry ``t - 1`` is :math:`\\lambda_t`.
    """
    betas, alpha_bar = _check_betas(betas)
    sigma2 = _check_sigma2(sigma2, betas)
    return betas**2 / (2 * sigma2 * (1 - betas) * (1 - alpha_bar[1:]))


def bound_constants(betas: Tensor, sigma2: Tensor, data_dim: int) -> Tensor:
    """The constants :math:`c_t` of the bound's terms, :math:`t = 1, \\dots, T`.

    .. math:: c_1 = \\tfrac D2 \\log(2\\pi\\sigma_1^2), \\qquad
              c_t = \\tfrac D2\\big(\\omega_t - 1 - \\log \\omega_t\\big),\\ \\omega_t = \\tilde\\sigma_t^2/\\sigma_t^2 \\quad (t \\ge 2).

    :math:`c_t = 0` for :math:`t \\ge 2` exactly when :math:`\\sigma_t^2 = \\tilde\\sigma_t^2`.

    Args:
        betas: (T,) noise variances; sigma2: (T,) reverse variances; data_dim: :math:`D`.

    Returns:
        (T,) constants in nats.
    """
    betas, alpha_bar = _check_betas(betas)
    sigma2 = _check_sigma2(sigma2, betas)
    check_positive_int("data_dim", data_dim)
    posterior = (1 - alpha_bar[:-1]) / (1 - alpha_bar[1:]) * betas
    log_ratio = torch.log(posterior[1:]) - torch.log(sigma2[1:])                  # log omega_t, t >= 2
    variance_terms = 0.5 * data_dim * (torch.expm1(log_ratio) - log_ratio)        # D/2 (omega - 1 - log omega)
    decoder = 0.5 * data_dim * torch.log(2 * math.pi * sigma2[:1])                # D/2 log(2 pi sigma_1^2)
    return torch.cat([decoder, variance_terms])


def reverse_mean(x_t: Tensor, t: Tensor, eps_hat: Tensor, betas: Tensor) -> Tensor:
    """:math:`\\mu_\\theta(x_t, t) = \\big(x_t - \\frac{1 - \\alpha_t}{\\sqrt{1 - \\bar\\alpha_t}}\\, \\hat\\varepsilon\\big) / \\sqrt{\\alpha_t}`.

    Args:
        x_t: (batch, data_dim) noised points.
        t: (batch,) integer steps in :math:`[1, T]`.
        eps_hat: (batch, data_dim) predicted noise :math:`\\varepsilon_\\theta(x_t, t)`.
        betas: (T,) noise variances.

    Returns:
        (batch, data_dim), dtype and device of ``x_t``.
    """
    check_matrix("x_t", x_t)
    check_matrix("eps_hat", eps_hat, x_t.shape[1])
    if eps_hat.shape != x_t.shape:
        raise ValueError(f"eps_hat must have the shape of x_t {tuple(x_t.shape)}, got {tuple(eps_hat.shape)}")
    betas, alpha_bar = _check_betas(betas)
    t = _check_steps(t, betas.numel(), x_t.shape[0]).to(betas.device)
    beta = betas[t - 1].to(x_t)[:, None]
    one_minus_bar = (1 - alpha_bar[t]).to(x_t)[:, None]
    return (x_t - beta / torch.sqrt(one_minus_bar) * eps_hat) / torch.sqrt(1 - beta)


def time_embedding(t: Tensor, dim: int, period: float) -> Tensor:
    """Sinusoidal embedding of integer steps: :math:`(\\sin \\nu_k t, \\cos \\nu_k t)_{k < \\text{dim}/2}`.

    The frequencies are geometric, :math:`\\nu_k = \\text{period}^{-2k/\\text{dim}}` radians per step for
    :math:`k = 0, \\dots, \\text{dim}/2 - 1`: from 1 radian per step down to
    :math:`\\text{period}^{-1 + 2/\\text{dim}}`, which turns by :math:`\\text{period}^{2/\\text{dim}}` radians over
    ``period`` steps (about 1.8 radians, under a third of a turn, for period 100 and dim 16). This is the
    Transformer's position code, which DDPM also uses, with ``period`` in place of its 10000.

    Args:
        t: (batch,) integer steps.
        dim: even embedding size (> 0).
        period: the base of the geometric ladder of frequencies (> 1), e.g. :math:`T`.

    Returns:
        (batch, dim) float32 on the device of ``t``.
    """
    check_positive_int("dim", dim)
    if dim % 2:
        raise ValueError(f"dim must be even, got {dim}")
    if not (isinstance(period, (int, float)) and math.isfinite(period) and period > 1):
        raise ValueError(f"period must be a finite number > 1, got {period}")
    half = dim // 2
    freqs = torch.exp(-math.log(period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = t.to(torch.float32)[:, None] * freqs[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


class EpsilonNet(nn.Module):
    """The noise predictor :math:`\\varepsilon_\\theta(x_t, t)`: an MLP on :math:`x_t` and a sinusoidal code of :math:`t`.

    Two hidden layers of width ``hidden`` with SiLU activations; the input is :math:`x_t` concatenated with
    :func:`time_embedding` of :math:`t` (period :math:`T`). Pass ``generator`` for a reproducible
    initialisation (PyTorch's default for linear layers, drawn from it).
    """

    def __init__(self, n_steps: int, data_dim: int = 2, hidden: int = 96, embed_dim: int = 16, *,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        for name, value in (("n_steps", n_steps), ("data_dim", data_dim), ("hidden", hidden),
                            ("embed_dim", embed_dim)):
            check_positive_int(name, value)
        if embed_dim % 2:
            raise ValueError(f"embed_dim must be even, got {embed_dim}")
        self.n_steps, self.data_dim, self.embed_dim = n_steps, data_dim, embed_dim
        self.net = nn.Sequential(nn.Linear(data_dim + embed_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden),
                                 nn.SiLU(), nn.Linear(hidden, data_dim))
        if generator is not None:
            for layer in self.net:
                if isinstance(layer, nn.Linear):
                    nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
                    bound = 1 / math.sqrt(layer.in_features)
                    nn.init.uniform_(layer.bias, -bound, bound, generator=generator)

    @classmethod
    def from_config(cls, cfg: DDPMConfig, device: torch.device | str | None = None) -> EpsilonNet:
        """A network sized by ``cfg`` and initialised from ``cfg.seed``."""
        model = cls(cfg.n_steps, cfg.data_dim, cfg.hidden, cfg.embed_dim,
                    generator=torch.Generator().manual_seed(cfg.seed))
        return model.to(device) if device is not None else model

    def forward(self, x_t: Tensor, t: Tensor) -> Tensor:
        """x_t: (batch, data_dim), t: (batch,) integer steps in [1, T] -> :math:`\\varepsilon_\\theta(x_t, t)`, (batch, data_dim)."""
        check_matrix("x_t", x_t, self.data_dim)
        _check_steps(t, self.n_steps, x_t.shape[0])
        code = time_embedding(t, self.embed_dim, max(self.n_steps, 2)).to(x_t)
        return self.net(torch.cat([x_t, code], dim=1))

    def _unchecked(self, x_t: Tensor, t: Tensor) -> Tensor:
        code = time_embedding(t, self.embed_dim, max(self.n_steps, 2)).to(x_t)
        return self.net(torch.cat([x_t, code], dim=1))


def simple_loss(model: EpsilonNet, x0: Tensor, alpha_bar: Tensor, t: Tensor, eps: Tensor) -> Tensor:
    """One-sample :math:`L_{\\text{simple}}` per row: the squared error :math:`\\|\\varepsilon - \\varepsilon_\\theta(x_t, t)\\|^2`.

    Here :math:`x_t = \\sqrt{\\bar\\alpha_t}\\, x_0 + \\sqrt{1-\\bar\\alpha_t}\\, \\varepsilon`.

    Args:
        model: the noise predictor.
        x0: (batch, data_dim) data; t: (batch,) steps in [1, T]; eps: (batch, data_dim) noise.
        alpha_bar: (T + 1,) schedule.

    Returns:
        (batch,) squared errors; their mean over rows with :math:`t` uniform is an unbiased estimate of
        :math:`L_{\\text{simple}}`.
    """
    check_matrix("x0", x0, model.data_dim)
    check_finite("x0", x0)
    if eps.shape != x0.shape:
        raise ValueError(f"eps must have the shape of x0 {tuple(x0.shape)}, got {tuple(eps.shape)}")
    alpha_bar = as_tensor("alpha_bar", alpha_bar)
    if alpha_bar.shape != (model.n_steps + 1,):
        raise ValueError(f"alpha_bar must have shape ({model.n_steps + 1},), got {tuple(alpha_bar.shape)}")
    _check_steps(t, model.n_steps, x0.shape[0])
    return _simple_loss(model, x0, alpha_bar, t, eps)


def _simple_loss(model: EpsilonNet, x0: Tensor, alpha_bar: Tensor, t: Tensor, eps: Tensor) -> Tensor:
    a = alpha_bar.to(x0)[t][:, None]
    x_t = torch.sqrt(a) * x0 + torch.sqrt(1 - a) * eps
    return ((eps - model._unchecked(x_t, t)) ** 2).sum(dim=1)


def train_ddpm(model: EpsilonNet, data: Tensor, betas: Tensor, *, steps: int, lr: float,
               generator: torch.Generator | None = None) -> list[float]:
    """Full-batch Adam on :math:`L_{\\text{simple}}` with a cosine-decayed learning rate; returns the loss per step.

    Each step draws one :math:`t \\sim \\mathcal U\\{1, \\dots, T\\}` and one :math:`\\varepsilon \\sim \\mathcal N(0, I)`
    per data point (on the generator's device, then moved), so training is reproducible on any device.

    Args:
        model: trained in place on its own device.
        data: (N, data_dim) training points.
        betas: (T,) noise variances, :math:`T` = ``model.n_steps``.
        steps: optimiser steps (> 0); lr: peak learning rate (> 0).
        generator: source of :math:`t` and :math:`\\varepsilon`.

    Returns:
        the batch mean of the one-sample loss before each step's update.
    """
    check_positive_int("steps", steps)
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a finite number > 0, got {lr}")
    check_matrix("data", data, model.data_dim)
    check_finite("data", data)
    betas, alpha_bar = _check_betas(betas)
    if betas.numel() != model.n_steps:
        raise ValueError(f"betas must have model.n_steps = {model.n_steps} entries, got {betas.numel()}")
    device = next(model.parameters()).device
    data = data.to(device)
    alpha_bar = alpha_bar.to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=steps)
    gen_device = generator.device if generator is not None else "cpu"
    losses = torch.empty(steps, device=device)
    model.train()
    for step in range(steps):
        t = torch.randint(1, model.n_steps + 1, (data.shape[0],), generator=generator, device=gen_device).to(device)
        eps = randn(tuple(data.shape), generator=generator, device=device, dtype=data.dtype)
        loss = _simple_loss(model, data, alpha_bar, t, eps).mean()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        losses[step] = loss.detach()
    model.eval()
    return losses.cpu().tolist()


def fit_ddpm(data: Tensor, cfg: DDPMConfig = REFERENCE_DDPM, *,
             device: torch.device | str | None = None) -> tuple[EpsilonNet, list[float]]:
    """Build an :class:`EpsilonNet` from ``cfg`` and train it on ``data``: returns (model, losses).

    Initialisation comes from ``cfg.seed``, the training noise from ``cfg.seed + 1``.
    """
    model = EpsilonNet.from_config(cfg, device=device)
    losses = train_ddpm(model, data, cfg.betas(), steps=cfg.steps, lr=cfg.lr,
                        generator=torch.Generator().manual_seed(cfg.seed + 1))
    return model, losses


def reference_ddpm(data: Tensor, cfg: DDPMConfig = REFERENCE_DDPM, *,
                   device: torch.device | str | None = None) -> tuple[EpsilonNet, list[float]]:
    """:func:`fit_ddpm` through the model store (:func:`labcode.store.cached_training`), so a build trains once.

    The store's key holds ``cfg``, the data and the source of this module and of :mod:`labcode.diffusion`.
    """
    def train() -> dict:
        model, losses = fit_ddpm(data, cfg, device=device)
        return {"state": {k: v.detach().cpu() for k, v in model.state_dict().items()}, "losses": losses}

    config = {**asdict(cfg), "code": code_fingerprint(("ddpm.py", "diffusion.py"))}
    payload = cached_training("ddpm", config, data, device, train)
    model = EpsilonNet.from_config(cfg, device=device)
    model.load_state_dict(payload["state"])
    model.eval()
    return model, payload["losses"]


@torch.no_grad()
def sample_path(model: EpsilonNet, n: int, betas: Tensor, sigma2: Tensor, *, generator: torch.Generator | None = None,
                keep: Sequence[int] = ()) -> dict[int, Tensor]:
    """Ancestral sampling: :math:`x_T \\sim \\mathcal N(0, I)`, then :math:`x_{t-1} = \\mu_\\theta(x_t, t) + \\sigma_t z_t` for :math:`t = T, \\dots, 1`.

    Every step, :math:`t = 1` included, adds its noise :math:`\\sigma_t z_t`, :math:`z_t \\sim \\mathcal N(0, I)`, so
    the result is a sample of the model :math:`p_\\theta(x_0)` whose bound :func:`variational_bound`
    computes (Ho et al. show the decoder's mean at :math:`t = 1` instead).

    Args:
        model: the noise predictor; n: number of samples (> 0).
        betas: (T,) noise variances; sigma2: (T,) reverse variances.
        generator: source of :math:`x_T` and of every :math:`z_t` (drawn on its device, then moved).
        keep: steps in :math:`[0, T]` whose states are returned besides :math:`x_0`.

    Returns:
        ``{t: x_t}`` for ``t`` in ``keep`` and 0, each (n, data_dim) on the model's device.
    """
    check_positive_int("n", n)
    betas, alpha_bar = _check_betas(betas)
    sigma2 = _check_sigma2(sigma2, betas)
    n_steps = betas.numel()
    if n_steps != model.n_steps:
        raise ValueError(f"betas must have model.n_steps = {model.n_steps} entries, got {n_steps}")
    for t in keep:
        if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t <= n_steps:
            raise ValueError(f"keep must hold ints in [0, {n_steps}], got {t}")
    param = next(model.parameters())
    shape = (n, model.data_dim)
    x = randn(shape, generator=generator, device=param.device, dtype=param.dtype)
    path = {n_steps: x} if n_steps in keep else {}
    coef_eps = (betas / torch.sqrt(1 - alpha_bar[1:])).tolist()
    scale = (1 / torch.sqrt(1 - betas)).tolist()
    sigma = torch.sqrt(sigma2).tolist()
    for t in range(n_steps, 0, -1):
        steps = torch.full((n,), t, dtype=torch.long, device=param.device)
        mean = scale[t - 1] * (x - coef_eps[t - 1] * model._unchecked(x, steps))
        x = mean + sigma[t - 1] * randn(shape, generator=generator, device=param.device, dtype=param.dtype)
        if t - 1 in keep:
            path[t - 1] = x
    path[0] = x
    return path


def ancestral_sample(model: EpsilonNet, n: int, betas: Tensor, sigma2: Tensor, *,
                     generator: torch.Generator | None = None) -> Tensor:
    """:math:`n` samples of :math:`p_\\theta(x_0)` by :func:`sample_path`: (n, data_dim)."""
    return sample_path(model, n, betas, sigma2, generator=generator)[0]


@torch.no_grad()
def epsilon_errors(model: EpsilonNet, x0: Tensor, betas: Tensor, *, n_draws: int = 2,
                   generator: torch.Generator | None = None, eps: Tensor | None = None) -> Tensor:
    """Squared noise-prediction errors :math:`\\|\\varepsilon - \\varepsilon_\\theta(x_t, t)\\|^2` for every point, step and draw.

    For each draw :math:`k`, point :math:`x_0^{(i)}` and step :math:`t = 1, \\dots, T` an independent
    :math:`\\varepsilon` gives :math:`x_t = \\sqrt{\\bar\\alpha_t}\\, x_0 + \\sqrt{1 - \\bar\\alpha_t}\\, \\varepsilon`. Every
    step is evaluated (the sum over :math:`t` of the bound is exact; only the expectation over
    :math:`\\varepsilon` is Monte Carlo).

    Args:
        model: the noise predictor.
        x0: (N, data_dim) points.
        betas: (T,) noise variances.
        n_draws: draws per point and step (>= 2, so that each cell's variance can be estimated).
        generator: source of the noise when ``eps`` is omitted.
        eps: optional (n_draws, N, T, data_dim) noise.

    Returns:
        (n_draws, N, T) errors, float64 on the CPU; entry ``[k, i, t - 1]`` is for step :math:`t`.
    """
    check_matrix("x0", x0, model.data_dim)
    check_finite("x0", x0)
    check_positive_int("n_draws", n_draws)
    if n_draws < 2:
        raise ValueError(f"n_draws must be >= 2, got {n_draws}")
    betas, alpha_bar = _check_betas(betas)
    n_steps = betas.numel()
    if n_steps != model.n_steps:
        raise ValueError(f"betas must have model.n_steps = {model.n_steps} entries, got {n_steps}")
    param = next(model.parameters())
    x0 = x0.to(device=param.device, dtype=param.dtype)
    n_points, dim = x0.shape
    shape = (n_draws, n_points, n_steps, dim)
    if eps is not None and tuple(eps.shape) != shape:
        raise ValueError(f"eps must have shape {shape}, got {tuple(eps.shape)}")
    a = alpha_bar[1:].to(x0)[None, :, None]                                     # (1, T, 1)
    steps = torch.arange(1, n_steps + 1, device=param.device).repeat(n_points)  # (N * T,)
    errors = []
    for k in range(n_draws):
        noise = (eps[k].to(x0) if eps is not None
                 else randn(shape[1:], generator=generator, device=param.device, dtype=param.dtype))
        x_t = torch.sqrt(a) * x0[:, None, :] + torch.sqrt(1 - a) * noise           # (N, T, D)
        eps_hat = model._unchecked(x_t.reshape(-1, dim), steps).reshape(noise.shape)
        errors.append(((noise - eps_hat) ** 2).sum(dim=-1))
    return torch.stack(errors).double().cpu()


def best_reverse_variances(errors: Tensor, betas: Tensor, data_dim: int) -> Tensor:
    """The fixed variances :math:`\\sigma_t^2` that minimise the average bound for the network behind ``errors``.

    For :math:`t \\ge 2` the expected term :math:`\\frac{A_t}{2\\sigma^2} + \\frac D2(\\tilde\\sigma_t^2/\\sigma^2 - 1 -
    \\log(\\tilde\\sigma_t^2/\\sigma^2))` with :math:`A_t = \\mathbb E\\|\\tilde\\mu_t - \\mu_\\theta\\|^2
    = \\frac{(1-\\alpha_t)^2}{\\alpha_t (1 - \\bar\\alpha_t)} \\mathbb E\\|\\varepsilon - \\varepsilon_\\theta\\|^2` is smallest at
    :math:`\\sigma_t^2 = \\tilde\\sigma_t^2 + A_t / D`; the decoder term :math:`\\frac{A_1}{2\\sigma^2} + \\frac D2
    \\log(2\\pi\\sigma^2)` at :math:`\\sigma_1^2 = A_1 / D`. :math:`\\mathbb E` is the mean over all entries of
    ``errors`` (draws and points) at each step. These are the best variances for the network's own,
    imperfect mean (Bao et al., ICML 2022, study this case); Analytic-DPM (Bao et al., ICLR 2022) instead
    assumes the best mean. With the best mean the result lies between :math:`\\tilde\\sigma_t^2` and
    :math:`(1 - \\alpha_t)/\\alpha_t` (chapter "Training a diffusion model", ``ddpm-prop-variance-bounds``).

    Args:
        errors: (n_draws, N, T) squared ε-errors from :func:`epsilon_errors`.
        betas: (T,) noise variances; data_dim: :math:`D`.

    Returns:
        (T,) float64 variances on the CPU.
    """
    betas, alpha_bar = _check_betas(as_tensor("betas", betas).double().cpu())
    check_positive_int("data_dim", data_dim)
    errors = as_tensor("errors", errors)
    if errors.dim() != 3 or errors.shape[2] != betas.numel():
        raise ValueError(f"errors must have shape (n_draws, N, {betas.numel()}), got {tuple(errors.shape)}")
    check_finite("errors", errors)
    mse = errors.double().cpu().mean(dim=(0, 1))
    if not (mse > 0).all():
        raise ValueError("errors must have a positive mean at every step")
    mean_error = betas**2 / ((1 - betas) * (1 - alpha_bar[1:])) * mse       # A_t
    posterior = (1 - alpha_bar[:-1]) / (1 - alpha_bar[1:]) * betas          # sigma~_t^2, 0 at t = 1
    return posterior + mean_error / data_dim


def mixture_noise_posterior_mean(x_t: Tensor, t: Tensor, betas: Tensor, centres: Tensor, noise: float) -> Tensor:
    """The best noise prediction :math:`\\varepsilon^*(x_t, t) = \\mathbb E[\\varepsilon \\mid x_t]` when the data law is a mixture.

    For :math:`x_0 \\sim \\frac1K \\sum_k \\mathcal N(c_k, \\sigma^2 I)` (the spiral's :math:`p_{\\text{data}}` with
    :math:`\\sigma = \\sigma_{\\text{data}}`) and :math:`x_t = \\sqrt{\\bar\\alpha_t}\\, x_0 + \\sqrt{1 - \\bar\\alpha_t}\\,
    \\varepsilon`, given component :math:`k` the pair :math:`(\\varepsilon, x_t)` is Gaussian with
    :math:`x_t \\sim \\mathcal N(\\sqrt{\\bar\\alpha_t}\\, c_k, v_t I)`, :math:`v_t = \\bar\\alpha_t \\sigma^2 + 1 - \\bar\\alpha_t`,
    and :math:`\\operatorname{Cov}(\\varepsilon, x_t) = \\sqrt{1 - \\bar\\alpha_t}\\, I`. Gaussian conditioning and the
    posterior weights :math:`w_k(x_t) \\propto \\mathcal N(x_t; \\sqrt{\\bar\\alpha_t}\\, c_k, v_t I)` of the components give

    .. math:: \\mathbb E[\\varepsilon \\mid x_t] = \\frac{\\sqrt{1 - \\bar\\alpha_t}}{v_t}
              \\Big(x_t - \\sqrt{\\bar\\alpha_t} \\sum_k w_k(x_t)\\, c_k\\Big).

    It minimises :math:`\\mathbb E\\|\\varepsilon - \\varepsilon_\\theta(x_t, t)\\|^2` over all functions of :math:`x_t`
    (chapter "Training a diffusion model", ``ddpm-prop-reweighted``), so its error is the smallest any
    network can reach at step :math:`t` for this law.

    Args:
        x_t: (batch, D) noised points.
        t: (batch,) integer steps in :math:`[1, T]`.
        betas: (T,) noise variances.
        centres: (K, D) the components' means :math:`c_k` (equal weights).
        noise: :math:`\\sigma > 0`, the components' standard deviation.

    Returns:
        (batch, D) in float64 on the device of ``x_t``.
    """
    check_matrix("x_t", x_t)
    check_finite("x_t", x_t)
    check_matrix("centres", centres, x_t.shape[1])
    if centres.shape[0] == 0:
        raise ValueError("centres must have at least one row")
    check_finite("centres", centres)
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not (math.isfinite(noise) and noise > 0):
        raise ValueError(f"noise must be a finite number > 0, got {noise!r}")
    betas, alpha_bar = _check_betas(betas)
    t = _check_steps(t, betas.numel(), x_t.shape[0]).to(betas.device)
    x = x_t.double()
    c = centres.to(device=x.device, dtype=torch.float64)
    a = alpha_bar.double()[t].to(x.device)[:, None]                             # (batch, 1) alpha_bar_t
    var = a * noise**2 + 1 - a                                                  # v_t
    means = []
    for rows in range(0, x.shape[0], _BLOCK):                                   # blocks of rows: memory only
        xb, ab, vb = x[rows:rows + _BLOCK], a[rows:rows + _BLOCK], var[rows:rows + _BLOCK]
        sq = (xb**2).sum(dim=1, keepdim=True) - 2 * ab.sqrt() * xb @ c.T + ab * (c**2).sum(dim=1)  # (rows, K)
        weights = torch.softmax(-sq / (2 * vb), dim=1)                           # w_k(x_t)
        means.append(weights @ c)                                               # sum_k w_k c_k
    centre_mean = torch.cat(means) if means else x.new_zeros(x.shape)
    return torch.sqrt(1 - a) / var * (x - a.sqrt() * centre_mean)


@dataclass(frozen=True)
class DiffusionBound:
    """The diffusion ELBO's terms per point, as an upper bound on :math:`-\\log p_\\theta(x_0)` in nats.

    Attributes:
        prior: (N,) :math:`L_T = \\mathrm{KL}(q(x_T \\mid x_0) \\,\\|\\, \\mathcal N(0, I))`.
        steps: (N, T) Monte Carlo estimates; column 0 is the decoder term
            :math:`L_0 = \\mathbb E[-\\log p_\\theta(x_0 \\mid x_1)]`, column :math:`t - 1` for
            :math:`t \\ge 2` the denoising term :math:`L_{t-1}`.
        steps_var: (N, T) the variance of each estimate (sample variance over draws / draws).
    """

    prior: Tensor
    steps: Tensor
    steps_var: Tensor

    @property
    def decoder(self) -> Tensor:
        """(N,) :math:`L_0`."""
        return self.steps[:, 0]

    @property
    def denoising(self) -> Tensor:
        """(N,) :math:`\\sum_{t=2}^T L_{t-1}`."""
        return self.steps[:, 1:].sum(dim=1)

    @property
    def total(self) -> Tensor:
        """(N,) :math:`L_T + \\sum_{t \\ge 2} L_{t-1} + L_0 \\ge -\\log p_\\theta(x_0)`."""
        return self.prior + self.steps.sum(dim=1)

    def standard_error(self) -> float:
        """Monte Carlo standard error of ``total.mean()`` (the data points held fixed)."""
        return math.sqrt(self.steps_var.sum().item()) / self.steps.shape[0]


def variational_bound(errors: Tensor, x0: Tensor, betas: Tensor, sigma2: Tensor) -> DiffusionBound:
    """The bound :math:`-\\mathcal L(x_0) = L_T + \\sum_{t=1}^T \\big(\\lambda_t\\, \\mathbb E\\|\\varepsilon - \\varepsilon_\\theta\\|^2 + c_t\\big)`.

    The prior term is :func:`labcode.diffusion.prior_matching_kl`; the other terms are
    :func:`epsilon_weights` times the mean of ``errors`` over draws plus :func:`bound_constants`. The
    network enters only through ``errors``, so one set of errors gives the bound for every choice of
    :math:`\\sigma_t^2`.

    Args:
        errors: (n_draws, N, T) squared ε-errors from :func:`epsilon_errors` (n_draws >= 2).
        x0: (N, data_dim) the same points.
        betas: (T,) noise variances; sigma2: (T,) reverse variances.

    Returns:
        a :class:`DiffusionBound` (float64, on the CPU).
    """
    check_matrix("x0", x0)
    betas = as_tensor("betas", betas).double().cpu()
    sigma2 = as_tensor("sigma2", sigma2).double().cpu()
    errors = as_tensor("errors", errors)
    if errors.dim() != 3 or errors.shape[0] < 2 or errors.shape[1:] != (x0.shape[0], betas.numel()):
        raise ValueError(f"errors must have shape (n_draws >= 2, {x0.shape[0]}, {betas.numel()}), "
                         f"got {tuple(errors.shape)}")
    check_finite("errors", errors)
    if (errors < 0).any():
        raise ValueError("errors must be >= 0 (squared norms)")
    errors = errors.double().cpu()
    weights = epsilon_weights(betas, sigma2)
    constants = bound_constants(betas, sigma2, x0.shape[1])
    n_draws = errors.shape[0]
    steps = weights * errors.mean(dim=0) + constants
    steps_var = weights**2 * errors.var(dim=0) / n_draws
    alpha_bar_T = alpha_bar_schedule(betas)[-1]
    prior = prior_matching_kl(x0.double().cpu(), alpha_bar_T)
    return DiffusionBound(prior=prior, steps=steps, steps_var=steps_var)
