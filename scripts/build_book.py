"""Run ``jupyter-book build`` with a quiet, readable log: what ``scripts/build-book.sh`` and ``build-pdf.sh`` run.

Usage: .venv/bin/python scripts/build_book.py [--book DIR] [--no-sync] [JUPYTER-BOOK BUILD ARGUMENTS...]

1. Brings the chapters' notebooks up to date first (``scripts/sync_notebooks.py``: each ``book/*.ipynb`` and its
   Colab install cell), so a new or renamed chapter never goes out without them (``--no-sync`` skips it; it is
   skipped anyway for a book other than this repository's).
2. Builds ``DIR`` (default: the repository) with ``-W -n --keep-going``. Without ``-v``, Sphinx runs quietly
   (``-q``) and the console shows only what an instructor acts on: one line per executed chapter (time and
   device, with ``[done/total, elapsed]``), each failing chapter's file, line, exception and cell source, the
   warnings, and one closing line. Jupyter Book's banners and Python tracebacks are left out (the exception's
   last line is kept); ``-v`` shows everything.
3. The whole log, always verbose enough to debug, goes to ``DIR/_build/build.log``.

Exit status: ``jupyter-book``'s (0 when the build succeeded).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

from booktools import ROOT, ArgumentParser, UsageError, run

#: Jupyter Book's own lines: banners and message boxes (its messages say nothing the closing line does not)
BANNER = re.compile(r"^(Running Jupyter-Book|Source Folder|Config Path|Output Path|={20,}|Building your book, returns"
                    r"|There was an error in building your|Finished generating HTML|Your book's HTML pages|You can look"
                    r"|Or paste this line|\s*file://|\s+\S*_build/html/(index\.html)?$|\s*$)")
CHAINED = re.compile(r"^(The above exception was the direct cause|During handling of the above exception)")
TRACEBACK_START = re.compile(r"^(Traceback \(most recent call last\):|Exception occurred:)")
#: Sphinx's closing words after an exception: where its traceback went, and a request to report it upstream
SPHINX_EPILOGUE = re.compile(r"^(The full traceback has been saved in|Please also report this|A bug report can be"
                             r"|\[\S+\] WARNING \| Kernel is running over TCP)")


class Filter:
    """The console's share of one output stream (line by line; partial lines, the progress display, pass)."""

    def __init__(self, out, log, verbose: bool) -> None:
        self.out, self.log, self.verbose = out, log, verbose
        self.in_traceback = self.shown_exception = False
        self.buffer = ""
        self.lock = threading.Lock()

    def feed(self, data: str) -> None:
        with self.lock:
            self.log.write(data)
            self.log.flush()
        self.buffer += data
        *lines, self.buffer = self.buffer.split("\n")
        for line in lines:
            self.line(line)
        if "\r" in self.buffer:            # the live progress line: shown at once, never logged twice
            self.out.write(self.buffer)
            self.out.flush()
            self.buffer = ""

    def line(self, line: str) -> None:
        if self.verbose:
            self.write(line)
            return
        bare = re.sub(r"\x1b\[[0-9;]*m", "", line).replace("\r", "")
        if self.in_traceback:
            if bare.startswith((" ", "\t")) or not bare.strip() or TRACEBACK_START.match(bare) or CHAINED.match(bare):
                return
            self.in_traceback = False   # the exception's own line: the first (the cause) is shown, once
            if not self.shown_exception and not BANNER.match(bare):
                self.write(f"error: {bare}")
                self.shown_exception = True
            return
        if CHAINED.match(bare):
            return
        if TRACEBACK_START.match(bare):
            self.in_traceback = True
            return
        if BANNER.match(bare) or SPHINX_EPILOGUE.match(bare):
            return
        self.write(line)

    def write(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()

    def close(self) -> None:
        if self.buffer:
            self.line(self.buffer)


def _pump(stream, sink: Filter) -> None:
    for chunk in iter(lambda: os.read(stream.fileno(), 65536), b""):
        sink.feed(chunk.decode("utf-8", errors="replace"))
    sink.close()


def main() -> int:
    parser = ArgumentParser(prog="build_book.py", description=__doc__.split("\n\n")[0], add_help=True)
    parser.add_argument("--book", type=Path, default=ROOT, help="the book's folder (default: this repository)")
    parser.add_argument("--no-sync", action="store_true", help="do not bring the chapter notebooks up to date first")
    args, rest = parser.parse_known_args()
    book = args.book.resolve()
    if not (book / "_config.yml").is_file():
        raise UsageError(f"{args.book}: not a book (no _config.yml)")
    verbose = any(a in ("-v", "-vv", "-vvv", "--verbose") for a in rest)
    if book == ROOT and not args.no_sync:
        sync = subprocess.run([sys.executable, str(ROOT / "scripts" / "sync_notebooks.py")], cwd=ROOT)
        if sync.returncode != 0:
            return sync.returncode
    jb = Path(sys.executable).parent / "jupyter-book"
    command = [str(jb), "build", str(book), "-W", "-n", "--keep-going", *([] if verbose else ["-q"]), *rest]
    log_path = book / "_build" / "build.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    if sys.stderr.isatty():
        env["LABCODE_PROGRESS"] = "1"       # the extension draws its live progress line through our pipe
    start = time.monotonic()
    with log_path.open("w", encoding="utf-8") as log:
        log.write("$ " + " ".join(command) + "\n")
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                env=env, cwd=os.getcwd())
        pumps = [threading.Thread(target=_pump, args=(proc.stdout, Filter(sys.stdout, log, verbose))),
                 threading.Thread(target=_pump, args=(proc.stderr, Filter(sys.stderr, log, verbose)))]
        for pump in pumps:
            pump.start()
        try:
            status = proc.wait()
        except KeyboardInterrupt:           # Ctrl-C reached jupyter-book too: let it clean up, then report
            status = proc.wait()
        for pump in pumps:
            pump.join()
    seconds = time.monotonic() - start
    shown = os.path.relpath(log_path)
    if status == 0:
        print(f"the build succeeded in {seconds:.0f} s (the whole log: {shown})", file=sys.stderr)
    else:
        print(f"the build failed (exit status {status}, {seconds:.0f} s); the whole log, with every traceback: "
              f"{shown}", file=sys.stderr)
    return status


if __name__ == "__main__":
    run(main)
