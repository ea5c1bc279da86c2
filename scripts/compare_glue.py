"""Compare two builds' glued values (``_build/html/glued-values.json``) key by key.

Usage: .venv/bin/python scripts/compare_glue.py CPU.json GPU.json [--tolerances glue-tolerances.yml] [--all]

Each glued number is compared with the per-key tolerance from the YAML file
(first matching ``page::key`` glob wins, else ``default``): it passes when
``|a - b| <= atol + rtol * |b|``. Text values must be equal; ``skip`` ignores a
key (timings, device names). Prints one row per compared key that differs
(every key with ``--all``) and a summary.

Exit status: 0 when every key agrees within its tolerance; 1 when a value is
out of tolerance or a key is missing from one file; 2 on bad input (a missing,
empty or malformed file, JSON that is not ``{page: {key: value}}``, a
tolerance that is not a number), reported in one line that names the file.
"""

from __future__ import annotations

import fnmatch
import math
from pathlib import Path

from booktools import ROOT, ArgumentParser, UsageError, load_json, load_mapping, run, shown, type_name

DEFAULT_TOLERANCES = ROOT / "glue-tolerances.yml"


def checked_tolerance(path: Path, name: str, tol: object) -> object:
    """``tol`` if it is ``skip`` or ``{rtol: number, atol: number}`` (either may be left out); else a UsageError."""
    if tol == "skip":
        return tol
    if not isinstance(tol, dict):
        raise UsageError(f"{shown(path)}: {name}: expected skip or {{rtol: ..., atol: ...}}, got {type_name(tol)}")
    for key, value in tol.items():
        if key not in ("rtol", "atol"):
            raise UsageError(f"{shown(path)}: {name}: unknown tolerance {key!r} (rtol, atol)")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            hint = " (YAML reads 1e-3 as text: write 1.0e-3)" if isinstance(value, str) else ""
            raise UsageError(f"{shown(path)}: {name}: {key} must be a number >= 0, got {value!r}{hint}")
    return tol


def load_tolerances(path: Path) -> tuple[dict, list[tuple[str, object]]]:
    spec = load_mapping(path)
    default = checked_tolerance(path, "default", spec.get("default", {"rtol": 0.0, "atol": 0.0}))
    if default == "skip":
        raise UsageError(f"{shown(path)}: default: cannot be skip")
    keys = spec.get("keys") or {}
    if not isinstance(keys, dict):
        raise UsageError(f"{shown(path)}: keys: expected a mapping of 'page::key' globs to tolerances, got {type_name(keys)}")
    rules = [(str(pattern), checked_tolerance(path, f"keys: {pattern!r}", tol)) for pattern, tol in keys.items()]
    return default, rules


def load_glue(path: Path) -> dict[str, dict]:
    """A build's glued values ``{page: {key: value}}``; a file of another shape is a UsageError naming it."""
    values = load_json(path)
    if not isinstance(values, dict):
        raise UsageError(f"{shown(path)}: expected {{page: {{key: value}}}}, got {type_name(values)}")
    for page, keys in values.items():
        if not isinstance(keys, dict):
            raise UsageError(f"{shown(path)}: page {page!r}: expected {{key: value}}, got {type_name(keys)}")
    return values


def tolerance_for(name: str, default: dict, rules: list[tuple[str, object]]) -> object:
    for pattern, tol in rules:
        if fnmatch.fnmatchcase(name, pattern):
            return tol
    return default


def compare(a: dict, b: dict, default: dict, rules: list) -> list[dict]:
    rows = []
    for page in sorted(set(a) | set(b)):
        for key in sorted(set(a.get(page, {})) | set(b.get(page, {}))):
            name = f"{page}::{key}"
            tol = tolerance_for(name, default, rules)
            va, vb = a.get(page, {}).get(key), b.get(page, {}).get(key)
            row = {"key": name, "a": va, "b": vb, "diff": None, "tolerance": tol}
            if tol == "skip":
                row["status"] = "skip"
            elif va is None or vb is None:
                row["status"] = "missing"
            elif isinstance(va, float) and isinstance(vb, float):
                diff = abs(va - vb)
                row["diff"] = diff
                ok = diff <= tol.get("atol", 0.0) + tol.get("rtol", 0.0) * abs(vb) or (math.isnan(va) and math.isnan(vb))
                row["status"] = "ok" if ok else "FAIL"
            else:
                row["status"] = "ok" if va == vb else "FAIL"
            rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    parser.add_argument("--tolerances", type=Path, default=DEFAULT_TOLERANCES)
    parser.add_argument("--all", action="store_true", help="print every key, not only differences")
    args = parser.parse_args(argv)
    default, rules = load_tolerances(args.tolerances)
    rows = compare(load_glue(args.a), load_glue(args.b), default, rules)
    listed = [r for r in rows if args.all or r["status"] in ("FAIL", "missing") or (r["diff"] or 0) > 0]
    print(f"{'key':60} {'a':>14} {'b':>14} {'|a-b|':>10}  status")
    for r in listed:
        fmt = lambda v: f"{v:.6g}" if isinstance(v, float) else str(v)[:14]  # noqa: E731
        diff = f"{r['diff']:.2e}" if r["diff"] is not None else ""
        print(f"{r['key'][:60]:60} {fmt(r['a']):>14} {fmt(r['b']):>14} {diff:>10}  {r['status']}")
    counts = {s: sum(r["status"] == s for r in rows) for s in ("ok", "skip", "FAIL", "missing")}
    identical = sum(r["status"] == "ok" and not r["diff"] for r in rows)
    print(f"{len(rows)} keys: {counts['ok']} within tolerance ({identical} identical), "
          f"{counts['skip']} skipped, {counts['FAIL']} out of tolerance, {counts['missing']} missing")
    return 1 if counts["FAIL"] or counts["missing"] else 0


if __name__ == "__main__":
    run(main)
