"""Tests of labcode.plots.diffusion: figures are returned, styled locally, and readable."""

from __future__ import annotations

import itertools

import matplotlib as mpl
import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

import labcode as lc
from labcode.diffusion import alpha_bar_schedule, linear_beta_schedule, prior_matching_kl, q_sample
from labcode.plots.diffusion import _latex_number, plot_forward_process, plot_schedule, plot_vae_vs_diffusion


def _text_boxes(fig: Figure):
    FigureCanvasAgg(fig).draw()
    renderer = fig.canvas.get_renderer()
    texts = [t for t in fig.findobj(mpl.text.Text) if t.get_visible() and t.get_text().strip()]
    return [(t.get_text(), t.get_window_extent(renderer)) for t in texts]


def _overlapping(fig: Figure, ignore: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    boxes = [(s, b) for s, b in _text_boxes(fig) if s not in ignore]
    return [(a, b) for (a, ba), (b, bb) in itertools.combinations(boxes, 2) if ba.overlaps(bb)]


@pytest.fixture(scope="module")
def schedule():
    betas = linear_beta_schedule()
    return alpha_bar_schedule(betas)


def test_diagram_is_readable():
    before = dict(mpl.rcParams)
    fig = plot_vae_vs_diffusion()
    assert isinstance(fig, Figure)
    assert dict(mpl.rcParams) == before
    texts = [s for s, _ in _text_boxes(fig)]
    for needed in ("$x_0$", "$x_T$", "$q(x_t \\mid x_{t-1})$", "$p_\\theta(x_{t-1} \\mid x_t)$"):
        assert needed in texts
    assert _overlapping(fig) == []


def test_forward_process_panels(schedule):
    data = lc.make_spiral(100, 0.1, generator=torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(1)
    samples = {t: q_sample(data, t, alpha_bar=schedule, generator=gen) for t in (0, 100, 500, 1000)}
    fig = plot_forward_process(samples, schedule)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == 4
    assert visible[0].get_title().startswith("$t = 0$")
    assert "10^{-5}" in visible[-1].get_title()


def test_schedule_figure(schedule):
    data = lc.make_spiral(50, 0.1, generator=torch.Generator().manual_seed(0))
    kl = prior_matching_kl(data, schedule[1:]).mean(1)
    fig = plot_schedule(schedule, kl)
    assert len(fig.axes) == 2
    assert fig.axes[1].get_yscale() == "log"
    line = fig.axes[1].lines[0]
    assert len(line.get_xdata()) == 1000


def test_latex_number():
    assert _latex_number(0.52) == "0.52"
    assert _latex_number(4.03e-5) == "4.0\\times 10^{-5}"
    assert _latex_number(1.0) == "1"
