"""The model store: one training per configuration and build, safe under concurrency and corruption."""

from __future__ import annotations

import multiprocessing
import warnings
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import labcode as lc
from labcode import store

DATA = torch.arange(12.0).reshape(6, 2)


def counting_train(log: Path, value: float = 1.0, pause: float = 0.0):
    def train() -> dict:
        import time
        with log.open("a") as f:
            f.write("trained\n")
        time.sleep(pause)
        return {"weights": torch.full((3,), value), "history": [value, 2 * value]}
    return train


def trainings(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.is_file() else 0


@pytest.fixture
def store_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "models"
    monkeypatch.setenv(store.STORE_ENV, str(folder))
    return folder


def test_without_a_store_every_call_trains(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(store.STORE_ENV, raising=False)
    log = tmp_path / "log"
    for _ in range(2):
        store.cached_training("toy", {"a": 1}, DATA, "cpu", counting_train(log))
    assert trainings(log) == 2


def test_second_request_loads_what_the_first_trained(store_dir: Path, tmp_path: Path) -> None:
    log = tmp_path / "log"
    first = store.cached_training("toy", {"a": 1}, DATA, "cpu", counting_train(log))
    second = store.cached_training("toy", {"a": 1}, DATA, "cpu", counting_train(log))
    assert trainings(log) == 1
    assert torch.equal(first["weights"], second["weights"]) and first["history"] == second["history"]
    assert len(list(store_dir.glob("toy-*.pt"))) == 1


def test_config_data_device_and_code_are_in_the_key(store_dir: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "log"
    store.cached_training("toy", {"a": 1}, DATA, "cpu", counting_train(log))
    store.cached_training("toy", {"a": 2}, DATA, "cpu", counting_train(log))            # changed config
    store.cached_training("toy", {"a": 1}, DATA + 1, "cpu", counting_train(log))        # changed data
    store.cached_training("toy", {"a": 1}, DATA, "meta", counting_train(log))           # another device
    assert trainings(log) == 4
    monkeypatch.setattr(store, "code_fingerprint", lambda modules=store.TRAINING_MODULES: "edited training code")
    store.cached_training("toy", {"a": 1}, DATA, "cpu", counting_train(log))
    assert trainings(log) == 5


def test_training_code_fingerprint_follows_the_source() -> None:
    assert store.code_fingerprint() == store.code_fingerprint()
    assert store.code_fingerprint(("vae.py",)) != store.code_fingerprint(("kl.py",))


def test_a_truncated_entry_is_moved_aside_logged_and_retrained(store_dir: Path, tmp_path: Path) -> None:
    """A damaged entry is kept for inspection, named in the store's events.log (which the build prints), and
    trained again; nothing is written to the chapter's own output (it would be cached with the page)."""
    log = tmp_path / "log"
    store.cached_training("toy", {"a": 1}, DATA, "cpu", counting_train(log))
    (entry,) = store_dir.glob("toy-*.pt")
    truncated = entry.read_bytes()[:40]
    entry.write_bytes(truncated)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                   # no warning reaches the chapter
        again = store.cached_training("toy", {"a": 1}, DATA, "cpu", counting_train(log, value=1.0))
    assert trainings(log) == 2 and torch.equal(again["weights"], torch.ones(3))
    (aside,) = store_dir.glob("toy-*.pt.damaged-*")
    assert aside.read_bytes() == truncated
    events = (store_dir / store.EVENTS).read_text().splitlines()
    assert len(events) == 1 and str(entry) in events[0] and aside.name in events[0]
    store.cached_training("toy", {"a": 1}, DATA, "cpu", counting_train(log))   # the rewritten entry loads
    assert trainings(log) == 2


def _request(folder: str, log: str) -> None:
    import os
    os.environ[store.STORE_ENV] = folder
    store.cached_training("toy", {"a": 1}, DATA, "cpu", counting_train(Path(log), pause=1.0))


def test_two_parallel_requests_train_once(store_dir: Path, tmp_path: Path) -> None:
    log = tmp_path / "log"
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_request, args=(str(store_dir), str(log))) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    assert trainings(log) == 1


def test_shared_experiments_are_identical_from_the_store(store_dir: Path) -> None:
    data = lc.lab_data(lc.SpiralSpec(n=40))
    cfg = replace(lc.REFERENCE_TRAINING, steps=15)
    trained, history = lc.reference_vae(data, cfg)
    loaded, history_again = lc.reference_vae(data, cfg)
    assert history == history_again
    for a, b in zip(trained.parameters(), loaded.parameters(), strict=True):
        assert torch.equal(a, b)
    sweep = lc.beta_sweep(data, (0.0, 1.0), cfg)
    again = lc.beta_sweep(data, (0.0, 1.0), cfg)
    assert len(list(store_dir.glob("beta_sweep-*.pt"))) == 1
    for beta in (0.0, 1.0):
        assert sweep[beta]["elbo"] == again[beta]["elbo"]
        assert torch.equal(sweep[beta]["latent_means"], again[beta]["latent_means"])
        assert torch.equal(sweep[beta]["model"].decoder_logvar, again[beta]["model"].decoder_logvar)


def test_bad_kind_is_rejected() -> None:
    with pytest.raises(ValueError, match="kind"):
        store.entry_key("", {}, DATA, None)
