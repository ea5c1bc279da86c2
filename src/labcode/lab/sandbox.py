"""Grading one submission out of its reach: the checks in the grader, the student's code in a worker process.

:func:`grade_submission` reads the file (:func:`read_submission`: size, then
encoding, then notebook structure; a file that fails gets its status without
running anything), then starts a worker (:mod:`labcode.lab.worker`) that runs
the cells, and runs the eleven checks of :mod:`labcode.lab.checks` **here**.
A check sees the student's function as a :class:`RemoteFunction`: a call sends
the arguments to the worker (:mod:`labcode.lab.protocol`) and returns what the
student's function returned there, read back with torch's safe unpickler. A
check that needs gradients asks the worker for them
(:func:`labcode.lab.checks.call_with_grad`). After the eleven, the worker runs
the end-to-end pipeline (:func:`labcode.lab.endtoend.run_pipeline`) on the
student's functions as they are and sends back its plain values (a small
model's ``state_dict`` and numbers), which
:func:`~labcode.lab.endtoend.check_end_to_end` judges here: the end-to-end row,
reported apart from the score of the eleven. A submission without all eleven
functions, or with one still a TODO, fails that row without running it.

One wall-clock budget (``timeout``) covers the whole submission: every wait on
the worker polls with the time that is left. When it runs out the worker's
process group is killed, and the check that was running and every check not
yet run fail with "time limit". A worker that dies inside a function (``os._exit``,
a signal such as SIGSEGV, the memory limit) fails that check with the reason,
and a fresh worker (the cells run again) serves the remaining checks. A worker
that dies while the cells run fails the whole submission, naming the cell.

**Threat model.** Guarded: the checks, the reference implementations, the
comparisons, the score and the report live in the grader's process, which
never runs the submission's code and never unpickles anything the worker
sends except through ``torch.load(weights_only=True)`` (tensors, numbers,
strings, lists, tuples and dicts). What reading a reply costs is bounded
(:mod:`labcode.lab.protocol`: a message of at most 64 MB, stored
uncompressed, with a pickle of at most 1 MB, 100,000 values and 32 levels of
nesting; texts cut at about 1,000 characters), and a reply that breaks a rule, forged or not, fails the
submission as ``crashed``, never as the grader's own ``error``. A submission
can therefore only change the values its own functions return: patching
``labcode.lab.checks``, ``labcode``'s references, ``torch`` functions or
``sys.modules``, or printing a fake report, changes the worker only (its
output goes to ``/dev/null``). ``exit()``, ``os._exit()``, a segfault, an
endless loop or a memory blow-up in a cell or a function fails that
submission with a status and a reason, never the batch, and the process exit
status of single-file grading is 0 only when all eleven checks pass. A file's
name and a student's exception reach the CSV, the reports and the terminal as
one printable line each (:func:`~labcode.lab.runner.printable`). A call,
while function X is being graded, to ``labcode``'s own implementation of X
(its reference, and for ``compute_elbo``, ``likelihood_given_z`` and
``approximate_marginal_likelihood`` the ``labcode`` function it wraps) is caught
by a tripwire in the worker and fails X with status ``uses-reference``. While
the end-to-end pipeline runs, a call from the student's code to *any* of them
fails the end-to-end row ("uses labcode's own code") without that status.

Not guarded:

- the worker runs as the grader's user, with its file system, network and
  processes: it can read and write that user's files (other submissions
  before they are graded; a ``.pth`` file in a ``site-packages`` folder that
  runs code in the next grading), signal or trace the grader. Grade untrusted
  submissions in a container or as an unprivileged user with nothing else to
  lose;
- a process that leaves the worker's process group (``os.setpgid``,
  ``os.setsid``, as a daemon does) survives the kill of the group, and may
  rewrite the CSV and the reports after the grader wrote them; the number of
  processes is not limited;
- ``--memory`` is ``RLIMIT_DATA``: it caps each process's heap and private
  mappings, not shared memory (``mmap.mmap(-1, n)``, files in ``/dev/shm``),
  and each child has a cap of its own; a file may take
  :data:`~labcode.lab.worker.MAX_FILE_MB` MB, the files together the whole disk;
- the worker is the submission's process, so all it reports is the
  submission's to choose: besides its functions' values, the gradients a
  check asks for (a ``reparameterize`` computed under ``torch.no_grad()``
  passes if a cell replaces the worker's ``call_with_grad``), the
  ``requires_grad`` of a result, the end-to-end pipeline's values (a cell can
  replace the worker's pipeline by one that runs ``labcode``'s functions), and
  the tripwires (a cell can rewrite the worker's replies, remove the profile
  hook, reach the unwrapped reference through ``__wrapped__`` or
  ``importlib.reload``, or copy ``labcode``'s source; helpers such as
  ``lc.gaussian_log_density`` are not wrapped);
- the time limit is checked between messages: reading the last reply (its
  pickle at most 1 MB) can take the grader a second or two past it;
- the CSV does not defuse formulas: a spreadsheet may take a file name that
  starts with ``=`` for one;
- the self-grading cell of the student edition (``grade_namespace(globals())``)
  runs in the student's own kernel: it is feedback, not a grade.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import labcode

from .checklist import CHECKLIST
from .checks import CHECKS, CheckFailed
from .endtoend import END_TO_END, EXPECTED, PLAN, check_end_to_end, needs_all
from .protocol import ReplyError, decode_reply, encode_request, read_message, write_message
from .runner import (
    MAX_MESSAGE_CHARS,
    CellError,
    Result,
    check_function,
    format_report,
    incomplete,
    not_a_function,
    not_defined,
    printable,
)

#: wall-clock seconds per submission. A correct submission graded alone takes about 8 s of CPU here (2-core
#: CPU), 2.5 s of it the end-to-end row (half that in a batch, where labcode's reference run is shared); 30 of
#: them with two jobs take 73 s: the default leaves room for slow machines and long cells
DEFAULT_TIMEOUT = 60.0
#: memory limit of the worker in MB (its data segment: RLIMIT_DATA). The worker needs about 250 MB
DEFAULT_MEMORY_MB = 2048
#: the largest submission file read, in MB (a notebook with its outputs cleared is far smaller)
MAX_SUBMISSION_MB = 20
#: the file types graded
SUFFIXES = (".ipynb", ".md", ".py")

#: each status with what it means, from the first that applies to the last: a file that cannot be read gets
#: one of the first six (in this order of tests, no worker starts); otherwise the most severe event of the
#: grading wins, and the reason lists every event
STATUSES = {
    "error": "the grader itself failed on this submission (not the student's fault): grade it again",
    "not-a-notebook": "not a .ipynb, .md or .py file, or not a regular file",
    "too-large": f"over {MAX_SUBMISSION_MB} MB (a notebook full of outputs: clear them)",
    "undecodable": "not UTF-8 text",
    "bad-notebook": "invalid or truncated notebook JSON, or not a notebook's structure, or an unreadable MyST notebook",
    "empty": "no code at all",
    "timeout": "the time limit ran out; the check running then and every later check failed",
    "memory": "a cell or a function ran out of memory (the worker's memory limit)",
    "crashed": "the worker was killed by a signal (a segfault, for example) or sent a reply that breaks the protocol",
    "exited": "a cell or a function ended the worker process (os._exit), or a function called exit()",
    "uses-reference": "a function called labcode's own implementation of itself (in its own check)",
    "syntax-error": "a cell does not compile; the rest was graded",
    "graded": "every check ran",
}
_RUNTIME = ("timeout", "memory", "crashed", "exited", "uses-reference", "syntax-error")


@dataclass(frozen=True)
class Submission:
    """A submission file as the grader read it.

    Attributes:
        cells: the code cells' sources, or ``None`` when the file cannot be graded.
        module: the ``__name__`` the cells run under (``"__main__"`` for a notebook).
        status: ``""`` when the file can be graded, else its status (:data:`STATUSES`).
        reason: why, in words.
    """

    cells: tuple[str, ...] | None
    module: str = "__main__"
    status: str = ""
    reason: str = ""


@dataclass(frozen=True)
class Graded:
    """One graded submission.

    Attributes:
        path: the submission's file.
        results: one row per checklist function.
        errors: the cells that raised or did not compile.
        status: one of :data:`STATUSES`.
        reason: what happened, in words (``""`` for ``graded``).
        seconds: wall-clock time.
        end_to_end: the end-to-end row (``None`` only for a ``Graded`` built without it: a failed row).
    """

    path: Path
    results: tuple[Result, ...]
    errors: tuple[CellError, ...]
    status: str
    reason: str
    seconds: float
    end_to_end: Result | None = None

    @property
    def score(self) -> int:
        """The number of the eleven checks that passed."""
        return sum(r.passed for r in self.results)

    @property
    def end_to_end_passed(self) -> bool:
        return self.end_to_end is not None and self.end_to_end.passed

    @property
    def complete(self) -> bool:
        """Whether all eleven checks and the end-to-end row passed (the exit status 0 of single-file grading)."""
        return self.score == len(CHECKLIST) and self.end_to_end_passed


# --------------------------------------------------------------------------- reading the file

def _refused(status: str, reason: str) -> Submission:
    return Submission(None, status=status, reason=reason)


def notebook_cells(text: str) -> tuple[str, ...]:
    """The code cells of a ``.ipynb`` notebook's JSON text; ``ValueError`` with the reason if it is not one."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str (the notebook's JSON), got {type(text).__name__}")
    try:
        nb = json.loads(text)
    except RecursionError as err:
        raise ValueError("invalid JSON: nested too deeply") from err
    except json.JSONDecodeError as err:
        raise ValueError(f"invalid JSON (truncated?): {err}") from err
    if isinstance(nb, dict) and "worksheets" in nb:           # nbformat 3
        import nbformat
        nb = nbformat.reads(text, as_version=4)
    if not (isinstance(nb, dict) and isinstance(nb.get("cells"), list)):
        raise ValueError("the JSON is not a notebook (no list of cells)")
    cells = []
    for index, cell in enumerate(nb["cells"], start=1):
        if not (isinstance(cell, dict) and isinstance(cell.get("cell_type"), str)):
            raise ValueError(f"cell {index} is not a notebook cell")
        source = cell.get("source", "")
        if isinstance(source, list) and all(isinstance(line, str) for line in source):
            source = "".join(source)
        if not isinstance(source, str):
            raise ValueError(f"cell {index} has no text source")
        if cell["cell_type"] == "code":
            cells.append(source)
    return tuple(cells)


def read_submission(path: str | Path, *, max_mb: float = MAX_SUBMISSION_MB) -> Submission:
    """Read a submission without running it: its code cells, or the status that says why it cannot be graded.

    The tests, in order: the file type (``not-a-notebook``), the size
    (``too-large``), UTF-8 (``undecodable``), a blank file (``empty``), the
    notebook's JSON or MyST structure (``bad-notebook``), code cells with
    something in them (``empty``).
    """
    if not isinstance(path, (str, Path)):
        raise TypeError(f"path must be a str or Path, got {type(path).__name__}")
    path = Path(path)
    if not isinstance(max_mb, (int, float)) or max_mb <= 0:
        raise ValueError(f"max_mb must be a positive number, got {max_mb!r}")
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        return _refused("not-a-notebook", f"{path.name} is not a notebook: submit a .ipynb, a MyST .md or a .py file")
    if not path.is_file():
        return _refused("not-a-notebook", f"{path.name} is not a regular file")
    limit = int(max_mb * 2**20)
    too_large = f"over the {max_mb:g} MB limit: clear the notebook's outputs (Edit > Clear outputs) and submit again"
    if path.stat().st_size > limit:
        return _refused("too-large", f"{path.stat().st_size / 2**20:.1f} MB, {too_large}")
    with path.open("rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        return _refused("too-large", too_large)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        return _refused("undecodable", f"not UTF-8 text: byte 0x{data[err.start]:02x} at offset {err.start}")
    if not text.strip():
        return _refused("empty", "the file is empty")
    if suffix == ".py":
        return Submission((text,), module="__student__")
    try:
        if suffix == ".ipynb":
            cells = notebook_cells(text)
        else:
            import jupytext
            cells = tuple(c.source for c in jupytext.reads(text, fmt="md").cells if c.cell_type == "code")
    except Exception as err:                     # jupytext and nbformat raise many types on broken input
        return _refused("bad-notebook", str(err)[:300] if isinstance(err, ValueError) else
                        f"not a readable notebook: {type(err).__name__}: {str(err)[:200]}")
    if not any(c.strip() for c in cells):
        return _refused("empty", "no code cells" if not cells else "the code cells are empty")
    return Submission(cells)


# --------------------------------------------------------------------------- the worker process

class WorkerFault(CheckFailed):
    """A check that failed because of what the worker did (time, exit, crash, memory, the tripwire)."""

    def __init__(self, status: str, measured: str, expected: str, hint: str) -> None:
        super().__init__(measured, expected, hint)
        self.status = status


class RemoteError(Exception):
    """An exception the student's function raised in the worker; ``type_name`` is its type's name there."""

    def __init__(self, type_name: str, message: str) -> None:
        super().__init__(message)
        self.type_name = type_name


_LIVE: set[_Worker] = set()
_LIVE_LOCK = threading.Lock()


def kill_all_workers() -> int:
    """Kill every worker this process has started and not yet ended (Ctrl-C in a batch); return how many.

    Pass a set ``stop`` event to :func:`grade_submission` first, or the grading threads start fresh workers.
    """
    with _LIVE_LOCK:
        workers = list(_LIVE)
    for worker in workers:
        worker.kill_group()
    return len(workers)


def _worker_env() -> dict[str, str]:
    src = str(Path(labcode.__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "MPLBACKEND": "Agg", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONSAFEPATH": "1"}


class _Worker:
    """One worker process: its own session and process group, a pipe each way, stderr kept until it is ready."""

    def __init__(self, cwd: str, memory_mb: int) -> None:
        to_r, to_w = os.pipe()           # grader -> worker
        from_r, from_w = os.pipe()       # worker -> grader
        self._stderr = tempfile.TemporaryFile()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "labcode.lab.worker", str(to_r), str(from_w), str(memory_mb), str(os.getpid())],
                cwd=cwd, env=_worker_env(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=self._stderr, pass_fds=(to_r, from_w), start_new_session=True)
        except BaseException:
            for fd in (to_r, to_w, from_r, from_w):
                os.close(fd)
            self._stderr.close()
            raise
        os.close(to_r)
        os.close(from_w)
        os.set_blocking(to_w, False)
        self._to, self._from = to_w, from_r
        with _LIVE_LOCK:
            _LIVE.add(self)

    def alive(self) -> bool:
        """Whether the worker runs, found without reaping it: its process id, which is also its process group's,
        stays reserved until :meth:`close` has killed the group."""
        if self.proc.returncode is not None:
            return False
        try:
            return os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None
        except ChildProcessError:
            return False

    def send(self, request: Any, deadline: float) -> None:
        write_message(self._to, encode_request(request), deadline=deadline, alive=self.alive)

    def receive(self, deadline: float) -> dict[str, Any]:
        return decode_reply(read_message(self._from, deadline=deadline, alive=self.alive))

    def stderr_tail(self, n: int = 600) -> str:
        self._stderr.seek(0)
        return self._stderr.read()[-n:].decode("utf-8", "replace").strip()

    def kill_group(self) -> None:
        """SIGKILL the worker's process group: the worker and the children it did not move to another session."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def finish(self, grace: float) -> int | None:
        """After the channel closed: the worker's exit status if it ends within ``grace`` seconds (negative: the
        signal), ``None`` if it had to be killed; the worker is gone afterwards."""
        end = time.monotonic() + grace
        while self.alive() and time.monotonic() < end:
            time.sleep(0.02)
        ended = not self.alive()
        self.close()
        return self.proc.returncode if ended else None

    def close(self) -> None:
        """Kill the process group (before reaping the worker, so that its id cannot have been reused), reap it and
        close the pipes."""
        with _LIVE_LOCK:
            _LIVE.discard(self)
        self.kill_group()
        self.proc.wait()
        for fd in (self._to, self._from):
            try:
                os.close(fd)
            except OSError:
                pass
        self._stderr.close()


def _from_worker(value: Any) -> str:
    """A text from the worker's reply, cut at :data:`~labcode.lab.runner.MAX_MESSAGE_CHARS` plus room for an
    exception's type (a forged reply may hold 64 MB of text)."""
    return str(value)[:MAX_MESSAGE_CHARS + 100]


def _exit_text(code: int | None, memory_mb: int) -> tuple[str, str]:
    """(status, words) for a worker that ended with ``code`` (``Popen.returncode``; ``None``: it stopped answering)."""
    if code is None:
        return "crashed", "stopped answering (it closed the grader's channel)"
    if code >= 0:
        return "exited", f"ended the process with exit status {code} (os._exit or a C-level exit)"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = f"signal {-code}"
    note = {"SIGKILL": f" (out of memory? the limit is {memory_mb} MB)", "SIGSEGV": " (a segmentation fault)",
            "SIGXFSZ": " (it wrote a file over the size limit)", "SIGABRT": " (aborted)"}.get(name, "")
    return "crashed", f"was killed by {name}{note}"


class _Session:
    """The worker side of one submission: starts workers, runs the cells, relays calls, records what went wrong."""

    def __init__(self, submission: Submission, cwd: str, *, timeout: float, memory_mb: int,
                 stop: threading.Event | None = None) -> None:
        self.submission, self.cwd, self.timeout, self.memory_mb = submission, cwd, timeout, memory_mb
        self.stop = stop
        self.deadline = time.monotonic() + timeout
        self.worker: _Worker | None = None
        self.names: dict[str, str] | None = None
        self.errors: tuple[CellError, ...] = ()
        self.events: list[tuple[str, str]] = []
        self.fatal: tuple[str, str, str] | None = None     # (status, measured, hint) that fails every later check

    def __enter__(self) -> _Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self._drop_worker()

    def _drop_worker(self) -> None:
        if self.worker is not None:
            self.worker.close()
            self.worker = None

    def _event(self, status: str, reason: str) -> None:
        self.events.append((status, reason))

    def _stop(self, status: str, reason: str, measured: str, hint: str) -> None:
        """Fail every check from now on: the worker is gone and cannot be replaced."""
        self._drop_worker()
        self._event(status, reason)
        self.fatal = (status, measured, hint)

    def _time_limit(self, where: str) -> None:
        self._stop("timeout", f"time limit ({self.timeout:g} s) reached {where}",
                   f"time limit ({self.timeout:g} s) reached {where}",
                   "look for an endless loop or a computation far longer than the lab needs")

    def start(self) -> None:
        """Start a worker and run the cells; the first run's cell errors and names are kept."""
        cell = 0
        if self.stop is not None and self.stop.is_set():
            raise RuntimeError("grading was interrupted")
        try:
            self.worker = _Worker(self.cwd, self.memory_mb)
            try:
                ready = self.worker.receive(self.deadline)
            except (EOFError, ReplyError) as err:
                raise RuntimeError(f"the grader's worker did not start ({err}): {self.worker.stderr_tail()}") from err
            if ready.get("kind") != "ready":
                raise RuntimeError("the grader's worker did not start: unexpected first message")
            self.worker.send({"cells": list(self.submission.cells), "module": self.submission.module}, self.deadline)
            while (message := self.worker.receive(self.deadline)).get("kind") == "cell":
                index = message.get("index")
                if not (isinstance(index, int) and 1 <= index <= len(self.submission.cells)):
                    raise ReplyError("a malformed cell number")
                cell = index
            if message.get("kind") != "cells":
                raise ReplyError("an unexpected message")
            if self.names is None:
                self._keep_cell_report(message)
        except TimeoutError:
            self._time_limit(f"while cell {cell} ran" if cell else "before the cells ran")
        except EOFError:
            status, words = _exit_text(self.worker.finish(grace=min(2.0, self._left())), self.memory_mb)
            self.worker = None
            where = f"cell {cell}" if cell else "the submission"
            self._stop(status, f"{where} {words}", f"not graded: {where} {words}",
                       "a cell must not end the process (os._exit) or crash it")
        except ReplyError as err:
            where = f"while cell {cell} ran" if cell else "before the cells ran"
            self._stop("crashed", f"the worker sent {err} {where}", "not graded: unreadable worker",
                       "a cell must not write to the grader's channel")

    def _keep_cell_report(self, message: dict[str, Any]) -> None:
        """Keep the names and the cells' errors of the worker's report, checked as any reply: at most one error
        per cell, each ``[cell number, text, kind]``."""
        names, errors, n = message.get("names"), message.get("errors"), len(self.submission.cells)
        if not (isinstance(names, dict) and isinstance(errors, list) and len(errors) <= n
                and all(isinstance(e, list) and len(e) == 3 and isinstance(e[0], int) and 1 <= e[0] <= n
                        and isinstance(e[1], str) and e[2] in ("raised", "syntax", "memory") for e in errors)):
            raise ReplyError("a malformed report of the cells")
        self.names = {item.name: _from_worker(names.get(item.name, "missing")) for item in CHECKLIST}
        self.errors = tuple(CellError(i, _from_worker(text), kind) for i, text, kind in errors)
        for err in self.errors:
            if err.kind == "syntax":
                self._event("syntax-error", f"cell {err.index}: {err.error}")
            elif err.kind == "memory":
                self._event("memory", f"cell {err.index} ran out of memory (limit {self.memory_mb} MB)")

    def _left(self) -> float:
        return self.deadline - time.monotonic()

    def call(self, name: str, args: tuple, kwargs: dict[str, Any],
             wrt: tuple[int, ...] | None) -> tuple[Any, Any]:
        """``(value, gradients)`` of the student's ``name`` (or the end-to-end pipeline) in the worker; a fault or
        the student's error raises."""
        expected = EXPECTED if name == END_TO_END else CHECKS[name][1]
        if self.fatal is None and self.worker is None:
            self.start()
        if self.fatal is not None:
            status, measured, hint = self.fatal
            raise WorkerFault(status, measured, expected, hint)
        try:
            self.worker.send((name, args, kwargs, wrt), self.deadline)
            reply = self.worker.receive(self.deadline)
            kind, tripwire = reply.get("kind"), reply.get("tripwire", [])
            if not (isinstance(kind, str) and isinstance(tripwire, list)):
                raise ReplyError("a malformed reply")
        except TimeoutError:
            self._time_limit(f"in {name}")
            raise WorkerFault("timeout", self.fatal[1], expected, self.fatal[2]) from None
        except EOFError:
            status, words = _exit_text(self.worker.finish(grace=min(2.0, self._left())), self.memory_mb)
            self.worker = None
            self._event(status, f"{name} {words}")
            raise WorkerFault(status, f"it {words}", expected,
                              "a function must return its result, not end or crash the process") from None
        except ReplyError as err:
            self._drop_worker()
            self._event("crashed", f"{name}: the worker sent {err}")
            raise WorkerFault("crashed", f"unreadable result: {err}", expected, "return tensors, numbers or dicts") from None
        if tripwire:
            used = _from_worker(", ".join(map(str, tripwire[:20])))
            self._event("uses-reference", f"{name} calls {used}")
            raise WorkerFault("uses-reference", f"calls {used}", expected,
                              f"write {name} yourself: labcode's own implementation is what it is compared with")
        if kind == "return":
            return reply.get("value"), reply.get("grads")
        if kind == "raise":
            if reply.get("not_implemented") is True:
                raise NotImplementedError(_from_worker(reply.get("message")))
            raise RemoteError(_from_worker(reply.get("type")), _from_worker(reply.get("message")))
        if kind == "exit":
            code = _from_worker(reply.get("code"))
            self._event("exited", f"{name} called exit({code})")
            raise WorkerFault("exited", f"called exit({code})", expected,
                              "a function must return its result, not call exit()")
        if kind == "memory":
            self._drop_worker()
            self._event("memory", f"{name} ran out of memory (limit {self.memory_mb} MB)")
            raise WorkerFault("memory", f"out of memory (limit {self.memory_mb} MB)", expected,
                              "the lab's functions need little memory: look for a tensor far larger than the data")
        self._drop_worker()
        self._event("crashed", f"{name}: the worker sent a reply of kind {_from_worker(kind)[:40]!r}")
        raise WorkerFault("crashed", "unreadable result", expected, "return tensors, numbers or dicts")

    def verdict(self) -> tuple[str, str]:
        """The status (the most severe event; ``graded`` if none) and the reason (every event, in order)."""
        if not self.events:
            return "graded", ""
        status = min((s for s, _ in self.events), key=_RUNTIME.index)
        reason = "; ".join(dict.fromkeys(r for _, r in self.events))
        return status, reason if len(reason) <= 500 else reason[:499] + "…"


class RemoteFunction:
    """A student's function, living in the worker, as the checks see it: calling it asks the worker."""

    def __init__(self, session: _Session, name: str) -> None:
        self._session, self.name = session, name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._session.call(self.name, args, kwargs, None)[0]

    def call_with_grad(self, args: tuple, kwargs: dict[str, Any], wrt: tuple[int, ...]) -> tuple[Any, Any]:
        """The value and the gradients of its sum with respect to ``args[i]``, ``i`` in ``wrt``, computed in the
        worker (see :func:`labcode.lab.checks.call_with_grad`)."""
        return self._session.call(self.name, args, kwargs, tuple(wrt))


# --------------------------------------------------------------------------- grading

def _grade_item(session: _Session, name: str) -> Result:
    if session.fatal is None and session.names is None:
        session.start()
    if session.fatal is not None:
        _, measured, hint = session.fatal
        return Result(name, False, measured, CHECKS[name][1], hint)
    state = session.names[name]
    if state == "missing":
        return not_defined(name)
    if state.startswith("not a function: "):
        return not_a_function(name, state.removeprefix("not a function: "))
    return check_function(name, RemoteFunction(session, name))


def _grade_end_to_end(session: _Session, results: tuple[Result, ...]) -> Result:
    """The end-to-end row: the pipeline in the worker, judged here; at once when a function is missing or a TODO."""
    start = time.monotonic()
    if session.fatal is not None:
        _, measured, hint = session.fatal
        return Result(END_TO_END, False, measured, EXPECTED, hint)
    missing = incomplete(session.names or {}, results)
    if missing is not None:
        return needs_all(*missing)
    try:
        pipeline, _ = session.call(END_TO_END, (PLAN,), {}, None)
    except WorkerFault as fault:
        return Result(END_TO_END, False, fault.measured, EXPECTED, fault.hint)
    except (RemoteError, NotImplementedError) as err:      # only a worker whose pipeline a cell replaced
        return Result(END_TO_END, False, f"the pipeline raised {type(err).__name__}: {err}", EXPECTED,
                      "a cell must not replace the grader's pipeline")
    result = check_end_to_end(pipeline)
    return replace(result, seconds=time.monotonic() - start)


def grade_submission(path: str | Path, *, timeout: float = DEFAULT_TIMEOUT, memory_mb: int = DEFAULT_MEMORY_MB,
                     stop: threading.Event | None = None) -> Graded:
    """Grade one submission file in a worker process (see the module's description); never raises for a bad file.

    Args:
        path: a ``.ipynb``, MyST ``.md`` or ``.py`` file (any other file gets the status ``not-a-notebook``).
        timeout: wall-clock seconds for the whole submission, > 0.
        memory_mb: the worker's memory limit in MB, at least 256.
        stop: once set, no new worker starts and grading raises ``RuntimeError`` (a batch interrupted by Ctrl-C).
    """
    if not isinstance(path, (str, Path)):
        raise TypeError(f"path must be a str or Path, got {type(path).__name__}")
    if not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError(f"timeout must be a number of seconds > 0, got {timeout!r}")
    if not isinstance(memory_mb, int) or memory_mb < 256:
        raise ValueError(f"memory_mb must be an int >= 256 (the worker needs about 250 MB), got {memory_mb!r}")
    start = time.monotonic()
    path = Path(path)
    submission = read_submission(path)
    if submission.cells is None:
        results = tuple(Result(item.name, False, f"not graded ({submission.status})", CHECKS[item.name][1],
                               submission.reason) for item in CHECKLIST)
        end_to_end = Result(END_TO_END, False, f"not graded ({submission.status})", EXPECTED, submission.reason)
        return Graded(path, results, (), submission.status, submission.reason, time.monotonic() - start, end_to_end)
    with tempfile.TemporaryDirectory(prefix="labcode-grade-", ignore_cleanup_errors=True) as cwd, \
            _Session(submission, cwd, timeout=timeout, memory_mb=memory_mb, stop=stop) as session:
        results = tuple(_grade_item(session, item.name) for item in CHECKLIST)
        end_to_end = _grade_end_to_end(session, results)
    status, reason = session.verdict()
    return Graded(path, results, session.errors, status, reason, time.monotonic() - start, end_to_end)


def format_graded(graded: Graded, *, title: bool = False) -> str:
    """The report of a graded submission: :func:`labcode.lab.runner.format_report`'s table and end-to-end row, after a status line
    unless the status is ``graded``; with ``title``, after the submission's path, status, reason and time. The
    path and the reason are :func:`~labcode.lab.runner.printable`: one line each, whatever the file's name or the
    student's exception says."""
    if not isinstance(graded, Graded):
        raise TypeError(f"graded must be a Graded, got {type(graded).__name__}")
    reason = printable(graded.reason)
    if title:
        head = [f"submission: {printable(str(graded.path))}", f"status: {graded.status}"]
        head += [f"reason: {reason}"] if reason else []
        head += [f"time: {graded.seconds:.1f} s", ""]
    else:
        head = [f"status: {graded.status}: {reason}", ""] if graded.status != "graded" else []
    return "\n".join([*head, format_report(list(graded.results), list(graded.errors), graded.end_to_end)])
