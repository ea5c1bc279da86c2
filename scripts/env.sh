#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment in .venv and print its bin directory.
# The environment is rebuilt from requirements.txt whenever that file changes (a stamp records its hash).
# LABCODE_VENV overrides the location.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${LABCODE_VENV:-$root/.venv}"
python="${PYTHON:-python3}"
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$root/requirements.txt" "$root/pyproject.toml" | sha256sum | cut -d' ' -f1)"
if [[ ! -x "$venv/bin/python" || ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
  echo "setting up $venv from requirements.txt ..." >&2
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --upgrade pip >&2
  "$venv/bin/python" -m pip install --quiet -r "$root/requirements.txt" >&2
  "$venv/bin/python" -m pip install --quiet --no-deps -e "$root" >&2
  echo "$want" > "$stamp"
fi
echo "$venv/bin"
