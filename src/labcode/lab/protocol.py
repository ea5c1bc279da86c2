"""The messages between the grader and its worker process (:mod:`labcode.lab.sandbox`, :mod:`labcode.lab.worker`).

Each message is a length (8 bytes, little-endian) followed by its bytes, on a
pipe of its own (never the worker's stdin or stdout, which the student's code
may use).

- Grader → worker: a ``pickle`` of plain data (the cells; a function's name,
  its arguments and which of them to differentiate). The grader's data is
  trusted, so the worker may unpickle it.
- Worker → grader: a dict written with ``torch.save`` and read with
  ``torch.load(..., weights_only=True)``, the safe unpickler that rebuilds
  tensors, numbers, strings, ``None``, lists, tuples and dicts and nothing
  else: a reply cannot run code in the grader. Before that, :func:`check_archive`
  bounds what reading it costs: an archive of uncompressed entries only
  (torch would inflate a compressed one, a thousand times its size) whose
  pickle is at most :data:`MAX_STRUCTURE_BYTES` (the unpickler is Python, about
  a second per megabyte). :func:`sendable` converts what
  a student's function returns into those types in the worker (a ``Mapping``
  becomes a dict, a tensor a detached copy that keeps its ``requires_grad``,
  any other object a marker naming its type), and :func:`received` checks the
  reply's size and turns the markers into :class:`Unsendable` instances whose
  class bears the original type's name, so a check's message still says
  "expected a dict, got Namespace". :func:`received` also stops after
  :data:`MAX_VALUES` values, so that a list that holds the same list twice, 40
  times over (a message of a few hundred bytes), is refused rather than walked.
"""

from __future__ import annotations

import io
import os
import pickle
import re
import select
import struct
import time
import zipfile
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

import torch
from torch import Tensor

#: the largest message either side accepts, in bytes (a correct submission's largest reply is about 2 MB)
MAX_MESSAGE_BYTES = 64 << 20
#: how deeply a reply may nest lists, tuples and dicts
MAX_DEPTH = 32
#: the largest pickle in a reply (its structure, without the tensors' data), in bytes; a correct submission's is
#: under 2 kB
MAX_STRUCTURE_BYTES = 1 << 20
#: the most values (tensors, numbers, strings, lists, tuples, dicts) a reply may hold, a value held twice counted twice
MAX_VALUES = 100_000

_HEADER = struct.Struct("<Q")
_MARKER = "__unsendable__"
_POLL_SECONDS = 0.25


class ReplyError(Exception):
    """A message that breaks the protocol: too large, unreadable, or of an unexpected form."""


# --------------------------------------------------------------------------- framing

def _wait(fd: int, *, write: bool, deadline: float | None, alive: Callable[[], bool] | None) -> None:
    """Block until ``fd`` is ready; ``TimeoutError`` at ``deadline`` (``time.monotonic``), ``EOFError`` once
    ``alive()`` is false and nothing is ready."""
    poller = select.poll()
    poller.register(fd, select.POLLOUT if write else select.POLLIN)
    while True:
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            raise TimeoutError("deadline reached")
        step = remaining if alive is None else min(_POLL_SECONDS, remaining or _POLL_SECONDS)
        if poller.poll(None if step is None else max(1, int(step * 1000))):
            return
        if alive is not None and not alive():
            raise EOFError("the other side ended")


def write_message(fd: int, data: bytes, *, deadline: float | None = None,
                  alive: Callable[[], bool] | None = None) -> None:
    """Send ``data`` on ``fd`` (a non-blocking descriptor when a ``deadline`` is given)."""
    if not isinstance(data, bytes):
        raise TypeError(f"data must be bytes, got {type(data).__name__}")
    view = memoryview(_HEADER.pack(len(data)) + data)
    while view:
        if deadline is not None:
            _wait(fd, write=True, deadline=deadline, alive=alive)
        try:
            sent = os.write(fd, view)
        except BlockingIOError:
            continue
        except BrokenPipeError as err:
            raise EOFError("the other side closed the channel") from err
        view = view[sent:]


def _read_exact(fd: int, n: int, deadline: float | None, alive: Callable[[], bool] | None) -> bytes:
    parts, got = [], 0
    while got < n:
        if deadline is not None or alive is not None:
            _wait(fd, write=False, deadline=deadline, alive=alive)
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            raise EOFError("the other side closed the channel")
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def read_message(fd: int, *, deadline: float | None = None, alive: Callable[[], bool] | None = None,
                 limit: int = MAX_MESSAGE_BYTES) -> bytes:
    """Receive one message from ``fd``; :class:`ReplyError` if it announces more than ``limit`` bytes."""
    if not isinstance(limit, int) or limit <= 0:
        raise ValueError(f"limit must be a positive int, got {limit!r}")
    (size,) = _HEADER.unpack(_read_exact(fd, _HEADER.size, deadline, alive))
    if size > limit:
        raise ReplyError(f"a message of {size} bytes, over the {limit >> 20} MB limit")
    return _read_exact(fd, size, deadline, alive)


# --------------------------------------------------------------------------- grader -> worker

def encode_request(request: Any) -> bytes:
    """The grader's request (plain data, tensors, modules, generators) as bytes."""
    return pickle.dumps(request, protocol=pickle.HIGHEST_PROTOCOL)


def decode_request(data: bytes) -> Any:
    """The worker's side of :func:`encode_request` (the grader is trusted)."""
    return pickle.loads(data)


# --------------------------------------------------------------------------- worker -> grader

def _marker(value: Any) -> dict[str, str]:
    return {_MARKER: type(value).__name__}


def sendable(value: Any, depth: int = 0) -> Any:
    """``value`` in the types the grader's safe unpickler accepts (run in the worker).

    Tensors become detached CPU copies that keep ``requires_grad`` (the grader
    rebuilds them as leaves); subclasses of ``int``, ``float``, ``str``,
    ``tuple``, ``list`` and ``Mapping`` become the plain type; anything else,
    and anything nested deeper than :data:`MAX_DEPTH`, becomes a marker naming
    its type.
    """
    if depth > MAX_DEPTH:
        return _marker(value)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, Tensor):
        copy = value.detach().to("cpu", copy=True)
        if copy.layout != torch.strided:
            copy = copy.to_dense()
        copy = copy.as_subclass(Tensor)
        return copy.requires_grad_() if value.requires_grad and copy.is_floating_point() else copy
    for plain in (int, float, str):
        if isinstance(value, plain):
            return plain(value)
    if isinstance(value, Mapping):
        return {_sendable_key(k): sendable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        items = [sendable(v, depth + 1) for v in value]
        return items if isinstance(value, list) else tuple(items)
    return _marker(value)


def _sendable_key(key: Any) -> Any:
    """A dict key as a plain hashable value; an unhashable or unknown key becomes its type's name in angle brackets."""
    if key is None or isinstance(key, bool):
        return key
    for plain in (int, float, str):
        if isinstance(key, plain):
            return plain(key)
    if isinstance(key, tuple):
        return tuple(_sendable_key(k) for k in key)
    return f"<{type(key).__name__}>"


def encode_reply(reply: Mapping[str, Any]) -> bytes:
    """A reply (a dict of :func:`sendable` values) as bytes, for :func:`decode_reply`."""
    if not isinstance(reply, Mapping):
        raise TypeError(f"reply must be a mapping, got {type(reply).__name__}")
    buffer = io.BytesIO()
    torch.save(sendable(reply), buffer)
    return buffer.getvalue()


class Unsendable:
    """In the grader, a value that the worker could not send; its class is named after the value's type."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} object from the submission>"


@lru_cache(maxsize=256)
def unsendable_type(name: str) -> type:
    """A subclass of :class:`Unsendable` named ``name`` (cleaned to an identifier of at most 60 characters)."""
    clean = re.sub(r"\W", "_", name)[:60] or "object"
    return type(clean, (Unsendable,), {"__module__": "submission"})


def received(value: Any, depth: int = 0, budget: list[int] | None = None) -> Any:
    """A decoded reply with its markers turned into :class:`Unsendable` objects; :class:`ReplyError` if it holds
    a tensor larger than :data:`MAX_MESSAGE_BYTES` (a stride-0 view of a small storage), a tensor off the CPU,
    a type the protocol does not send, more than :data:`MAX_VALUES` values, or nests deeper than :data:`MAX_DEPTH`."""
    budget = [MAX_VALUES] if budget is None else budget
    budget[0] -= 1
    if budget[0] < 0:
        raise ReplyError(f"a reply of over {MAX_VALUES} values")
    if depth > MAX_DEPTH + 2:      # the reply's own dict and the marker's
        raise ReplyError("a reply nested too deeply")
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Tensor):
        if value.layout != torch.strided or value.device.type != "cpu":
            raise ReplyError(f"a {value.layout} tensor on {value.device}")
        if value.numel() * value.element_size() > MAX_MESSAGE_BYTES:
            raise ReplyError(f"a tensor of shape {tuple(value.shape)}, over the size limit")
        return value
    if isinstance(value, dict):
        if set(value) == {_MARKER} and isinstance(value[_MARKER], str):
            return unsendable_type(value[_MARKER])()
        return {k: received(v, depth + 1, budget) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        items = [received(v, depth + 1, budget) for v in value]
        return items if isinstance(value, list) else tuple(items)
    raise ReplyError(f"a value of type {type(value).__name__}")


def check_archive(data: bytes) -> None:
    """:class:`ReplyError` unless ``data`` is a torch archive (a zip file) of uncompressed entries whose pickle
    (``data.pkl``) is at most :data:`MAX_STRUCTURE_BYTES`: then what ``torch.load`` allocates is bounded by the
    message's size and the time its unpickler takes by the structure's."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, ValueError) as err:
        raise ReplyError(f"an unreadable reply (not a torch archive: {err})") from err
    if any(e.compress_type != zipfile.ZIP_STORED or e.file_size > len(data) for e in entries):
        raise ReplyError("a compressed reply")
    pickles = [e.file_size for e in entries if e.filename.endswith("/data.pkl")]
    if len(pickles) != 1 or pickles[0] > MAX_STRUCTURE_BYTES:
        raise ReplyError(f"a reply whose structure is not one pickle of at most {MAX_STRUCTURE_BYTES >> 20} MB")


def decode_reply(data: bytes) -> dict[str, Any]:
    """The grader's side of :func:`encode_reply`: :func:`check_archive`, the safe unpickler, then :func:`received`."""
    if not isinstance(data, bytes):
        raise TypeError(f"data must be bytes, got {type(data).__name__}")
    check_archive(data)
    try:
        reply = torch.load(io.BytesIO(data), weights_only=True)
    except Exception as err:
        raise ReplyError(f"an unreadable reply ({type(err).__name__})") from err
    if not (isinstance(reply, dict) and isinstance(reply.get("kind"), str)):
        raise ReplyError("a reply that is not a message")
    return received(reply)
