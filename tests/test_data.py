"""Tests for labcode.data: the spiral and the device choice."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import labcode as lc
from labcode.data import DEVICE_ENV


def spiral_reference(n: int) -> np.ndarray:
    """The noise-free spiral (t cos t, t sin t), t = linspace(0, 3π, n), in float64 numpy."""
    t = np.linspace(0.0, 3.0 * np.pi, n)
    return np.stack([t * np.cos(t), t * np.sin(t)], axis=1)


# --- make_spiral -----------------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 2, 500, 1001])
def test_make_spiral_shape_dtype_and_device(n):
    x = lc.make_spiral(n, 0.1, generator=torch.Generator().manual_seed(0))
    assert x.shape == (n, 2)
    assert x.dtype == torch.float32
    assert x.device.type == "cpu"


def test_make_spiral_is_deterministic_for_a_seeded_generator():
    a = lc.make_spiral(500, 0.1, generator=torch.Generator().manual_seed(7))
    b = lc.make_spiral(500, 0.1, generator=torch.Generator().manual_seed(7))
    c = lc.make_spiral(500, 0.1, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("n", [2, 500, 1001])
def test_noise_free_spiral_is_the_curve(n):
    x = lc.make_spiral(n, 0.0, generator=torch.Generator().manual_seed(0))
    _, curve = lc.spiral_curve(n)
    assert torch.equal(x, curve)
    # independent float64 reference; float32 rounding of t (|t| <= 3π) gives ~1e-6 per coordinate
    np.testing.assert_allclose(x.numpy(), spiral_reference(n), rtol=0, atol=2e-5)


def test_spiral_curve_parameters_are_evenly_spaced_on_0_to_3pi():
    t, _ = lc.spiral_curve(7)
    np.testing.assert_allclose(t.numpy(), np.linspace(0.0, 3.0 * np.pi, 7), rtol=0, atol=1e-6)


def test_spiral_starts_at_the_origin_and_ends_at_minus_3pi():
    x = lc.make_spiral(500, 0.0)
    assert x[0].tolist() == [0.0, 0.0]
    assert x[-1, 0].item() == pytest.approx(-3.0 * math.pi, abs=1e-5)
    assert x[-1, 1].item() == pytest.approx(0.0, abs=1e-5)   # 3π sin(3π) is float32 rounding of 0


def test_spiral_noise_has_the_requested_standard_deviation():
    n, noise = 20_000, 0.1
    x = lc.make_spiral(n, noise, generator=torch.Generator().manual_seed(0))
    residual = (x - lc.spiral_curve(n)[1]).double()
    # 40 000 independent N(0, 0.1²) draws: the sample std has a standard error of 0.35%, the mean of 0.0005
    assert residual.std().item() == pytest.approx(noise, rel=0.1)
    assert residual.mean().abs().item() < 0.01


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"n": 0}, ValueError, "n must be > 0"),
    ({"n": -5}, ValueError, "n must be > 0"),
    ({"n": 2.5}, TypeError, "n must be an int"),
    ({"n": True}, TypeError, "n must be an int"),
    ({"noise": -0.1}, ValueError, "noise"),
    ({"noise": float("nan")}, ValueError, "noise"),
    ({"noise": float("inf")}, ValueError, "noise"),
    ({"noise": "0.1"}, TypeError, "noise"),
    ({"noise": torch.tensor(0.1)}, TypeError, "noise"),
])
def test_make_spiral_rejects_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        lc.make_spiral(**kwargs)


# --- get_device / device_name ----------------------------------------------------------------

def test_get_device_defaults_to_cuda_when_available(monkeypatch):
    monkeypatch.delenv(DEVICE_ENV, raising=False)
    assert lc.get_device().type == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize("value", ["cpu", " cpu "])
def test_get_device_honours_labcode_device_cpu(monkeypatch, value):
    monkeypatch.setenv(DEVICE_ENV, value)
    assert lc.get_device() == torch.device("cpu")


@pytest.mark.parametrize("value", ["garbage", "cuda:x", "gpu"])
def test_get_device_rejects_a_garbage_labcode_device(monkeypatch, value):
    monkeypatch.setenv(DEVICE_ENV, value)
    with pytest.raises(ValueError, match=DEVICE_ENV):
        lc.get_device()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_get_device_refuses_cuda_without_a_gpu(monkeypatch):
    monkeypatch.setenv(DEVICE_ENV, "cuda")
    with pytest.raises(ValueError, match="CUDA is not available"):
        lc.get_device()


def test_device_name(device):
    name = lc.device_name(device)
    if device.type == "cpu":
        assert name == "CPU"
    else:
        assert name == torch.cuda.get_device_name(device)
