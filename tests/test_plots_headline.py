"""The landing page's headline figure."""

from __future__ import annotations

import pytest
import torch
from matplotlib.figure import Figure

from labcode.plots.headline import plot_headline


def test_headline_draws_data_and_samples() -> None:
    data, samples = torch.randn(50, 2), torch.randn(30, 2)
    fig = plot_headline(data, samples)
    assert isinstance(fig, Figure)
    left, right = fig.axes[:2]
    assert [len(c.get_offsets()) for c in left.collections] == [50]
    assert [len(c.get_offsets()) for c in right.collections] == [50, 30]


def test_headline_rejects_wrong_shapes() -> None:
    with pytest.raises(ValueError, match="samples"):
        plot_headline(torch.randn(5, 2), torch.randn(5, 3))
