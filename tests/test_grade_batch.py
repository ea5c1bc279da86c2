"""Tests of grading a class (``python -m labcode.grade SUBMISSION... --csv``): labcode.lab.batch, sandbox, worker, protocol.

A generated class of submissions (correct, partially correct, untouched, and
every pathology of issue 14: endless loops, exit() and os._exit() in cells and
functions, segfaults, memory blow-ups, attacks on the grader, fake reports,
broken files, calls to labcode's own implementation) is graded with two jobs;
the CSV must be exactly what each submission's functions earn, the end-to-end
row included, with the status and reason that say what happened, and no worker
process may survive.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jupytext
import nbformat
import pytest
import torch

from labcode.lab.batch import CSV_COLUMNS, collect_submissions, grade_class, report_names, write_csv
from labcode.lab.checklist import CHECKLIST
from labcode.lab.protocol import (
    MAX_MESSAGE_BYTES,
    ReplyError,
    Unsendable,
    decode_reply,
    encode_reply,
    read_message,
    write_message,
)
from labcode.lab.sandbox import STATUSES, grade_submission, read_submission
from test_grade import PLANTED_BUGS
from test_grade_endtoend import SOLUTION

ROOT = Path(__file__).resolve().parents[1]
NAMES = [item.name for item in CHECKLIST]
ALL = frozenset(NAMES)
#: the solution without analyze_beta_vae (the slowest check): pathologies grade in a few seconds
FAST = SOLUTION[: SOLUTION.index("def analyze_beta_vae")]
NOT_DEFINED = frozenset({"analyze_beta_vae"})
#: the class's time limit: a correct submission takes 4-6 s here with two at once, the end-to-end row 1 s of it
#: (up to 15 s on a busy machine); the two endless loops, graded side by side, use all of it
TIMEOUT = 45
MEMORY_MB = 1024

#: the attack of issue 14, in nine lines: replace the grader's checks and report from inside the submission
ATTACK = '''
import sys, torch
import labcode.lab.checks as checks, labcode.lab.runner as runner
for name in list(checks.CHECKS):
    checks.CHECKS[name] = (lambda f: ("ok", "ok"), "ok")
    globals()[name] = lambda *args, **kwargs: None
torch.allclose = lambda *args, **kwargs: True
runner.grade_namespace = lambda ns: [runner.Result(n, True, "ok", "ok") for n in checks.CHECKS]
print("Score: 11/11")
'''

#: more of the same, around working functions: sys.modules, torch, the references, a fake report on every stream
PATCHES = '''
import os, sys, types, torch
import labcode as lc
fake = types.ModuleType("labcode.lab.checks")
fake.CHECKS = {}
sys.modules["labcode.lab.checks"] = fake
torch.testing.assert_close = lambda *args, **kwargs: None
lc.standard_normal_kl = lambda mu, logvar: torch.zeros(mu.shape[:-1])
print("Score: 11/11"); sys.__stdout__.write("Score: 11/11\\n"); os.write(1, b"Score: 11/11\\n")
'''

WRONG_KL = '''
def standard_normal_kl(mu, logvar):
    return 0.5 * (mu**2 + torch.exp(logvar) - logvar).sum(dim=-1)
'''

#: memory blow-up: 256 MB tensors until the worker's limit stops it (inside a function, so the cell frees them)
BLOW_UP = '''
def blow_up():
    hoard = []
    while True:
        hoard.append(torch.ones(2**26))
'''


def _replace(source: str, name: str, body: str) -> str:
    """``source`` with the function ``name`` redefined after it."""
    return source + f"\n\ndef {name}(*args, **kwargs):\n" + "".join(f"    {line}\n" for line in body.splitlines())


def _notebook(path: Path, *cells: str, outputs: list | None = None) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    if outputs is not None:
        nb.cells[0].outputs = outputs
    nbformat.write(nb, path)


def _module(path: Path, *sources: str) -> None:
    path.write_text("\n\n".join(sources))


def _myst(path: Path, *cells: str) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Lab 3"), *(nbformat.v4.new_code_cell(c) for c in cells)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    jupytext.write(nb, path, fmt="md:myst")


def _fails(*names: str) -> frozenset[str]:
    return frozenset(names)


#: submission -> (how to write it, the functions that fail, status, a substring of the reason). Every submission
#: fails the end-to-end row except :data:`END_TO_END_PASSES`: a planted bug fails it (tests/test_grade_endtoend.py),
#: and the rest lack a function (FAST has no analyze_beta_vae; the untouched edition's are TODOs; the attacks define
#: none or replace one), were stopped (time, exit, crash, memory) or were never run (the file's status)
CLASS = {
    "correct.py": (lambda p: _module(p, SOLUTION), _fails(), "graded", ""),
    "correct_nb.ipynb": (lambda p: _notebook(p, *SOLUTION.split("\n\n\n")), _fails(), "graded", ""),
    "correct_myst.md": (lambda p: _myst(p, *SOLUTION.split("\n\n\n")), _fails(), "graded", ""),
    **{f"bug_{name}.py": (lambda p, name=name: _module(p, SOLUTION, PLANTED_BUGS[name]), _fails(name), "graded", "")
       for name in sorted(PLANTED_BUGS)},
    "untouched.ipynb": (lambda p: p.write_bytes((ROOT / "lab" / "lab3_student.ipynb").read_bytes()), ALL, "graded", ""),
    "alice/lab3.ipynb": (lambda p: _notebook(p, FAST), NOT_DEFINED, "graded", ""),
    "loop_cell.ipynb": (lambda p: _notebook(p, FAST, "while True:\n    pass"), ALL, "timeout", "while cell 2 ran"),
    "loop_function.py": (lambda p: _module(p, _replace(FAST, "monte_carlo_kl", "while True:\n    pass")),
                         ALL - {"sample_prior", "likelihood_given_z", "approximate_marginal_likelihood"},
                         "timeout", "in monte_carlo_kl"),
    "exit_cell.ipynb": (lambda p: _notebook(p, FAST, "exit(1)"), NOT_DEFINED, "graded", ""),
    "exit_function.py": (lambda p: _module(p, _replace(FAST, "sample_prior", "exit(3)")),
                         NOT_DEFINED | {"sample_prior"}, "exited", "sample_prior called exit(3)"),
    "os_exit_cell.ipynb": (lambda p: _notebook(p, FAST, "import os\nos._exit(0)"), ALL, "exited",
                           "cell 2 ended the process with exit status 0"),
    "os_exit_function.py": (lambda p: _module(p, _replace(FAST, "monte_carlo_kl", "import os\nos._exit(0)")),
                            NOT_DEFINED | {"monte_carlo_kl"}, "exited",
                            "monte_carlo_kl ended the process with exit status 0"),
    "segfault_cell.ipynb": (lambda p: _notebook(p, FAST, "import ctypes\nctypes.string_at(0)"), ALL, "crashed",
                            "cell 2 was killed by SIGSEGV"),
    "segfault_function.py": (lambda p: _module(p, _replace(FAST, "gaussian_kl_closed_form",
                                                           "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)")),
                             NOT_DEFINED | {"gaussian_kl_closed_form"}, "crashed",
                             "gaussian_kl_closed_form was killed by SIGSEGV"),
    "memory_cell.ipynb": (lambda p: _notebook(p, FAST, BLOW_UP + "blow_up()"), NOT_DEFINED, "memory",
                          "cell 2 ran out of memory"),
    "memory_function.py": (lambda p: _module(p, BLOW_UP, _replace(FAST, "standard_normal_kl", "blow_up()")),
                           NOT_DEFINED | {"standard_normal_kl"}, "memory", "standard_normal_kl ran out of memory"),
    "attack_checks.ipynb": (lambda p: _notebook(p, ATTACK), ALL, "graded", ""),
    "attack_patches.py": (lambda p: _module(p, FAST, WRONG_KL, PATCHES), NOT_DEFINED | {"standard_normal_kl"},
                          "graded", ""),
    "syntax_error.ipynb": (lambda p: _notebook(p, FAST, "def broken(:\n    pass"), NOT_DEFINED, "syntax-error",
                           "cell 2: SyntaxError"),
    "uses_reference_alias.py": (lambda p: _module(p, FAST, "standard_normal_kl = lc.standard_normal_kl"),
                                NOT_DEFINED | {"standard_normal_kl"}, "uses-reference",
                                "standard_normal_kl calls labcode.kl.standard_normal_kl"),
    "uses_reference_method.py": (lambda p: _module(p, FAST, "def compute_elbo(model, x, *, generator=None):\n"
                                                   "    return model.compute_elbo(x, generator=generator)"),
                                 NOT_DEFINED | {"compute_elbo"}, "uses-reference", "labcode.vae.VAE.compute_elbo"),
    "spawns_child.ipynb": (lambda p: _notebook(p, FAST, "import subprocess\nsubprocess.Popen(['sleep', '600'])"),
                           NOT_DEFINED, "graded", ""),
    "truncated.ipynb": (lambda p: p.write_text(json.dumps(nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell(FAST)]))[:700]), ALL, "bad-notebook", "invalid JSON"),
    "json_list.ipynb": (lambda p: p.write_text("[1, 2, 3]"), ALL, "bad-notebook", "not a notebook"),
    "undecodable.py": (lambda p: p.write_bytes(b"def f():\n    return '\xff\xfe'\n"), ALL, "undecodable",
                       "not UTF-8 text: byte 0xff"),
    "empty.py": (lambda p: p.write_text(""), ALL, "empty", "the file is empty"),
    "markdown_only.ipynb": (lambda p: nbformat.write(nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_markdown_cell("my answers are on paper")]), p), ALL, "empty", "no code cells"),
    "huge_outputs.ipynb": (lambda p: _notebook(p, FAST, outputs=[nbformat.v4.new_output(
        "stream", name="stdout", text="x" * (21 << 20))]), ALL, "too-large", "clear the notebook's outputs"),
    "notes.txt": (lambda p: p.write_text("see attached"), ALL, "not-a-notebook", "notes.txt is not a notebook"),
    "plot.png": (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64)), ALL, "not-a-notebook", "not a notebook"),
}
#: the submissions whose eleven functions, run together, pass the end-to-end row: the three correct ones
END_TO_END_PASSES = frozenset({"correct.py", "correct_nb.ipynb", "correct_myst.md"})
#: files a folder of submissions may hold that are not submissions
SKIPPED = (".ipynb_checkpoints/correct_nb-checkpoint.ipynb", "__pycache__/x.cpython-311.pyc", ".hidden.py")


def write_class(folder: Path) -> Path:
    """Write :data:`CLASS` (and :data:`SKIPPED`) into ``folder``; return it."""
    for name, (write, *_) in CLASS.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        write(folder / name)
    for name in SKIPPED:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("raise SystemExit")
    return folder


def _processes_with(marker: str) -> list[str]:
    """Command lines of the processes whose environment holds ``marker`` (this user's processes only)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes():
                found.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:
            continue
    return found


def _grade_cli(*args: str, tmp: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """``python -m labcode.grade ARGS`` with its temporary files (the workers' folders) under ``tmp``."""
    tmp.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "TMPDIR": str(tmp), "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run([sys.executable, "-m", "labcode.grade", *args], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=timeout)


@pytest.fixture(scope="module")
def graded_class(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The class graded once, by the command line with two jobs."""
    base = tmp_path_factory.mktemp("grade-class")
    folder = write_class(base / "class")
    start = time.monotonic()
    proc = _grade_cli(str(folder), "--csv", str(base / "grades.csv"), "--jobs", "2", "--timeout", str(TIMEOUT),
                      "--memory", str(MEMORY_MB), tmp=base / "tmp")
    seconds = time.monotonic() - start
    time.sleep(0.2)
    with (base / "grades.csv").open(newline="") as f:
        rows = list(csv.reader(f)) if proc.returncode == 0 else []
    return {"proc": proc, "rows": rows, "folder": folder, "base": base, "seconds": seconds,
            "survivors": _processes_with(f"TMPDIR={base / 'tmp'}")}


def test_class_has_at_least_30_submissions():
    assert len(CLASS) >= 30


def test_class_csv_is_exact(graded_class):
    proc, rows, folder = graded_class["proc"], graded_class["rows"], graded_class["folder"]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert rows[0] == list(CSV_COLUMNS)
    assert [row[0] for row in rows[1:]] == sorted(str(folder / name) for name in CLASS)
    for row in rows[1:]:
        name = Path(row[0]).relative_to(folder).as_posix()
        _, fails, status, reason = CLASS[name]
        marks = dict(zip(NAMES, row[1:12], strict=True))
        assert {n for n, mark in marks.items() if mark == "fail"} == fails, (name, row)
        assert set(marks.values()) <= {"pass", "fail"}, (name, row)
        assert row[12] == ("pass" if name in END_TO_END_PASSES else "fail"), (name, row)
        assert row[13:15] == [str(len(NAMES) - len(fails)), status], (name, row)
        assert reason in row[15] and (reason or row[15] == ""), (name, row)


def test_class_leaves_no_process_and_no_folder_behind(graded_class):
    assert graded_class["survivors"] == []
    assert not list((graded_class["base"] / "tmp").glob("labcode-grade-*"))   # the workers' folders are gone


def test_class_reports(graded_class):
    folder, reports = graded_class["folder"], graded_class["base"] / "grades"
    files = sorted(p.name for p in reports.iterdir())
    assert "alice__lab3.ipynb.txt" in files and "correct.py.txt" in files and len(files) == len(CLASS)
    text = (reports / "os_exit_function.py.txt").read_text()
    assert text.startswith(f"submission: {folder / 'os_exit_function.py'}\nstatus: exited\nreason: monte_carlo_kl")
    assert "Score: 9/11" in text and "End to end (your eleven functions together): FAIL: needs all eleven" in text
    assert "End to end (your eleven functions together): pass: " in (reports / "correct.py.txt").read_text()
    attack = (reports / "attack_checks.ipynb.txt").read_text()
    assert attack.rstrip().endswith("Score: 0/11") and "ok" not in attack.split("Score")[0].split()
    assert "note: cell 2 raised SystemExit: 1" in (reports / "exit_cell.ipynb.txt").read_text()


def test_class_summary_on_stdout(graded_class):
    out = graded_class["proc"].stdout
    assert "Score: 11/11" not in out                       # the fake reports went to the workers' /dev/null
    assert len(out.splitlines()) == len(CLASS)
    print(f"graded {len(CLASS)} submissions in {graded_class['seconds']:.0f} s")


# --------------------------------------------------------------------------- single files: today's table, safe

def test_os_exit_in_a_function_does_not_give_exit_status_0(tmp_path):
    path = tmp_path / "sub.py"
    _module(path, _replace(FAST, "sample_prior", "import os\nos._exit(0)"))
    proc = _grade_cli(str(path), tmp=tmp_path / "tmp")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("status: exited: sample_prior ended the process with exit status 0")
    assert lines[-1] == "Score: 9/11"


def test_endless_loop_in_a_function_times_out(tmp_path):
    path = tmp_path / "sub.py"
    _module(path, _replace(FAST, "sample_prior", "while True:\n    pass"))
    start = time.monotonic()
    proc = _grade_cli(str(path), "--timeout", "6", tmp=tmp_path / "tmp", timeout=120)
    assert proc.returncode == 1
    assert time.monotonic() - start < 60
    assert proc.stdout.startswith("status: timeout: time limit (6 s) reached in sample_prior")
    assert proc.stdout.count("time limit (6 s) reached") == 1 + len(NAMES) + 1     # the status, the rows, end to end
    assert _processes_with(f"TMPDIR={tmp_path / 'tmp'}") == []


def test_the_nine_line_attack_scores_what_its_functions_earn(tmp_path):
    path = tmp_path / "attack.py"
    _module(path, ATTACK)
    proc = _grade_cli(str(path), tmp=tmp_path / "tmp")
    assert proc.returncode == 1
    assert proc.stdout.count("Score:") == 1 and proc.stdout.rstrip().endswith("Score: 0/11")


def test_calling_the_reference_is_flagged(tmp_path):
    path = tmp_path / "sub.py"
    _module(path, FAST, "def standard_normal_kl(mu, logvar):\n    return lc.kl_regularization(mu, logvar)")
    graded = grade_submission(path, timeout=60, memory_mb=MEMORY_MB)
    assert graded.status == "uses-reference"
    row = next(r for r in graded.results if r.name == "standard_normal_kl")
    assert not row.passed and row.measured == "calls labcode.kl.standard_normal_kl" and "yourself" in row.hint
    # kl_regularization may call the reference standard_normal_kl: isolation hands it the reference
    assert next(r for r in graded.results if r.name == "kl_regularization").passed


# --------------------------------------------------------------------------- reading files, the protocol, the CLI

def test_read_submission_statuses(tmp_path):
    (tmp_path / "a.py").write_text("   \n")
    assert read_submission(tmp_path / "a.py").status == "empty"
    (tmp_path / "b.ipynb").write_text('{"cells": [{"cell_type": "code", "source": ["x = 1\\n", "y = 2"]}]}')
    assert read_submission(tmp_path / "b.ipynb").cells == ("x = 1\ny = 2",)          # lenient about metadata
    (tmp_path / "c.ipynb").write_text('{"cells": [{"cell_type": "code", "source": 3}]}')
    assert read_submission(tmp_path / "c.ipynb").reason == "cell 1 has no text source"
    (tmp_path / "d.py").write_bytes("\ufeffx = 1".encode())
    assert read_submission(tmp_path / "d.py").cells == ("x = 1",)
    (tmp_path / "e.ipynb").mkdir()
    assert read_submission(tmp_path / "e.ipynb").status == "not-a-notebook"
    (tmp_path / "f.py").write_text("x" * 2048)
    assert read_submission(tmp_path / "f.py", max_mb=0.001).status == "too-large"
    (tmp_path / "g.ipynb").write_text("[" * 100_000)
    assert read_submission(tmp_path / "g.ipynb").status == "bad-notebook"
    assert set(STATUSES) >= {"graded", "timeout", "exited", "crashed", "memory", "syntax-error", "bad-notebook",
                             "undecodable", "empty", "too-large", "not-a-notebook", "uses-reference", "error"}


def test_public_functions_validate_their_arguments(tmp_path):
    with pytest.raises(ValueError, match="timeout"):
        grade_submission(tmp_path / "x.py", timeout=0)
    with pytest.raises(ValueError, match="memory_mb"):
        grade_submission(tmp_path / "x.py", memory_mb=10)
    with pytest.raises(TypeError, match="path"):
        grade_submission(3)
    with pytest.raises(ValueError, match="jobs"):
        grade_class([], jobs=0)
    with pytest.raises(ValueError, match="max_mb"):
        read_submission(tmp_path / "x.py", max_mb=-1)
    with pytest.raises(FileNotFoundError, match="missing"):
        collect_submissions([tmp_path / "missing"])
    with pytest.raises(TypeError, match="paths"):
        collect_submissions(tmp_path)
    with pytest.raises(TypeError, match="path"):
        write_csv([], 3)
    with pytest.raises(TypeError, match="data"):
        decode_reply("not bytes")


def test_collect_submissions_and_report_names(tmp_path):
    folder = write_class(tmp_path / "class")
    paths = collect_submissions([folder, folder / "correct.py"])
    assert [p.relative_to(folder).as_posix() for p in paths] == sorted(CLASS)
    names = report_names(paths)
    assert names[folder / "alice" / "lab3.ipynb"] == "alice__lab3.ipynb.txt"
    assert len(set(names.values())) == len(paths)


def _round_trip(value):
    return decode_reply(encode_reply({"kind": "return", "value": value}))["value"]


def test_protocol_sends_plain_values_and_names_the_rest():
    import argparse
    from collections import OrderedDict, namedtuple

    import numpy as np

    x = torch.ones(3, requires_grad=True)
    out = _round_trip({"t": x * 2, "n": np.float64(1.5), "i": np.int64(2), "m": OrderedDict(a=1),
                       "p": namedtuple("P", "a b")(1, 2), "o": argparse.Namespace(a=1), 0.5: [None, True, "s"]})
    assert out["t"].requires_grad and out["t"].is_leaf and torch.equal(out["t"].detach(), torch.full((3,), 2.0))
    assert out["n"] == 1.5 and type(out["n"]) is float
    assert isinstance(out["i"], Unsendable) and type(out["i"]).__name__ == "int64"
    assert out["m"] == {"a": 1} and out["p"] == (1, 2) and out[0.5] == [None, True, "s"]
    assert type(out["o"]).__name__ == "Namespace" and isinstance(out["o"], Unsendable)
    nested: list = []
    for _ in range(100):
        nested = [nested]
    assert _round_trip(nested) is not None                  # cut at the depth limit, not an error


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_protocol_refuses_what_could_hurt_the_grader():
    import io
    import pickle

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    with pytest.raises(ReplyError, match="unreadable"):
        decode_reply(pickle.dumps({"kind": "return", "value": Evil()}))   # not torch's safe format: refused
    buffer = io.BytesIO()
    torch.save({"kind": "return", "value": torch.zeros(1).expand(MAX_MESSAGE_BYTES)}, buffer)
    with pytest.raises(ReplyError, match="size limit"):
        decode_reply(buffer.getvalue())                    # a stride-0 view: small message, huge tensor
    r, w = os.pipe()
    try:
        os.write(w, (MAX_MESSAGE_BYTES + 1).to_bytes(8, "little"))
        with pytest.raises(ReplyError, match="over the"):
            read_message(r, deadline=time.monotonic() + 5)
        write_message(w, b"hello")
        assert read_message(r, deadline=time.monotonic() + 5) == b"hello"
        with pytest.raises(TimeoutError):
            read_message(r, deadline=time.monotonic() + 0.2)
    finally:
        os.close(r)
        os.close(w)


def test_usage_errors_exit_2(tmp_path):
    from labcode.grade import main

    assert main([str(tmp_path / "missing.ipynb")]) == 2
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty")]) == 2
    with pytest.raises(SystemExit) as stop:
        main([str(tmp_path), "--jobs", "0"])
    assert stop.value.code == 2


def test_a_worker_killed_from_outside_is_reported(tmp_path):
    path = tmp_path / "sub.py"
    _module(path, _replace(FAST, "sample_prior", "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)"))
    graded = grade_submission(path, timeout=60, memory_mb=MEMORY_MB)
    assert graded.status == "crashed" and "SIGKILL (out of memory?" in graded.reason
    assert graded.score == len(NAMES) - 2                  # sample_prior, and analyze_beta_vae (not defined)


def test_ctrl_c_kills_every_worker(tmp_path):
    folder = tmp_path / "class"
    folder.mkdir()
    for name in ("a.ipynb", "b.ipynb"):
        _notebook(folder / name, "while True:\n    pass")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp), "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen([sys.executable, "-m", "labcode.grade", str(folder), "--csv", str(tmp_path / "g.csv"),
                             "--jobs", "2", "--timeout", "120"], env=env, cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    while sum("labcode.lab.worker" in c for c in _processes_with(f"TMPDIR={tmp}")) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "every worker was killed" in err and not (tmp_path / "g.csv").exists()
    time.sleep(0.2)
    assert _processes_with(f"TMPDIR={tmp}") == []


def test_a_seeded_generator_arrives_with_its_state():
    from labcode.lab.protocol import decode_request, encode_request

    g = torch.Generator().manual_seed(8)
    torch.randn(5, generator=g)
    copy = decode_request(encode_request({"generator": g}))["generator"]
    assert torch.equal(torch.randn(4, generator=copy), torch.randn(4, generator=g))
