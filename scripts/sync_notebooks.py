"""Generate the Colab notebooks: one .ipynb next to every chapter's .md, and the chapters' install cell.

Usage: python scripts/sync_notebooks.py [--check]

1. The first code cell of every executed chapter is the install cell below,
   built from the repository URL and branch in _config.yml and hidden on the
   site (tag remove-cell). In Colab it installs labcode from the repository;
   elsewhere it does nothing (LABCODE_INSTALL_FROM=<path or URL> makes it
   install from there instead, which the tests use).
2. Each chapter is converted with jupytext to an .ipynb beside it (no
   outputs). The theme's Colab button links to that file on GitHub, so it is
   committed; Sphinx ignores it (exclude_patterns). Never edit it by hand.

With --check nothing is written; the exit status is 1 if any file is out of date.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import jupytext

from booktools import ROOT, notebook_docs, report_stale, repository, source

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


def with_install_cell(text: str, cell: str) -> str:
    """The chapter text whose first code cell is ``cell`` (replacing an older install cell)."""
    first = CELL.search(text)
    if first is None:
        raise ValueError("chapter has no code cell")
    if MARKER in first.group(0):
        return text[:first.start()] + cell + text[first.end():]
    return text[:first.start()] + cell + "\n" + text[first.start():]


def notebook_text(md_text: str) -> str:
    notebook = jupytext.reads(md_text, fmt="md:myst")
    notebook.metadata.pop("jupytext", None)
    for index, cell in enumerate(notebook.cells):   # stable ids, so regenerating changes nothing
        cell["id"] = f"cell-{index}"
    return jupytext.writes(notebook, fmt="ipynb")


def sync(check: bool, root: Path = ROOT) -> list[Path]:
    """Bring every chapter and its notebook up to date; return the files that were (or would be) changed."""
    cell = install_cell(root)
    stale = []
    for doc in notebook_docs(root):
        md = source(doc, root)
        text = md.read_text()
        new_text = with_install_cell(text, cell)
        ipynb = md.with_suffix(".ipynb")
        new_nb = notebook_text(new_text)
        for path, old, new in ((md, text, new_text), (ipynb, ipynb.read_text() if ipynb.exists() else None, new_nb)):
            if old != new:
                stale.append(path)
                if not check:
                    path.write_text(new)
    return stale


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only report files that are out of date")
    args = parser.parse_args()
    return report_stale(sync(args.check), args.check, "python scripts/sync_notebooks.py")


if __name__ == "__main__":
    sys.exit(main())
