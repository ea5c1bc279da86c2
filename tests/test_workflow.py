"""The GitHub Actions workflow passes actionlint and follows the project's rules."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from book_utils import ROOT

WORKFLOW = ROOT / ".github" / "workflows" / "book.yml"


def load() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def test_actionlint_passes() -> None:
    exe = shutil.which("actionlint", path=str(Path(sys.executable).parent)) or shutil.which("actionlint")
    assert exe, "actionlint is not installed (requirements.txt pins it)"
    proc = subprocess.run([exe, str(WORKFLOW)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_actions_are_pinned_to_commits() -> None:
    uses = re.findall(r"uses:\s*(\S+)", WORKFLOW.read_text())
    assert uses
    unpinned = [u for u in uses if not re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", u)]
    assert not unpinned, f"actions not pinned to a full commit SHA: {unpinned}"


def test_least_privilege_permissions() -> None:
    wf = load()
    assert wf["permissions"] == {"contents": "read"}
    jobs = wf["jobs"]
    assert jobs["deploy"]["permissions"] == {"pages": "write", "id-token": "write"}
    assert all("permissions" not in job for name, job in jobs.items() if name != "deploy")


def test_gpu_runner_checks_cuda_and_builds_with_warnings_as_errors() -> None:
    wf = load()
    gpu = wf["jobs"]["gpu-build"]
    assert "vars.GPU_RUNNER_LABELS" in gpu["runs-on"] and '"gpu"' in gpu["runs-on"]
    runs = [step.get("run", "") for step in gpu["steps"]]
    assert any("nvidia-smi" in r for r in runs)
    assert any("torch.cuda.is_available()" in r for r in runs)
    assert any("scripts/build-book.sh" in r for r in runs)
    assert "scripts/build_book.py" in (ROOT / "scripts" / "build-book.sh").read_text()   # which builds with -W -n
    assert '"-W", "-n", "--keep-going"' in (ROOT / "scripts" / "build_book.py").read_text()


def test_triggers_weekly_cold_rebuild_and_fork_cpu_job() -> None:
    wf = load()
    triggers = wf[True] if True in wf else wf["on"]   # YAML 1.1 reads the key `on` as True
    assert {"pull_request", "push", "schedule"} <= set(triggers)
    cache_steps = [s for s in wf["jobs"]["gpu-build"]["steps"] if "actions/cache@" in s.get("uses", "")]
    assert cache_steps and cache_steps[0]["if"] == "github.event_name != 'schedule'"
    cpu = wf["jobs"]["cpu-build"]
    assert "head.repo.full_name != github.repository" in cpu["if"]
    assert cpu["env"]["LABCODE_DEVICE"] == "cpu"


def test_the_test_job_runs_the_readme_command_on_pull_requests_and_main() -> None:
    wf = load()
    triggers = wf[True] if True in wf else wf["on"]
    assert "pull_request" in triggers and triggers["push"]["branches"] == ["main"]
    test = wf["jobs"]["test"]
    assert "if" not in test, "the test job runs on every event of the workflow, forks' pull requests included"
    assert test["runs-on"] == "ubuntu-latest" and 0 < test["timeout-minutes"] <= 60
    runs = [step.get("run", "") for step in test["steps"]]
    assert "bash scripts/test.sh" in runs
    assert "bash scripts/test.sh" in (ROOT / "README.md").read_text()


def test_the_test_job_requires_the_browser_tests_with_debians_chromium() -> None:
    test = load()["jobs"]["test"]
    assert test["env"]["LABCODE_REQUIRE_BROWSER"] == "1"
    assert re.fullmatch(r"python:3\.12-bookworm", test["container"]["image"]), "Debian (bookworm), Python 3.12"
    runs = [step.get("run", "") for step in test["steps"]]
    install = next(i for i, r in enumerate(runs) if "apt-get install" in r and "chromium" in r)
    assert "/usr/bin/chromium --version" in runs[install]   # the path tests/browser_fixtures.py drives
    assert install < runs.index("bash scripts/test.sh")
    assert "--shm-size" in test["container"]["options"]


def test_the_test_job_requires_the_pdf_only_if_it_builds_it() -> None:
    test = load()["jobs"]["test"]
    builds_pdf = any("build-pdf.sh" in step.get("run", "") for step in test["steps"])
    assert ("LABCODE_REQUIRE_PDF" in test.get("env", {})) == builds_pdf


def test_the_test_job_caches_pip_downloads() -> None:
    steps = load()["jobs"]["test"]["steps"]
    cache = [s for s in steps if "actions/cache@" in s.get("uses", "")]
    assert cache and cache[0]["with"]["path"] == "~/.cache/pip"
    assert "hashFiles('requirements.txt', 'pyproject.toml')" in cache[0]["with"]["key"]
    assert steps.index(cache[0]) < [s.get("run") for s in steps].index("bash scripts/test.sh")


def test_deploy_waits_for_the_build_and_the_tests() -> None:
    deploy = load()["jobs"]["deploy"]
    assert set(deploy["needs"]) == {"gpu-build", "test"}
    assert "always()" not in deploy["if"] and "failure()" not in deploy["if"]


def test_the_student_edition_is_published_only_when_asked() -> None:
    """SITE_EDITION=student builds the student edition after the full one (whose cache it uses) and uploads it instead
    of the full site; without the variable the full site is uploaded and no student edition is built."""
    steps = load()["jobs"]["gpu-build"]["steps"]
    runs = [step.get("run", "") for step in steps]
    student = next(i for i, step in enumerate(steps) if "--edition student" in step.get("run", ""))
    assert steps[student]["if"] == "vars.SITE_EDITION == 'student'"
    assert runs.index("bash scripts/build-book.sh") < student
    upload = next(i for i, step in enumerate(steps) if "upload-pages-artifact@" in step.get("uses", ""))
    assert student < upload
    assert steps[upload]["with"]["path"] == ("${{ vars.SITE_EDITION == 'student' && '_build/student/_build/html' "
                                             "|| '_build/html' }}")
    sys.path.insert(0, str(ROOT / "_ext"))
    from labcode_build.edition import build_dir
    assert build_dir(ROOT, "student") / "html" == ROOT / "_build" / "student" / "_build" / "html"   # what it uploads
