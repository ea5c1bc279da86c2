"""Posterior collapse: how to measure it, a decoder that collapses, two remedies, and the unbounded objective.

Chapter "Posterior collapse and its remedies". A VAE has **collapsed** when its encoder ignores its
input, :math:`q_\\phi(z\\mid x) = p(z)` ({prf:ref}`tf-prop-collapse`). Two measurements of it:

.. math:: \\overline{\\mathrm{KL}} = \\frac1N \\sum_i \\mathrm{KL}\\big(q_\\phi(z\\mid x_i)\\,\\|\\,p(z)\\big),
          \\qquad A_u = \\operatorname{Var}_i\\big(\\mathbb E_{q_\\phi(z\\mid x_i)}[z_u]\\big),

the average KL term and the **activity** of latent unit :math:`u` (Burda et al. 2016), the spread over
the data of the unit's posterior mean; a unit is *active* when :math:`A_u > 10^{-2}`.

The collapsing model, :class:`SkipVAE`, gives the decoder a noisy copy
:math:`\\tilde x = x + \\omega\\eta`, :math:`\\eta \\sim \\mathcal N(0, I)`, of the point it reconstructs
(:math:`\\omega` = ``side_noise``):
:math:`p_\\theta(x\\mid z, \\tilde x) = \\mathcal N(x;\\ h_\\theta(z, \\tilde x),\\ \\sigma_x^2 I)`. The remedies
change the training objective, never the ELBO the models are judged by:

* KL annealing (Bowman et al. 2016): the β of :math:`\\mathcal L_\\beta` rises from 0 to 1,
  :math:`\\beta_t = \\min(1, t/T_w)` at step :math:`t = 0, 1, \\dots`;
* free bits (Kingma et al. 2016):
  :math:`\\mathcal L_\\lambda = \\frac1N\\sum_i \\mathrm{rec}_i - \\sum_u \\max\\big(\\lambda,\\ \\frac1N\\sum_i \\mathrm{KL}_{iu}\\big)`,
  with :math:`\\mathrm{KL}_{iu}` the KL term of unit :math:`u` at point :math:`i`.

:func:`flat_decoder_bound` evaluates the lower bound on :math:`\\mathcal L_\\beta` along the sequence of
models with which the chapter proves that the objective has no maximum for any β.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import partial

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from ._checks import check_finite, check_matrix, check_positive_int, check_positive_number, check_same_shape, randn
from .elbo import elbo_terms
from .kl import standard_normal_kl_unchecked
from .store import cached_training, code_fingerprint
from .vae import VAE, evaluate_vae, mlp

#: Burda et al.'s threshold: a latent unit with activity above it is active
ACTIVITY_THRESHOLD = 1e-2


# ---------------------------------------------------------------- measuring collapse

def activity(mu: Tensor) -> Tensor:
    """Activity of each latent unit, :math:`A_u = \\frac1N \\sum_i (\\mu_{iu} - \\bar\\mu_u)^2`, :math:`\\bar\\mu_u = \\frac1N\\sum_i \\mu_{iu}`.

    ``mu[i]`` is the encoder mean :math:`\\mathbb E_{q_\\phi(z\\mid x_i)}[z]` (for the Gaussian encoder the
    posterior mean *is* the mean output), so :math:`A_u` is Burda et al.'s
    :math:`\\operatorname{Cov}_x(\\mathbb E_{q(z\\mid x)}[z_u])` over the data set, with the divisor :math:`N`.

    Args:
        mu: (N, latent_dim) encoder means, N >= 1.

    Returns:
        (latent_dim,) activities, >= 0.
    """
    check_matrix("mu", mu)
    check_finite("mu", mu)
    if mu.shape[0] == 0:
        raise ValueError("mu must hold at least one row")
    return mu.var(dim=0, unbiased=False)


def active_units(mu: Tensor, threshold: float = ACTIVITY_THRESHOLD) -> int:
    """Number of latent units with activity :math:`A_u` above ``threshold`` (see :func:`activity`)."""
    threshold = check_positive_number("threshold", threshold)
    return int((activity(mu) > threshold).sum())


def kl_per_unit(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL term of each latent unit, :math:`\\mathrm{KL}_{iu} = \\tfrac12(\\mu_{iu}^2 + \\sigma_{iu}^2 - 1 - \\log\\sigma_{iu}^2)`.

    Its sum over units is the KL term :math:`\\mathrm{KL}(q_\\phi(z\\mid x_i)\\,\\|\\,\\mathcal N(0, I))` of
    {prf:ref}`kl-cor-standard`. ``mu``, ``logvar``: (N, latent_dim) -> (N, latent_dim).
    """
    check_matrix("mu", mu)
    check_same_shape("mu", mu, "logvar", logvar)
    check_finite("mu", mu)
    check_finite("logvar", logvar)
    return standard_normal_kl_unchecked(mu[..., None], logvar[..., None])


# ---------------------------------------------------------------- the remedies' objectives

def kl_warmup(steps: int, warmup: int) -> Tensor:
    """The β of KL annealing at each training step: :math:`\\beta_t = \\min(1, t / T_w)`, :math:`t = 0, \\dots, T-1`.

    Args:
        steps: :math:`T`, the number of training steps (> 0).
        warmup: :math:`T_w`, the number of steps over which β rises from 0 to 1 (> 0).

    Returns:
        (steps,) float64 tensor, starting at 0 and equal to 1 from step :math:`T_w` on.
    """
    check_positive_int("steps", steps)
    check_positive_int("warmup", warmup)
    return (torch.arange(steps, dtype=torch.float64) / warmup).clamp(max=1.0)


def _free_bits(reconstruction: Tensor, kl_units: Tensor, floor: Tensor | float, beta: Tensor | float) -> Tensor:
    """Unchecked :func:`free_bits_objective` from per-unit KL terms (N, latent_dim), for the training loop."""
    return reconstruction.mean() - beta * kl_units.mean(dim=0).clamp(min=floor).sum()


def free_bits_objective(reconstruction: Tensor, mu: Tensor, logvar: Tensor, *, floor: float,
                        beta: float = 1.0) -> Tensor:
    """The free-bits objective :math:`\\frac1N\\sum_i \\mathrm{rec}_i - \\beta\\sum_u \\max\\big(\\lambda,\\ \\frac1N\\sum_i \\mathrm{KL}_{iu}\\big)`.

    Kingma et al. (2016) floor the KL term of each group of latent units, averaged over the
    minibatch, at :math:`\\lambda` nats; here a group is one unit and the batch is the data set. Below
    the floor a unit's KL costs nothing, so training has no reason to push it to zero. With
    :math:`\\lambda = 0` and :math:`\\beta = 1` this is the average ELBO.

    Args:
        reconstruction: (N,) one-sample reconstruction terms :math:`\\log p_\\theta(x_i\\mid z_i)`.
        mu, logvar: (N, latent_dim) encoder outputs.
        floor: :math:`\\lambda \\ge 0`, nats per unit.
        beta: weight of the floored KL term (>= 0).

    Returns:
        0-dim tensor.
    """
    kl_units = kl_per_unit(mu, logvar)
    if reconstruction.shape != mu.shape[:1]:
        raise ValueError(f"reconstruction must have shape ({mu.shape[0]},), got {tuple(reconstruction.shape)}")
    check_finite("reconstruction", reconstruction)
    for name, value in (("floor", floor), ("beta", beta)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return _free_bits(reconstruction, kl_units, float(floor), float(beta))


# ---------------------------------------------------------------- the collapsing model

class SkipVAE(nn.Module):
    """A VAE whose decoder also sees a noisy copy of the point,
    :math:`p_\\theta(x \\mid z, \\tilde x) = \\mathcal N(x;\\ h_\\theta(z, \\tilde x),\\ \\sigma_x^2 I)`.

    :math:`\\tilde x = x + \\omega\\eta` with :math:`\\eta \\sim \\mathcal N(0, I_D)` drawn afresh at every
    evaluation and :math:`\\omega` = ``side_noise`` fixed. Encoder (:math:`x \\mapsto (\\mu, \\log\\sigma^2)`) and
    decoder (:math:`(z, \\tilde x) \\mapsto h_\\theta`) are one-hidden-layer ReLU MLPs of width ``hidden``, as in
    :class:`labcode.VAE`; ``decoder_logvar`` is one learned scalar :math:`\\log\\sigma_x^2`. Its ELBO bounds the
    conditional evidence :math:`\\log p_\\theta(x\\mid\\tilde x)`, not :math:`\\log p_\\theta(x)`.
    """

    def __init__(self, data_dim: int = 2, latent_dim: int = 2, hidden: int = 32, *, side_noise: float,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        for name, value in (("data_dim", data_dim), ("latent_dim", latent_dim), ("hidden", hidden)):
            check_positive_int(name, value)
        self.side_noise = check_positive_number("side_noise", side_noise)
        self.data_dim, self.latent_dim = data_dim, latent_dim
        self.encoder = mlp(data_dim, hidden, 2 * latent_dim, generator)
        self.decoder = mlp(latent_dim + data_dim, hidden, data_dim, generator)
        self.decoder_logvar = nn.Parameter(torch.zeros(1))

    @property
    def noise_std(self) -> Tensor:
        """:math:`\\sigma_x = e^{\\texttt{decoder\\_logvar}/2}`, a 0-dim tensor."""
        return torch.exp(0.5 * self.decoder_logvar[0])

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x: (batch, data_dim) -> (mu, logvar), each (batch, latent_dim)."""
        check_matrix("x", x, self.data_dim)
        mu, logvar = self.encoder(x).chunk(2, dim=-1)
        return mu, logvar

    def side_input(self, x: Tensor, eta: Tensor) -> Tensor:
        """:math:`\\tilde x = x + \\omega\\eta`; x and eta (..., data_dim)."""
        return x + self.side_noise * eta

    def decode(self, z: Tensor, x_side: Tensor) -> Tensor:
        """Decoder means :math:`h_\\theta(z, \\tilde x)`: z (..., latent_dim), x_side (..., data_dim) -> (..., data_dim)."""
        return self.decoder(torch.cat([z, x_side], dim=-1))

    def compute_elbo(self, x: Tensor, *, generator: torch.Generator | None = None, eps: Tensor | None = None,
                     eta: Tensor | None = None) -> dict[str, Tensor]:
        """One-sample conditional ELBO per point, :math:`\\log p_\\theta(x\\mid z, \\tilde x) - \\mathrm{KL}(q_\\phi(z\\mid x)\\|p(z))`.

        Args:
            x: (batch, data_dim) points.
            generator: source of :math:`\\varepsilon` and then :math:`\\eta` when they are not given.
            eps: optional (batch, latent_dim) reparameterisation noise.
            eta: optional (batch, data_dim) side-input noise.

        Returns the dict of :func:`labcode.elbo.elbo_terms` (``elbo == reconstruction - kl_divergence``).
        """
        check_finite("x", x)
        mu, logvar = self.encode(x)
        if eps is None:
            eps = randn(tuple(mu.shape), generator=generator, device=mu.device, dtype=mu.dtype)
        check_same_shape("eps", eps, "mu", mu)
        check_finite("eps", eps)
        if eta is None:
            eta = randn(tuple(x.shape), generator=generator, device=x.device, dtype=x.dtype)
        check_same_shape("eta", eta, "x", x)
        check_finite("eta", eta)
        x_side = self.side_input(x, eta)
        return elbo_terms(x, mu, logvar, eps, lambda z: self.decode(z, x_side), self.decoder_logvar)


# ---------------------------------------------------------------- training with a β schedule and a free-bits floor

Model = VAE | SkipVAE


def _objective(template: Model, params: dict[str, Tensor], x: Tensor, eps: Tensor, eta: Tensor,
               beta: Tensor, floor: Tensor) -> Tensor:
    """[mean reconstruction, mean KL, training objective, log σ_x²] of one model given its parameters (for ``vmap``)."""
    def sub(prefix: str) -> dict[str, Tensor]:
        return {k[len(prefix):]: v for k, v in params.items() if k.startswith(prefix)}

    mu, logvar = functional_call(template.encoder, sub("encoder."), (x,)).chunk(2, dim=-1)
    if isinstance(template, SkipVAE):
        x_side = x + template.side_noise * eta
        def decode(z: Tensor) -> Tensor:
            return functional_call(template.decoder, sub("decoder."), (torch.cat([z, x_side], dim=-1),))
    else:
        def decode(z: Tensor) -> Tensor:
            return functional_call(template.decoder, sub("decoder."), (z,))
    out = elbo_terms(x, mu, logvar, eps, decode, params["decoder_logvar"])
    kl_units = standard_normal_kl_unchecked(mu[..., None], logvar[..., None])
    objective = _free_bits(out["reconstruction"], kl_units, floor, beta)
    return torch.stack([out["reconstruction"].mean(), out["kl_divergence"].mean(), objective,
                        params["decoder_logvar"][0]])


def _check_models(models: Sequence[Model]) -> None:
    if len(models) == 0:
        raise ValueError("models must hold at least one model")
    kind = type(models[0])
    if kind not in (VAE, SkipVAE) or any(type(m) is not kind for m in models):
        raise TypeError("models must all be VAE or all be SkipVAE instances")
    shapes = [[tuple(p.shape) for p in m.parameters()] for m in models]
    if any(s != shapes[0] for s in shapes):
        raise ValueError("models must all have the same sizes")
    if kind is SkipVAE and len({m.side_noise for m in models}) > 1:
        raise ValueError("models must all have the same side_noise")


def train_variants(models: Sequence[Model], data: Tensor, betas: Tensor, floors: Sequence[float], *,
                   lr: float, generator: torch.Generator | None = None) -> dict[str, Tensor]:
    """Train same-shaped models at once, model ``m`` at step ``t`` on
    :math:`\\frac1N\\sum_i\\mathrm{rec}_i - \\beta_{m,t}\\sum_u\\max(\\lambda_m, \\overline{\\mathrm{KL}}_u)`.

    At :math:`\\lambda_m = 0` this is :math:`\\mathcal L_\\beta` of {prf:ref}`tf-def-beta`; a schedule row
    of :func:`kl_warmup` gives KL annealing, :math:`\\lambda_m > 0` free bits. Full-batch Adam with a
    cosine-decayed learning rate, one reparameterised sample (and for a :class:`SkipVAE` one side-input
    noise) per point and step, the same noise for every model, as in :func:`labcode.train_vae`; the
    models are stacked and evaluated with ``torch.func.vmap``.

    Args:
        models: M models, all :class:`labcode.VAE` or all :class:`SkipVAE`, of equal sizes; trained in place.
        data: (N, data_dim) training points (moved to the models' device).
        betas: (M, steps) weights of the KL term per model and step, finite and >= 0.
        floors: M free-bits floors :math:`\\lambda_m \\ge 0` (nats per latent unit).
        lr: peak learning rate (> 0).
        generator: source of the noise.

    Returns:
        per-step tensors (M, steps) on the CPU, batch means of one-sample estimates before each update:
        ``reconstruction``, ``kl``, ``objective`` (what was maximised), ``elbo`` (``reconstruction - kl``),
        ``log_noise_std`` (:math:`\\log\\sigma_x`) and ``beta``.
    """
    _check_models(models)
    template = models[0]
    check_matrix("data", data, template.data_dim)
    check_finite("data", data)
    if not (isinstance(betas, Tensor) and betas.dim() == 2 and betas.shape[0] == len(models)):
        raise ValueError(f"betas must be a tensor of shape ({len(models)}, steps)")
    check_finite("betas", betas)
    if (betas < 0).any():
        raise ValueError("betas must be >= 0")
    if len(floors) != len(models) or any(not (isinstance(f, (int, float)) and math.isfinite(f) and f >= 0) for f in floors):
        raise ValueError(f"floors must hold {len(models)} finite numbers >= 0, got {list(floors)}")
    check_positive_number("lr", lr)
    steps = betas.shape[1]
    device = template.decoder_logvar.device
    data = data.to(device)
    params, _ = stack_module_state(list(models))
    beta_t = betas.to(device=device, dtype=data.dtype)
    floor_t = torch.tensor([float(f) for f in floors], device=device, dtype=data.dtype)
    optimiser = torch.optim.Adam(params.values(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=steps)
    objective = vmap(partial(_objective, template), in_dims=(0, None, None, None, 0, 0))
    log = torch.empty(steps, len(models), 4, device=device)
    latent_shape = (data.shape[0], template.latent_dim)
    for step in range(steps):
        eps = randn(latent_shape, generator=generator, device=device, dtype=data.dtype)
        eta = randn(tuple(data.shape), generator=generator, device=device, dtype=data.dtype)
        values = objective(params, data, eps, eta, beta_t[:, step], floor_t)
        optimiser.zero_grad(set_to_none=True)
        (-values[:, 2]).sum().backward()
        optimiser.step()
        schedule.step()
        log[step] = values.detach()
    with torch.no_grad():
        for m, model in enumerate(models):
            for name, p in model.named_parameters():
                p.copy_(params[name][m])
            model.eval()
    rec, kl, obj, logvar = log.permute(2, 1, 0).cpu()
    return {"reconstruction": rec, "kl": kl, "objective": obj, "elbo": rec - kl,
            "log_noise_std": 0.5 * logvar, "beta": betas.detach().cpu()}


@torch.no_grad()
def evaluate_model(model: Model, data: Tensor, *, n_samples: int = 64,
                   generator: torch.Generator | None = None) -> dict[str, Tensor]:
    """Per-point ELBO terms at β = 1 averaged over ``n_samples`` draws (of :math:`\\varepsilon`, and of :math:`\\eta` for a :class:`SkipVAE`).

    For a :class:`labcode.VAE` this is :func:`labcode.evaluate_vae`. Returns, on the CPU, ``elbo``,
    ``reconstruction``, ``kl_divergence`` (N,) and the encoder outputs ``mu``, ``logvar`` (N, latent_dim).
    """
    check_positive_int("n_samples", n_samples)
    if isinstance(model, VAE):
        out = evaluate_vae(model, data, n_samples=n_samples, generator=generator)
        return {k: out[k] for k in ("elbo", "reconstruction", "kl_divergence", "mu", "logvar")}
    if not isinstance(model, SkipVAE):
        raise TypeError(f"model must be a VAE or a SkipVAE, got {type(model).__name__}")
    check_finite("data", data)
    data = data.to(model.decoder_logvar.device)
    mu, logvar = model.encode(data)
    eps = randn((n_samples, *mu.shape), generator=generator, device=mu.device, dtype=mu.dtype)
    eta = randn((n_samples, *data.shape), generator=generator, device=mu.device, dtype=mu.dtype)
    out = elbo_terms(data.expand(n_samples, *data.shape), mu.expand_as(eps), logvar.expand_as(eps), eps,
                     lambda z: model.decode(z, model.side_input(data, eta)), model.decoder_logvar)
    recon, kl = out["reconstruction"].mean(0), out["kl_divergence"][0]
    return {k: v.cpu() for k, v in {"elbo": recon - kl, "reconstruction": recon, "kl_divergence": kl,
                                    "mu": mu, "logvar": logvar}.items()}


# ---------------------------------------------------------------- the chapter's experiment

@dataclass(frozen=True)
class CollapseConfig:
    """The chapter's runs: network sizes, budget, the skip decoder's side noise ω, the warm-up and the free-bits floor."""

    latent_dim: int = 2
    hidden: int = 32
    steps: int = 1000
    lr: float = 3e-2
    side_noise: float = 0.05
    warmup: int = 500
    floor: float = 0.5
    seed: int = 0


#: the runs of :func:`collapse_experiment`: (name, model kind, schedule, floor); "constant b" is β = b at every step
RUNS: tuple[tuple[str, str, str, bool], ...] = (
    ("lab", "vae", "constant 1", False),
    ("lab_beta0", "vae", "constant 0", False),
    ("lab_beta1.5", "vae", "constant 1.5", False),
    ("lab_beta2", "vae", "constant 2", False),
    ("lab_beta3", "vae", "constant 3", False),
    ("plain", "skip", "constant 1", False),
    ("annealed", "skip", "warm-up", False),
    ("free_bits", "skip", "constant 1", True),
)


def _schedule(kind: str, cfg: CollapseConfig) -> Tensor:
    if kind == "warm-up":
        return kl_warmup(cfg.steps, cfg.warmup)
    return torch.full((cfg.steps,), float(kind.removeprefix("constant ")), dtype=torch.float64)


def _build(kind: str, cfg: CollapseConfig, data_dim: int, device: torch.device | str | None) -> Model:
    generator = torch.Generator().manual_seed(cfg.seed)
    if kind == "vae":
        model = VAE(data_dim, cfg.latent_dim, cfg.hidden, generator=generator)
    else:
        model = SkipVAE(data_dim, cfg.latent_dim, cfg.hidden, side_noise=cfg.side_noise, generator=generator)
    return model.to(device) if device is not None else model


def collapse_experiment(data: Tensor, cfg: CollapseConfig = CollapseConfig(), *,
                        device: torch.device | str | None = None) -> dict[str, dict]:
    """The chapter's eight runs on ``data`` (:data:`RUNS`), every one from the same initialisation seed and noise.

    ``lab``: the lab's VAE at β = 1; ``lab_beta0``, ``lab_beta1.5``, ``lab_beta2``, ``lab_beta3``: the same
    at β = 0, 1.5, 2, 3; ``plain``: the :class:`SkipVAE` at β = 1; ``annealed``: the :class:`SkipVAE` with
    :func:`kl_warmup` over ``cfg.warmup`` steps; ``free_bits``: the :class:`SkipVAE` with floor ``cfg.floor``.
    The five VAEs train together, the three SkipVAEs together (:func:`train_variants`, one generator seeded
    ``cfg.seed + 1`` per group), so each run is, up to rounding, what it would be alone.
    Within a build the result comes from :mod:`labcode.store`.

    Returns:
        ``{name: {"model": trained model on device, "history": per-step lists of train_variants}}``.
    """
    check_matrix("data", data)
    check_finite("data", data)
    if not isinstance(cfg, CollapseConfig):
        raise TypeError(f"cfg must be a CollapseConfig, got {type(cfg).__name__}")
    check_positive_int("steps", cfg.steps)
    check_positive_int("warmup", cfg.warmup)
    data_dim = data.shape[1]

    def train() -> dict:
        payload = {}
        for kind in ("vae", "skip"):
            runs = [run for run in RUNS if run[1] == kind]
            models = [_build(kind, cfg, data_dim, device) for _ in runs]
            betas = torch.stack([_schedule(schedule, cfg) for _, _, schedule, _ in runs])
            floors = [cfg.floor if free else 0.0 for *_, free in runs]
            history = train_variants(models, data, betas, floors, lr=cfg.lr,
                                     generator=torch.Generator().manual_seed(cfg.seed + 1))
            for m, (name, *_rest) in enumerate(runs):
                payload[name] = {"state": {k: v.detach().cpu() for k, v in models[m].state_dict().items()},
                                 "history": {k: v[m].tolist() for k, v in history.items()}}
        return payload

    config = {**asdict(cfg), "runs": [list(r) for r in RUNS], "code": code_fingerprint(("collapse.py",))}
    payload = cached_training("collapse_experiment", config, data, device, train)
    results = {}
    for name, kind, *_ in RUNS:
        model = _build(kind, cfg, data_dim, device)
        model.load_state_dict(payload[name]["state"])
        model.eval()
        results[name] = {"model": model, "history": payload[name]["history"]}
    return results


# ---------------------------------------------------------------- the unbounded objective

def flat_decoder_bound(data: Tensor, scales: Tensor, *, beta: float) -> Tensor:
    """Lower bound on the average :math:`\\mathcal L_\\beta` of the chapter's degenerate models, one per encoder scale :math:`\\sigma_q`.

    The models: codes :math:`c_i = -1 + 2(i-1)/(N-1)` on the first latent axis (in the data's order),
    :math:`q(z\\mid x_i) = \\mathcal N\\big((c_i, 0, \\dots), \\operatorname{diag}(\\sigma_q^2, 1, \\dots)\\big)`, a decoder
    mean that depends on :math:`z_1` only, equals :math:`x_i` on :math:`|z_1 - c_i| \\le r = (c_2 - c_1)/4` and
    interpolates linearly in between (constant beyond the end codes), and
    :math:`\\sigma_x^2 = e(\\sigma_q)/D` with :math:`e(\\sigma_q) = R^2 \\cdot 2\\Phi(-r/\\sigma_q)`, :math:`R` the data set's diameter.
    Every squared error is at most :math:`R^2`, and is zero unless :math:`|z_1 - c_i| > r`, so

    .. math:: \\mathcal L_\\beta \\ \\ge\\ -\\frac D2\\Big(\\log\\frac{2\\pi e(\\sigma_q)}{D} + 1\\Big)
              - \\frac\\beta N\\sum_i \\tfrac12\\big(c_i^2 + \\sigma_q^2 - 1 - \\log \\sigma_q^2\\big).

    Computed in float64 with :math:`\\log\\Phi` (``torch.special.log_ndtr``), so tiny :math:`\\sigma_q` do not underflow.

    Args:
        data: (N, D) points, N >= 2, not all equal.
        scales: (K,) encoder standard deviations :math:`\\sigma_q > 0`.
        beta: weight of the KL term (>= 0).

    Returns:
        (K,) float64 lower bounds.
    """
    check_matrix("data", data)
    check_finite("data", data)
    n, dim = data.shape
    if n < 2:
        raise ValueError(f"data must hold at least 2 points, got {n}")
    if not isinstance(scales, Tensor) or scales.dim() != 1:
        raise ValueError("scales must be a 1-D tensor")
    check_finite("scales", scales)
    if (scales <= 0).any():
        raise ValueError("scales must be > 0")
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not math.isfinite(beta) or beta < 0:
        raise ValueError(f"beta must be a finite number >= 0, got {beta!r}")
    x = data.detach().double().cpu()
    diameter_sq = torch.cdist(x, x).max() ** 2
    if diameter_sq == 0:
        raise ValueError("data must not be a single repeated point")
    s = scales.detach().double().cpu()
    codes = torch.linspace(-1.0, 1.0, n, dtype=torch.float64)
    r = (codes[1] - codes[0]) / 4
    log_e = torch.log(2 * diameter_sq) + torch.special.log_ndtr(-r / s)          # log e(σ_q)
    reconstruction = -0.5 * dim * (math.log(2 * math.pi / dim) + log_e + 1)       # at σ_x² = e(σ_q)/D
    kl = 0.5 * ((codes**2).mean() + s**2 - 1 - torch.log(s**2))
    return reconstruction - beta * kl


__all__ = [
    "ACTIVITY_THRESHOLD",
    "RUNS",
    "CollapseConfig",
    "SkipVAE",
    "active_units",
    "activity",
    "collapse_experiment",
    "evaluate_model",
    "flat_decoder_bound",
    "free_bits_objective",
    "kl_per_unit",
    "kl_warmup",
    "train_variants",
]
