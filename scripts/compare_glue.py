"""Compare two builds' glued values (``_build/html/glued-values.json``) key by key.

Usage: python scripts/compare_glue.py CPU.json GPU.json [--tolerances glue-tolerances.yml] [--all]

Each glued number is compared with the per-key tolerance from the YAML file
(first matching ``page::key`` glob wins, else ``default``): it passes when
``|a - b| <= atol + rtol * |b|``. Text values must be equal; ``skip`` ignores a
key (timings, device names). Prints one row per compared key that differs
(every key with ``--all``) and a summary; exits 1 on any failure or missing key.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import math
import sys
from pathlib import Path

import yaml

DEFAULT_TOLERANCES = Path(__file__).resolve().parents[1] / "glue-tolerances.yml"


def load_tolerances(path: Path) -> tuple[dict, list[tuple[str, object]]]:
    spec = yaml.safe_load(path.read_text()) if path.is_file() else {}
    default = spec.get("default", {"rtol": 0.0, "atol": 0.0})
    rules = list((spec.get("keys") or {}).items())
    return default, rules


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
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    parser.add_argument("--tolerances", type=Path, default=DEFAULT_TOLERANCES)
    parser.add_argument("--all", action="store_true", help="print every key, not only differences")
    args = parser.parse_args(argv)
    default, rules = load_tolerances(args.tolerances)
    rows = compare(json.loads(args.a.read_text()), json.loads(args.b.read_text()), default, rules)
    shown = [r for r in rows if args.all or r["status"] in ("FAIL", "missing") or (r["diff"] or 0) > 0]
    print(f"{'key':60} {'a':>14} {'b':>14} {'|a-b|':>10}  status")
    for r in shown:
        fmt = lambda v: f"{v:.6g}" if isinstance(v, float) else str(v)[:14]  # noqa: E731
        diff = f"{r['diff']:.2e}" if r["diff"] is not None else ""
        print(f"{r['key'][:60]:60} {fmt(r['a']):>14} {fmt(r['b']):>14} {diff:>10}  {r['status']}")
    counts = {s: sum(r["status"] == s for r in rows) for s in ("ok", "skip", "FAIL", "missing")}
    identical = sum(r["status"] == "ok" and not r["diff"] for r in rows)
    print(f"{len(rows)} keys: {counts['ok']} within tolerance ({identical} identical), "
          f"{counts['skip']} skipped, {counts['FAIL']} out of tolerance, {counts['missing']} missing")
    return 1 if counts["FAIL"] or counts["missing"] else 0


if __name__ == "__main__":
    sys.exit(main())
