"""One chapter's execution, in its own process: ``python -m labcode_build.worker JOBDIR``.

The build (``execution.py``) starts one worker per chapter it executes, each in a new session, and
talks to it through files in ``JOBDIR``:

- ``job.json`` (from the build): the notebook, its working directory, nbclient's per-cell timeout,
  whether errors are allowed, the build's pid;
- ``progress.json`` (from the worker, rewritten atomically): the kernel's pid once it runs and the
  index of the cell executing now, so that the build can name the cell of a chapter it stops and
  kill the kernel's process group (jupyter_client starts kernels in a session of their own);
- ``result.json`` (from the worker, last): the executed notebook, seconds, and either the labcode
  modules the kernel imported and its device, or the failing cell and its exception.

The kernel talks to the worker over IPC (Unix sockets in ``JOBDIR``), not TCP: nothing listens on a
port, and ipykernel has no reason to warn that "Kernel is running over TCP without encryption".
The worker dies with the build (``PR_SET_PDEATHSIG``), and whatever way it ends it kills its
kernel's process group, so no kernel outlives it.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import signal
import sys
import threading
import time
from pathlib import Path
from traceback import format_exception

from .fingerprints import MODULES_CELL, MODULES_MARK

JOB, PROGRESS, RESULT = "job.json", "progress.json", "result.json"
_KERNEL_PID: int | None = None


def write_json(path: Path, value: dict, indent: int | None = None) -> None:
    """Write ``value`` to ``path`` atomically (a reader, or a kill, never leaves half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(value, indent=indent, sort_keys=indent is not None))
    os.replace(temporary, path)


def kill_group(pid: int | None) -> None:
    """SIGKILL the process group led by ``pid`` (a kernel, or a worker), if it still exists."""
    if not pid:
        return
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def term_with_parent() -> None:
    """Ask the kernel for SIGTERM when the parent process ends (``PR_SET_PDEATHSIG``; Linux, else nothing)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)   # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _die_with_parent(parent: int) -> None:
    """Get SIGTERM when the build's process ends, and end now if it already has."""
    term_with_parent()
    if os.getppid() != parent:
        sys.exit(3)


def _on_term(signum, frame) -> None:
    kill_group(_KERNEL_PID)
    os._exit(128 + signum)


#: IPython names the failing statement's line in the cell: "Cell In[4], line 20"
CELL_LINE = re.compile(r"Cell In\[\d*\], line (\d+)")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def failing_cell(nb, current: int | None = None) -> dict | None:
    """The code cell with an error output that stopped the execution (``current``, the cell running then, else
    the first with one): its index, the exception's name and message, and the line of the cell (1-based) that
    raised, when IPython's traceback names it. (A cell tagged ``raises-exception`` has an error output too.)"""
    order = list(range(len(nb.cells)))
    if current is not None and 0 <= current < len(nb.cells):
        order.insert(0, current)
    for index in order:
        cell = nb.cells[index]
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if output.get("output_type") == "error":
                found = CELL_LINE.search(ANSI.sub("", "\n".join(output.get("traceback", []))))
                return {"cell": index, "ename": output.get("ename", ""), "evalue": output.get("evalue", ""),
                        "cell_line": int(found.group(1)) if found else None}
    return None


def execute(jobdir: Path) -> dict:
    """Execute the job's notebook; return what ``result.json`` holds."""
    global _KERNEL_PID
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError
    from traitlets.config import Config

    job = json.loads((jobdir / JOB).read_text())
    nb = nbformat.reads(job["notebook"], as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(MODULES_CELL))
    timeout, allow_errors = job["timeout"], job["allow_errors"]
    execution = nb.metadata.get("execution", {})   # per-notebook overrides, as jupyter-cache honours them
    timeout = execution.get("timeout", timeout)
    allow_errors = execution.get("allow_errors", allow_errors)
    config = Config()
    config.KernelManager.transport = "ipc"
    config.KernelManager.ip = str(jobdir / "kernel")   # socket files kernel-1, kernel-2, ... in JOBDIR
    progress = {"kernel_pid": None, "cell": None}

    def started(**_) -> None:
        global _KERNEL_PID
        provisioner = client.km.provisioner
        _KERNEL_PID = progress["kernel_pid"] = getattr(provisioner, "pid", None) or provisioner.process.pid
        write_json(jobdir / PROGRESS, progress)

    def cell_started(cell_index: int, **_) -> None:
        progress["cell"] = cell_index
        write_json(jobdir / PROGRESS, progress)

    error = traceback = None
    client = None
    stop_watch = threading.Event()

    def watch_kernel() -> None:
        """Record the kernel's pid as soon as it is launched (before it answers), for the build and SIGTERM."""
        global _KERNEL_PID
        while not stop_watch.wait(0.05):
            provisioner = getattr(getattr(client, "km", None), "provisioner", None)
            process = getattr(provisioner, "process", None)
            if process is not None and process.pid != progress["kernel_pid"]:
                _KERNEL_PID = progress["kernel_pid"] = process.pid
                write_json(jobdir / PROGRESS, progress)

    threading.Thread(target=watch_kernel, daemon=True).start()
    start = time.perf_counter()
    for attempt in range(2):
        client = NotebookClient(nb, resources={"metadata": {"path": job["cwd"]}}, timeout=timeout,
                                allow_errors=allow_errors, record_timing=False, config=config,
                                on_notebook_start=started,
                                on_cell_start=cell_started)
        start = time.perf_counter()
        try:
            client.execute()
            break
        except (CellExecutionError, CellTimeoutError, DeadKernelError) as err:
            error = err
            traceback = "".join(format_exception(err))
            break
        except RuntimeError:      # the kernel did not start ("Kernel died before replying"): once more
            if attempt == 1 or progress["cell"] is not None:
                raise
        finally:
            kill_group(_KERNEL_PID)
            _KERNEL_PID = None
    stop_watch.set()
    seconds = time.perf_counter() - start
    last = nb.cells.pop()
    record = {"modules": [], "device": "unknown"}
    for output in last.get("outputs", []):
        text = output.get("text", "")
        if MODULES_MARK in text:
            record = json.loads(text.split(MODULES_MARK, 1)[1].strip().splitlines()[0])
    result = {"notebook": nbformat.writes(nb), "seconds": seconds, "modules": record["modules"],
              "device": record["device"], "error": None}
    if error is not None:
        where = failing_cell(nb, progress["cell"]) or {"cell": progress["cell"], "ename": type(error).__name__, "evalue": str(error)}
        if isinstance(error, CellTimeoutError):
            where = {"cell": progress["cell"], "ename": "CellTimeoutError",
                     "evalue": f"the cell ran longer than the per-cell timeout ({timeout} s, execute.timeout)"}
        elif isinstance(error, DeadKernelError):
            where = {"cell": progress["cell"], "ename": "DeadKernelError",
                     "evalue": "the kernel died while running the cell"}
        result["error"] = {**where, "traceback": traceback}
    return result


def main(argv: list[str]) -> int:
    jobdir = Path(argv[0])
    job = json.loads((jobdir / JOB).read_text())
    _die_with_parent(job["parent"])
    signal.signal(signal.SIGTERM, _on_term)
    if job.get("device"):
        os.environ[job["device_env"]] = job["device"]
    else:
        os.environ.pop(job["device_env"], None)
    write_json(jobdir / RESULT, execute(jobdir))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
