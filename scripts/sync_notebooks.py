"""Generate the Colab notebooks: one .ipynb next to every chapter's .md, and the chapters' install cell.

Usage: .venv/bin/python scripts/sync_notebooks.py [--check] [PAGE ...]

1. The first code cell of every executed chapter is the install cell below,
   built from the repository URL and branch in _config.yml and hidden on the
   site (tag remove-cell). In Colab it installs labcode from the repository;
   elsewhere it does nothing (LABCODE_INSTALL_FROM=<path or URL> makes it
   install from there instead, which the tests use).
2. Each chapter is converted with jupytext to an .ipynb beside it (no
   outputs). The theme's Colab button links to that file on GitHub, so it is
   committed; Sphinx ignores it (exclude_patterns). Never edit it by hand.

PAGE (``book/kl``, ``book/kl.md`` or ``kl``) limits the work to those
chapters; the default is every executed chapter of _toc.yml. With --check
nothing is written; the exit status is 1 if any file is out of date.

Bad input ends it with one line naming the file and exit status 2: an unknown
page; a _toc.yml, _config.yml or chapter that cannot be read; a chapter with
broken front matter, code cells without a kernelspec, or no code cell; a file
that cannot be written. Everything is read and checked before the first file
is written.
"""

from __future__ import annotations

import re
from pathlib import Path

from booktools import (
    ROOT,
    ArgumentParser,
    UsageError,
    notebook_docs,
    old_text,
    read_text,
    report_stale,
    repository,
    run,
    shown,
    source,
    write_text,
    wrong_environment,
)

try:
    import jupytext
except ModuleNotFoundError as missing:
    wrong_environment(missing)

MARKER = "# labcode-install-cell"
INSTALL_CELL = '''```{{code-cell}} ipython3
:tags: [remove-cell]

{marker}: in Colab, install labcode from the book's repository (elsewhere this does nothing).
import importlib.util
import os
import sys

if importlib.util.find_spec("labcode") is None and ("google.colab" in sys.modules or "LABCODE_INSTALL_FROM" in os.environ):
    _source = os.environ.get("LABCODE_INSTALL_FROM", "git+{url}@{branch}")
    get_ipython().run_line_magic("pip", f"install --quiet {{_source}}")
```
'''
CELL = re.compile(r"```\{code-cell\}[^\n]*\n.*?\n```\n", re.DOTALL)


def install_cell(root: Path = ROOT) -> str:
    url, branch = repository(root)
    return INSTALL_CELL.format(marker=MARKER, url=url, branch=branch)


def with_install_cell(text: str, cell: str, path: Path) -> str:
    """The chapter text whose first code cell is ``cell`` (replacing an older install cell)."""
    first = CELL.search(text)
    if first is None:
        raise UsageError(f"{shown(path)}: a chapter with a kernelspec but no code cell")
    if MARKER in first.group(0):
        return text[:first.start()] + cell + text[first.end():]
    return text[:first.start()] + cell + "\n" + text[first.start():]


def notebook_text(md_text: str) -> str:
    notebook = jupytext.reads(md_text, fmt="md:myst")
    notebook.metadata.pop("jupytext", None)
    for index, cell in enumerate(notebook.cells):   # stable ids, so regenerating changes nothing
        cell["id"] = f"cell-{index}"
    return jupytext.writes(notebook, fmt="ipynb")


def chosen(pages: list[str], docs: list[str]) -> list[str]:
    """The chapters named by ``pages`` (``book/kl``, ``book/kl.md`` or ``kl``), in table-of-contents order."""
    names = {name: doc for doc in docs for name in (doc, f"{doc}.md", doc.rpartition("/")[2])}
    for page in pages:
        if page not in names:
            raise UsageError(f"unknown page {page!r} (executed chapters: {', '.join(d.rpartition('/')[2] for d in docs)})")
    wanted = {names[page] for page in pages}
    return [doc for doc in docs if doc in wanted]


def sync(check: bool, root: Path = ROOT, pages: list[str] | None = None) -> list[Path]:
    """Bring the chapters (all, or ``pages``) and their notebooks up to date; return the files changed (or stale).

    Everything is read and converted before the first file is written, so bad input changes nothing.
    """
    cell = install_cell(root)
    docs = notebook_docs(root)
    changes = {}
    for doc in chosen(pages, docs) if pages else docs:
        md = source(doc, root)
        text = read_text(md)
        new_text = with_install_cell(text, cell, md)
        ipynb = md.with_suffix(".ipynb")
        for path, old, new in ((md, text, new_text), (ipynb, old_text(ipynb), notebook_text(new_text))):
            if old != new:
                changes[path] = new
    if not check:
        for path, new in changes.items():
            write_text(path, new)
    return list(changes)


def main() -> int:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pages", nargs="*", metavar="PAGE", help="only these chapters (book/kl, book/kl.md or kl)")
    parser.add_argument("--check", action="store_true", help="only report files that are out of date")
    args = parser.parse_args()
    return report_stale(sync(args.check, pages=args.pages), args.check, "sync_notebooks.py")


if __name__ == "__main__":
    run(main)
