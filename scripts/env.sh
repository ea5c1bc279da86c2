#!/usr/bin/env bash
# Create (or bring up to date) the project's virtual environment and print its bin directory.
# Location: .venv in the repository, or LABCODE_VENV (an environment may be shared by several clones).
#
# The stamp $venv/.requirements.sha256 records the contents of requirements.txt and pyproject.toml (their bytes
# only, never their paths: every clone with the same files computes the same stamp). When it differs, env.sh asks
# pip whether the environment already satisfies requirements.txt (a dry run, offline: it installs nothing). If it
# does (a stamp from an older scheme, or a pyproject.toml change that pins nothing), the stamp is rewritten and
# nothing else changes. (The installed packages, not an older stamp's formula, decide: the old stamp hashed the
# files' absolute paths too, so recomputing it would only recognise the clone that wrote it.) If it does not:
#   - the repository's own .venv (a folder, not a link elsewhere) is updated in place (pip install -r requirements.txt);
#   - any other environment (LABCODE_VENV) is left untouched: env.sh prints the command that updates it and exits 1.
# env.sh deletes nothing but the repository's own .venv, and that only when it no longer runs (no working python or
# pip); a missing environment is created. The scripts put this clone's src/ first on PYTHONPATH, so the labcode
# they import is this clone's even where the environment's editable install points at another clone.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${LABCODE_VENV:-$root/.venv}"
python="${PYTHON:-python3}"
stamp="$venv/.requirements.sha256"
want="$({ sha256sum <"$root/requirements.txt"; sha256sum <"$root/pyproject.toml"; } | sha256sum | cut -d' ' -f1)"
have="$(cat "$stamp" 2>/dev/null || true)"
pip=("$venv/bin/python" -m pip --disable-pip-version-check)
own=0   # 1: the repository's own .venv, which env.sh may update, and rebuild when broken
[[ "$(realpath -m -- "$venv")" == "$(realpath -- "$root")/.venv" ]] && own=1

if [[ "$have" == "$want" && -x "$venv/bin/python" ]]; then
  echo "$venv/bin"
  exit 0
fi

create() {
  echo "setting up $venv from requirements.txt ..." >&2
  "$python" -m venv "$venv"
  "${pip[@]}" install --quiet --upgrade pip >&2
  install
}
install() {   # chained with &&: a caller's `install || ...` turns off set -e inside
  "${pip[@]}" install --quiet -r "$root/requirements.txt" >&2 &&
  # labcode itself, editable: `import labcode` then works in this environment outside the scripts too (a Python
  # shell, Jupyter). The scripts do not rely on it (PYTHONPATH); labcode declares no console commands.
  "${pip[@]}" install --quiet --no-deps -e "$root" >&2 &&
  echo "$want" >"$stamp"
}

if "${pip[@]}" --version >/dev/null 2>&1; then
  # --no-index: the check never waits for the network; a pin that is not installed shows up as an error or as a
  # "Would install" line (from a local wheel folder), either of which means the environment is out of date.
  if check="$("${pip[@]}" install --dry-run --no-index -r "$root/requirements.txt" 2>&1)" \
     && ! grep -q '^Would install' <<<"$check"; then
    echo "$want" >"$stamp" 2>/dev/null || true   # a read-only shared environment: checked again next time
  elif ((own)); then
    echo "requirements changed: updating $venv in place (pip install -r requirements.txt) ..." >&2
    install || { echo "error: updating $venv failed (above); for a fresh one: rm -rf \"$venv\" and run this again" >&2
                 exit 1; }
  else
    # pip stops at the first pin it cannot satisfy from what is installed: that one is named
    differs="$(sed -n -E 's/^ERROR: No matching distribution found for (.*)/  \1 is not installed/p
                          s/^(Would install .*)/  \1/p' <<<"$check" | head -5)"
    cat >&2 <<EOF
error: the environment $venv does not match $root/requirements.txt:
${differs:-$(tail -20 <<<"$check")}
env.sh changes no environment but a .venv folder inside this clone. Either update this one in place:
  "$venv/bin/python" -m pip install -r "$root/requirements.txt"
or use another environment: unset LABCODE_VENV (this clone's own .venv) or point LABCODE_VENV at a new folder.
EOF
    exit 1
  fi
elif ((own)); then
  [[ -e "$venv" ]] && echo "$venv does not run (no working python or pip): rebuilding it ..." >&2
  rm -rf "$venv"
  create
elif [[ ! -e "$venv" ]] || [[ -d "$venv" && -z "$(ls -A "$venv")" ]]; then
  create   # a new environment where LABCODE_VENV points: nothing there to lose
else
  cat >&2 <<EOF
error: LABCODE_VENV=$venv is not a working Python environment (no $venv/bin/python with pip).
env.sh never deletes a folder outside the repository: remove it yourself, or point LABCODE_VENV elsewhere.
EOF
  exit 1
fi
echo "$venv/bin"
