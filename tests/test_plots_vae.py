"""Smoke tests of labcode.plots.vae: each function returns a Figure and leaves rcParams alone."""

import math

import matplotlib as mpl
import pytest
import torch
from matplotlib.figure import Figure

from labcode.gradients import gaussian_gradient_estimates, quadratic_estimator_variances
from labcode.plots.vae import (
    plot_beta_vae,
    plot_gradient_estimators,
    plot_latent_space,
    plot_reconstructions,
    plot_training_curves,
    plot_two_forces,
)

BETAS = (0.0, 0.1, 1.0, 5.0, 10.0)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture
def data() -> torch.Tensor:
    t = torch.linspace(0, 3 * math.pi, 60)
    return torch.stack([t * torch.cos(t), t * torch.sin(t)], dim=1)


@pytest.fixture
def history() -> dict[str, list[float]]:
    steps = torch.arange(1, 301, dtype=torch.float64)
    recon = (-10 * torch.exp(-steps / 50) + 0.05 * torch.randn(300, generator=_gen(0), dtype=torch.float64)).tolist()
    kl = (4 - 3 * torch.exp(-steps / 80)).tolist()
    return {"reconstruction": recon, "kl": kl, "elbo": [r - k for r, k in zip(recon, kl, strict=True)],
            "loss": [k - r for r, k in zip(recon, kl, strict=True)]}


@pytest.fixture
def sweep(data) -> dict[float, dict]:
    n = len(data)
    out = {}
    for k, beta in enumerate(BETAS):
        scale = 1.0 / (1 + beta)
        out[beta] = {"reconstruction": 5.0 - 2 * k, "kl_divergence": 50.0 * scale if beta < 5 else 1e-6,
                     "elbo": -4.0 - k, "noise_std": 0.1 + k,
                     "latent_means": scale * torch.randn(n, 2, generator=_gen(k)),
                     "reconstructions": data + scale * torch.randn(n, 2, generator=_gen(10 + k))}
    return out


def _check(fig: object, before: dict) -> None:
    assert isinstance(fig, Figure)
    assert dict(mpl.rcParams) == before
    fig.canvas.draw()                    # renders without error


def test_training_curves(history):
    before = dict(mpl.rcParams)
    _check(plot_training_curves(history, window=20), before)
    with pytest.raises(ValueError, match="window"):
        plot_training_curves(history, window=0)
    with pytest.raises(ValueError, match="history must have the key 'kl'"):
        plot_training_curves({"elbo": [1.0], "reconstruction": [1.0]})


def test_latent_space(data):
    before = dict(mpl.rcParams)
    mu, logvar = torch.randn(len(data), 2, generator=_gen(1)), torch.full((len(data), 2), -3.0)
    _check(plot_latent_space(mu, logvar, highlight=[0, 30, 59]), before)
    with pytest.raises(ValueError, match="mu must have shape"):
        plot_latent_space(torch.zeros(5, 3), torch.zeros(5, 3))
    with pytest.raises(ValueError, match="logvar must have the shape of mu"):
        plot_latent_space(torch.zeros(5, 2), torch.zeros(4, 2))


def test_reconstructions(data):
    before = dict(mpl.rcParams)
    samples = torch.randn(40, 2, generator=_gen(2)) * 5
    _check(plot_reconstructions(data, data + 0.1, samples), before)
    _check(plot_reconstructions(data, data + 0.1, samples, torch.zeros_like(data)), before)
    with pytest.raises(ValueError, match="samples must have shape"):
        plot_reconstructions(data, data, torch.zeros(4))


def test_gradient_estimators():
    before = dict(mpl.rcParams)
    sigmas = torch.logspace(-1, 0, 4, dtype=torch.float64)
    mus = torch.ones_like(sigmas)
    est = gaussian_gradient_estimates(lambda z: (z**2).sum(-1), mus[:, None], sigmas[:, None], n_samples=500,
                                      generator=_gen(3))
    exact = quadratic_estimator_variances(mus, sigmas)
    measured = {"reparam": est.variance()["reparam_mu"][:, 0], "score": est.variance()["score_mu"][:, 0],
                "score_baseline": est.variance()["score_mu"][:, 0] / 2}
    exact_d = {"reparam": exact["reparam_mu"], "score": exact["score_mu"], "score_baseline": exact["score_mu"] / 2}
    one = gaussian_gradient_estimates(lambda z: (z**2).sum(-1), 1.0, 0.3, n_samples=500, generator=_gen(4))
    _check(plot_gradient_estimators(one, 2.0, sigmas, measured, exact_d), before)
    with pytest.raises(ValueError, match="score_baseline"):
        plot_gradient_estimators(one, 2.0, sigmas, {"reparam": sigmas, "score": sigmas}, exact_d)


def test_beta_vae(sweep, data):
    before = dict(mpl.rcParams)
    _check(plot_beta_vae(sweep, data, show=(0.0, 1.0, 10.0), indices=(5, 25, 45)), before)
    with pytest.raises(ValueError, match="no β = 2"):
        plot_beta_vae(sweep, data, show=(0.0, 2.0, 10.0))
    with pytest.raises(ValueError, match="three β"):
        plot_beta_vae(sweep, data, show=(0.0, 1.0))
    fig = plot_beta_vae(sweep, data, show=(0.0, 1.0, 10.0), indices=(5, 25, 45), radii=(1.0, 4.0))
    circles = [p for p in fig.axes[3].patches if (p.get_label() or "").startswith("prior contours")]
    assert [c.get_label() for c in circles] == ["prior contours, $|z| = 1, 4$"]
    assert fig.axes[3].get_xlim()[1] >= 4.0                    # the largest contour is inside the panel
    with pytest.raises(ValueError, match="radii must be positive"):
        plot_beta_vae(sweep, data, show=(0.0, 1.0, 10.0), indices=(5, 25, 45), radii=(1.0, -2.0))


def test_two_forces(sweep, data):
    before = dict(mpl.rcParams)
    n = len(data)
    recon = torch.randn(n, generator=_gen(5))
    kl = 4 + torch.rand(n, generator=_gen(6))
    _check(plot_two_forces(sweep, recon, kl, beta=1.0), before)
    with pytest.raises(ValueError, match="1-D of one shape"):
        plot_two_forces(sweep, recon, kl[:-1])
