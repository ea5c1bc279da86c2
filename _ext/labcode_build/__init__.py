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
   cannot serve in parallel, one worker process per core (``worker``), and
   stores the results in the cache, where myst-nb then finds them. A chapter
   that fails executes once: myst-nb renders that execution and reports the
   error as ``book/<chapter>.md:<line>: <chapter> cell N: raised <exception>``;
   the chapters that succeeded stay cached, and the failed one is read again by
   the next build. Each chapter has a wall-clock limit (front matter
   ``labcode: {timeout: S}``, else ``labcode_timeout_factor`` times its last
   measured time, at least ``labcode_timeout_floor`` seconds); a chapter over
   it is stopped and reported by name. Kernels talk to their worker over IPC,
   and no worker or kernel outlives the build (normal end, failure, Ctrl-C, or
   the build's process killed);
3. pins the kernels to one BLAS/OpenMP thread, so serial and parallel builds
   give identical numbers, and points them at the build's model store
   (``LABCODE_MODEL_STORE=_build/.labcode-models``, see ``labcode.store``), so
   that a model several chapters use is trained once per build; the store is
   emptied with the execution cache;
4. writes the executed outputs into ``jupyter_execute/<page>.ipynb``, the
   notebook behind each page's download button (myst-nb writes it without
   outputs when the page is served from the cache);
5. provides the ``{execution-report}`` directive: a table of each chapter's
   execution time and the device it ran on;
6. lets a chapter choose its device in its front matter (``labcode: {device: cpu}``):
   a chapter whose work is too small for a GPU runs its kernel with
   ``LABCODE_DEVICE=cpu`` on a GPU machine (a build-wide ``LABCODE_DEVICE`` still
   wins); the choice is part of the chapter's key and the report shows it.

7. serialises builds in one checkout and recovers from damaged state
   (``safety``): a second build waits for the first (``_build/.labcode-build.lock``);
   an unreadable execution cache or model store is moved aside, named, and
   rebuilt; a build that does not succeed puts the last good site, doctrees
   and executed notebooks back (its own pages are kept in ``<site>.failed``).

8. builds the edition ``LABCODE_EDITION`` asks for (``edition``): the full
   edition, or the student edition without the lab's reference implementations,
   in its own folder and from the same execution cache.

Environment: ``LABCODE_BUILD_WORKERS`` sets the number of parallel
executions (default: the number of cores; 1 = serial);
``LABCODE_BUILD_LOCK_TIMEOUT`` how long a second build waits (seconds, default 3600).

Why not only the maintained machinery: jupyter-cache has a parallel executor
(``JupyterExecutorLocalMproc``), but it executes the notebooks of a cache *project* and keys
them on their cells alone; this extension needs, per chapter, the labcode modules it imported
and device (recorded by a cell appended for the run) and a per-chapter device choice, so it executes each stale
notebook itself with jupyter-cache's own single-notebook executor and stores the result in the
same cache, where myst-nb finds it. myst-nb's ``{nb-exec-table}`` lists execution times from
the same cache, but not the device; ``{execution-report}`` adds it.

The package: ``fingerprints`` (what outputs depend on), ``paths`` (where the build keeps its
state), ``execution`` (dropping stale entries, parallel execution, failures), ``worker`` (one
chapter's execution in its own process), ``safety`` (the build lock, damaged state), ``report``
(glued values, the execution report), ``edition`` (the student edition); ``setup`` below only wires them.
"""

from __future__ import annotations

from pathlib import Path

from sphinx.application import Sphinx

from . import archive, edition
from .execution import (
    TIMEOUT_FACTOR,
    TIMEOUT_FLOOR,
    on_build_finished_failures,
    on_builder_inited,
    on_doctree_read,
    on_env_before_read_docs,
    on_env_get_outdated,
    on_env_purge_doc,
    patch_mystnb,
)
from .fingerprints import FINGERPRINTED, SOURCE
from .report import ExecutionReport, glued_values, on_build_finished
from .safety import acquire_build_lock, outputs_succeeded, protect_outputs

__all__ = ["glued_values", "setup"]


def setup(app: Sphinx) -> dict:
    edition.setup(app)
    build_dir = edition.shared_build_dir(app)   # the student edition's lock and last-good copy are the full edition's
    acquire_build_lock(build_dir)   # before Sphinx loads its saved environment
    protect_outputs(build_dir, [Path(app.outdir), Path(app.doctreedir), Path(app.outdir).parent / "jupyter_execute"])
    patch_mystnb()
    app.add_config_value("labcode_timeout_factor", TIMEOUT_FACTOR, "")
    app.add_config_value("labcode_timeout_floor", TIMEOUT_FLOOR, "")
    app.add_config_value("labcode_results_limit_mb", archive.LIMIT_MB, "")
    app.add_config_value("labcode_fingerprint", FINGERPRINTED, "env")
    app.add_config_value("labcode_source", SOURCE, "env")
    app.connect("builder-inited", on_builder_inited, priority=900)   # after myst-nb's config
    app.connect("env-get-outdated", on_env_get_outdated)
    app.connect("env-purge-doc", on_env_purge_doc)
    app.connect("env-before-read-docs", on_env_before_read_docs, priority=900)
    app.connect("doctree-read", on_doctree_read)
    app.connect("build-finished", on_build_finished)
    app.connect("build-finished", on_build_finished_failures, priority=800)
    app.connect("build-finished", _keep_outputs_if_good, priority=1000)   # after every other extension
    app.add_directive("execution-report", ExecutionReport)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}


def _keep_outputs_if_good(app: Sphinx, exception: Exception | None) -> None:
    """A build without an exception, and without warnings when they are errors (-W), keeps its outputs.

    With ``-W --keep-going`` Sphinx 7.4 sets ``keep_going`` (not ``warningiserror``) and fails the build at the
    end when its private warning count ``_warncount`` is not zero; this reads the same two attributes.
    """
    warnings_fail = app.warningiserror or app.keep_going
    if exception is None and not (warnings_fail and app._warncount):
        outputs_succeeded(Path(app.outdir))
