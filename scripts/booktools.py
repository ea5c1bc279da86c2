"""Shared knowledge about the book's sources: the table of contents and which pages are notebooks.

Used by the scripts in this folder and by the tests. It also holds the scripts' one way of failing on bad input:
a :class:`UsageError` raised anywhere below a script's ``main`` ends it, through :func:`run`, with one line on
stderr (``script.py: what is wrong, naming the file or argument``) and exit status 2, never a traceback. Only
anticipated input errors are UsageErrors; a bug still shows its traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

ROOT = Path(__file__).resolve().parents[1]


def shown(path: Path) -> str:
    """``path`` as the user would type it: relative to the working directory when below it."""
    try:
        return str(Path(os.path.abspath(path)).relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def wrong_environment(error: ModuleNotFoundError) -> NoReturn:
    """End a script run by a Python without the project's packages (the system's ``python3``): one line naming the
    missing module and the command that works, exit status 2."""
    script = Path(sys.argv[0])
    command = f"{shown(ROOT / '.venv' / 'bin' / 'python')} {shown(ROOT / 'scripts' / script.name)}"
    print(f"{script.name}: {error}: run it with the project's environment, {command} "
          f"(bash {shown(ROOT / 'scripts' / 'env.sh')} creates .venv)", file=sys.stderr)
    sys.exit(2)


try:
    import yaml
except ModuleNotFoundError as missing:
    wrong_environment(missing)

CODE_CELL = "```{code-cell}"


class UsageError(Exception):
    """Bad input that the user can fix: reported by :func:`run` as one line ``script.py: message``, exit status 2."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a bad argument is a UsageError (one line) instead of the usage text and an error."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see --help)")


def run(main: Callable[[], int | None]) -> NoReturn:
    """``sys.exit(main())``; a UsageError becomes one line on stderr and exit status 2."""
    try:
        status = main()
    except UsageError as error:
        print(f"{Path(sys.argv[0]).name}: {error}", file=sys.stderr)
        status = 2
    sys.exit(status)


def read_text(path: Path) -> str:
    """The text of an input file; a missing, unreadable or non-UTF-8 file is a UsageError naming it."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{shown(path)}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"{shown(path)}: is a folder, not a file") from None
    except UnicodeDecodeError as error:
        raise UsageError(f"{shown(path)}: not UTF-8 text (byte {error.start})") from None
    except OSError as error:
        raise UsageError(f"{shown(path)}: cannot read ({error.strerror})") from None


def old_text(path: Path) -> str | None:
    """The current text of a generated file (None when it does not exist yet); undecodable bytes are just stale."""
    if not path.exists():
        return None
    try:
        return path.read_bytes().decode("utf-8", errors="replace")
    except IsADirectoryError:
        raise UsageError(f"{shown(path)}: is a folder, not a file") from None
    except OSError as error:
        raise UsageError(f"{shown(path)}: cannot read ({error.strerror})") from None


def write_text(path: Path, text: str) -> None:
    """Write a generated file; a path that cannot be written is a UsageError naming it."""
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as error:
        raise UsageError(f"{shown(path)}: cannot write ({error.strerror})") from None


def _non_empty(path: Path, what: str) -> str:
    text = read_text(path)
    if not text.strip():
        raise UsageError(f"{shown(path)}: empty file, expected {what}")
    return text


def load_json(path: Path) -> object:
    """The JSON value in ``path``; an empty or malformed file is a UsageError with the line and column."""
    try:
        return json.loads(_non_empty(path, "JSON"))
    except json.JSONDecodeError as error:
        raise UsageError(f"{shown(path)}: not valid JSON (line {error.lineno}, column {error.colno}: {error.msg})") from None


def _yaml_error(path: Path, error: yaml.YAMLError, what: str = "not valid YAML", first_line: int = 1) -> UsageError:
    """``path: what (line N: problem)``, N counted in the file (the YAML starts at line ``first_line``)."""
    mark = getattr(error, "problem_mark", None)
    where = f"line {mark.line + first_line}: " if mark is not None else ""
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    return UsageError(f"{shown(path)}: {what} ({where}{problem})")


def load_mapping(path: Path, text: str | None = None) -> dict:
    """The YAML mapping in ``path`` (a configuration file), or in ``text`` to be written there; anything else is a
    UsageError."""
    try:
        data = yaml.safe_load(_non_empty(path, "YAML") if text is None else text)
    except yaml.YAMLError as error:
        raise _yaml_error(path, error) from None
    if not isinstance(data, dict):
        raise UsageError(f"{shown(path)}: expected a mapping of keys to values, got {type_name(data)}")
    return data


def type_name(value: object) -> str:
    """'a list', 'a number', ...: a JSON/YAML value's kind, for messages."""
    kinds = {dict: "a mapping", list: "a list", str: "text", bool: "true/false", int: "a number", float: "a number"}
    return "nothing" if value is None else kinds.get(type(value), type(value).__name__)


def toc_files(root: Path = ROOT) -> list[str]:
    """Every document named in _toc.yml (root first), without extension."""
    path = root / "_toc.yml"
    toc = load_mapping(path)
    if not isinstance(toc.get("root"), str):
        raise UsageError(f"{shown(path)}: no 'root' page")
    files = [toc["root"]]

    def walk(entries: object) -> None:
        if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
            raise UsageError(f"{shown(path)}: chapters and sections must be lists of entries like 'file: book/kl'")
        for entry in entries:
            if "file" in entry:
                files.append(str(entry["file"]))
            for key in ("sections", "chapters"):
                walk(entry.get(key, []))

    for part in toc.get("parts", []):
        walk(part.get("chapters", []) if isinstance(part, dict) else None)
    walk(toc.get("chapters", []))
    return files


def source(doc: str, root: Path = ROOT) -> Path:
    """The source file of a toc entry (.md)."""
    return root / f"{doc}.md"


def front_matter(path: Path, text: str) -> dict:
    """The YAML front matter of a MyST page ({} when it has none); broken front matter is a UsageError."""
    if not text.startswith("---\n"):
        return {}
    end = re.search(r"^---[ \t]*$", text[4:], re.MULTILINE)
    if end is None:
        raise UsageError(f"{shown(path)}: front matter not closed (no '---' line after the opening one)")
    try:
        data = yaml.safe_load(text[4:4 + end.start()])
    except yaml.YAMLError as error:
        raise _yaml_error(path, error, "front matter is not valid YAML", first_line=2) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"{shown(path)}: front matter must be a mapping of keys to values, got {type_name(data)}")
    return data


def is_notebook(doc: str, root: Path = ROOT) -> bool:
    """An executed chapter: a MyST notebook, which declares a kernelspec (with a kernel name) in its front matter
    (code cells need one), that the build executes. A notebook page whose front matter turns execution off
    (``mystnb: {execution_mode: "off"}``, the student lab) is shown as it is: not an executed chapter."""
    path = source(doc, root)
    if not path.is_file():
        raise UsageError(f"{shown(root / '_toc.yml')}: page '{doc}' has no file {shown(path)}")
    text = read_text(path)
    meta = front_matter(path, text)
    kernelspec = meta.get("kernelspec")
    if kernelspec is None:
        if CODE_CELL in text:
            raise UsageError(f"{shown(path)}: has code cells but no kernelspec in its front matter")
        return False
    if not isinstance(kernelspec, dict) or not kernelspec.get("name"):
        raise UsageError(f"{shown(path)}: the front matter's kernelspec must name a kernel (name: python3)")
    mystnb = meta.get("mystnb")
    return not (isinstance(mystnb, dict) and mystnb.get("execution_mode") == "off")


def notebook_docs(root: Path = ROOT) -> list[str]:
    """The executed chapters, in table-of-contents order."""
    return [doc for doc in toc_files(root) if is_notebook(doc, root)]


def repository(root: Path = ROOT) -> tuple[str, str]:
    """(url, branch) of the book's repository, as set once in _config.yml."""
    path = root / "_config.yml"
    repo = load_mapping(path).get("repository")
    if not isinstance(repo, dict) or not isinstance(repo.get("url"), str):
        raise UsageError(f"{shown(path)}: no repository.url (the book's repository, e.g. https://github.com/owner/name)")
    return repo["url"].rstrip("/"), str(repo.get("branch", "master"))


def rerun(script: str, *args: str) -> str:
    """The command line that runs ``scripts/<script>`` with this interpreter (the project's environment, since it
    runs this code), as the user would type it from the working directory: ``.venv/bin/python scripts/x.py``."""
    return " ".join([shown(Path(sys.executable)), shown(ROOT / "scripts" / script), *args])


def report_stale(stale: list[Path], check: bool, script: str) -> int:
    """Print what a generator script updated (or, with ``check``, found out of date, and the command that brings it
    up to date); the exit status."""
    for path in stale:
        print(f"{'out of date' if check else 'updated'}: {path.relative_to(ROOT)}")
    if check and stale:
        print(f"run: {rerun(script)}", file=sys.stderr)
        return 1
    return 0
