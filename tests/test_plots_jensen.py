"""Smoke tests of labcode.plots.jensen: the figure has two panels and leaves rcParams alone."""

from __future__ import annotations

import matplotlib as mpl
import pytest
import torch
from matplotlib.figure import Figure

from labcode.jensen import two_point_jensen_gap
from labcode.plots.jensen import plot_jensen_geometry


def test_plot_jensen_geometry() -> None:
    before = dict(mpl.rcParams)
    lams = torch.linspace(0.0, 1.0, 51)
    curves = {x2: two_point_jensen_gap(1.0, x2, lams) for x2 in (1.5, 3.0, 6.0)}
    fig = plot_jensen_geometry(1.0, 3.0, 0.3, lams, curves)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 2
    assert dict(mpl.rcParams) == before
    fig.canvas.draw()


def test_plot_jensen_geometry_rejects_bad_input() -> None:
    lams = torch.linspace(0.0, 1.0, 5)
    with pytest.raises(ValueError, match="lam in"):
        plot_jensen_geometry(1.0, 3.0, 1.3, lams, {3.0: two_point_jensen_gap(1.0, 3.0, lams)})
