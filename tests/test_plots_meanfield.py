"""Smoke tests for labcode.plots.meanfield: the CAVI figure, its input checks, untouched rcParams."""

from __future__ import annotations

import matplotlib as mpl
import pytest
import torch
from matplotlib.figure import Figure

from labcode.gaussian import LinearGaussianModel
from labcode.meanfield import cavi_gaussian, diagonal_gaussian_elbo, linear_gaussian_natural_parameters
from labcode.plots.meanfield import plot_cavi

F64 = torch.float64


def _cavi_inputs(sweeps: int = 6) -> tuple:
    model = LinearGaussianModel(torch.tensor([[1.0, 0.8], [0.6, 0.9]], dtype=F64), torch.zeros(2, dtype=F64), 0.5)
    x = torch.tensor([[1.5, 1.2]], dtype=F64)
    precision, shift = linear_gaussian_natural_parameters(model, x)
    trace = cavi_gaussian(precision, shift, torch.zeros_like(shift), torch.ones_like(shift), sweeps)
    mean, cov = model.posterior(x)
    elbo = diagonal_gaussian_elbo(model, x, trace.means, trace.variances)[:, 0]
    best = diagonal_gaussian_elbo(model, x, mean, 1 / precision.diagonal()[None])[0]
    rate = (precision[0, 1] ** 2 / precision.diagonal().prod()).item() ** 2
    return trace.means[:, 0], trace.variances[:, 0], mean[0], cov, best - elbo, trace.sweep_ends, rate


def test_plot_cavi_draws_two_panels_and_leaves_rc_alone() -> None:
    before = dict(mpl.rcParams)
    fig = plot_cavi(*_cavi_inputs())
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    assert dict(mpl.rcParams) == before
    fig.canvas.draw()


def test_plot_cavi_skips_zero_deficits() -> None:
    means, variances, mean, cov, deficit, ends, rate = _cavi_inputs()
    deficit = deficit.clone()
    deficit[-1] = 0.0                       # the fixed point reached to rounding: not drawn on a log axis
    plot_cavi(means, variances, mean, cov, deficit, ends, rate).canvas.draw()


def test_plot_cavi_checks_shapes() -> None:
    means, variances, mean, cov, deficit, ends, rate = _cavi_inputs()
    with pytest.raises(ValueError, match="deficit"):
        plot_cavi(means, variances, mean, cov, deficit[:-1], ends, rate)
    with pytest.raises(ValueError, match="post_mean"):
        plot_cavi(means, variances, mean[None], cov, deficit, ends, rate)
