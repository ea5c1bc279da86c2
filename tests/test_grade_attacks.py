"""Attacks on the grader of a class (``python -m labcode.grade``), each a fault found by trying it.

A student's worker is the student's process: it may write any frame into its
pipe to the grader, replace the worker's own reply functions, raise
exceptions whose text is hostile, and name its file as it likes. None of that
may crash, hang or exhaust the grader, mark the submission as the grader's
``error``, or put a second line into the summary, a report or the CSV. The
worker-free cases (the protocol, names of files, reports, the single-file
exit status) run in-process; the worker cases are one small class graded once.
"""

from __future__ import annotations

import csv
import io
import os
import pickle
import time
import zipfile
from pathlib import Path

import pytest
import torch

from labcode.lab.batch import collect_submissions, csv_row, main, report_names, write_csv, write_reports
from labcode.lab.checklist import CHECKLIST
from labcode.lab.protocol import ReplyError, decode_reply
from labcode.lab.runner import MAX_MESSAGE_CHARS, Result, code_cells, run_cells
from labcode.lab.sandbox import Graded
from test_grade_batch import _grade_cli, _module, _notebook

NAMES = [item.name for item in CHECKLIST]

SAMPLE_PRIOR = '''
import torch

def sample_prior(n_samples, latent_dim, *, generator=None, device=None):
    return torch.randn((n_samples, latent_dim), generator=generator)
'''

#: the worker's pipe to the grader is its second argument (python -m labcode.lab.worker READ WRITE MB PID)
FORGED_CELLS = '''
import io, os, struct, sys, torch
buffer = io.BytesIO()
torch.save({"kind": "cells", "errors": [["x", "y", "z"]], "names": {}}, buffer)
os.write(int(sys.argv[2]), struct.pack("<Q", len(buffer.getvalue())) + buffer.getvalue())
'''

#: every value replaced by a list of two references to a list of two references ... 2**22 values, a tiny message
SHARED_REPLY = '''
import io, sys, torch
worker = sys.modules["__main__"]
encode = worker._encode

def _encode(reply):
    if reply["kind"] != "return":
        return encode(reply)
    value = []
    for _ in range(22):
        value = [value, value]
    buffer = io.BytesIO()
    torch.save({"kind": "return", "value": value, "grads": None, "tripwire": []}, buffer)
    return buffer.getvalue()
worker._encode = _encode

def standard_normal_kl(mu, logvar):
    return mu.sum(-1)
'''

#: a reason that would print a second summary line (and colour the terminal)
EXIT_REPR = '''
class Code:
    def __repr__(self):
        return "0)\\nbob.py   11/11  graded\\n\\x1b[31m"

def sample_prior(n_samples, latent_dim, *, generator=None, device=None):
    exit(Code())
'''

UNPRINTABLE_ERROR = '''
class Unprintable(Exception):
    def __str__(self):
        raise RuntimeError("no")

raise Unprintable()
'''

HUGE_ERROR = 'raise ValueError("x" * (65 << 20))'

#: submission, as the CSV shows it -> (how to write it, status, a substring of the reason, the functions that pass)
ATTACKS = {
    "forged_cells.py": (lambda p: _module(p, FORGED_CELLS, SAMPLE_PRIOR), "crashed", "malformed", set()),
    "shared_reply.py": (lambda p: _module(p, SHARED_REPLY), "crashed", "standard_normal_kl: the worker sent", set()),
    "exit_repr.py": (lambda p: _module(p, EXIT_REPR), "exited", "called exit(0)\\nbob.py", set()),
    "unprintable_error.ipynb": (lambda p: _notebook(p, SAMPLE_PRIOR, UNPRINTABLE_ERROR), "graded", "",
                                {"sample_prior"}),
    "huge_error.ipynb": (lambda p: _notebook(p, SAMPLE_PRIOR, HUGE_ERROR), "graded", "", {"sample_prior"}),
    "new\\nline.txt": (lambda p: p.write_text("x"), "not-a-notebook", "new\\nline.txt", set()),
    "caf\\udce9.txt": (lambda p: p.write_text("x"), "not-a-notebook", "caf\\udce9.txt", set()),
}
#: the file names that the CSV, the reports and the summary show escaped
ON_DISK = {"new\\nline.txt": "new\nline.txt", "caf\\udce9.txt": os.fsdecode(b"caf\xe9.txt")}


@pytest.fixture(scope="module")
def attacked(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """:data:`ATTACKS` graded once by the command line, two jobs."""
    base = tmp_path_factory.mktemp("attacks")
    folder = base / "class"
    folder.mkdir()
    for name, (write, *_) in ATTACKS.items():
        write(folder / ON_DISK.get(name, name))
    start = time.monotonic()
    proc = _grade_cli(str(folder), "--csv", str(base / "grades.csv"), "--jobs", "2", "--timeout", "30",
                      "--memory", "1024", tmp=base / "tmp", timeout=300)
    return {"proc": proc, "folder": folder, "base": base, "seconds": time.monotonic() - start}


def test_attacks_get_the_status_they_earn(attacked):
    proc, folder = attacked["proc"], attacked["folder"]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with (attacked["base"] / "grades.csv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))[1:]
    assert len(rows) == len(ATTACKS)
    for row in rows:
        name = row[0].removeprefix(f"{folder}/")
        _, status, reason, passes = ATTACKS[name]
        assert row[14] == status and reason in row[15], (name, row)
        assert {n for n, mark in zip(NAMES, row[1:12], strict=True) if mark == "pass"} == passes, (name, row)
        assert row[12] == "fail", (name, row)                       # none defines all eleven functions
    shared = (attacked["base"] / "grades" / "shared_reply.py.txt").read_text()
    assert float(shared.splitlines()[3].split()[1]) < 15           # it took the grader minutes or forever
    print(f"graded {len(ATTACKS)} attacks in {attacked['seconds']:.0f} s")


def test_attacks_print_one_line_each(attacked):
    out = attacked["proc"].stdout
    assert len(out.splitlines()) == len(ATTACKS) and "\x1b" not in out
    report = (attacked["base"] / "grades" / "exit_repr.py.txt").read_text()
    assert [line.split(":")[0] for line in report.splitlines()[:4]] == ["submission", "status", "reason", "time"]
    assert "\x1b" not in report


# --------------------------------------------------------------------------- the protocol: bounded cost


def _archive(value, *, compress: bool = False) -> bytes:
    buffer = io.BytesIO()
    torch.save({"kind": "return", "value": value}, buffer)
    if not compress:
        return buffer.getvalue()
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, src.read(info.filename), compress_type=zipfile.ZIP_DEFLATED)
    return out.getvalue()


def test_a_compressed_or_legacy_reply_is_refused_unread():
    bomb = _archive(torch.zeros(2**22), compress=True)       # 16 MB of zeros in 16 kB
    assert len(bomb) < 100_000
    with pytest.raises(ReplyError, match="compressed"):
        decode_reply(bomb)
    buffer = io.BytesIO()
    torch.save({"kind": "return", "value": 1}, buffer, _use_new_zipfile_serialization=False)
    with pytest.raises(ReplyError, match="unreadable"):
        decode_reply(buffer.getvalue())                   # its storages are sized by the pickle, not the message


def test_a_reply_that_repeats_its_parts_is_refused_quickly():
    shared: list = []
    for _ in range(22):
        shared = [shared, shared]                         # 2**22 values, 46 pickle memo references
    many = ["x"] * 600_000                                # 1.2 MB of memo references, seconds of unpickling
    for value in (shared, many):
        start = time.monotonic()
        with pytest.raises(ReplyError, match=r"values|structure"):
            decode_reply(_archive(value))
        assert time.monotonic() - start < 1.5
    assert decode_reply(_archive(list(range(1000))))["value"] == list(range(1000))


# --------------------------------------------------------------------------- file names, reports, the CSV


def _graded(path: Path, reason: str = "") -> Graded:
    results = tuple(Result(n, False, "m\nx\x1b[2J", "e", os.fsdecode(b"hint \xe9")) for n in NAMES)
    return Graded(path, results, (), "exited" if reason else "graded", reason, 1.0)


def test_report_names_are_unique_short_and_after_the_given_path(tmp_path):
    folder = tmp_path / "class"
    deep = folder.joinpath(*["f" * 60] * 6)
    deep.mkdir(parents=True)
    (folder / "alice").mkdir()
    paths = [folder / "alice" / "lab3.py", folder / "alice__lab3.py", deep / "lab.py", folder / "zero.py",
             folder / "new\nline.py"]
    for p in paths[:3] + paths[4:]:
        p.write_text("x = 1")
    paths[3].symlink_to("/dev/zero")
    names = report_names(paths)
    assert len(set(names.values())) == len(paths)
    assert all(len(os.fsencode(n)) <= 255 and "\n" not in n for n in names.values())
    assert names[folder / "zero.py"] == "zero.py.txt"          # not /dev/zero's name: the others keep theirs too
    assert names[folder / "alice__lab3.py"].startswith("alice__lab3.py")
    written = write_reports([_graded(p) for p in paths], tmp_path / "reports")
    assert len(set(written)) == len(paths) and all(p.exists() for p in written)


def test_the_csv_and_reports_take_any_file_name(tmp_path):
    odd = [tmp_path / os.fsdecode(b"caf\xe9.py"), tmp_path / "a,b \"q\".py", tmp_path / "new\nline.py"]
    graded = [_graded(p, "called exit(0)\nbob.py  11/11\x1b[31m") for p in odd]
    write_csv(graded, tmp_path / "grades.csv")
    with (tmp_path / "grades.csv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))[1:]
    assert [r[0] for r in rows] == [csv_row(g)[0] for g in graded]
    assert rows[0][0].endswith("caf\\udce9.py") and rows[1][0].endswith('a,b "q".py')
    assert rows[2][0].endswith("new\\nline.py") and rows[2][15] == "called exit(0)\\nbob.py  11/11\\x1b[31m"
    for file in write_reports(graded, tmp_path / "reports"):
        text = file.read_text(encoding="utf-8")
        assert "\x1b" not in text and text.splitlines()[2].startswith("reason: called exit(0)\\nbob.py")


def test_a_link_to_a_folder_gets_a_row(tmp_path):
    (tmp_path / "class" / "bob").mkdir(parents=True)
    (tmp_path / "class" / "bob" / "lab3.py").write_text("x = 1")
    (tmp_path / "class" / "carol").symlink_to(tmp_path / "class" / "bob")
    (tmp_path / "class" / "loop").symlink_to(".")
    found = collect_submissions([tmp_path / "class"])
    assert [p.relative_to(tmp_path / "class").as_posix() for p in found] == ["bob/lab3.py", "carol", "loop"]


# --------------------------------------------------------------------------- one file: the table and the exit status


@pytest.mark.parametrize("kind", ["device", "fifo"])
def test_one_file_that_is_not_a_regular_file_exits_1_with_its_table(tmp_path, capsys, kind):
    path = tmp_path / "sub.py"
    if kind == "device":
        path.symlink_to("/dev/zero")
    else:
        os.mkfifo(path)
    assert main([str(path)]) == 1
    out = capsys.readouterr().out
    assert out.startswith("status: not-a-notebook: sub.py is not a regular file") and "Score: 0/11" in out


# --------------------------------------------------------------------------- cells that are valid Python


def test_valid_python_runs_as_written(tmp_path):
    cells = ["x = 'a\x0cb'  # a form feed in a string\n# a note pasted from a PDF:\u2028see the hints\ny = 1",
             "msg = ('%d samples'\n       % 3)",                   # black puts the operator first
             "%matplotlib inline\n!pip list\nz = 2"]
    ns, errors = run_cells(cells)
    assert errors == [] and (ns["x"], ns["y"], ns["msg"], ns["z"]) == ("a\x0cb", 1, "3 samples", 2)
    (tmp_path / "bom.py").write_bytes("\ufeffx = 1\r\ny = 2\r\n".encode())
    assert run_cells(code_cells(tmp_path / "bom.py"))[0]["y"] == 2      # in process, as in the worker


def test_a_cell_error_is_kept_short_and_printable():
    _, errors = run_cells([UNPRINTABLE_ERROR, "raise ValueError('x' * 10**6)", "raise ValueError('a\\nb')"])
    assert [e.error for e in errors] == ["Unprintable: (its message cannot be shown)", errors[1].error, "ValueError: a\nb"]
    assert errors[1].error == "ValueError: " + "x" * MAX_MESSAGE_CHARS


def test_pickle_is_still_refused():
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    with pytest.raises(ReplyError):
        decode_reply(pickle.dumps({"kind": "return", "value": Evil()}))
