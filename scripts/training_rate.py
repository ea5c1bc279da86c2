"""Training throughput on each available device (a benchmark, not a test).

Usage: .venv/bin/python scripts/training_rate.py

For the reference VAE's configuration (one model) and the β sweep (five models trained at once), prints
optimiser steps per second on the CPU and, where CUDA exists, on the GPU, and there also the number of
synchronising CUDA calls per training step (counted with ``torch.cuda.set_sync_debug_mode("warn")``: the
training loop keeps its per-step log on the device and moves noise in blocks, so the count should not grow
with the number of steps).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import replace

import torch

import labcode as lc

STEPS = 600


def rate(device: str, betas: tuple[float, ...]) -> float:
    """Steps per second of training ``len(betas)`` reference-sized VAEs at once for STEPS steps on ``device``."""
    data = lc.lab_data(device=device)
    cfg = replace(lc.REFERENCE_TRAINING, steps=STEPS)
    lc.analyze_beta_vae(data, betas=betas, steps=20, seed=0, config=cfg, device=device)   # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    lc.analyze_beta_vae(data, betas=betas, steps=STEPS, seed=0, config=cfg, device=device)
    if device == "cuda":
        torch.cuda.synchronize()
    return STEPS / (time.perf_counter() - start)


def syncs(steps: int) -> int:
    """Synchronising CUDA calls made while training the reference VAE for ``steps`` steps on the GPU."""
    data = lc.lab_data(device="cuda")
    model = lc.VAE.from_config(lc.REFERENCE_TRAINING, device="cuda")
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            lc.train_vae(model, data, steps=steps, lr=1e-2, generator=torch.Generator().manual_seed(0))
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


def main() -> None:
    torch.set_num_threads(1)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"| device | steps/s, 1 model | steps/s, 5 models (β sweep) | torch {torch.__version__} |")
    print("|---|---:|---:|---|")
    for device in devices:
        name = lc.device_name(torch.device(device))
        print(f"| {name} | {rate(device, (1.0,)):.0f} | {rate(device, lc.BETA_SWEEP):.0f} | |")
    if torch.cuda.is_available():
        few, many = syncs(50), syncs(450)
        print(f"\nsynchronising CUDA calls while training: {few} for 50 steps, {many} for 450 steps "
              f"({(many - few) / 400:.3f} per extra step)")


if __name__ == "__main__":
    main()
