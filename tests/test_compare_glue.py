"""scripts/compare_glue.py: per-key tolerances, skips, missing keys and the exit status."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from book_utils import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import compare_glue

TOLERANCES = """default: {rtol: 1.0e-3, atol: 0.0}
keys:
  "*::time_*": skip
  "book/train::*": {rtol: 0.1, atol: 0.0}
"""


def run(tmp_path: Path, a: dict, b: dict) -> tuple[int, str]:
    (tmp_path / "a.json").write_text(json.dumps(a))
    (tmp_path / "b.json").write_text(json.dumps(b))
    (tmp_path / "tol.yml").write_text(TOLERANCES)
    return compare_glue.main([str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--tolerances", str(tmp_path / "tol.yml")])


def test_identical_files_pass(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    values = {"book/kl": {"kl_pq": 0.876, "name": "CPU"}}
    assert run(tmp_path, values, values) == 0
    assert "2 keys: 2 within tolerance (2 identical)" in capsys.readouterr().out


def test_default_tolerance_is_relative(tmp_path: Path) -> None:
    assert run(tmp_path, {"book/kl": {"x": 1.0005}}, {"book/kl": {"x": 1.0}}) == 0
    assert run(tmp_path, {"book/kl": {"x": 1.002}}, {"book/kl": {"x": 1.0}}) == 1


def test_per_key_rules_and_skips(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = {"book/train": {"elbo": -4.45}, "book/kl": {"time_k": 0.2}}
    b = {"book/train": {"elbo": -4.43}, "book/kl": {"time_k": 0.01}}
    assert run(tmp_path, a, b) == 0
    assert "1 skipped" in capsys.readouterr().out
    assert run(tmp_path, {"book/train": {"elbo": -5.0}}, {"book/train": {"elbo": -4.43}}) == 1


def test_text_and_missing_keys_fail(tmp_path: Path) -> None:
    assert run(tmp_path, {"book/kl": {"verdict": "yes"}}, {"book/kl": {"verdict": "no"}}) == 1
    assert run(tmp_path, {"book/kl": {"x": 1.0, "y": 2.0}}, {"book/kl": {"x": 1.0}}) == 1


def test_the_committed_tolerances_skip_timings_and_devices() -> None:
    default, rules = compare_glue.load_tolerances(ROOT / "glue-tolerances.yml")
    assert compare_glue.tolerance_for("book/likelihood::lik_time_kmax", default, rules) == "skip"
    assert compare_glue.tolerance_for("book/likelihood::lik_device", default, rules) == "skip"
    assert compare_glue.tolerance_for("book/kl::kl_pq", default, rules) == default
