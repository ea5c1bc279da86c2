"""Sphinx extension: the API reference of ``labcode`` (``book/api/``) and the links into it from code cells.

- ``labcode-exports PACKAGE``: a table of the names a package
  re-exports (its ``__all__``), each linked to the entry of the module that defines it, with its summary line.
- ``labcode-modules PACKAGE``: a table of the package's public modules, each linked to its page, with the first
  paragraph of its docstring.
- sphinx-codeautolink links ``lc.kl_...`` in a code cell through the object's ``__module__``, so a re-exported
  function or class finds its entry; a re-exported constant has no ``__module__``: ``codeautolink_inventory_map``
  is filled with the module that documents it (``labcode.LAB_SPIRAL`` -> ``labcode.experiments.LAB_SPIRAL``).
  A dataclass field without an entry of its own links to its class (``lc.LAB_SPIRAL.n`` -> ``SpiralSpec``).
- A chapter imports ``labcode`` in a hidden (``remove-cell``) cell, which is not on the page, so codeautolink
  would not know what ``lc`` is in the visible cells: every chapter gets a file-level preface (codeautolink's
  ``autolink-preface``) made of the ``labcode`` imports of all its code cells.
- codeautolink crashed on sphinx-exercise's boxes (:func:`count_exercise_titles`).
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
import sys
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import Parser
from docutils.utils import new_document
from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.errors import PycodeError
from sphinx.pycode import ModuleAnalyzer
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

LOGGER = logging.getLogger(__name__)
ROOT = "labcode"
CODE_CELL = re.compile(r"^(`{3,}|~{3,})\{code-cell\}[^\n]*\n(.*?)^\1[ \t]*$", re.M | re.S)


def public_modules(package: str) -> list[str]:
    """The package's public modules (no subpackages, no ``_private`` ones), sorted by name."""
    pkg = importlib.import_module(package)
    return [f"{package}.{m.name}" for m in pkgutil.iter_modules(pkg.__path__)
            if not m.name.startswith("_") and not m.ispkg]


def public_subpackages(package: str) -> list[str]:
    pkg = importlib.import_module(package)
    return [f"{package}.{m.name}" for m in pkgutil.iter_modules(pkg.__path__) if m.ispkg and not m.name.startswith("_")]


def defining_module(package: str, name: str) -> str:
    """The module that documents ``package.name``: ``__module__`` for a function or class; for a constant, the
    ``labcode`` module that assigns it with a ``#:`` doc comment (the one autodoc documents it in)."""
    obj = getattr(importlib.import_module(package), name)
    if inspect.isclass(obj) or inspect.isroutine(obj):
        return obj.__module__
    for modname in sorted(m for m in list(sys.modules) if m == ROOT or m.startswith(ROOT + ".")):
        if getattr(sys.modules[modname], name, None) is obj and ("", name) in _attr_docs(modname):
            return modname
    return package


def _attr_docs(module: str) -> dict:
    try:
        return ModuleAnalyzer.for_module(module).find_attr_docs()
    except PycodeError:   # a module without Python source has no doc comments
        return {}


def _lookup(path: str) -> tuple[bool, object]:
    """(found, object) for a dotted path, importing its longest module prefix (``labcode`` paths only)."""
    parts = path.split(".")
    if parts[0] != ROOT:
        return False, None
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            if hasattr(obj, attr):
                obj = getattr(obj, attr)
            elif attr in getattr(obj, "__dataclass_fields__", {}):   # a field without a default: no class attribute
                obj = None
            else:
                return False, None
        return True, obj
    return False, None


def documented_name(path: str) -> str | None:
    """Where the object that ``path`` names is documented: a re-exported or imported name becomes the
    name in its defining module (``labcode.VAE`` -> ``labcode.vae.VAE``); ``None`` if there is no such object."""
    found, obj = _lookup(path)
    if not found:
        return None
    if inspect.ismodule(obj):
        return obj.__name__
    if (inspect.isclass(obj) or inspect.isroutine(obj)) and getattr(obj, "__module__", "").startswith(ROOT):
        return f"{obj.__module__}.{obj.__qualname__}"
    parent_path, _, last = path.rpartition(".")
    _, parent = _lookup(parent_path)
    if inspect.isclass(parent):
        return f"{documented_name(parent_path)}.{last}"
    if inspect.ismodule(parent):
        return f"{defining_module(parent.__name__, last)}.{last}"
    return path


def summary(obj: object) -> str:
    """The first paragraph of an object's docstring, on one line (rST, as written)."""
    doc = inspect.getdoc(obj) or ""
    return " ".join(doc.split("\n\n", 1)[0].split())


def reexport_map(package: str) -> dict[str, str]:
    """``package.name`` -> its documented location, for every name of ``package.__all__`` defined elsewhere."""
    pkg = importlib.import_module(package)
    out = {}
    for name in getattr(pkg, "__all__", []):
        home = defining_module(package, name)
        if home != package:
            out[f"{package}.{name}"] = f"{home}.{name}"
    return out


def _cell(text: str) -> str:
    return text.replace("\n", " ") or "—"


class _TableDirective(SphinxDirective):
    required_arguments = 1
    has_content = False

    #: the module each row's summary comes from (set by :meth:`rows`)
    row_modules: list[str]

    def rows(self, package: str) -> list[tuple[str, ...]]:
        raise NotImplementedError

    header: tuple[str, ...] = ()
    widths = ""

    def run(self) -> list[nodes.Node]:
        package = self.arguments[0]
        lines = [".. list-table::", "   :header-rows: 1", f"   :widths: {self.widths}",
                 "   :class: labcode-api-table", ""]
        for row in [self.header, *self.rows(package)]:
            lines.append(f"   * - {_cell(row[0])}")
            lines += [f"     - {_cell(cell)}" for cell in row[1:]]
        # parsed as reStructuredText whatever the page's own markup (MyST here), like MyST's {eval-rst}
        document = new_document(self.get_source_info()[0], self.state.document.settings)
        document.reporter = self.state.document.reporter
        Parser().parse("\n".join(lines), document)
        # a summary's references are relative to the module it comes from (the row's), not to this page
        body_rows = [row for body in document.findall(nodes.tbody) for row in body.children]
        for row, module in zip(body_rows, self.row_modules, strict=True):
            for ref in row.findall(addnodes.pending_xref):
                ref["py:module"] = module
        return document.children


class ExportsTable(_TableDirective):
    """``labcode-exports PACKAGE``: the names of ``PACKAGE.__all__``, each linked to its entry in the module that
    defines it, with its summary."""

    header = ("name", "what it is")
    widths = "35 65"

    def rows(self, package: str) -> list[tuple[str, ...]]:
        pkg = importlib.import_module(package)
        alias = "lc" if package == ROOT else package
        rows, self.row_modules = [], []
        for name in getattr(pkg, "__all__", []):
            home = defining_module(package, name)
            obj = getattr(pkg, name)
            text = summary(obj) if inspect.isclass(obj) or inspect.isroutine(obj) else _attr_doc(home, name)
            self.row_modules.append(home)
            rows.append((f":py:obj:`{alias}.{name} <{home}.{name}>`", f"{text} (:py:mod:`{home}`)"))
        return rows


def _attr_doc(module: str, name: str) -> str:
    return " ".join(" ".join(_attr_docs(module).get(("", name), [])).split())


class ModulesTable(_TableDirective):
    """``labcode-modules PACKAGE``: the package's public modules and subpackages with their summaries."""

    header = ("module", "what it holds")
    widths = "30 70"

    def rows(self, package: str) -> list[tuple[str, ...]]:
        names = public_modules(package) + public_subpackages(package)
        self.row_modules = names
        return [(f":py:mod:`{name}`", summary(importlib.import_module(name))) for name in names]


def labcode_imports(source: str) -> list[str]:
    """The ``import labcode ...`` / ``from labcode... import ...`` statements of a text notebook's code cells."""
    found: list[str] = []
    for _, cell in CODE_CELL.findall(source):
        code = "\n".join(line for line in cell.splitlines()
                         if not line.lstrip().startswith(("%", "!", ":")))   # magics and cell options
        try:
            tree = ast.parse(code)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "labcode" for a in node.names):
                found.append(ast.unparse(node))
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "labcode" and node.level == 0:
                found.append(ast.unparse(node))
    return list(dict.fromkeys(found))


def add_import_preface(app: Sphinx, doctree: nodes.document) -> None:
    """Give codeautolink the chapter's ``labcode`` imports (they sit in hidden cells) as a file-level preface."""
    if app.builder.name not in ("html", "dirhtml"):
        return
    path = Path(app.env.doc2path(app.env.docname))
    if path.suffix != ".md":
        return
    text = path.read_text(encoding="utf-8")
    if "{code-cell}" not in text:
        return
    imports = labcode_imports(text)
    if imports:
        from sphinx_codeautolink.extension.directive import PrefaceMarker
        doctree.insert(0, PrefaceMarker("\n".join(imports), "file"))


def undocumented_fields() -> dict[str, str]:
    """``module.Class.field`` -> ``module.Class`` for every field of a ``labcode`` dataclass that has no entry of
    its own (no ``#:`` comment, not in the docstring's ``Attributes:``): ``lc.LAB_SPIRAL.n`` links to ``SpiralSpec``."""
    out = {}
    for modname in [m for m in list(sys.modules) if m == ROOT or m.startswith(ROOT + ".")]:
        module = sys.modules[modname]
        for cls in vars(module).values():
            if not (inspect.isclass(cls) and cls.__module__ == modname and hasattr(cls, "__dataclass_fields__")):
                continue
            docs = _attr_docs(modname)
            section = (inspect.getdoc(cls) or "").partition("Attributes:")[2]
            for field in cls.__dataclass_fields__:
                if (cls.__qualname__, field) not in docs and not re.search(rf"^\s+{field}\b.*:", section, re.M):
                    out[f"{modname}.{cls.__qualname__}.{field}"] = f"{modname}.{cls.__qualname__}"
    return out


def set_inventory_map(app: Sphinx, config) -> None:
    """Re-exported constants resolve to the module that documents them (functions and classes do by themselves);
    undocumented dataclass fields to their class."""
    mapping = dict(reexport_map(ROOT))
    for package in [ROOT, *public_subpackages(ROOT)]:
        for module in public_modules(package):
            importlib.import_module(module)
    mapping.update(undocumented_fields())
    mapping.update(config.codeautolink_inventory_map or {})
    config.codeautolink_inventory_map = mapping


def resolve_through_imports(app: Sphinx, env, node: addnodes.pending_xref, contnode: nodes.Element):
    """A Python reference that Sphinx did not find, to a ``labcode`` name that exists: resolved to where the object
    is documented (docstrings say ``:func:`labcode.monte_carlo_kl``` or name a function their module imported);
    an existing object without an entry (private, or a constant without a doc comment) is shown as code, unlinked.
    A name that does not exist stays a warning."""
    if node.get("refdomain") != "py":
        return None
    target = node["reftarget"].lstrip("~.")
    module = node.get("py:module") or ""
    candidates = ([f"{module}.{target}"] if module.startswith(ROOT) else []) + [target]
    for path in candidates:
        name = documented_name(path)
        if name is None:
            continue
        domain = env.get_domain("py")
        for typ in dict.fromkeys([node["reftype"], "obj"]):
            found = domain.resolve_xref(env, node["refdoc"], app.builder, typ, name, node, contnode)
            if found is not None:
                return found
        return contnode
    return None


#: napoleon reads the first line of an attribute's docstring as ``type: description``; this library's
#: ``#:`` comments and properties are prose (``the variance choices (Ho et al., 2020): ...``), so they keep
#: their text as written
PROSE_DOCSTRINGS = ("data", "attribute", "property")


def keep_prose(app: Sphinx, what: str, name: str, obj, options, lines: list[str]) -> None:
    if what in PROSE_DOCSTRINGS:
        app.env.temp_data.setdefault("api_docs_prose", {})[name] = list(lines)


def restore_prose(app: Sphinx, what: str, name: str, obj, options, lines: list[str]) -> None:
    kept = app.env.temp_data.get("api_docs_prose", {}).pop(name, None)
    if what in PROSE_DOCSTRINGS and kept is not None:
        lines[:] = kept


def count_exercise_titles() -> None:
    """codeautolink keeps a stack of section titles: it pushes on ``title`` and pops when a section ends.
    sphinx-exercise titles its boxes with ``exercise_title``/``solution_title`` (subclasses of ``title`` that a
    docutils visitor dispatches by their own names) over an untitled section, so every exercise popped a title
    it never pushed and the build crashed (IndexError) on the first chapter with an exercise; they count as titles."""
    from sphinx_codeautolink.extension.block import CodeBlockAnalyser
    for name in ("exercise_title", "solution_title"):
        setattr(CodeBlockAnalyser, f"visit_{name}", CodeBlockAnalyser.visit_title)


def setup(app: Sphinx) -> dict:
    count_exercise_titles()
    app.add_directive("labcode-exports", ExportsTable)
    app.add_directive("labcode-modules", ModulesTable)
    app.connect("config-inited", set_inventory_map)
    app.connect("missing-reference", resolve_through_imports)
    app.connect("autodoc-process-docstring", keep_prose, priority=400)      # napoleon: 500
    app.connect("autodoc-process-docstring", restore_prose, priority=600)
    app.connect("doctree-read", add_import_preface, priority=480)   # before codeautolink reads the code blocks (490)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
