"""Executing the chapters: stale entries dropped per chapter, stale notebooks executed in parallel, imports recorded,
failures reported once, runaway chapters stopped.

Reaches into jupyter-cache and myst-nb beyond their documented API (checked against
jupyter-cache 1.0.1 and myst-nb 1.4.0, both pinned in requirements.txt):
``JupyterCacheBase.remove_cache`` / ``list_cache_records`` / ``cache_notebook_bundle`` with
``CacheBundleIn`` (the cache's own API, used as myst-nb uses it), ``myst_nb.core.read.create_nb_reader``
(read a MyST page into the notebook that myst-nb will look up in the cache, so the keys agree, with
its source map of cell lines), and ``myst_nb.core.execute.cache.NotebookClientCache.start_client``
(wrapped by :func:`patch_mystnb`: a chapter that failed in this build is rendered from the failed
execution instead of being executed a second time).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.errors import ExtensionError
from sphinx.util import logging

from . import archive, worker
from .fingerprints import (
    DEVICE_ENV,
    STAMP,
    chapter_device,
    chapter_timeout,
    device_signature,
    fingerprint,
    kernel_device,
    modules_fingerprint,
)
from .paths import (
    MODEL_STORE,
    REPORT_LOG,
    STORE_ENV,
    cache_path,
    deps_path,
    front_matter,
    load_deps,
    notebook_docs,
    root,
)
from .report import Ticker, failure_location, report_failure
from .safety import check_execution_cache, check_model_store, load_record, notice, report_store_events

LOGGER = logging.getLogger(__name__)


def on_builder_inited(app: Sphinx) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"   # inherited by every kernel, serial or parallel
    os.environ["MKL_NUM_THREADS"] = "1"
    app.labcode_stale_docs = set()
    app.labcode_store = None
    FAILED.clear()   # a second build in one process starts from no failures
    if app.env.mystnb_config.execution_mode != "cache":
        return
    cache = cache_path(app)
    models = cache.parent / MODEL_STORE
    check_execution_cache(cache, (deps_path(app).name, FAILED_RECORD, REPORT_LOG))
    check_model_store(models)
    os.environ[STORE_ENV] = str(models)
    app.labcode_store = models
    events = models / "events.log"
    app.labcode_store_events = events.stat().st_size if events.is_file() else 0
    current = fingerprint(root(app), app.config.labcode_fingerprint)
    stamp = cache / STAMP
    recorded = stamp.read_text().strip() if stamp.is_file() else None
    app.labcode_fingerprint = current
    app.labcode_stale = recorded != current
    if app.labcode_stale and cache.exists():
        LOGGER.info("requirements or device changed: clearing the execution cache")
        from jupyter_cache import get_cache
        jcache = get_cache(str(cache))
        for record in jcache.list_cache_records():
            _archive_record(app, jcache, record)
        jcache.clear_cache()
        deps_path(app).unlink(missing_ok=True)
        shutil.rmtree(models, ignore_errors=True)
        return
    if cache.exists():
        _drop_stale_chapters(app)


def patch_mystnb() -> None:
    """Make myst-nb render a chapter that failed in this build from that execution, not execute it again.

    Its error is reported as ``book/<chapter>.md:<line of the cell>: WARNING: <chapter> cell N: raised
    <exception>: <message>`` and myst-nb writes the traceback to ``reports/<chapter>.err.log`` as usual.
    """
    from myst_nb.core.execute.cache import NotebookClientCache
    if getattr(NotebookClientCache.start_client, "labcode", False):
        return
    original = NotebookClientCache.start_client

    def start_client(self) -> None:
        failure = FAILED.get(str(Path(self.path).resolve())) if self.path is not None else None
        if failure is None:
            return original(self)
        import nbformat
        self._notebook = nbformat.reads(failure["notebook"], as_version=4)
        LOGGER.warning(failure["message"], location=failure_location(failure), type="mystnb", subtype="exec")
        self.exec_metadata = {"mtime": time.time(), "runtime": None, "method": self.nb_config.execution_mode,
                              "succeeded": False, "error": failure["message"], "traceback": failure["traceback"]}

    start_client.labcode = True
    NotebookClientCache.start_client = start_client


def _drop_stale_chapters(app: Sphinx) -> None:
    """Remove every cache entry whose labcode modules or device choice changed since it executed.

    Each entry is judged by the imports and fingerprint recorded in its own data (a chapter may have had
    other executions, with other imports). An entry without them (executed by myst-nb itself, or by an
    older version of this extension) is removed too: it executes again.
    """
    from jupyter_cache import get_cache
    cache = get_cache(str(cache_path(app)))
    source = root(app) / app.config.labcode_source
    for record in cache.list_cache_records():
        doc = _record_doc(app, record)
        data = record.data or {}
        path = Path(record.uri)
        device = kernel_device(chapter_device(front_matter(path), doc or record.uri)) if path.is_file() else ""
        if "modules" in data and modules_fingerprint(app.labcode_fingerprint, source, data["modules"],
                                                     device) == data.get("fingerprint"):
            continue
        _archive_record(app, cache, record)
        cache.remove_cache(record.pk)
        if doc is not None:
            app.labcode_stale_docs.add(doc)
            LOGGER.info(f"labcode_build: {doc} imports changed labcode modules or chose another device: "
                        "its execution is set aside (archived) and it executes again unless one matches")


def _record_doc(app: Sphinx, record) -> str | None:
    """The page a cache record belongs to (``book/kl``), or ``None`` for a notebook outside this book."""
    try:
        return str(Path(record.uri).resolve().relative_to(Path(app.srcdir).resolve()).with_suffix(""))
    except ValueError:
        return None


def archive_path(app: Sphinx) -> Path:
    return cache_path(app).parent / archive.ARCHIVE


def _archive_record(app: Sphinx, cache, record) -> None:
    """Keep a cache record that is about to go, with the imports and fingerprint it was executed with (its data)."""
    data = dict(record.data or {})
    if "modules" not in data or "fingerprint" not in data:
        return
    try:
        bundle = cache.get_cache_bundle(record.pk)
    except Exception:      # a record whose notebook is gone or unreadable is not worth keeping
        return
    import nbformat
    archive.keep(archive_path(app), record.hashkey, {"modules": data["modules"], "fingerprint": data["fingerprint"],
                                                     "data": data}, nbformat.writes(bundle.nb))


def _cache_execution(app: Sphinx, cache, path: str, notebook, data: dict):
    """Store one execution of the chapter at ``path`` (``data`` holds its imports and fingerprint) as the chapter's
    only cache entry: its other entries (other cells, other imports) go to the archive first."""
    from jupyter_cache.base import CacheBundleIn
    target = Path(path).resolve()
    for record in cache.list_cache_records():
        if Path(record.uri).resolve() == target:
            _archive_record(app, cache, record)
            cache.remove_cache(record.pk)
    return cache.cache_notebook_bundle(CacheBundleIn(notebook, path, data=data), check_validity=False, overwrite=True)


def on_env_get_outdated(app: Sphinx, env, added, changed, removed) -> list[str]:
    """Re-read every notebook page when the fingerprint changed, chapters that failed last time, and chapters whose
    cache entry is not the one this environment read (the other edition executed or restored them); always refresh
    the report page."""
    outdated = []
    if getattr(app, "labcode_stale", False):
        outdated += notebook_docs(app, env.found_docs)
    outdated += sorted(getattr(app, "labcode_stale_docs", set()))
    if env.mystnb_config.execution_mode == "cache":   # failed last time: read (and execute) again
        failed = load_record(Path(env.mystnb_config.execution_cache_path) / FAILED_RECORD)
        outdated += sorted(doc for doc in failed if doc in env.found_docs)
        # executed anew (or restored) since this environment read it, by a build of the other edition, which shares
        # the cache but not the environment: read it again, or its page would show the outputs read before
        read, current = getattr(env, READ_RECORDS, {}), record_identities(app)
        outdated += [doc for doc in notebook_docs(app, env.found_docs)
                     if read.get(doc, "never read") != current.get(str(Path(env.doc2path(doc)).resolve()))]
    outdated += [d for d in env.found_docs if "{execution-report}" in Path(env.doc2path(d)).read_text(encoding="utf-8")]
    # every HTML page carries the table of contents in its sidebar, but Sphinx rewrites only the pages it reads: after
    # a change of _toc.yml the others would keep the old navigation (jupyter-book issue 1801), so read them all again
    # (from the cache: nothing executes)
    site_map = getattr(app.config, "external_site_map", None)
    if site_map is not None and app.builder.format == "html":
        digest = hashlib.sha256(json.dumps(site_map.as_json(), sort_keys=True, default=str).encode()).hexdigest()
        if getattr(env, TOC_DIGEST, None) != digest:
            outdated += sorted(env.found_docs)
            setattr(env, TOC_DIGEST, digest)
    return outdated


#: on the Sphinx environment: the digest of the table of contents its HTML pages were written with
TOC_DIGEST = "labcode_html_toc_digest"
#: on the Sphinx environment: {doc: identity of the cache entry its outputs were read from (None: none)}
READ_RECORDS = "labcode_read_records"


def record_identities(app: Sphinx) -> dict[str, str]:
    """{notebook path: identity of its execution in the cache}; an entry replaced (executed anew, restored from
    the archive) has a new identity even when the cells and the primary key are the same."""
    from jupyter_cache import get_cache
    cache = get_cache(str(cache_path(app)))
    return {str(Path(r.uri).resolve()): f"{r.pk}:{r.created.isoformat()}" for r in cache.list_cache_records()}


def on_env_purge_doc(app: Sphinx, env, docname: str) -> None:
    getattr(env, READ_RECORDS, {}).pop(docname, None)


RUNTIMES = ".labcode-runtimes.json"   # beside the cache, so it survives a cleared cache: {doc: seconds}, this device
RUNTIMES_BY_DEVICE = ".labcode-runtimes-by-device.json"   # {device signature: {doc: seconds}}: the time limits' base
#: beside the cache: the chapters whose last execution failed or was stopped ({doc: message}); they are
#: read again by the next build even when their source did not change (the fix may be in labcode)
FAILED_RECORD = "labcode-failed.json"
#: failures of this build, by the notebook's resolved path: what myst-nb renders instead of executing again
FAILED: dict[str, dict] = {}
#: a chapter's default time limit: FACTOR × its last measured time, at least FLOOR seconds (conf values
#: labcode_timeout_factor, labcode_timeout_floor); its front matter ``labcode: {timeout: S}`` overrides
TIMEOUT_FACTOR, TIMEOUT_FLOOR = 5.0, 120.0


def _expected_seconds(doc: str, text: str, history: dict[str, float]) -> float:
    """A notebook's expected execution time: its last measured one, else a guess from what it trains."""
    if doc in history:
        return history[doc]
    training = len(re.findall(r"\b(?:fit_\w+|train_\w+|reference_\w+|analyze_beta_vae|beta_sweep)\(", text))
    return 3.0 + 6.0 * training + 0.01 * len(text.splitlines())


def time_limit(app: Sphinx, doc: str, metadata: dict, history: dict[str, float]) -> tuple[float | None, str]:
    """A chapter's wall-clock limit in seconds (``None``: only nbclient's per-cell timeout) and where it comes from."""
    chosen = chapter_timeout(metadata, doc)
    if chosen is not None:
        return chosen, "set by labcode.timeout in its front matter"
    if doc not in history:
        return None, ""
    factor, floor = app.config.labcode_timeout_factor, app.config.labcode_timeout_floor
    limit = max(floor, factor * history[doc])
    return limit, (f"{factor:g} × its last time {history[doc]:.1f} s, at least {floor:g} s; "
                   "labcode.timeout in its front matter overrides it")


class _Running:
    """A chapter executing in its worker process."""

    def __init__(self, doc: str, path: str, notebook, choice: str | None, limit: float | None, why: str,
                 jobdir: Path, proc: subprocess.Popen) -> None:
        self.doc, self.path, self.notebook, self.choice = doc, path, notebook, choice
        self.limit, self.why, self.jobdir, self.proc = limit, why, jobdir, proc
        self.started = time.monotonic()

    def progress(self) -> dict:
        try:
            return json.loads((self.jobdir / worker.PROGRESS).read_text())
        except (OSError, ValueError):
            return {}

    def stop(self) -> dict:
        """Stop the worker, its kernel and their children; return the last progress report.

        SIGTERM first: the worker kills its kernel's group itself (it knows the kernel from the moment it is
        launched); then SIGKILL for both groups, whatever is left.
        """
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=3)
        except (ProcessLookupError, PermissionError, subprocess.TimeoutExpired):
            pass
        progress = self.progress()
        worker.kill_group(progress.get("kernel_pid"))
        worker.kill_group(self.proc.pid)
        self.proc.wait()
        return progress


def _start(doc: str, path: str, notebook, choice: str | None, limit: float | None, why: str,
           nb_config) -> _Running:
    """Start a worker process (a new session) executing ``notebook`` with ``LABCODE_DEVICE`` for ``choice``."""
    import nbformat
    jobdir = Path(tempfile.mkdtemp(prefix="lcb-"))   # short: it holds the kernel's Unix sockets
    worker.write_json(jobdir / worker.JOB, {
        "notebook": nbformat.writes(notebook), "cwd": str(Path(path).parent), "timeout": nb_config.execution_timeout,
        "allow_errors": nb_config.execution_allow_errors, "parent": os.getpid(),
        "device": kernel_device(choice), "device_env": DEVICE_ENV})
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(Path(__file__).resolve().parents[1]),
                                                    env.get("PYTHONPATH", "")] if p)
    proc = subprocess.Popen([sys.executable, "-m", "labcode_build.worker", str(jobdir)], env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=(jobdir / "stderr").open("w"),
                            start_new_session=True)
    return _Running(doc, path, notebook, choice, limit, why, jobdir, proc)


def _cell_line(notebook, cell: int | None) -> int | None:
    """The line of ``book/<doc>.md`` where code cell ``cell`` starts (myst-nb's source map)."""
    source_map = notebook.metadata.get("source_map") or []
    return source_map[cell] if cell is not None and 0 <= cell < len(source_map) else None


def _source_start(path: str, fence: int | None, first: str) -> int | None:
    """The line of the ``.md`` file holding a cell's first source line (after its fence and options)."""
    if fence is None:
        return None
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return next((i + 1 for i in range(fence, min(len(lines), fence + 40)) if lines[i] == first), None)


def _failure(running: _Running, message: str, cell: int | None, notebook_json: str | None,
             traceback: str, cell_line: int | None = None) -> dict:
    """What the build reports, and myst-nb renders, for a chapter that failed: the ``.md`` line of the statement
    that raised (else of the cell), ``code cell N[, hidden: tag]: message``, the cell's source."""
    import nbformat
    line = _cell_line(running.notebook, cell)
    source, hidden, start = "", "", None
    if cell is None or cell >= len(running.notebook.cells):
        where = "before its first cell"
    else:
        ordinal = sum(c.cell_type == "code" for c in running.notebook.cells[: cell + 1])
        source = running.notebook.cells[cell].source
        tags = running.notebook.cells[cell].metadata.get("tags", [])
        hidden = next((t for t in tags if t in ("remove-cell", "remove-input", "hide-cell", "hide-input")), "")
        where = f"code cell {ordinal}" + (f", hidden: {hidden}" if hidden else "")
        start = _source_start(running.path, line, source.splitlines()[0]) if source.strip() else None
        if start is not None and cell_line is not None:
            line = start + cell_line - 1
    return {"doc": running.doc, "path": running.path, "line": line, "message": f"{where}: {message}",
            "source": source, "source_start": start, "cell_line": cell_line,
            "notebook": notebook_json or nbformat.writes(running.notebook), "traceback": traceback}


def _finish(running: _Running) -> tuple[dict | None, dict | None]:
    """(result, failure) of a worker that has ended."""
    result_path = running.jobdir / worker.RESULT
    if running.proc.returncode != 0 or not result_path.is_file():
        stderr = (running.jobdir / "stderr").read_text(errors="replace").strip()
        last = stderr.splitlines()[-1] if stderr else f"exit status {running.proc.returncode}"
        progress = running.progress()
        return None, _failure(running, f"the execution ended abnormally ({last})", progress.get("cell"), None,
                              stderr or last)
    result = json.loads(result_path.read_text())
    error = result["error"]
    if error is None:
        return result, None
    message = f"raised {error['ename']}: {error['evalue']}".strip()
    return None, _failure(running, message, error["cell"], result["notebook"], error["traceback"] or message,
                          error.get("cell_line"))


def _write_json(path: Path, value: dict) -> None:
    """A record of the build, written atomically and readably."""
    worker.write_json(path, value, indent=1)


def _save_deps(app: Sphinx, deps: dict) -> None:
    _write_json(deps_path(app), deps)


def _restore_from_archive(app: Sphinx, cache, doc: str, path: str, notebook, choice: str | None,
                          deps: dict) -> dict | None:
    """Put back an archived execution of these cells that is valid for the library as it is now; return it."""
    import nbformat
    source = root(app) / app.config.labcode_source
    current = getattr(app, "labcode_fingerprint", "")
    device = kernel_device(choice)
    _, hashkey = cache.create_hashed_notebook(notebook)
    entry = archive.find(archive_path(app), hashkey,
                         lambda modules, fp: modules_fingerprint(current, source, modules, device) == fp)
    if entry is None:
        return None
    data = {**entry["data"], "modules": entry["modules"], "fingerprint": entry["fingerprint"]}
    _cache_execution(app, cache, path, nbformat.reads(entry["notebook"], as_version=4), data)
    deps[doc] = {"modules": entry["modules"], "fingerprint": entry["fingerprint"]}
    return entry


def on_env_before_read_docs(app: Sphinx, env, docnames: list[str]) -> None:
    """Execute, in parallel, every notebook about to be read that the cache cannot serve.

    Each runs in a worker process of its own (:mod:`.worker`) under the chapter's time limit; a chapter
    that fails or is stopped is recorded in :data:`FAILED`, so that myst-nb renders its outputs up to
    the error and reports it, instead of executing it a second time.
    """
    nb_config = env.mystnb_config
    if nb_config.execution_mode != "cache":
        return
    import nbformat
    from jupyter_cache import get_cache
    from myst_nb.core.read import create_nb_reader

    cache = get_cache(nb_config.execution_cache_path)
    history_path = Path(nb_config.execution_cache_path).parent / RUNTIMES
    by_device_path = history_path.with_name(RUNTIMES_BY_DEVICE)
    by_device = load_record(by_device_path)
    history = by_device.setdefault(device_signature(), {})   # time limits from runs on this device only
    failed_path = Path(nb_config.execution_cache_path) / FAILED_RECORD
    failed_record = load_record(failed_path)
    deps = load_deps(app)
    todo, restored, restored_devices = [], [], {}
    for doc in notebook_docs(app, docnames):
        path = env.doc2path(doc)
        text = Path(path).read_text(encoding="utf-8")
        reader = create_nb_reader(str(path), env.myst_config, nb_config, text)
        notebook = reader.read(text)
        try:
            cache.match_cache_notebook(notebook)
            failed_record.pop(doc, None)
        except KeyError:
            choice = chapter_device(notebook.metadata, doc)
            entry = _restore_from_archive(app, cache, doc, str(path), notebook, choice, deps)
            if entry is not None:
                restored.append(doc)
                restored_devices[doc] = entry["data"].get("device", "")
                failed_record.pop(doc, None)
                continue
            limit, why = time_limit(app, doc, notebook.metadata, history)
            todo.append((doc, str(path), notebook, choice, limit, why))
    log_path = Path(nb_config.execution_cache_path) / REPORT_LOG
    log_path.parent.mkdir(parents=True, exist_ok=True)
    if restored:
        notice(f"{len(restored)} chapter(s) found executed for this state of labcode, not executed again: "
               + ", ".join(restored))
    if not todo:
        LOGGER.info("labcode_build: every notebook is served by the cache (0 executed)")
        log_path.write_text(json.dumps({"executed": [], "restored": restored, "wall_seconds": 0.0, "workers": 0,
                                        "failed": [], "devices": restored_devices}))
        _write_json(failed_path, failed_record)
        _save_deps(app, deps)
        return
    # longest first: with one process per core, the longest chapter must not start last
    todo.sort(key=lambda item: -_expected_seconds(item[0], Path(item[1]).read_text(encoding="utf-8"), history))
    override = os.environ.get(DEVICE_ENV, "").strip()
    raw = os.environ.get("LABCODE_BUILD_WORKERS", "").strip() or str(os.cpu_count() or 1)
    if not raw.isdigit() or int(raw) < 1:
        raise ExtensionError(f"LABCODE_BUILD_WORKERS must be a positive whole number, got {raw!r}")
    workers = max(1, min(len(todo), int(raw)))
    notice(f"executing {len(todo)} chapter(s) with {workers} worker(s)")
    ticker = Ticker(len(todo))
    start = time.perf_counter()
    log = {}
    source = root(app) / app.config.labcode_source
    queue, running, jobdirs = list(todo), {}, []

    def _save_progress() -> None:
        """After each chapter: what a build interrupted now must not lose (imports, times, failures)."""
        history.update({doc: entry["seconds"] for doc, entry in log.items()})
        _save_deps(app, deps)
        _write_json(by_device_path, by_device)
        _write_json(history_path, history)
        _write_json(failed_path, failed_record)
    try:
        while queue or running:
            while queue and len(running) < workers:
                doc, path, notebook, choice, limit, why = queue.pop(0)
                running[doc] = _start(doc, path, notebook, choice, limit, why, nb_config)
                jobdirs.append(running[doc].jobdir)
            time.sleep(0.1)
            ticker.tick(sorted(running))
            for doc, job in list(running.items()):
                if job.proc.poll() is None:
                    if job.limit is not None and time.monotonic() - job.started > job.limit:
                        progress = job.stop()
                        failure = _failure(job, f"stopped: the chapter ran longer than its time limit of "
                                                f"{job.limit:g} s ({job.why})", progress.get("cell"), None, "")
                        failure["traceback"] = failure["message"]
                        FAILED[str(Path(job.path).resolve())] = failure
                        failed_record[doc] = failure["message"]
                        ticker.line(report_failure(failure))
                        del running[doc]
                        _save_progress()
                    continue
                del running[doc]
                result, failure = _finish(job)
                if failure is not None:
                    FAILED[str(Path(job.path).resolve())] = failure
                    failed_record[doc] = failure["message"]
                    ticker.line(report_failure(failure))
                    _save_progress()
                    continue
                failed_record.pop(doc, None)
                device = result["device"]
                if job.choice is not None and not override:
                    device = f"{device} (chapter's choice)"
                log[doc] = {"seconds": result["seconds"], "device": device}
                deps[doc] = {"modules": result["modules"],
                             "fingerprint": modules_fingerprint(getattr(app, "labcode_fingerprint", ""), source,
                                                                result["modules"], kernel_device(job.choice))}
                data = {"execution_seconds": result["seconds"], "device": device, **deps[doc]}
                record = _cache_execution(app, cache, job.path, nbformat.reads(result["notebook"], as_version=4),
                                          data)
                archive.keep(archive_path(app), record.hashkey, {**deps[doc], "data": data}, result["notebook"])
                ticker.line(f"{doc}: {result['seconds']:.1f} s on {device}")
                _save_progress()
    finally:   # normal end, an error, or Ctrl-C: no worker or kernel outlives this loop
        ticker.clear()
        for job in running.values():
            job.stop()
        for jobdir in jobdirs:
            shutil.rmtree(jobdir, ignore_errors=True)
        if getattr(app, "labcode_store", None) is not None:
            app.labcode_store_events = report_store_events(app.labcode_store, app.labcode_store_events)
    wall = time.perf_counter() - start
    _save_progress()
    archive.evict(archive_path(app), app.config.labcode_results_limit_mb)
    failed_path.write_text(json.dumps(failed_record, indent=1, sort_keys=True))
    failed = len(todo) - len(log)
    notice(f"executed {len(log)} chapter(s) in {wall:.1f} s" + (f"; {failed} failed" if failed else ""))
    log_path.write_text(json.dumps({"executed": sorted(log), "restored": restored, "wall_seconds": wall,
                                    "workers": workers,
                                    "failed": sorted(d for d, _, _, _, _, _ in todo if d not in log),
                                    "devices": {**restored_devices,
                                                **{doc: entry["device"] for doc, entry in sorted(log.items())}}}))


def on_doctree_read(app: Sphinx, doctree) -> None:
    """Put the executed outputs into ``jupyter_execute/<page>.ipynb`` (the page's ``.ipynb`` download).

    In cache mode myst-nb renders from the cached, executed notebook but writes the
    notebook as read, without outputs; this writes the cached outputs merged in.
    """
    nb_config = app.env.mystnb_config
    if nb_config.execution_mode != "cache":
        return
    if not hasattr(app.env, READ_RECORDS):
        setattr(app.env, READ_RECORDS, {})
    source = str(Path(app.env.doc2path(app.env.docname)).resolve())
    getattr(app.env, READ_RECORDS)[app.env.docname] = record_identities(app).get(source)
    path = Path(nb_config.output_folder) / f"{app.env.docname}.ipynb"
    if not path.is_file():
        return
    import nbformat
    from jupyter_cache import get_cache
    notebook = nbformat.read(path, as_version=4)
    try:
        _, merged = get_cache(nb_config.execution_cache_path).merge_match_into_notebook(notebook)
    except KeyError:
        return
    nbformat.write(merged, path)


def on_build_finished_failures(app: Sphinx, exception: Exception | None) -> None:
    """At the end of the log: every chapter that failed in this build, one line each (the first report scrolled
    away behind Sphinx's output)."""
    failures = sorted(FAILED.values(), key=lambda f: f["doc"])
    if failures:
        notice(f"{len(failures)} chapter(s) failed:\n" + "\n".join(f"  {failure_location(f)}: {f['message']}"
                                                                    for f in failures))
