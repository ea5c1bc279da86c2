"""Editions of the site: the full edition, and the student edition without the lab's reference implementations.

The lab asks students to write the functions of its checklist (:data:`labcode.lab.checklist.CHECKLIST`), whose
reference implementations are ``labcode``'s and are shown in the chapters. ``LABCODE_EDITION=student``
(``scripts/build_book.py --edition student``) builds the **student edition**, for while the lab is open; the
default **full edition** shows everything (after the deadline). In the student edition:

- a ``literalinclude`` that shows a lab function (its ``:pyobject:`` names one, or its text holds a statement
  line found in no other ``labcode`` code) is replaced by a note naming it; a container left with nothing else
  (the checklist appendix's dropdowns) goes too, in favour of the note; adjacent notes are merged;
- viewcode publishes no source (no ``_modules/`` pages, no ``[source]`` links in the API reference): a lab
  function's body calls its module's unchecked helpers, which hold the same formulas;
- the download menu has no PDF entry (the book's PDF, ``scripts/build-pdf.sh``, is the full edition);
- the Sphinx tag ``edition_student`` is set (``edition_full`` in the full edition), for prose that differs
  (``{only} edition_full``).

Derivations, figures and glued numbers are the same in both. The lab's functions are derived from the checklist:
each item's ``reference``, with the ``labcode`` functions that are the same implementation under another name, as
the grader's tripwires watch them (``labcode.lab.checklist.reference_aliases``).

Where each edition goes: the full edition into ``_build`` (``html``, ``.doctrees``, ``jupyter_execute``); the
student edition into ``_build/student/_build`` (``jupyter-book build . --path-output _build/student``), so that
neither invalidates the other's Sphinx environment. The student edition shares the full edition's execution
cache, model store, build lock and last-good copy, all in ``_build``: the chapters' code cells are the same, so
after the full edition it executes nothing.
"""

from __future__ import annotations

import ast
import functools
import inspect
import os
from dataclasses import dataclass
from pathlib import Path

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.directives.code import LiteralInclude
from sphinx.errors import ExtensionError

EDITION_ENV = "LABCODE_EDITION"
EDITIONS = ("full", "student")
#: the student edition's ``--path-output``, under the book's ``_build``
STUDENT_FOLDER = "student"
#: a shown lab function's statement lines shorter than this are not used to recognise it (``return z``)
MIN_LINE = 20


def edition_from_env(environ=None) -> str:
    """The edition ``LABCODE_EDITION`` asks for (``full`` when unset or empty).

    Raises:
        ValueError: it names no edition.
    """
    value = (os.environ if environ is None else environ).get(EDITION_ENV, "").strip() or "full"
    if value not in EDITIONS:
        raise ValueError(f"{EDITION_ENV} must be one of {', '.join(EDITIONS)}, got {value!r}")
    return value


def path_output(book: Path, edition: str) -> Path | None:
    """The ``jupyter-book build --path-output`` of an edition (``None``: Jupyter Book's default, the book)."""
    return None if edition == "full" else book / "_build" / STUDENT_FOLDER


def build_dir(book: Path, edition: str) -> Path:
    """An edition's own build folder: its ``html`` (or ``latex``), ``.doctrees``, ``jupyter_execute``, ``build.log``."""
    out = path_output(book, edition)
    return (book if out is None else out) / "_build"


def shared_build_dir(app: Sphinx) -> Path:
    """Where the build lock, the execution cache, the model store and the last-good copy are: the build's own folder
    in the full edition, the full edition's (``<book>/_build``) in the student edition, which shares them."""
    if app.config.labcode_edition == "student":
        return Path(app.confdir).resolve() / "_build"
    return Path(app.doctreedir).parent


# --------------------------------------------------------------------------- the lab's functions


@dataclass(frozen=True)
class LabFunction:
    """A function whose source the student edition leaves out."""

    #: its qualified name, as ``:pyobject:`` writes it (``VAE.compute_elbo``)
    name: str
    #: its source file, resolved
    path: Path
    #: the first line after its docstring and its last line (1-based)
    body: int
    end: int
    #: the body's statement lines (stripped, at least MIN_LINE characters) that no other ``labcode`` code has, not
    #: even another lab function: a text holding one shows this function
    lines: frozenset[str]


def _find(tree: ast.AST, qualname: str) -> ast.FunctionDef | ast.AsyncFunctionDef:
    node = tree
    for part in qualname.split("."):
        node = next((child for child in ast.iter_child_nodes(node)
                     if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and child.name == part), None)
        if node is None:
            raise LookupError(f"no definition of {qualname} in its source file")
    return node


def _body_start(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    first = node.body[0]
    docstring = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str)
    if docstring and len(node.body) > 1:
        return node.body[1].lineno
    return first.end_lineno + 1 if docstring else first.lineno


@functools.cache
def lab_functions() -> tuple[LabFunction, ...]:
    """The lab's reference implementations and their aliases, from the checklist (one entry per source)."""
    import labcode
    from labcode.lab.checklist import reference_aliases

    spans: dict[tuple[Path, str], tuple[int, int]] = {}
    for _, function in reference_aliases():
        function = inspect.unwrap(function)
        path = Path(inspect.getsourcefile(function)).resolve()
        node = _find(ast.parse(path.read_text(encoding="utf-8")), function.__qualname__)
        spans[path, function.__qualname__] = (_body_start(node), node.end_lineno)
    sources = {path: path.read_text(encoding="utf-8").splitlines()
               for path in Path(labcode.__file__).resolve().parent.rglob("*.py")}
    functions = []
    for (path, name), (start, end) in spans.items():
        elsewhere = {line.strip() for where, text in sources.items() for number, line in enumerate(text, 1)
                     if where != path or not start <= number <= end}
        lines = {line.strip() for line in sources[path][start - 1:end]
                 if len(line.strip()) >= MIN_LINE and not line.strip().startswith("#")}
        functions.append(LabFunction(name, path, start, end, frozenset(lines - elsewhere)))
    return tuple(sorted(functions, key=lambda f: (str(f.path), f.body)))


def shown_functions(path: Path, pyobject: str | None, text: str) -> list[str]:
    """The lab functions that an include of ``path`` (``:pyobject:``, resulting ``text``) shows, by name."""
    path = path.resolve()
    stripped = {line.strip() for line in text.splitlines()}
    return [f.name for f in lab_functions() if (f.path == path and f.name == pyobject) or f.lines & stripped]


# --------------------------------------------------------------------------- the student edition's pages


class omitted_source(nodes.Element):   # a docutils node: lower-case, as docutils names them
    """Where a lab function's source was (``names``); replaced by a note before the doctree is saved."""


class EditionLiteralInclude(LiteralInclude):
    """``literalinclude``, except that an include showing a lab function becomes :class:`omitted_source`."""

    def run(self) -> list[nodes.Node]:
        result = super().run()   # also records the file as a dependency of the page
        text = "\n".join(block.astext() for node in result for block in node.findall(nodes.literal_block))
        names = shown_functions(Path(self.env.relfn2path(self.arguments[0])[1]), self.options.get("pyobject"), text)
        if not names:
            return result
        node = omitted_source(names=names)
        self.set_source_info(node)
        return [node]


#: containers that go when nothing but omitted sources (and their title) is left in them
EMPTIED = (nodes.container, nodes.Admonition, nodes.topic, nodes.sidebar)


def _names(children) -> list[str]:
    return list(dict.fromkeys(name for child in children if isinstance(child, omitted_source) for name in child["names"]))


def _note(names: list[str]) -> nodes.admonition:
    paragraph = nodes.paragraph()
    paragraph += nodes.Text("The source of " if len(names) == 1 else "The sources of ")
    for index, name in enumerate(names):
        if index:
            paragraph += nodes.Text(" and " if index == len(names) - 1 else ", ")
        paragraph += nodes.literal(text=name)
    paragraph += nodes.Text(" is part of the lab: it is shown" if len(names) == 1 else " are part of the lab: they are shown")
    paragraph += nodes.Text(" in the full edition of this site, after the lab's deadline.")
    return nodes.admonition("", nodes.title(text="Part of the lab"), paragraph, classes=["note", "labcode-edition"])


def replace_omitted(app: Sphinx, doctree: nodes.document) -> None:
    """Turn the page's :class:`omitted_source` nodes into notes: a container left with nothing else is replaced as a
    whole, adjacent ones become one note."""
    changed = True
    while changed:
        changed = False
        for node in doctree.findall(omitted_source):
            parent = node.parent
            if isinstance(parent, EMPTIED) and all(isinstance(c, (omitted_source, nodes.title, nodes.rubric))
                                                   for c in parent.children):
                merged = omitted_source(names=_names(parent.children))
                merged.source, merged.line = parent.source, parent.line
                parent.replace_self(merged)
                changed = True
                break
    for parent in {id(node.parent): node.parent for node in doctree.findall(omitted_source)}.values():
        children, run = [], []
        for child in [*parent.children, None]:
            if isinstance(child, omitted_source):
                run.append(child)
                continue
            if run:
                note = _note(_names(run))
                note.source, note.line = run[0].source, run[0].line
                children.append(note)
                run = []
            if child is not None:
                children.append(child)
        parent.children = []
        parent.extend(children)


def drop_viewcode(app: Sphinx) -> None:
    """No ``_modules/`` pages and no ``[source]`` links: a lab function's body calls helpers of its module (the
    unchecked versions the training loops use) that hold the very formulas, so no module's source is shown."""
    try:
        from sphinx.ext import viewcode
    except ImportError:
        return
    for event, handler in (("doctree-read", viewcode.doctree_read), ("html-collect-pages", viewcode.collect_pages)):
        for listener in list(app.events.listeners.get(event, [])):
            if listener.handler is handler:
                app.disconnect(listener.id)


def drop_book_pdf(app: Sphinx, pagename: str, templatename: str, context: dict, doctree) -> None:
    """No PDF in the download menu: the book's PDF is the full edition."""
    for group in context.get("header_buttons", []):
        if group.get("label") == "download-buttons":
            group["buttons"] = [b for b in group.get("buttons", []) if b.get("label") != "download-pdf-button"]


def setup(app: Sphinx) -> str:
    """Wire the edition that ``LABCODE_EDITION`` asks for; return its name."""
    try:
        edition = edition_from_env()
    except ValueError as err:
        raise ExtensionError(str(err)) from None
    app.add_config_value("labcode_edition", edition, "env")
    app.config.labcode_edition = edition
    app.tags.add(f"edition_{edition}")
    if edition == "full":
        return edition
    shared = shared_build_dir(app)
    if Path(app.outdir).resolve().parent == shared:
        raise ExtensionError(f"the student edition is built into its own folder, not {app.outdir}: "
                             f"scripts/build_book.py --edition student (jupyter-book build . --path-output "
                             f"{path_output(Path(app.confdir), edition)})")
    # which functions the pages leave out is part of the environment: a change re-reads every page
    app.add_config_value("labcode_edition_omits", (), "env")
    app.config.labcode_edition_omits = tuple(sorted(f"{f.path.name}:{f.name}" for f in lab_functions()))

    def share_cache(app: Sphinx, config) -> None:
        if not config.nb_execution_cache_path:      # myst-nb's default is beside the site: the full edition's
            config.nb_execution_cache_path = str(shared / ".jupyter_cache")

    app.connect("config-inited", share_cache)
    app.connect("builder-inited", drop_viewcode)
    app.add_directive("literalinclude", EditionLiteralInclude, override=True)
    app.connect("doctree-read", replace_omitted, priority=100)
    app.connect("html-page-context", drop_book_pdf, priority=503)   # after site_fixes' PDF link (502)
    return edition
