"""Builds that survive each other and their own debris: one build per checkout, damaged state moved aside.

- :func:`acquire_build_lock`: a build holds an exclusive ``flock`` on ``_build/.labcode-build.lock``
  from the moment the extension loads (before Sphinx reads its saved environment) until its process
  ends. A second build in the same checkout says which build holds the lock (pid, start time,
  command) and waits for it (``LABCODE_BUILD_LOCK_TIMEOUT`` seconds, default one hour; ``0``: do not
  wait), or exits with that message. The operating system releases an ``flock`` when its process
  dies, so the lock of a killed build is simply taken over (and said so); there is no stale lock to
  delete by hand.
- :func:`check_execution_cache` / :func:`check_model_store`: state that cannot be read (a truncated
  ``global.db``, as a full disk or a kill during a write leaves it; a file where a folder should
  be; unreadable JSON beside the cache) is moved aside to ``<name>.damaged-<time>`` and kept for
  inspection, with a notice naming both paths, and the build goes on from a clean state.

- :func:`protect_outputs`: a build that does not succeed leaves the last good site in place (its own
  pages go to ``<site>.failed``), never pages with blanks where glued numbers were.

Notices go to stderr, not through Sphinx's warnings: a recovered fault is worth telling, but it must
not fail a ``-W`` build that then rebuilds correctly.
"""

from __future__ import annotations

import atexit
import fcntl
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

LOCK_NAME = ".labcode-build.lock"
LOCK_TIMEOUT_ENV = "LABCODE_BUILD_LOCK_TIMEOUT"
#: "pid:lock path" of a parent process holding the lock for the build it starts (scripts/build_book.py)
LOCK_HANDOFF_ENV = "LABCODE_BUILD_LOCK_HELD"
#: open lock files of this process, by path (a second Sphinx application in one process shares it)
_HELD: dict[str, object] = {}


def notice(message: str) -> None:
    """One line on stderr, prefixed with the extension's name."""
    print(f"labcode_build: {message}", file=sys.stderr, flush=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _holder(path: Path) -> dict:
    try:
        return json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}


def _describe(holder: dict) -> str:
    if not holder:
        return "another build"
    return (f"build pid {holder.get('pid')} (started {holder.get('started', '?')}: "
            f"{holder.get('command', '?')})")


def acquire_build_lock(build_dir: Path, *, timeout: float | None = None, poll: float = 0.5) -> Path:
    """Hold the checkout's build lock in ``build_dir`` for the rest of this process; wait for another holder.

    Raises:
        SystemExit: another build still holds the lock after ``timeout`` seconds (default:
            ``LABCODE_BUILD_LOCK_TIMEOUT``, else 3600), with a message naming it.
    """
    build_dir.mkdir(parents=True, exist_ok=True)
    path = build_dir / LOCK_NAME
    if str(path) in _HELD:
        return path
    holder, _, held = os.environ.get(LOCK_HANDOFF_ENV, "").partition(":")
    if holder.isdigit() and int(holder) == os.getppid() and held and Path(held).resolve() == path.resolve():
        return path                  # taken by scripts/build_book.py, this build's parent, for it
    if timeout is None:
        raw = os.environ.get(LOCK_TIMEOUT_ENV, "").strip()
        try:
            timeout = float(raw) if raw else 3600.0
        except ValueError:
            raise SystemExit(f"labcode_build: {LOCK_TIMEOUT_ENV} must be a number of seconds, got {raw!r}") from None
    handle = path.open("a+")
    deadline = time.monotonic() + timeout
    waited = False
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            holder = _holder(path)
            if time.monotonic() >= deadline:
                handle.close()
                raise SystemExit(f"labcode_build: {_describe(holder)} is building in this checkout "
                                 f"(lock {path}); not starting a second build. Wait for it or stop it.") from None
            if not waited:
                notice(f"{_describe(holder)} is building in this checkout; waiting for it to finish (lock {path})")
                waited = True
            time.sleep(poll)
    previous = _holder(path)
    if not waited and previous.get("pid") and previous.get("pid") != os.getpid() and not _alive(previous["pid"]):
        notice(f"taking over the build lock of {_describe(previous)}, which ended without finishing")
    elif waited:
        notice("the other build finished; building now")
    handle.seek(0)
    handle.truncate()
    handle.write(json.dumps({"pid": os.getpid(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                             "command": " ".join(Path(a).name if i == 0 else a for i, a in enumerate(sys.argv))}))
    handle.flush()
    _HELD[str(path)] = handle       # kept open: the lock lasts as long as this process
    atexit.register(_release, handle)
    return path


def _release(handle) -> None:
    """At a normal exit: forget the holder (a build killed before this leaves its record, and is named)."""
    try:
        handle.seek(0)
        handle.truncate()
        handle.flush()
    except (OSError, ValueError):
        pass


def move_aside(path: Path, why: str) -> Path:
    """Rename ``path`` to ``<path>.damaged-<time>`` (kept for inspection) and say so; return the new path."""
    target = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
    counter = 1
    while target.exists():
        counter += 1
        target = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}-{counter}")
    os.replace(path, target)
    notice(f"warning: {path} is damaged ({why}); moved it to {target} and starting from a clean one")
    return target


def load_record(path: Path) -> dict:
    """A JSON record of the build's, or ``{}`` when it is missing; a damaged one is moved aside (:func:`move_aside`)."""
    if not path.is_file():
        return {}
    try:
        value = json.loads(path.read_text())
        if isinstance(value, dict):
            return value
        problem = "not a JSON object"
    except (OSError, ValueError) as err:
        problem = str(err)
    move_aside(path, problem)
    return {}


def _database_problem(db: Path) -> str | None:
    """Why jupyter-cache's SQLite database cannot be used, or ``None`` when it can."""
    if not db.exists():
        return None
    if not db.is_file():
        return f"{db.name} is not a file"
    try:
        # read-write (this build holds the lock): a journal left by a writer killed mid-transaction is rolled
        # back, as SQLite does on any open; only what cannot be read is damage
        connection = sqlite3.connect(f"file:{db}?mode=rw", uri=True, timeout=30)
        try:
            rows = connection.execute("PRAGMA quick_check").fetchall()
            tables = {name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        finally:
            connection.close()
    except sqlite3.Error as err:
        return f"{db.name}: {err}"
    if rows != [("ok",)]:
        return f"{db.name}: integrity check failed ({'; '.join(str(r[0]) for r in rows[:3])})"
    if tables and "nbcache" not in tables:
        return f"{db.name} is not a jupyter-cache database"
    return None


def check_execution_cache(cache: Path, json_files: tuple[str, ...]) -> bool:
    """Move a damaged execution cache aside; ``True`` when it was.

    Damaged: the cache path is not a folder, or its ``global.db`` fails SQLite's integrity check or cannot be
    opened. One of ``json_files`` (the extension's records beside the database) that is not valid JSON is moved
    aside alone: the cache itself is fine.
    """
    if not cache.exists() and not cache.is_symlink():
        return False
    if not cache.is_dir():
        move_aside(cache, "not a folder")
        return True
    for name in json_files:
        record = cache / name
        if record.exists():
            try:
                json.loads(record.read_text())
            except (OSError, ValueError) as err:
                move_aside(record, str(err))
    problem = _database_problem(cache / "global.db")
    if problem is None:
        return False
    move_aside(cache, problem)
    return True


def check_model_store(store: Path) -> bool:
    """Move a model store that is not a usable folder aside; ``True`` when it was.

    Single unreadable entries are the store's own business (:mod:`labcode.store` moves each aside
    and records it in ``events.log``, which :func:`report_store_events` prints).
    """
    if not store.exists() and not store.is_symlink():
        return False
    if store.is_dir() and os.access(store, os.R_OK | os.W_OK | os.X_OK):
        return False
    move_aside(store, "not a writable folder")
    return True


def report_store_events(store: Path, since: int) -> int:
    """Print the model store's events logged after byte ``since`` of its ``events.log``; return the new end."""
    log = store / "events.log"
    if not log.is_file():
        return since
    with log.open("rb") as handle:
        handle.seek(since)
        text = handle.read().decode("utf-8", errors="replace")
        end = handle.tell()
    for line in text.splitlines():
        if line.strip():
            notice(f"warning: model store: {line.strip()}")
    return end


#: beside the outputs: a copy of the last good build's pages, doctrees and executed notebooks, taken when a
#: build starts and put back when it does not succeed
LAST_GOOD = ".last-good"
MANIFEST = "manifest.json"
_STAGING: dict[str, object] = {}


def _copy(source: Path, target: Path) -> None:
    try:
        subprocess.run(["cp", "-a", str(source), str(target)], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError):
        shutil.copytree(source, target, symlinks=True)


def protect_outputs(build_dir: Path, outputs: list[Path]) -> None:
    """Keep the last good build: copy ``outputs`` (the builder's folder, the doctrees, the executed notebooks)
    aside now, and put the copy back when this process ends without :func:`outputs_succeeded` (a failed build,
    an exception, Ctrl-C). A failed build's own site is kept in ``<site>.failed`` for inspection.

    The copy is made in ``.last-good.tmp`` and renamed to ``.last-good`` only when complete, with a manifest of
    the folders it holds (absolute paths: an HTML and a PDF build share the doctrees); so a copy cut short by a
    kill is never restored, and a complete copy left by a killed build (which had no chance to restore) is put
    back first, whichever builder runs next: the outputs it protected may be half written.
    """
    keep = build_dir / LAST_GOOD
    for leftover in (keep.with_name(LAST_GOOD + ".tmp"), keep.with_name(LAST_GOOD + ".trash")):
        shutil.rmtree(leftover, ignore_errors=True)
    if (keep / MANIFEST).is_file():
        notice(f"a previous build was interrupted: restoring its last good outputs from {keep}")
        _restore(keep, failed_site=None)
    _discard(keep)
    present = [path for path in outputs if path.is_dir() and any(path.iterdir())]
    if not present:
        return                          # nothing good to protect yet (a first build)
    partial = keep.with_name(LAST_GOOD + ".tmp")
    partial.mkdir(parents=True)
    manifest = {}
    for index, path in enumerate(present):
        _copy(path, partial / str(index))
        manifest[str(index)] = str(path.resolve())
    (partial / MANIFEST).write_text(json.dumps(manifest))
    os.replace(partial, keep)
    _STAGING.update(keep=keep, site=outputs[0], done=False,
                    site_kept=str(outputs[0].resolve()) in manifest.values())
    atexit.register(_restore_unless_done)


def _discard(keep: Path) -> None:
    """Remove a copy without ever leaving a partial one under its own name (renamed first, then deleted)."""
    if keep.exists():
        trash = keep.with_name(LAST_GOOD + ".trash")
        shutil.rmtree(trash, ignore_errors=True)
        os.replace(keep, trash)
        shutil.rmtree(trash, ignore_errors=True)


def outputs_succeeded(site: Path) -> None:
    """The build succeeded: its outputs stay; the copy of the previous ones and an older failed site go."""
    shutil.rmtree(site.with_name(site.name + ".failed"), ignore_errors=True)
    if _STAGING and not _STAGING["done"]:
        _STAGING["done"] = True
        _discard(_STAGING["keep"])


def _restore_unless_done() -> None:
    if _STAGING and not _STAGING["done"]:
        _STAGING["done"] = True
        site = _STAGING["site"]
        _restore(_STAGING["keep"], failed_site=site.with_name(site.name + ".failed"), site=site)
        if _STAGING["site_kept"]:
            notice(f"the build did not succeed: {site} still holds the last good build; "
                   f"the failed build's pages are in {site.name}.failed")
        else:   # there was no good site yet (a first build of this builder): the doctrees were put back
            notice(f"the build did not succeed: its pages in {site} are the failed build's")


def _restore(keep: Path, failed_site: Path | None, site: Path | None = None) -> None:
    """Put every folder of the copy's manifest back (each by a rename, so an interrupted restore resumes)."""
    manifest = json.loads((keep / MANIFEST).read_text())
    for name, original in manifest.items():
        saved, path = keep / name, Path(original)
        if not saved.is_dir():
            continue                     # already put back by a restore that was interrupted
        if path.exists():
            if failed_site is not None and site is not None and path == site.resolve():
                shutil.rmtree(failed_site, ignore_errors=True)
                os.replace(path, failed_site)
            else:
                shutil.rmtree(path, ignore_errors=True)
        os.replace(saved, path)
    _discard(keep)
