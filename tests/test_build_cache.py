"""The execution cache re-runs exactly what changed, on a small fixture book built with plain `jupyter-book build`.

The build extension (_ext/labcode_build/) must make the cache key cover the code
cells, the labcode modules each chapter imported and the pinned requirements, but not
the prose. In the fixture, both chapters import labcode; only beta imports labcode.plots.data.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from book_utils import ROOT, edit

FIXTURE = Path(__file__).parent / "fixtures" / "cachebook"
JB = Path(sys.executable).parent / "jupyter-book"

CONFIG = """title: Cache fixture
only_build_toc_files: true
execute:
  execute_notebooks: cache
  timeout: 120
sphinx:
  local_extensions:
    labcode_build: {ext}
  config:
    nb_execution_raise_on_error: true
"""


def make_book(dest: Path) -> Path:
    shutil.copytree(FIXTURE, dest)
    shutil.copytree(ROOT / "src" / "labcode", dest / "src" / "labcode",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("requirements.txt", "pyproject.toml"):
        shutil.copy(ROOT / name, dest / name)
    (dest / "_config.yml").write_text(CONFIG.format(ext=ROOT / "_ext"))
    return dest


def build(book: Path, workers: int = 2, extra_env: dict[str, str] | None = None) -> dict:
    """Run a plain `jupyter-book build`; return the extension's execution log plus myst-nb's own executions."""
    env = {"LABCODE_BUILD_WORKERS": str(workers), "PATH": str(JB.parent) + ":/usr/bin:/bin",
           "HOME": str(Path.home()), "LABCODE_DEVICE": "cpu", **(extra_env or {})}
    proc = subprocess.run([str(JB), "build", str(book), "-W", "-n", "--keep-going"],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    log = json.loads((book / "_build" / ".jupyter_cache" / "execution-log.json").read_text())
    log["mystnb_executed"] = proc.stdout.count("Executing notebook using")
    log["glue"] = json.loads((book / "_build" / "html" / "glued-values.json").read_text())
    return log


@pytest.fixture(scope="module")
def book(tmp_path_factory: pytest.TempPathFactory) -> Path:
    book = make_book(tmp_path_factory.mktemp("cache") / "book")
    first = build(book)
    assert first["executed"] == ["alpha", "beta"] and first["mystnb_executed"] == 0
    return book


def test_no_change_executes_nothing(book: Path) -> None:
    log = build(book)
    assert log["executed"] == [] and log["mystnb_executed"] == 0


def test_prose_edit_executes_nothing(book: Path) -> None:
    edit(book / "alpha.md", "Prose of chapter alpha.", "Prose of chapter alpha, edited.")
    log = build(book)
    assert log["executed"] == [] and log["mystnb_executed"] == 0
    assert "edited" in (book / "_build" / "html" / "alpha.html").read_text()


def test_code_cell_edit_executes_that_chapter_only(book: Path) -> None:
    edit(book / "beta.md", "steps=20", "steps=21")
    log = build(book)
    assert log["executed"] == ["beta"] and log["mystnb_executed"] == 0


def _deps(book: Path) -> dict:
    return json.loads((book / "_build" / ".jupyter_cache" / "labcode-deps.json").read_text())


def test_imports_are_recorded_per_chapter(book: Path) -> None:
    deps = _deps(book)
    assert "labcode.plots.data" in deps["beta"]["modules"] and "labcode.plots.data" not in deps["alpha"]["modules"]
    assert {"labcode", "labcode.kl", "labcode.vae"} <= set(deps["alpha"]["modules"])


def test_plotting_module_edit_executes_only_the_chapter_that_imports_it(book: Path) -> None:
    edit(book / "src" / "labcode" / "plots" / "data.py", '"""Figures of', '"""Figures (edited) of')
    log = build(book)
    assert log["executed"] == ["beta"] and log["mystnb_executed"] == 0


def test_core_module_edit_executes_every_chapter(book: Path) -> None:
    edit(book / "src" / "labcode" / "kl.py", '"""KL divergence', '"""KL divergence (edited)')
    log = build(book)
    assert log["executed"] == ["alpha", "beta"] and log["mystnb_executed"] == 0


def test_a_changed_import_set_is_recorded(book: Path) -> None:
    edit(book / "alpha.md", "import labcode as lc\n", "import labcode as lc\nimport labcode.plots.data\n")
    assert build(book)["executed"] == ["alpha"]
    assert "labcode.plots.data" in _deps(book)["alpha"]["modules"]
    edit(book / "src" / "labcode" / "plots" / "data.py", "(edited)", "(edited twice)")
    assert build(book)["executed"] == ["alpha", "beta"]


def test_requirements_edit_executes_every_chapter(book: Path) -> None:
    with (book / "requirements.txt").open("a") as f:
        f.write("# a changed pin\n")
    log = build(book)
    assert log["executed"] == ["alpha", "beta"] and log["mystnb_executed"] == 0


def test_a_tool_setting_in_pyproject_executes_nothing_but_a_dependency_executes_everything(book: Path) -> None:
    """pyproject.toml also holds pytest's and ruff's settings: only its [project] table (the dependencies) and
    [build-system] decide the outputs."""
    with (book / "pyproject.toml").open("a") as f:
        f.write('\n[tool.example]\nmarkers = ["quick: a new test marker"]\n')
    assert build(book)["executed"] == []
    edit(book / "pyproject.toml", '"tqdm>=4.60"', '"tqdm>=4.61"')
    assert build(book)["executed"] == ["alpha", "beta"]


def test_two_cold_builds_glue_identical_values(tmp_path: Path) -> None:
    """Serial and parallel cold builds in separate folders give byte-identical glued values."""
    a = build(make_book(tmp_path / "a"), workers=1)["glue"]
    b = build(make_book(tmp_path / "b"), workers=2)["glue"]
    assert a == b
    assert set(a["alpha"]) == {"final_elbo_alpha", "kl_alpha"}
    assert abs(a["alpha"]["kl_alpha"] - 0.876390) < 1e-5   # KL(N(0,.5²)‖N(1,1.5²)) = log 3 + (1/4+1)/4.5 − 1/2


def test_device_change_executes_every_chapter(book: Path) -> None:
    """Outputs computed on one device are never served for another (LABCODE_DEVICE is part of the key)."""
    log = build(book, extra_env={"LABCODE_DEVICE": "cpu:0"})
    assert log["executed"] == ["alpha", "beta"] and log["mystnb_executed"] == 0


def test_a_chapters_device_choice_reaches_its_kernel_and_the_report(book: Path) -> None:
    """Front matter ``labcode: {device: cpu}`` sets that chapter's LABCODE_DEVICE (when the build sets none),
    re-executes only that chapter when it changes, and is shown in the execution log; the build's own
    LABCODE_DEVICE still wins."""
    unset = {"LABCODE_DEVICE": ""}
    build(book, extra_env=unset)   # a different build-wide device setting: everything executes once
    edit(book / "beta.md", "kernelspec:", "labcode:\n  device: cpu\nkernelspec:")
    log = build(book, extra_env=unset)
    assert log["executed"] == ["beta"] and log["mystnb_executed"] == 0
    assert log["glue"]["beta"]["kernel_device_beta"] == "cpu"
    assert log["devices"] == {"beta": "CPU (chapter's choice)"}
    forced = build(book, extra_env={"LABCODE_DEVICE": "cpu:0"})   # executed before: restored from the archive
    assert forced["glue"]["beta"]["kernel_device_beta"] == "cpu:0" and forced["devices"]["beta"] == "CPU"
    assert "beta" in forced["executed"] + forced["restored"]


def test_an_unknown_device_choice_is_an_error_naming_the_chapter() -> None:
    sys.path.insert(0, str(ROOT / "_ext"))
    try:
        from labcode_build.fingerprints import chapter_device
    finally:
        sys.path.remove(str(ROOT / "_ext"))
    assert chapter_device({"labcode": {"device": "cpu"}}, "book/x") == "cpu"
    assert chapter_device({}, "book/x") is None
    with pytest.raises(ValueError, match=r"book/x: front matter labcode.device must be one of"):
        chapter_device({"labcode": {"device": "tpu"}}, "book/x")


def test_reverting_a_library_edit_executes_nothing(book: Path) -> None:
    """Undo is free: trying a change in a plotting module re-executes the one chapter that draws with it, and
    reverting it finds that chapter's earlier execution in the archive (executed per library state)."""
    before = build(book)["glue"]
    drawing = sorted(doc for doc, entry in _deps(book).items() if "labcode.plots.data" in entry["modules"])
    assert "beta" in drawing
    path = book / "src" / "labcode" / "plots" / "data.py"
    original = path.read_text()
    edit(path, '"""Figures', '"""Figures (a colour tried)')
    tried = build(book)
    assert tried["executed"] == drawing and tried["restored"] == []
    path.write_text(original)
    reverted = build(book)
    assert reverted["executed"] == [] and reverted["restored"] == drawing and reverted["mystnb_executed"] == 0
    assert reverted["glue"] == before


def test_an_older_execution_is_judged_by_its_own_imports(book: Path) -> None:
    """beta stops drawing (its execution no longer imports the plotting module), the plotting module changes, beta
    draws again: its earlier execution, which imported the old plotting module, must not be served."""
    beta = book / "beta.md"
    drawing = beta.read_text()
    edit(beta, "from labcode.plots.data import plot_spiral\n", "")
    edit(beta, "figure = plot_spiral(data)\n", "")
    assert build(book)["executed"] == ["beta"]
    edit(book / "src" / "labcode" / "plots" / "data.py", '"""Figures', '"""Figures (another colour)')
    build(book)
    beta.write_text(drawing)
    again = build(book)
    assert again["executed"] == ["beta"] and again["restored"] == []


def test_the_archive_evicts_the_least_recently_used(tmp_path: Path) -> None:
    import os
    sys.path.insert(0, str(ROOT / "_ext"))
    try:
        from labcode_build import archive
    finally:
        sys.path.remove(str(ROOT / "_ext"))
    for age, name in enumerate(["new", "middle", "old"]):
        archive.keep(tmp_path, name, {"modules": [], "fingerprint": name * 8, "data": {}}, "x" * 400_000)
        (path,) = tmp_path.glob(f"{name}-*.json.gz")
        os.utime(path, (1_000_000 - age * 100, 1_000_000 - age * 100))
    assert archive.find(tmp_path, "old", lambda modules, fp: True) is not None   # a use makes it the newest
    size = sum(p.stat().st_size for p in tmp_path.glob("*.json.gz"))
    removed = archive.evict(tmp_path, limit_mb=(size - 1) / 1e6)
    assert [p.name.split("-")[0] for p in removed] == ["middle"]
    assert sorted(p.name.split("-")[0] for p in tmp_path.glob("*.json.gz")) == ["new", "old"]
