#!/usr/bin/env bash
# One command builds the book: sets up .venv if needed, brings the chapter notebooks (book/*.ipynb) up to date,
# then runs Jupyter Book 1 with warnings as errors and a quiet log (scripts/build_book.py; -v shows everything,
# the whole log is in _build/build.log). Output: _build/html. `--edition student` (or LABCODE_EDITION=student) builds
# the student edition of the site instead, into _build/student/_build/html (README, "Editions"). Extra arguments go to
# `jupyter-book build` (e.g. --all).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="$(bash "$root/scripts/env.sh")"
export PYTHONPATH="$root/src${PYTHONPATH:+:$PYTHONPATH}"   # this clone's labcode, wherever the environment's own install points
cd "$root"
exec "$bin/python" scripts/build_book.py "$@"
