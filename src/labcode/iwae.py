"""The IWAE bound as a training objective: its gradient, training loop and the signal-to-noise ratio of its gradients.

Chapter "IWAE as a training objective".

For a point :math:`x`, an encoder :math:`q_\\phi(z \\mid x) = \\mathcal N(\\mu_\\phi(x), \\operatorname{diag}\\sigma_\\phi^2(x))`
and :math:`K` reparameterised draws :math:`z_k = \\mu_\\phi(x) + \\sigma_\\phi(x) \\odot \\varepsilon_k`, the
importance weights are

.. math:: \\log w_k = \\log p_\\theta(x \\mid z_k) + \\log p(z_k) - \\log q_\\phi(z_k \\mid x),

and :math:`\\log \\widehat Z_K = \\log \\frac1K \\sum_k w_k` is an unbiased estimate of the IWAE bound
:math:`\\mathcal L^{\\mathrm{IW}}_K = \\mathbb E[\\log \\widehat Z_K]` (:func:`labcode.importance.iwae_bound`;
:math:`\\mathcal L^{\\mathrm{IW}}_1` is the ELBO). Its reparameterised gradient is the self-normalised average

.. math:: \\nabla \\log \\widehat Z_K = \\sum_{k=1}^K \\tilde w_k\\, \\nabla \\log w_k, \\qquad
          \\tilde w_k = \\frac{w_k}{\\sum_j w_j},

the IWAE gradient. For the encoder, the doubly reparameterised estimator (DReG) of Tucker et al.
replaces it by :math:`\\sum_k \\tilde w_k^2\\, \\frac{\\partial \\log w_k}{\\partial z_k}\\frac{\\partial z_k}{\\partial \\phi}`
(same expectation). This module trains a :class:`labcode.VAE` on :math:`-\\frac1N \\sum_i \\log \\widehat Z_K(x_i)`
and measures the signal-to-noise ratio :math:`|\\mathbb E[G]| / \\operatorname{sd}[G]` of either estimator, per
parameter, from many independent draws at fixed parameters.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import partial

import torch
from torch import Tensor
from torch.func import functional_call, grad, vmap

from ._checks import check_finite, check_matrix, check_positive_int, randn
from .elbo import reparameterize_unchecked
from .gaussian import diagonal_gaussian_log_density, gaussian_log_density
from .store import cached_training, code_fingerprint, tensor_fingerprint
from .vae import VAE, VAEConfig

#: the gradient estimators :func:`gradient_draws` knows
ESTIMATORS = ("iwae", "dreg")
#: the labcode modules whose source decides what :func:`iwae_models` trains (beyond the store's own list)
IWAE_MODULES = ("iwae.py", "gaussian.py")
#: (draw, point, sample) rows decoded at once by :func:`gradient_draws`
_ROWS = 1 << 17


def log_weights(x: Tensor, mu: Tensor, logvar: Tensor, eps: Tensor, decode: Callable[[Tensor], Tensor],
                decoder_logvar: Tensor, *, fixed_q: bool = False) -> Tensor:
    """:math:`\\log w_k = \\log p_\\theta(x \\mid z_k) + \\log p(z_k) - \\log q_\\phi(z_k \\mid x)`, unchecked.

    The draws are :math:`z_k = \\mu + \\sigma \\odot \\varepsilon_k`.

    With ``fixed_q`` the density :math:`q` in the last term is evaluated with its parameters
    :math:`(\\mu, \\log\\sigma^2)` detached, so that gradients reach :math:`\\phi` only through
    :math:`z_k` (the path DReG needs); values are the same either way.

    Args:
        x: (B, D) points.
        mu, logvar: (B, d) encoder outputs.
        eps: (B, K, d) standard normal noise.
        decode: the decoder mean :math:`f_\\theta`, (n, d) -> (n, D).
        decoder_logvar: :math:`\\log \\sigma_x^2`, shape (1,).

    Returns:
        (B, K) log-weights.
    """
    batch, k, d = eps.shape
    z = reparameterize_unchecked(mu[:, None], logvar[:, None], eps)                     # (B, K, d)
    x_mean = decode(z.reshape(batch * k, d)).reshape(batch, k, -1)
    log_lik = gaussian_log_density(x[:, None], x_mean, torch.exp(0.5 * decoder_logvar[0]))
    log_prior = gaussian_log_density(z, torch.zeros_like(z), 1.0)
    if fixed_q:
        log_q = diagonal_gaussian_log_density(z, mu.detach()[:, None], logvar.detach()[:, None])
    else:   # (z - mu) / sigma = eps exactly
        log_q = -0.5 * (eps ** 2 + logvar[:, None] + math.log(2 * math.pi)).sum(dim=-1)
    return log_lik + log_prior - log_q


def _check_noise(model: VAE, x: Tensor, eps: Tensor) -> None:
    check_matrix("x", x, model.data_dim)
    check_finite("x", x)
    if eps.dim() != 3 or eps.shape[0] != x.shape[0] or eps.shape[2] != model.latent_dim or eps.shape[1] == 0:
        raise ValueError(f"eps must have shape ({x.shape[0]}, K, {model.latent_dim}) with K > 0, got {tuple(eps.shape)}")
    check_finite("eps", eps)


def iwae_objective(model: VAE, x: Tensor, eps: Tensor) -> Tensor:
    """:math:`\\log \\widehat Z_K(x_i) = \\operatorname{logsumexp}_k \\log w_{ik} - \\log K` per point, differentiable.

    An unbiased estimate of :math:`\\mathcal L^{\\mathrm{IW}}_K(x_i)`; with :math:`K = 1` it is the one-sample ELBO
    :math:`\\log p_\\theta(x \\mid z) + \\log p(z) - \\log q_\\phi(z \\mid x)` (the prior KL estimated
    by the same sample rather than in closed form).

    Args:
        model: the VAE.
        x: (B, D) points, on the model's device and in its dtype.
        eps: (B, K, d) noise; :math:`K` is read from it.

    Returns:
        (B,) values.
    """
    _check_noise(model, x, eps)
    mu, logvar = model.encode(x)
    log_w = log_weights(x, mu, logvar, eps, model.decode, model.decoder_logvar)
    return torch.logsumexp(log_w, dim=-1) - math.log(eps.shape[1])


def train_iwae(model: VAE, data: Tensor, *, n_samples: int, steps: int, lr: float, estimator: str = "iwae",
               generator: torch.Generator | None = None, progress: bool = False) -> dict[str, list[float]]:
    """Full-batch Adam on :math:`-\\frac1N \\sum_i \\log \\widehat Z_K(x_i)` with a cosine-decayed learning rate.

    The optimiser and schedule are those of :func:`labcode.train_vae` (Adam, ``CosineAnnealingLR``
    over ``steps``); each step draws fresh noise :math:`\\varepsilon` of shape (N, K, d) from
    ``generator``. With ``estimator="dreg"`` the encoder's gradient is the doubly reparameterised
    :math:`\\frac1N \\sum_i \\sum_k \\tilde w_{ik}^2\\, \\frac{\\partial \\log w_{ik}}{\\partial z_{ik}}\\frac{\\partial z_{ik}}{\\partial \\phi}`
    (same expectation as the IWAE gradient, :func:`gradient_draws`); the decoder's is unchanged.

    Args:
        model: the VAE, trained in place on its own device.
        data: (N, D) training points.
        n_samples: :math:`K > 0`.
        steps: number of optimiser steps (> 0).
        lr: peak learning rate (> 0).
        estimator: ``"iwae"`` or ``"dreg"``, the encoder's gradient estimator.
        generator: source of the noise.
        progress: show a tqdm progress bar.

    Returns:
        ``{"bound": [...]}``, the batch mean of :math:`\\log \\widehat Z_K` before each step's update.
    """
    check_positive_int("n_samples", n_samples)
    check_positive_int("steps", steps)
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a finite number > 0, got {lr}")
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    check_matrix("data", data, model.data_dim)
    check_finite("data", data)
    device = model.decoder_logvar.device
    data = data.to(device=device, dtype=model.decoder_logvar.dtype)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=steps)
    shape = (data.shape[0], n_samples, model.latent_dim)
    log = torch.empty(steps, device=device)
    iterator = range(steps)
    if progress:
        from tqdm.auto import tqdm
        iterator = tqdm(iterator, desc=f"IWAE, K = {n_samples}")
    model.train()
    for step in iterator:
        eps = randn(shape, generator=generator, device=device, dtype=data.dtype)
        mu, logvar = model.encoder(data).chunk(2, dim=-1)
        log_w = log_weights(data, mu, logvar, eps, model.decode, model.decoder_logvar, fixed_q=estimator == "dreg")
        bound = (torch.logsumexp(log_w, dim=-1) - math.log(n_samples)).mean()
        optimiser.zero_grad(set_to_none=True)
        if estimator == "iwae":
            (-bound).backward()
        else:
            _dreg_backward(model, log_w)
        optimiser.step()
        schedule.step()
        log[step] = bound.detach()
    model.eval()
    return {"bound": log.cpu().tolist()}


def _dreg_backward(model: VAE, log_w: Tensor) -> None:
    """Accumulate minus the DReG gradient of the batch mean of :math:`\\log \\widehat Z_K`, from (N, K) log-weights with ``fixed_q``.

    Surrogates: :math:`\\sum_k \\operatorname{sg}(\\tilde w_k) \\log w_k` for the decoder (the IWAE gradient) and
    :math:`\\sum_k \\operatorname{sg}(\\tilde w_k^2) \\log w_k` for the encoder (through :math:`z_k` only).
    """
    normalised = torch.softmax(log_w.detach(), dim=-1)
    params = dict(model.named_parameters())
    groups = parameter_groups(model)
    (-(normalised * log_w).sum(dim=-1).mean()).backward(inputs=[params[n] for n in groups["decoder"]], retain_graph=True)
    (-(normalised ** 2 * log_w).sum(dim=-1).mean()).backward(inputs=[params[n] for n in groups["encoder"]])


def fit_iwae(data: Tensor, n_samples: int, cfg: VAEConfig, *, start: VAE | None = None, estimator: str = "iwae",
             device: torch.device | str | None = None, progress: bool = False) -> tuple[VAE, dict[str, list[float]]]:
    """A VAE trained by :func:`train_iwae` with :math:`K` = ``n_samples``, ``estimator`` and the budget ``cfg.steps``, ``cfg.lr``.

    Without ``start`` the VAE is sized and initialised by ``cfg`` (as :func:`labcode.fit_vae`); with
    it, training continues from a copy of ``start``'s parameters (``start`` is not changed). The
    noise comes from ``cfg.seed + 1``, as in :func:`labcode.fit_vae`; ``cfg.beta`` must be 1 (the
    IWAE bound has no β).
    """
    if not isinstance(cfg, VAEConfig):
        raise TypeError(f"cfg must be a VAEConfig, got {type(cfg).__name__}")
    if cfg.beta != 1.0:
        raise ValueError(f"cfg.beta must be 1 for the IWAE bound, got {cfg.beta}")
    model = VAE.from_config(cfg, device=device)
    if start is not None:
        model.load_state_dict(start.state_dict())
    history = train_iwae(model, data, n_samples=n_samples, steps=cfg.steps, lr=cfg.lr, estimator=estimator,
                         generator=torch.Generator().manual_seed(cfg.seed + 1), progress=progress)
    return model, history


def iwae_models(data: Tensor, sample_sizes: Sequence[int], cfg: VAEConfig, *, start: VAE | None = None,
                estimator: str = "iwae", device: torch.device | str | None = None
                ) -> dict[int, tuple[VAE, dict[str, list[float]]]]:
    """One VAE per :math:`K` in ``sample_sizes``, each by :func:`fit_iwae` with the same ``cfg``, ``start`` and ``estimator``.

    Every run has the same initialisation (or starting model), steps, learning-rate schedule and
    noise seed, so the runs differ only in the objective :math:`\\mathcal L^{\\mathrm{IW}}_K`. Trainings go through
    :func:`labcode.store.cached_training`, keyed also by the starting parameters and the source of
    :data:`IWAE_MODULES`, so within a build each run is trained once.

    Returns:
        ``{K: (model, history)}``, the models on ``device`` in eval mode.
    """
    sizes = [check_positive_int("sample_sizes[i]", k) for k in sample_sizes]
    if not sizes:
        raise ValueError("sample_sizes must name at least one K")
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    check_matrix("data", data, cfg.data_dim)
    check_finite("data", data)
    start_key = None
    if start is not None:
        start_key = tensor_fingerprint(torch.cat([t.detach().flatten().cpu().double() for t in start.state_dict().values()]))
    models = {}
    for k in sizes:
        def train(k: int = k) -> dict:
            model, history = fit_iwae(data, k, cfg, start=start, estimator=estimator, device=device)
            return {"state": {n: t.detach().cpu() for n, t in model.state_dict().items()}, "history": history}

        config = {**asdict(cfg), "n_samples": k, "estimator": estimator, "start": start_key,
                  "iwae_code": code_fingerprint(IWAE_MODULES)}
        payload = cached_training("iwae", config, data, device, train)
        model = VAE.from_config(cfg, device=device)
        model.load_state_dict(payload["state"])
        model.eval()
        models[k] = (model, payload["history"])
    return models


def _point_objective(template: VAE, estimator: str, params: dict[str, Tensor], x: Tensor, eps: Tensor) -> Tensor:
    """The scalar whose gradient is one draw of the estimator, for one point x (D,) and noise eps (K, d)."""
    def sub(prefix: str) -> dict[str, Tensor]:
        return {k[len(prefix):]: v for k, v in params.items() if k.startswith(prefix)}

    x = x[None]
    mu, logvar = functional_call(template.encoder, sub("encoder."), (x,)).chunk(2, dim=-1)

    def decode(z: Tensor) -> Tensor:
        return functional_call(template.decoder, sub("decoder."), (z,))

    if estimator == "iwae":
        log_w = log_weights(x, mu, logvar, eps[None], decode, params["decoder_logvar"])
        return torch.logsumexp(log_w, dim=-1)[0]
    # DReG: the encoder's gradient is sum_k sg(w~_k^2) d log w_k / d z_k dz_k / dphi (q's parameters held
    # fixed in log q); the decoder's is the IWAE gradient sum_k sg(w~_k) grad_theta log w_k
    log_w_phi = log_weights(x, mu, logvar, eps[None], lambda z: functional_call(
        template.decoder, {k: v.detach() for k, v in sub("decoder.").items()}, (z,)),
        params["decoder_logvar"].detach(), fixed_q=True)[0]
    log_w_theta = log_weights(x, mu.detach(), logvar.detach(), eps[None], decode, params["decoder_logvar"])[0]
    normalised = torch.softmax(log_w_phi.detach(), dim=-1)
    return (normalised ** 2 * log_w_phi).sum() + (normalised * log_w_theta).sum()


def gradient_draws(model: VAE, x: Tensor, n_samples: int, n_draws: int, *, estimator: str = "iwae",
                   generator: torch.Generator | None = None) -> dict[str, Tensor]:
    """Independent draws of a gradient estimator of :math:`\\nabla \\mathcal L^{\\mathrm{IW}}_K(x_i)`, per point and per parameter, at fixed parameters.

    Draw :math:`r` of point :math:`i` uses its own noise :math:`\\varepsilon^{(r)}_{i,1:K}` and is,
    for ``estimator="iwae"``, :math:`G^{(r)}_i = \\nabla \\log \\widehat Z_K(x_i) = \\sum_k \\tilde w_k \\nabla \\log w_k`;
    for ``"dreg"`` the encoder's entries are the doubly reparameterised
    :math:`\\sum_k \\tilde w_k^2 \\frac{\\partial \\log w_k}{\\partial z_k}\\frac{\\partial z_k}{\\partial\\phi}` and
    the decoder's the IWAE ones. All draws come from one ``torch.func.vmap`` of ``torch.func.grad``
    over (draw, point) pairs, in chunks.

    Args:
        model: the VAE (not changed).
        x: (B, D) points.
        n_samples: :math:`K > 0`.
        n_draws: :math:`R > 0` independent draws.
        estimator: ``"iwae"`` or ``"dreg"``.
        generator: source of the noise, drawn on the CPU as (R, B, K, d).

    Returns:
        ``{name: (R, B, *shape)}`` for every named parameter of the model, in its dtype.
    """
    check_matrix("x", x, model.data_dim)
    check_finite("x", x)
    check_positive_int("n_samples", n_samples)
    check_positive_int("n_draws", n_draws)
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    params = {name: p.detach() for name, p in model.named_parameters()}
    device, dtype = model.decoder_logvar.device, model.decoder_logvar.dtype
    x = x.to(device=device, dtype=dtype)
    batch = x.shape[0]
    eps = randn((n_draws * batch, n_samples, model.latent_dim), generator=generator, device=device, dtype=dtype)
    points = x.repeat(n_draws, 1)                                                # (R * B, D), draw-major
    per_pair = vmap(grad(partial(_point_objective, model, estimator)), in_dims=(None, 0, 0),
                    chunk_size=max(1, _ROWS // n_samples))
    grads = per_pair(params, points, eps)
    return {name: g.reshape(n_draws, batch, *g.shape[1:]) for name, g in grads.items()}


def signal_to_noise(draws: Tensor, dim: int = 0) -> Tensor:
    """Per-entry signal-to-noise ratio :math:`|\\bar G| / s_G` of independent draws :math:`G^{(1)}, \\dots, G^{(R)}` along ``dim``.

    :math:`\\bar G` is the sample mean and :math:`s_G` the sample standard deviation (divisor
    :math:`R - 1`). For draws with mean :math:`m` and standard deviation :math:`\\sigma > 0` it is
    consistent for :math:`|m| / \\sigma`, but biased upwards: for :math:`m = 0` it is of the order of
    :math:`R^{-1/2}` (:math:`\\mathbb E|\\bar G| = \\sigma\\sqrt{2/(\\pi R)}` for Gaussian draws), a floor
    below which it cannot resolve a ratio (:func:`squared_snr` removes the bias). Entries whose draws
    are all equal are NaN when their mean is 0 (the parameter does not affect the objective) and
    ``inf`` otherwise.

    Args:
        draws: (..., R, ...) draws, R >= 2 along ``dim``.

    Returns:
        the ratios, shaped like ``draws`` without ``dim``.
    """
    _check_draws(draws, dim, 2)
    return draws.mean(dim=dim).abs() / draws.std(dim=dim)


def squared_snr(draws: Tensor, dim: int = 0) -> Tensor:
    """Per-entry estimate of :math:`\\mathrm{SNR}^2 = m^2/\\sigma^2` from :math:`R \\ge 4` independent draws along ``dim``, without the noise bias.

    .. math:: \\widehat{\\mathrm{SNR}^2} = \\frac{R - 3}{R - 1}\\, \\frac{\\bar G^2}{s_G^2} - \\frac1R .

    For Gaussian draws :math:`\\bar G` and :math:`s_G^2` are independent,
    :math:`\\mathbb E[\\bar G^2] = m^2 + \\sigma^2/R` and :math:`\\mathbb E[1/s_G^2] = \\frac{R-1}{(R-3)\\sigma^2}`,
    so the estimate is unbiased. For other draws :math:`\\bar G` and :math:`s_G^2` are correlated
    (:math:`\\operatorname{Cov}(\\bar G, s_G^2) = \\mu_3/R`, see below) and :math:`s_G^2` varies more or less than for a
    Gaussian; expanding :math:`1/s_G^2` about :math:`1/\\sigma^2` (the delta method) gives the bias

    .. math:: \\mathbb E\\big[\\widehat{\\mathrm{SNR}^2}\\big] - \\frac{m^2}{\\sigma^2}
              = \\frac1R \\Big(\\kappa \\frac{m^2}{\\sigma^2} - 2 \\gamma \\frac{m}{\\sigma}\\Big) + O(R^{-2}),

    with :math:`\\mu_3, \\mu_4` the third and fourth central moments, :math:`\\gamma = \\mu_3/\\sigma^3` the
    skewness and :math:`\\kappa = \\mu_4/\\sigma^4 - 3` the excess kurtosis of the draws: of order
    :math:`\\mathrm{SNR} \\cdot |\\gamma| / R` for a small SNR (and of order :math:`R^{-2}` at :math:`m = 0`,
    through :math:`\\gamma^2` and :math:`\\kappa`), so a mean over entries is unbiased only up to such terms. A single
    estimate may be negative; averages over many entries (:class:`SNRStudy`) resolve ratios far
    below the floor :math:`R^{-1/2}` of :func:`signal_to_noise`. Constant entries give NaN or ``inf``
    as there.

    Args:
        draws: (..., R, ...) draws, R >= 4 along ``dim``.

    Returns:
        the estimates, shaped like ``draws`` without ``dim``.
    """
    _check_draws(draws, dim, 4)
    n = draws.shape[dim]
    return (n - 3) / (n - 1) * draws.mean(dim=dim) ** 2 / draws.var(dim=dim) - 1 / n


def _check_draws(draws: Tensor, dim: int, minimum: int) -> None:
    if not isinstance(draws, Tensor) or not draws.is_floating_point():
        raise TypeError("draws must be a floating-point tensor")
    if draws.dim() == 0 or draws.shape[dim] < minimum:
        raise ValueError(f"draws must hold at least {minimum} draws along dim {dim}, got shape {tuple(draws.shape)}")
    check_finite("draws", draws)


def parameter_groups(model: VAE) -> dict[str, list[str]]:
    """The parameter names of the encoder (:math:`\\phi`) and of the generative model (:math:`\\theta`: decoder and :math:`\\log\\sigma_x^2`)."""
    names = [name for name, _ in model.named_parameters()]
    return {"encoder": [n for n in names if n.startswith("encoder.")],
            "decoder": [n for n in names if not n.startswith("encoder.")]}


@dataclass(frozen=True)
class SNRStudy:
    """Signal-to-noise ratios of one gradient estimator against :math:`K`, summarised per parameter group.

    For each :math:`K`, point :math:`i` and scalar parameter :math:`p` the :math:`R` draws give an
    estimate :math:`\\widehat{\\mathrm{SNR}^2_{ip}}` (:func:`squared_snr`: unbiased for Gaussian draws, with a
    bias of order :math:`\\mathrm{SNR} \\cdot \\text{skewness}/R` otherwise). ``encoder_sq`` and
    ``decoder_sq`` are their means over the points and the group's parameters (the mean squared SNR),
    ``*_sq_se`` the delete-a-group jackknife standard errors of those means (the draws cut into
    :data:`JACKKNIFE_GROUPS` groups), and ``encoder_mean``, ``decoder_mean`` the plain means of
    :func:`signal_to_noise`, which cannot fall below about :attr:`noise_floor`. Entries whose draws
    are constant (parameters that do not affect the point's objective) are left out.
    Tensors are (n_sizes,), float64 on the CPU.
    """

    estimator: str
    sample_sizes: list[int]
    n_draws: int
    encoder_sq: Tensor
    decoder_sq: Tensor
    encoder_sq_se: Tensor
    decoder_sq_se: Tensor
    encoder_mean: Tensor
    decoder_mean: Tensor

    @property
    def noise_floor(self) -> float:
        """:math:`\\sqrt{2/(\\pi R)}`: the mean of :func:`signal_to_noise` for Gaussian draws whose true SNR is 0."""
        return math.sqrt(2 / (math.pi * self.n_draws))

    def rms(self, group: str) -> Tensor:
        """The root-mean-square SNR :math:`\\sqrt{\\max(0, \\text{mean squared SNR})}` of ``"encoder"`` or ``"decoder"``, (n_sizes,)."""
        return self.squared(group)[0].clamp(min=0).sqrt()

    def resolved(self, group: str) -> Tensor:
        """Where the mean squared SNR exceeds two jackknife standard errors, (n_sizes,) booleans."""
        sq, se = self.squared(group)
        return sq > 2 * se

    def slope_sizes(self, group: str, min_size: int = 1) -> list[int]:
        """The sizes :meth:`slope` fits: the resolved :math:`K \\ge` ``min_size``."""
        keep = self.resolved(group) & (torch.tensor(self.sample_sizes) >= min_size)
        return [k for k, kept in zip(self.sample_sizes, keep.tolist(), strict=True) if kept]

    def slope(self, group: str, min_size: int = 1) -> float:
        """Least-squares slope :math:`b = \\sum_i c_i y_i / \\sum_i c_i^2` of :math:`y_i = \\log` :meth:`rms` against :math:`\\log K_i`.

        The fit runs over :meth:`slope_sizes`, and :math:`c_i = \\log K_i - \\overline{\\log K}` are the centred
        abscissae. NaN when fewer than two sizes qualify.
        """
        sizes = self.slope_sizes(group, min_size)
        if len(sizes) < 2:
            return math.nan
        centred, log_snr, _ = self._fit_terms(group, sizes)
        return float((centred * (log_snr - log_snr.mean())).sum() / (centred ** 2).sum())

    def slope_se(self, group: str, min_size: int = 1) -> float:
        """Standard error of :meth:`slope`, propagated from the jackknife standard errors of the mean squared SNRs.

        With :math:`y_i = \\tfrac12 \\log \\widehat{\\mathrm{SNR}^2_i}` the delta method gives
        :math:`\\operatorname{sd}(y_i) \\approx \\mathrm{se}_i / (2\\, \\widehat{\\mathrm{SNR}^2_i})`, and the
        sizes' estimates come from independent draws, so
        :math:`\\operatorname{sd}(b) = \\sqrt{\\sum_i c_i^2 \\operatorname{sd}(y_i)^2} \\big/ \\sum_i c_i^2`.
        NaN when fewer than two sizes qualify.
        """
        sizes = self.slope_sizes(group, min_size)
        if len(sizes) < 2:
            return math.nan
        centred, _, sd_log_snr = self._fit_terms(group, sizes)
        return float(((centred * sd_log_snr) ** 2).sum().sqrt() / (centred ** 2).sum())

    def _fit_terms(self, group: str, sizes: list[int]) -> tuple[Tensor, Tensor, Tensor]:
        """(centred log K, log rms, its delta-method standard deviation) at the given sizes."""
        index = [self.sample_sizes.index(k) for k in sizes]
        log_k = torch.tensor(sizes, dtype=torch.float64).log()
        square, se = (t[index] for t in self.squared(group))
        return log_k - log_k.mean(), 0.5 * square.log(), se / (2 * square)

    def squared(self, group: str) -> tuple[Tensor, Tensor]:
        """The mean squared SNR of ``"encoder"`` or ``"decoder"`` and its standard error, each (n_sizes,)."""
        if group not in ("encoder", "decoder"):
            raise ValueError(f"group must be 'encoder' or 'decoder', got {group!r}")
        return getattr(self, f"{group}_sq"), getattr(self, f"{group}_sq_se")


#: groups of draws for the jackknife standard errors of :class:`SNRStudy`
JACKKNIFE_GROUPS = 10


def _squared_snr_from_moments(mean: Tensor, var: Tensor, n: int) -> Tensor:
    """:func:`squared_snr` from the sample mean and variance of ``n`` draws."""
    return (n - 3) / (n - 1) * mean ** 2 / var - 1 / n


def _mean_squared_snr(flat: Tensor) -> tuple[float, float, float]:
    """(mean squared SNR, its jackknife standard error, mean plain SNR) over the varying entries of (R, E) draws.

    The leave-one-group-out estimates come from per-group sums of the centred draws (one pass), and
    an entry counts only if its draws vary in every leave-out subset (per-group minima and maxima of
    the centred draws, which vary exactly when the draws do).
    """
    n, groups = flat.shape[0], JACKKNIFE_GROUPS
    centre = flat.mean(dim=0)
    centred = flat - centre
    full, rest = divmod(n, groups)                                        # draw i is in group i mod G
    blocks, tail = centred[:full * groups].reshape(full, groups, -1), centred[full * groups:]
    sums, squares = blocks.sum(dim=0), (blocks ** 2).sum(dim=0)
    lows, highs = blocks.amin(dim=0), blocks.amax(dim=0)
    sums[:rest] += tail
    squares[:rest] += tail ** 2
    lows[:rest], highs[:rest] = torch.minimum(lows[:rest], tail), torch.maximum(highs[:rest], tail)
    counts = torch.full((groups, 1), float(full), dtype=flat.dtype, device=flat.device)
    counts[:rest] += 1
    others = ~torch.eye(groups, dtype=torch.bool, device=flat.device)
    varies = torch.stack([highs[keep].amax(dim=0) > lows[keep].amin(dim=0) for keep in others]).all(dim=0)
    m = n - counts                                                       # (G, 1) draws left in each subset
    part_mean = (sums.sum(0) - sums) / m                                  # of the centred draws
    part_var = ((squares.sum(0) - squares) - m * part_mean ** 2) / (m - 1)
    leave_out = torch.stack([_squared_snr_from_moments(centre + part_mean[j], part_var[j], int(m[j]))[varies].mean()
                             for j in range(groups)])
    se = math.sqrt((groups - 1) / groups * ((leave_out - leave_out.mean()) ** 2).sum().item())
    estimate = squared_snr(flat)[varies].mean().item()
    return estimate, se, signal_to_noise(flat)[varies].mean().item()


def snr_study(model: VAE, x: Tensor, sample_sizes: Sequence[int], n_draws: int, *, estimator: str = "iwae",
              generator: torch.Generator | None = None) -> SNRStudy:
    """:func:`gradient_draws` for each :math:`K`, summarised per parameter group (:func:`parameter_groups`) as an :class:`SNRStudy`.

    Args:
        model: the VAE at which the gradients are drawn.
        x: (B, D) points; each gets its own SNR per parameter.
        sample_sizes: the :math:`K` values.
        n_draws: :math:`R` draws per :math:`K`, at least ``4 * JACKKNIFE_GROUPS``.
        estimator: ``"iwae"`` or ``"dreg"``.
        generator: source of all noise, used in the order of ``sample_sizes``.
    """
    sizes = [check_positive_int("sample_sizes[i]", k) for k in sample_sizes]
    if not sizes:
        raise ValueError("sample_sizes must name at least one K")
    if check_positive_int("n_draws", n_draws) < 4 * JACKKNIFE_GROUPS:
        raise ValueError(f"n_draws must be >= {4 * JACKKNIFE_GROUPS}, got {n_draws}")
    groups = parameter_groups(model)
    summary: dict[str, list[tuple[float, float, float]]] = {"encoder": [], "decoder": []}
    for k in sizes:
        draws = gradient_draws(model, x, k, n_draws, estimator=estimator, generator=generator)
        for group, names in groups.items():
            summary[group].append(_mean_squared_snr(torch.cat([draws[n].double().flatten(1) for n in names], dim=1)))
    enc = torch.tensor(summary["encoder"], dtype=torch.float64)
    dec = torch.tensor(summary["decoder"], dtype=torch.float64)
    return SNRStudy(estimator, sizes, n_draws, enc[:, 0], dec[:, 0], enc[:, 1], dec[:, 1], enc[:, 2], dec[:, 2])
