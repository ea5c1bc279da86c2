"""The law of the spiral data, :math:`p_{\\text{data}}`, and its entropy (chapter "The ELBO").

By the definition of the spiral (chapter "Setup and the spiral data", ``def-spiral``), point
:math:`i` of a draw is :math:`c(\\tau_i) + \\sigma_{\\text{data}}\\,\\varepsilon_i` with
:math:`c(\\tau) = (\\tau\\cos\\tau,\\ \\tau\\sin\\tau)`, the curve parameters on a fixed grid
:math:`\\tau_i = 3\\pi\\, i/(N-1)` (they are not drawn at random) and :math:`\\varepsilon_i \\sim \\mathcal N(0, I_2)`.
The points of a draw are independent but not identically distributed; the point at a uniformly
random index :math:`i` has the density

.. math:: p_{\\text{data}}(x) = \\frac1N \\sum_{i=0}^{N-1} \\mathcal N\\big(x;\\ c(\\tau_i),\\ \\sigma_{\\text{data}}^2 I_2\\big),

a mixture of :math:`N` equal isotropic Gaussians centred on the grid of the curve. One draw of the
spiral holds one point of each component (a stratified sample of :math:`p_{\\text{data}}`), so the
average :math:`\\frac1N \\sum_i f(x_i)` over a fresh draw has expectation :math:`\\mathbb E_{p_{\\text{data}}}[f]`.
The entropy :math:`H(p_{\\text{data}}) = -\\mathbb E_{p_{\\text{data}}}[\\log p_{\\text{data}}(X)]` has no closed
form; :meth:`SpiralDensity.entropy` estimates it by Monte Carlo with its standard error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ._checks import check_finite, check_matrix, check_positive_int, randn
from .data import spiral_curve

#: rows of ``x`` per block in :meth:`SpiralDensity.log_prob` (bounds the (rows, N) distance matrix)
_BLOCK = 4096


@dataclass(frozen=True)
class SpiralDensity:
    """:math:`p_{\\text{data}}(x) = \\frac1N \\sum_i \\mathcal N(x;\\ c(\\tau_i),\\ \\sigma_{\\text{data}}^2 I_2)`, the law of the
    point at a uniformly random index of a freshly drawn spiral.

    Attributes:
        n: the number of grid points :math:`N` of the curve (``SpiralSpec.n``), > 0.
        noise: :math:`\\sigma_{\\text{data}}` (``SpiralSpec.noise``), > 0 (at 0 the law has no density).
    """

    n: int = 500
    noise: float = 0.1

    def __post_init__(self) -> None:
        check_positive_int("n", self.n)
        if isinstance(self.noise, bool) or not isinstance(self.noise, (int, float)):
            raise TypeError(f"noise must be a real number, got {type(self.noise).__name__}")
        if not (math.isfinite(self.noise) and self.noise > 0):
            raise ValueError(f"noise must be > 0 and finite, got {self.noise}")

    def centres(self, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> Tensor:
        """(N, 2) the mixture's centres :math:`c(\\tau_i)`, exactly the noise-free points of :func:`labcode.spiral_curve`."""
        return spiral_curve(self.n)[1].to(dtype=dtype, device=device)

    def log_prob(self, x: Tensor) -> Tensor:
        """:math:`\\log p_{\\text{data}}(x) = \\operatorname{logsumexp}_i\\big[-\\|x - c(\\tau_i)\\|^2 / (2\\sigma^2)\\big] - \\log N - \\log(2\\pi\\sigma^2)`.

        Args:
            x: (B, 2) finite floating-point points.

        Returns:
            (B,) log-densities, in ``x``'s dtype and on its device.
        """
        if not isinstance(x, Tensor) or not x.is_floating_point():
            raise TypeError("x must be a floating-point tensor")
        check_matrix("x", x, 2)
        check_finite("x", x)
        centres = self.centres(x.dtype, x.device)
        var = self.noise ** 2
        norm = math.log(self.n) + math.log(2 * math.pi * var)
        blocks = []
        for block in x.split(_BLOCK):          # blocks of rows: memory, not a loop over samples
            sq = ((block[:, None, :] - centres[None]) ** 2).sum(dim=-1)        # (rows, N)
            blocks.append(torch.logsumexp(-sq / (2 * var), dim=1) - norm)
        return torch.cat(blocks) if blocks else x.new_zeros(0)

    def sample(self, m: int, *, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32,
               device: torch.device | str | None = None) -> Tensor:
        """``m`` independent draws of :math:`p_{\\text{data}}`: an index :math:`i` uniform on :math:`\\{0, \\dots, N-1\\}`, then
        :math:`c(\\tau_i) + \\sigma_{\\text{data}}\\varepsilon`.

        Indices and noise are drawn on the generator's device (the CPU for a ``torch.Generator()``) and moved,
        so a seed gives the same points on every device.

        Returns:
            (m, 2) tensor in ``dtype`` on ``device``.
        """
        check_positive_int("m", m)
        gen_device = generator.device if generator is not None else None
        index = torch.randint(0, self.n, (m,), generator=generator, device=gen_device)
        eps = randn((m, 2), generator=generator, dtype=dtype)
        points = self.centres(dtype, eps.device)[index.to(eps.device)] + self.noise * eps
        return points.to(device) if device is not None else points

    def entropy(self, n_samples: int, *, generator: torch.Generator | None = None,
                dtype: torch.dtype = torch.float64) -> tuple[float, float]:
        """Monte Carlo :math:`\\widehat H = -\\frac1M \\sum_{k=1}^M \\log p_{\\text{data}}(X_k)`, :math:`X_k` from :meth:`sample`.

        Unbiased for :math:`H(p_{\\text{data}})`, with standard error :math:`s_M/\\sqrt M` (:math:`s_M` the sample
        standard deviation of the :math:`\\log p_{\\text{data}}(X_k)`). The entropy lies between that of one
        component, :math:`\\log(2\\pi e\\sigma^2)`, and :math:`\\log N` more.

        Args:
            n_samples: :math:`M \\ge 2`.

        Returns:
            ``(estimate, stderr)`` as Python floats, in nats.
        """
        check_positive_int("n_samples", n_samples)
        if n_samples < 2:
            raise ValueError(f"n_samples must be >= 2 for a standard error, got {n_samples}")
        log_p = self.log_prob(self.sample(n_samples, generator=generator, dtype=dtype))
        return -log_p.mean().item(), log_p.std().item() / math.sqrt(n_samples)
