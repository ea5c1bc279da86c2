"""What a chapter's executed outputs depend on besides its cells: pins, device, the labcode modules it imported."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

STAMP = "labcode-fingerprint.txt"
#: what determines every chapter's outputs besides the cells (globs relative to the book's root); conf value
#: labcode_fingerprint. The labcode modules a chapter imports are added per chapter (DEPS).
FINGERPRINTED = ["requirements.txt", "pyproject.toml"]
#: where the library's source lives (relative to the book's root); conf value labcode_source
SOURCE = "src"
#: beside the cache: {doc: {"modules": [...], "fingerprint": ...}} of the last execution of each chapter
DEPS = "labcode-deps.json"
#: printed by a cell appended to each executed notebook (and removed before caching): the labcode modules the
#: kernel imported and the name of the device ``labcode.get_device()`` gave it
MODULES_MARK = "LABCODE-MODULES:"
MODULES_CELL = (
    "import json as _labcode_json, sys as _labcode_sys\n"
    "_labcode_modules = sorted(n for n in _labcode_sys.modules if n == 'labcode' or n.startswith('labcode.'))\n"
    "_labcode_device = (_labcode_sys.modules['labcode'].device_name(_labcode_sys.modules['labcode'].get_device())\n"
    "                   if 'labcode' in _labcode_sys.modules else '—')\n"
    f"print({MODULES_MARK!r} + _labcode_json.dumps({{'modules': _labcode_modules, 'device': _labcode_device}}))"
)
#: the devices a chapter may choose in its front matter (``labcode: {device: cpu}``)
CHAPTER_DEVICES = ("cpu", "cuda")
DEVICE_ENV = "LABCODE_DEVICE"


def chapter_device(metadata: dict, doc: str) -> str | None:
    """A chapter's own device choice from its front matter (``labcode: {device: cpu}``), or ``None``.

    A chapter whose work is too small for a GPU (no training, tensors of a few thousand numbers) runs
    faster on the CPU than it takes CUDA to start; it says so here, and the execution report shows it.
    """
    choice = (metadata.get("labcode") or {}).get("device")
    if choice is not None and choice not in CHAPTER_DEVICES:
        raise ValueError(f"{doc}: front matter labcode.device must be one of {CHAPTER_DEVICES}, got {choice!r}")
    return choice


def chapter_timeout(metadata: dict, doc: str) -> float | None:
    """A chapter's own time limit in seconds from its front matter (``labcode: {timeout: 600}``), or ``None``."""
    value = (metadata.get("labcode") or {}).get("timeout")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{doc}: front matter labcode.timeout must be a positive number of seconds, got {value!r}")
    return float(value)


def kernel_device(choice: str | None) -> str:
    """The ``LABCODE_DEVICE`` a chapter's kernel gets: the build's own setting wins, else the chapter's choice."""
    return os.environ.get(DEVICE_ENV, "").strip() or (choice or "")


def device_signature() -> str:
    """What decides the device without importing torch: LABCODE_DEVICE and whether an NVIDIA GPU is present."""
    return f"{DEVICE_ENV}={os.environ.get(DEVICE_ENV, '')};gpu={Path('/dev/nvidia0').exists()}"


def pinned_content(path: Path) -> bytes:
    """What of a fingerprinted file decides the outputs: all of it, except that of ``pyproject.toml`` only the
    package's own description (``[project]``: its dependencies; ``[build-system]``) counts, not the settings of
    pytest, ruff or mutmut kept in the same file (a new test marker must not re-execute the book)."""
    if path.name != "pyproject.toml":
        return path.read_bytes()
    import tomllib
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError):
        return path.read_bytes()
    relevant = {key: table.get(key) for key in ("project", "build-system")}
    return json.dumps(relevant, sort_keys=True, default=str).encode()


def fingerprint(root: Path, patterns: list[str]) -> str:
    """SHA-256 over the files matching ``patterns`` (relative paths and what of their contents decides the
    outputs, :func:`pinned_content`) and the device signature."""
    digest = hashlib.sha256(device_signature().encode())
    files = sorted({p for pattern in patterns for p in root.glob(pattern) if p.is_file()})
    for path in files:
        digest.update(str(path.relative_to(root)).encode() + b"\0" + pinned_content(path) + b"\0")
    return digest.hexdigest()


def module_file(source: Path, name: str) -> Path | None:
    """The source file of module ``name`` (``labcode.plots.data``) under ``source``, if it is there."""
    base = source.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def modules_fingerprint(base: str, source: Path, modules: list[str], device: str = "") -> str:
    """SHA-256 of the global fingerprint ``base``, the chapter's kernel ``device`` and the source of ``modules``
    (a missing module counts too)."""
    digest = hashlib.sha256(base.encode() + b"\0" + device.encode())
    for name in sorted(set(modules)):
        path = module_file(source, name)
        digest.update(name.encode() + b"\0" + (path.read_bytes() if path is not None else b"<missing>") + b"\0")
    return digest.hexdigest()
