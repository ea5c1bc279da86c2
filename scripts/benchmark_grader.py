"""Measure the grader's throughput on this machine and print a table (not a test: timings depend on the machine).

Usage: .venv/bin/python scripts/benchmark_grader.py [--jobs 2] [--copies 30]

Grades, with ``python -m labcode.grade FOLDER --csv ... --jobs N``: one correct
submission alone (the time a student's grading takes), the generated class of
``tests/test_grade_batch.py`` (correct, partially correct, untouched and every
pathology, with the test's time and memory limits) and a class of only correct
submissions (``--copies`` copies of the solution in ``tests/test_grade_endtoend.py``, which passes the
eleven checks and the end-to-end row).
Prints submissions per minute for each, with the machine's load average
(other work on the machine slows the grader down).
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]   # this checkout's labcode and the tests' class
from test_grade_batch import MEMORY_MB, TIMEOUT, write_class  # noqa: E402
from test_grade_endtoend import SOLUTION  # noqa: E402


def grade(folder: Path, jobs: int, *extra: str) -> tuple[float, int]:
    """Seconds to grade ``folder`` and the number of rows in its CSV."""
    grades = folder.parent / f"{folder.name}.csv"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "labcode.grade", str(folder), "--csv", str(grades),
                           "--jobs", str(jobs), *extra], capture_output=True, text=True, env=env, cwd=ROOT)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"grading {folder.name} failed:\n{proc.stderr[-3000:]}")
    with grades.open(newline="") as f:
        return seconds, len(list(csv.reader(f))) - 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--copies", type=int, default=30)
    args = parser.parse_args(argv)
    if args.jobs < 1 or args.copies < 1:
        parser.error("--jobs and --copies must be at least 1")
    rows = []
    with tempfile.TemporaryDirectory(prefix="grade-benchmark-") as tmp:
        base = Path(tmp)
        alone = base / "alone"
        alone.mkdir()
        (alone / "correct.py").write_text(SOLUTION)
        correct = base / "correct"
        correct.mkdir()
        for i in range(args.copies):
            (correct / f"student{i:02d}.py").write_text(SOLUTION)
        mixed = write_class(base / "mixed")
        load = os.getloadavg()[0]
        for label, folder, jobs, extra in [
            ("one correct submission", alone, 1, ()),
            (f"the test's class (every pathology; --timeout {TIMEOUT})", mixed, args.jobs,
             ("--timeout", str(TIMEOUT), "--memory", str(MEMORY_MB))),
            (f"{args.copies} correct submissions", correct, args.jobs, ()),
        ]:
            seconds, n = grade(folder, jobs, *extra)
            rows.append((label, n, jobs, seconds, 60 * n / seconds))
            print(f"{label}: {n} in {seconds:.1f} s", file=sys.stderr)
    print(f"load average before: {load:.1f} on {os.cpu_count()} cores")
    print("| class | submissions | jobs | seconds | submissions per minute |")
    print("|---|---|---|---|---|")
    for label, n, jobs, seconds, rate in rows:
        print(f"| {label} | {n} | {jobs} | {seconds:.1f} | {rate:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
