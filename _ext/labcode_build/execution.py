"""Executing the chapters: stale entries dropped per chapter, stale notebooks executed in parallel, imports recorded.

Reaches into jupyter-cache and myst-nb beyond their documented API (checked against
jupyter-cache 1.0.1 and myst-nb 1.4.0, both pinned in requirements.txt):
``jupyter_cache.executors.utils.single_nb_execution`` (execute one notebook the way
jupyter-cache does), ``JupyterCacheBase.remove_cache`` / ``list_cache_records`` /
``cache_notebook_bundle`` with ``CacheBundleIn`` (the cache's own API, used as myst-nb uses it),
and ``myst_nb.core.read.create_nb_reader`` (read a MyST page into the notebook that myst-nb
will look up in the cache, so the keys agree).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.util import logging

from .fingerprints import (
    DEVICE_ENV,
    MODULES_CELL,
    MODULES_MARK,
    STAMP,
    chapter_device,
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

LOGGER = logging.getLogger(__name__)


def on_builder_inited(app: Sphinx) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"   # inherited by every kernel, serial or parallel
    os.environ["MKL_NUM_THREADS"] = "1"
    app.labcode_stale_docs = set()
    if app.env.mystnb_config.execution_mode != "cache":
        return
    cache = cache_path(app)
    models = cache.parent / MODEL_STORE
    os.environ[STORE_ENV] = str(models)
    current = fingerprint(root(app), app.config.labcode_fingerprint)
    stamp = cache / STAMP
    recorded = stamp.read_text().strip() if stamp.is_file() else None
    app.labcode_fingerprint = current
    app.labcode_stale = recorded != current
    if app.labcode_stale and cache.exists():
        LOGGER.info("requirements or device changed: clearing the execution cache")
        from jupyter_cache import get_cache
        get_cache(str(cache)).clear_cache()
        deps_path(app).unlink(missing_ok=True)
        shutil.rmtree(models, ignore_errors=True)
        return
    if cache.exists():
        _drop_stale_chapters(app)


def _drop_stale_chapters(app: Sphinx) -> None:
    """Remove the cache entry of every chapter whose labcode modules or device choice changed since it executed.

    A chapter without a record of its imports (executed by myst-nb itself) is removed too: it executes again.
    """
    from jupyter_cache import get_cache
    cache = get_cache(str(cache_path(app)))
    deps = load_deps(app)
    source = root(app) / app.config.labcode_source
    srcdir = Path(app.srcdir).resolve()
    for record in cache.list_cache_records():
        try:
            doc = str(Path(record.uri).resolve().relative_to(srcdir).with_suffix(""))
        except ValueError:      # a notebook outside this book: not ours to keep
            doc = None
        entry = deps.get(doc or "")
        path = Path(record.uri)
        device = kernel_device(chapter_device(front_matter(path), doc or record.uri)) if path.is_file() else ""
        if entry and modules_fingerprint(app.labcode_fingerprint, source, entry["modules"], device) == entry["fingerprint"]:
            continue
        cache.remove_cache(record.pk)
        if doc is not None:
            app.labcode_stale_docs.add(doc)
            LOGGER.info(f"labcode_build: {doc} imports changed labcode modules or chose another device: "
                        "it will execute again")


def on_env_get_outdated(app: Sphinx, env, added, changed, removed) -> list[str]:
    """Re-read every notebook page when the fingerprint changed; always refresh the report page."""
    outdated = []
    if getattr(app, "labcode_stale", False):
        outdated += notebook_docs(app, env.found_docs)
    outdated += sorted(getattr(app, "labcode_stale_docs", set()))
    outdated += [d for d in env.found_docs if "{execution-report}" in Path(env.doc2path(d)).read_text(encoding="utf-8")]
    return outdated


def _execute(path: str, nb_json: str, timeout: int, allow_errors: bool,
             device: str) -> tuple[str, float, str | None, list[str], str]:
    """Worker: execute one notebook in its own directory, its kernel started with ``LABCODE_DEVICE=device``
    (unset when empty).

    Returns (executed json, seconds, error, labcode modules imported, device name). A last cell that
    lists the imported ``labcode`` modules and the kernel's device is appended for the run and removed afterwards.
    """
    import nbformat
    from jupyter_cache.executors.utils import single_nb_execution
    if device:
        os.environ[DEVICE_ENV] = device
    else:
        os.environ.pop(DEVICE_ENV, None)
    for attempt in range(3):
        nb = nbformat.reads(nb_json, as_version=4)
        nb.cells.append(nbformat.v4.new_code_cell(MODULES_CELL))
        try:
            result = single_nb_execution(nb, cwd=str(Path(path).parent), timeout=timeout,
                                         allow_errors=allow_errors, meta_override=True)
            break
        except RuntimeError:   # "Kernel died before replying": kernels started at once can race for ports
            if attempt == 2:
                raise
            time.sleep(1.0 + attempt)
    error = None if result.err is None else f"{type(result.err).__name__}: {result.err}"
    record = {"modules": [], "device": "unknown"}
    last = nb.cells.pop()
    for output in last.get("outputs", []):
        text = output.get("text", "")
        if MODULES_MARK in text:
            record = json.loads(text.split(MODULES_MARK, 1)[1].strip().splitlines()[0])
    return nbformat.writes(nb), result.time, error, record["modules"], record["device"]


RUNTIMES = ".labcode-runtimes.json"   # beside the cache, so it survives a cleared cache


def _expected_seconds(doc: str, text: str, history: dict[str, float]) -> float:
    """A notebook's expected execution time: its last measured one, else a guess from what it trains."""
    if doc in history:
        return history[doc]
    training = len(re.findall(r"\b(?:fit_\w+|train_\w+|reference_\w+|analyze_beta_vae|beta_sweep)\(", text))
    return 3.0 + 6.0 * training + 0.01 * len(text.splitlines())


def on_env_before_read_docs(app: Sphinx, env, docnames: list[str]) -> None:
    """Execute, in parallel, every notebook about to be read that the cache cannot serve."""
    nb_config = env.mystnb_config
    if nb_config.execution_mode != "cache":
        return
    import nbformat
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn
    from myst_nb.core.read import create_nb_reader

    cache = get_cache(nb_config.execution_cache_path)
    todo = []
    for doc in notebook_docs(app, docnames):
        path = env.doc2path(doc)
        text = Path(path).read_text(encoding="utf-8")
        reader = create_nb_reader(str(path), env.myst_config, nb_config, text)
        notebook = reader.read(text)
        try:
            cache.match_cache_notebook(notebook)
        except KeyError:
            choice = chapter_device(notebook.metadata, doc)
            todo.append((doc, str(path), notebook, choice))
    log_path = Path(nb_config.execution_cache_path) / REPORT_LOG
    log_path.parent.mkdir(parents=True, exist_ok=True)
    if not todo:
        LOGGER.info("labcode_build: every notebook is served by the cache (0 executed)")
        log_path.write_text(json.dumps({"executed": [], "wall_seconds": 0.0, "workers": 0}))
        return
    history_path = Path(nb_config.execution_cache_path).parent / RUNTIMES
    history = json.loads(history_path.read_text()) if history_path.is_file() else {}
    # longest first: with one process per core, the longest chapter must not start last
    todo.sort(key=lambda item: -_expected_seconds(item[0], Path(item[1]).read_text(encoding="utf-8"), history))
    override = os.environ.get(DEVICE_ENV, "").strip()
    workers = max(1, min(len(todo), int(os.environ.get("LABCODE_BUILD_WORKERS", os.cpu_count() or 1))))
    LOGGER.info(f"labcode_build: executing {len(todo)} notebook(s) with {workers} worker(s)")
    start = time.perf_counter()
    log = {}
    deps = load_deps(app)
    source = root(app) / app.config.labcode_source
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = {doc: pool.submit(_execute, path, nbformat.writes(nb), nb_config.execution_timeout,
                                    nb_config.execution_allow_errors, kernel_device(choice))
                   for doc, path, nb, choice in todo}
        for doc, path, _, choice in todo:
            try:
                executed, seconds, error, modules, device = futures[doc].result()
            except Exception as err:   # e.g. a kernel that died on start: myst-nb retries it serially
                executed, seconds, error, modules, device = "", 0.0, f"{type(err).__name__}: {err}", [], ""
            if error is not None:
                LOGGER.info(f"labcode_build: {doc} failed ({error}); myst-nb will re-run it and report")
                continue
            if choice is not None and not override:
                device = f"{device} (chapter's choice)"
            cache.cache_notebook_bundle(
                CacheBundleIn(nbformat.reads(executed, as_version=4), path,
                              data={"execution_seconds": seconds, "device": device}),
                check_validity=False, overwrite=True)
            log[doc] = {"seconds": seconds, "device": device}
            deps[doc] = {"modules": modules,
                         "fingerprint": modules_fingerprint(getattr(app, "labcode_fingerprint", ""), source, modules,
                                                            kernel_device(choice))}
            LOGGER.info(f"labcode_build: executed {doc} in {seconds:.1f} s on {device}")
    wall = time.perf_counter() - start
    history.update({doc: entry["seconds"] for doc, entry in log.items()})
    deps_path(app).parent.mkdir(parents=True, exist_ok=True)
    deps_path(app).write_text(json.dumps(deps, indent=1, sort_keys=True))
    history_path.write_text(json.dumps(history, indent=1, sort_keys=True))
    LOGGER.info(f"labcode_build: executed {len(log)} notebook(s) in {wall:.1f} s wall time")
    log_path.write_text(json.dumps({"executed": sorted(log), "wall_seconds": wall, "workers": workers,
                                    "devices": {doc: entry["device"] for doc, entry in sorted(log.items())}}))


def on_doctree_read(app: Sphinx, doctree) -> None:
    """Put the executed outputs into ``jupyter_execute/<page>.ipynb`` (the page's ``.ipynb`` download).

    In cache mode myst-nb renders from the cached, executed notebook but writes the
    notebook as read, without outputs; this writes the cached outputs merged in.
    """
    nb_config = app.env.mystnb_config
    path = Path(nb_config.output_folder) / f"{app.env.docname}.ipynb"
    if nb_config.execution_mode != "cache" or not path.is_file():
        return
    import nbformat
    from jupyter_cache import get_cache
    notebook = nbformat.read(path, as_version=4)
    try:
        _, merged = get_cache(nb_config.execution_cache_path).merge_match_into_notebook(notebook)
    except KeyError:
        return
    nbformat.write(merged, path)
