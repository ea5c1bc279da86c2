"""The lab's autograder, in process: run a student's cells and grade the functions they define (chapter "For students").

A student's file is a notebook (``.ipynb``, or a MyST ``.md`` notebook) or a
Python module (``.py``). Its code cells run in order in one fresh namespace;
a cell that does not compile as written is run without its IPython magics and
shell lines (``%...``, ``!...``), and a cell that raises is recorded and skipped. Then each of the eleven functions of
:data:`labcode.lab.checklist.CHECKLIST` is checked **in isolation**: the student's
function is rebuilt with a copy of the namespace in which the *other* ten
names are ``labcode``'s reference implementations, so a bug in one function
fails only its own check. A crash (``NotImplementedError`` included) fails
that check and the next one runs. After the eleven, the **end-to-end row**
(:mod:`labcode.lab.endtoend`) trains and evaluates a small VAE with the
student's functions as they are, calling each other, and compares with
``labcode``; it is reported on its own line, apart from the score of the eleven.

The checks (:mod:`labcode.lab.checks`) compare against independent references (``torch.distributions``,
closed forms, ``labcode``) with a seeded ``torch.Generator`` and a stated
tolerance. The table shows, per function, pass or fail, the measured and the
expected value and, on failure, a hint; then the score.

Everything here runs in the caller's process: it is the student's own feedback
(the self-grading cell of the student edition calls :func:`grade_namespace` on
the notebook's globals) and a tool for trusted code. ``python -m labcode.grade``
grades submissions in a separate worker process instead (:mod:`labcode.lab.sandbox`,
:mod:`labcode.lab.batch`), where a submission cannot reach the checks.
"""


from __future__ import annotations

import contextlib
import io
import os
import re
import time
import types
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from .checklist import CHECKLIST
from .checks import CHECKS, CheckFailed, crash_hint

#: the most characters kept of an exception's message (a student's message can be any size)
MAX_MESSAGE_CHARS = 1000
#: control characters (line breaks and terminal escapes), Unicode line separators and bidirectional overrides, and
#: lone surrogates (the undecodable bytes of a file name)
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff]")

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


class Grades(list):
    """The eleven rows of :func:`grade_namespace`, a list in checklist order, and the end-to-end row.

    Attributes:
        end_to_end: the :class:`Result` named ``"end_to_end"`` (:mod:`labcode.lab.endtoend`), or ``None`` when
            it was not run; :func:`format_report` prints it on a line of its own.
    """

    end_to_end: Result | None = None



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


def not_defined(name: str) -> Result:
    """The row of a checklist function the student did not define."""
    return Result(name, False, "not defined", CHECKS[name][1], f"define {name}")


def not_a_function(name: str, type_name: str) -> Result:
    """The row of a checklist name bound to something that cannot be called (``type_name``: its type)."""
    return Result(name, False, f"not a function ({type_name})", CHECKS[name][1], f"define {name} with def")


def printable(text: str) -> str:
    """``text`` as one line that is safe in a terminal, a CSV cell or a report: its control characters, line
    separators, bidirectional overrides and undecodable bytes become backslash escapes (``\\n``, ``\\x1b``,
    ``\\udce9``)."""
    return _UNPRINTABLE.sub(lambda match: ascii(match.group())[1:-1], text)


def error_message(err: BaseException) -> str:
    """An exception's message, at most :data:`MAX_MESSAGE_CHARS` characters, or a placeholder when its
    ``__str__`` fails."""
    try:
        return str(err)[:MAX_MESSAGE_CHARS]
    except Exception:                              # a student's exception whose __str__ fails
        return "(its message cannot be shown)"


def error_name(err: BaseException) -> str:
    """The name of an exception's type; for an exception raised in the grader's worker, the student's type."""
    return getattr(err, "type_name", None) or type(err).__name__


def check_function(name: str, f: Callable) -> Result:
    """Run the check of the checklist function ``name`` on ``f`` (already isolated); a failure or a crash fails the row."""
    check, expected = CHECKS[name]
    start = time.perf_counter()
    try:
        measured, expected = check(f)
        result = Result(name, True, measured, expected)
    except CheckFailed as fail:
        result = Result(name, False, fail.measured, fail.expected, fail.hint)
    except NotImplementedError as err:
        untouched = error_message(err) == f"TODO: implement {name}"
        measured = "not implemented (TODO)" if untouched else f"NotImplementedError: {error_message(err)}"
        result = Result(name, False, measured, expected, "replace the TODO body")
    except Exception as err:
        result = Result(name, False, f"{error_name(err)}: {error_message(err)}", expected, crash_hint(name))
    return replace(result, seconds=time.perf_counter() - start)


def grade_namespace(ns: Mapping[str, Any], *, end_to_end: bool = True) -> Grades:
    """Grade the eleven checklist functions found in ``ns`` (a student's globals); one :class:`Result` each.

    With ``end_to_end`` the result's ``end_to_end`` is the end-to-end row (:func:`grade_end_to_end`), run
    after the eleven. Called from a cell of a notebook that the grader is executing, it returns an empty
    :class:`Grades` (that notebook is graded once, after all its cells have run).
    """
    if not isinstance(ns, Mapping):
        raise TypeError(f"ns must be a mapping (a namespace such as globals()), got {type(ns).__name__}")
    if _executing_student_code:
        return Grades()
    results = Grades()
    with _grading_threads():
        for item in CHECKLIST:
            if item.name not in ns:
                results.append(not_defined(item.name))
            elif not callable(ns[item.name]):
                results.append(not_a_function(item.name, type(ns[item.name]).__name__))
            else:
                results.append(check_function(item.name, isolated(item.name, ns)))
    if end_to_end:
        results.end_to_end = grade_end_to_end(ns, results)
    return results


def incomplete(names: Mapping[str, str], results: list[Result] = ()) -> tuple[str, str] | None:
    """``(name, why)`` of the first checklist function the end-to-end row cannot run without, or ``None``.

    ``names`` maps each checklist name to ``"function"``, ``"missing"`` or ``"not a function: TYPE"``
    (:func:`namespace_states`); ``results`` (the eleven rows) tell a function that still raises
    ``NotImplementedError``.
    """
    for item in CHECKLIST:
        state = names.get(item.name, "missing")
        if state != "function":
            return item.name, "is not defined" if state == "missing" else f"is {state}"
    for r in results:
        if r.measured.startswith(("not implemented", "NotImplementedError")):
            return r.name, "is not implemented"
    return None


def namespace_states(ns: Mapping[str, Any]) -> dict[str, str]:
    """Each checklist name's state in ``ns``: ``"function"``, ``"missing"`` or ``"not a function: TYPE"``."""
    return {item.name: ("missing" if item.name not in ns else "function" if callable(ns[item.name])
                        else f"not a function: {type(ns[item.name]).__name__}") for item in CHECKLIST}


def grade_end_to_end(ns: Mapping[str, Any], results: list[Result] = ()) -> Result:
    """The end-to-end row for ``ns``: :func:`labcode.lab.endtoend.run_pipeline` on the student's own functions
    (not isolated), judged by :func:`~labcode.lab.endtoend.check_end_to_end`. A function that is missing, or
    whose row in ``results`` says it is not implemented, fails the row at once."""
    from .endtoend import check_end_to_end, needs_all, run_pipeline  # here: endtoend imports this module

    start = time.perf_counter()
    missing = incomplete(namespace_states(ns), results)
    if missing is not None:
        return needs_all(*missing)
    with _grading_threads():
        result = check_end_to_end(run_pipeline(ns))
    return replace(result, seconds=time.perf_counter() - start)


@dataclass(frozen=True)
class CellError:
    """A code cell that did not run through while the student's file ran.

    Attributes:
        index: the cell's number, from 1.
        error: the exception, ``"Type: message"`` (the message cut at :data:`MAX_MESSAGE_CHARS`).
        kind: ``"raised"`` (an exception, ``SystemExit`` included), ``"syntax"`` (the cell does not compile)
            or ``"memory"`` (it ran out of memory).
    """

    index: int
    error: str
    kind: str = "raised"


def is_out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` says memory ran out: Python's ``MemoryError`` or torch's failed allocation."""
    return isinstance(err, MemoryError) or (isinstance(err, RuntimeError) and "can't allocate memory" in str(err))


def code_cells(path: Path) -> list[str]:
    """The code cells of a notebook (``.ipynb``, MyST ``.md``) or module (``.py``, one cell)."""
    suffix = path.suffix.lower()
    if suffix == ".py":
        return [path.read_text(encoding="utf-8-sig")]
    if suffix == ".ipynb":
        import nbformat
        nb = nbformat.read(path, as_version=4)
    elif suffix == ".md":
        import jupytext
        nb = jupytext.read(path)
    else:
        raise ValueError(f"path must be a .ipynb, .md or .py file, got {path.name!r}")
    return [cell.source for cell in nb.cells if cell.cell_type == "code"]


def _compile_cell(source: str, index: int) -> types.CodeType:
    """The cell's code as written or, if that does not compile, without its IPython magics and shell escapes
    (lines starting with ``%`` or ``!``: not a continuation line such as ``% n`` in valid Python)."""
    try:
        return compile(source, f"<cell {index}>", "exec")
    except (SyntaxError, ValueError):
        pass
    lines = source.split("\n")                     # not splitlines: a form feed or U+2028 is no line break to Python
    return compile("\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in lines),
                   f"<cell {index}>", "exec")


def run_cells(cells: list[str], *, name: str = "__main__",
              on_cell: Callable[[int], None] | None = None) -> tuple[dict[str, Any], list[CellError]]:
    """Run ``cells`` in order in one fresh namespace; a cell that raises is recorded and skipped.

    ``on_cell(index)`` is called before each cell runs (``index`` from 1). The
    cells' printed output is discarded; matplotlib draws off screen.
    """
    global _executing_student_code
    os.environ.setdefault("MPLBACKEND", "Agg")
    ns: dict[str, Any] = {"__name__": name}
    errors = []
    _executing_student_code = True
    try:
        for index, source in enumerate(cells, start=1):
            if on_cell is not None:
                on_cell(index)
            try:
                code = _compile_cell(source, index)
            except (SyntaxError, ValueError) as err:     # ValueError: a null byte in the source
                errors.append(CellError(index, f"{type(err).__name__}: {error_message(err)}", "syntax"))
                continue
            sink = io.StringIO()
            try:
                with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                    exec(code, ns)
            except (Exception, SystemExit) as err:   # a cell calling exit() must not end the grading
                kind = "memory" if is_out_of_memory(err) else "raised"
                errors.append(CellError(index, f"{type(err).__name__}: {error_message(err)}", kind))
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

def _line(text: str) -> str:
    return printable(" ".join(text.split()))


def _clip(text: str, width: int) -> str:
    text = _line(text)
    return text if len(text) <= width else text[: width - 1] + "…"


def format_report(results: list[Result], errors: list[CellError] = (), end_to_end: Result | None = None) -> str:
    """The grading table (function, result, measured, expected, hint on failure), the end-to-end row on a line of
    its own (``end_to_end``, else ``results.end_to_end`` when ``results`` is :class:`Grades`) and the score of
    the eleven."""
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
        lines.append((row + "  " + _line(r.hint)) if not r.passed else row.rstrip())
    score = sum(r.passed for r in results)
    lines.append("")
    end_to_end = end_to_end if end_to_end is not None else getattr(results, "end_to_end", None)
    if end_to_end is not None:
        lines.append(end_to_end_line(end_to_end))
    lines.append(f"Score: {score}/{len(results)}")
    return "\n".join(lines)


def end_to_end_line(r: Result) -> str:
    """The end-to-end row as one line: pass or FAIL, what was measured and, on failure, the expected and the hint."""
    from .endtoend import EXPECTED, TITLE

    if r.passed:
        return f"{TITLE}: pass: {_clip(r.measured, 200)}"
    expected = "" if r.expected == EXPECTED else f" (expected {_clip(r.expected, 120)})"
    return f"{TITLE}: FAIL: {_clip(r.measured, 300)}{expected}; hint: {_clip(r.hint, 300)}"
