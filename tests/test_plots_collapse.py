"""Smoke tests of labcode.plots.collapse: each function returns a Figure, leaves rcParams alone and checks its input."""

from __future__ import annotations

import math

import matplotlib as mpl
import pytest
import torch
from matplotlib.figure import Figure

from labcode.collapse import kl_warmup
from labcode.plots.collapse import plot_collapse_contrast, plot_remedies, plot_unbounded


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _check(fig: object, before: dict) -> None:
    assert isinstance(fig, Figure)
    assert dict(mpl.rcParams) == before
    fig.canvas.draw()                    # renders without error


def _history(steps: int, seed: int, beta: torch.Tensor) -> dict[str, list[float]]:
    t = torch.arange(steps, dtype=torch.float64)
    kl = (torch.exp(-t / 20) + 0.01 * torch.rand(steps, generator=_gen(seed), dtype=torch.float64)).tolist()
    rec = (3 - 5 * torch.exp(-t / 50)).tolist()
    return {"kl": kl, "elbo": [r - k for r, k in zip(rec, kl, strict=True)], "objective": rec,
            "log_noise_std": (-t / 100).tolist(), "beta": beta.tolist()}


def test_collapse_contrast():
    before = dict(mpl.rcParams)
    t = torch.linspace(0, 3 * math.pi, 50)
    curve = 0.3 * torch.stack([t * torch.cos(t), t * torch.sin(t)], dim=1)
    means = {"lab": curve, "copy": 1e-3 * torch.randn(50, 2, generator=_gen(1))}
    acts = {"lab": torch.tensor([0.9, 0.8]), "copy": torch.tensor([1e-5, 0.0])}
    _check(plot_collapse_contrast(means, acts), before)
    with pytest.raises(ValueError, match="same two labels"):
        plot_collapse_contrast({"lab": curve}, {"lab": acts["lab"]})
    with pytest.raises(ValueError, match="same two labels"):
        plot_collapse_contrast(means, {"lab": acts["lab"], "other": acts["copy"]})
    with pytest.raises(ValueError, match="threshold must be > 0"):
        plot_collapse_contrast(means, acts, threshold=0.0)
    with pytest.raises(ValueError, match=r"must have shape \(N, 2\)"):
        plot_collapse_contrast({"lab": torch.zeros(5, 3), "copy": torch.zeros(5, 3)}, acts)


def test_remedies():
    before = dict(mpl.rcParams)
    steps = 120
    histories = {"plain": _history(steps, 1, torch.ones(steps)), "annealed": _history(steps, 2, kl_warmup(steps, 60)),
                 "free bits": _history(steps, 3, torch.ones(steps))}
    _check(plot_remedies(histories, floor_total=1.0, window=10), before)
    with pytest.raises(ValueError, match="window"):
        plot_remedies(histories, floor_total=1.0, window=0)
    with pytest.raises(ValueError, match="floor_total"):
        plot_remedies(histories, floor_total=-1.0)
    with pytest.raises(ValueError, match="at least one run"):
        plot_remedies({}, floor_total=1.0)
    broken = {"plain": {k: v for k, v in histories["plain"].items() if k != "beta"}}
    with pytest.raises(ValueError, match="must have the key 'beta'"):
        plot_remedies(broken, floor_total=1.0)
    uneven = {"plain": {**histories["plain"], "beta": [1.0] * (steps - 1)}}
    with pytest.raises(ValueError, match="equally long"):
        plot_remedies(uneven, floor_total=1.0)


def test_unbounded():
    before = dict(mpl.rcParams)
    steps = 80
    histories = {"β = 0": _history(steps, 4, torch.zeros(steps)), "β = 1": _history(steps, 5, torch.ones(steps))}
    scales = torch.logspace(-1, -4, 7, dtype=torch.float64)
    bounds = {"β = 0": 1 / scales**2, "β = 1": 1 / scales**2 - 5}
    _check(plot_unbounded(histories, scales, bounds, reference=-5.0), before)
    _check(plot_unbounded(histories, scales, bounds), before)
    with pytest.raises(ValueError, match="shape of scales"):
        plot_unbounded(histories, scales, {"β = 0": scales[:-1]})
    with pytest.raises(ValueError, match="at least one entry"):
        plot_unbounded({}, scales, bounds)
    with pytest.raises(ValueError, match="must have the key 'objective'"):
        plot_unbounded({"β = 0": {"log_noise_std": [0.0]}}, scales, bounds)
