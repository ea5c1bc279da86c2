"""Input validation shared by the public functions.

Every public function checks its inputs on entry and raises an error that
names the argument and the violated constraint (STYLE.md, principle 4).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def as_tensor(name: str, value: object, like: Tensor | None = None) -> Tensor:
    """Return ``value`` as a floating tensor, or raise ``TypeError`` naming ``name``.

    A Python number becomes a 0-dim tensor with the dtype and device of
    ``like`` (default dtype on the CPU without it), converted once from the
    exact Python float, so ``0.3`` in float64 work is the float64 ``0.3``.
    """
    if isinstance(value, Tensor):
        if not (value.is_floating_point()):
            raise TypeError(f"{name} must be a floating-point tensor, got dtype {value.dtype}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a tensor or a real number, got {type(value).__name__}")
    if like is None:
        return torch.tensor(float(value))
    return torch.tensor(float(value), dtype=like.dtype, device=like.device)


def as_tensors(**named: object) -> list[Tensor]:
    """:func:`as_tensor` for several arguments; numbers take the dtype and device of the first tensor among them."""
    like = next((v for v in named.values() if isinstance(v, Tensor) and v.is_floating_point()), None)
    return [as_tensor(name, value, like) for name, value in named.items()]


def positive_scalar(name: str, value: Tensor | float, like: Tensor) -> Tensor:
    """``value`` as a checked 0-dim tensor (> 0, finite) in the dtype and on the device of ``like``."""
    t = as_tensor(name, value, like)
    if t.dim() != 0:
        raise ValueError(f"{name} must be a scalar, got shape {tuple(t.shape)}")
    check_positive(name, t)
    return t.to(device=like.device, dtype=like.dtype)


def check_finite(name: str, t: Tensor) -> None:
    """Raise ``ValueError`` if ``t`` holds a NaN or an infinity."""
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} must be finite, got NaN or inf")


def check_positive(name: str, t: Tensor) -> None:
    """Raise ``ValueError`` unless every entry of ``t`` is finite and > 0."""
    check_finite(name, t)
    if not (t > 0).all():
        bad = t[t <= 0].flatten()[0].item()
        raise ValueError(f"{name} must be > 0, got {bad}")


def check_positive_number(name: str, value: object) -> float:
    """Return ``value`` as a float if it is a finite Python number > 0; raise ``ValueError`` otherwise."""
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value}")
    return float(value)


def check_positive_int(name: str, n: object) -> int:
    """Return ``n`` if it is a positive ``int``; raise otherwise."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"{name} must be an int, got {type(n).__name__}")
    if n <= 0:
        raise ValueError(f"{name} must be > 0, got {n}")
    return n


def check_matrix(name: str, t: Tensor, cols: int | None = None) -> None:
    """Raise ``ValueError`` unless ``t`` is 2-D (with ``cols`` columns if given)."""
    if t.dim() != 2:
        raise ValueError(f"{name} must have shape (batch, dim), got {tuple(t.shape)}")
    if cols is not None and t.shape[1] != cols:
        raise ValueError(f"{name} must have {cols} columns, got shape {tuple(t.shape)}")


def check_same_shape(name_a: str, a: Tensor, name_b: str, b: Tensor) -> None:
    """Raise ``ValueError`` unless ``a`` and ``b`` have the same shape."""
    if a.shape != b.shape:
        raise ValueError(
            f"{name_a} and {name_b} must have the same shape, "
            f"got {tuple(a.shape)} and {tuple(b.shape)}"
        )


def check_log_weights(name: str, log_weights: Tensor) -> None:
    """Raise ``ValueError`` unless ``log_weights`` is (..., K) with K > 0 and holds no NaN or +inf (-inf is a zero weight)."""
    if log_weights.dim() < 1 or log_weights.shape[-1] == 0:
        raise ValueError(f"{name} must have shape (..., K) with K > 0, got {tuple(log_weights.shape)}")
    if torch.isnan(log_weights).any() or (log_weights == math.inf).any():
        raise ValueError(f"{name} must not contain NaN or +inf")


def check_direction(direction: str) -> None:
    """Raise ``ValueError`` unless ``direction`` is ``"forward"`` (KL(p‖q)) or ``"reverse"`` (KL(q‖p))."""
    if direction not in ("forward", "reverse"):
        raise ValueError(f"direction must be 'forward' or 'reverse', got {direction!r}")


def check_grid(grid: object) -> Tensor:
    """``grid`` as a checked (M,) tensor, M >= 2, finite and strictly increasing."""
    grid = as_tensor("grid", grid)
    if grid.dim() != 1 or grid.shape[0] < 2:
        raise ValueError(f"grid must have shape (M,) with M >= 2, got {tuple(grid.shape)}")
    check_finite("grid", grid)
    if not (grid[1:] > grid[:-1]).all():
        raise ValueError("grid must be strictly increasing")
    return grid


def check_encoder_outputs(q_mean: Tensor | None, q_logvar: Tensor | None, batch: int, dim: int) -> None:
    """Raise unless ``q_mean`` and ``q_logvar`` are both None or both finite (batch, dim) tensors."""
    if (q_mean is None) != (q_logvar is None):
        raise ValueError("q_mean and q_logvar must be given together")
    if q_mean is not None:
        check_same_shape("q_mean", q_mean, "q_logvar", q_logvar)
        if q_mean.shape != (batch, dim):
            raise ValueError(f"q_mean must have shape ({batch}, {dim}), got {tuple(q_mean.shape)}")
        check_finite("q_mean", q_mean)
        check_finite("q_logvar", q_logvar)


def randn(shape: tuple[int, ...], *, generator: torch.Generator | None,
          device: torch.device | str | None = None,
          dtype: torch.dtype | None = None) -> Tensor:
    """Standard normal noise drawn on the generator's device, then moved.

    Drawing on the generator's device (the CPU for a ``torch.Generator()``)
    and moving the result makes the noise, and so every figure, identical on
    CPU and GPU for the same seed.
    """
    gen_device = generator.device if generator is not None else device
    eps = torch.randn(shape, generator=generator, device=gen_device, dtype=dtype)
    return eps.to(device) if device is not None else eps
