#!/usr/bin/env bash
# One command runs the tests: sets up .venv if needed, checks style (ruff), then runs pytest
# (which also builds the whole book with warnings as errors). Extra arguments go to pytest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="$(bash "$root/scripts/env.sh")"
cd "$root"
"$bin/ruff" check src tests _ext scripts
"$bin/python" -m pytest "$@"
