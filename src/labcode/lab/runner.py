"""The lab's autograder, the runner: ``python -m labcode.grade PATH`` (chapter "For students", the lab).

``PATH`` is a student's notebook (``.ipynb``, or a MyST ``.md`` notebook) or a
Python module (``.py``). Its code cells run in order in one fresh namespace;
IPython magics and shell lines (``%...``, ``!...``) are dropped, and a cell
that raises is recorded and skipped. Then each of the eleven functions of
:data:`labcode.lab.checklist.CHECKLIST` is checked **in isolation**: the student's
function is rebuilt with a copy of the namespace in which the *other* ten
names are ``labcode``'s reference implementations, so a bug in one function
fails only its own check. A crash (``NotImplementedError`` included) fails
that check and the next one runs.

The checks (:mod:`labcode.lab.checks`) compare against independent references (``torch.distributions``,
closed forms, ``labcode``) with a seeded ``torch.Generator`` and a stated
tolerance. The table shows, per function, pass or fail, the measured and the
expected value and, on failure, a hint; then the score. The exit status is 0
only if every check passes.
"""


from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import time
import types
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from .checklist import CHECKLIST
from .checks import CHECKS, CheckFailed

#: set while a notebook's cells run, so that a self-grading cell inside the
#: notebook does not start a second grading
_executing_student_code = False


@dataclass(frozen=True)
class Result:
    """One row of the grading table.

    Attributes:
        name: the checklist function.
        passed: whether every check of that function passed.
        measured: what the student's function gave (or the error it raised).
        expected: the reference value or relation, with its tolerance.
        hint: on failure, what to look at.
        seconds: time the check took.
    """

    name: str
    passed: bool
    measured: str
    expected: str
    hint: str = ""
    seconds: float = 0.0



# --------------------------------------------------------------------------- isolation and grading

def isolated(name: str, ns: Mapping[str, Any]) -> Callable:
    """The student's ``ns[name]``, rebuilt so that the other checklist names resolve to the references.

    A plain Python function gets a new globals dict: a copy of its own
    globals (the student's namespace, for a function defined in a notebook
    cell) with the other ten checklist functions replaced by ``labcode``'s;
    defaults, keyword defaults and closure are kept. Other callables are
    returned as they are.
    """
    f = ns[name]
    if not isinstance(f, types.FunctionType):
        return f
    scope = dict(f.__globals__)
    scope.update({item.name: item.reference for item in CHECKLIST if item.name != name})
    g = types.FunctionType(f.__code__, scope, f.__name__, f.__defaults__, f.__closure__)
    g.__kwdefaults__ = f.__kwdefaults__
    g.__dict__.update(f.__dict__)
    return g


@contextlib.contextmanager
def _grading_threads() -> Iterator[None]:
    """One intra-op thread: the checks use small tensors, for which extra threads only add contention."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def grade_namespace(ns: Mapping[str, Any]) -> list[Result]:
    """Grade the eleven checklist functions found in ``ns`` (a student's globals); one :class:`Result` each.

    Called from a cell of a notebook that the grader is executing, it returns
    ``[]`` (that notebook is graded once, after all its cells have run).
    """
    if _executing_student_code:
        return []
    results = []
    with _grading_threads():
        for item in CHECKLIST:
            check, expected = CHECKS[item.name]
            start = time.perf_counter()
            if item.name not in ns:
                results.append(Result(item.name, False, "not defined", expected, f"define {item.name}"))
                continue
            if not callable(ns[item.name]):
                results.append(Result(item.name, False, f"not a function ({type(ns[item.name]).__name__})",
                                      expected, f"define {item.name} with def"))
                continue
            try:
                measured, expected = check(isolated(item.name, ns))
                result = Result(item.name, True, measured, expected)
            except CheckFailed as fail:
                result = Result(item.name, False, fail.measured, fail.expected, fail.hint)
            except NotImplementedError as err:
                untouched = str(err) == f"TODO: implement {item.name}"
                measured = "not implemented (TODO)" if untouched else f"NotImplementedError: {err}"
                result = Result(item.name, False, measured, expected, "replace the TODO body")
            except Exception as err:
                result = Result(item.name, False, f"{type(err).__name__}: {err}", expected,
                                "it raised an error; see the TODO hints: " + item.hints[0])
            results.append(replace(result, seconds=time.perf_counter() - start))
    return results


@dataclass(frozen=True)
class CellError:
    """A code cell that raised while the student's file ran."""

    index: int
    error: str


def code_cells(path: Path) -> list[str]:
    """The code cells of a notebook (``.ipynb``, MyST ``.md``) or module (``.py``, one cell)."""
    suffix = path.suffix.lower()
    if suffix == ".py":
        return [path.read_text(encoding="utf-8")]
    if suffix == ".ipynb":
        import nbformat
        nb = nbformat.read(path, as_version=4)
    elif suffix == ".md":
        import jupytext
        nb = jupytext.read(path)
    else:
        raise ValueError(f"path must be a .ipynb, .md or .py file, got {path.name!r}")
    return [cell.source for cell in nb.cells if cell.cell_type == "code"]


def _strip_magics(source: str) -> str:
    """Drop IPython magics and shell escapes (lines starting with % or !)."""
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())


def run_cells(cells: list[str], *, name: str = "__main__") -> tuple[dict[str, Any], list[CellError]]:
    """Run ``cells`` in order in one fresh namespace; a cell that raises is recorded and skipped.

    The cells' printed output is discarded; matplotlib draws off screen.
    """
    global _executing_student_code
    os.environ.setdefault("MPLBACKEND", "Agg")
    ns: dict[str, Any] = {"__name__": name}
    errors = []
    _executing_student_code = True
    try:
        for index, source in enumerate(cells):
            sink = io.StringIO()
            try:
                code = compile(_strip_magics(source), f"<cell {index + 1}>", "exec")
                with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                    exec(code, ns)
            except (Exception, SystemExit) as err:   # a cell calling exit() must not end the grading
                errors.append(CellError(index + 1, f"{type(err).__name__}: {err}"))
    finally:
        _executing_student_code = False
    return ns, errors


def grade_path(path: str | Path) -> list[Result]:
    """Run the student's file (see :func:`code_cells`) and grade its namespace."""
    return grade_path_verbose(path)[0]


def grade_path_verbose(path: str | Path) -> tuple[list[Result], list[CellError]]:
    """:func:`grade_path`, also returning the cells that raised."""
    path = Path(path)
    cells = code_cells(path)
    ns, errors = run_cells(cells, name="__main__" if path.suffix.lower() != ".py" else "__student__")
    return grade_namespace(ns), errors


# --------------------------------------------------------------------------- the report

def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def format_report(results: list[Result], errors: list[CellError] = ()) -> str:
    """The grading table (function, result, measured, expected, hint on failure) and the score."""
    lines = []
    for err in errors:
        lines.append(f"note: cell {err.index} raised {_clip(err.error, 100)}")
    if errors:
        lines.append("")
    if not results:
        return "\n".join([*lines, "nothing graded"])
    widths = (max(len(r.name) for r in results), 4, 44, 40)
    header = ("function", "", "measured", "expected")
    lines.append("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + "  hint")
    lines.append("  ".join("-" * w for w in widths) + "  ----")
    for r in results:
        cells = (r.name, "pass" if r.passed else "FAIL", _clip(r.measured, widths[2]), _clip(r.expected, widths[3]))
        row = "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True))
        lines.append((row + "  " + " ".join(r.hint.split())) if not r.passed else row.rstrip())
    score = sum(r.passed for r in results)
    lines.append("")
    lines.append(f"Score: {score}/{len(results)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line: grade PATH, print the table; exit status 0 only if every check passes."""
    parser = argparse.ArgumentParser(prog="python -m labcode.grade", description=__doc__.split("\n\n")[0])
    parser.add_argument("path", type=Path, help="the student's notebook (.ipynb, MyST .md) or module (.py)")
    args = parser.parse_args(argv)
    if not args.path.is_file():
        print(f"error: no such file: {args.path}", file=sys.stderr)
        return 2
    try:
        results, errors = grade_path_verbose(args.path)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(format_report(results, errors))
    return 0 if results and all(r.passed for r in results) else 1


if __name__ == "__main__":
    # Run the imported module's main, so that a notebook cell that imports
    # labcode.grade sees the same module state (_executing_student_code).
    from labcode.lab.runner import main as _main

    sys.exit(_main())
