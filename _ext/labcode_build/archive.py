"""Executed chapters kept per library state, so that undoing an edit executes nothing.

jupyter-cache keys a chapter's outputs on its cells alone, so the extension must drop an entry when
a ``labcode`` module the chapter imported changes (``execution._drop_stale_chapters``). Without
more, trying a colour in a plotting module and reverting it would execute the chapters that draw
with it twice. The archive keeps every execution the cache lets go, content-addressed by the
chapter's cells (jupyter-cache's own hash) and the fingerprint of what it imported (the pins, its
device, the source of each ``labcode`` module it imported): before a chapter executes, an archived
execution whose fingerprint matches the library *as it is now* is put back into the cache instead.

Entries are gzip'd JSON files ``<cells hash>-<fingerprint>.json.gz`` in ``_build/.labcode-results``;
each use refreshes its time, and the least recently used go when the folder exceeds
``labcode_results_limit_mb`` (conf value, default 256 MB).
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

ARCHIVE = ".labcode-results"
LIMIT_MB = 256


def _path(archive: Path, hashkey: str, fingerprint: str) -> Path:
    return archive / f"{hashkey}-{fingerprint[:32]}.json.gz"


def keep(archive: Path, hashkey: str, entry: dict, notebook_json: str) -> None:
    """Archive one execution: ``entry`` holds ``modules``, ``fingerprint``, ``data`` (the cache record's data)."""
    archive.mkdir(parents=True, exist_ok=True)
    path = _path(archive, hashkey, entry["fingerprint"])
    if path.is_file():
        os.utime(path)
        return
    temporary = path.with_name(path.name + ".tmp")
    with gzip.open(temporary, "wt", encoding="utf-8") as handle:
        json.dump({**entry, "notebook": notebook_json}, handle)
    os.replace(temporary, path)


def find(archive: Path, hashkey: str, still_valid) -> dict | None:
    """The archived execution of these cells for which ``still_valid(modules, fingerprint)`` holds, or ``None``.

    An entry that cannot be read is deleted (it is only a copy).
    """
    if not archive.is_dir():
        return None
    for path in sorted(archive.glob(f"{hashkey}-*.json.gz"), key=lambda p: -p.stat().st_mtime):
        try:
            with gzip.open(path, "rt", encoding="utf-8") as handle:
                entry = json.load(handle)
            valid = still_valid(entry["modules"], entry["fingerprint"]) and isinstance(entry["notebook"], str)
        except (OSError, ValueError, EOFError, KeyError, TypeError):
            path.unlink(missing_ok=True)
            continue
        if valid:
            os.utime(path)
            return entry
    return None


def evict(archive: Path, limit_mb: float) -> list[Path]:
    """Delete the least recently used entries until the archive holds at most ``limit_mb`` megabytes."""
    if not archive.is_dir():
        return []
    for partial in archive.glob("*.json.gz.tmp"):   # left by a build killed while writing
        partial.unlink(missing_ok=True)
    entries = sorted(archive.glob("*.json.gz"), key=lambda p: p.stat().st_mtime)
    total = sum(p.stat().st_size for p in entries)
    removed = []
    while entries and total > limit_mb * 1e6:
        oldest = entries.pop(0)
        total -= oldest.stat().st_size
        oldest.unlink(missing_ok=True)
        removed.append(oldest)
    return removed
