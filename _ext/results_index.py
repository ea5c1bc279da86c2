"""Sphinx extension: the book's index of results, generated from its sphinx-proof directives.

``{results-index}`` renders a table of every definition, theorem, proposition, lemma and
corollary of the book: its number and title (linked), the chapter that proves it and the
chapters that cite it with ``{prf:ref}``. Nothing is written by hand, so the index cannot
drift from the chapters.

The extension also keeps the rule "a result is proved once and cited everywhere else":
it warns (an error under ``-W``) when two directives state the same result under
different labels (the same title once case, punctuation and math are normalised away),
and when a labelled directive that the index does not list (a remark, an example) is
never cited, so its label is dead.
"""

from __future__ import annotations

import re
import unicodedata

from docutils import nodes
from sphinx.addnodes import pending_xref
from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

LOGGER = logging.getLogger(__name__)
#: the kinds of directive the index lists (the results); the others must be cited to keep a label
LISTED = ("definition", "theorem", "proposition", "lemma", "corollary")
#: remarks whose label ends so are the book's corrections of the lab handout, listed in a table of their own
CORRECTION_SUFFIX = "-rem-handout"


def is_listed(realtype: str, label: str) -> bool:
    """Whether the index lists a directive: a result, or a correction of the lab handout."""
    return realtype in LISTED or (realtype == "remark" and label.endswith(CORRECTION_SUFFIX))


class results_index_node(nodes.General, nodes.Element):
    """Placeholder for the table, replaced once every page has been read."""


class ResultsIndex(SphinxDirective):
    def run(self) -> list[nodes.Node]:
        return [results_index_node("")]


def normalise_title(title: str) -> str:
    """Lower case, math and punctuation removed, whitespace collapsed: "The ELBO's gap ($K$)" -> "the elbos gap"."""
    text = re.sub(r"\$[^$]*\$", " ", title)
    text = unicodedata.normalize("NFKD", text).lower()
    text = re.sub(r"[^\w\s]", "", text)
    return " ".join(text.split())


def _state(env) -> tuple[dict, dict]:
    if not hasattr(env, "labcode_results"):
        env.labcode_results = {}     # docname -> [(label, realtype, title)]
    if not hasattr(env, "labcode_citations"):
        env.labcode_citations = {}   # docname -> sorted labels cited with {prf:ref}
    return env.labcode_results, env.labcode_citations


def on_doctree_read(app: Sphinx, doctree: nodes.document) -> None:
    results, citations = _state(app.env)
    docname = app.env.docname
    found = []
    for node in doctree.findall(lambda n: isinstance(n, nodes.Element) and "realtype" in n.attributes):
        if node.get("realtype") == "proof":
            continue
        title = re.sub(r"^\s*\((.*)\)\s*$", r"\1", node.get("title", ""))   # sphinx-proof stores " (title)"
        found.append((node.get("label", ""), node.get("realtype", ""), title, _title_nodes(node)))
    results[docname] = found
    if any(True for _ in doctree.findall(results_index_node)):
        # the table's titles carry math that is inserted after reading: load MathJax on this page
        app.env.get_domain("math").data["has_equations"][docname] = True
    citations[docname] = sorted({x["reftarget"] for x in doctree.findall(pending_xref) if x.get("refdomain") == "prf"})


def _title_nodes(node: nodes.Element) -> list[nodes.Node]:
    """The parsed title (math typeset), without the parentheses sphinx-proof puts around it."""
    heading = next(iter(node.findall(nodes.title)), None)
    if heading is None:
        return []
    children = [child.deepcopy() for child in heading.children]
    if children and isinstance(children[0], nodes.Text):
        children[0] = nodes.Text(re.sub(r"^\s*\(", "", str(children[0])))
    if children and isinstance(children[-1], nodes.Text):
        children[-1] = nodes.Text(re.sub(r"\)\s*$", "", str(children[-1])))
    return children


def on_env_purge_doc(app: Sphinx, env, docname: str) -> None:
    results, citations = _state(env)
    results.pop(docname, None)
    citations.pop(docname, None)


def on_env_merge_info(app: Sphinx, env, docnames, other) -> None:
    results, citations = _state(env)
    other_results, other_citations = _state(other)
    for doc in docnames:
        results[doc] = other_results.get(doc, [])
        citations[doc] = other_citations.get(doc, [])


def _pages_with_index(env) -> list[str]:
    return [doc for doc in env.found_docs
            if "{results-index}" in open(env.doc2path(doc), encoding="utf-8").read()]


def on_env_get_outdated(app: Sphinx, env, added, changed, removed) -> list[str]:
    """The index page is re-read on every build: any chapter may have changed a result."""
    return _pages_with_index(env)


def _cited_by(env) -> dict[str, list[str]]:
    _, citations = _state(env)
    cited: dict[str, set[str]] = {}
    for doc, labels in citations.items():
        for label in labels:
            cited.setdefault(label, set()).add(doc)
    return {label: sorted(docs) for label, docs in cited.items()}


def on_env_check_consistency(app: Sphinx, env) -> None:
    """Warn on a result stated twice, and on a label (of a kind the index does not list) that nobody cites."""
    results, _ = _state(env)
    cited = _cited_by(env)
    seen: dict[tuple[str, str], tuple[str, str]] = {}
    for doc in sorted(results):
        for label, realtype, title, _ in results[doc]:
            if realtype in LISTED and title:
                key = (realtype, normalise_title(title))
                if key in seen and seen[key][0] != label:
                    other_label, other_doc = seen[key]
                    LOGGER.warning(f"{realtype} '{title}' is stated twice: {label} ({doc}) and {other_label} "
                                   f"({other_doc}); prove it once and cite it with {{prf:ref}}",
                                   location=doc, type="labcode", subtype="results")
                seen.setdefault(key, (label, doc))
            automatic = re.fullmatch(rf"{realtype}-\d+", label) is not None   # sphinx-proof's name for an unlabelled one
            if not is_listed(realtype, label) and label and not automatic and label not in cited:
                LOGGER.warning(f"{realtype} label '{label}' is never cited: cite it with {{prf:ref}} or drop the label",
                               location=doc, type="labcode", subtype="results")


def _number(env, docname: str, countertype: str, label: str) -> str:
    numbers = env.toc_fignumbers.get(docname, {}).get(countertype, {}).get(label)
    return ".".join(map(str, numbers)) if numbers else ""


def _paragraph_link(builder, fromdoc: str, todoc: str, anchor: str, text: str) -> nodes.paragraph:
    uri = builder.get_relative_uri(fromdoc, todoc) + (f"#{anchor}" if anchor else "")
    return nodes.paragraph("", "", nodes.reference("", text, refuri=uri, internal=True))


def _chapter_title(env, docname: str) -> str:
    title = env.titles.get(docname)
    return title.astext() if title is not None else docname


def _doc_order(env) -> dict[str, int]:
    order = {}
    for doc in [env.config.root_doc, *env.toctree_includes.get(env.config.root_doc, [])]:
        _walk(env, doc, order)
    return order


def _walk(env, doc: str, order: dict[str, int]) -> None:
    if doc in order:
        return
    order[doc] = len(order)
    for child in env.toctree_includes.get(doc, []):
        _walk(env, child, order)


def on_doctree_resolved(app: Sphinx, doctree: nodes.document, fromdoc: str) -> None:
    placeholders = list(doctree.findall(results_index_node))
    if not placeholders:
        return
    env = app.env
    results, _ = _state(env)
    cited = _cited_by(env)
    order = _doc_order(env)
    rows = [(doc, label, realtype, title) for doc in sorted(results, key=lambda d: (order.get(d, len(order)), d))
            for label, realtype, _, title in results[doc]]
    results_table = _table(app, fromdoc, [r for r in rows if r[2] in LISTED], cited, order, "results-index")
    corrections = [r for r in rows if r[2] not in LISTED and is_listed(r[2], r[1])]
    section = [results_table]
    if corrections:
        intro = nodes.paragraph(text="The book's corrections of the lab handout, each a remark in the chapter "
                                     "where the mathematics or the measurements contradict the handout:")
        section += [intro, _table(app, fromdoc, corrections, cited, order, "handout-corrections")]
    for placeholder in placeholders:
        placeholder.replace_self([node.deepcopy() for node in section])


def _table(app: Sphinx, fromdoc: str, rows: list[tuple[str, str, str, list]], cited: dict[str, list[str]],
           order: dict[str, int], css: str) -> nodes.table:
    env, builder = app.env, app.builder
    table = nodes.table(classes=[css])
    header = ["result", "proved in", "cited in"] if css == "results-index" else ["correction", "in", "cited in"]
    group = nodes.tgroup(cols=len(header))
    table += group
    group += [nodes.colspec(colwidth=w) for w in (5, 3, 4)]
    head, body = nodes.thead(), nodes.tbody()
    group += [head, body]
    head += nodes.row("", *[nodes.entry("", nodes.paragraph(text=h)) for h in header])
    for doc, label, realtype, title in rows:
        number = _number(env, doc, realtype, label)
        uri = builder.get_relative_uri(fromdoc, doc) + f"#{label}"
        link = nodes.reference("", "", nodes.Text(f"{realtype.title()} {number}" + (": " if title else "")),
                               *[child.deepcopy() for child in title], refuri=uri, internal=True)
        citing = [d for d in cited.get(label, []) if d != doc]
        cited_cell = nodes.entry("")
        for other in sorted(citing, key=lambda d: (order.get(d, len(order)), d)):
            cited_cell += _paragraph_link(builder, fromdoc, other, "", _chapter_title(env, other))
        if not citing:
            cited_cell += nodes.paragraph(text="—")
        body += nodes.row("", nodes.entry("", nodes.paragraph("", "", link)),
                          nodes.entry("", _paragraph_link(builder, fromdoc, doc, "", _chapter_title(env, doc))),
                          cited_cell)
    return table


def setup(app: Sphinx) -> dict:
    app.add_node(results_index_node)
    app.add_directive("results-index", ResultsIndex)
    app.connect("doctree-read", on_doctree_read)
    app.connect("env-purge-doc", on_env_purge_doc)
    app.connect("env-merge-info", on_env_merge_info)
    app.connect("env-get-outdated", on_env_get_outdated)
    app.connect("env-check-consistency", on_env_check_consistency)
    app.connect("doctree-resolved", on_doctree_resolved)
    return {"version": "1.0", "env_version": 2, "parallel_read_safe": True, "parallel_write_safe": True}
