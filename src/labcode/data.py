"""The lab's data and device (Part 1; chapter "Setup and the spiral data").

The spiral is the curve :math:`\\tau \\mapsto (\\tau\\cos \\tau,\\ \\tau\\sin \\tau)` for :math:`\\tau`
evenly spaced in :math:`[0, 3\\pi]`, with independent Gaussian noise of
standard deviation ``noise`` (:math:`\\sigma_{\\text{data}}`) added to each coordinate.
The book's one data set is :func:`labcode.experiments.lab_data`, which calls :func:`make_spiral`.
"""

from __future__ import annotations

import math
import os

import torch
from torch import Tensor

from ._checks import check_positive_int, randn

DEVICE_ENV = "LABCODE_DEVICE"


def spiral_curve(n: int = 500) -> tuple[Tensor, Tensor]:
    """The noise-free spiral: curve parameters :math:`\\tau_i` (n,) and points (n, 2)."""
    check_positive_int("n", n)
    tau = torch.linspace(0.0, 3.0 * math.pi, n)
    return tau, torch.stack([tau * torch.cos(tau), tau * torch.sin(tau)], dim=1)


def make_spiral(n: int = 500, noise: float = 0.1, *,
                generator: torch.Generator | None = None) -> Tensor:
    """Sample the lab's 2-D spiral.

    .. math:: x_i = (\\tau_i \\cos \\tau_i,\\ \\tau_i \\sin \\tau_i) + \\sigma_{\\text{data}} \\varepsilon_i,
              \\quad \\tau_i = 3\\pi\\, i/(N-1),\\ \\varepsilon_i \\sim \\mathcal N(0, I_2)

    Args:
        n: number of points :math:`N` (> 0).
        noise: noise standard deviation :math:`\\sigma_{\\text{data}}` (>= 0).
        generator: source of the noise; pass a seeded ``torch.Generator``
            for reproducible data.

    Returns:
        x: (n, 2) float32 tensor on the CPU; points are ordered by :math:`\\tau`, so
        row 0 sits at the centre and row ``n-1`` at the outer end.
    """
    if isinstance(noise, bool) or not isinstance(noise, (int, float)):
        raise TypeError(f"noise must be a real number, got {type(noise).__name__}")
    if not math.isfinite(noise) or noise < 0:
        raise ValueError(f"noise must be >= 0 and finite, got {noise}")
    _, curve = spiral_curve(n)
    return curve + noise * randn((n, 2), generator=generator)


def get_device() -> torch.device:
    """CUDA when available, else the CPU; ``LABCODE_DEVICE`` overrides both.

    ``LABCODE_DEVICE=cpu`` forces the CPU on a GPU machine (used to compare a
    CPU build with a GPU build); asking for ``cuda`` where there is none is
    an error rather than a silent fallback.
    """
    requested = os.environ.get(DEVICE_ENV, "").strip()
    if requested:
        try:
            device = torch.device(requested)
        except RuntimeError as err:
            raise ValueError(f"{DEVICE_ENV} must name a torch device, got {requested!r}") from err
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"{DEVICE_ENV}={requested!r} but CUDA is not available")
        return device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def device_name(device: torch.device) -> str:
    """A readable name: ``"CPU"`` or the GPU's name."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return device.type.upper()
