"""Mutation testing of the core mathematics with mutmut: the tests' strength, measured (a benchmark, not a test).

Usage: .venv/bin/python scripts/mutation.py [--sample N] [--seed S] [--children C] [--write BENCHMARKS.md]

mutmut (configured in pyproject.toml, ``[tool.mutmut]``) copies ``src/`` to ``mutants/``, makes every
single-operator or single-constant change ("mutant") it can in the core modules (densities, KL, Jensen,
likelihood, ELBO, importance sampling, quadrature; input-validation lines excluded), and for each mutant runs
the unit tests that call the mutated function. A mutant is *killed* when a test fails. With ``--sample N`` a
seeded random sample of N mutants is run instead of all of them (all mutants of these modules take hours on two
cores); the score then comes with a 95 % Wilson interval. Prints the score per module and every surviving
mutant's diff; ``--write`` appends them to the given file as a section.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MUTMUT = Path(sys.executable).parent / "mutmut"
KILLED = {1, 3, 36, 24, -24, 152, 255, 37}   # a failing test, a timeout or a type check: the change was noticed


def all_mutants() -> dict[str, int | None]:
    """``{mutant name: exit code or None}`` from mutmut's per-file records."""
    result: dict[str, int | None] = {}
    for meta in (ROOT / "mutants").rglob("*.py.meta"):
        result.update(json.loads(meta.read_text())["exit_code_by_key"])
    return result


def forget(names: list[str]) -> None:
    """Drop mutmut's recorded results of ``names``, so that the next run checks them again."""
    for meta in (ROOT / "mutants").rglob("*.py.meta"):
        data = json.loads(meta.read_text())
        codes = data["exit_code_by_key"]
        if any(name in codes for name in names):
            codes.update({name: None for name in names if name in codes})
            meta.write_text(json.dumps(data))


def run(names: list[str], children: int, check: bool = True) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    subprocess.run([str(MUTMUT), "run", "--max-children", str(children), *names], cwd=ROOT, env=env, check=check,
                   stdout=subprocess.DEVNULL, stderr=None if check else subprocess.DEVNULL)


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval for a proportion k/n."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def show(name: str) -> str:
    proc = subprocess.run([str(MUTMUT), "show", name], cwd=ROOT, capture_output=True, text=True)
    return "\n".join(line for line in proc.stdout.splitlines() if line.startswith(("+", "-", "@@"))
                     and not line.startswith(("+++", "---")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sample", type=int, default=0, help="run a random sample of this many mutants (0: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--children", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--write", type=Path, help="append the result as a section of this Markdown file")
    parser.add_argument("--retest-survivors", action="store_true",
                        help="check the sample's surviving mutants again (after tests were added); keep the rest")
    args = parser.parse_args()
    # mutmut writes every mutant before it checks the filter, which matches none here: this only generates them
    run(["__generate_mutants_only__"], args.children, check=False)
    names = sorted(all_mutants())
    if not names:
        raise SystemExit("mutmut generated no mutants (see pyproject.toml, [tool.mutmut])")
    chosen = sorted(random.Random(args.seed).sample(names, args.sample)) if 0 < args.sample < len(names) else names
    if args.retest_survivors:
        forget([name for name in chosen if all_mutants()[name] is not None and all_mutants()[name] not in KILLED])
    run(chosen, args.children)
    codes = all_mutants()
    by_module: dict[str, Counter] = {}
    for name in chosen:
        module = name.split(".")[1]
        status = "killed" if codes[name] in KILLED else "no tests" if codes[name] in (5, 33) else "survived"
        by_module.setdefault(module, Counter())[status] += 1
    total = sum(by_module.values(), Counter())
    n, k = sum(total.values()), total["killed"]
    low, high = wilson(k, n)
    lines = [f"mutmut {subprocess.run([str(MUTMUT), '--version'], capture_output=True, text=True).stdout.strip()}; "
             f"{len(chosen)} of {len(names)} mutants ({'seeded random sample, seed ' + str(args.seed) if len(chosen) < len(names) else 'all'})",
             "", "| module | mutants run | killed | survived | not covered | score |", "|---|---:|---:|---:|---:|---:|"]
    for module, c in sorted(by_module.items()):
        m = sum(c.values())
        lines.append(f"| {module} | {m} | {c['killed']} | {c['survived']} | {c['no tests']} | {c['killed'] / m:.0%} |")
    lines.append(f"| **all** | {n} | {k} | {total['survived']} | {total['no tests']} | **{k / n:.1%}** "
                 f"(95 % interval {low:.1%}–{high:.1%}) |")
    survivors = [name for name in chosen if codes[name] not in KILLED]
    lines += ["", "Surviving mutants:", ""]
    for name in survivors:
        lines += [f"- `{name}`", "", "```diff", show(name), "```", ""]
    text = "\n".join(lines)
    print(text)
    if args.write:
        args.write.write_text(args.write.read_text().rstrip() + "\n\n## Mutation testing\n\n" + text + "\n")


if __name__ == "__main__":
    main()
