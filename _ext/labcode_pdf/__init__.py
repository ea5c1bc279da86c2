"""Sphinx extension: what the PDF edition (``--builder pdflatex``) needs besides Jupyter Book's defaults.

1. The book's TeX macros (``\\E``, ``\\KL``, ``\\N``, ...) have one source, ``mathjax3_config.tex.macros`` in
   ``_config.yml``, which only MathJax reads. At ``config-inited`` they are written into the LaTeX preamble,
   each as ``\\providecommand`` followed by ``\\renewcommand`` at the end of ``\\begin{document}`` (after
   unicode-math has set up its symbols), so a package that defines the same name (``\\N``, ``\\R`` and
   ``\\E`` are common) neither stops the build nor wins. A MathJax macro with arguments
   (``[body, n]``) becomes a LaTeX macro with ``n`` arguments.
2. ``jupyterBook.cls`` (sphinx-jupyterbook-latex's class) loads ``bbm``, which Debian ships only in the
   1.4 GB ``texlive-fonts-extra``, for shorthands this book never uses; a stand-in ``bbm.sty``
   (``\\mathbbm`` as ``\\mathbb``) is copied next to the ``.tex`` (so it wins over an installed one, and the
   PDF is the same on every machine), and the small TeX set that ``scripts/build-pdf.sh`` installs suffices.
3. The PDF numbers chapters, theorems, exercises and figures as the HTML edition does:
   - sphinx-jupyterbook-latex sets ``numfig_secnum_depth = 2`` for the LaTeX builder (so that LaTeX restarts
     figure numbers in each chapter when the top level is ``part``); the environment then numbers theorems
     by section ("Theorem 4.3.1" where the site says "Theorem 4.1"). Numbers are assigned with the HTML
     build's depth (1) and the writer gets 2 back once the assembled book is resolved;
   - the front matter and the appendices are unnumbered on the site, but LaTeX numbered them as chapters
     1, 2, ... and shifted every later chapter: each chapter now starts with ``\\labcodechapter{N}``
     (its number on the site, empty for an unnumbered one), which sets LaTeX's chapter counter and turns
     section numbers off and on;
   - sphinx-proof writes each theorem's LaTeX label from the chapter's title, and a title with an
     apostrophe ("Jensen's inequality") gives ``\\label{None:...}`` and a title without its number, and
     sphinx-exercise writes only ``exercise:<label>``: every ``{prf:ref}`` into such a chapter and every ``{numref}`` to an exercise was
     "??" in the PDF. Each of their boxes now gets the label Sphinx's references use, carrying the box's
     number, so ``\\ref`` prints the same number as the site.
4. A proof is amsthm's ``proof`` environment instead of sphinx-proof's untitled box (whose LaTeX takes the
   first paragraph's start as the title and draws an empty title bar).
5. A cell that displays an HTML table (``HTML(labcode.prose.html_table(...))``, the validation checks) has no
   representation LaTeX can use except ``<IPython.core.display.HTML object>``; for the LaTeX builder such a
   table is parsed and given to myst-nb as a real table, which it then prefers to the text. Any other output
   that only HTML could show is reported (a warning: the build fails) instead of printing that text.
6. A table of 12 rows or more with given column widths (the course map) is a ``longtable``, which breaks
   across pages; the pages of the landing page's text, which follow the table of contents, are not marked
   "Contents".
7. The bibliography stays in the References chapter (Sphinx moves it to an extra chapter at the end); a glued
   value never breaks across lines at a hyphen ("2e-06"); inline code may break after an underscore.
8. Domain indices (sphinx-proof's list of labels) are left out of the PDF; the general index stays.

The HTML build is untouched: everything here happens for the LaTeX builder or only adds LaTeX settings.
"""

from __future__ import annotations

import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

from docutils import nodes
from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.builders.latex import LaTeXBuilder
from sphinx.config import Config
from sphinx.errors import ConfigError
from sphinx.transforms.post_transforms import SphinxPostTransform
from sphinx.util import logging, texescape

LOGGER = logging.getLogger(__name__)
PLACEHOLDER = re.compile(r"<[\w.]+ object( at 0x[0-9a-f]+)?>")   # the text/plain of IPython.display.HTML

HERE = Path(__file__).parent
PACKAGES_WITH_BOXES = ("sphinx_proof", "sphinx_exercise")
BOX_START = "\n\\begin{sphinxadmonition}{note}"   # how sphinx-proof opens a box in LaTeX

# LaTeX helpers used by the nodes this extension writes.
HELPERS = r"""
% Helpers of _ext/labcode_pdf: a target that \ref prints as the site's number; a chapter numbered as on the site.
\usepackage{amsthm}
\makeatletter
\newcommand{\labcodetarget}[2]{\phantomsection\def\@currentlabel{#1}\label{#2}}
\AtBeginDocument{\edef\labcode@secnumdepth{\the\c@secnumdepth}}
\newcommand{\labcodechapter}[1]{%
  \if\relax\detokenize{#1}\relax\setcounter{secnumdepth}{-1}%
  \else\setcounter{secnumdepth}{\labcode@secnumdepth}\setcounter{chapter}{\numexpr#1-1\relax}\fi}
% A glued value never breaks across lines at a hyphen ("2e-06", "-4.45"); it may at its spaces.
\expandafter\def\csname DUrolepasted-text\endcsname#1{{\let\sphinxhyphen\sphinxhyphennobreak#1}}
% Inline code may break after an underscore (log_marginal_likelihood_mc in a narrow table column).
\let\labcode@upquote\sphinxupquote
\protected\def\sphinxupquote#1{{\def\_{\textunderscore\discretionary{}{}{}}\labcode@upquote{#1}}}
\makeatother
% Glyphs the fonts lack: Latin Modern Math has no U+29F5, which unicode-math makes \setminus; FreeMono (code)
% has no bold script capitals (a table heading in the code of the two-forces chapter).
\AddToHook{begindocument/end}{\renewcommand{\setminus}{\mathbin{\backslash}}}
\usepackage{newunicodechar}
\newunicodechar{𝓛}{\ensuremath{\symbfscr{L}}}
"""


def latex_macros(macros: dict) -> str:
    """LaTeX definitions of MathJax ``tex.macros`` (a name maps to a body or to ``[body, nargs]``)."""
    lines = []
    for name, value in macros.items():
        if isinstance(value, str):
            body, nargs = value, 0
        elif isinstance(value, (list, tuple)) and len(value) == 2 and isinstance(value[1], int):
            body, nargs = value
        else:
            raise ConfigError(f"mathjax3_config.tex.macros.{name}: expected a string or [body, nargs], got {value!r}")
        if not name.isalpha():
            raise ConfigError(f"mathjax3_config.tex.macros: {name!r} is not a LaTeX macro name (letters only)")
        args = f"[{nargs}]" if nargs else ""
        lines.append(f"  \\providecommand{{\\{name}}}{{}}\\renewcommand{{\\{name}}}{args}{{{body}}}%")
    return "\\AddToHook{begindocument/end}{%\n" + "\n".join(lines) + "\n}\n"


def add_macros_to_preamble(app: Sphinx, config: Config) -> None:
    macros = ((config.mathjax3_config or {}).get("tex") or {}).get("macros") or {}
    elements = config.latex_elements
    block = HELPERS + "% The book's macros, from mathjax3_config.tex.macros (_ext/labcode_pdf)\n" + latex_macros(macros)
    elements["preamble"] = elements.get("preamble", "") + "\n" + block
    # the landing page's text follows the table of contents: its pages must not be marked "Contents"
    elements.setdefault("tableofcontents", "\\sphinxtableofcontents\n\\markboth{}{}")
    config.latex_domain_indices = False


def on_builder_inited(app: Sphinx) -> None:
    if not isinstance(app.builder, LaTeXBuilder):
        return
    Path(app.outdir).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(HERE / "bbm.sty", Path(app.outdir) / "bbm.sty")
    app.config.numfig_secnum_depth = 1   # number as the HTML edition does (sphinx-jupyterbook-latex set 2)
    handlers = app.registry.translation_handlers.get("latex", {})
    boxes = [*app.registry.enumerable_nodes, *unnumbered_boxes()]
    for node_class in boxes:
        if node_class.__module__.split(".")[0] in PACKAGES_WITH_BOXES and node_class.__name__ in handlers:
            visit, depart = handlers[node_class.__name__]
            if node_class.__module__.startswith("sphinx_proof") and node_class in app.registry.enumerable_nodes:
                depart = numbered(depart)
            app.registry.add_translation_handlers(node_class, latex=(labelled(visit), depart))


def unnumbered_boxes() -> list[type]:
    try:
        from sphinx_proof.nodes import unenumerable_node
    except ImportError:
        return []
    return [unenumerable_node]


def on_doctree_resolved(app: Sphinx, doctree, docname: str) -> None:
    if isinstance(app.builder, LaTeXBuilder):   # numbers are assigned; the writer restarts figure numbers per chapter
        app.config.numfig_secnum_depth = 2


def labelled(visit):
    """Wrap a box's LaTeX visitor: drop the box package's own ``<doc>:<label>`` label, write Sphinx's one."""

    def visit_with_label(self, node: nodes.Element) -> None:
        start = len(self.body)
        visit(self, node)
        ids = node.get("ids", [])
        own = {f"\\label{{{doc}:{i}}}" for i in ids for doc in ("None", self.curfilestack[-1])}
        kept = [chunk for chunk in self.body[start:] if chunk not in own]
        docname, number = self.curfilestack[-1], box_number(self, node)
        targets = "".join(rf"\labcodetarget{{{number}}}{{{self.idescape(f'{docname}:{i}')}}}" for i in ids)
        self.body[start:] = [targets, *kept]

    return visit_with_label


def box_number(translator, node: nodes.Element) -> str:
    """The box's number on the site ("4.1"), from the environment, for the chapter being written."""
    env = translator.builder.env
    figtype = env.get_domain("std").get_enumerable_node_type(node)
    ids = node.get("ids", [])
    number = env.toc_fignumbers.get(translator.curfilestack[-1], {}).get(figtype, {}).get(ids[0] if ids else "", ())
    return ".".join(map(str, number))


def numbered(depart):
    """Wrap sphinx-proof's LaTeX departure: its title ("Theorem 4.1") gets the number from the right chapter."""

    def depart_numbered(self, node: nodes.Element) -> None:
        depart(self, node)
        # sphinx-proof put f"{Kind} {number}" two entries after the box's last \begin{sphinxadmonition}{note}
        start = max(i for i, chunk in enumerate(self.body) if chunk == BOX_START)
        kind = node.get("realtype", "").title()
        if self.body[start + 2].startswith(kind):
            self.body[start + 2] = f"{kind} {box_number(self, node)}"

    return depart_numbered


class Proofs(SphinxPostTransform):
    """A proof is amsthm's ``proof`` environment (italic "Proof.", a square at the end), not an untitled box.

    sphinx-proof writes a proof as an admonition without a title, which LaTeX draws as a box with an empty
    title bar whose text starts with "Proof. ".
    """

    default_priority = 900
    builders = ("latex",)

    def run(self, **kwargs) -> None:
        try:
            from sphinx_proof.nodes import proof_node
        except ImportError:
            return
        for proof in list(self.document.findall(proof_node)):
            body = [child for box in proof.children for child in box.children] if proof.children else []
            if body and isinstance(body[0], nodes.paragraph) and body[0].children:
                first = body[0].children[0]
                if isinstance(first, nodes.Text) and first.startswith("Proof. "):
                    rest = first[len("Proof. "):]
                    if rest:
                        body[0].replace(first, nodes.Text(rest))
                    else:
                        body[0].remove(first)
            begin = nodes.raw("", "\n\\begin{proof}\n", format="latex")
            end = nodes.raw("", "\\end{proof}\n", format="latex")   # no blank line: the square ends the last line
            proof.replace_self([begin, *body, end])


class LongTables(SphinxPostTransform):
    """A long table with given column widths (the course map) breaks across pages instead of running off one."""

    default_priority = 900
    builders = ("latex",)
    ROWS = 12

    def run(self, **kwargs) -> None:
        for table in self.document.findall(nodes.table):
            widths = {spec.get("colwidth") for spec in table.findall(nodes.colspec)}
            if len(list(table.findall(nodes.row))) >= self.ROWS and len(widths) > 1 and "longtable" not in table["classes"]:
                # a longtable cannot size its columns from their contents as tabulary does, so only a table
                # whose author gave the widths (the course map) becomes one, with those widths
                table["classes"] += ["longtable", "colwidths-given"]


class BibliographyInPlace(SphinxPostTransform):
    """The bibliography stays in its chapter ("References") instead of an extra chapter at the end of the book.

    Sphinx gathers every citation into one ``thebibliography`` at the end of the LaTeX document (its own
    "Bibliography" chapter), which left the References chapter empty. The list is put back under that chapter's
    heading; the environment's own page break, heading and contents line are switched off around it.
    """

    default_priority = 760   # after Sphinx's BibliographyTransform (750)
    builders = ("latex",)
    BEGIN = (r"\begingroup\let\cleardoublepage\relax\renewcommand{\chapter}[2]{}"
             r"\renewcommand{\addcontentsline}[3]{}\renewcommand{\bibname}{%s}" "\n")

    def run(self, **kwargs) -> None:
        from sphinx.builders.latex.nodes import thebibliography

        lists = list(self.document.findall(thebibliography))
        bibliographies = getattr(self.env.domains.get("cite"), "bibliographies", {})
        docs = {key.docname for key in bibliographies}
        if len(lists) != 1 or len(docs) != 1:
            return
        for chapter in self.document.findall(addnodes.start_of_file):
            section = chapter.next_node(nodes.section)
            if chapter["docname"] in docs and section is not None:
                title = texescape.escape(self.env.titles[chapter["docname"]].astext())
                lists[0].parent.remove(lists[0])
                section += [nodes.raw("", self.BEGIN % title, format="latex"), lists[0],
                            nodes.raw("", "\\endgroup\n", format="latex")]
                return


class ChapterNumbers(SphinxPostTransform):
    """Before each chapter of the assembled book, ``\\labcodechapter{N}`` with its number on the site."""

    default_priority = 900
    builders = ("latex",)

    def run(self, **kwargs) -> None:
        secnumbers = self.env.toc_secnumbers
        for chapter in self.document.findall(addnodes.start_of_file):
            number = secnumbers.get(chapter["docname"], {}).get("", ())
            number = str(number[0]) if len(number) == 1 else ""
            chapter.insert(0, nodes.raw("", rf"\labcodechapter{{{number}}}", format="latex"))


class TableParser(HTMLParser):
    """Rows of a plain HTML table: ``[(is_header, [cell text, ...]), ...]``; ``ok`` is False for anything richer."""

    ALLOWED = frozenset({"table", "thead", "tbody", "tr", "th", "td"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.rows: list[tuple[bool, list[str]]] = []
        self.ok = True
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag not in self.ALLOWED:
            self.ok = False
        elif tag == "tr":
            self.rows.append((False, []))
        elif tag in ("th", "td"):
            if not self.rows:
                self.ok = False
                return
            self._cell = []
            if tag == "th":
                self.rows[-1] = (True, self.rows[-1][1])

    def handle_endtag(self, tag: str) -> None:
        if tag in ("th", "td") and self._cell is not None:
            self.rows[-1][1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        elif data.strip():
            self.ok = False


def table_node(rows: list[tuple[bool, list[str]]]) -> nodes.table:
    width = max(len(cells) for _, cells in rows)
    table = nodes.table(classes=["colwidths-auto"])
    group = nodes.tgroup(cols=width)
    table += group
    group += [nodes.colspec(colwidth=1) for _ in range(width)]
    head, body = nodes.thead(), nodes.tbody()
    for is_header, cells in rows:
        row = nodes.row()
        for text in cells + [""] * (width - len(cells)):
            row += nodes.entry("", nodes.paragraph(text=text))
        (head if is_header and not body.children else body).append(row)
    if head.children:
        group += head
    group += body
    return table


class HtmlTablesForLatex(SphinxPostTransform):
    """Give myst-nb a table where a cell's output is an HTML table and its only other form is a placeholder."""

    default_priority = 3   # before myst-nb's SelectMimeType (4) picks one representation per output
    builders = ("latex",)

    def run(self, **kwargs) -> None:
        for bundle in list(self.document.findall(nodes.container)):
            if bundle.get("nb_element") != "mime_bundle":
                continue
            by_type = {child.get("mime_type"): child for child in bundle.children}
            if "text/html" not in by_type or set(by_type) - {"text/html", "text/plain"}:
                continue   # an image or a LaTeX form exists: myst-nb's priorities choose it
            plain = by_type.get("text/plain")
            if plain is not None and not PLACEHOLDER.fullmatch(plain.astext().strip()):
                continue   # a real text form exists
            parser = TableParser()
            parser.feed(by_type["text/html"].astext())
            parser.close()
            if parser.ok and parser.rows and any(cells for _, cells in parser.rows):
                bundle += nodes.container("", table_node(parser.rows), mime_type="text/latex")
            else:
                LOGGER.warning("an output has only an HTML form that the PDF cannot show; give it an image/png or "
                               "text/plain representation [labcode_pdf.html_output]",
                               location=bundle, type="labcode_pdf", subtype="html_output")


def setup(app: Sphinx) -> dict:
    app.connect("config-inited", add_macros_to_preamble, priority=900)
    app.connect("builder-inited", on_builder_inited, priority=900)   # after sphinx-jupyterbook-latex's
    app.connect("doctree-resolved", on_doctree_resolved)   # the LaTeX builder emits no write-started
    app.add_post_transform(ChapterNumbers)
    app.add_post_transform(HtmlTablesForLatex)
    app.add_post_transform(Proofs)
    app.add_post_transform(LongTables)
    app.add_post_transform(BibliographyInPlace)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
