#!/usr/bin/env bash
# The third command: the whole book as one PDF, built by Jupyter Book 1's LaTeX builder (xelatex) from the same
# executed chapters as the site: it uses the HTML build's execution cache (_build/.jupyter_cache) and model store,
# so after `bash scripts/build-book.sh` nothing executes again (and a first build here fills the cache for it).
# Sets up .venv if needed and, when TeX Live is missing, installs Debian's packages (as root, or with sudo that
# needs no password). Output: _build/latex/generative-models.pdf, copied to _build/html/generative-models.pdf,
# where every page of the site links to it. Extra arguments go to `jupyter-book build` (e.g. --all).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="$(bash "$root/scripts/env.sh")"
export PYTHONPATH="$root/src${PYTHONPATH:+:$PYTHONPATH}"   # this clone's labcode, wherever the environment's own install points
cd "$root"

# The smallest set of Debian packages that builds the book (about 80 MB to download, 400 MB installed):
# xelatex and the LaTeX packages Sphinx and sphinx-jupyterbook-latex load, the FreeFont faces Sphinx uses with
# xelatex, latexmk, xindy for the index, and poppler-utils (pdftotext, pdfinfo) for tests/test_pdf.py.
packages=(texlive-xetex texlive-latex-extra texlive-fonts-recommended fonts-freefont-otf latexmk xindy poppler-utils)
have_tex() {
  local cmd file
  for cmd in xelatex latexmk xindy pdftotext; do command -v "$cmd" >/dev/null || return 1; done
  for file in fncychap.sty ucharclasses.sty unicode-math.sty FreeSerif.otf; do [[ -n "$(kpsewhich "$file")" ]] || return 1; done
}
if ! have_tex; then
  sudo=()
  [[ $(id -u) -eq 0 ]] || { command -v sudo >/dev/null && sudo -n true 2>/dev/null && sudo=(sudo); }
  if command -v apt-get >/dev/null && { [[ $(id -u) -eq 0 ]] || ((${#sudo[@]})); }; then
    echo "installing Debian's TeX Live for the PDF: ${packages[*]} ..." >&2
    "${sudo[@]}" apt-get update -qq >&2
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}" >&2
  else
    echo "error: the PDF needs TeX Live (xelatex, latexmk, xindy) and poppler-utils; on Debian/Ubuntu run as root" \
         "or install: ${packages[*]}" >&2
    exit 1
  fi
fi

export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"   # as scripts/test.sh: the same numbers as the site's build
export LATEXOPTS="${LATEXOPTS:--interaction=nonstopmode -halt-on-error}"   # a TeX error stops, never waits for input
# The print edition is the course: the API reference stays on the site (where every code cell links to it), so the
# PDF is built from _toc.yml without its "API reference" part.
mkdir -p _build/html
"$bin/python" -c '
import yaml
toc = yaml.safe_load(open("_toc.yml"))
toc["parts"] = [part for part in toc["parts"] if part.get("caption") != "API reference"]
open("_build/pdf-toc.yml", "w").write(yaml.safe_dump(toc, sort_keys=False))'
"$bin/python" scripts/build_book.py --no-sync --builder pdflatex --toc _build/pdf-toc.yml "$@" </dev/null

# LaTeX resolves references and fonts after Sphinx is done: a "??" or a missing glyph fails the command too.
log=_build/latex/generative-models.log
if grep -q -E "There were undefined references|Missing character|Reference .* undefined" "$log"; then
  grep -E "undefined|Missing character" "$log" | sort -u | head -20 >&2
  echo "error: the PDF has unresolved references or missing characters (see $log)" >&2
  exit 1
fi
cp _build/latex/generative-models.pdf _build/html/generative-models.pdf
echo "PDF: _build/latex/generative-models.pdf ($(pdfinfo _build/latex/generative-models.pdf | awk '/^Pages:/ {print $2}') pages)," \
     "copied to _build/html/generative-models.pdf" >&2
