"""Builds survive interruption, damaged state, concurrency, failing and runaway chapters (the build extension).

Every test builds a copy of the two-chapter fixture book ``tests/fixtures/faultbook`` with a plain
``jupyter-book build`` in a subprocess of its own session, tagged with a marker in its environment:
every process the build starts (workers, kernels, their children) inherits it, so ``leftovers``
finds any that outlive the build. Chapter ``calm`` trains (a trivial payload) through the model
store and glues its kernel's transport; chapter ``steady`` sleeps ``FAULT_FIXTURE_PAUSE`` seconds
in its first cell (an environment variable: not part of the cache key), which gives the tests a
window to interrupt a build.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from book_utils import ROOT, edit

FIXTURE = Path(__file__).parent / "fixtures" / "faultbook"
JB = Path(sys.executable).parent / "jupyter-book"
CONFIG = """title: Fault fixture
only_build_toc_files: true
exclude_patterns: [_build, "*.ipynb", "**/*.ipynb", src, scripts, _ext]
repository:
  url: https://github.com/generative-foundations/fault-fixture
execute:
  execute_notebooks: cache
  timeout: 60
sphinx:
  local_extensions:
    labcode_build: {ext}
"""
#: the glued values of a clean build of the fixture (independent of the faults)
CLEAN = {"calm": {"kl_calm": pytest.approx(0.876390, abs=1e-5), "stored_calm": 30.0, "transport_calm": "ipc"},
         "steady": {"mean_steady": pytest.approx(0.0143265, abs=1e-6)}}


def make_book(dest: Path) -> Path:
    shutil.copytree(FIXTURE, dest)
    for name in ("requirements.txt", "pyproject.toml"):
        shutil.copy(ROOT / name, dest / name)
    (dest / "_config.yml").write_text(CONFIG.format(ext=ROOT / "_ext"))
    return dest


class Build:
    """A ``jupyter-book build`` of ``book`` running in its own session, its processes tagged by ``marker``."""

    def __init__(self, book: Path, pause: float = 0.0, extra_env: dict[str, str] | None = None) -> None:
        self.book, self.marker = book, f"fault-{uuid.uuid4().hex}"
        env = {"PATH": str(JB.parent) + ":/usr/bin:/bin", "HOME": str(Path.home()), "LABCODE_DEVICE": "cpu",
               "PYTHONPATH": str(ROOT / "src"),   # the kernels import this checkout's labcode
               "LABCODE_BUILD_WORKERS": "2", "FAULT_FIXTURE_PAUSE": str(pause), "FAULT_TEST_MARKER": self.marker,
               **(extra_env or {})}
        self.proc = subprocess.Popen([str(JB), "build", book.name, "-W", "-n", "--keep-going"], env=env, text=True,
                                     cwd=book.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     start_new_session=True)
        self.stdout = self.stderr = ""

    def wait(self, timeout: float = 300) -> int:
        self.stdout, self.stderr = self.proc.communicate(timeout=timeout)
        return self.proc.returncode

    def wait_for_worker(self, timeout: float = 60) -> None:
        """Until a worker has started a kernel (a process of this build running ipykernel)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any("ipykernel" in cmd for cmd in leftovers(self.marker).values()):
                time.sleep(2.0)   # the kernel is executing
                return
            time.sleep(0.2)
        raise AssertionError("no kernel started")

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def leftovers(marker: str) -> dict[int, str]:
    """{pid: command line} of the live processes (zombies excluded) whose environment carries ``marker``."""
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if f"FAULT_TEST_MARKER={marker}".encode() not in (proc / "environ").read_bytes():
                continue
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            if state != "Z":
                found[int(proc.name)] = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, IndexError):
            continue
    return found


def assert_no_leftovers(marker: str, grace: float = 5.0) -> None:
    deadline = time.monotonic() + grace
    while leftovers(marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not leftovers(marker), f"processes outlived the build: {leftovers(marker)}"


def build(book: Path, **kwargs) -> Build:
    """A build run to its end; its processes are all gone afterwards."""
    run = Build(book, **kwargs)
    run.wait()
    assert_no_leftovers(run.marker)
    return run


def glue(book: Path) -> dict:
    return json.loads((book / "_build" / "html" / "glued-values.json").read_text())


def log(book: Path) -> dict:
    return json.loads((book / "_build" / ".jupyter_cache" / "execution-log.json").read_text())


def mystnb_executions(run: Build) -> int:
    return run.stdout.count("Executing notebook using")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture book, built once, cleanly."""
    book = make_book(tmp_path_factory.mktemp("faults") / "book")
    first = build(book)
    assert first.proc.returncode == 0, first.output[-4000:]
    assert glue(book) == CLEAN and log(book)["executed"] == ["calm", "steady"] and mystnb_executions(first) == 0
    return book


@pytest.fixture
def book(built: Path, tmp_path: Path) -> Path:
    """A copy of the built fixture book, with its build state (cache, model store, lock file).

    jupyter-cache records each notebook by its absolute path: the copy's records are moved with it.
    """
    copy = Path(shutil.copytree(built, tmp_path / "book", symlinks=True))
    with sqlite3.connect(copy / "_build" / ".jupyter_cache" / "global.db") as db:
        db.execute("UPDATE nbcache SET uri = replace(uri, ?, ?)", (f"{built}/", f"{copy}/"))
    return copy


def test_kernels_talk_over_ipc_without_the_tcp_warning(book: Path) -> None:
    """The kernels' transport is IPC (glued from inside the kernel), so ipykernel's TCP warning has no cause."""
    assert glue(book)["calm"]["transport_calm"] == "ipc"
    edit(book / "calm.md", "data = torch.arange", "# edited\ndata = torch.arange")
    run = build(book)
    assert run.proc.returncode == 0 and log(book)["executed"] == ["calm"]
    assert "without encryption" not in run.output


def test_a_build_interrupted_with_ctrl_c_leaves_no_process_and_the_next_build_recovers(book: Path) -> None:
    edit(book / "steady.md", "import time\n", "import time  # edited\n")
    run = Build(book, pause=60)
    run.wait_for_worker()
    run.proc.send_signal(signal.SIGINT)
    assert run.wait(timeout=60) != 0
    assert_no_leftovers(run.marker)
    again = build(book)
    assert again.proc.returncode == 0, again.output[-4000:]
    assert log(book)["executed"] == ["steady"] and glue(book) == CLEAN


def test_a_build_killed_mid_execution_recovers_with_identical_values(book: Path) -> None:
    """SIGKILL gives the build no chance to clean up: its workers die with it (PR_SET_PDEATHSIG) and take
    their kernels along; its lock is taken over; the next build executes what was lost."""
    edit(book / "steady.md", "import time\n", "import time  # edited\n")
    edit(book / "calm.md", "data = torch.arange", "# edited\ndata = torch.arange")
    run = Build(book, pause=60)
    run.wait_for_worker()
    os.kill(run.proc.pid, signal.SIGKILL)
    run.wait(timeout=30)
    assert_no_leftovers(run.marker, grace=10)
    again = build(book)
    assert again.proc.returncode == 0, again.output[-4000:]
    assert "taking over the build lock of build pid" in again.stderr
    assert "a previous build was interrupted: restoring its last good outputs" in again.stderr
    assert "steady" in log(book)["executed"] and glue(book) == CLEAN


def test_a_truncated_cache_database_is_moved_aside_and_the_build_proceeds(book: Path) -> None:
    db = book / "_build" / ".jupyter_cache" / "global.db"
    damaged = db.read_bytes()[: db.stat().st_size // 2]
    db.write_bytes(damaged)
    run = build(book)
    assert run.proc.returncode == 0, run.output[-4000:]
    assert "Traceback" not in run.output
    (aside,) = (book / "_build").glob(".jupyter_cache.damaged-*")
    assert (aside / "global.db").read_bytes() == damaged           # kept for inspection
    assert re.search(r"\.jupyter_cache is damaged \(global\.db: .*\); moved it to .*\.jupyter_cache\.damaged-",
                     run.stderr)
    # the executions kept per library state (beside the cache) serve both chapters again: nothing executes
    assert log(book)["restored"] == ["calm", "steady"] and log(book)["executed"] == [] and glue(book) == CLEAN


def test_a_cache_write_cut_short_is_rolled_back_not_called_damage(book: Path) -> None:
    """A writer killed inside a transaction leaves a hot journal: SQLite rolls it back on the next open; the
    cache is used, not moved aside."""
    db = book / "_build" / ".jupyter_cache" / "global.db"
    killed = subprocess.run([sys.executable, "-c", (
        "import os, sqlite3\n"
        f"c = sqlite3.connect({str(db)!r}, isolation_level=None)\n"
        "c.execute('PRAGMA journal_mode=DELETE'); c.execute('BEGIN IMMEDIATE')\n"
        "c.execute('DELETE FROM nbcache')\n"
        "os._exit(0)\n")])
    assert killed.returncode == 0 and db.with_name("global.db-journal").is_file()
    run = build(book)
    assert run.proc.returncode == 0, run.output[-4000:]
    assert "damaged" not in run.stderr and not list((book / "_build").glob("*.damaged-*"))
    assert log(book)["executed"] == [] and glue(book) == CLEAN


def test_a_chapter_executed_anew_by_another_build_is_read_again(book: Path) -> None:
    """The two editions share one execution cache, each with its own Sphinx environment: when one of them executes
    a chapter anew (or restores another execution), the other must read the chapter again, not keep the outputs
    it read before. Simulated here by replacing steady's cache entry with one whose glued value differs."""
    import nbformat
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    settled = build(book)                       # the copy's own environment (a copy moved is read anew)
    assert settled.proc.returncode == 0 and glue(book) == CLEAN, settled.output[-4000:]
    cache = get_cache(str(book / "_build" / ".jupyter_cache"))
    (record,) = [r for r in cache.list_cache_records() if Path(r.uri).name == "steady.md"]
    notebook = cache.get_cache_bundle(record.pk).nb
    changed = 0
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if output.get("metadata", {}).get("scrapbook", {}).get("name") == "mean_steady":
                output["data"] = {key: "0.5" for key in output["data"]}
                changed += 1
    assert changed == 1
    cache.remove_cache(record.pk)
    cache.cache_notebook_bundle(CacheBundleIn(nbformat.from_dict(notebook), record.uri, data=record.data),
                                check_validity=False, overwrite=True)
    run = build(book)
    assert run.proc.returncode == 0, run.output[-4000:]
    assert log(book)["executed"] == [] and glue(book)["steady"]["mean_steady"] == 0.5, glue(book)
    assert "0.5000" in (book / "_build" / "html" / "steady.html").read_text()


def test_a_page_added_to_the_table_of_contents_appears_in_every_pages_navigation(book: Path) -> None:
    """Sphinx rewrites only the pages it reads; each page's sidebar holds the whole table of contents, so a page
    added to _toc.yml must reach the sidebars of the pages that did not change (jupyter-book issue 1801)."""
    settled = build(book)                       # the copy's own environment (a copy moved is read anew)
    assert settled.proc.returncode == 0, settled.output[-4000:]
    (book / "extra.md").write_text("# Chapter extra\n\nA page without code.\n")
    toc = book / "_toc.yml"
    toc.write_text(toc.read_text() + "  - file: extra\n")
    run = build(book)
    assert run.proc.returncode == 0, run.output[-4000:]
    assert log(book)["executed"] == []
    for page in ("calm", "steady", "intro"):
        assert 'href="extra.html"' in (book / "_build" / "html" / f"{page}.html").read_text(), page


def test_a_copy_of_the_last_good_site_cut_short_is_never_restored(book: Path) -> None:
    partial = book / "_build" / ".last-good.tmp" / "0"
    partial.mkdir(parents=True)
    (partial / "steady.html").write_text("half a copy")
    run = build(book)
    assert run.proc.returncode == 0, run.output[-4000:]
    assert "restoring" not in run.stderr and not (book / "_build" / ".last-good.tmp").exists()
    assert "half a copy" not in (book / "_build" / "html" / "steady.html").read_text()


def test_a_cache_that_is_a_file_is_moved_aside(book: Path) -> None:
    cache = book / "_build" / ".jupyter_cache"
    shutil.rmtree(cache)
    cache.write_text("not a folder")
    run = build(book)
    assert run.proc.returncode == 0, run.output[-4000:]
    assert ".jupyter_cache is damaged (not a folder)" in run.stderr and glue(book) == CLEAN


def test_a_truncated_model_store_entry_is_moved_aside_named_and_retrained(book: Path) -> None:
    (entry,) = (book / "_build" / ".labcode-models").glob("fault_fixture-*.pt")
    entry.write_bytes(entry.read_bytes()[:30])
    edit(book / "calm.md", "data = torch.arange", "# edited\ndata = torch.arange")   # calm executes again
    run = build(book)
    assert run.proc.returncode == 0, run.output[-4000:]
    assert f"model store: unreadable entry {entry}" in run.stderr
    assert len(list(entry.parent.glob(entry.name + ".damaged-*"))) == 1 and entry.is_file()
    assert glue(book) == CLEAN


def test_a_model_store_that_is_a_file_is_moved_aside(book: Path) -> None:
    store = book / "_build" / ".labcode-models"
    shutil.rmtree(store)
    store.write_text("not a folder")
    edit(book / "calm.md", "data = torch.arange", "# edited\ndata = torch.arange")
    run = build(book)
    assert run.proc.returncode == 0, run.output[-4000:]
    assert ".labcode-models is damaged (not a writable folder)" in run.stderr and glue(book) == CLEAN


def test_two_builds_in_one_checkout_take_turns(book: Path) -> None:
    """The second build waits for the first (naming it), then finds everything cached; no crash, no damage."""
    edit(book / "steady.md", "import time\n", "import time  # edited\n")
    first = Build(book, pause=6)
    first.wait_for_worker()
    second = Build(book)
    assert first.wait() == 0, first.output[-4000:]
    assert second.wait() == 0, second.output[-4000:]
    assert f"build pid {first.proc.pid}" in second.stderr and "waiting for it to finish" in second.stderr
    assert "executing 0" not in second.stdout and mystnb_executions(second) == 0
    assert "every notebook is served by the cache" in second.stdout
    assert not list((book / "_build").glob("*.damaged-*")) and glue(book) == CLEAN
    for run in (first, second):
        assert_no_leftovers(run.marker)


def test_a_second_build_that_will_not_wait_exits_with_a_clear_message(book: Path) -> None:
    edit(book / "steady.md", "import time\n", "import time  # edited\n")
    first = Build(book, pause=6)
    first.wait_for_worker()
    second = Build(book, extra_env={"LABCODE_BUILD_LOCK_TIMEOUT": "0"})
    assert second.wait() != 0
    assert first.wait() == 0
    assert re.search(rf"build pid {first.proc.pid} .* is building in this checkout \(lock .*\.labcode-build\.lock\); "
                     "not starting a second build", second.stderr)
    assert "Traceback" not in second.output


def test_a_failing_chapter_executes_once_names_its_cell_and_the_fix_executes_only_it(book: Path) -> None:
    """Reported first, as the .md file and line of the statement that raised, with the exception and the cell's
    source; the chapter executed once (in its worker, not again by myst-nb); the other chapter stays cached."""
    edit(book / "steady.md", 'display=False)\n', 'display=False)\nraise ValueError("a planted fault")\n')
    edit(book / "calm.md", "data = torch.arange", "# edited\ndata = torch.arange")
    run = build(book)
    assert run.proc.returncode != 0
    assert mystnb_executions(run) == 0 and log(book)["executed"] == ["calm"]      # steady ran once, in its worker
    line = (book / "steady.md").read_text().splitlines().index('raise ValueError("a planted fault")') + 1
    report = f"FAILED book/steady.md:{line}: code cell 2: raised ValueError: a planted fault"
    assert report in run.stderr and f"> {line} | raise ValueError(\"a planted fault\")" in run.stderr
    assert run.stderr.index(report) < run.stderr.index("WARNING")                 # before Sphinx's output
    assert f"book/steady.md:{line}: WARNING: code cell 2: raised ValueError: a planted fault" in run.stderr
    assert "a planted fault" in (book / "_build" / "html.failed" / "reports" / "steady.err.log").read_text()
    edit(book / "steady.md", 'raise ValueError("a planted fault")\n', 'fault = "fixed"\n')
    fixed = build(book)
    assert fixed.proc.returncode == 0, fixed.output[-4000:]
    assert log(book)["executed"] == ["steady"] and mystnb_executions(fixed) == 0 and glue(book) == CLEAN


def test_every_failing_chapter_is_listed_and_the_last_good_site_stays(book: Path) -> None:
    """Two broken chapters: both named (a hidden cell marked as hidden); the site keeps the last good pages,
    never blanks where glued numbers were; the failed pages wait in html.failed until a build succeeds."""
    site = book / "_build" / "html"
    good = (site / "steady.html").read_text()
    assert "The mean of the draws is" in good and "0.0143" in good
    edit(book / "steady.md", "The mean of the draws", "The new mean of the draws")
    edit(book / "steady.md", 'display=False)\n', 'display=False)\nraise ValueError("a planted fault")\n')
    edit(book / "calm.md", "```{code-cell} ipython3\nimport torch", "```{code-cell} ipython3\n:tags: [remove-cell]\n\n"
         "assert 1 == 2, 'a hidden check'\n```\n\n```{code-cell} ipython3\nimport torch")
    run = build(book)
    assert run.proc.returncode != 0
    summary = run.stderr[run.stderr.index("2 chapter(s) failed:"):]
    assert re.search(r"book/calm\.md:\d+: code cell 1, hidden: remove-cell: raised AssertionError: a hidden check",
                     summary)
    assert re.search(r"book/steady\.md:\d+: code cell 2: raised ValueError: a planted fault", summary)
    assert (site / "steady.html").read_text() == good                       # the last good page, untouched
    assert "The new mean" in (book / "_build" / "html.failed" / "steady.html").read_text()
    assert "still holds the last good build" in run.stderr
    edit(book / "steady.md", 'raise ValueError("a planted fault")\n', "")
    edit(book / "calm.md", "assert 1 == 2, 'a hidden check'", "assert 1 == 1, 'a hidden check'")
    fixed = build(book)
    assert fixed.proc.returncode == 0, fixed.output[-4000:]
    assert "The new mean" in (site / "steady.html").read_text() and "0.0143" in (site / "steady.html").read_text()
    assert not (book / "_build" / "html.failed").exists() and glue(book) == CLEAN


def test_a_chapter_failing_because_of_labcode_is_read_again_after_the_fix(book: Path) -> None:
    """The chapter's source does not change, only an environment it depends on: it must not stay failed."""
    edit(book / "steady.md", "import time\n", "import time  # edited\n")
    run = build(book, extra_env={"FAULT_FIXTURE_PAUSE": "not a number"})
    assert run.proc.returncode != 0 and "raised ValueError: could not convert string to float" in run.stderr
    fixed = build(book)
    assert fixed.proc.returncode == 0 and log(book)["executed"] == ["steady"] and glue(book) == CLEAN


def test_a_runaway_chapter_is_stopped_at_its_time_limit_with_its_kernel_and_children(book: Path) -> None:
    edit(book / "steady.md", "kernelspec:", "labcode:\n  timeout: 4\nkernelspec:")
    edit(book / "steady.md", "import time\n", "import subprocess\nimport time\n\nchild = subprocess.Popen(['sleep', '600'])\n")
    start = time.monotonic()
    run = build(book, pause=600)
    assert run.proc.returncode != 0 and time.monotonic() - start < 60
    assert re.search(r"FAILED book/steady\.md:\d+: code cell 1: stopped: the chapter ran longer than its time limit of "
                     r"4 s \(set by labcode\.timeout in its front matter\)", run.stderr)
    assert log(book)["executed"] == []     # build() already checked: no kernel, no `sleep 600` left


def test_the_default_time_limit_follows_the_last_measured_time() -> None:
    sys.path.insert(0, str(ROOT / "_ext"))
    try:
        from labcode_build.execution import time_limit
        from labcode_build.fingerprints import chapter_timeout
    finally:
        sys.path.remove(str(ROOT / "_ext"))

    class App:
        class config:
            labcode_timeout_factor, labcode_timeout_floor = 5.0, 120.0

    assert time_limit(App, "a", {}, {}) == (None, "")                 # never measured: per-cell timeout only
    assert time_limit(App, "a", {}, {"a": 10.0})[0] == 120.0           # the floor
    limit, why = time_limit(App, "a", {}, {"a": 60.0})
    assert limit == 300.0 and "5 × its last time 60.0 s" in why
    assert time_limit(App, "a", {"labcode": {"timeout": 7}}, {"a": 60.0})[0] == 7.0
    for bad in (0, -3, "soon", True):
        with pytest.raises(ValueError, match=r"book/x: front matter labcode\.timeout must be a positive number"):
            chapter_timeout({"labcode": {"timeout": bad}}, "book/x")


def test_every_json_record_of_the_build_is_read_by_one_reader_that_moves_damage_aside(tmp_path: Path) -> None:
    """The chapters' imports (``load_deps``), the time records and the failed-chapter record share one reader: a
    record that is missing is empty, and one that is cut short or not an object is moved aside, never trusted."""
    sys.path.insert(0, str(ROOT / "_ext"))
    try:
        from labcode_build import paths
        from labcode_build.safety import load_record
    finally:
        sys.path.remove(str(ROOT / "_ext"))
    record = tmp_path / "record.json"
    assert load_record(record) == {}
    record.write_text('{"a": {"modules": []}}')
    assert load_record(record) == {"a": {"modules": []}}
    for damaged in ('{"a": ', "[1, 2]"):
        record.write_text(damaged)
        assert load_record(record) == {} and not record.exists()
        (aside,) = tmp_path.glob("record.json.damaged-*")
        assert aside.read_text() == damaged
        aside.unlink()
    app = type("App", (), {"env": type("Env", (), {"mystnb_config": type("Config", (), {
        "execution_cache_path": str(tmp_path)})})})
    paths.deps_path(app).write_text('{"a": ')                        # the chapters' imports, cut short
    assert paths.load_deps(app) == {} and not paths.deps_path(app).exists()
    assert list(tmp_path.glob(paths.deps_path(app).name + ".damaged-*"))


def build_script(book: Path, *args: str) -> subprocess.CompletedProcess:
    """``scripts/build_book.py`` (what ``scripts/build-book.sh`` runs) on the fixture book; no process survives."""
    marker = f"fault-{uuid.uuid4().hex}"
    env = {"PATH": str(JB.parent) + ":/usr/bin:/bin", "HOME": str(Path.home()), "LABCODE_DEVICE": "cpu",
           "PYTHONPATH": str(ROOT / "src"), "LABCODE_BUILD_WORKERS": "2", "FAULT_TEST_MARKER": marker}
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "build_book.py"), "--book", book.name, *args],
                         cwd=book.parent, env=env, capture_output=True, text=True, timeout=300)
    assert_no_leftovers(marker)
    return run


def test_the_log_is_one_line_per_chapter_unless_asked_for_more(book: Path) -> None:
    edit(book / "steady.md", "import time\n", "import time  # edited\n")
    edit(book / "calm.md", "data = torch.arange", "# edited\ndata = torch.arange")
    quiet = build_script(book)
    assert quiet.returncode == 0, quiet.stdout + quiet.stderr
    assert quiet.stdout == ""
    lines = quiet.stderr.splitlines()
    patterns = [r"labcode_build: executing 2 chapter\(s\) with 2 worker\(s\)",
                r"labcode_build: \[1/2, \d+ s\] (calm|steady): \d+\.\d s on CPU",
                r"labcode_build: \[2/2, \d+ s\] (calm|steady): \d+\.\d s on CPU",
                r"labcode_build: executed 2 chapter\(s\) in \d+\.\d s",
                r"the build succeeded in \d+ s \(the whole log: book/_build/build\.log\)"]
    assert len(lines) == len(patterns) and all(re.fullmatch(p, line) for p, line in zip(patterns, lines, strict=True)), lines
    assert f"jupyter-book build {book} -W -n --keep-going -q" in (book / "_build" / "build.log").read_text()
    edit(book / "steady.md", "import time  # edited\n", "import time  # edited again\n")
    verbose = build_script(book, "-v")
    assert verbose.returncode == 0 and "reading sources" in verbose.stdout and "NbParserConfig" in verbose.stdout


def test_an_error_in_the_build_is_one_line_not_a_traceback(book: Path) -> None:
    edit(book / "steady.md", "kernelspec:", "labcode:\n  device: tpu\nkernelspec:")
    run = build_script(book)
    output = run.stdout + run.stderr
    assert run.returncode != 0
    assert output.count("error: ValueError: steady: front matter labcode.device must be one of ('cpu', 'cuda'), "
                        "got 'tpu'") == 1
    for noise in ("Traceback", "Please also report", "The above exception", "RuntimeError", "====="):
        assert noise not in output
    assert "Traceback (most recent call last)" in (book / "_build" / "build.log").read_text()
    assert "the whole log, with every traceback: book/_build/build.log" in run.stderr
