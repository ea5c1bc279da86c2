"""Benchmark the book build on this machine and print a table (not a test: timings depend on the machine).

Usage: python scripts/benchmark.py [--write BENCHMARKS.md]

Works on a temporary copy of the book, so the working tree and its _build are
untouched. Measures, with a plain `jupyter-book build . -W -n --keep-going`:
cold build (empty cache, parallel), no-change rebuild, prose-edit rebuild,
code-cell-edit rebuild, an edit to one plotting module of labcode (only the
chapters that import it execute), and a serial cold build
(LABCODE_BUILD_WORKERS=1) for the serial-vs-parallel ratio.
"""

from __future__ import annotations

import argparse
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

ROOT = Path(__file__).resolve().parents[1]
JB = Path(sys.executable).parent / "jupyter-book"
COPY = ["_config.yml", "_toc.yml", "_ext", "_static", "book", "src", "references.bib", "requirements.txt", "pyproject.toml"]
TARGETS = {"cold build": 45.0, "no-change rebuild": 3.0, "plotting-module edit rebuild (plots/data.py)": 15.0}
PLOT_MODULE = "src/labcode/plots/data.py"


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", type=Path, help="also write the table as Markdown to this file")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        book = copy_book(Path(tmp) / "parallel")
        rows.append(("cold build", *build(book)))
        rows.append(("no-change rebuild", *build(book)))
        intro = book / "book" / "intro.md"
        intro.write_text(intro.read_text() + "\nAn edited sentence.\n")
        rows.append(("prose-edit rebuild", *build(book)))
        chapter = first_code_cell_edit(book)
        rows.append((f"code-edit rebuild ({chapter})", *build(book)))
        plots = book / PLOT_MODULE
        plots.write_text(plots.read_text() + "\n# a benchmark edit\n")
        rows.append(("plotting-module edit rebuild (plots/data.py)", *build(book)))
        serial = copy_book(Path(tmp) / "serial")
        rows.append(("cold build, serial", *build(serial, workers=1)))
        # each chapter's execution time in the serial build: executed alone, one kernel at a time
        alone = json.loads((serial / "_build" / ".labcode-runtimes.json").read_text())
    cold, serial_cold = rows[0][1], rows[-1][1]
    ratio = cold / serial_cold
    cores = os.cpu_count()
    lines = [f"Machine: {platform.platform()}, {cores} cores, Python {platform.python_version()}", "",
             "| build | seconds | notebooks executed | target |", "|---|---:|---:|---|"]
    for name, seconds, executed in rows:
        target = TARGETS.get(name)
        lines.append(f"| {name} | {seconds:.1f} | {executed} | {f'<= {target:.0f} s' if target else ''} |")
    lines.append(f"| parallel / serial cold build | {ratio:.2f} | | <= 0.65 |")
    lines += ["", "Each chapter executed alone (the serial cold build, one kernel at a time; target <= 20 s):", "",
              "| chapter | seconds |", "|---|---:|"]
    lines += [f"| {doc} | {seconds:.1f} |" for doc, seconds in sorted(alone.items(), key=lambda item: -item[1])]
    table = "\n".join(lines)
    print(table)
    if args.write:   # replace the table, keep any later sections (## ...) of the file
        rest = args.write.read_text().partition("\n## ")[1:] if args.write.exists() else ("", "")
        args.write.write_text("# Build benchmarks\n\nMeasured by `python scripts/benchmark.py --write BENCHMARKS.md` "
                              "(a plain `jupyter-book build`, on a temporary copy of the book).\n\n" + table + "\n"
                              + "".join(rest))


if __name__ == "__main__":
    main()
