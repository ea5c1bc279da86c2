"""Shared test settings: devices, dtypes, tolerances and the Hypothesis profile.

Every test that takes ``device`` runs on the CPU and, where one is present, on
a CUDA GPU (skipped otherwise); every test that takes ``dtype`` runs in float32
and float64. The fixtures are session-scoped so that Hypothesis tests may use
them (Hypothesis rejects function-scoped fixtures).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import matplotlib as mpl
import pytest
import torch
from hypothesis import settings

import labcode as lc
from book_utils import HTML, ROOT

pytest_plugins = ["browser_fixtures"]   # browser, server, visits for the browser test modules

# Modest example counts keep the suite fast; derandomize makes every CI run
# draw the same examples (a fixed seed), and database=None keeps the working
# tree free of a .hypothesis folder. HYPOTHESIS_PROFILE=stress searches
# much harder, with fresh random examples, before a tolerance is changed.
settings.register_profile("labcode", max_examples=60, deadline=None, derandomize=True, database=None)
settings.register_profile("stress", max_examples=2000, deadline=None, database=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "labcode"))

CUDA_AVAILABLE = torch.cuda.is_available()

DEVICES = [
    pytest.param("cpu", id="cpu"),
    pytest.param("cuda", id="cuda", marks=pytest.mark.skipif(not CUDA_AVAILABLE, reason="CUDA is not available")),
]
DTYPES = [pytest.param(torch.float32, id="float32"), pytest.param(torch.float64, id="float64")]

#: tolerances for a result computed in ``dtype`` against a float64 reference
#: computed from the same (already rounded) inputs
TOLERANCES = {
    torch.float32: {"rtol": 1e-5, "atol": 1e-5},
    torch.float64: {"rtol": 1e-10, "atol": 1e-10},
}


@pytest.fixture(scope="session", params=DEVICES)
def device(request: pytest.FixtureRequest) -> torch.device:
    """A torch device: ``cpu``, and ``cuda`` where available."""
    return torch.device(request.param)


@pytest.fixture(scope="session", params=DTYPES)
def dtype(request: pytest.FixtureRequest) -> torch.dtype:
    """A floating dtype: float32 and float64."""
    return request.param


@pytest.fixture(scope="session")
def tol(dtype: torch.dtype) -> dict[str, float]:
    """``assert_close`` tolerances appropriate for ``dtype``."""
    return TOLERANCES[dtype]


@pytest.fixture(scope="session")
def built_book() -> Path:
    """Build the whole book once per test session with warnings as errors (cache mode: unchanged chapters are
    not re-executed); fail with the build's output and the cells' error logs if it fails."""
    jb = Path(sys.executable).parent / "jupyter-book"
    proc = subprocess.run([str(jb), "build", str(ROOT), "-W", "-n", "--keep-going"],
                          capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:   # the failed build's pages (and reports) are kept beside the last good site
        failed = HTML.with_name(HTML.name + ".failed") / "reports"
        reports = "\n".join(p.read_text()[-3000:] for p in failed.rglob("*.err.log")) if failed.exists() else ""
        pytest.fail(f"jupyter-book build failed ({proc.returncode}):\n{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}\n{reports}")
    return HTML


@pytest.fixture(scope="module")
def small_vae() -> tuple[lc.VAE, torch.Tensor]:
    """A quickly trained spiral VAE (float32) and its data."""
    data = lc.make_spiral(200, 0.1, generator=torch.Generator().manual_seed(0))
    model, _ = lc.fit_vae(data, lc.VAEConfig(steps=300, lr=3e-2, seed=0))
    return model, data


@pytest.fixture
def rc_unchanged():
    """Fails the test if it changed matplotlib's global rcParams (figures style themselves locally)."""
    before = dict(mpl.rcParams)
    yield
    assert dict(mpl.rcParams) == before


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that needs the built book is a ``book`` test, whether or not it says so (``-m "not book"`` skips it)."""
    for item in items:
        if "built_book" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.book)
