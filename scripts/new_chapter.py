"""Add a chapter to the book: a working page in the house style, and every place the tests require it to be.

Usage: .venv/bin/python scripts/new_chapter.py NAME [--title "…"] [--part "…"] [--objective "…"]

Creates book/NAME.md from scripts/chapter_template.md (front matter, a hidden setup cell, a glued number used in
prose, a figure from labcode.plots with caption, name and alt text referenced by {numref}, a hidden assertion
behind a claim, a self-check) and adds the chapter

1. to _toc.yml, as the last chapter of the part PART (default: the last numbered part before the Summary);
2. to book/course-map.yml, when PART is numbered (the landing page's map): OBJECTIVE, and the chapter before it
   as its prerequisite;
3. to the summary's map of the course (HIERARCHY in src/labcode/plots/summary.py), when PART is drawn there:
   a box in the row of the part's last chapter, or a new row after it;

and finally writes book/NAME.ipynb and the install cell (scripts/sync_notebooks.py). The page builds and passes
every test as it is; then replace its text and cells with the chapter's.

NAME must be new (no page, notebook or folder book/NAME), lower case, a letter first, then letters, digits
and underscores (it becomes the file name and the URL). Bad input ends it with one line and exit status 2
before anything is written.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from pathlib import Path

from booktools import ROOT, ArgumentParser, UsageError, load_mapping, read_text, run, shown, source, toc_files, write_text
from sync_notebooks import sync

TEMPLATE = Path(__file__).resolve().with_name("chapter_template.md")
NAME = re.compile(r"[a-z][a-z0-9_]*")
MAP = "book/course-map.yml"
SUMMARY = "src/labcode/plots/summary.py"
SUMMARY_DOC = "book/summary"
DEFAULT_OBJECTIVE = "Say here what a reader will be able to do after this chapter."
CONCEPT_LENGTH = 22   # the longest box label of the summary's map that fits in a box of a full row


@dataclass
class Part:
    caption: str
    numbered: bool
    chapters: list[str]          # its chapters' toc paths (sections not included)


def parts(root: Path) -> list[Part]:
    toc = load_mapping(root / "_toc.yml")
    found = []
    for part in toc.get("parts", []) or []:
        if isinstance(part, dict) and part.get("caption"):
            chapters = [str(c["file"]) for c in part.get("chapters", []) or [] if isinstance(c, dict) and "file" in c]
            found.append(Part(str(part["caption"]), bool(part.get("numbered")), chapters))
    if not found:
        raise UsageError(f"{shown(root / '_toc.yml')}: no parts with a caption (the book's table of contents has parts)")
    return found


def chosen_part(all_parts: list[Part], caption: str | None) -> Part:
    """The part named ``caption``, or by default the last numbered part before the Summary."""
    if caption is not None:
        for part in all_parts:
            if part.caption == caption and part.chapters:
                return part
            if part.caption == caption:
                raise UsageError(f"part {caption!r} of _toc.yml has no chapter to follow: add the first one by hand")
        raise UsageError(f"no part {caption!r} in _toc.yml (parts: {', '.join(repr(p.caption) for p in all_parts)})")
    numbered = [p for p in all_parts if p.numbered and SUMMARY_DOC not in p.chapters]
    if not numbered:
        raise UsageError("_toc.yml has no numbered part for a chapter: name one with --part")
    return numbered[-1]


def check_name(name: str, root: Path) -> str:
    if not NAME.fullmatch(name):
        raise UsageError(f"chapter name {name!r} is not a lower-case slug (a letter, then letters, digits or _), e.g. score_matching")
    doc = f"book/{name}"
    taken = [shown(p) for p in (root / f"{doc}.md", root / f"{doc}.ipynb", root / doc) if p.exists()]
    if taken or doc in toc_files(root):
        raise UsageError(f"chapter {name!r} exists already ({', '.join(taken) or '_toc.yml'})")
    return doc


def check_line(what: str, text: str) -> str:
    text = text.strip()
    if not text or "\n" in text or "`" in text:
        raise UsageError(f"{what} must be one line of text without backticks, got {text!r}")
    return text


# _toc.yml ---------------------------------------------------------------------------------------------------------

def toc_with(text: str, part: Part, doc: str) -> str:
    """``text`` of _toc.yml with ``doc`` as the last chapter of ``part`` (comments and layout kept)."""
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines)
                  if re.fullmatch(rf"\s*-\s*caption:\s*['\"]?{re.escape(part.caption)}['\"]?\s*", line.rstrip("\n"))), None)
    if start is None:
        raise UsageError(f"_toc.yml: cannot find the line '- caption: {part.caption}'")
    indent = len(lines[start]) - len(lines[start].lstrip())
    end = next((i for i in range(start + 1, len(lines))
                if lines[i].strip() and len(lines[i]) - len(lines[i].lstrip()) <= indent), len(lines))
    entries = [line for line in lines[start:end] if re.match(r"\s*-\s*file:", line)]
    if not entries:
        raise UsageError(f"_toc.yml: part {part.caption!r} has no chapters to follow")
    entry_indent = min(len(line) - len(line.lstrip()) for line in entries)
    last = max(i for i in range(start, end) if lines[i].strip())
    if not lines[last].endswith("\n"):
        lines[last] += "\n"
    lines.insert(last + 1, f"{' ' * entry_indent}- file: {doc}\n")
    new = "".join(lines)
    try:
        toc = load_mapping(Path("_toc.yml"), new)
        placed = next(p for p in toc["parts"] if p.get("caption") == part.caption)["chapters"][-1]["file"] == doc
    except (UsageError, StopIteration, LookupError, TypeError, AttributeError):
        placed = False
    if not placed:
        raise UsageError(f"_toc.yml: cannot add {doc} to part {part.caption!r} automatically; add '- file: {doc}' by hand")
    return new


# book/course-map.yml ----------------------------------------------------------------------------------------------

def map_with(text: str, doc: str, objective: str, before: str | None) -> str:
    """``text`` of the course map with an entry for ``doc`` after the entry of ``before`` (its prerequisite)."""
    quoted = objective if re.fullmatch(r"[A-Za-z][^:#'\"\[\]{},&*!|>%@`]*", objective) else json.dumps(objective, ensure_ascii=False)
    entry = f"{doc}:\n  objective: {quoted}\n  prerequisites: [{before or ''}]\n"
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    at = len(lines)
    if before is not None:
        head = next((i for i, line in enumerate(lines) if line.startswith(f"{before}:")), None)
        if head is not None:
            at = next((i for i in range(head + 1, len(lines)) if lines[i].strip() and not lines[i][0].isspace()), len(lines))
    lines.insert(at, entry)
    return "".join(lines)


# the summary's map (src/labcode/plots/summary.py) -----------------------------------------------------------------

class Source:
    """A Python module's text, edited at the positions of its syntax tree's nodes (columns are UTF-8 bytes)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.starts = [0]
        for line in text.splitlines(keepends=True):
            self.starts.append(self.starts[-1] + len(line))

    def offset(self, line: int, col: int) -> int:
        row = self.text[self.starts[line - 1]:self.starts[line]]
        return self.starts[line - 1] + len(row.encode()[:col].decode())

    def span(self, node: ast.AST) -> tuple[int, int]:
        return self.offset(node.lineno, node.col_offset), self.offset(node.end_lineno, node.end_col_offset)


def _assigned(tree: ast.Module, name: str) -> ast.expr:
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        if any(isinstance(t, ast.Name) and t.id == name for t in targets) and node.value is not None:
            return node.value
    raise UsageError(f"{SUMMARY}: no {name} = [...] to add the chapter to")


def _first_rows(hierarchy: list) -> dict[str, int]:
    rows: dict[str, int] = {}
    for i, (_, concepts) in enumerate(hierarchy):
        for _, chapter in concepts:
            rows.setdefault(chapter, i)
    return rows


def _literal(text: str) -> str:
    """A Python string literal of ``text`` in double quotes (JSON's escapes are Python's)."""
    return json.dumps(text, ensure_ascii=False)


def _after(text: str, end: int, element: str, indent: str | None) -> tuple[int, str]:
    """Where and what to insert to add ``element`` after a list element ending at ``end`` (on a new line when
    ``indent`` is given)."""
    comma = re.match(r"[ \t]*,", text[end:])
    at = end + comma.end() if comma else end
    if indent is None:
        return at, ("" if comma else ",") + f" {element}" + ("," if comma else "")
    return at, ("" if comma else ",") + f"\n{indent}{element}" + ("," if comma else "")


def summary_with(text: str, name: str, concept: str, level_name: str, before: list[str], after: list[str]) -> str:
    """``text`` of the summary's plot module with a box for chapter ``name`` (toc order: ``before`` and ``after`` are
    the drawn chapters before and after it): in the row of the chapter before it, or in a new row below that one."""
    source_ = Source(text)
    tree = ast.parse(text)
    h_node, e_node = _assigned(tree, "HIERARCHY"), _assigned(tree, "EDGES")
    hierarchy, edges = ast.literal_eval(h_node), ast.literal_eval(e_node)
    rows = _first_rows(hierarchy)
    previous = before[-1]
    row = max(rows[c] for c in before)
    later = min((rows[c] for c in after), default=len(hierarchy))
    box = f"({_literal(concept)}, {_literal(name)})"
    edits: list[tuple[int, int, str]] = []         # (start, end, replacement) in the text
    prev_box = next((i, j) for i, (_, concepts) in enumerate(hierarchy) for j, (_, c) in enumerate(concepts) if c == previous)
    if len(hierarchy[row][1]) < 3:                 # a box at the end of that row
        column = len(hierarchy[row][1])
        concepts_node = h_node.elts[row].elts[1]
        at, insert = _after(text, source_.span(concepts_node.elts[-1])[1], box, None)
        edits.append((at, at, insert))
        new_box, shifted = (row, column), edges
        link = prev_box if prev_box == (row, column - 1) or prev_box[0] < row else None
    else:                                          # a row of its own, below
        if later <= row:
            raise UsageError(f"cannot place {name} in the summary's map ({SUMMARY}): row {row} is full and holds a later "
                             "chapter; add the chapter to HIERARCHY by hand")
        level = f"({_literal(level_name)}, [{box}])"
        at, insert = _after(text, source_.span(h_node.elts[row])[1], level, " " * h_node.elts[row].col_offset)
        edits.append((at, at, insert))
        new_box = (row + 1, 0)
        shifted = [tuple((i + (i > row), j) for i, j in edge) for edge in edges]
        for node, old, new in zip(e_node.elts, edges, shifted, strict=True):
            if old != new:
                start, end = source_.span(node)
                edits.append((start, end, str(new)))
        link = prev_box
    if link is not None:
        edge = str((link, new_box))
        last_line = text[:source_.span(e_node.elts[-1])[1]].rsplit("\n", 1)[-1]
        indent = None if len(last_line) + len(edge) < 110 else " " * e_node.elts[0].col_offset
        at, insert = _after(text, source_.span(e_node.elts[-1])[1], edge, indent)
        edits.append((at, at, insert))
    for start, end, replacement in sorted(edits, reverse=True):
        text = text[:start] + replacement + text[end:]
    new_tree = ast.parse(text)
    new_rows = _first_rows(ast.literal_eval(_assigned(new_tree, "HIERARCHY")))
    rows_in_order = [new_rows.get(c, -1) for c in [*before, name, *after]]
    if rows_in_order != sorted(rows_in_order) or len(ast.literal_eval(_assigned(new_tree, "EDGES"))) != len(edges) + (link is not None):
        raise UsageError(f"cannot place {name} in the summary's map ({SUMMARY}) automatically; add it to HIERARCHY by hand")
    return text


# the chapter ------------------------------------------------------------------------------------------------------

def chapter_text(name: str, title: str) -> str:
    return read_text(TEMPLATE).replace("{{title}}", title).replace("{{name}}", name.replace("_", "-"))


def main() -> int:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", metavar="NAME", help="the chapter's file name, e.g. score_matching (book/score_matching.md)")
    parser.add_argument("--title", help="its title (default: NAME in words)")
    parser.add_argument("--part", help="the caption of its part in _toc.yml (default: the last numbered part before the Summary)")
    parser.add_argument("--objective", default=DEFAULT_OBJECTIVE, help="what a reader will be able to do after it (the course map)")
    args = parser.parse_args()
    root = ROOT
    doc = check_name(args.name, root)
    title = check_line("--title", args.title if args.title is not None else args.name.replace("_", " ").capitalize())
    objective = check_line("--objective", args.objective)
    all_parts = parts(root)
    part = chosen_part(all_parts, args.part)

    # everything is computed (and checked) before the first file is written
    order = toc_files(root)
    before = order[:order.index(part.chapters[-1]) + 1]
    after = order[len(before):]
    writes = {source(doc, root): chapter_text(args.name, title),
              root / "_toc.yml": toc_with(read_text(root / "_toc.yml"), part, doc)}
    added = [f"_toc.yml (part {part.caption!r})"]
    if part.numbered:
        numbered = [c for p in all_parts if p.numbered for c in p.chapters]
        previous = next((c for c in reversed(before) if c in numbered), None)
        writes[root / MAP] = map_with(read_text(root / MAP), doc, objective, previous)
        added.append(MAP)
    summary = root / SUMMARY
    drawn = set(_first_rows(ast.literal_eval(_assigned(ast.parse(read_text(summary)), "HIERARCHY"))))
    if any(c.removeprefix("book/") in drawn for c in part.chapters):
        concept = title if len(title) <= CONCEPT_LENGTH else args.name.replace("_", " ")
        writes[summary] = summary_with(read_text(summary), args.name, concept, part.caption.lower(),
                                       [c.removeprefix("book/") for c in before if c.removeprefix("book/") in drawn],
                                       [c.removeprefix("book/") for c in after if c.removeprefix("book/") in drawn])
        added.append(f"the summary's map of the course ({SUMMARY})")
    for path, text in writes.items():
        write_text(path, text)
    sync(check=False, root=root, pages=[doc])
    print(f"created {shown(source(doc, root))} and {shown(source(doc, root).with_suffix('.ipynb'))}; added it to {', '.join(added)}")
    if part.numbered:
        print(f"next: write its objective and prerequisites in {MAP}")
    if summary in writes:
        print(f"next: place its box in the summary's map (HIERARCHY and EDGES in {SUMMARY}) and describe it in that "
              f"figure's caption and alt text ({SUMMARY_DOC}.md)")
    print(f"next: write the chapter; then bash {shown(root / 'scripts' / 'test.sh')} -m quick (seconds: no build) and "
          f"bash {shown(root / 'scripts' / 'build-book.sh')}")
    return 0


if __name__ == "__main__":
    run(main)
