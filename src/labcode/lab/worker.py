"""The grader's worker: the one process that runs a submission's code (``python -m labcode.lab.worker``).

:mod:`labcode.lab.sandbox` starts it, one per submission (and a fresh one
after a crash), in a new session, in an empty temporary directory, with two
pipes of its own (:mod:`labcode.lab.protocol`). It

1. limits itself before any student code runs (``RLIMIT_DATA`` to the
   grader's ``--memory``, no core files, files of at most
   :data:`MAX_FILE_MB` MB), asks the kernel to kill it if the grader dies,
   uses one torch thread, tells the grader it is ready and sends its
   stdout and stderr to ``/dev/null``;
2. receives the cells, wraps ``labcode``'s reference implementations with
   tripwires (:func:`install_tripwires`), runs the cells as
   :func:`labcode.lab.runner.run_cells` does (announcing each one, so that
   the grader can say which cell hung or ended the process) and reports the
   cells that failed and which checklist names are functions;
3. answers calls: the student's function, isolated as in the in-process
   grader (:func:`labcode.lab.runner.isolated`), on the grader's arguments,
   replying with its value (and the gradients the check asked for), the
   exception it raised, the ``exit()`` it called or the memory it ran out
   of, together with any reference the tripwire saw it call; and the
   end-to-end request (:data:`~labcode.lab.endtoend.END_TO_END`): the
   pipeline of :func:`labcode.lab.endtoend.run_pipeline` on the namespace's
   functions as they are, replying with its plain values (which name any
   reference the student's code called while it ran).

The limits are set here rather than in a ``preexec_fn``: the grader starts
workers from several threads, and Python documents ``preexec_fn`` as unsafe
in a threaded parent. Nothing this process says is trusted: the grader
reads its replies with the safe unpickler and checks them itself.
"""

from __future__ import annotations

import ctypes
import functools
import os
import resource
import signal
import sys
from collections.abc import Callable
from typing import Any

import torch

from .checklist import CHECKLIST, reference_aliases
from .checks import call_with_grad
from .endtoend import END_TO_END, pass_through, run_pipeline
from .protocol import MAX_MESSAGE_BYTES, decode_reply, decode_request, encode_reply, read_message, write_message
from .runner import error_message, is_out_of_memory, isolated, namespace_states, run_cells

#: the largest file a submission may write, in MB (RLIMIT_FSIZE)
MAX_FILE_MB = 256

_PR_SET_PDEATHSIG = 1


def limit_resources(memory_mb: int) -> None:
    """Cap this process's data segment (heap and private mappings, not shared ones) at ``memory_mb`` MB, forbid core files and
    files over :data:`MAX_FILE_MB` MB.

    ``RLIMIT_DATA`` rather than ``RLIMIT_AS``: both stop a 4 GB tensor under a
    2 GB limit with torch's CPU build, but the address space also counts
    libraries and the large reservations a CUDA build makes at start.
    """
    if not isinstance(memory_mb, int) or memory_mb <= 0:
        raise ValueError(f"memory_mb must be a positive int, got {memory_mb!r}")
    resource.setrlimit(resource.RLIMIT_DATA, (memory_mb << 20, memory_mb << 20))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (MAX_FILE_MB << 20, MAX_FILE_MB << 20))


def die_with_parent(parent_pid: int) -> None:
    """Ask Linux to SIGKILL this process when the grader (``parent_pid``) ends; end now if it already has."""
    if not isinstance(parent_pid, int) or parent_pid <= 0:
        raise ValueError(f"parent_pid must be a positive int, got {parent_pid!r}")
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:
        os._exit(70)


# --------------------------------------------------------------------------- tripwires

def _references() -> dict[int, tuple[str, Callable]]:
    """{id: (checklist name, function)} of each reference and of the ``labcode`` functions that are the same
    implementation under another name (:func:`labcode.lab.checklist.reference_aliases`)."""
    return {id(f): (name, f) for name, f in reference_aliases()}


def install_tripwires(grading: list[str | None], calls: set[str]) -> int:
    """Wrap every reference wherever a loaded ``labcode`` module binds it; return how many bindings were wrapped.

    While ``grading[0]`` names a checklist function, a call to *that* function's
    reference adds the reference's name to ``calls``; the call itself goes
    through. The other ten references stay usable (isolation hands them to the
    student's function). ``VAE.compute_elbo`` is wrapped on the class and the
    checklist's own entries too.
    """
    from ..vae import VAE

    references = _references()
    wrappers = {key: _tripwire(name, f, grading, calls) for key, (name, f) in references.items()}
    wrapped = 0
    for module_name, module in list(sys.modules.items()):
        if module is None or not (module_name == "labcode" or module_name.startswith("labcode.")):
            continue
        for attr, value in list(vars(module).items()):
            if id(value) in references and references[id(value)][1] is value:
                setattr(module, attr, wrappers[id(value)])
                wrapped += 1
    VAE.compute_elbo = wrappers[id(VAE.compute_elbo)]
    for item in CHECKLIST:
        object.__setattr__(item, "reference", wrappers[id(item.reference)])
    return wrapped


def _tripwire(name: str, f: Callable, grading: list[str | None], calls: set[str]) -> Callable:
    label = f"{f.__module__}.{f.__qualname__}"

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if grading[0] == name:
            calls.add(label)
        return f(*args, **kwargs)

    return pass_through(wrapper)


# --------------------------------------------------------------------------- the session

def _exit_code(code: object) -> str:
    """``repr(code)`` of ``exit(code)``, cut at 100 characters, or the type's name when the ``repr`` fails."""
    try:
        return repr(code)[:100]
    except Exception:                              # a student's object whose __repr__ fails
        return f"a {type(code).__name__}"


def _isolated(ns: dict[str, Any], functions: dict[str, Callable], name: str) -> Callable:
    """The student's ``name`` isolated (:func:`~labcode.lab.runner.isolated`), once per check as in process."""
    if name not in functions:
        functions[name] = isolated(name, ns)
    return functions[name]


def _answer(ns: dict[str, Any], functions: dict[str, Callable], request: tuple, grading: list[str | None],
           calls: set[str]) -> dict[str, Any]:
    """Call the student's function as ``request = (name, args, kwargs, wrt)`` asks; the reply to send."""
    name, args, kwargs, wrt = request
    calls.clear()
    grading[0] = name
    try:
        if name == END_TO_END:                       # the student's functions as they are, calling each other
            reply = {"kind": "return", "value": run_pipeline(ns, *args, **kwargs), "grads": None}
        elif wrt is None:
            reply = {"kind": "return", "value": _isolated(ns, functions, name)(*args, **kwargs), "grads": None}
        else:
            value, grads = call_with_grad(_isolated(ns, functions, name), args, kwargs, wrt)
            reply = {"kind": "return", "value": value, "grads": grads}
    except SystemExit as err:
        reply = {"kind": "exit", "code": _exit_code(err.code)}
    except BaseException as err:                     # the student's error, KeyboardInterrupt included
        if is_out_of_memory(err):
            reply = {"kind": "memory", "message": error_message(err)}
        else:
            reply = {"kind": "raise", "type": type(err).__name__, "message": error_message(err),
                     "not_implemented": isinstance(err, NotImplementedError)}
    finally:
        grading[0] = None
    reply["tripwire"] = sorted(calls)
    return reply


def _encode(reply: dict[str, Any]) -> bytes:
    """The reply as bytes; a value that cannot be sent, or that the grader would refuse (too many values, too large
    a structure: :func:`~labcode.lab.protocol.decode_reply`), becomes the error that says so."""
    try:
        data = encode_reply(reply)
        decode_reply(data)
    except BaseException as err:
        kind = "memory" if is_out_of_memory(err) else "raise"
        data = encode_reply({"kind": kind, "type": "UnsendableResult", "not_implemented": False,
                             "message": f"the result could not be sent: {type(err).__name__}: {error_message(err)}",
                             "tripwire": reply.get("tripwire", [])})
    if len(data) > MAX_MESSAGE_BYTES - 64:
        data = encode_reply({"kind": "raise", "type": "ResultTooLarge", "not_implemented": False,
                             "message": f"the result takes {len(data) >> 20} MB, over the "
                                        f"{MAX_MESSAGE_BYTES >> 20} MB limit",
                             "tripwire": reply.get("tripwire", [])})
    return data


def _serve(read_fd: int, write_fd: int) -> int:
    """Receive the cells, run them, then answer calls until the grader closes the channel or sends ``None``."""
    def send(message: dict[str, Any]) -> None:
        write_message(write_fd, _encode(message))

    try:
        start = decode_request(read_message(read_fd))
    except EOFError:
        return 0
    grading: list[str | None] = [None]
    calls: set[str] = set()
    install_tripwires(grading, calls)
    ns, errors = run_cells(start["cells"], name=start["module"],
                           on_cell=lambda index: send({"kind": "cell", "index": index}))
    send({"kind": "cells", "errors": [[e.index, e.error, e.kind] for e in errors],
          "names": namespace_states(ns)})
    functions: dict[str, Callable] = {}
    while True:
        try:
            request = decode_request(read_message(read_fd))
        except EOFError:
            return 0
        if request is None:
            return 0
        send(_answer(ns, functions, request, grading, calls))


def main(argv: list[str] | None = None) -> int:
    """``python -m labcode.lab.worker READ_FD WRITE_FD MEMORY_MB PARENT_PID`` (started by the grader only)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 4 or not all(a.isdigit() for a in args):
        print("usage: python -m labcode.lab.worker READ_FD WRITE_FD MEMORY_MB PARENT_PID "
              "(started by python -m labcode.grade)", file=sys.stderr)
        return 2
    read_fd, write_fd, memory_mb, parent_pid = map(int, args)
    limit_resources(memory_mb)
    die_with_parent(parent_pid)
    torch.set_num_threads(1)
    write_message(write_fd, encode_reply({"kind": "ready"}))
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.dup2(null, 2)
    return _serve(read_fd, write_fd)


if __name__ == "__main__":
    sys.exit(main())
