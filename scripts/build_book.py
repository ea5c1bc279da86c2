"""Run ``jupyter-book build`` with a quiet, readable log: what ``scripts/build-book.sh`` and ``build-pdf.sh`` run.

Usage: .venv/bin/python scripts/build_book.py [--book DIR] [--no-sync] [--edition {full,student}]
                                             [JUPYTER-BOOK BUILD ARGUMENTS...]

1. Brings the chapters' notebooks up to date first (``scripts/sync_notebooks.py``: each ``book/*.ipynb`` and its
   Colab install cell), so a new or renamed chapter never goes out without them (``--no-sync`` skips it; it is
   skipped anyway for a book other than this repository's).
2. Builds ``DIR`` (default: the repository) with ``-W -n --keep-going``. Without ``-v``, Sphinx runs quietly
   (``-q``) and the console shows only what an instructor acts on: one line per executed chapter (time and
   device, with ``[done/total, elapsed]``), each failing chapter's file, line, exception and cell source, the
   warnings, and one closing line. Jupyter Book's banners and Python tracebacks are left out (the exception's
   last line is kept); ``-v`` shows everything.
3. The whole log, always verbose enough to debug, goes to ``DIR/_build/build.log``.
4. ``--edition student`` (or ``LABCODE_EDITION=student``) builds the student edition of the site, without the
   lab's reference implementations, into ``DIR/_build/student/_build/html`` (its log beside it) from the full
   edition's execution cache (``_ext/labcode_build/edition.py``); the default is the full edition.

Exit status: ``jupyter-book``'s (0 when the build succeeded).
"""

from __future__ import annotations

import codecs
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from booktools import ROOT, ArgumentParser, UsageError, run

#: Jupyter Book's own lines: banners and message boxes (its messages say nothing the closing line does not)
BANNER = re.compile(r"^(Running Jupyter-Book|Source Folder|Config Path|Output Path|={20,}|Building your book, returns"
                    r"|There was an error in building your|Finished generating HTML|Your book's HTML pages|You can look"
                    r"|Or paste this line|\s*file://|\s+\S*_build/html/(index\.html)?$|A PDF of your book can be found at"
                    r"|\s+\S*_build/latex/?$|\s*$)")
CHAINED = re.compile(r"^(The above exception was the direct cause|During handling of the above exception)")
TRACEBACK_START = re.compile(r"^(Traceback \(most recent call last\):|Exception occurred:)")
#: Sphinx's closing words after an exception: where its traceback went, and a request to report it upstream
SPHINX_EPILOGUE = re.compile(r"^(The full traceback has been saved in|Please also report this|A bug report can be"
                             r"|\[\S+\] WARNING \| Kernel is running over TCP)")


#: one lock for the log, which both streams write
LOG_LOCK = threading.Lock()


class Filter:
    """The console's share of one output stream (line by line; partial lines, the progress display, pass)."""

    def __init__(self, out, log, verbose: bool) -> None:
        self.out, self.log, self.verbose = out, log, verbose
        self.in_traceback, self.chain, self.pending, self.shown = False, None, None, set()
        self.console = True               # False once the console is gone (a closed pipe): the log goes on
        self.buffer = ""

    def feed(self, data: str) -> None:
        with LOG_LOCK:
            self.log.write(data)
            self.log.flush()
        self.buffer += data
        *lines, self.buffer = self.buffer.split("\n")
        for line in lines:
            self.line(line)
        if "\r" in self.buffer:            # the live progress line: shown at once, never logged twice
            self.emit(self.buffer)
            self.buffer = ""

    def line(self, line: str) -> None:
        """Show ``line`` unless it is noise. Of a traceback only the exception's own line is shown, once per
        chain: for "raise ... from" chains the cause (the first), for "during handling of the above" chains the
        later exception (the one that was not handled)."""
        if self.verbose:
            self.write(line)
            return
        bare = re.sub(r"\x1b\[[0-9;]*m", "", line).replace("\r", "")
        if self.in_traceback:
            if TRACEBACK_START.match(bare) or bare.startswith((" ", "\t")) or not bare.strip():
                return
            self.in_traceback = False          # the exception's own line
            if self.pending is None or self.chain == "context":
                self.pending = bare
            self.chain = None
            return
        chained = CHAINED.match(bare)
        if chained:
            self.chain = "context" if bare.startswith("During handling") else "cause"
            return
        if TRACEBACK_START.match(bare):
            if self.chain is None:
                self.flush()                   # a new, unrelated exception
            self.in_traceback = True
            return
        if not bare.strip():
            return
        self.flush()
        self.chain = None
        if BANNER.match(bare) or SPHINX_EPILOGUE.match(bare):
            return
        self.write(line)

    def flush(self) -> None:
        """Show the exception line kept from the last traceback chain (not an empty one, not twice)."""
        pending, self.pending = self.pending, None
        if pending and not pending.rstrip().endswith(":") and pending not in self.shown:
            self.shown.add(pending)
            self.write(f"error: {pending}")

    def write(self, line: str) -> None:
        self.emit(line + "\n")

    def emit(self, text: str) -> None:
        if not self.console:
            return
        try:
            self.out.write(text)
            self.out.flush()
        except (BrokenPipeError, OSError, ValueError):
            self.console = False

    def close(self) -> None:
        if self.buffer:
            self.line(self.buffer)
        self.flush()


def _pump(stream, sink: Filter) -> None:
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")   # a character split between two reads
    for chunk in iter(lambda: os.read(stream.fileno(), 65536), b""):
        sink.feed(decoder.decode(chunk))
    sink.feed(decoder.decode(b"", final=True))
    sink.close()


def main() -> int:
    parser = ArgumentParser(prog="build_book.py", description=__doc__.split("\n\n")[0], add_help=True)
    parser.add_argument("--book", type=Path, default=ROOT, help="the book's folder (default: this repository)")
    parser.add_argument("--no-sync", action="store_true", help="do not bring the chapter notebooks up to date first")
    sys.path.insert(0, str(ROOT / "_ext"))
    from labcode_build import edition as editions
    parser.add_argument("--edition", choices=editions.EDITIONS,
                        help=f"full (the default) or student: without the lab's reference implementations, into "
                             f"_build/{editions.STUDENT_FOLDER}/_build/html (default: ${editions.EDITION_ENV}, else full)")
    args, rest = parser.parse_known_args()
    book = args.book.resolve()
    if not (book / "_config.yml").is_file():
        raise UsageError(f"{args.book}: not a book (no _config.yml)")
    try:
        edition = args.edition or editions.edition_from_env()
    except ValueError as err:
        raise UsageError(str(err)) from None
    output = editions.path_output(book, edition)
    builder = next((a.split("=", 1)[1] if "=" in a else rest[i + 1] for i, a in enumerate(rest)
                    if (a == "--builder" and i + 1 < len(rest)) or a.startswith("--builder=")), "html")
    if edition != "full" and builder != "html":
        raise UsageError(f"the {edition} edition is a site (HTML) only; the {builder} build is the full edition: "
                         f"unset {editions.EDITION_ENV} or leave out --edition")
    if output is not None:
        if any(a == "--path-output" or a.startswith("--path-output=") for a in rest):
            raise UsageError(f"the {edition} edition has its own folder ({output}): leave out --path-output")
        rest = ["--path-output", str(output), *rest]
    verbose = any(a in ("-v", "-vv", "-vvv", "--verbose") for a in rest)
    # The checkout's build lock, before anything writes (the notebooks, the log): the extension inside
    # jupyter-book sees from LOCK_HANDOFF_ENV that its parent holds it. Both editions share it (and the cache).
    from labcode_build.safety import LOCK_HANDOFF_ENV, acquire_build_lock
    from labcode_build.worker import term_with_parent
    lock = acquire_build_lock(book / "_build")
    if book == ROOT and not args.no_sync:
        sync = subprocess.run([sys.executable, str(ROOT / "scripts" / "sync_notebooks.py")], cwd=ROOT)
        if sync.returncode != 0:
            return sync.returncode
    jb = Path(sys.executable).parent / "jupyter-book"
    command = [str(jb), "build", str(book), "-W", "-n", "--keep-going", *([] if verbose else ["-q"]), *rest]
    log_path = editions.build_dir(book, edition) / "build.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env[LOCK_HANDOFF_ENV] = f"{os.getpid()}:{lock}"
    env[editions.EDITION_ENV] = edition
    if sys.stderr.isatty():
        env["LABCODE_PROGRESS"] = "1"       # the extension draws its live progress line through our pipe
    start = time.monotonic()
    with log_path.open("w", encoding="utf-8") as log:
        log.write("$ " + " ".join(command) + "\n")
        # term_with_parent: a killed wrapper leaves no headless build (preexec_fn is safe: no thread started yet)
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                env=env, cwd=os.getcwd(), preexec_fn=term_with_parent)
        for forwarded in (signal.SIGTERM, signal.SIGHUP):   # a stopped wrapper stops the build (it cleans up)
            signal.signal(forwarded, lambda signum, frame: proc.send_signal(signum))
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
    if status < 0:                          # killed by a signal: the shell's convention
        status = 128 - status
    seconds = time.monotonic() - start
    shown = os.path.relpath(log_path)
    if status == 0:
        where = "" if edition == "full" else f"; the {edition} edition is in {os.path.relpath(log_path.parent)}"
        print(f"the build succeeded in {seconds:.0f} s (the whole log: {shown}{where})", file=sys.stderr)
    else:
        print(f"the build failed (exit status {status}, {seconds:.0f} s); the whole log, with every traceback: "
              f"{shown}", file=sys.stderr)
    return status


if __name__ == "__main__":
    run(main)
