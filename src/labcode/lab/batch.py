"""Grading a class: ``python -m labcode.grade SUBMISSION... [--csv grades.csv] [--reports DIR] [--jobs N] [--timeout S] [--memory MB]``.

A SUBMISSION is a ``.ipynb`` notebook, a MyST ``.md`` notebook, a ``.py``
module, or a folder: every file under it is a submission (hidden files and
folders, such as ``.ipynb_checkpoints``, and ``__pycache__`` are skipped; a file
of another type, or a link to a folder, which is not followed, gets a row with
the status ``not-a-notebook``). Each one is graded by
:func:`labcode.lab.sandbox.grade_submission`, in a worker process of its own
with a wall-clock limit (``--timeout``) and a memory limit (``--memory``);
``--jobs`` submissions at once.

One path that is not a folder and neither ``--csv`` nor ``--reports``: the
grading table is printed (after a status line when the status is not
``graded``) and the exit status is 0 only if all eleven checks and the
end-to-end row (:mod:`labcode.lab.endtoend`) pass, 1 otherwise.

Otherwise (a batch): every submission ends in one row of the CSV
(:data:`CSV_COLUMNS`: the path, ``pass``/``fail`` per checklist function, the
end-to-end row's ``pass``/``fail``, the score of the eleven, the status of
:data:`labcode.lab.sandbox.STATUSES` and the reason), rows
sorted by path, and in one report file (the table with the path, status,
reason and time) in the reports folder: ``--reports DIR``, by default the CSV's
path without its suffix (``grades.csv`` -> ``grades/``), named after the
submission's path below the submissions' common folder (``alice/lab3.ipynb`` ->
``alice__lab3.ipynb.txt``; a name that is too long, or that two submissions
would share, is cut and given a hash of the path: :func:`report_names`). Both
are written by the grader after every worker has ended; nothing a submission
prints reaches them. A one-line summary per submission goes to the standard
output and progress to the standard error. Every path and reason in them is
one printable line: a line break, a terminal escape or an undecodable byte of
a file name is written as a backslash escape
(:func:`labcode.lab.runner.printable`).
The exit status is 0 when every submission has its row, 1 when the grader
itself failed on some (status ``error``: grade those again), 2 on a usage
error (an option out of range, a path that does not exist, a folder without
files) and 130 after Ctrl-C (every worker is killed).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import torch

from .checklist import CHECKLIST
from .checks import CHECKS
from .endtoend import END_TO_END, EXPECTED
from .runner import Result, printable
from .sandbox import (
    DEFAULT_MEMORY_MB,
    DEFAULT_TIMEOUT,
    Graded,
    format_graded,
    grade_submission,
    kill_all_workers,
)

#: the longest report file name before ``.txt``, in bytes (file systems allow 255)
MAX_REPORT_NAME_BYTES = 200

#: the CSV's header: the submission's path, one pass/fail column per checklist function, the end-to-end row's
#: pass/fail, the score of the eleven, the status and the reason
CSV_COLUMNS = ("submission", *(item.name for item in CHECKLIST), END_TO_END, "score", "status", "reason")


def collect_submissions(paths: Iterable[str | Path]) -> list[Path]:
    """The submission files named by ``paths`` (files, or folders searched recursively), each once, sorted.

    A link to a folder inside a folder is not followed (it may loop) but is listed, so that it gets a row
    (``not-a-notebook``) rather than vanish. ``FileNotFoundError`` names a path that does not exist.
    """
    found: dict[Path, Path] = {}
    if isinstance(paths, (str, Path)):
        raise TypeError("paths must be a list of paths, not one path")
    for path in map(Path, paths):
        if path.is_dir():
            files = [p for p in path.rglob("*") if (p.is_symlink() or not p.is_dir())          # a link: not followed
                     and not any(part.startswith(".") or part == "__pycache__" for part in p.relative_to(path).parts)]
        elif path.exists():
            files = [path]
        else:
            raise FileNotFoundError(f"no such file or folder: {path}")
        for file in files:
            found.setdefault(file.resolve(), file)
    return sorted(found.values(), key=str)


def _safe_grade(path: Path, timeout: float, memory_mb: int, stop: threading.Event | None = None) -> Graded:
    """:func:`grade_submission`, with a failure of the grader itself turned into the status ``error``."""
    start = time.monotonic()
    try:
        return grade_submission(path, timeout=timeout, memory_mb=memory_mb, stop=stop)
    except Exception as err:
        reason = f"the grader failed: {type(err).__name__}: {err}"[:500]
        results = tuple(Result(item.name, False, "not graded (error)", CHECKS[item.name][1], "grade it again")
                        for item in CHECKLIST)
        end_to_end = Result(END_TO_END, False, "not graded (error)", EXPECTED, "grade it again")
        return Graded(path, results, (), "error", reason, time.monotonic() - start, end_to_end)


def grade_class(paths: Iterable[Path], *, jobs: int = 1, timeout: float = DEFAULT_TIMEOUT,
                memory_mb: int = DEFAULT_MEMORY_MB,
                progress: Callable[[Graded, int, int], None] | None = None) -> list[Graded]:
    """Grade every file of ``paths``, ``jobs`` at a time; one :class:`~labcode.lab.sandbox.Graded` each, sorted by path.

    Each grading thread drives one worker process; the grader's own torch
    computations use one thread. ``progress(graded, done, total)`` is called as
    each submission finishes.
    """
    paths = list(paths)
    if not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be an int >= 1, got {jobs!r}")
    if not all(isinstance(p, Path) for p in paths):
        raise TypeError("paths must be pathlib.Path objects")
    torch.set_num_threads(1)
    graded, stop = [], threading.Event()
    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="grade") as pool:
        futures = [pool.submit(_safe_grade, path, timeout, memory_mb, stop) for path in paths]
        try:
            for future in as_completed(futures):
                graded.append(future.result())
                if progress is not None:
                    progress(graded[-1], len(graded), len(paths))
        except BaseException:                    # Ctrl-C: no new worker, the running ones killed, then re-raise
            stop.set()
            pool.shutdown(wait=False, cancel_futures=True)
            kill_all_workers()
            raise
    return sorted(graded, key=lambda g: str(g.path))


def csv_row(graded: Graded) -> list[str]:
    """The CSV row of one submission (:data:`CSV_COLUMNS`); the path and the reason are
    :func:`~labcode.lab.runner.printable` (a file name's line break or undecodable byte as a backslash escape)."""
    if not isinstance(graded, Graded):
        raise TypeError(f"graded must be a Graded, got {type(graded).__name__}")
    passed = {r.name: r.passed for r in graded.results}
    return [printable(str(graded.path)), *("pass" if passed.get(item.name) else "fail" for item in CHECKLIST),
            "pass" if graded.end_to_end_passed else "fail", str(graded.score), graded.status,
            printable(graded.reason)]


def write_csv(graded: Iterable[Graded], path: str | Path) -> None:
    """Write one row per submission, in the given order, after the header :data:`CSV_COLUMNS`."""
    if not isinstance(path, (str, Path)):
        raise TypeError(f"path must be a str or Path, got {type(path).__name__}")
    rows = [csv_row(g) for g in graded]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_COLUMNS)
        writer.writerows(rows)


def report_names(paths: list[Path]) -> dict[Path, str]:
    """A report file name per submission: its path (as given, links not resolved) below the submissions' common
    folder, ``/`` replaced by ``__``, :func:`~labcode.lab.runner.printable`, then ``.txt``.

    A name over :data:`MAX_REPORT_NAME_BYTES`, or one that two paths share
    (``a/b.py`` and ``a__b.py``; ``A.py`` and ``a.py`` on a file system that
    ignores case) is cut and gets ``~`` and a hash of its path instead, so that
    every submission has a report of its own.
    """
    if not all(isinstance(p, Path) for p in paths):
        raise TypeError("paths must be pathlib.Path objects")
    if not paths:
        return {}
    absolute = {p: os.path.abspath(p) for p in paths}
    root = os.path.commonpath([os.path.dirname(a) for a in absolute.values()])
    names = {p: printable(os.path.relpath(a, root).replace(os.sep, "__")) for p, a in absolute.items()}
    shared = Counter(name.casefold() for name in names.values())

    def unique(path: Path, name: str) -> str:
        if shared[name.casefold()] == 1 and len(name.encode()) <= MAX_REPORT_NAME_BYTES:
            return name + ".txt"
        digest = hashlib.sha256(os.fsencode(absolute[path])).hexdigest()[:12]
        return name.encode()[:MAX_REPORT_NAME_BYTES - 20].decode("utf-8", "ignore") + f"~{digest}.txt"

    return {p: unique(p, name) for p, name in names.items()}


def write_reports(graded: list[Graded], directory: str | Path) -> list[Path]:
    """Write each submission's report (:func:`~labcode.lab.sandbox.format_graded` with its title) into
    ``directory``; return the files."""
    if not isinstance(directory, (str, Path)):
        raise TypeError(f"directory must be a str or Path, got {type(directory).__name__}")
    texts = [format_graded(g, title=True) for g in graded]
    names = report_names([g.path for g in graded])
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    files = [directory / names[g.path] for g in graded]
    for file, text in zip(files, texts, strict=True):
        file.write_text(text + "\n", encoding="utf-8")
    return files


def _mark(graded: Graded) -> str:
    return "pass" if graded.end_to_end_passed else "FAIL"


def _positive(kind: type, minimum: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from err
        if not value >= minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum:g}, got {text}")
        return value
    return parse


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m labcode.grade",
        description="Grade the lab's submissions, each in a process of its own: one file prints its grading table "
                    "(exit status 0 only for 11/11 and the end-to-end row); a batch writes a CSV row and a report "
                    "per submission.")
    parser.add_argument("submissions", nargs="+", type=Path, metavar="SUBMISSION",
                        help="a notebook (.ipynb, MyST .md), a module (.py) or a folder of them")
    parser.add_argument("--csv", type=Path, help="write the grades here, one row per submission")
    parser.add_argument("--reports", type=Path, metavar="DIR",
                        help="write one report per submission here (default: the CSV's path without its suffix)")
    parser.add_argument("--jobs", type=_positive(int, 1), default=1, metavar="N", help="submissions graded at once")
    parser.add_argument("--timeout", type=_positive(float, 0.1), default=DEFAULT_TIMEOUT, metavar="S",
                        help=f"wall-clock seconds per submission (default {DEFAULT_TIMEOUT:g})")
    parser.add_argument("--memory", type=_positive(int, 256), default=DEFAULT_MEMORY_MB, metavar="MB",
                        help=f"memory limit of a submission's process in MB (default {DEFAULT_MEMORY_MB})")
    return parser


def main(argv: list[str] | None = None) -> int:
    """The command line (see the module's description); returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        paths = collect_submissions(args.submissions)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not paths:
        print("error: no files in " + ", ".join(map(str, args.submissions)), file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    if len(args.submissions) == 1 and not args.submissions[0].is_dir() and args.csv is None and args.reports is None:
        graded = _safe_grade(paths[0], args.timeout, args.memory)
        if graded.status == "error":
            print(f"error: {printable(graded.reason)}", file=sys.stderr)
            return 2
        print(format_graded(graded))
        return 0 if graded.complete else 1

    def progress(g: Graded, done: int, total: int) -> None:
        print(f"[{done}/{total}] {printable(str(g.path))}: {g.score}/{len(CHECKLIST)}, end to end "
              f"{_mark(g)}, {g.status} ({g.seconds:.1f} s)", file=sys.stderr, flush=True)

    try:
        graded = grade_class(paths, jobs=args.jobs, timeout=args.timeout, memory_mb=args.memory, progress=progress)
    except KeyboardInterrupt:
        print("interrupted: every worker was killed; nothing written", file=sys.stderr)
        return 130
    reports = args.reports or (args.csv.with_suffix("") if args.csv else None)
    if args.csv is not None:
        write_csv(graded, args.csv)
    if reports is not None:
        write_reports(graded, reports)
    rows = [csv_row(g) for g in graded]                   # the path and the reason as printable text
    width = max(len(row[0]) for row in rows)
    for g, row in zip(graded, rows, strict=True):
        print(f"{row[0].ljust(width)}  {g.score:>2}/{len(CHECKLIST)}  end to end {_mark(g)}  {g.status}"
              + (f"  {row[-1]}" if row[-1] else ""))
    written = [f"grades in {args.csv}"] if args.csv else []
    written += [f"reports in {reports}/"] if reports else []
    if written:
        print("wrote " + " and ".join(written), file=sys.stderr)
    return 1 if any(g.status == "error" for g in graded) else 0
