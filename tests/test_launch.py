"""Students launch chapters in Colab and Binder: the notebooks exist, are in sync, and run in fresh environments."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from book_utils import ROOT, notebook_docs

sys.path.insert(0, str(ROOT / "scripts"))
from booktools import repository, rerun
from sync_notebooks import MARKER, sync

#: run in the environment under test: open a notebook (.ipynb, or .md through jupytext) and execute it
EXECUTE = """
import sys, jupytext, nbformat
from nbclient import NotebookClient
nb = jupytext.read(sys.argv[1])
NotebookClient(nb, timeout=600, startup_timeout=300, kernel_name="python3",
               resources={"metadata": {"path": sys.argv[2]}}).execute()
nbformat.write(nb, sys.argv[3])
print("executed", len([c for c in nb.cells if c.cell_type == "code"]), "code cells")
"""


@pytest.mark.quick
def test_notebooks_are_in_sync_with_chapters() -> None:
    stale = sync(check=True)
    assert not stale, f"out of date (run {rerun('sync_notebooks.py')}, or bash scripts/build-book.sh): {stale}"


@pytest.mark.quick
def test_every_chapter_starts_with_the_hidden_install_cell() -> None:
    url, branch = repository()
    for doc in notebook_docs():
        text = (ROOT / f"{doc}.md").read_text()
        first = re.search(r"```\{code-cell\}[^\n]*\n(.*?)\n```", text, re.DOTALL).group(1)
        assert MARKER in first and ":tags: [remove-cell]" in first, doc
        assert f"git+{url}@{branch}" in first, doc


def _launch_links(html: str) -> list[str]:
    return re.findall(r'href="(https://(?:mybinder\.org|colab\.research\.google\.com)/[^"]+)"', html)


@pytest.mark.parametrize("doc", notebook_docs())
def test_launch_buttons_point_at_files_in_the_checkout(built_book: Path, doc: str) -> None:
    url, branch = repository()
    owner_repo = urlparse(url).path.strip("/")
    links = set(_launch_links((built_book / f"{doc}.html").read_text()))
    colab = [u for u in links if "colab" in u]
    binder = [u for u in links if "mybinder" in u]
    assert colab and binder, f"{doc}: launch buttons missing ({links})"
    for link in colab:
        prefix = f"https://colab.research.google.com/github/{owner_repo}/blob/{branch}/"
        assert link.startswith(prefix), link
        target = link.removeprefix(prefix)
        assert target.endswith(".ipynb") and (ROOT / target).is_file(), f"Colab link to a missing notebook: {link}"
    for link in binder:
        parsed = urlparse(link)
        assert parsed.path == f"/v2/gh/{owner_repo}/{branch}", link
        target = parse_qs(parsed.query)["urlpath"][0].removeprefix("lab/tree/")
        assert (ROOT / target).is_file(), f"Binder link to a missing file: {link}"


def _fresh_venv(path: Path, inherit: bool) -> Path:
    """A new virtual environment; with ``inherit`` it sees this environment's packages but not labcode."""
    venv.create(path, with_pip=True)
    python = path / "bin" / "python"
    if inherit:
        site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              capture_output=True, text=True, check=True).stdout.strip()
        # A path line in a .pth file is not itself a site dir, so the editable labcode .pth there is not loaded.
        Path(site, "inherited.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


@pytest.fixture(scope="module")
def labcode_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel of this checkout, built once: what the install cell installs in place of the repository URL."""
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                           "--wheel-dir", str(out), str(ROOT)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return next(out.glob("labcode-*.whl"))


def outside_env(**extra: str) -> dict[str, str]:
    """This process's environment without ``PYTHONPATH`` (scripts/test.sh points it at this checkout's src/, which
    would let a fresh environment import labcode without installing it), plus ``extra``."""
    return {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, **extra}


@pytest.fixture(scope="module")
def colab_like_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    python = _fresh_venv(tmp_path_factory.mktemp("colab") / "venv", inherit=True)
    probe = subprocess.run([str(python), "-c", "import labcode"], capture_output=True, text=True, env=outside_env())
    assert probe.returncode != 0, "the fresh environment must not see labcode"
    return python


@pytest.fixture(scope="module")
def shared_model_store(built_book: Path) -> Path:
    """The book build's model store: a model the build trained (same labcode source, torch and device) is
    loaded, not trained again; anything else is trained once for all the notebooks of this module."""
    return ROOT / "_build" / ".labcode-models"


@pytest.mark.parametrize("doc", notebook_docs())
def test_colab_notebook_runs_in_fresh_env_installing_labcode(colab_like_python: Path, labcode_wheel: Path, doc: str,
                                                             shared_model_store: Path, tmp_path: Path) -> None:
    """The install cell (pointed at a wheel of this checkout) installs labcode, then every cell runs."""
    env = outside_env(LABCODE_INSTALL_FROM=str(labcode_wheel), LABCODE_DEVICE="cpu", HOME=str(tmp_path),
                      LABCODE_MODEL_STORE=str(shared_model_store))
    notebook = ROOT / f"{doc}.ipynb"
    try:
        proc = subprocess.run([str(colab_like_python), "-c", EXECUTE, str(notebook), str(notebook.parent),
                               str(tmp_path / "executed.ipynb")],
                              capture_output=True, text=True, env=env, timeout=900)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    finally:
        subprocess.run([str(colab_like_python), "-m", "pip", "uninstall", "--quiet", "-y", "labcode"],
                       capture_output=True, env=env)


def test_binder_replay(tmp_path: Path) -> None:
    """repo2docker's steps: pip install -r requirements.txt, run postBuild; then open a chapter through jupytext."""
    env_dir = tmp_path / "binder"
    python = _fresh_venv(env_dir, inherit=False)
    home = tmp_path / "home"
    home.mkdir()
    env = outside_env(PATH=f"{env_dir / 'bin'}:{os.environ['PATH']}", HOME=str(home), LABCODE_DEVICE="cpu")
    env.pop("JUPYTER_CONFIG_DIR", None)
    steps = [[str(python), "-m", "pip", "install", "--quiet", "-r", str(ROOT / "requirements.txt")],
             ["bash", str(ROOT / "postBuild")]]
    for step in steps:
        proc = subprocess.run(step, capture_output=True, text=True, env=env, cwd=ROOT, timeout=1200)
        assert proc.returncode == 0, f"{step}: {proc.stdout[-2000:]}{proc.stderr[-3000:]}"
    viewers = json.loads((home / ".jupyter" / "labconfig" / "default_setting_overrides.json").read_text())
    assert viewers["@jupyterlab/docmanager-extension:plugin"]["defaultViewers"]["myst"] == "Jupytext Notebook"
    out = tmp_path / "spiral.ipynb"
    chapter = ROOT / "book" / "spiral.md"
    proc = subprocess.run([str(python), "-c", EXECUTE, str(chapter), str(chapter.parent), str(out)],
                          capture_output=True, text=True, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    executed = json.loads(out.read_text())
    outputs = [o for c in executed["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]
    assert any("image/png" in o.get("data", {}) for o in outputs), "the chapter's figure was not produced"
