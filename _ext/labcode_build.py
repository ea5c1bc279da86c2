"""Sphinx extension: correct and parallel notebook execution for the book.

Jupyter Book's cache mode keys a notebook's outputs on its code cells and
kernelspec only, so an edit to ``labcode`` or to a pinned dependency would
leave stale figures in place. This extension, listed in ``_config.yml`` so
that a plain ``jupyter-book build .`` uses it:

1. fingerprints everything that determines a chapter's outputs besides its
   cells: the pins (``requirements.txt``, ``pyproject.toml``), the device
   (``LABCODE_DEVICE`` and whether a GPU is present), and the source of the
   ``labcode`` modules that the chapter imported (directly or not) when it last
   executed, recorded from ``sys.modules`` at the end of its execution. When a
   pin or the device changes, the execution cache is emptied and every chapter
   re-executes; when a module changes, exactly the chapters that imported it
   lose their cache entry and re-execute (a chapter with no record, e.g. one
   executed by myst-nb itself, counts as importing everything). Prose-only
   edits change neither the cells nor a fingerprint, and execute nothing;
2. before Sphinx reads the pages, executes every notebook that the cache
   cannot serve in parallel, one process per core, and stores the results in
   the cache, where myst-nb then finds them (a notebook that fails is left to
   myst-nb, which re-runs it and reports the error as usual);
3. pins the kernels to one BLAS/OpenMP thread, so serial and parallel builds
   give identical numbers, and points them at the build's model store
   (``LABCODE_MODEL_STORE=_build/.labcode-models``, see ``labcode.store``), so
   that a model several chapters use is trained once per build; the store is
   emptied with the execution cache;
4. writes the executed outputs into ``jupyter_execute/<page>.ipynb``, the
   notebook behind each page's download button (myst-nb writes it without
   outputs when the page is served from the cache);
5. provides the ``{execution-report}`` directive: a table of each chapter's
   execution time and the device it ran on.

Environment: ``LABCODE_BUILD_WORKERS`` sets the number of parallel
executions (default: the number of cores; 1 = serial).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

LOGGER = logging.getLogger(__name__)
STAMP = "labcode-fingerprint.txt"
#: what determines every chapter's outputs besides the cells (globs relative to the book's root); conf value
#: labcode_fingerprint. The labcode modules a chapter imports are added per chapter (DEPS).
FINGERPRINTED = ["requirements.txt", "pyproject.toml"]
#: where the library's source lives (relative to the book's root); conf value labcode_source
SOURCE = "src"
#: beside the cache: {doc: {"modules": [...], "fingerprint": ...}} of the last execution of each chapter
DEPS = "labcode-deps.json"
#: the trained-model store beside the cache (labcode.store reads the variable)
MODEL_STORE = ".labcode-models"
STORE_ENV = "LABCODE_MODEL_STORE"
#: printed by a cell appended to each executed notebook (and removed before caching)
MODULES_MARK = "LABCODE-MODULES:"
MODULES_CELL = (
    "import json as _labcode_json, sys as _labcode_sys\n"
    f"print({MODULES_MARK!r} + _labcode_json.dumps(sorted(n for n in _labcode_sys.modules "
    "if n == 'labcode' or n.startswith('labcode.'))))"
)
REPORT_LOG = "execution-log.json"
GLUE_JSON = "glued-values.json"


def device_signature() -> str:
    """What decides the device without importing torch: LABCODE_DEVICE and whether an NVIDIA GPU is present."""
    return f"LABCODE_DEVICE={os.environ.get('LABCODE_DEVICE', '')};gpu={Path('/dev/nvidia0').exists()}"


def fingerprint(root: Path, patterns: list[str]) -> str:
    """SHA-256 over the files matching ``patterns`` (relative paths and contents) and the device signature."""
    digest = hashlib.sha256(device_signature().encode())
    files = sorted({p for pattern in patterns for p in root.glob(pattern) if p.is_file()})
    for path in files:
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def module_file(source: Path, name: str) -> Path | None:
    """The source file of module ``name`` (``labcode.plots.data``) under ``source``, if it is there."""
    base = source.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def all_modules(source: Path) -> list[str]:
    """Every labcode module under ``source``: the dependency set of a chapter whose imports are unknown."""
    names = []
    for path in sorted((source / "labcode").rglob("*.py")):
        parts = path.relative_to(source).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def modules_fingerprint(base: str, source: Path, modules: list[str]) -> str:
    """SHA-256 of the global fingerprint ``base`` and the source of ``modules`` (a missing module counts too)."""
    digest = hashlib.sha256(base.encode())
    for name in sorted(set(modules)):
        path = module_file(source, name)
        digest.update(name.encode() + b"\0" + (path.read_bytes() if path is not None else b"<missing>") + b"\0")
    return digest.hexdigest()


def _root(app: Sphinx) -> Path:
    return Path(app.confdir).resolve()


def _cache_path(app: Sphinx) -> Path:
    return Path(app.env.mystnb_config.execution_cache_path)


def _is_notebook(path: Path) -> bool:
    text = path.read_text(encoding="utf-8")
    return path.suffix == ".md" and text.startswith("---") and "kernelspec:" in text.split("\n---", 2)[0]


def _notebook_docs(app: Sphinx, docnames) -> list[str]:
    return sorted(d for d in docnames if _is_notebook(Path(app.env.doc2path(d))))


def _deps_path(app: Sphinx) -> Path:
    return _cache_path(app) / DEPS


def _load_deps(app: Sphinx) -> dict[str, dict]:
    path = _deps_path(app)
    return json.loads(path.read_text()) if path.is_file() else {}


def on_builder_inited(app: Sphinx) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"   # inherited by every kernel, serial or parallel
    os.environ["MKL_NUM_THREADS"] = "1"
    app.labcode_stale_docs = set()
    if app.env.mystnb_config.execution_mode != "cache":
        return
    cache = _cache_path(app)
    models = cache.parent / MODEL_STORE
    os.environ[STORE_ENV] = str(models)
    current = fingerprint(_root(app), app.config.labcode_fingerprint)
    stamp = cache / STAMP
    recorded = stamp.read_text().strip() if stamp.is_file() else None
    app.labcode_fingerprint = current
    app.labcode_stale = recorded != current
    if app.labcode_stale and cache.exists():
        LOGGER.info("requirements or device changed: clearing the execution cache")
        from jupyter_cache import get_cache
        get_cache(str(cache)).clear_cache()
        _deps_path(app).unlink(missing_ok=True)
        shutil.rmtree(models, ignore_errors=True)
        return
    if cache.exists():
        _drop_stale_chapters(app)


def _drop_stale_chapters(app: Sphinx) -> None:
    """Remove the cache entry of every chapter whose labcode modules changed since it executed."""
    from jupyter_cache import get_cache
    cache = get_cache(str(_cache_path(app)))
    deps = _load_deps(app)
    source = _root(app) / app.config.labcode_source
    srcdir = Path(app.srcdir).resolve()
    everything = all_modules(source)
    for record in cache.list_cache_records():
        try:
            doc = str(Path(record.uri).resolve().relative_to(srcdir).with_suffix(""))
        except ValueError:      # a notebook outside this book: not ours to keep
            doc = None
        entry = deps.get(doc or "", {})
        modules = entry.get("modules", everything)
        if entry and modules_fingerprint(app.labcode_fingerprint, source, modules) == entry.get("fingerprint"):
            continue
        cache.remove_cache(record.pk)
        if doc is not None:
            app.labcode_stale_docs.add(doc)
            LOGGER.info(f"labcode_build: {doc} imports changed labcode modules: it will execute again")


def on_env_get_outdated(app: Sphinx, env, added, changed, removed) -> list[str]:
    """Re-read every notebook page when the fingerprint changed; always refresh the report page."""
    outdated = []
    if getattr(app, "labcode_stale", False):
        outdated += _notebook_docs(app, env.found_docs)
    outdated += sorted(getattr(app, "labcode_stale_docs", set()))
    outdated += [d for d in env.found_docs if "{execution-report}" in Path(env.doc2path(d)).read_text(encoding="utf-8")]
    return outdated


def _execute(path: str, nb_json: str, timeout: int, allow_errors: bool) -> tuple[str, float, str | None, list[str]]:
    """Worker: execute one notebook in its own directory.

    Returns (executed json, seconds, error, labcode modules imported). A last cell that
    lists the imported ``labcode`` modules is appended for the run and removed afterwards.
    """
    import nbformat
    from jupyter_cache.executors.utils import single_nb_execution
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
    modules = []
    last = nb.cells.pop()
    for output in last.get("outputs", []):
        text = output.get("text", "")
        if MODULES_MARK in text:
            modules = json.loads(text.split(MODULES_MARK, 1)[1].strip().splitlines()[0])
    return nbformat.writes(nb), result.time, error, modules


RUNTIMES = ".labcode-runtimes.json"   # beside the cache, so it survives a cleared cache


def _expected_seconds(doc: str, text: str, history: dict[str, float]) -> float:
    """A notebook's expected execution time: its last measured one, else a guess from what it trains."""
    if doc in history:
        return history[doc]
    training = len(re.findall(r"\b(?:fit_vae|analyze_beta_vae|train_vae)\(", text))
    return 3.0 + 6.0 * training + 0.01 * len(text.splitlines())


def _device_name() -> str:
    code = "import labcode as lc; print(lc.device_name(lc.get_device()))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else "unknown"


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
    for doc in _notebook_docs(app, docnames):
        path = env.doc2path(doc)
        text = Path(path).read_text(encoding="utf-8")
        reader = create_nb_reader(str(path), env.myst_config, nb_config, text)
        notebook = reader.read(text)
        try:
            cache.match_cache_notebook(notebook)
        except KeyError:
            todo.append((doc, str(path), notebook))
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
    workers = max(1, min(len(todo), int(os.environ.get("LABCODE_BUILD_WORKERS", os.cpu_count() or 1))))
    LOGGER.info(f"labcode_build: executing {len(todo)} notebook(s) with {workers} worker(s)")
    start = time.perf_counter()
    log = {}
    deps = _load_deps(app)
    source = _root(app) / app.config.labcode_source
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = {doc: pool.submit(_execute, path, nbformat.writes(nb), nb_config.execution_timeout,
                                    nb_config.execution_allow_errors) for doc, path, nb in todo}
        device = pool.submit(_device_name).result()   # a short job: it overlaps the notebooks when workers > 1
        for doc, path, _ in todo:
            try:
                executed, seconds, error, modules = futures[doc].result()
            except Exception as err:   # e.g. a kernel that died on start: myst-nb retries it serially
                executed, seconds, error, modules = "", 0.0, f"{type(err).__name__}: {err}", []
            if error is not None:
                LOGGER.info(f"labcode_build: {doc} failed ({error}); myst-nb will re-run it and report")
                continue
            cache.cache_notebook_bundle(
                CacheBundleIn(nbformat.reads(executed, as_version=4), path,
                              data={"execution_seconds": seconds, "device": device}),
                check_validity=False, overwrite=True)
            log[doc] = {"seconds": seconds, "device": device}
            deps[doc] = {"modules": modules,
                         "fingerprint": modules_fingerprint(getattr(app, "labcode_fingerprint", ""), source, modules)}
            LOGGER.info(f"labcode_build: executed {doc} in {seconds:.1f} s on {device}")
    wall = time.perf_counter() - start
    history.update({doc: entry["seconds"] for doc, entry in log.items()})
    _deps_path(app).parent.mkdir(parents=True, exist_ok=True)
    _deps_path(app).write_text(json.dumps(deps, indent=1, sort_keys=True))
    history_path.write_text(json.dumps(history, indent=1, sort_keys=True))
    LOGGER.info(f"labcode_build: executed {len(log)} notebook(s) in {wall:.1f} s wall time")
    log_path.write_text(json.dumps({"executed": sorted(log), "wall_seconds": wall, "workers": workers}))


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


def glued_values(executed_dir: Path) -> dict[str, dict[str, object]]:
    """``{page: {key: value}}`` from myst-nb's ``*.glue.json`` files: numbers as floats, text as str.

    Figures and other non-text glue are recorded by their MIME types only.
    """
    values: dict[str, dict[str, object]] = {}
    for path in sorted(executed_dir.rglob("*.glue.json")):
        page = str(path.relative_to(executed_dir)).removesuffix(".glue.json")
        entries = {}
        for key, output in json.loads(path.read_text()).items():
            data = output.get("data", {})
            text = data.get("text/plain")
            if any(m.startswith("image/") for m in data):
                entries[key] = {"mime": sorted(data)}
            elif text is not None:
                try:
                    entries[key] = float(text)
                except ValueError:
                    entries[key] = text.strip("'\"") if text[:1] in "'\"" else text
        values[page] = entries
    return values


def on_build_finished(app: Sphinx, exception: Exception | None) -> None:
    """Write the glued values of every page into the site; record the fingerprint of a successful build."""
    if exception is not None:
        return
    executed = Path(app.outdir).parent / "jupyter_execute"
    if executed.is_dir():
        (Path(app.outdir) / GLUE_JSON).write_text(json.dumps(glued_values(executed), indent=1, sort_keys=True))
    current = getattr(app, "labcode_fingerprint", None)
    if current is not None:
        cache = _cache_path(app)
        cache.mkdir(parents=True, exist_ok=True)
        (cache / STAMP).write_text(current)


class ExecutionReport(SphinxDirective):
    """``{execution-report}``: chapter, execution time and device of every notebook in the cache."""

    def run(self) -> list[nodes.Node]:
        from jupyter_cache import get_cache
        cache = get_cache(self.env.mystnb_config.execution_cache_path)
        records = {Path(r.uri).resolve(): r for r in cache.list_cache_records()}
        rows = []
        for doc in self.env.found_docs:
            path = Path(self.env.doc2path(doc)).resolve()
            if doc == self.env.docname or not _is_notebook(path):
                continue
            record = records.get(path)
            data = record.data if record is not None else {}
            seconds = data.get("execution_seconds")
            rows.append((doc, f"{seconds:.1f}" if seconds is not None else "—", data.get("device", "—")))
        self.env.note_dependency(str(Path(self.env.mystnb_config.execution_cache_path) / REPORT_LOG))
        return [_table(["chapter", "execution time (s)", "device"], sorted(rows), self.env.docname)]


def _table(header: list[str], rows: list[tuple[str, str, str]], here: str) -> nodes.table:
    table = nodes.table(classes=["execution-report"])
    group = nodes.tgroup(cols=len(header))
    table += group
    group += [nodes.colspec(colwidth=1) for _ in header]
    head, body = nodes.thead(), nodes.tbody()
    group += [head, body]
    head += nodes.row("", *[nodes.entry("", nodes.paragraph(text=h)) for h in header])
    from sphinx.addnodes import pending_xref
    for doc, seconds, device in rows:
        ref = pending_xref("", nodes.inline(text=doc), refdomain="std", reftype="doc",
                           reftarget="/" + doc, refexplicit=False, refdoc=here)
        body += nodes.row("", nodes.entry("", nodes.paragraph("", "", ref)),
                          nodes.entry("", nodes.paragraph(text=seconds)),
                          nodes.entry("", nodes.paragraph(text=device)))
    return table


def setup(app: Sphinx) -> dict:
    app.add_config_value("labcode_fingerprint", FINGERPRINTED, "env")
    app.add_config_value("labcode_source", SOURCE, "env")
    app.connect("builder-inited", on_builder_inited, priority=900)   # after myst-nb's config
    app.connect("env-get-outdated", on_env_get_outdated)
    app.connect("env-before-read-docs", on_env_before_read_docs, priority=900)
    app.connect("doctree-read", on_doctree_read)
    app.connect("build-finished", on_build_finished)
    app.add_directive("execution-report", ExecutionReport)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
