"""Benchmark the book build on this machine and print a table (not a test: timings depend on the machine).

Usage: .venv/bin/python scripts/benchmark.py [SCENARIO ...] [--write BENCHMARKS.md]

Works on a temporary copy of the book, so the working tree and its _build are
untouched. Measures, with a plain `jupyter-book build . -W -n --keep-going`,
the scenarios (default: all of them): ``cold`` build (empty cache, parallel),
``no-change`` rebuild, ``prose-edit`` rebuild, ``code-edit`` (a code cell)
rebuild, ``plot-edit``, an edit to one plotting module of labcode (only the
chapters that import it execute), and ``serial``, a cold build with
LABCODE_BUILD_WORKERS=1, for the serial-vs-parallel ratio. A rebuild is
measured after the cold build, which is then reported too. ``--write``
records the whole table, so it takes every scenario.

Exit status: 0; 1 when a build fails (the end of its log is printed); 2 on bad
arguments (an unknown scenario; a ``--write`` target that is a folder, lies
in a missing folder or cannot be written; no jupyter-book next to this
Python), reported in one line before anything is built.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from booktools import ROOT, ArgumentParser, UsageError, read_text, run, shown, write_text

JB = Path(sys.executable).parent / "jupyter-book"
COPY = ["_config.yml", "_toc.yml", "_ext", "_static", "book", "src", "references.bib", "requirements.txt", "pyproject.toml"]
TARGETS = {"cold build": 45.0, "no-change rebuild": 3.0, "plotting-module edit rebuild (plots/data.py)": 15.0}
PLOT_MODULE = "src/labcode/plots/data.py"
#: the scenarios, in the order they run: the rebuilds edit the parallel build's copy one after another
SCENARIOS = ("cold", "no-change", "prose-edit", "code-edit", "plot-edit", "serial")
HEADER = ("# Build benchmarks\n\nMeasured by `.venv/bin/python scripts/benchmark.py --write BENCHMARKS.md` "
          "(a plain `jupyter-book build`, on a temporary copy of the book).\n\n")


def copy_book(dest: Path) -> Path:
    dest.mkdir(parents=True)
    for name in COPY:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__", "_build"))
        else:
            shutil.copy(src, dest / name)
    return dest


def build(book: Path, workers: int | None = None) -> tuple[float, int]:
    env = {**os.environ, "PYTHONPATH": str(book / "src")}   # the kernels import the copy's labcode
    if workers is not None:
        env["LABCODE_BUILD_WORKERS"] = str(workers)
    start = time.perf_counter()
    proc = subprocess.run([str(JB), "build", str(book), "-W", "-n", "--keep-going"],
                          capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"build failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    log = json.loads((book / "_build" / ".jupyter_cache" / "execution-log.json").read_text())
    return seconds, len(log["executed"]) + proc.stdout.count("Executing notebook using")


def first_code_cell_edit(book: Path) -> str:
    """Append a harmless statement to the first code cell of the first chapter with code; return the chapter."""
    for md in sorted((book / "book").glob("*.md")):
        text = md.read_text()
        match = re.search(r"```\{code-cell\}[^\n]*\n.*?(?=\n```)", text, re.DOTALL)
        if match and "kernelspec" in text[:400]:
            md.write_text(text[:match.end()] + "\n_benchmark_edit = 1" + text[match.end():])
            return md.stem
    raise SystemExit("no chapter with code found")


def later_sections(path: Path) -> str:
    """The sections (## ...) after the table in ``path``, which --write keeps; parse_args checks it can, before any build."""
    if path.is_dir():
        raise UsageError(f"{shown(path)}: is a folder, not a file")
    if not path.parent.is_dir():
        raise UsageError(f"{shown(path)}: no such folder {shown(path.parent)}")
    if not os.access(path if path.exists() else path.parent, os.W_OK):
        raise UsageError(f"{shown(path)}: cannot write (permission denied)")
    return "".join(read_text(path).partition("\n## ")[1:]) if path.exists() else ""


def parse_args() -> tuple[list[str], Path | None]:
    """(scenarios, --write target); every argument is checked here, before any build."""
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenarios", nargs="*", metavar="SCENARIO", help=f"some of: {', '.join(SCENARIOS)}")
    parser.add_argument("--write", type=Path, help="also write the table as Markdown to this file")
    args = parser.parse_args()
    for name in args.scenarios:
        if name not in SCENARIOS:
            raise UsageError(f"unknown scenario {name!r} (scenarios: {', '.join(SCENARIOS)})")
    if args.write and args.scenarios and set(args.scenarios) != set(SCENARIOS):
        raise UsageError("--write records the whole table: leave out the scenarios")
    if args.write:
        later_sections(args.write)
    if not JB.exists():
        raise UsageError(f"{JB}: no jupyter-book next to this Python (run it with the project's .venv/bin/python)")
    chosen = set(args.scenarios or SCENARIOS)
    if chosen - {"serial"}:
        chosen.add("cold")   # every rebuild starts from the cold build
    return [name for name in SCENARIOS if name in chosen], args.write


def measure(scenarios: list[str]) -> tuple[list[tuple[str, float, int]], dict[str, float]]:
    """[(row, seconds, notebooks executed)] of the scenarios, and each chapter's time alone (serial build)."""
    rows, alone = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        book = copy_book(Path(tmp) / "parallel") if "cold" in scenarios else None
        for name in scenarios:
            if name == "cold":
                rows.append(("cold build", *build(book)))
            elif name == "no-change":
                rows.append(("no-change rebuild", *build(book)))
            elif name == "prose-edit":
                intro = book / "book" / "intro.md"
                intro.write_text(intro.read_text() + "\nAn edited sentence.\n")
                rows.append(("prose-edit rebuild", *build(book)))
            elif name == "code-edit":
                chapter = first_code_cell_edit(book)
                rows.append((f"code-edit rebuild ({chapter})", *build(book)))
            elif name == "plot-edit":
                plots = book / PLOT_MODULE
                plots.write_text(plots.read_text() + "\n# a benchmark edit\n")
                rows.append(("plotting-module edit rebuild (plots/data.py)", *build(book)))
            else:
                serial = copy_book(Path(tmp) / "serial")
                rows.append(("cold build, serial", *build(serial, workers=1)))
                # each chapter's execution time in the serial build: executed alone, one kernel at a time
                alone = json.loads((serial / "_build" / ".labcode-runtimes.json").read_text())
    return rows, alone


def table(rows: list[tuple[str, float, int]], alone: dict[str, float]) -> str:
    lines = [f"Machine: {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}", "",
             "| build | seconds | notebooks executed | target |", "|---|---:|---:|---|"]
    for name, seconds, executed in rows:
        target = TARGETS.get(name)
        lines.append(f"| {name} | {seconds:.1f} | {executed} | {f'<= {target:.0f} s' if target else ''} |")
    seconds = {name: value for name, value, _ in rows}
    if "cold build" in seconds and "cold build, serial" in seconds:
        lines.append(f"| parallel / serial cold build | {seconds['cold build'] / seconds['cold build, serial']:.2f} | | <= 0.65 |")
    if alone:
        lines += ["", "Each chapter executed alone (the serial cold build, one kernel at a time; target <= 20 s):", "",
                  "| chapter | seconds |", "|---|---:|"]
        lines += [f"| {doc} | {value:.1f} |" for doc, value in sorted(alone.items(), key=lambda item: -item[1])]
    return "\n".join(lines)


def main() -> None:
    scenarios, write = parse_args()
    text = table(*measure(scenarios))
    print(text)
    if write:   # replace the table, keep any later sections (## ...) of the file
        write_text(write, HEADER + text + "\n" + later_sections(write))


if __name__ == "__main__":
    run(main)
