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
   execution time and the device it ran on;
6. lets a chapter choose its device in its front matter (``labcode: {device: cpu}``):
   a chapter whose work is too small for a GPU runs its kernel with
   ``LABCODE_DEVICE=cpu`` on a GPU machine (a build-wide ``LABCODE_DEVICE`` still
   wins); the choice is part of the chapter's key and the report shows it.

Environment: ``LABCODE_BUILD_WORKERS`` sets the number of parallel
executions (default: the number of cores; 1 = serial).

Why not only the maintained machinery: jupyter-cache has a parallel executor
(``JupyterExecutorLocalMproc``), but it executes the notebooks of a cache *project* and keys
them on their cells alone; this extension needs, per chapter, the labcode modules it imported
and device (recorded by a cell appended for the run) and a per-chapter device choice, so it executes each stale
notebook itself with jupyter-cache's own single-notebook executor and stores the result in the
same cache, where myst-nb finds it. myst-nb's ``{nb-exec-table}`` lists execution times from
the same cache, but not the device; ``{execution-report}`` adds it.

The package: ``fingerprints`` (what outputs depend on), ``paths`` (where the build keeps its
state), ``execution`` (dropping stale entries, parallel execution), ``report`` (glued values,
the execution report); ``setup`` below only wires them.
"""

from __future__ import annotations

from sphinx.application import Sphinx

from .execution import on_builder_inited, on_doctree_read, on_env_before_read_docs, on_env_get_outdated
from .fingerprints import FINGERPRINTED, SOURCE
from .report import ExecutionReport, glued_values, on_build_finished

__all__ = ["glued_values", "setup"]


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
