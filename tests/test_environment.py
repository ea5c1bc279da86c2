"""scripts/env.sh never destroys an environment, and an environment shared by clones builds each clone's own labcode.

No test creates an environment or installs anything. The environments here are stand-ins: a folder whose
``bin/python`` runs this test's own interpreter (so pip's dry run sees the real installed packages) except for
a ``pip install`` that is not a dry run, which it logs and only pretends to do; a marker file inside must
survive every call. ``PYTHON=false`` makes any attempt to create an environment fail at once.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from book_utils import ROOT, edit
from test_build_faults import CONFIG, FIXTURE, glue

MARKER = "keep-me.txt"
WRAPPER = """#!/bin/sh
printf '%s\\n' "$*" >> {log}
case " $* " in
  *" install "*) case " $* " in *" --dry-run "*) ;; *) exit 0 ;; esac ;;
esac
exec {python} "$@"
"""
UNMET_PIN = ("pytest==", "pytest==0.0.1  # ")   # an edit of requirements.txt that no environment satisfies
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "_build")


def make_clone(dest: Path, book: bool = False) -> Path:
    """The parts of a clone env.sh reads; with ``book``, also a one-book root: the fault fixture, src/ and _ext/."""
    shutil.copytree(ROOT / "scripts", dest / "scripts", ignore=IGNORE)
    for name in ("requirements.txt", "pyproject.toml"):
        shutil.copy(ROOT / name, dest / name)
    if book:
        shutil.copytree(FIXTURE, dest, dirs_exist_ok=True)
        for name in ("src", "_ext"):
            shutil.copytree(ROOT / name, dest / name, ignore=IGNORE)
        (dest / "_config.yml").write_text(CONFIG.format(ext=dest / "_ext"))
    return dest


def make_env(path: Path, stamp: str | None = None) -> Path:
    """A stand-in environment at ``path`` (see the module docstring); its python logs to ``path``.log."""
    (path / "bin").mkdir(parents=True)
    python = path / "bin" / "python"
    python.write_text(WRAPPER.format(log=log_of(path), python=sys.executable))
    python.chmod(0o755)
    (path / "bin" / "jupyter-book").symlink_to(Path(sys.executable).parent / "jupyter-book")
    (path / MARKER).write_text("an environment someone else relies on\n")
    log_of(path).write_text("")
    if stamp is not None:
        (path / ".requirements.sha256").write_text(stamp + "\n")
    return path


def log_of(env: Path) -> Path:
    return env.with_name(env.name + ".log")


def calls(env: Path) -> list[str]:
    """The argument lists the environment's python has run with so far."""
    return log_of(env).read_text().splitlines()


def run(script: Path, venv: Path | None, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH" and not key.startswith("LABCODE_")}
    env.update(PYTHON="false", LABCODE_DEVICE="cpu", LABCODE_BUILD_WORKERS="1")
    if venv is not None:
        env["LABCODE_VENV"] = str(venv)
    return subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def requirements_met() -> None:
    """This test's own environment satisfies requirements.txt (what the stand-ins report to env.sh)."""
    check = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-index", "--disable-pip-version-check",
                            "-r", str(ROOT / "requirements.txt")], capture_output=True, text=True)
    if check.returncode or "Would install" in check.stdout:
        pytest.skip(f"the test's environment {sys.prefix} does not satisfy requirements.txt: {check.stdout[-300:]}{check.stderr[-300:]}")


def test_clones_share_an_environment_whose_stamp_is_from_elsewhere(tmp_path, requirements_met):
    """A stamp from another clone or an older scheme, with requirements met: nothing rebuilt, the stamp is renewed
    (after pip's dry run), and a second clone at another path then finds it equal without running anything."""
    env = make_env(tmp_path / "shared", stamp="0" * 64)
    first, second = make_clone(tmp_path / "a"), make_clone(tmp_path / "b" / "deeper")
    done = run(first / "scripts" / "env.sh", env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{env}/bin"
    assert (env / MARKER).exists()
    assert all("--dry-run" in call for call in calls(env) if " install " in f" {call} "), calls(env)
    stamp = (env / ".requirements.sha256").read_text()
    assert stamp.strip() != "0" * 64

    before = len(calls(env))
    done = run(second / "scripts" / "env.sh", env)
    assert done.returncode == 0, done.stderr
    assert (env / ".requirements.sha256").read_text() == stamp, "the stamp depends on the clone's path"
    assert calls(env)[before:] == [], "a matching stamp should need no check at all"
    assert (env / MARKER).exists()


def test_changed_requirements_leave_a_shared_environment_untouched(tmp_path):
    clone = make_clone(tmp_path / "clone")
    env = make_env(tmp_path / "shared", stamp="0" * 64)
    edit(clone / "requirements.txt", *UNMET_PIN)
    done = run(clone / "scripts" / "env.sh", env)
    assert done.returncode != 0
    assert (env / MARKER).exists() and (env / "bin" / "python").exists()
    assert (env / ".requirements.sha256").read_text() == "0" * 64 + "\n"
    assert all("--dry-run" in call for call in calls(env) if " install " in f" {call} "), calls(env)
    assert "pytest==0.0.1" in done.stderr   # what differs
    assert f'"{env}/bin/python" -m pip install -r "{clone}/requirements.txt"' in done.stderr   # the command to update it
    assert "LABCODE_VENV" in done.stderr


def test_a_folder_that_is_no_environment_is_never_deleted(tmp_path):
    clone = make_clone(tmp_path / "clone")
    folder = tmp_path / "not-an-env"
    folder.mkdir()
    (folder / MARKER).write_text("data\n")
    done = run(clone / "scripts" / "env.sh", folder)
    assert done.returncode != 0
    assert (folder / MARKER).read_text() == "data\n"
    assert "not a working Python environment" in done.stderr


def test_the_repository_venv_is_updated_in_place(tmp_path):
    """The clone's own .venv, out of date but working: pip install -r requirements.txt into it, not rm -rf."""
    clone = make_clone(tmp_path / "clone")
    env = make_env(clone / ".venv", stamp="0" * 64)
    edit(clone / "requirements.txt", *UNMET_PIN)
    done = run(clone / "scripts" / "env.sh", None)
    assert done.returncode == 0, done.stderr
    assert (env / MARKER).exists()
    installs = [call for call in calls(env) if " install " in f" {call} " and "--dry-run" not in call]
    assert installs == [f"-m pip --disable-pip-version-check install --quiet -r {clone}/requirements.txt",
                        f"-m pip --disable-pip-version-check install --quiet --no-deps -e {clone}"]
    assert (env / ".requirements.sha256").read_text().strip() != "0" * 64


def test_two_clones_sharing_an_environment_each_build_their_own_labcode(tmp_path, requirements_met):
    """One LABCODE_VENV, whose own labcode is neither clone's: each clone's book glues its own src/'s number."""
    env = make_env(tmp_path / "shared")
    first, second = make_clone(tmp_path / "a", book=True), make_clone(tmp_path / "b", book=True)
    edit(second / "src" / "labcode" / "kl.py", "return 0.5 * (variance_term + mean_term)",
         "return 0.25 * (variance_term + mean_term)")
    for clone in (first, second):
        done = run(clone / "scripts" / "build-book.sh", env, timeout=600)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert glue(first)["calm"]["kl_calm"] == pytest.approx(0.876390, abs=1e-5)
    assert glue(second)["calm"]["kl_calm"] == pytest.approx(0.876390 / 2, abs=1e-5)
    assert (env / MARKER).exists()
    assert all("--dry-run" in call for call in calls(env) if " install " in f" {call} "), calls(env)
