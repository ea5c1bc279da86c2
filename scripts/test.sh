#!/usr/bin/env bash
# One command runs the tests: sets up .venv if needed (and, as root on Debian, the Chromium that the
# browser tests drive), checks style (ruff), then runs pytest, which also builds the whole book with
# warnings as errors. Extra arguments go to pytest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="$(bash "$root/scripts/env.sh")"
export PYTHONPATH="$root/src${PYTHONPATH:+:$PYTHONPATH}"   # this clone's labcode, wherever the environment's own install points
cd "$root"
if [[ ! -x /usr/bin/chromium ]]; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "installing Debian's chromium for the browser tests ..." >&2
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >&2
  else
    echo "warning: /usr/bin/chromium not found; the browser tests will be skipped" >&2
  fi
fi
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"   # small tensors: one thread per process is fastest and deterministic
"$bin/ruff" check src tests _ext scripts
"$bin/python" -m pytest "$@"
