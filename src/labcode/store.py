"""A content-addressed store of trained models, so that a build trains each shared model once.

Several chapters use the same trained models (the reference VAE in five, the β sweep in two).
When the environment variable ``LABCODE_MODEL_STORE`` names a folder (the book's build sets
it to ``_build/.labcode-models``), :func:`cached_training` keeps each training's result there
under a key made of everything that determines it: what is trained and its configuration, the
training data, the source of the ``labcode`` modules that training runs (:data:`TRAINING_MODULES`),
the torch version and the device. Without the variable (a reader's Colab session, the tests)
nothing is stored and every call trains.

Entries are written atomically (a temporary file renamed into place). A lock file per key makes
concurrent requests from chapters executing in parallel train once: the first trains and writes,
the others wait for the lock and load. An entry that cannot be read (truncated by a full disk or a
killed build, say) is moved aside to ``<entry>.damaged-<time>`` (kept for inspection), recorded in
the store's ``events.log`` and trained again; the build prints those events (a warning in the
chapter's own output would be cached with its page).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

STORE_ENV = "LABCODE_MODEL_STORE"
#: the modules whose source decides what training produces (relative to the labcode package)
TRAINING_MODULES = ("vae.py", "elbo.py", "kl.py", "_checks.py", "experiments.py", "store.py")


def store_dir() -> Path | None:
    """The folder named by ``LABCODE_MODEL_STORE``, or ``None`` when models are not stored."""
    value = os.environ.get(STORE_ENV, "").strip()
    return Path(value) if value else None


def code_fingerprint(modules: tuple[str, ...] = TRAINING_MODULES) -> str:
    """SHA-256 of the source of the given labcode modules."""
    package = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for name in modules:
        digest.update(name.encode() + b"\0" + (package / name).read_bytes() + b"\0")
    return digest.hexdigest()


def tensor_fingerprint(tensor: Tensor) -> str:
    """SHA-256 of a tensor's dtype, shape and values (on the CPU)."""
    data = tensor.detach().cpu().contiguous()
    digest = hashlib.sha256(f"{data.dtype}{tuple(data.shape)}".encode())
    digest.update(data.numpy().tobytes())
    return digest.hexdigest()


def entry_key(kind: str, config: dict[str, Any], data: Tensor, device: torch.device | str | None) -> str:
    """The key of one training: kind, configuration, data, training code, torch version and device."""
    if not kind or not isinstance(kind, str):
        raise ValueError(f"kind must be a non-empty string, got {kind!r}")
    described = {"kind": kind, "config": config, "data": tensor_fingerprint(data), "code": code_fingerprint(),
                 "torch": torch.__version__, "device": str(torch.device(device) if device is not None else "cpu")}
    return hashlib.sha256(json.dumps(described, sort_keys=True, default=str).encode()).hexdigest()[:32]


@contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)          # released when the file is closed
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


#: the store's log of recovered faults (one line each), which the book's build prints
EVENTS = "events.log"


def _load(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:   # a truncated or corrupt entry: move it aside, record it, train again
        aside = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
        os.replace(path, aside)
        reason = " ".join(f"{type(err).__name__}: {err}".split())[:300]
        with (path.parent / EVENTS).open("a", encoding="utf-8") as log:
            log.write(f"unreadable entry {path} ({reason}); moved to {aside.name}, training again\n")
        return None


def _save(path: Path, payload: dict) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(handle)
    try:
        torch.save(payload, temporary)
        os.replace(temporary, path)
    finally:
        Path(temporary).unlink(missing_ok=True)


def cached_training(kind: str, config: dict[str, Any], data: Tensor, device: torch.device | str | None,
                    train: Callable[[], dict]) -> dict:
    """``train()``'s payload (tensors, numbers, lists and dicts of them), from the store when it holds it.

    Without a store (``LABCODE_MODEL_STORE`` unset) this is just ``train()``. Payload tensors come
    back on the CPU; callers move them to their device.
    """
    root = store_dir()
    if root is None:
        return train()
    key = entry_key(kind, config, data, device)
    path = root / f"{kind}-{key}.pt"
    with _locked(root / f"{kind}-{key}.lock"):
        payload = _load(path)
        if payload is None:
            payload = train()
            _save(path, payload)
    return payload
